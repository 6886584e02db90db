//! The mission CA: making it, loading it back, and issuing certificates.
//!
//! Every certificate is X.509 v3 with an ECDSA P-256 key and a random
//! positive 16-byte serial, and starts an hour in the past so that a peer
//! whose clock is a little behind still accepts it. The profiles are what
//! rustls/webpki need and no more:
//! - CA: basicConstraints CA:true, pathlen 0 (it signs leaves only);
//!   keyUsage keyCertSign + cRLSign; 10 years;
//! - server: CA:false, keyUsage digitalSignature, EKU serverAuth, its names
//!   as SANs (webpki ignores the CN); 2 years;
//! - client: CA:false, keyUsage digitalSignature, EKU clientAuth, CN = the
//!   client's name; 2 years unless asked otherwise.
//!
//! This module does not touch the file system: callers read and write PEM.

use rand_core::{OsRng, RngCore};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};
use x509_parser::pem::Pem;
use x509_parser::prelude::{CertificateRevocationList, X509Certificate};

use crate::error::Error;
use crate::layout::{Layout, ServerName};

/// How long the CA is valid.
pub(crate) const CA_LIFETIME: Duration = Duration::days(3650);
/// How long a server certificate is valid.
pub(crate) const SERVER_LIFETIME: Duration = Duration::days(730);
/// How far in the past every certificate starts, for peers with slow clocks.
pub(crate) const CLOCK_SKEW: Duration = Duration::hours(1);
/// The CA's subject CN, before a random suffix that tells missions' CAs
/// apart (two CAs with one name confuse chain building and CRL matching).
const CA_COMMON_NAME: &str = "Truce mission CA";
/// The CA's subject O.
const ORGANIZATION: &str = "Truce";

/// A freshly issued certificate and its key, as PEM.
pub(crate) struct Issued {
    /// The certificate, PEM.
    pub(crate) cert_pem: String,
    /// The private key, PKCS#8 PEM.
    pub(crate) key_pem: String,
    /// The certificate's serial number, big-endian, minimal.
    pub(crate) serial: Vec<u8>,
}

/// The mission CA, ready to sign.
pub(crate) struct Ca {
    /// The CA certificate in the form rcgen signs with: the same subject,
    /// key and key identifier as `ca.pem`, so what it signs chains to
    /// `ca.pem` (rcgen cannot sign with a parsed certificate directly).
    cert: Certificate,
    /// The CA private key.
    key: KeyPair,
    /// `ca.pem` exactly as written or read; what is handed to peers.
    cert_pem: String,
    /// The DER of `ca.pem`, to check what the CA signed.
    cert_der: Vec<u8>,
    /// When the CA stops being valid; nothing it issues should outlive it.
    not_after: OffsetDateTime,
}

impl Ca {
    /// Makes a new CA valid from an hour before `now` for ten years.
    pub(crate) fn generate(now: OffsetDateTime) -> Result<Self, Error> {
        let key = new_key()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::OrganizationName, ORGANIZATION);
        let suffix = random_bytes::<4>()?.iter().map(|b| format!("{b:02x}")).collect::<String>();
        params.distinguished_name.push(DnType::CommonName, format!("{CA_COMMON_NAME} {suffix}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(random_serial()?);
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_LIFETIME;
        let cert = params.self_signed(&key).map_err(Error::crypto("CA certificate"))?;
        Ok(Ca { cert_pem: cert.pem(), cert_der: cert.der().to_vec(), not_after: cert.params().not_after, cert, key })
    }

    /// Loads the CA of `layout`, checking that `ca.key` belongs to `ca.pem`,
    /// that it is a CA, and that it has not expired.
    pub(crate) fn load(layout: &Layout, now: OffsetDateTime) -> Result<Self, Error> {
        let (cert_path, key_path) = (layout.ca_cert(), layout.ca_key());
        if !crate::files::exists(&cert_path) || !crate::files::exists(&key_path) {
            return Err(Error::NoCa { dir: layout.dir().to_owned() });
        }
        let cert_pem = crate::files::read_text(&cert_path)?;
        let key_pem = crate::files::read_text(&key_path)?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|_| Error::bad_file(&key_path, "CA key", "not a PKCS#8 PEM private key"))?;

        let pem = parse_pem(&cert_pem, &cert_path, "CA certificate")?;
        let parsed = parse_cert_der(&pem.contents, &cert_path, "CA certificate")?;
        if !parsed.is_ca() {
            return Err(Error::bad_file(
                &cert_path,
                "CA certificate",
                "it is not a CA (basicConstraints CA:true missing)",
            ));
        }
        if parsed.public_key().raw != key.public_key_der().as_slice() {
            return Err(Error::bad_file(&key_path, "CA key", "it does not belong to ca.pem"));
        }
        let not_after = parsed.validity().not_after.to_datetime();
        if not_after <= now {
            return Err(Error::CaExpired { dir: layout.dir().to_owned() });
        }
        let cert_der = pem.contents.clone();

        let params = CertificateParams::from_ca_cert_pem(&cert_pem)
            .map_err(|e| Error::bad_file(&cert_path, "CA certificate", e.to_string()))?;
        let cert = params.self_signed(&key).map_err(Error::crypto("CA certificate"))?;
        Ok(Ca { cert, key, cert_pem, cert_der, not_after })
    }

