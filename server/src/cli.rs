//! The `truce-server` command line: parse arguments, run one command, print
//! for people or, with `--json`, one JSON document (JSON Lines for lists).
//!
//! This is the binary's edge: library errors get their context here and
//! reach the person as one line saying what went wrong and what to do.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use truce_shared::signing::fingerprint;
use truce_shared::time::format_ms;
use truce_shared::{limits, Bytes32};

use crate::paths::DataDir;
use crate::settings::{Limits, Settings};
use crate::store::Device;

/// The Truce collection server: accepts the mission's laptops over mutual
/// TLS, verifies every signed report, stores each exactly once, durably.
#[derive(Parser, Debug)]
#[command(name = "truce-server", version, about, long_about = None)]
pub struct Cli {
    /// Data directory (receipt key and database). Default: the platform's data directory.
    #[arg(long, global = true, env = "TRUCE_SERVER_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print one JSON document (JSON Lines for lists) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Make the server's receipt key and the database (once).
    Init,
    /// Serve agents over mutual TLS until SIGTERM or SIGINT.
    ///
    /// Example: truce-server run --listen 0.0.0.0:4433 --ca ca.pem --cert server.pem --key server.key --crl crl.pem
    Run(RunArgs),
    /// Enrol, list and revoke devices (the laptops' report keys).
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Ingest bundles (sneaker-net) exactly as if they had come over the wire.
    Import {
        /// Bundle files (TRUCEB01), from `truce-agent bundle export`.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Export stored reports as JSON Lines (verified only by default).
    Export(ExportArgs),
    /// Counts by outcome, devices, and gaps and forks in each device's chain.
    Stats,
}

/// `run` flags.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The mission CA certificate (PEM): only clients it signed may connect.
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// This server's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// This server's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// A certificate revocation list (PEM), repeatable: revoked laptops fail the handshake.
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Largest frame in bytes; a bigger one ends the connection.
    #[arg(long, value_name = "BYTES", default_value_t = limits::MAX_FRAME)]
    pub max_frame: u32,
    /// Most reports in one Submit (advertised to agents); more ends the connection.
    #[arg(long, value_name = "N", default_value_t = limits::MAX_BATCH)]
    pub max_batch: u32,
    /// Most connections served at once; more wait in the kernel's queue.
    #[arg(long, value_name = "N", default_value_t = limits::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Seconds a client has to finish TLS and send Hello.
    #[arg(long, value_name = "SECS", default_value_t = limits::HANDSHAKE_TIMEOUT.as_secs_f64())]
    pub handshake_timeout: f64,
    /// Seconds a connection may stay silent, or take over one frame.
    #[arg(long, value_name = "SECS", default_value_t = limits::IDLE_TIMEOUT.as_secs_f64())]
    pub idle_timeout: f64,
    /// Batches verified at once. Default: one per core.
    #[arg(long, value_name = "N")]
    pub verify_threads: Option<usize>,
}

/// `device` subcommands.
#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// Enrol a device key (64 hex, from `truce-agent key`); its quarantined reports become verified.
    Add {
        /// The device's public key, 64 hex digits.
        key: String,
        /// A name for people ("laptop-07").
        #[arg(long)]
        name: Option<String>,
    },
    /// List enrolled and revoked devices.
    List,
    /// Revoke a device: its reports received from now on are quarantined.
    Revoke {
        /// The device's public key, 64 hex digits.
        key: String,
        /// Why ("laptop lost at checkpoint 4").
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `export` flags.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Output format (this version: jsonl).
    #[arg(long, default_value = "jsonl")]
    pub format: String,
    /// Write here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Which reports.
    #[arg(long, value_enum, default_value = "verified")]
    pub status: crate::export::StatusFilter,
    /// Every version of amended reports (this version always shows every version).
    #[arg(long)]
    pub history: bool,
}

