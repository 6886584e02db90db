//! `link`: store how to reach the server (the mission CA, this laptop's
//! client certificate and key, the server address).
//!
//! The files are parsed and assembled into a real TLS client config before
//! anything is stored, so a wrong file is refused at `link` rather than at
//! the first sync in the field. Copies are written as new 0600 files (the
//! rest gain nothing from being readable) and renamed into `link/`, so a
//! re-link replaces all or nothing per file. The private key is stored
//! sealed under the data key (`client.key.sealed`), never in clear; the
//! file the coordinator handed over is the monitor's to delete.

use std::path::{Path, PathBuf};

use truce_shared::fs::{self, Access, ExistingDir};
use truce_shared::pem;

use super::Agent;
use crate::error::{AgentError, Result};
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
    /// The server's log key as the coordinator gave it (fingerprint or hex
    /// public key); without it the first key seen is pinned.
    pub server_key: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| AgentError::io("cannot read", path, e))
}

/// The label the TLS key is sealed under (`vault::DataKey::seal_secret`).
pub const TLS_KEY_LABEL: &str = "truce-agent tls client key v1";

impl Agent {
    /// Validates and stores the server address and certificates.
    pub fn link(&mut self, input: &LinkInput) -> Result<()> {
        let (host, _port) = tls::split_host_port(&input.server)?;
        let server_key = input.server_key.as_deref().map(super::log::parse_server_key).transpose()?;
        tls::server_name(&host)?;
        let ca = read(&input.ca)?;
        let cert = read(&input.cert)?;
        let key = zeroize::Zeroizing::new(read(&input.key)?);
        let roots = tls::roots(&input.ca, pem::parse_certs(&input.ca, &ca)?)?;
        tls::client_config_from(
            roots,
            pem::parse_certs(&input.cert, &cert)?,
            pem::parse_key(&input.key, &key)?,
            &input.key,
        )?;
        let sealed = self.data_key()?.seal_secret(TLS_KEY_LABEL, &key);
        let link_dir = self.dir().link_dir();
        fs::create_private_dir(&link_dir, ExistingDir::Tighten)?;
        fs::write_atomic(&self.dir().link_ca(), &ca, Access::Private)?;
        fs::write_atomic(&self.dir().link_cert(), &cert, Access::Private)?;
        fs::write_atomic(&self.dir().link_key(), &sealed, Access::Private)?;
        if let Some(k) = &server_key {
            self.expect_log_key(k)?;
        }
        self.queue_mut().set_meta(&[("server", input.server.trim())])
    }

    /// The TLS client config from the linked files (the key unsealed in
    /// memory only), or "link first".
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let d = self.dir();
        let key_path = d.link_key();
        let sealed = match std::fs::read(&key_path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(AgentError::NotLinked),
            Err(e) => return Err(AgentError::io("cannot read", &key_path, e)),
        };
        let pem = self.data_key()?.open_secret(TLS_KEY_LABEL, &sealed).ok_or_else(|| {
            AgentError::Corrupt(format!(
                "{} does not unseal with this laptop's data key: run `link` again",
                key_path.display()
            ))
        })?;
        let ca = d.link_ca();
        let cert = d.link_cert();
        let roots = tls::roots(&ca, pem::load_certs(&ca)?)?;
        tls::client_config_from(roots, pem::load_certs(&cert)?, pem::parse_key(&key_path, &pem)?, &key_path)
    }
}
