//! What can go wrong in the store, at its boundary. No database driver's
//! type appears here: the cause is kept as a message and a source.

use super::Backend;

/// A storage failure. Nothing that failed to commit is ever acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused: disk full, file unreadable, locked for too
    /// long, connection lost, a constraint broken.
    #[error("database error: {detail}")]
    Database {
        /// Which database.
        backend: Backend,
        /// The driver's error and its causes, on one line (PostgreSQL's
        /// own message is a cause: the driver says only "db error").
        detail: String,
    },
    /// The database cannot be reached (PostgreSQL down, refused, wrong
    /// password).
    #[error("cannot reach the database {0}")]
    Unavailable(String),
    /// A `--database` value or its TLS settings cannot be used.
    #[error("{0}")]
    Config(String),
    /// A column held something the schema does not allow: the database
    /// was damaged or edited by hand.
    #[error("a stored row is damaged: column {index} holds {problem}")]
    Column {
        /// The column's index in the query.
        index: usize,
        /// What was found.
        problem: &'static str,
    },
    /// The transparency log does not agree with itself or the store (an
    /// entry, a stored hash or a report's entry index missing).
    #[error("the log is damaged: {0}")]
    Log(String),
    /// A reader's callback stopped a stream; the caller gets the
    /// callback's own error instead of this one.
    #[error("the reader stopped")]
    Stopped,
    /// The database was written by a newer truce-server.
    #[error(
        "the database has schema version {found} but this truce-server reads up to {supported}: upgrade truce-server"
    )]
    TooNew {
        /// The version the database holds.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database { backend: Backend::Sqlite, detail: e.to_string() }
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database { backend: Backend::Postgres, detail: super::postgres::causes(&e) }
    }
}

/// Why a device could not be enrolled or revoked.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The key was revoked; revocation is permanent.
    #[error("this device was revoked at {}: a revoked key stays revoked; the laptop needs a new key", truce_shared::time::format_ms(*revoked_at))]
    Revoked {
        /// When it was revoked, unix ms.
        revoked_at: i64,
    },
    /// `revoke` of a key that was never enrolled.
    #[error("this device is not enrolled: see `truce-server device list`")]
    NotEnrolled,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
