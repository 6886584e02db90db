//! The certificate revocation list: reading it back, adding to it, signing it.
//!
//! `crl.pem` is its own record: there is no side file of revoked serials.
//! `revoke` parses the current CRL, checks the CA issued it, keeps every
//! entry (serial, time, reason), adds the new serial, increments the CRL
//! number and has the CA sign the result. The CRL is X.509 v2 with the
//! authority key identifier and CRL number extensions, as RFC 5280 and
//! webpki expect. Its nextUpdate is a few weeks away
//! ([`crate::DEFAULT_CRL_DAYS`] unless told otherwise, never past the CA's
//! expiry): the server refuses a CRL whose nextUpdate has passed, so a
//! mission reissues its CRL (`truce-certs crl`) before then, and a CRL
//! that an attacker keeps from being replaced stops being trusted.

use std::path::Path;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber};
use time::OffsetDateTime;

use crate::ca::{parse_pem, Ca};
use crate::error::Error;

/// What a CRL says: its number and the certificates it revokes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CrlState {
    /// The CRL number of the CRL this state was read from (0: none yet).
    pub(crate) number: u64,
    /// The revoked certificates, oldest first.
    pub(crate) revoked: Vec<RevokedEntry>,
}

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RevokedEntry {
    /// Its serial number, big-endian, without leading zero bytes.
    pub(crate) serial: Vec<u8>,
    /// When it was revoked.
    pub(crate) revoked_at: OffsetDateTime,
    /// Why, if the CRL says.
    pub(crate) reason: Option<RevocationReason>,
}

impl CrlState {
    /// Whether `serial` (big-endian, minimal) is revoked.
    pub(crate) fn contains(&self, serial: &[u8]) -> bool {
        self.revoked.iter().any(|e| e.serial == serial)
    }
}

/// Reads `path`, which must be a CRL issued by `ca`.
pub(crate) fn read(path: &Path, ca: &Ca) -> Result<CrlState, Error> {
    if !crate::files::exists(path) {
        return Err(Error::NoCrl { path: path.to_owned() });
    }
    let text = crate::files::read_text(path)?;
    let pem = parse_pem(&text, path, "CRL")?;
    let (_, crl) =
        x509_parser::parse_x509_crl(&pem.contents).map_err(|_| Error::bad_file(path, "CRL", "not an X.509 CRL"))?;
    if !ca.signed(&crl) {
        return Err(Error::bad_file(path, "CRL", "it was not issued by this CA"));
    }
    let number = match crl.crl_number() {
        None => 0,
        Some(n) => {
            be_to_u64(&n.to_bytes_be()).ok_or_else(|| Error::bad_file(path, "CRL", "its CRL number is too large"))?
        }
    };
    let revoked = crl
        .iter_revoked_certificates()
        .map(|entry| RevokedEntry {
            serial: strip_leading_zeros(&entry.serial().to_bytes_be()),
            revoked_at: entry.revocation_date.to_datetime(),
            reason: entry.reason_code().and_then(|(_, code)| reason_from_code(code.0)),
        })
        .collect();
    Ok(CrlState { number, revoked })
}

/// Signs a CRL listing `state.revoked`, with CRL number `state.number`,
/// issued at `this_update` and to be replaced by `next_update`; returns it
/// as PEM.
pub(crate) fn sign(
    ca: &Ca,
    state: &CrlState,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<String, Error> {
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(state.number),
        issuing_distribution_point: None,
        revoked_certs: state
            .revoked
            .iter()
            .map(|entry| RevokedCertParams {
                serial_number: SerialNumber::from_slice(&entry.serial),
                revocation_time: entry.revoked_at,
                reason_code: entry.reason,
                invalidity_date: None,
            })
            .collect(),
        // Replaced by the CA's own method when signing.
        key_identifier_method: KeyIdMethod::Sha256,
    };
    ca.sign_crl(params)
}

/// A big-endian unsigned integer as u64, if it fits.
fn be_to_u64(bytes: &[u8]) -> Option<u64> {
    let bytes = strip_leading_zeros(bytes);
    if bytes.len() > 8 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

/// `bytes` without leading zero bytes (a zero serial becomes empty).
pub(crate) fn strip_leading_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

/// The RFC 5280 reason code `code` as rcgen's enum (7 is unused).
fn reason_from_code(code: u8) -> Option<RevocationReason> {
    use RevocationReason::*;
    Some(match code {
        0 => Unspecified,
        1 => KeyCompromise,
        2 => CaCompromise,
        3 => AffiliationChanged,
        4 => Superseded,
        5 => CessationOfOperation,
        6 => CertificateHold,
        8 => RemoveFromCrl,
        9 => PrivilegeWithdrawn,
        10 => AaCompromise,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;

    #[test]
    fn numbers_decode_big_endian() {
        assert_eq!(be_to_u64(&[]), Some(0));
        assert_eq!(be_to_u64(&[0, 1, 2]), Some(0x102));
        assert_eq!(be_to_u64(&[0xff; 8]), Some(u64::MAX));
        assert_eq!(be_to_u64(&[1; 9]), None);
    }

    #[test]
    fn a_signed_crl_reads_back_the_same() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tmp", e))?;
        let layout = Layout::new(dir.path());
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let ca = Ca::generate(now)?;
        let state = CrlState {
            number: 7,
            revoked: vec![
                RevokedEntry { serial: vec![0x41, 2, 3], revoked_at: now, reason: None },
                RevokedEntry {
                    serial: vec![0x99, 0, 1],
                    revoked_at: now,
                    reason: Some(RevocationReason::KeyCompromise),
                },
            ],
        };
        std::fs::write(layout.crl(), sign(&ca, &state, now, now + time::Duration::days(30))?)
            .map_err(|e| Error::io("write", layout.crl(), e))?;
        assert_eq!(read(&layout.crl(), &ca)?, state);
        Ok(())
    }

    #[test]
    fn a_crl_from_another_ca_is_refused() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tmp", e))?;
        let path = dir.path().join("crl.pem");
        let now = OffsetDateTime::now_utc();
        let (ours, theirs) = (Ca::generate(now)?, Ca::generate(now)?);
        std::fs::write(&path, sign(&theirs, &CrlState::default(), now, now + time::Duration::days(30))?)
            .map_err(|e| Error::io("write", &path, e))?;
        assert!(matches!(read(&path, &ours), Err(Error::BadFile { .. })));
        assert!(read(&path, &theirs).is_ok());
        Ok(())
    }
}
