//! The command line's shape: every command and flag, as clap parses them.
//!
//! Only the shape lives here. Values are taken as text and parsed by
//! [`crate::input`]'s parsers beside each command (`record.rs`, `prune.rs`),
//! not by clap, so a bad value gives the same one-line message, naming the
//! flag and the fix, whether it came from a flag or a prompt. Completions
//! and the manual page are made from these definitions (`help.rs`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The environment variable that names a passphrase file.
pub const ENV_PASSPHRASE_FILE: &str = "TRUCE_PASSPHRASE_FILE";

/// truce-agent: signed field reports for ceasefire monitors.
#[derive(Debug, Parser)]
#[command(name = "truce-agent", version, about, max_term_width = 100)]
pub struct Cli {
    /// Where the key, queue and certificates live (default: the platform's
    /// data directory, e.g. ~/.local/share/truce-agent).
    #[arg(long, global = true, value_name = "DIR", env = crate::paths::ENV_DIR)]
    pub data_dir: Option<PathBuf>,

    /// The config file (TOML). Default: truce-agent.toml in the data directory, if it is there.
    /// Flags and environment variables override what it says.
    #[arg(long, global = true, value_name = "FILE", env = "TRUCE_AGENT_CONFIG")]
    pub config: Option<PathBuf>,

    /// Print one JSON document (JSON Lines for `list`) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Read the passphrase from this file (all of it, less one trailing
    /// newline) instead of asking on the terminal: for scripts and `sync --watch` services. Keep the
    /// file on an encrypted or removable disk, never beside the data dir.
    #[arg(long, global = true, value_name = "FILE", env = ENV_PASSPHRASE_FILE)]
    pub passphrase_file: Option<PathBuf>,

    /// With `init` (or converting an old data dir): protect nothing with a
    /// passphrase. For trials only: anyone with the disk can then read the
    /// reports and sign as this laptop, and every command says so.
    #[arg(long, global = true)]
    pub no_passphrase: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make the device key and the queue, sealed under a passphrase asked twice;
    /// print the public key and fingerprint.
    Init {
        /// How long delivered reports keep their bodies on this laptop: 0 (at
        /// once), 90m, 12h, 7d (the default).
        #[arg(long, value_name = "DURATION")]
        keep_delivered: Option<String>,
    },
    /// Store how to reach the server: address, mission CA, client certificate and key.
    Link(LinkArgs),
    /// Sign and store a report (asks for each field when run on a terminal with no flags).
    Record(Box<RecordArgs>),
    /// The queue, newest first.
    List {
        /// Only reports in this state: pending, delivered, quarantined or rejected.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
    },
    /// One report (a unique prefix of the id is enough), its state, the server's answer and receipt.
    Show {
        /// Report id or unique prefix.
        id: String,
    },
    /// Counts by state, chain head, server, last sync.
    Status,
    /// Print the server's log checkpoint this laptop last verified (a signed note).
    ///
    /// Hand it to the commission's auditors: `truce-server audit --checkpoint FILE` proves
    /// the server's log still contains what this laptop saw. Example:
    ///   truce-agent checkpoint > laptop-07.checkpoint
    Checkpoint,
    /// Deliver pending reports to the linked server.
    Sync(SyncArgs),
    /// Sneaker-net bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// The device's public key and fingerprint.
    Key,
    /// Change the passphrase (the queue is not re-encrypted: only the keyring changes).
    Passphrase {
        /// Read the new passphrase from this file instead of asking twice.
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// Remove the passphrase (trials only: the keys are then not protected).
        #[arg(long, conflicts_with = "new_passphrase_file")]
        remove: bool,
    },
    /// Delete the bodies and evidence of reports the server holds, after the keep period.
    Prune {
        /// Change the keep period first (stored in the data dir): 0, 90m, 12h, 7d.
        #[arg(long, value_name = "DURATION")]
        keep_delivered: Option<String>,
    },
    /// Destroy this laptop's keys, then its queue and evidence copies, for good.
    Wipe {
        /// Do not ask for the typed confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Print shell completions to stdout: `truce-agent completions bash > /etc/bash_completion.d/truce-agent`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout: `truce-agent man > truce-agent.1`.
    Man,
}

/// `link` flags.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The collection server, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    /// The mission CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// This laptop's client certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// This laptop's client private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The server's log key as the coordinator gave it: its fingerprint
    /// (abcd-ef01-2345-6789) or the 64-hex public key. Without it, the key
    /// the server shows at the first sync is pinned and printed.
    #[arg(long, value_name = "FINGERPRINT")]
    pub server_key: Option<String>,
}

