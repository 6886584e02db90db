//! All of the agent's TLS configuration: reading PEM files and building the
//! rustls client config of DESIGN §4 (TLS 1.3 only, ALPN `truce/1`, the
//! mission CA as the only root, this laptop's client certificate).
//!
//! PEM files are read by `truce_shared::pem` (its errors become the
//! agent's wording in `error.rs`). Errors name the file and what is wrong,
//! never its content.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use truce_shared::pem;

use crate::error::{AgentError, Result};

fn pem_err(path: &Path, message: impl Into<String>) -> AgentError {
    AgentError::Pem { path: path.to_path_buf(), message: message.into() }
}

/// The trust store: the mission CA certificates and nothing else.
pub fn roots(ca_path: &Path, cas: Vec<CertificateDer<'static>>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca).map_err(|e| pem_err(ca_path, format!("is not a usable CA certificate ({e})")))?;
    }
    Ok(roots)
}

/// The client config from already-parsed parts: TLS 1.3 only, ALPN
/// `truce/1`, `roots` as the only trust anchors, the client certificate.
pub fn client_config_from(
    roots: RootCertStore,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    key_path: &Path,
) -> Result<ClientConfig> {
    let provider = Arc::new(truce_shared::tls::provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| AgentError::TlsSetup(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(|e| pem_err(key_path, format!("does not fit the client certificate ({e})")))?;
    config.alpn_protocols = vec![truce_shared::wire::ALPN.to_vec()];
    Ok(config)
}

/// The client config from the PEM files `link` stored.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> Result<ClientConfig> {
    let roots = roots(ca, pem::load_certs(ca)?)?;
    client_config_from(roots, pem::load_certs(cert)?, pem::load_key(key)?, key)
}

/// Splits `HOST:PORT` (IPv6 as `[::1]:4433`) into the host and port.
pub fn split_host_port(addr: &str) -> Result<(String, u16)> {
    let bad =
        || AgentError::input("--server", format!("{addr:?} is not HOST:PORT: write it like truce.example.org:4433"));
    let (host, port) = addr.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// The name the server's certificate must carry: the HOST part, as a DNS
/// name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_string())
        .map_err(|_| AgentError::input("--server", format!("{host:?} is not a host name or IP address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("127.0.0.1:4433").unwrap(), ("127.0.0.1".into(), 4433));
        assert_eq!(split_host_port("[::1]:4433").unwrap(), ("::1".into(), 4433));
        assert_eq!(split_host_port("truce.example.org:1").unwrap(), ("truce.example.org".into(), 1));
        for bad in ["nohost", ":4433", "h:0", "h:port", "h:70000"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
        assert!(server_name("localhost").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
    }

    #[test]
    fn pem_errors_name_the_file_not_the_content() {
        let p = Path::new("/x/ca.pem");
        let e = AgentError::from(pem::parse_certs(p, b"secret stuff").unwrap_err()).to_string();
        assert!(e.starts_with("/x/ca.pem:") && !e.contains("secret"), "{e}");
        let e = AgentError::from(pem::parse_key(Path::new("/x/k.pem"), b"secret stuff").unwrap_err()).to_string();
        assert!(e.contains("no private key") && !e.contains("secret"), "{e}");
    }
}
