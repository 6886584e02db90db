//! Report ids, signing and verification (DESIGN §2.2).
//!
//! ```text
//! body      = postcard(Envelope)
//! id        = SHA-256("truce/report-id/v1\0" || body)
//! signature = Ed25519(device key, "truce/report/v1\0" || body)
//! ```
//!
//! [`verify`] is the one verification function: the agent, the server,
//! `truce-server verify` and the tests all call it. It runs `verify_strict`
//! over the exact bytes that travelled, then decodes, then checks the
//! encoding is canonical and every field valid. Errors say which check
//! failed, never echo the payload.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::encoding::{self, EncodingError};
use crate::limits;
use crate::report::{Bytes32, Envelope, Signature64, SignedReport, ValidationError};

/// Domain separator for report ids.
pub const REPORT_ID_DOMAIN: &[u8] = b"truce/report-id/v1\0";
/// Domain separator for report signatures.
pub const REPORT_SIG_DOMAIN: &[u8] = b"truce/report/v1\0";
/// Domain separator for server receipts.
pub const RECEIPT_SIG_DOMAIN: &[u8] = b"truce/receipt/v1\0";

/// Why a signed report is not verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The body is larger than any valid report.
    #[error("report body is {0} bytes, over the limit of {max}", max = limits::MAX_REPORT_BODY)]
    TooLarge(usize),
    /// The body does not start with a version and a device key.
    #[error("malformed report: no device key")]
    NoDevice,
    /// The device key is not a valid Ed25519 point.
    #[error("invalid device key")]
    BadKey,
    /// `verify_strict` refused the signature.
    #[error("bad signature")]
    BadSignature,
    /// The signed bytes are not a well-formed, canonical envelope.
    #[error("{0}")]
    Encoding(#[from] EncodingError),
    /// The envelope breaks a field rule.
    #[error("invalid field: {0}")]
    Invalid(#[from] ValidationError),
}

impl VerifyError {
    /// A short reason for `Rejected(reason)` and logs, at most
    /// [`limits::MAX_REASON`] bytes (a field's value can make the message
    /// long: `f64` displays 1e300 with 300 digits).
    pub fn reason(&self) -> String {
        let mut r = match self {
            VerifyError::TooLarge(_) => "too large".into(),
            VerifyError::NoDevice | VerifyError::Encoding(EncodingError::Malformed(_)) => "malformed".into(),
            VerifyError::BadKey | VerifyError::BadSignature => "bad signature".into(),
            VerifyError::Encoding(EncodingError::NonCanonical) => "non-canonical encoding".into(),
            VerifyError::Invalid(e) => format!("invalid field: {e}"),
        };
        if r.len() > limits::MAX_REASON {
            let mut end = limits::MAX_REASON;
            while !r.is_char_boundary(end) {
                end -= 1;
            }
            r.truncate(end);
        }
        r
    }
}

/// Why an envelope could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The envelope breaks a field rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The device key in the envelope is not the signing key's.
    #[error("the envelope's device key is not this signing key")]
    WrongKey,
}

/// The id of a report body.
pub fn report_id(body: &[u8]) -> Bytes32 {
    let mut h = Sha256::new();
    h.update(REPORT_ID_DOMAIN);
    h.update(body);
    h.finalize().into()
}

/// `prefix || body`, the message Ed25519 signs.
fn domain_message(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(prefix.len() + body.len());
    m.extend_from_slice(prefix);
    m.extend_from_slice(body);
    m
}

/// A report that passed [`verify`]: its id, its decoded envelope, its bytes.
#[derive(Debug, Clone)]
pub struct VerifiedReport {
    /// The report id.
    pub id: Bytes32,
    /// The decoded envelope.
    pub envelope: Envelope,
    /// The signed report exactly as received.
    pub signed: SignedReport,
}

impl SignedReport {
    /// The report id: SHA-256 over the domain-separated body.
    pub fn id(&self) -> Bytes32 {
        report_id(&self.body)
    }
}

