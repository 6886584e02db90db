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
use truce_shared::text::printable;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use truce_shared::signing::fingerprint;
use truce_shared::time::format_ms;
use truce_shared::{limits, Bytes32};

use crate::paths::DataDir;
use crate::settings::{Limits, Settings};
use crate::store::{Device, ReportQuery};

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
    /// Export reports for investigators: CSV, JSON Lines, GeoJSON or a bundle.
    ///
    /// Verified reports only, latest version of each, unless --status or
    /// --history say otherwise. Examples:
    ///   truce-server export --format csv --out reports.csv
    ///   truce-server export --format geojson --since 2026-11-20T00:00:00Z --category shelling --out shelling.geojson
    ///   truce-server export --format bundle --out evidence.truceb --devices-out evidence.devices.jsonl
    Export(ExportArgs),
    /// Re-verify a bundle offline, with no database: each report's outcome, then the totals.
    ///
    /// Exits 1 if any report fails. Example:
    ///   truce-server verify evidence.truceb --devices evidence.devices.jsonl
    Verify {
        /// The bundle (TRUCEB01) to check.
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        /// The enrolled devices (from `export --devices-out` or `device list --json`): a report of
        /// any other key fails as "unknown device".
        #[arg(long, value_name = "FILE")]
        devices: Option<PathBuf>,
        /// Print only failures and the totals.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List incidents (reports of one event), or change how reports are grouped.
    ///
    /// Reports of one category from any devices within the time window and the distance of each
    /// other form one incident; its corroboration is the number of distinct devices. Changing
    /// the window regroups every report. Example:
    ///   truce-server incidents --window-minutes 15 --radius-m 3000
    Incidents(IncidentsArgs),
    /// Counts by outcome, devices, gaps and forks in each device's chain, incidents.
    Stats,
    /// Print shell completions to stdout: `truce-server completions bash > /etc/bash_completion.d/truce-server`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout: `truce-server man > truce-server.1`.
    Man,
}

/// `incidents` flags.
#[derive(clap::Args, Debug)]
pub struct IncidentsArgs {
    /// Only incidents reported by at least this many devices.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_corroboration: u64,
    /// Set the time window: reports at most this many minutes apart (default 10).
    #[arg(long, value_name = "MINUTES")]
    pub window_minutes: Option<u32>,
    /// Set the distance window: event positions at most this many metres apart (default 2000).
    #[arg(long, value_name = "METRES")]
    pub radius_m: Option<u32>,
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
    /// Required, unless --no-crl says to run without one.
    #[arg(long, value_name = "FILE")]
    pub crl: Vec<PathBuf>,
    /// Run with no CRL at all, so a revoked laptop can still connect (trials only).
    #[arg(long, conflicts_with = "crl")]
    pub no_crl: bool,
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
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: crate::export::Format,
    /// Write here instead of stdout (written whole, then renamed into place).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Which reports, by status.
    #[arg(long, value_enum, default_value = "verified")]
    pub status: crate::export::StatusFilter,
    /// Only reports observed at or after this time (RFC 3339, "now", "-24h").
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only reports observed at or before this time (RFC 3339, "now", "-1h").
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only this device (64 hex).
    #[arg(long, value_name = "HEX")]
    pub device: Option<String>,
    /// Only this category (kebab-case, e.g. shelling, small-arms-fire).
    #[arg(long, value_name = "CATEGORY")]
    pub category: Option<String>,
    /// Only reports whose monitor stood in this box: west,south,east,north in degrees.
    #[arg(long, value_name = "W,S,E,N", allow_hyphen_values = true)]
    pub bbox: Option<String>,
    /// Only reports in incidents seen by at least this many devices.
    #[arg(long, value_name = "N")]
    pub min_corroboration: Option<u64>,
    /// Every version of amended reports, not only the latest.
    #[arg(long)]
    pub history: bool,
    /// With --format bundle: also write the device list (name and key) here, for `verify --devices`.
    #[arg(long, value_name = "FILE")]
    pub devices_out: Option<PathBuf>,
}