    /// `ca.pem`.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// `ca.key`, PKCS#8 PEM.
    pub(crate) fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// When the CA expires.
    pub(crate) fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Whether this CA issued `cert`: its issuer is this CA's subject and
    /// its signature verifies with this CA's key.
    pub(crate) fn issued(&self, cert: &X509Certificate<'_>) -> bool {
        self.parsed().is_some_and(|ca| {
            cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok()
        })
    }

    /// Whether this CA issued `crl`, as [`Ca::issued`] for certificates.
    pub(crate) fn signed(&self, crl: &CertificateRevocationList<'_>) -> bool {
        self.parsed().is_some_and(|ca| {
            crl.issuer().as_raw() == ca.subject().as_raw() && crl.verify_signature(ca.public_key()).is_ok()
        })
    }

    /// `ca.pem` parsed (it parsed when the CA was made or loaded).
    fn parsed(&self) -> Option<X509Certificate<'_>> {
        x509_parser::parse_x509_certificate(&self.cert_der).ok().map(|(_, cert)| cert)
    }

    /// Issues the server certificate for `names` (the first is also its CN).
    pub(crate) fn issue_server(&self, names: &[ServerName], now: OffsetDateTime) -> Result<Issued, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(first) = names.first() {
            let cn = match first {
                ServerName::Ip(ip) => ip.to_string(),
                ServerName::Dns(dns) => dns.clone(),
            };
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.subject_alt_names = names
            .iter()
            .map(|name| match name {
                ServerName::Ip(ip) => Ok(SanType::IpAddress(*ip)),
                ServerName::Dns(dns) => {
                    dns.clone().try_into().map(SanType::DnsName).map_err(Error::crypto("server certificate"))
                }
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + SERVER_LIFETIME;
        self.issue_leaf(params, "server certificate")
    }

    /// Issues the certificate of client `name`, valid between the two times.
    pub(crate) fn issue_client(
        &self,
        name: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Issued, Error> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = not_before;
        params.not_after = not_after;
        self.issue_leaf(params, "client certificate")
    }

    /// Signs a CRL with the CA key; returns it as PEM. The CRL's authority
    /// key identifier is the CA's own subject key identifier, whatever
    /// `params` says, so that the two always match.
    pub(crate) fn sign_crl(&self, mut params: CertificateRevocationListParams) -> Result<String, Error> {
        params.key_identifier_method = self.cert.params().key_identifier_method.clone();
        params.signed_by(&self.cert, &self.key).and_then(|crl| crl.pem()).map_err(Error::crypto("CRL"))
    }

    /// Gives `params` a fresh key, a random serial and the leaf extensions
    /// shared by server and client, and signs it.
    fn issue_leaf(&self, mut params: CertificateParams, what: &'static str) -> Result<Issued, Error> {
        let key = new_key()?;
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.cert, &self.key).map_err(Error::crypto(what))?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), serial: serial.to_bytes() })
    }
}

/// A new ECDSA P-256 key.
fn new_key() -> Result<KeyPair, Error> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(Error::crypto("key"))
}

/// A random serial: 16 bytes, first byte in 0x40..=0x7f, so it is positive,
/// never zero, minimally encoded in exactly 16 bytes, with 126 random bits.
fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = random_bytes::<16>()?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// `N` bytes from the operating system's random number generator.
fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    OsRng.try_fill_bytes(&mut bytes).map_err(|_| Error::NoRandomness)?;
    Ok(bytes)
}

/// Decodes the first PEM block of `text`.
pub(crate) fn parse_pem(text: &str, path: impl Into<std::path::PathBuf>, what: &'static str) -> Result<Pem, Error> {
    x509_parser::pem::parse_x509_pem(text.as_bytes())
        .map(|(_, pem)| pem)
        .map_err(|_| Error::bad_file(path, what, "no PEM block in it"))
}

/// Parses a DER certificate.
pub(crate) fn parse_cert_der<'a>(
    der: &'a [u8],
    path: impl Into<std::path::PathBuf>,
    what: &'static str,
) -> Result<X509Certificate<'a>, Error> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|_| Error::bad_file(path, what, "not an X.509 certificate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_positive_16_bytes_and_differ() -> Result<(), Error> {
        let a = random_serial()?.to_bytes();
        let b = random_serial()?.to_bytes();
        assert_eq!(a.len(), 16);
        assert!((0x40..=0x7f).contains(&a[0]));
        assert_ne!(a, b);
        Ok(())
    }

    #[test]
    fn leaves_chain_to_the_ca_by_name() -> Result<(), Error> {
        let now = OffsetDateTime::now_utc();
        let ca = Ca::generate(now)?;
        let leaf = ca.issue_client("laptop-1", now - CLOCK_SKEW, now + SERVER_LIFETIME)?;
        let pem = parse_pem(&leaf.cert_pem, "laptop-1.pem", "certificate")?;
        let cert = parse_cert_der(&pem.contents, "laptop-1.pem", "certificate")?;
        assert!(ca.issued(&cert));
        assert_eq!(cert.raw_serial(), leaf.serial.as_slice());
        assert!(!cert.is_ca());
        Ok(())
    }
}
