//! What `truce-server` accepts: the commands, their flags, and the parsing
//! of values clap cannot check alone (keys, times, boxes, categories).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use truce_shared::Bytes32;

/// The Truce collection server: accepts the mission's laptops over mutual
/// TLS, verifies every signed report, stores each exactly once, durably.
#[derive(Parser, Debug)]
#[command(name = "truce-server", version, about, long_about = None)]
pub struct Cli {
    /// Data directory (receipt key and database). Default: the platform's data directory.
    #[arg(long, global = true, env = "TRUCE_SERVER_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The database, when not the data directory's SQLite file: a
    /// PostgreSQL URL that several servers can share, e.g.
    /// postgres://truce@db.example/truce (add ?sslmode=require&sslrootcert=CA.pem
    /// for TLS). The receipt key stays in the data directory.
    #[arg(long, global = true, env = "TRUCE_DATABASE_URL", value_name = "URL")]
    pub database: Option<String>,
    /// The config file (TOML). Default: truce-server.toml in the data directory, if it is there.
    /// Flags and environment variables override what it says.
    #[arg(long, global = true, env = "TRUCE_SERVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
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
    /// Make the server's keys (receipt key, log key) and the database (once).
    ///
    /// Prints the log key's fingerprint: give it to monitors for
    /// `truce-agent link --server-key`. Example: truce-server init --mission smm-east
    Init {
        /// The mission's name, in the log's origin line (letters, digits, '.', '_', '-').
        #[arg(long, value_name = "NAME", default_value = truce_shared::log::DEFAULT_MISSION)]
        mission: String,
    },
    /// Print the log's public key, its fingerprint and its signed-note verifier key.
    ///
    /// The coordinator hands the fingerprint to monitors (`truce-agent link --server-key`) and the
    /// verifier key to auditors.
    Key,
    /// The transparency log: its latest checkpoint, its entries, inclusion proofs.
    #[command(subcommand)]
    Log(LogCmd),
    /// Replay the log and check the store and any checkpoints against it.
    ///
    /// Recomputes the tree and the record (reports and their status, refused bytes, devices,
    /// forks) from the log's entries and compares them with the store, and each checkpoint
    /// given (e.g. collected from monitors' laptops) with the log. Exits 1 naming each
    /// discrepancy. Example:
    ///   truce-server audit --checkpoint laptop-07.checkpoint --checkpoint laptop-12.checkpoint
    Audit {
        /// A signed checkpoint to check against the log (repeatable).
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
    },
    /// Serve agents over mutual TLS until SIGTERM or SIGINT.
    ///
    /// Example: truce-server run --listen 0.0.0.0:4433 --ca ca.pem --cert server.pem --key server.key --crl crl.pem
    Run(RunArgs),
    /// Enrol, list and revoke devices (the laptops' report keys).
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Ingest bundles (sneaker-net) exactly as if they had come over the wire.
    ///
    /// Reports get the answers they would get over the wire. A bundle's evidence files are
    /// stored as an upload's are: only a file a stored report names, with the size it signed,
    /// whose bytes hash to the signed SHA-256, within the size limit and the quota. Exits 1 if
    /// a file or frame could not be read. Example:
    ///   truce-server import /media/usb/laptop-07.truceb
    Import {
        /// Bundle files: TRUCEB02 from `truce-agent bundle export` (reports, then evidence),
        /// TRUCEB01 from older agents, or TRUCEB02 from a server's `export --format bundle` (its
        /// log items are passed over: this server logs each report in its own log).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Largest evidence file taken, in bytes.
        #[arg(long, value_name = "BYTES", default_value_t = crate::evidence::MAX_EVIDENCE_SIZE)]
        max_evidence_size: u64,
        /// All evidence held and partly uploaded, in bytes; past it files are refused with the
        /// reason (reports are still imported).
        #[arg(long, value_name = "BYTES", default_value_t = crate::evidence::EVIDENCE_QUOTA)]
        evidence_quota: u64,
    },
    /// Export reports for investigators: CSV, JSON Lines, GeoJSON or a bundle.
    ///
    /// Verified reports only, latest version of each, none disputed, unless --status, --history
    /// or --include-disputed say otherwise. Examples:
    ///   truce-server export --format csv --out reports.csv
    ///   truce-server export --format geojson --since 2026-11-20T00:00:00Z --category shelling --out shelling.geojson
    ///   truce-server export --format bundle --out evidence.truceb --devices-out evidence.devices.jsonl
    Export(ExportArgs),
    /// Re-verify a bundle offline, with no database: each report's outcome, then the totals.
    ///
    /// A bundle from `export --format bundle` also carries the log's signed checkpoint and each
    /// report's inclusion proof: each report is said to be proven in the log, or not and why.
    /// Exits 1 if any report fails or is not proven. Example:
    ///   truce-server verify evidence.truceb --devices evidence.devices.jsonl --log-key abcd-ef01-2345-6789
    Verify {
        /// The bundle (TRUCEB01 or TRUCEB02) to check.
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        /// The enrolled devices (from `export --devices-out` or `device list --json`): a report of
        /// any other key fails as "unknown device".
        #[arg(long, value_name = "FILE")]
        devices: Option<PathBuf>,
        /// The server's log key (its fingerprint, as `truce-server key` prints it, or the 64-hex
        /// public key): a version-2 bundle's checkpoint must be signed by it. Without it the
        /// checkpoint is checked with the key the bundle names, and said to be unpinned.
        #[arg(long, value_name = "FINGERPRINT|HEX")]
        log_key: Option<String>,
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
    /// Move a server's SQLite store into a PostgreSQL database (several servers can then share it).
    ///
    /// Copies devices, reports (in arrival order), rejections, forks and last sessions the
    /// database lacks, in one transaction, then groups the reports into incidents again. Running
    /// it twice copies nothing twice. Stop the server first; the SQLite file is only read (an
    /// older file's schema is first brought up to date, as any command would).
    /// Example:
    ///   truce-server migrate --from /var/lib/truce-server --to postgres://truce@db.example/truce
    Migrate {
        /// The data directory whose truce.sqlite is moved.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The PostgreSQL database to move it into (its schema is made if needed).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Print shell completions to stdout: `truce-server completions bash > /etc/bash_completion.d/truce-server`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout: `truce-server man > truce-server.1`.
    Man,
}

/// `log` subcommands.
#[derive(Subcommand, Debug)]
pub enum LogCmd {
    /// Print the latest signed checkpoint (C2SP tlog-checkpoint in a signed note).
    Checkpoint,
    /// Write every entry, one JSON line each: index, entry bytes (hex), leaf hash (hex).
    Entries {
        /// Where to write them ("-" for stdout).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the inclusion proof (RFC 9162) of a report's entry in the latest checkpoint.
    Prove {
        /// The report id (64 hex).
        #[arg(value_name = "ID", value_parser = parse_key)]
        id: Bytes32,
    },
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

/// `run` flags. Each may also come from the environment (`TRUCE_SERVER_` and the flag's name) or
/// from the config file (the flag's name with `_`); a flag beats the environment, which beats the
/// file, which beats the default. None has a clap default, so an absent flag never hides the file.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Address to listen on (required here or in the config file).
    #[arg(long, value_name = "ADDR", env = "TRUCE_SERVER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The mission CA certificate (PEM): only clients it signed may connect.
    #[arg(long, value_name = "FILE", env = "TRUCE_SERVER_CA")]
    pub ca: Option<PathBuf>,
    /// This server's certificate (PEM).
    #[arg(long, value_name = "FILE", env = "TRUCE_SERVER_CERT")]
    pub cert: Option<PathBuf>,
    /// This server's private key (PEM).
    #[arg(long, value_name = "FILE", env = "TRUCE_SERVER_KEY")]
    pub key: Option<PathBuf>,
    /// A certificate revocation list (PEM), repeatable: revoked laptops fail the handshake.
    /// Required, unless --no-crl says to run without one. Read again on SIGHUP and when the
    /// file changes; its nextUpdate must be in the future.
    #[arg(long, value_name = "FILE", env = "TRUCE_SERVER_CRL")]
    pub crl: Vec<PathBuf>,
    /// Run with no CRL at all, so a revoked laptop can still connect (trials only).
    #[arg(long, env = "TRUCE_SERVER_NO_CRL")]
    pub no_crl: bool,
    /// Seconds between looks at the --crl files: a changed file is read again, as on SIGHUP
    /// (a stale CRL, or one with a lower CRL number, is refused and the one in force kept).
    #[arg(long, value_name = "SECS", default_value_t = truce_shared::limits::CRL_CHECK_INTERVAL.as_secs_f64())]
    pub crl_check_interval: f64,
    /// Largest frame in bytes; a bigger one ends the connection. Default: 4194304.
    #[arg(long, value_name = "BYTES", env = "TRUCE_SERVER_MAX_FRAME")]
    pub max_frame: Option<u32>,
    /// Most reports in one Submit (advertised to agents); more ends the connection. Default: 128.
    #[arg(long, value_name = "N", env = "TRUCE_SERVER_MAX_BATCH")]
    pub max_batch: Option<u32>,
    /// Most authenticated sessions at once; a laptop that authenticates while all are taken
    /// waits, within the handshake timeout, for one to end. Default: 4096.
    #[arg(long, value_name = "N", env = "TRUCE_SERVER_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most connections that have not finished the TLS handshake; at the budget the oldest is
    /// dropped for each new one, so a flood of them cannot keep laptops out. Default: 256.
    #[arg(long, value_name = "N", env = "TRUCE_SERVER_MAX_UNAUTHENTICATED")]
    pub max_unauthenticated: Option<usize>,
    /// Most connections that have not finished the TLS handshake from one IP address. Default: 32.
    #[arg(long, value_name = "N", env = "TRUCE_SERVER_MAX_UNAUTHENTICATED_PER_IP")]
    pub max_unauthenticated_per_ip: Option<usize>,
    /// Most sessions one client certificate may hold at once; more are refused. Default: 8.
    #[arg(long, value_name = "N", env = "TRUCE_SERVER_MAX_CONNECTIONS_PER_CERT")]
    pub max_connections_per_cert: Option<usize>,
    /// Most frame bytes all sessions may hold in memory at once; a frame that does not fit waits.
    /// Default: 268435456.
    #[arg(long, value_name = "BYTES", env = "TRUCE_SERVER_MAX_FRAME_BYTES_IN_FLIGHT")]
    pub max_frame_bytes_in_flight: Option<u64>,
    /// Seconds a client has to finish TLS and send Hello (raise it for laptops on links of a
    /// few kbit/s). Default: 3.
    #[arg(long, value_name = "SECS", env = "TRUCE_SERVER_HANDSHAKE_TIMEOUT")]
    pub handshake_timeout: Option<f64>,
    /// Seconds a connection may stay silent, or take over one frame. Default: 60.
    #[arg(long, value_name = "SECS", env = "TRUCE_SERVER_IDLE_TIMEOUT")]
    pub idle_timeout: Option<f64>,
    /// Batches verified at once. Default: one per core.
    #[arg(long, value_name = "N", env = "TRUCE_SERVER_VERIFY_THREADS")]
    pub verify_threads: Option<usize>,
    /// Serve Prometheus metrics over plain HTTP at http://ADDR/metrics (keep it on a private
    /// address: it needs no certificate). Default: not served.
    #[arg(long, value_name = "ADDR", env = "TRUCE_SERVER_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// Print the settings in force (defaults, config file, environment, flags; where each came
    /// from; the database password masked) as TOML, and exit without starting.
    #[arg(long)]
    pub print_config: bool,
    /// Most reports stored under one device key; past it the laptop's batch is refused with the
    /// reason (its reports stay on the laptop).
    #[arg(long, value_name = "N", default_value_t = truce_shared::limits::MAX_REPORTS_PER_KEY)]
    pub max_reports_per_key: u64,
    /// Most report bytes stored under one device key.
    #[arg(long, value_name = "BYTES", default_value_t = truce_shared::limits::MAX_BYTES_PER_KEY)]
    pub max_bytes_per_key: u64,
    /// Most reports (and refused bodies) stored from one client certificate.
    #[arg(long, value_name = "N", default_value_t = truce_shared::limits::MAX_REPORTS_PER_CERT)]
    pub max_reports_per_cert: u64,
    /// Most bytes stored from one client certificate.
    #[arg(long, value_name = "BYTES", default_value_t = truce_shared::limits::MAX_BYTES_PER_CERT)]
    pub max_bytes_per_cert: u64,
    /// Most reports quarantined at once (keys not enrolled or revoked), all keys together.
    #[arg(long, value_name = "N", default_value_t = truce_shared::limits::MAX_QUARANTINED)]
    pub max_quarantined: u64,
    /// Most reports of one key quarantined at once.
    #[arg(long, value_name = "N", default_value_t = truce_shared::limits::MAX_QUARANTINED_PER_KEY)]
    pub max_quarantined_per_key: u64,
    /// Bytes kept of a report that fails verification, beside its id (the hash of all of it).
    #[arg(long, value_name = "BYTES", default_value_t = truce_shared::limits::REJECTED_PREFIX)]
    pub rejected_prefix: usize,
    /// Largest evidence file taken from an upload or a bundle, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = crate::evidence::MAX_EVIDENCE_SIZE)]
    pub max_evidence_size: u64,
    /// All evidence held and partly uploaded, in bytes; past it uploads are refused with the
    /// reason (reports still flow).
    #[arg(long, value_name = "BYTES", default_value_t = crate::evidence::EVIDENCE_QUOTA)]
    pub evidence_quota: u64,
    /// Seconds after which a partly uploaded file nobody continues is removed.
    #[arg(long, value_name = "SECS", default_value_t = crate::evidence::PARTIAL_TTL.as_secs())]
    pub evidence_partial_ttl: u64,
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
    /// List enrolled and revoked devices, and when each was last heard from.
    ///
    /// For each: its last session (and the certificate it came through), its last report, the
    /// reports received in the last 24 hours and the seqs missing from its chain. Example, the
    /// laptops not heard from for a day:
    ///   truce-server device list --silent-for 24h
    List {
        /// Only devices not heard from (no session, no report) for this long: 30m, 24h, 7d.
        #[arg(long, value_name = "DURATION")]
        silent_for: Option<String>,
    },
    /// Revoke a device: its reports received from now on are quarantined.
    ///
    /// With --compromised-since, its reports recorded after that time are disputed too: kept,
    /// counted in `stats`, left out of a verified export unless --include-disputed, and marked
    /// `disputed` wherever exported. Example, a laptop seized at a checkpoint on the 20th:
    ///   truce-server device revoke KEY --reason "seized at checkpoint 4" --compromised-since 2026-11-20T06:00:00Z
    Revoke {
        /// The device's public key, 64 hex digits.
        key: String,
        /// Why ("laptop lost at checkpoint 4").
        #[arg(long)]
        reason: Option<String>,
        /// The key may have been in other hands from this time on (RFC 3339, or a date
        /// YYYY-MM-DD meaning its midnight UTC): reports recorded after it are disputed.
        #[arg(long, value_name = "TIME")]
        compromised_since: Option<String>,
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
    /// With --status verified (the default): also export disputed reports (a forked chain, or
    /// recorded after their key's --compromised-since), marked `disputed`. Other statuses
    /// always include them, marked.
    #[arg(long)]
    pub include_disputed: bool,
    /// Also write each evidence file of the exported reports that the server holds to
    /// DIR/<sha256 hex> (checked against its hash as it is copied). Rows say per attachment
    /// whether the server holds it either way.
    #[arg(long, value_name = "DIR")]
    pub evidence: Option<PathBuf>,
    /// With --format bundle: also write the device list (name and key) here, for `verify --devices`.
    #[arg(long, value_name = "FILE")]
    pub devices_out: Option<PathBuf>,
}

pub(super) fn parse_key(text: &str) -> Result<Bytes32> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| Bytes32::try_from(b).ok())
        .with_context(|| format!("{text:?} is not a device key: give the 64 hex digits `truce-agent key` prints"))
}

pub(super) fn parse_bbox(text: &str) -> Result<[f64; 4]> {
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

pub(super) fn parse_category(text: &str) -> Result<truce_shared::Category> {
    text.trim().parse().ok().with_context(|| {
        format!("--category {text:?} is not a category: use one of {}", truce_shared::Category::NAMES.join(", "))
    })
}

pub(super) fn parse_time(text: &str, flag: &str) -> Result<i64> {
    truce_shared::time::parse_time(text, truce_shared::time::now_ms())
        .map_err(|e| anyhow::anyhow!("--{flag} {text:?}: {e}"))
}