/// Parses arguments, runs the command, prints an error as one line.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            // Help, version, and a bare `truce-server` or `truce-server
            // device` showing what can follow, print as clap writes them.
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) || !e.use_stderr()
            {
                let _ = e.print();
                return ExitCode::from(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                });
            }
            eprintln!("error: {}", truce_shared::text::usage_error(&e.to_string(), "truce-server"));
            return ExitCode::from(2);
        }
    };
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
    let json = cli.json;
    // Completions and the manual page come from the argument definitions.
    match &cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(*shell, &mut Cli::command(), "truce-server", &mut std::io::stdout());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            // `truce-server man | head` is not an error.
            match std::io::stdout().write_all(&page) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => return Ok(ExitCode::SUCCESS),
            }
        }
        _ => {}
    }
    // `verify` needs no data directory: anyone can run it anywhere.
    if let Command::Verify { bundle, devices, quiet } = &cli.command {
        return verify(bundle, devices.as_deref(), *quiet, json, &mut std::io::stdout().lock());
    }
    let dir = DataDir::resolve(cli.data_dir)?;
    // An export may write stdout from a thread of its own: stdout is not
    // locked here for it.
    if let Command::Export(args) = &cli.command {
        export(&dir, args, json)?;
        return Ok(ExitCode::SUCCESS);
    }
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
        Command::Export(_) => unreachable!("handled above"),
        Command::Verify { .. } | Command::Completions { .. } | Command::Man => unreachable!("handled above"),
        Command::Incidents(args) => incidents(&dir, &args, json, &mut out)?,
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
                let who = printable(name.as_deref().unwrap_or("device"));
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
                        printable(d.name.as_deref().unwrap_or("-")),
                        format_ms(d.added_at)
                    )?;
                    if let Some(r) = d.revoked_at {
                        write!(out, "  REVOKED {}", format_ms(r))?;
                        if let Some(why) = &d.revoke_reason {
                            write!(out, " ({})", printable(why))?;
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
            writeln!(out, "  quarantined ({}): {n}", printable(reason))?;
        }
        for (reason, n) in &s.rejected {
            writeln!(out, "  rejected ({}): {n}", printable(reason))?;
        }
    }
    for p in &s.problems {
        if p.index == 0 {
            eprintln!("error: {}: {}", p.file.display(), printable(&p.error.to_string()));
        } else {
            eprintln!("error: {}: report #{}: {}", p.file.display(), p.index, printable(&p.error.to_string()));
        }
    }
    if s.problems_not_listed > 0 {
        eprintln!(
            "error: and {} more unreadable frame(s) or file(s), not listed (the first {} are above)",
            s.problems_not_listed,
            crate::import::MAX_PROBLEMS_LISTED
        );
    }
    // Unreadable input is not silently dropped: the exit status says so.
    Ok(if s.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn parse_bbox(text: &str) -> Result<[f64; 4]> {
    let bad = || format!("--bbox {text:?}: give west,south,east,north in degrees, e.g. 37.5,47.9,38.1,48.3");
    let v: Vec<f64> = text.split(',').map(|p| p.trim().parse::<f64>()).collect::<Result<_, _>>().with_context(bad)?;
    let [w, s, e, n]: [f64; 4] = v.try_into().ok().with_context(bad)?;
    let lon = |x: f64| x.is_finite() && (-180.0..=180.0).contains(&x);
    let lat = |x: f64| x.is_finite() && (-90.0..=90.0).contains(&x);
    if !(lon(w) && lon(e) && lat(s) && lat(n)) || s > n {
        anyhow::bail!("{}: longitudes within ±180, latitudes within ±90, south ≤ north", bad());
    }
    Ok([w, s, e, n])
}

fn parse_category(text: &str) -> Result<truce_shared::Category> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_string())).ok().with_context(|| {
        format!(
            "--category {text:?} is not a category: use one of explosion, shelling, small-arms-fire, heavy-weapons, \
             airstrike, drone, mine, casualty, damage, movement-restriction, projectile-in-flight, muzzle-flash, \
             illumination-flare, nothing-observed, other"
        )
    })
}

