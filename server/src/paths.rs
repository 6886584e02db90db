//! Where the server keeps its files, and the receipt key.
//!
//! ```text
//! DIR/             0700
//!   server.key     0600  the Ed25519 receipt key (32-byte seed)
//!   truce.sqlite   the store (plus -wal and -shm)
//! ```

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;

/// The server's data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// `--data-dir`, else `TRUCE_SERVER_DIR` (clap reads it), else the
    /// platform data dir.
    pub fn resolve(flag: Option<PathBuf>) -> Result<DataDir> {
        if let Some(root) = flag {
            return Ok(DataDir { root });
        }
        directories::ProjectDirs::from("org", "Truce", "truce-server")
            .map(|p| DataDir { root: p.data_dir().to_path_buf() })
            .context("no home directory to keep data in: pass --data-dir DIR")
    }

    /// A data dir at `root`.
    pub fn new(root: impl Into<PathBuf>) -> DataDir {
        DataDir { root: root.into() }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The receipt key file.
    pub fn key_file(&self) -> PathBuf {
        self.root.join("server.key")
    }

    /// The database file.
    pub fn db_file(&self) -> PathBuf {
        self.root.join("truce.sqlite")
    }

    /// Makes the key and the database; refuses to overwrite a key.
    pub fn init(&self) -> Result<SigningKey> {
        if self.key_file().exists() {
            bail!(
                "{} already exists: this server is initialised (refusing to overwrite its key)",
                self.key_file().display()
            );
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .with_context(|| format!("cannot create {}", self.root.display()))?;
        let key = truce_shared::signing::generate_key();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.key_file())
            .with_context(|| format!("cannot create {}", self.key_file().display()))?;
        f.write_all(key.as_bytes())?;
        f.sync_all()?;
        crate::store::Store::open(&self.db_file())?;
        Ok(key)
    }

    /// Loads the receipt key.
    pub fn load_key(&self) -> Result<SigningKey> {
        let path = self.key_file();
        if !path.exists() {
            bail!("no server key in {}: run `truce-server init` first", self.root.display());
        }
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let seed: [u8; 32] =
            bytes.try_into().map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()))?;
        Ok(SigningKey::from_bytes(&seed))
    }

    /// Opens the store of an initialised server.
    pub fn open_store(&self) -> Result<crate::store::Store> {
        self.load_key()?;
        Ok(crate::store::Store::open(&self.db_file())?)
    }
}
