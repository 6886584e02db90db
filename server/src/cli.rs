//! The `truce-server` command line: argument parsing and the commands, each
//! printing text for people or, with `--json`, one JSON document.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use truce_shared::Bytes32;

use crate::paths::DataDir;
use crate::server::Limits;

/// The Truce collection server: accepts the mission's laptops over mutual
/// TLS, verifies every signed report, counts each exactly once, and keeps
/// them durably in SQLite.
#[derive(Parser, Debug)]
#[command(name = "truce-server", version, about, long_about = None)]
pub struct Cli {
    /// Data directory (key and database). Default: the platform data dir.
    #[arg(long, global = true, env = "TRUCE_SERVER_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON document instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make the server's receipt key and the database.
    Init,
    /// Serve agents over mutual TLS until SIGTERM or SIGINT.
    ///
    /// Example: truce-server run --listen 0.0.0.0:4433 --ca ca.pem --cert server.pem --key server.key --crl crl.pem
    Run(RunArgs),
    /// Enrol, list and revoke devices (laptops' report keys).
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Ingest bundles (USB sneaker-net) exactly as if they came over the wire.
    Import {
        /// Bundle files (TRUCEB01).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Export stored reports (JSON Lines; verified only by default).
    Export(ExportArgs),
    /// Counts by status, devices, gaps and forks in each device's chain.
    Stats,
}

/// `run` flags.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:4433")]
    pub listen: SocketAddr,
    /// The mission CA certificate (PEM): only clients it signed may connect.
    #[arg(long)]
    pub ca: PathBuf,
    /// This server's certificate (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// This server's private key (PEM).
    #[arg(long)]
    pub key: PathBuf,
    /// Certificate revocation lists (PEM); revoked laptops fail the handshake.
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Largest frame in bytes.
    #[arg(long, default_value_t = truce_shared::limits::MAX_FRAME)]
    pub max_frame: u32,
    /// Most reports in one Submit.
    #[arg(long, default_value_t = truce_shared::limits::MAX_BATCH)]
    pub max_batch: u32,
    /// Most concurrent connections.
    #[arg(long, default_value_t = truce_shared::limits::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client has to finish TLS and send Hello.
    #[arg(long, default_value_t = truce_shared::limits::HANDSHAKE_TIMEOUT.as_secs_f64())]
    pub handshake_timeout: f64,
    /// Seconds a connection may stay silent (or take to send one frame).
    #[arg(long, default_value_t = truce_shared::limits::IDLE_TIMEOUT.as_secs_f64())]
    pub idle_timeout: f64,
}

/// `device` subcommands.
#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// Enrol a device key (64 hex, from `truce-agent key`); promotes its quarantined reports.
    Add {
        /// The device's public key.
        key: String,
        /// A name for people ("laptop-07").
        #[arg(long)]
        name: Option<String>,
    },
    /// List enrolled devices.
    List,
    /// Revoke a device: its later reports are quarantined.
    Revoke {
        /// The device's public key.
        key: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `export` flags.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, default_value = "jsonl")]
    pub format: String,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Which reports.
    #[arg(long, value_enum, default_value = "verified")]
    pub status: crate::export::StatusFilter,
    /// Every version of amended reports, not only the latest.
    #[arg(long)]
    pub history: bool,
}

