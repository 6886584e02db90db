//! All of the server's rustls configuration: the first lock of DESIGN §5.
//!
//! - TLS 1.3 only, ring provider (it builds with only a C compiler);
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

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, ServerConnection};

/// Why the TLS policy could not be set up. Each message names the file and
/// what was expected.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{} is not a PEM file with {what}: {detail}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
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

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_path_buf(), source })
}

fn pem(path: &Path, what: &'static str, detail: impl ToString) -> TlsError {
    TlsError::Pem { path: path.to_path_buf(), what, detail: detail.to_string() }
}

/// Reads every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let what = "certificates (-----BEGIN CERTIFICATE-----)";
    let certs = rustls_pemfile::certs(&mut read(path)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(path, what, e))?;
    if certs.is_empty() {
        return Err(pem(path, what, "none found"));
    }
    Ok(certs)
}

/// Reads the private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "a private key (-----BEGIN PRIVATE KEY-----)";
    rustls_pemfile::private_key(&mut read(path)?.as_slice())
        .map_err(|e| pem(path, what, e))?
        .ok_or_else(|| pem(path, what, "none found"))
}

/// Reads every CRL in the PEM files (at least one per file).
pub fn load_crls(paths: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let what = "CRLs (-----BEGIN X509 CRL-----)";
    let mut crls = Vec::new();
    for path in paths {
        let found = rustls_pemfile::crls(&mut read(path)?.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem(path, what, e))?;
        if found.is_empty() {
            return Err(pem(path, what, "none found"));
        }
        crls.extend(found);
    }
    Ok(crls)
}

/// The server's TLS policy: TLS 1.3, client certificate from `ca` required
/// and checked against `crls`, ALPN `truce/1`, no resumption.
pub fn server_config(ca: &Path, cert: &Path, key: &Path, crls: &[PathBuf]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
