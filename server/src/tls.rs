//! All of the server's rustls configuration: the first lock of DESIGN §5.
//!
//! - TLS 1.3 only, with the workspace's one crypto provider
//!   (`truce_shared::tls::provider`: AWS-LC, key exchange X25519MLKEM768
//!   for Truce agents, X25519 for other clients);
//! - a client certificate is required and must chain to the mission CA and
//!   not be on any CRL given (`WebPkiClientVerifier`); expired certificates
//!   fail webpki's validity check;
//! - ALPN `truce/1`: rustls refuses a client that offers other protocols
//!   only (`no_application_protocol` alert); a client that offers no ALPN at
//!   all completes the handshake, so [`alpn_ok`] must be checked after it
//!   and such a session dropped;
//! - no session resumption: every connection presents and proves its
//!   certificate, so a certificate that expired or was revoked since an
//!   earlier session cannot ride on it.
//!
//! CRLs are read at start and again on SIGHUP or when a `--crl` file
//! changes: [`crate::revocation`] swaps the verifier behind this config and
//! ends the sessions of newly revoked certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use truce_shared::pem::PemError;

use crate::revocation::{CrlError, Revocation};

/// PEM loading is shared with the agent; re-exported here as the server's
/// side of "all TLS in `tls.rs`".
pub use truce_shared::pem::{load_certs, load_crls, load_key};

/// Why the TLS policy could not be set up. Each message names the file and
/// what was expected.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read, or holds none of what it should
    /// (`truce_shared::pem` names the file and what was expected).
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The CA certificate cannot anchor trust.
    #[error("{} is not a usable CA certificate: {detail}", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        detail: String,
    },
    /// The client verifier refused the CA.
    #[error("cannot check client certificates with this CA: {0}")]
    Verifier(String),
    /// A CRL cannot be put in force (stale, not from the CA, unreadable).
    #[error(transparent)]
    Crl(#[from] CrlError),
    /// The server certificate and key do not go together.
    #[error("the server certificate and key cannot be used together: {0} (check --cert and --key)")]
    CertKey(String),
}

/// The server's TLS policy: TLS 1.3, client certificate from `ca` required
/// and checked against `crls`, ALPN `truce/1`, no resumption. The CRLs are
/// read once; [`server_tls`] gives a config whose CRLs can be reloaded.
pub fn server_config(ca: &Path, cert: &Path, key: &Path, crls: &[PathBuf]) -> Result<Arc<ServerConfig>, TlsError> {
    Ok(server_tls(ca, cert, key, crls)?.0)
}

/// [`server_config`], and with `crls` the [`Revocation`] that reloads them
/// while the server runs (none without CRLs). A CRL that is stale, not
/// from `ca` or unreadable is an error.
pub fn server_tls(
    ca: &Path,
    cert: &Path,
    key: &Path,
    crls: &[PathBuf],
) -> Result<(Arc<ServerConfig>, Option<Arc<Revocation>>), TlsError> {
    let provider = Arc::new(truce_shared::tls::provider());
    let cas = load_certs(ca)?;
    let mut roots = RootCertStore::empty();
    for c in &cas {
        roots.add(c.clone()).map_err(|e| TlsError::BadCa { path: ca.to_path_buf(), detail: e.to_string() })?;
    }
    let roots = Arc::new(roots);
    let (verifier, revocation): (Arc<dyn ClientCertVerifier>, _) = if crls.is_empty() {
        let v = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        (v, None)
    } else {
        let r = Revocation::load(cas, roots, provider.clone(), crls)?;
        (r.verifier(), Some(r))
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Verifier(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::CertKey(e.to_string()))?;
    config.alpn_protocols = vec![truce_shared::wire::ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok((Arc::new(config), revocation))
}

/// Whether the handshake agreed on `truce/1`. False for a client that
/// offered no ALPN at all, which rustls lets through.
pub fn alpn_ok(conn: &ServerConnection) -> bool {
    conn.alpn_protocol() == Some(truce_shared::wire::ALPN)
}
