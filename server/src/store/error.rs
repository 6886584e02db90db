//! What can go wrong in the store, at its boundary.

/// A storage failure. Nothing that failed to commit is ever acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused: disk full, file unreadable, locked for too long.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer truce-server.
    #[error(
        "the database has schema version {found} but this truce-server reads up to {supported}: upgrade truce-server"
    )]
    TooNew {
        /// `user_version` in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
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

impl From<rusqlite::Error> for DeviceError {
    fn from(e: rusqlite::Error) -> Self {
        DeviceError::Store(e.into())
    }
}
