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
//! CRLs are read once at start: after `truce-certs revoke`, restart the
//! server with the new `crl.pem`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use truce_shared::pem::PemError;

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
    /// The client verifier refused the CA or CRLs (a CRL not signed by the CA…).
    #[error("cannot check client certificates with this CA and these CRLs: {0}")]
    Verifier(String),
    /// The server certificate and key do not go together.
    #[error("the server certificate and key cannot be used together: {0} (check --cert and --key)")]
    CertKey(String),
}

/// The server's TLS policy: TLS 1.3, client certificate from `ca` required
/// and checked against `crls`, ALPN `truce/1`, no resumption.
pub fn server_config(ca: &Path, cert: &Path, key: &Path, crls: &[PathBuf]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(truce_shared::tls::provider());
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).map_err(|e| TlsError::BadCa { path: ca.to_path_buf(), detail: e.to_string() })?;
    }
    // With CRLs, a client whose revocation status cannot be determined (no
    // CRL from its issuer) is refused: rustls's default, kept on purpose.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(load_crls(crls)?)
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Verifier(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .map_err(|e| TlsError::CertKey(e.to_string()))?;
    config.alpn_protocols = vec![truce_shared::wire::ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// Whether the handshake agreed on `truce/1`. False for a client that
/// offered no ALPN at all, which rustls lets through.
pub fn alpn_ok(conn: &ServerConnection) -> bool {
    conn.alpn_protocol() == Some(truce_shared::wire::ALPN)
}