/// Parses arguments, runs the command, prints an error as one line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` logs its connections; the other commands only warnings.
    let default_level = if matches!(cli.command, Command::Run(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour only on a terminal: logs that go to journald or a file stay
    // plain text, one line per event.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn parse_key(text: &str) -> Result<Bytes32> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| Bytes32::try_from(b).ok())
        .with_context(|| format!("{text:?} is not a device key: give the 64 hex digits `truce-agent key` prints"))
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let dir = DataDir::resolve(cli.data_dir)?;
    let json = cli.json;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Init => {
            let key = dir.init()?;
            let pk = key.verifying_key().to_bytes();
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"data_dir": dir.root(), "server_key": hex::encode(pk), "fingerprint": fingerprint(&pk)})
                )?;
            } else {
                writeln!(out, "server initialised in {}", dir.root().display())?;
                writeln!(out, "receipt key: {}", hex::encode(pk))?;
                writeln!(out, "fingerprint: {}", fingerprint(&pk))?;
            }
        }
        Command::Run(args) => run(&dir, args)?,
        Command::Device(cmd) => device(&dir, cmd, json, &mut out)?,
        Command::Import { files } => return import(&dir, &files, json, &mut out),
        Command::Export(args) => export(&dir, &args, &mut out)?,
        Command::Stats => stats(&dir, json, &mut out)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn device_json(d: &Device) -> serde_json::Value {
    json!({
        "device": hex::encode(d.key),
        "fingerprint": fingerprint(&d.key),
        "name": d.name,
        "added_at": format_ms(d.added_at),
        "revoked_at": d.revoked_at.map(format_ms),
        "revoke_reason": d.revoke_reason,
    })
}

fn device(dir: &DataDir, cmd: DeviceCmd, json: bool, out: &mut impl Write) -> Result<()> {
    let now = truce_shared::time::now_ms();
    match cmd {
        DeviceCmd::Add { key, name } => {
            let k = parse_key(&key)?;
            let e = dir.open_store()?.add_device(&k, name.as_deref(), now)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"device": hex::encode(k), "name": name, "new": e.new, "promoted": e.promoted, "held_back": e.held_back})
                )?;
            } else {
                let who = name.as_deref().unwrap_or("device");
                let verb = if e.new { "enrolled" } else { "already enrolled:" };
                write!(out, "{verb} {who} {}", fingerprint(&k))?;
                if e.promoted > 0 {
                    write!(out, "; {} quarantined report(s) now verified", e.promoted)?;
                }
                if e.held_back > 0 {
                    write!(out, "; {} left quarantined: two reports at one seq (equivocation)", e.held_back)?;
                }
                writeln!(out)?;
            }
        }
        DeviceCmd::List => {
            let devices = dir.open_store()?.devices()?;
            for d in &devices {
                if json {
                    writeln!(out, "{}", device_json(d))?;
                } else {
                    write!(
                        out,
                        "{}  {}  {:<16}  added {}",
                        hex::encode(d.key),
                        fingerprint(&d.key),
                        d.name.as_deref().unwrap_or("-"),
                        format_ms(d.added_at)
                    )?;
                    if let Some(r) = d.revoked_at {
                        write!(out, "  REVOKED {}", format_ms(r))?;
                        if let Some(why) = &d.revoke_reason {
                            write!(out, " ({why})")?;
                        }
                    }
                    writeln!(out)?;
                }
            }
            if devices.is_empty() && !json {
                writeln!(out, "no devices enrolled: `truce-server device add KEY --name NAME`")?;
            }
        }
        DeviceCmd::Revoke { key, reason } => {
            let k = parse_key(&key)?;
            let r = dir.open_store()?.revoke_device(&k, reason.as_deref(), now)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"device": hex::encode(k), "revoked_at": format_ms(r.revoked_at), "new": r.new})
                )?;
            } else {
                let when = format_ms(r.revoked_at);
                let what = if r.new { "revoked" } else { "already revoked" };
                writeln!(
                    out,
                    "{what} {} at {when}: its reports received from now on are quarantined",
                    fingerprint(&k)
                )?;
                writeln!(out, "also revoke its TLS certificate (truce-certs revoke NAME) and restart the server with the new crl.pem")?;
            }
        }
    }
    Ok(())
}

