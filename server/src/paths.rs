//! Where the server keeps its files, and its receipt key.
//!
//! ```text
//! DIR/             0700   --data-dir, else TRUCE_SERVER_DIR, else the platform data dir
//!   server.key     0600   the Ed25519 receipt key (its 32-byte seed)
//!   truce.sqlite          the store (with -wal and -shm beside it), unless
//!                         --database (TRUCE_DATABASE_URL) names a PostgreSQL database
//!   truce-server.toml     the config file, if the operator wrote one (read by
//!                         `cli/config_file.rs`, never written)
//! ```
//!
//! `init` makes both and never overwrites a key: receipts that agents hold
//! were signed with it, and a new key would make them unverifiable.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use truce_shared::fs::{self, Access, ExistingDir, FsError};

use crate::store::{Database, Store, StoreError};

/// Why the data dir or the receipt key could not be used. Each message says
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// No `--data-dir`, no `TRUCE_SERVER_DIR` and no home directory.
    #[error("no home directory to keep data in: pass --data-dir DIR or set TRUCE_SERVER_DIR")]
    NoHome,
    /// `init` on an initialised server.
    #[error("{} already exists: this server is initialised (its key signs the receipts agents hold, so it is never overwritten)", .0.display())]
    AlreadyInitialised(PathBuf),
    /// Any command before `init`.
    #[error("no server key in {}: run `truce-server init` first", .0.display())]
    NotInitialised(PathBuf),
    /// The key file is not a key.
    #[error("{} is not a truce-server key (expected 32 bytes): restore it from backup", .0.display())]
    BadKey(PathBuf),
    /// A file or directory could not be made or read.
    #[error("cannot use {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn fs_err(e: FsError) -> DataDirError {
    DataDirError::Io { path: e.path, source: e.source }
}

/// The server's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
    /// `--database`, when the store is not the SQLite file in `root`.
    database: Option<Database>,
}

impl DataDir {
    /// `--data-dir` (clap fills it from `TRUCE_SERVER_DIR` too), else the
    /// platform's data directory.
    pub fn resolve(flag: Option<PathBuf>) -> Result<DataDir, DataDirError> {
        if let Some(root) = flag {
            return Ok(DataDir { root, database: None });
        }
        directories::ProjectDirs::from("org", "Truce", "truce-server")
            .map(|p| DataDir { root: p.data_dir().to_path_buf(), database: None })
            .ok_or(DataDirError::NoHome)
    }

    /// A data dir at `root`.
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into(), database: None }
    }

    /// The same data dir with its store in `database` (`--database`)
    /// instead of its own SQLite file.
    pub fn with_database(self, database: Option<Database>) -> DataDir {
        DataDir { database, ..self }
    }

    /// Where the store is: `--database`, else `truce.sqlite` in the dir.
    pub fn database(&self) -> Database {
        self.database.clone().unwrap_or_else(|| Database::Sqlite(self.db_file()))
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The receipt key file.
    pub fn key_file(&self) -> PathBuf {
        self.root.join("server.key")
    }

    /// The log key file: the seed of the key that signs the transparency
    /// log's checkpoints and every receipt (DESIGN §9).
    pub fn log_key_file(&self) -> PathBuf {
        self.root.join("log.key")
    }

    /// The database file.
    /// Where evidence files are kept ([`crate::evidence`]).
    pub fn evidence_dir(&self) -> PathBuf {
        self.root.join("evidence")
    }

    /// The SQLite database file (when no `--database` is given).
    pub fn db_file(&self) -> PathBuf {
        self.root.join("truce.sqlite")
    }

    /// Makes the directory (0700), the receipt key and the log key (0600)
    /// and the database, whose log is set up for `mission`. Refuses to
    /// overwrite a key.
    pub fn init(&self, mission: &str) -> Result<SigningKey, DataDirError> {
        let key_file = self.key_file();
        if key_file.exists() {
            return Err(DataDirError::AlreadyInitialised(key_file));
        }
        // An existing directory is tightened: it is about to hold the key.
        fs::create_private_dir(&self.root, ExistingDir::Tighten).map_err(fs_err)?;
        // The store first: a database that cannot be reached leaves no key
        // behind to make the next `init` refuse.
        Store::open(&self.database())?;
        let key = truce_shared::signing::generate_key();
        // A new file only: two `init`s racing cannot both write a key.
        fs::write_new(&key_file, key.as_bytes(), Access::Private).map_err(|e| match e.already_exists() {
            true => DataDirError::AlreadyInitialised(key_file.clone()),
            false => fs_err(e),
        })?;
        let seed = self.load_log_seed()?;
        Store::open(&self.database())?.open_log(&seed, mission)?;
        Ok(key)
    }

    /// Loads the log key's seed, making it (0600) if this data dir has none
    /// yet: a server initialised before the log gets one on upgrade.
    pub fn load_log_seed(&self) -> Result<[u8; 32], DataDirError> {
        let path = self.log_key_file();
        match std::fs::read(&path) {
            Ok(bytes) => bytes.try_into().map_err(|_| DataDirError::BadKey(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.load_key()?; // only an initialised dir gets one
                let seed = truce_shared::signing::generate_key().to_bytes();
                match fs::write_new(&path, &seed, Access::Private) {
                    Ok(()) => {
                        tracing::info!(path = %path.display(), "made the log key");
                        Ok(seed)
                    }
                    // Another process made it first: take that one.
                    Err(e) if e.already_exists() => self.load_log_seed(),
                    Err(e) => Err(fs_err(e)),
                }
            }
            Err(e) => Err(DataDirError::Io { path, source: e }),
        }
    }

    /// Loads the receipt key.
    pub fn load_key(&self) -> Result<SigningKey, DataDirError> {
        let path = self.key_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataDirError::NotInitialised(self.root.clone()))
            }
            Err(e) => return Err(DataDirError::Io { path, source: e }),
        };
        let seed: [u8; 32] = bytes.try_into().map_err(|_| DataDirError::BadKey(path))?;
        Ok(SigningKey::from_bytes(&seed))
    }

    /// Opens the store of an initialised server, with its log key: every
    /// change a command makes is logged.
    pub fn open_store(&self) -> Result<Store, DataDirError> {
        self.load_key()?;
        let seed = self.load_log_seed()?;
        let mut store = Store::open(&self.database())?;
        store.open_log(&seed, truce_shared::log::DEFAULT_MISSION)?;
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_makes_a_private_key_once() {
        let t = tempfile::tempdir().unwrap();
        let d = DataDir::new(t.path().join("srv"));
        assert!(matches!(d.open_store(), Err(DataDirError::NotInitialised(_))));
        let k = d.init(truce_shared::log::DEFAULT_MISSION).unwrap();
        assert_eq!(d.load_key().unwrap().to_bytes(), k.to_bytes());
        let mode = std::fs::metadata(d.key_file()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mode = std::fs::metadata(d.root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(matches!(d.init("truce"), Err(DataDirError::AlreadyInitialised(_))));
        let mode = std::fs::metadata(d.log_key_file()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(d.load_key().unwrap().to_bytes(), k.to_bytes());
    }
}