/// Validates, encodes and signs an envelope with the device key.
pub fn sign(key: &SigningKey, envelope: &Envelope) -> Result<SignedReport, SignError> {
    envelope.validate()?;
    if envelope.device != key.verifying_key().to_bytes() {
        return Err(SignError::WrongKey);
    }
    let body = encoding::encode(envelope);
    if body.len() > limits::MAX_REPORT_BODY {
        return Err(ValidationError::BodyTooLarge(body.len()).into());
    }
    if envelope.amends == Some(report_id(&body)) {
        return Err(ValidationError::AmendsSelf.into());
    }
    let signature = key.sign(&domain_message(REPORT_SIG_DOMAIN, &body));
    Ok(SignedReport { body, signature: Signature64(signature.to_bytes()) })
}

/// The device key a body claims, read without decoding the rest.
pub fn claimed_device(body: &[u8]) -> Result<Bytes32, VerifyError> {
    let (_, rest) = postcard::take_from_bytes::<u16>(body).map_err(|_| VerifyError::NoDevice)?;
    rest.get(..32).and_then(|k| k.try_into().ok()).ok_or(VerifyError::NoDevice)
}

/// The one Ed25519 check behind [`verify`], [`verify_with`] and
/// [`verify_receipt`]: `verify_strict` over `message` exactly as given (the
/// callers add their domain prefix). It refuses non-canonical S (S ≥ L), non-canonical and
/// small-order public keys and R, and checks the cofactorless equation.
/// There is deliberately no batch path: every signature goes through here,
/// so no faster verifier can accept a different set.
pub fn verify_ed25519(public: &Bytes32, message: &[u8], signature: &[u8; 64]) -> Result<(), VerifyError> {
    let key = VerifyingKey::from_bytes(public).map_err(|_| VerifyError::BadKey)?;
    verify_strict_with(&key, message, signature)
}

