//! Where the agent keeps its files, and how the data directory is chosen.
//!
//! ```text
//! DIR/                  0700
//!   keyring             0600  the device seed and the data key, sealed under
//!                             the passphrase (see `vault`)
//!   queue.sqlite        0600  the queue; report bodies sealed under the data
//!                             key (WAL: queue.sqlite-wal, queue.sqlite-shm)
//!   attachments/        0700  evidence files, sealed, under keyed names
//!   link/               0700  written by `link`
//!     ca.pem                  the mission CA (the only trusted root)
//!     client.pem              this laptop's client certificate chain
//!     client.key.sealed 0600  its private key, sealed under the data key
//! ```
//!
//! A data dir made before sealing has `device.key` (the raw seed) and
//! `link/client.key` in clear instead; the first command run on it converts
//! it (see `Agent::upgrade`).
//!
//! The server address lives in the queue's `meta` table, next to the rest of
//! the agent's state, so `link` is one place to look.

use std::fs;
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
        directories::ProjectDirs::from("org", "Truce", "truce-agent").map(|p| Self::new(p.data_local_dir())).ok_or_else(
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

    /// The keyring: the sealed device seed and data key.
    pub fn keyring(&self) -> PathBuf {
        self.root.join("keyring")
    }

    /// The device key file of a data dir made before sealing (the raw seed).
    pub fn legacy_key_file(&self) -> PathBuf {
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

    /// The stored (sealed) copy of an attachment, by its keyed name
    /// (`vault::DataKey::file_name`).
    pub fn attachment(&self, name: &str) -> PathBuf {
        self.attachments_dir().join(name)
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

    /// This laptop's client private key, sealed.
    pub fn link_key(&self) -> PathBuf {
        self.link_dir().join("client.key.sealed")
    }

    /// Where a failed log check leaves its evidence (`log-<unix ms>/`).
    pub fn evidence_dir(&self) -> PathBuf {
        self.root.join("evidence")
    }

    /// The client private key in clear, as a data dir made before sealing
    /// kept it.
    pub fn legacy_link_key(&self) -> PathBuf {
        self.link_dir().join("client.key")
    }
}

/// Overwrites a file's bytes with random ones, syncs, and removes it: the
/// best a program can do to destroy a key (see `wipe` for what the disk may
/// still keep). A missing file is not an error.
pub fn shred(path: &Path) -> Result<()> {
    use rand::RngCore;
    use std::io::Write;
    let len = match fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(AgentError::io("cannot read", path, e)),
    };
    let mut noise = vec![0u8; 1 << 20];
    let mut overwrite = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).open(path)?;
        let mut left = len;
        while left > 0 {
            let n = left.min(noise.len() as u64) as usize;
            rand::rngs::OsRng.fill_bytes(&mut noise[..n]);
            f.write_all(&noise[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    };
    overwrite().map_err(|e| AgentError::io("cannot overwrite", path, e))?;
    fs::remove_file(path).map_err(|e| AgentError::io("cannot remove", path, e))
}
