//! Reading the mission's PEM files: certificates, private keys and CRLs,
//! for the agent and the server alike.
//!
//! Each function reads (or takes bytes already read from) one file and
//! insists on finding what it was asked for: an empty file, or one holding
//! only something else, is an error, not an empty list. Errors name the
//! file and what was expected, never the file's content (a key must not
//! reach a log because someone gave it where a certificate was wanted).
//! TLS policy is not here: each side's `tls.rs` builds its rustls config
//! from what this returns.

use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

/// What a PEM file was expected to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemKind {
    /// One or more certificates.
    Certificates,
    /// A private key (PKCS#8, SEC1 or PKCS#1).
    PrivateKey,
    /// One or more certificate revocation lists.
    Crls,
}

impl PemKind {
    /// What the file should hold, with the PEM header to look for.
    pub fn what(self) -> &'static str {
        match self {
            PemKind::Certificates => "certificates (-----BEGIN CERTIFICATE-----)",
            PemKind::PrivateKey => "a private key (-----BEGIN PRIVATE KEY-----)",
            PemKind::Crls => "CRLs (-----BEGIN X509 CRL-----)",
        }
    }
}

/// Why a PEM file gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not well-formed PEM.
    #[error("{} is not a PEM file with {}: {detail}", path.display(), kind.what())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        kind: PemKind,
        /// The parser's reason (never the content).
        detail: String,
    },
    /// The file is PEM but holds none of what was wanted.
    #[error("{} is not a PEM file with {}: none found", path.display(), kind.what())]
    Missing {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        kind: PemKind,
    },
}

impl PemError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            PemError::Read { path, .. } | PemError::Invalid { path, .. } | PemError::Missing { path, .. } => path,
        }
    }
}

/// Reads a whole file.
fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read { path: path.to_path_buf(), source })
}

fn invalid(path: &Path, kind: PemKind, e: impl ToString) -> PemError {
    PemError::Invalid { path: path.to_path_buf(), kind, detail: e.to_string() }
}

fn at_least_one<T>(path: &Path, kind: PemKind, items: Vec<T>) -> Result<Vec<T>, PemError> {
    if items.is_empty() {
        return Err(PemError::Missing { path: path.to_path_buf(), kind });
    }
    Ok(items)
}

/// Every certificate in `data`, read from `path` (at least one).
pub fn parse_certs(path: &Path, data: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let kind = PemKind::Certificates;
    let certs =
        rustls_pemfile::certs(&mut &data[..]).collect::<Result<Vec<_>, _>>().map_err(|e| invalid(path, kind, e))?;
    at_least_one(path, kind, certs)
}

/// The private key in `data`, read from `path`: the first PKCS#8, SEC1 or
/// PKCS#1 key.
pub fn parse_key(path: &Path, data: &[u8]) -> Result<PrivateKeyDer<'static>, PemError> {
    let kind = PemKind::PrivateKey;
    rustls_pemfile::private_key(&mut &data[..])
        .map_err(|e| invalid(path, kind, e))?
        .ok_or_else(|| PemError::Missing { path: path.to_path_buf(), kind })
}

/// Every CRL in `data`, read from `path` (at least one).
pub fn parse_crls(path: &Path, data: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, PemError> {
    let kind = PemKind::Crls;
    let crls =
        rustls_pemfile::crls(&mut &data[..]).collect::<Result<Vec<_>, _>>().map_err(|e| invalid(path, kind, e))?;
    at_least_one(path, kind, crls)
}

/// Reads every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    parse_certs(path, &read(path)?)
}

/// Reads the private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    parse_key(path, &read(path)?)
}

/// Reads every CRL in each of the PEM files (at least one per file).
pub fn load_crls(paths: &[PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, PemError> {
    let mut crls = Vec::new();
    for path in paths {
        crls.extend(parse_crls(path, &read(path)?)?);
    }
    Ok(crls)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A syntactically valid PEM block; rustls_pemfile does not parse the DER.
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAAECAw==\n-----END PRIVATE KEY-----\n";
    const CRL: &str = "-----BEGIN X509 CRL-----\nAAECAw==\n-----END X509 CRL-----\n";

    #[test]
    fn each_kind_is_found_and_nothing_else_counts() {
        let p = Path::new("/x/f.pem");
        assert_eq!(parse_certs(p, format!("{CERT}{CERT}").as_bytes()).unwrap().len(), 2);
        assert!(parse_key(p, KEY.as_bytes()).is_ok());
        assert_eq!(parse_crls(p, CRL.as_bytes()).unwrap().len(), 1);
        assert!(matches!(parse_certs(p, KEY.as_bytes()), Err(PemError::Missing { kind: PemKind::Certificates, .. })));
        assert!(matches!(parse_key(p, CERT.as_bytes()), Err(PemError::Missing { kind: PemKind::PrivateKey, .. })));
        assert!(matches!(parse_crls(p, b""), Err(PemError::Missing { kind: PemKind::Crls, .. })));
    }

    #[test]
    fn errors_name_the_file_never_the_content() {
        let p = Path::new("/x/ca.pem");
        let broken = "-----BEGIN CERTIFICATE-----\nsecret stuff\n";
        for e in [parse_certs(p, broken.as_bytes()).unwrap_err(), parse_certs(p, b"secret stuff").unwrap_err()] {
            let s = e.to_string();
            assert!(s.starts_with("/x/ca.pem is not a PEM file with certificates") && !s.contains("secret"), "{s}");
            assert_eq!(e.path(), p);
        }
        let e = load_key(Path::new("/nonexistent/k.pem")).unwrap_err();
        assert!(matches!(e, PemError::Read { .. }) && e.to_string().starts_with("cannot read /nonexistent/k.pem"));
    }
}