/// `sync` flags.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Keep running: deliver new records as they are made, retry while offline.
    #[arg(long)]
    pub watch: bool,
    /// Use this server instead of the linked one (same certificates).
    #[arg(long, value_name = "HOST:PORT", env = "TRUCE_AGENT_SERVER")]
    pub server: Option<String>,
    /// Seconds allowed for the TCP connection to the server. Default: 10.
    #[arg(long, value_name = "SECS", env = "TRUCE_AGENT_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<f64>,
    /// Print the settings in force (defaults, config file, environment, flags, and where each
    /// came from) as TOML, and exit without syncing.
    #[arg(long)]
    pub print_config: bool,
}

/// `bundle` subcommands.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Write pending (or all) reports, and the evidence files the server lacks, to a bundle file
    /// for a USB stick.
    ///
    /// The bundle (TRUCEB02) holds the reports, then each evidence file they name that the
    /// server does not hold yet, in clear: keep the stick as you keep the laptop. A coordinator
    /// runs `truce-server import FILE`; reports stay pending here, and files not yet sent, until
    /// a sync hears the server holds them.
    Export {
        /// The bundle file to write.
        file: PathBuf,
        /// Every report and every evidence file still on this laptop, not only what the server
        /// lacks.
        #[arg(long)]
        all: bool,
        /// Reports only: leave the evidence files out (a small stick, or files too large for it).
        #[arg(long)]
        no_evidence: bool,
    },
}

/// `record` flags. All optional: with none, on a terminal, record asks.
#[derive(Debug, Default, Args)]
pub struct RecordArgs {
    /// What happened: explosion, shelling, small-arms-fire, heavy-weapons, airstrike, drone,
    /// mine, casualty, damage, movement-restriction, projectile-in-flight, muzzle-flash,
    /// illumination-flare, nothing-observed, other.
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
    /// Latitude of the monitor, decimal degrees (WGS84).
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    pub lat: Option<String>,
    /// Longitude of the monitor, decimal degrees (WGS84).
    #[arg(long, value_name = "Y", allow_hyphen_values = true)]
    pub lon: Option<String>,
    /// Position accuracy in metres.
    #[arg(long, value_name = "M", allow_hyphen_values = true)]
    pub accuracy: Option<String>,
    /// When it happened: now (default), -15m, -2h, or RFC 3339 (2026-11-22T09:15:00Z).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// End of a continuous event or of a nothing-observed watch (same forms as --at).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Direction of the event from the monitor: degrees 0-359 or a compass point (NNW).
    #[arg(long, value_name = "D", allow_hyphen_values = true)]
    pub bearing: Option<String>,
    /// Distance to the event: metres MIN or MIN-MAX (3000-5000), or km (3-5km, 2.5km).
    #[arg(long, value_name = "MIN[-MAX]", allow_hyphen_values = true)]
    pub distance: Option<String>,
    /// impact, outgoing, airburst or undetermined.
    #[arg(long, value_name = "E")]
    pub effect: Option<String>,
    /// Assessed weapon ("152mm artillery"), at most 128 bytes.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub weapon: Option<String>,
    /// How many (explosions, bursts, vehicles); exact unless --about or --at-least.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub count: Option<String>,
    /// The count is approximate.
    #[arg(long, requires = "count", conflicts_with = "at_least")]
    pub about: bool,
    /// The count is a lower bound.
    #[arg(long, requires = "count")]
    pub at_least: bool,
    /// How you know: seen (default), heard or reported.
    #[arg(long, value_name = "B")]
    pub basis: Option<String>,
    /// Free text, at most 8 KiB.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub description: Option<String>,
    /// Evidence files: hashed and copied into the data dir.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub attach: Vec<PathBuf>,
    /// Id (or unique prefix) of an earlier report of this device that this one corrects.
    #[arg(long, value_name = "ID")]
    pub amends: Option<String>,
}
