//! `link`: store how to reach the server (the mission CA, this laptop's
//! client certificate and key, the server address).
//!
//! The files are parsed and assembled into a real TLS client config before
//! anything is stored, so a wrong file is refused at `link` rather than at
//! the first sync in the field. Copies are written as new 0600 files (the
//! key is a secret; the rest gain nothing from being readable) and renamed
//! into `link/`, so a re-link replaces all or nothing per file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::paths;
use crate::tls;

/// What `link` needs.
#[derive(Debug, Clone)]
pub struct LinkInput {
    /// `HOST:PORT` of the collection server.
    pub server: String,
    /// The mission CA certificate (PEM).
    pub ca: PathBuf,
    /// This laptop's client certificate (PEM, chain allowed).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| AgentError::io("cannot read", path, e))
}

/// Writes `data` to `dest` through a new 0600 temporary file and a rename.
fn store(dir: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    // tempfile creates its files 0600 from the first byte: the key is never
    // on disk with looser permissions.
    let mut t = tempfile::Builder::new()
        .prefix(".link-")
        .tempfile_in(dir)
        .map_err(|e| AgentError::io("cannot create a file in", dir, e))?;
    t.write_all(data).and_then(|()| t.as_file().sync_all()).map_err(|e| AgentError::io("cannot write", dest, e))?;
    t.persist(dest).map_err(|e| AgentError::io("cannot write", dest, e.error))?;
    Ok(())
}

impl Agent {
    /// Validates and stores the server address and certificates.
    pub fn link(&mut self, input: &LinkInput) -> Result<()> {
        let (host, _port) = tls::split_host_port(&input.server)?;
        tls::server_name(&host)?;
        let ca = read(&input.ca)?;
        let cert = read(&input.cert)?;
        let key = read(&input.key)?;
        let roots = tls::roots(&input.ca, tls::parse_certs(&input.ca, &ca)?)?;
        tls::client_config_from(
            roots,
            tls::parse_certs(&input.cert, &cert)?,
            tls::parse_key(&input.key, &key)?,
            &input.key,
        )?;
        let link_dir = self.dir().link_dir();
        paths::create_private_dir(&link_dir)?;
        store(&link_dir, &self.dir().link_ca(), &ca)?;
        store(&link_dir, &self.dir().link_cert(), &cert)?;
        store(&link_dir, &self.dir().link_key(), &key)?;
        paths::sync_dir(&link_dir)?;
        self.queue_mut().set_meta(&[("server", input.server.trim())])
    }

    /// The TLS client config from the linked files, or "link first".
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let d = self.dir();
        if !d.link_key().exists() {
            return Err(AgentError::NotLinked);
        }
        tls::client_config(&d.link_ca(), &d.link_cert(), &d.link_key())
    }
}