fn import(dir: &DataDir, files: &[PathBuf], json: bool, out: &mut impl Write) -> Result<ExitCode> {
    dir.load_key()?;
    let s = crate::import::import_files(&dir.db_file(), files)
        .context("import stopped (the reports before it are stored)")?;
    if json {
        writeln!(out, "{}", serde_json::to_string(&s)?)?;
    } else {
        let total = s.accepted + s.duplicate + s.quarantined_total() + s.rejected_total();
        writeln!(
            out,
            "imported {total} report(s): {} accepted, {} duplicate, {} quarantined, {} rejected",
            s.accepted,
            s.duplicate,
            s.quarantined_total(),
            s.rejected_total()
        )?;
        for (reason, n) in &s.quarantined {
            writeln!(out, "  quarantined ({reason}): {n}")?;
        }
        for (reason, n) in &s.rejected {
            writeln!(out, "  rejected ({reason}): {n}")?;
        }
    }
    for p in &s.problems {
        if p.index == 0 {
            eprintln!("error: {}: {}", p.file.display(), p.error);
        } else {
            eprintln!("error: {}: report #{}: {}", p.file.display(), p.index, p.error);
        }
    }
    // Unreadable input is not silently dropped: the exit status says so.
    Ok(if s.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn export(dir: &DataDir, args: &ExportArgs, out: &mut impl Write) -> Result<()> {
    if args.format != "jsonl" {
        anyhow::bail!("export format {:?} is not available yet: use --format jsonl", args.format);
    }
    let store = dir.open_store()?;
    match &args.out {
        Some(p) => {
            let f = std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
            let mut w = std::io::BufWriter::new(f);
            crate::export::jsonl(&store, args.status, &mut w)?;
            w.flush()?;
        }
        None => {
            let mut w = std::io::BufWriter::new(out);
            crate::export::jsonl(&store, args.status, &mut w)?;
            w.flush()?;
        }
    }
    Ok(())
}

fn stats(dir: &DataDir, json: bool, out: &mut impl Write) -> Result<()> {
    let s = dir.open_store()?.stats()?;
    if json {
        writeln!(out, "{}", serde_json::to_string(&s)?)?;
        return Ok(());
    }
    let r = &s.reports;
    writeln!(
        out,
        "reports: {} verified, {} quarantined, {} rejected (kept as evidence)",
        r.verified, r.quarantined, r.rejected
    )?;
    for (reason, n) in &s.quarantined_by_reason {
        writeln!(out, "  quarantined ({reason}): {n}")?;
    }
    writeln!(
        out,
        "refused: {} report(s) failed verification ({} distinct)",
        s.rejections.arrivals, s.rejections.distinct
    )?;
    for (reason, n) in &s.rejected_by_reason {
        writeln!(out, "  rejected ({reason}): {n}")?;
    }
    writeln!(out, "devices: {} enrolled, {} revoked; forks: {}", s.devices.enrolled, s.devices.revoked, s.forks)?;
    for c in &s.chains {
        let mut line = format!(
            "  {} {} ({}): {} seq(s), head {}",
            &c.device[..16],
            c.name.as_deref().unwrap_or("-"),
            c.registry,
            c.seqs,
            c.head_seq
        );
        if c.missing > 0 {
            let gaps: Vec<String> =
                c.gaps.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
            let more = if (c.gaps.len() as u64) < c.missing && c.gaps.len() == 100 { ", …" } else { "" };
            line.push_str(&format!(", {} missing (seq {}{more})", c.missing, gaps.join(", ")));
        }
        if c.forks > 0 {
            line.push_str(&format!(", {} FORKED seq(s)", c.forks));
        }
        if c.broken_links > 0 {
            line.push_str(&format!(", {} broken link(s)", c.broken_links));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn seconds(s: f64, flag: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{flag} must be a positive number of seconds"))
}

fn run(dir: &DataDir, args: RunArgs) -> Result<()> {
    let limits = Limits {
        max_frame: args.max_frame,
        max_batch: args.max_batch,
        max_connections: args.max_connections,
        handshake_timeout: seconds(args.handshake_timeout, "handshake-timeout")?,
        idle_timeout: seconds(args.idle_timeout, "idle-timeout")?,
    };
    limits.check()?;
    let tls = crate::tls::server_config(&args.ca, &args.cert, &args.key, &args.crl)?;
    let mut settings = Settings::new(dir, tls, limits)?;
    if let Some(n) = args.verify_threads {
        settings.verify_threads = n.max(1);
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        // Handlers first: once the port is open, SIGTERM means "finish
        // and exit 0", never the default "die".
        let shutdown = shutdown_signal().context("cannot install the SIGTERM/SIGINT handlers")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (is another server running there?)", args.listen))?;
        crate::server::run(listener, settings, shutdown).await?;
        anyhow::Ok(())
    })
}

/// Resolves on SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
    })
}