fn verify_strict_with(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> Result<(), VerifyError> {
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(message, &sig).map_err(|_| VerifyError::BadSignature)
}

/// The last device key [`verify_with`] parsed. Parsing a key decompresses
/// a curve point (a field exponentiation, about a tenth of a verification
/// in profiles of ingest); the reports of one batch almost always come
/// from one device, so its key is parsed once. The parsed key is the one
/// `VerifyingKey::from_bytes` gives for those bytes, so what is accepted
/// does not change: only keys that parsed are kept.
#[derive(Debug, Default)]
pub struct KeyCache {
    last: Option<(Bytes32, VerifyingKey)>,
}

impl KeyCache {
    fn key(&mut self, public: &Bytes32) -> Result<&VerifyingKey, VerifyError> {
        if self.last.as_ref().map(|(bytes, _)| bytes) != Some(public) {
            let key = VerifyingKey::from_bytes(public).map_err(|_| VerifyError::BadKey)?;
            self.last = Some((*public, key));
        }
        // Just filled when it did not hold this key.
        self.last.as_ref().map(|(_, key)| key).ok_or(VerifyError::BadKey)
    }
}

/// Verifies a signed report: size, `verify_strict`, decode, canonical
/// re-encoding, field rules. The one function every verifier calls.
pub fn verify(report: &SignedReport) -> Result<VerifiedReport, VerifyError> {
    verify_with(report, &mut KeyCache::default())
}

/// [`verify`], parsing the device key only when it differs from the last
/// one `keys` saw. For a loop over many reports.
pub fn verify_with(report: &SignedReport, keys: &mut KeyCache) -> Result<VerifiedReport, VerifyError> {
    let body = &report.body;
    if body.len() > limits::MAX_REPORT_BODY {
        return Err(VerifyError::TooLarge(body.len()));
    }
    let device = claimed_device(body)?;
    verify_strict_with(keys.key(&device)?, &domain_message(REPORT_SIG_DOMAIN, body), &report.signature.0)?;
    let envelope = encoding::decode_canonical(body)?;
    envelope.validate()?;
    let id = report_id(body);
    if envelope.amends == Some(id) {
        return Err(ValidationError::AmendsSelf.into());
    }
    Ok(VerifiedReport { id, envelope, signed: report.clone() })
}

/// The bytes a server receipt signs: `postcard((server_time, ids))`,
/// domain-separated.
pub fn receipt_message(server_time: i64, ids: &[Bytes32]) -> Vec<u8> {
    domain_message(RECEIPT_SIG_DOMAIN, &encoding::encode(&(server_time, ids)))
}

/// Signs a receipt for the ids the server holds.
pub fn sign_receipt(key: &SigningKey, server_time: i64, ids: &[Bytes32]) -> Signature64 {
    Signature64(key.sign(&receipt_message(server_time, ids)).to_bytes())
}

/// Checks a receipt against the server key and the ids it claims to cover.
pub fn verify_receipt(server_key: &Bytes32, server_time: i64, ids: &[Bytes32], sig: &Signature64) -> bool {
    verify_ed25519(server_key, &receipt_message(server_time, ids), &sig.0).is_ok()
}

/// A new random Ed25519 key from the OS's generator.
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// A short fingerprint of a public key to read out over a radio or phone:
/// the first 8 bytes of SHA-256(key) in four groups of four hex digits.
pub fn fingerprint(key: &Bytes32) -> String {
    let h = Sha256::digest(key);
    let hx = hex::encode(&h[..8]);
    format!("{}-{}-{}-{}", &hx[0..4], &hx[4..8], &hx[8..12], &hx[12..16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_observation;
    use crate::report::ENVELOPE_VERSION;

    fn signed(key: &SigningKey, seq: u64) -> SignedReport {
        let env = Envelope {
            version: ENVELOPE_VERSION,
            device: key.verifying_key().to_bytes(),
            seq,
            prev: if seq == 1 { [0; 32] } else { [9; 32] },
            recorded_at: 1_760_000_000_000,
            amends: None,
            observation: sample_observation(),
        };
        sign(key, &env).unwrap()
    }

    /// A report whose body claims `device` but is signed by `key`.
    fn claiming(device: Bytes32, key: &SigningKey, seq: u64) -> SignedReport {
        let mut env: Envelope = encoding::decode(&signed(key, seq).body).unwrap();
        env.device = device;
        let body = encoding::encode(&env);
        let signature = Signature64(key.sign(&domain_message(REPORT_SIG_DOMAIN, &body)).to_bytes());
        SignedReport { body, signature }
    }

    #[test]
    fn a_cached_key_answers_exactly_as_a_fresh_one() {
        let (a, b) = (SigningKey::from_bytes(&[1; 32]), SigningKey::from_bytes(&[2; 32]));
        let a_pub = a.verifying_key().to_bytes();
        // Not a curve point: y = 2 has no x on edwards25519.
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert!(VerifyingKey::from_bytes(&not_a_point).is_err());
        let mut flipped = signed(&a, 3);
        flipped.signature.0[40] ^= 1;
        let reports = [
            signed(&a, 1),
            claiming(a_pub, &b, 2), // b's signature over a body claiming a's key, right after a's key was cached
            flipped,
            signed(&b, 4),
            claiming(not_a_point, &a, 5),
            signed(&a, 6),
            claiming(a_pub, &b, 7),
        ];
        let mut keys = KeyCache::default();
        let outcomes: Vec<_> = reports.iter().map(|r| verify_with(r, &mut keys).map(|v| v.id)).collect();
        let fresh: Vec<_> = reports.iter().map(|r| verify(r).map(|v| v.id)).collect();
        assert_eq!(outcomes, fresh);
        let ok: Vec<bool> = outcomes.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, false, true, false, true, false]);
        assert_eq!(outcomes[4], Err(VerifyError::BadKey));
        assert_eq!(outcomes[6], Err(VerifyError::BadSignature));
    }

    #[test]
    fn a_reason_never_exceeds_the_reason_limit() {
        let e = VerifyError::Invalid(ValidationError::Latitude(1e300_f64.to_string()));
        assert!(e.to_string().len() > limits::MAX_REASON);
        let r = e.reason();
        assert!(r.len() <= limits::MAX_REASON && r.starts_with("invalid field: latitude 1000"), "{r}");
    }
}
