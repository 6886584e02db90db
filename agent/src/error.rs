//! The agent's one error type, [`AgentError`].
//!
//! Every variant's message is one line a monitor can act on: what went wrong
//! and what to do. Messages never carry key material or report payloads: a
//! bad key file is reported by path, a bad report by id.

use std::path::{Path, PathBuf};

use truce_shared::ValidationError;

use crate::sync::error::SyncError;

/// Everything that can go wrong in the agent, one variant per situation a
/// person has to handle differently.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A command other than `init` ran before `init` (or after `wipe`).
    #[error("no device key in {}: run `truce-agent init` first", .0.display())]
    NotInitialised(PathBuf),

    /// `init` found a key already there; it is never overwritten.
    #[error(
        "a device key already exists in {}: refusing to overwrite it (use `truce-agent key` to see it, or choose another --data-dir)",
        .0.display()
    )]
    AlreadyInitialised(PathBuf),

    /// The key file exists but is not a key this agent wrote.
    #[error("the device key file {} is damaged or not a Truce key: restore it from a backup", .0.display())]
    BadKeyFile(PathBuf),

    /// The data dir was made before keys were sealed (or its conversion
    /// was interrupted); the first command converts it.
    #[error(
        "{} was made by an older truce-agent that kept keys and reports in clear: run any command on a terminal to choose a passphrase and convert it, or give --passphrase-file FILE (or --no-passphrase, for trials)",
        .0.display()
    )]
    NeedsUpgrade(PathBuf),

    /// The passphrase did not unseal the keyring. The same error whatever
    /// failed inside (a wrong passphrase, a damaged or foreign keyring), so
    /// a guesser learns nothing from it.
    #[error("wrong passphrase: nothing was changed (it is the one chosen at `truce-agent init` or the last `truce-agent passphrase`)")]
    WrongPassphrase,

    /// The keys are sealed and no passphrase was given.
    #[error(
        "this laptop's keys are sealed: run the command on a terminal to be asked for the passphrase, or give --passphrase-file FILE (or TRUCE_PASSPHRASE_FILE)"
    )]
    PassphraseNeeded,

    /// A value typed on the command line or at a prompt could not be read.
    #[error("{field}: {message}")]
    Input {
        /// The flag or field, as the monitor typed it (`--lat`, `category`).
        field: &'static str,
        /// What is wrong and how to write it.
        message: String,
    },

    /// The observation breaks a rule of DESIGN §2.1 (the message names the field).
    #[error("{0}")]
    Invalid(#[from] ValidationError),

    /// An attachment could not be read or stored.
    #[error("--attach {}: {message}", path.display())]
    Attachment {
        /// The file the monitor named.
        path: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },

    /// No report in the queue matches the id or prefix.
    #[error("no report {0} in this queue: check the id with `truce-agent list`")]
    NotFound(String),

    /// `checkpoint` before any sync's proofs verified.
    #[error("no verified checkpoint yet: one is kept after the first sync whose proofs verify")]
    NoCheckpoint,

    /// More than one report matches the prefix.
    #[error("the prefix {0} matches more than one report: give more hex digits of the id")]
    Ambiguous(String),

    /// An id or prefix that is not hex.
    #[error("{0:?} is not a report id: give 1 to 64 hex digits of an id shown by `truce-agent list`")]
    BadId(String),

    /// `sync` ran without `link`.
    #[error(
        "this laptop is not linked to a server: run `truce-agent link --server HOST:PORT --ca FILE --cert FILE --key FILE` first"
    )]
    NotLinked,

    /// A certificate or key given to `link` (or found in the data dir) does not parse.
    #[error("{}: {message}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// The queue database failed or is damaged.
    #[error("queue database {}: {source}", path.display())]
    Db {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },

    /// Another process held the queue's write lock for longer than the busy timeout.
    #[error("queue database {} stayed locked by another truce-agent for 30 s: wait for it to finish and try again", .0.display())]
    Busy(PathBuf),

    /// The queue holds a row this agent could not have written.
    #[error("queue database is damaged: {0}")]
    Corrupt(String),

    /// A file or directory operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What the agent was doing ("cannot create", "cannot read").
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },

    /// Reading from the terminal or writing output failed.
    #[error("terminal: {0}")]
    Terminal(std::io::Error),

    /// The monitor ended interactive entry (Ctrl-D) before it was complete.
    #[error("cancelled: nothing was recorded")]
    Cancelled,

    /// Sync could not deliver (the variant says why and whether retrying
    /// can help: [`SyncError::needs_person`]).
    #[error("{0}")]
    Sync(#[from] SyncError),

    /// Reports recorded while a sync ran are still pending.
    #[error("{0} report(s) still pending: run sync again")]
    StillPending(u64),

    /// The TLS client configuration could not be built.
    #[error("TLS setup failed: {0}")]
    TlsSetup(String),

    /// The config file (`truce-agent.toml`, or `--config FILE`) could not
    /// be read, or holds an unknown key or a bad value.
    #[error("config file {}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// The line and key at fault, and what is wrong.
        message: String,
    },
}

impl AgentError {
    /// An I/O error with what was being done and on which path.
    pub fn io(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        AgentError::Io { what, path: path.to_path_buf(), source }
    }

    /// A bad value for a field.
    pub fn input(field: &'static str, message: impl Into<String>) -> Self {
        AgentError::Input { field, message: message.into() }
    }
}

impl From<truce_shared::fs::FsError> for AgentError {
    /// A file operation of `truce_shared::fs`, worded as the agent's others.
    fn from(e: truce_shared::fs::FsError) -> Self {
        AgentError::Io { what: e.step.cannot(), path: e.path, source: e.source }
    }
}

impl From<truce_shared::pem::PemError> for AgentError {
    /// A certificate or key file that gave nothing usable, with what to give
    /// instead; never the file's content.
    fn from(e: truce_shared::pem::PemError) -> Self {
        use truce_shared::pem::{PemError, PemKind};
        let (path, message) = match e {
            PemError::Read { path, source } => return AgentError::Io { what: "cannot read", path, source },
            PemError::Invalid { path, kind: PemKind::Certificates, .. } => {
                (path, "not a valid PEM file: give a certificate in PEM form (-----BEGIN CERTIFICATE-----)")
            }
            PemError::Missing { path, kind: PemKind::Certificates } => {
                (path, "holds no certificate: give a certificate in PEM form (-----BEGIN CERTIFICATE-----)")
            }
            PemError::Invalid { path, kind: PemKind::PrivateKey, .. }
            | PemError::Missing { path, kind: PemKind::PrivateKey } => {
                (path, "holds no private key: give the client key in PEM form (-----BEGIN PRIVATE KEY-----)")
            }
            PemError::Invalid { path, kind: PemKind::Crls, .. } | PemError::Missing { path, kind: PemKind::Crls } => {
                (path, "holds no CRL: give a CRL in PEM form (-----BEGIN X509 CRL-----)")
            }
        };
        AgentError::Pem { path, message: message.into() }
    }
}

/// The agent's result type.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;
