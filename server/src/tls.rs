//! All of the server's rustls configuration: the first lock of DESIGN §5.
//!
//! TLS 1.3 only (ring provider), a client certificate from the mission CA
//! required, CRLs honoured (`WebPkiClientVerifier`), ALPN `truce/1`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Reads every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read certificate file {}", path.display()))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}: expected a PEM file with -----BEGIN CERTIFICATE-----", path.display());
    }
    Ok(certs)
}

/// Reads the private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read key file {}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .with_context(|| format!("{} is not a PEM key file", path.display()))?
        .with_context(|| format!("no private key in {}", path.display()))
}

/// Reads every CRL in the PEM files.
pub fn load_crls(paths: &[impl AsRef<Path>]) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let mut crls = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let data = std::fs::read(p).with_context(|| format!("cannot read CRL file {}", p.display()))?;
        let before = crls.len();
        for crl in rustls_pemfile::crls(&mut data.as_slice()) {
            crls.push(crl.with_context(|| format!("{} is not a PEM CRL file", p.display()))?);
        }
        if crls.len() == before {
            bail!("no CRL in {}: expected -----BEGIN X509 CRL-----", p.display());
        }
    }
    Ok(crls)
}

/// The server's TLS configuration.
pub fn server_config(ca: &Path, cert: &Path, key: &Path, crls: &[impl AsRef<Path>]) -> Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).with_context(|| format!("{} is not a usable CA certificate", ca.display()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(load_crls(crls)?)
        .build()
        .context("cannot build the client certificate verifier")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 unavailable")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .context("the server certificate and key do not match")?;
    config.alpn_protocols = vec![truce_shared::wire::ALPN.to_vec()];
    Ok(Arc::new(config))
}
