//! Where the agent keeps its files, and how the data directory is chosen.
//!
//! ```text
//! DIR/                  0700
//!   device.key          0600  the Ed25519 secret key (the 32-byte seed, raw)
//!   queue.sqlite        the queue (WAL: queue.sqlite-wal, queue.sqlite-shm)
//!   attachments/        evidence files, named by the SHA-256 of their content
//!   link/               0700  written by `link`
//!     ca.pem                  the mission CA (the only trusted root)
//!     client.pem              this laptop's client certificate chain
//!     client.key        0600  its private key
//! ```
//!
//! The server address lives in the queue's `meta` table, next to the rest of
//! the agent's state, so `link` is one place to look.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{AgentError, Result};

/// The environment variable that overrides the default data directory.
pub const ENV_DIR: &str = "TRUCE_AGENT_DIR";

/// The paths inside one agent data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root` (nothing is created or checked).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `--data-dir` if given, else `TRUCE_AGENT_DIR`, else the platform's
    /// data directory for Truce (`~/.local/share/truce-agent` on Linux).
    pub fn resolve(flag: Option<PathBuf>) -> Result<Self> {
        if let Some(dir) = flag {
            return Ok(Self::new(dir));
        }
        if let Some(dir) = std::env::var_os(ENV_DIR).filter(|d| !d.is_empty()) {
            return Ok(Self::new(PathBuf::from(dir)));
        }
        directories::ProjectDirs::from("org", "Truce", "truce-agent").map(|p| Self::new(p.data_dir())).ok_or_else(
            || {
                AgentError::input(
                    "--data-dir",
                    "no home directory to keep data in: pass --data-dir DIR or set TRUCE_AGENT_DIR",
                )
            },
        )
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The device key file.
    pub fn key_file(&self) -> PathBuf {
        self.root.join("device.key")
    }

    /// The queue database.
    pub fn queue_file(&self) -> PathBuf {
        self.root.join("queue.sqlite")
    }

    /// Where attachment copies live.
    pub fn attachments_dir(&self) -> PathBuf {
        self.root.join("attachments")
    }

    /// The stored copy of an attachment with this SHA-256.
    pub fn attachment(&self, sha256: &[u8; 32]) -> PathBuf {
        self.attachments_dir().join(hex::encode(sha256))
    }

    /// Where `link` keeps certificates.
    pub fn link_dir(&self) -> PathBuf {
        self.root.join("link")
    }

    /// The mission CA certificate.
    pub fn link_ca(&self) -> PathBuf {
        self.link_dir().join("ca.pem")
    }

    /// This laptop's client certificate chain.
    pub fn link_cert(&self) -> PathBuf {
        self.link_dir().join("client.pem")
    }

    /// This laptop's client private key.
    pub fn link_key(&self) -> PathBuf {
        self.link_dir().join("client.key")
    }
}

/// Creates `dir` (and missing parents) with mode 0700, or tightens an
/// existing empty-of-secrets directory to 0700. The mode is given at
/// creation so there is no moment when the directory is open to others.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) => return Err(AgentError::io("cannot create directory", dir, e)),
    }
    // `recursive` leaves an existing directory's mode alone; a directory that
    // will hold secrets must not be readable by others.
    let meta = fs::metadata(dir).map_err(|e| AgentError::io("cannot read", dir, e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| AgentError::io("cannot restrict permissions of", dir, e))?;
    }
    Ok(())
}

/// Makes a rename or creation in `dir` durable (fsync of the directory).
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| AgentError::io("cannot sync directory", dir, e))
}