fn parse_time(text: &str, flag: &str) -> Result<i64> {
    truce_shared::time::parse_time(text, truce_shared::time::now_ms())
        .map_err(|e| anyhow::anyhow!("--{flag} {text:?}: {e}"))
}

/// Writes `f`'s output to `path` through a temporary file beside it, renamed
/// into place only when complete: a failed export never leaves a file that
/// looks whole. The temporary file gets a random name and is created
/// exclusively (never through a symlink someone left at a guessable name)
/// and readable by its owner only (0600 on unix), which the export keeps:
/// it holds reports. The directory is synced after the rename.
fn write_file<T>(path: &std::path::Path, f: impl FnOnce(&mut (dyn Write + Send)) -> Result<T>) -> Result<T> {
    let name = path.file_name().with_context(|| format!("{} is not a file name", path.display()))?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".partial")
        .tempfile_in(parent)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, tmp);
    // On error the temporary file is dropped, which removes it.
    let v = f(&mut w)?;
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error).with_context(|| format!("cannot write {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(v)
}

fn export(dir: &DataDir, args: &ExportArgs, json: bool) -> Result<()> {
    use crate::export::Format;
    let query = ReportQuery {
        status: args.status.status(),
        device: args.device.as_deref().map(parse_key).transpose()?,
        category: args.category.as_deref().map(parse_category).transpose()?,
        observed_since: args.since.as_deref().map(|t| parse_time(t, "since")).transpose()?,
        observed_until: args.until.as_deref().map(|t| parse_time(t, "until")).transpose()?,
        bbox: args.bbox.as_deref().map(parse_bbox).transpose()?,
        min_corroboration: args.min_corroboration,
        latest_only: !args.history,
        ..Default::default()
    };
    if args.devices_out.is_some() && args.format != Format::Bundle {
        anyhow::bail!("--devices-out goes with --format bundle (other formats carry device names in every row)");
    }
    let store = dir.open_store()?;
    let n = match &args.out {
        Some(p) => write_file(p, |w| Ok(crate::export::export(&store, &query, args.format, w)?))?,
        None => {
            let stdout = std::io::stdout();
            if args.format == Format::Bundle && std::io::IsTerminal::is_terminal(&stdout) {
                anyhow::bail!("a bundle is binary: give --out FILE (or redirect stdout to a file)");
            }
            // Not locked: JSON Lines are written from a thread of their own.
            let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout);
            let n = crate::export::export(&store, &query, args.format, &mut w)?;
            w.flush()?;
            n
        }
    };
    let devices = match &args.devices_out {
        Some(p) => Some(write_file(p, |w| Ok(crate::export::devices(&store, w)?))?),
        None => None,
    };
    // The count goes to stderr: stdout may be the export itself.
    if json {
        eprintln!("{}", json!({"exported": n, "out": args.out, "devices": devices, "devices_out": args.devices_out}));
    } else if let Some(p) = &args.out {
        eprint!("exported {n} report(s) to {}", p.display());
        if let (Some(d), Some(dp)) = (devices, &args.devices_out) {
            eprint!("; {d} device(s) to {}", dp.display());
        }
        eprintln!();
    }
    Ok(())
}