/// Parses arguments, runs the command, prints errors as one line.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Run(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
    match dispatch(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn parse_key(hex_key: &str) -> Result<Bytes32> {
    let bytes = hex::decode(hex_key.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .with_context(|| format!("{hex_key:?} is not a device key: give the 64 hex digits `truce-agent key` prints"))?;
    let mut k = [0u8; 32];
    k.copy_from_slice(&bytes);
    Ok(k)
}

fn dispatch(cli: Cli) -> Result<()> {
    let dir = DataDir::resolve(cli.data_dir)?;
    let now = truce_shared::time::now_ms();
    let mut stdout = std::io::stdout().lock();
    match cli.command {
        Command::Init => {
            let key = dir.init()?;
            let pk = key.verifying_key().to_bytes();
            if cli.json {
                writeln!(stdout, "{}", json!({"server_key": hex::encode(pk), "data_dir": dir.root()}))?;
            } else {
                writeln!(stdout, "server initialised in {}", dir.root().display())?;
                writeln!(stdout, "receipt key: {}", hex::encode(pk))?;
                writeln!(stdout, "fingerprint: {}", truce_shared::signing::fingerprint(&pk))?;
            }
        }
        Command::Run(args) => run(&dir, args)?,
        Command::Device(DeviceCmd::Add { key, name }) => {
            let k = parse_key(&key)?;
            let promoted = dir.open_store()?.add_device(&k, name.as_deref(), now)?;
            if cli.json {
                writeln!(stdout, "{}", json!({"device": hex::encode(k), "name": name, "promoted": promoted}))?;
            } else {
                writeln!(
                    stdout,
                    "enrolled {} ({}){}",
                    name.as_deref().unwrap_or("unnamed"),
                    truce_shared::signing::fingerprint(&k),
                    if promoted > 0 {
                        format!("; {promoted} quarantined report(s) now verified")
                    } else {
                        String::new()
                    }
                )?;
            }
        }
        Command::Device(DeviceCmd::List) => {
            let devices = dir.open_store()?.devices()?;
            if cli.json {
                for d in &devices {
                    writeln!(stdout, "{}", serde_json::to_string(d)?)?;
                }
            } else {
                for d in &devices {
                    writeln!(
                        stdout,
                        "{}  {:<16} added {}{}",
                        d.key,
                        d.name.as_deref().unwrap_or("-"),
                        d.added_at,
                        d.revoked_at.as_ref().map(|r| format!("  REVOKED {r}")).unwrap_or_default()
                    )?;
                }
            }
        }
        Command::Device(DeviceCmd::Revoke { key, reason }) => {
            let k = parse_key(&key)?;
            if !dir.open_store()?.revoke_device(&k, reason.as_deref(), now)? {
                bail!("device {key} is not enrolled: see `truce-server device list`");
            }
            if cli.json {
                writeln!(stdout, "{}", json!({"device": hex::encode(k), "revoked": true}))?;
            } else {
                writeln!(stdout, "revoked {}: its later reports will be quarantined", hex::encode(k))?;
            }
        }
        Command::Import { files } => {
            let mut store = dir.open_store()?;
            let mut counts = crate::import::ImportCounts::default();
            let mut failed = None;
            for f in &files {
                if let Err(e) = crate::import::import_file(&mut store, f, &mut counts) {
                    failed = Some(e);
                    break;
                }
            }
            if cli.json {
                writeln!(stdout, "{}", serde_json::to_string(&counts)?)?;
            } else {
                let q: u64 = counts.quarantined.values().sum();
                let r: u64 = counts.rejected.values().sum();
                writeln!(
                    stdout,
                    "imported: {} accepted, {} duplicate, {q} quarantined, {r} rejected",
                    counts.accepted, counts.duplicate
                )?;
                for (reason, n) in counts.quarantined.iter().map(|(r, n)| ("quarantined", (r, n))) {
                    writeln!(stdout, "  {reason} ({}): {}", n.0, n.1)?;
                }
                for (reason, n) in &counts.rejected {
                    writeln!(stdout, "  rejected ({reason}): {n}")?;
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
        }
        Command::Export(args) => {
            let store = dir.open_store()?;
            if args.format != "jsonl" {
                bail!("format {:?} is not available yet: use --format jsonl", args.format);
            }
            match &args.out {
                Some(p) => {
                    let mut f = std::io::BufWriter::new(
                        std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
                    );
                    crate::export::jsonl(&store, args.status, &mut f)?;
                    f.flush()?;
                }
                None => {
                    let mut w = std::io::BufWriter::new(&mut stdout);
                    crate::export::jsonl(&store, args.status, &mut w)?;
                    w.flush()?;
                }
            }
        }
        Command::Stats => {
            let s = dir.open_store()?.stats()?;
            if cli.json {
                writeln!(stdout, "{}", serde_json::to_string(&s)?)?;
            } else {
                writeln!(
                    stdout,
                    "reports: {} verified, {} quarantined, {} rejected",
                    s.verified, s.quarantined, s.rejected
                )?;
                for (reason, n) in &s.rejected_by_reason {
                    writeln!(stdout, "  rejected ({reason}): {n}")?;
                }
                writeln!(
                    stdout,
                    "devices: {} enrolled, {} revoked; forks: {}",
                    s.devices_enrolled, s.devices_revoked, s.forks
                )?;
                for c in &s.chains {
                    let gaps: Vec<String> = c
                        .missing
                        .iter()
                        .map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
                        .collect();
                    writeln!(
                        stdout,
                        "  {} {}: {} reports, head seq {}{}{}",
                        &c.device[..16],
                        c.name.as_deref().unwrap_or("(not enrolled)"),
                        c.reports,
                        c.head_seq,
                        if gaps.is_empty() { String::new() } else { format!(", missing seq {}", gaps.join(", ")) },
                        if c.forks > 0 { format!(", {} FORK(S)", c.forks) } else { String::new() }
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn seconds(s: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{what} must be a positive number of seconds"))
}

fn run(dir: &DataDir, args: RunArgs) -> Result<()> {
    let key = dir.load_key()?;
    let tls = crate::tls::server_config(&args.ca, &args.cert, &args.key, &args.crl)?;
    let limits = Limits {
        max_frame: args.max_frame,
        max_batch: args.max_batch,
        max_connections: args.max_connections.max(1),
        handshake_timeout: seconds(args.handshake_timeout, "handshake-timeout")?,
        idle_timeout: seconds(args.idle_timeout, "idle-timeout")?,
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    let (writer, writer_thread) = crate::writer::Writer::start(&dir.db_file())?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        crate::server::run(listener, tls, writer, key, limits, shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    drop(runtime);
    let _ = writer_thread.join();
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