fn verify(
    bundle: &std::path::Path,
    devices: Option<&std::path::Path>,
    quiet: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
    use crate::offline::{verify_bundle, DeviceList};
    let list = devices.map(|p| DeviceList::open(p).with_context(|| format!("{}", p.display()))).transpose()?;
    let file = std::fs::File::open(bundle).with_context(|| format!("cannot open {}", bundle.display()))?;
    let totals = verify_bundle(file, list.as_ref(), |c| {
        if json {
            return writeln!(out, "{}", serde_json::to_string(c).map_err(std::io::Error::other)?);
        }
        if quiet && c.ok {
            return Ok(());
        }
        let who = match (&c.device_name, &c.device) {
            (Some(n), _) => printable(n).into_owned(),
            (None, Some(d)) => d.get(..16).unwrap_or(d).to_string(),
            (None, None) => "-".into(),
        };
        let id = c.id.as_deref().map(|i| &i[..16]).unwrap_or("-");
        let seq = c.seq.map(|s| format!("seq {s}")).unwrap_or_default();
        if c.ok {
            write!(out, "ok    #{:<6} {id}…  {who} {seq}  {}", c.index, c.observed_at.as_deref().unwrap_or(""))?;
            if let Some(note) = &c.note {
                write!(out, "  ({})", printable(note))?;
            }
            writeln!(out)
        } else {
            writeln!(
                out,
                "FAIL  #{:<6} at byte {}: {}  (id as read {id}…, device {who})",
                c.index,
                c.offset,
                printable(c.error.as_deref().unwrap_or("failed"))
            )
        }
    })
    .with_context(|| format!("{}", bundle.display()))?;
    if json {
        writeln!(out, "{}", json!({"totals": totals}))?;
    } else {
        write!(out, "{} report(s): {} verified, {} failed", totals.reports, totals.ok, totals.failed)?;
        if list.is_none() {
            write!(out, " (signatures only: give --devices FILE to check enrolment too)")?;
        }
        writeln!(out)?;
        if totals.truncated {
            writeln!(out, "the bundle is damaged: reading stopped at the report marked FAIL")?;
        }
    }
    Ok(if totals.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn incidents(dir: &DataDir, args: &IncidentsArgs, json: bool, out: &mut impl Write) -> Result<()> {
    let mut store = dir.open_store()?;
    if args.window_minutes.is_some() || args.radius_m.is_some() {
        let old = store.incident_window()?;
        let w = crate::incidents::Window::new(
            args.window_minutes.unwrap_or(old.minutes),
            args.radius_m.unwrap_or(old.metres),
        )?;
        let n = store.set_incident_window(w)?;
        if !json {
            writeln!(
                out,
                "incident window now {} min, {} m; reports regrouped into {n} incident(s)",
                w.minutes, w.metres
            )?;
        }
    }
    let list = store.incidents(args.min_corroboration)?;
    if json {
        for i in &list {
            let mut v = serde_json::to_value(i)?;
            v["first_at"] = json!(format_ms(i.first_at));
            v["last_at"] = json!(format_ms(i.last_at));
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    let w = store.incident_window()?;
    writeln!(out, "{} incident(s) (window {} min, {} m)", list.len(), w.minutes, w.metres)?;
    for i in &list {
        writeln!(
            out,
            "  #{:<6} {:<22} {} .. {}  {} report(s) from {} device(s)",
            i.id,
            i.category,
            format_ms(i.first_at),
            format_ms(i.last_at),
            i.reports,
            i.devices
        )?;
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
        writeln!(out, "  quarantined ({}): {n}", printable(reason))?;
    }
    writeln!(
        out,
        "refused: {} report(s) failed verification ({} distinct)",
        s.rejections.arrivals, s.rejections.distinct
    )?;
    for (reason, n) in &s.rejected_by_reason {
        writeln!(out, "  rejected ({}): {n}", printable(reason))?;
    }
    writeln!(out, "devices: {} enrolled, {} revoked; forks: {}", s.devices.enrolled, s.devices.revoked, s.forks)?;
    let i = &s.incidents;
    writeln!(
        out,
        "incidents: {} ({} seen by 2 or more devices, at most {}); window {} min, {} m",
        i.total, i.corroborated, i.max_corroboration, i.window.minutes, i.window.metres
    )?;
    for c in &s.chains {
        let mut line = format!(
            "  {} {} ({}): {} seq(s), head {}",
            &c.device[..16],
            printable(c.name.as_deref().unwrap_or("-")),
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
    if args.crl.is_empty() && !args.no_crl {
        anyhow::bail!(
            "no --crl given: without one a revoked or stolen laptop can still connect. Give --crl FILE (truce-certs writes pki/crl.pem), or --no-crl to run without revocation (trials only)"
        );
    }
    let tls = crate::tls::server_config(&args.ca, &args.cert, &args.key, &args.crl)?;
    if args.no_crl {
        tracing::warn!("running with --no-crl: revoked laptops can still connect");
    }
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
