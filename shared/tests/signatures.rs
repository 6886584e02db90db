//! Forgeries and aliases the one verification function must refuse:
//! flipped bits, a malleated signature (S + L), a small-order key with an
//! identity R and S = 0, and a validly signed but non-canonical body.

mod support;

use ed25519_dalek::{Signer, Verifier};
use truce_shared::signing::REPORT_SIG_DOMAIN;
use truce_shared::{encoding, verify, Signature64, SignedReport, VerifyError};

/// The order of the Ed25519 group, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

fn good() -> SignedReport {
    support::fixed_reports().remove(0)
}

#[test]
fn a_valid_report_verifies_and_its_id_is_stable() {
    let r = good();
    let a = verify(&r).unwrap();
    let b = verify(&r.clone()).unwrap();
    assert_eq!(a.id, b.id);
    assert_eq!(a.id, r.id());
    assert_eq!(a.envelope.seq, 1);
}

#[test]
fn every_flipped_bit_in_body_or_signature_is_rejected() {
    let r = good();
    for byte in 0..r.body.len() {
        for bit in 0..8 {
            let mut t = r.clone();
            t.body[byte] ^= 1 << bit;
            assert!(verify(&t).is_err(), "body byte {byte} bit {bit} accepted");
        }
    }
    for byte in 0..64 {
        for bit in 0..8 {
            let mut t = r.clone();
            t.signature.0[byte] ^= 1 << bit;
            assert!(verify(&t).is_err(), "signature byte {byte} bit {bit} accepted");
        }
    }
}

#[test]
fn s_plus_l_is_rejected() {
    let r = good();
    let mut sig = r.signature.0;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = sig[32 + i] as u16 + L[i] as u16 + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0, "S + L fits in 256 bits for a reduced S");
    let t = SignedReport { body: r.body, signature: Signature64(sig) };
    assert_eq!(verify(&t).unwrap_err(), VerifyError::BadSignature);
}

#[test]
fn small_order_key_with_identity_r_and_zero_s_is_rejected() {
    // The identity point, compressed: y = 1.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut env = support::fixed_envelope(1, [0; 32], support::shelling());
    env.device = identity;
    let body = encoding::encode(&env);
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    let forged = SignedReport { body: body.clone(), signature: Signature64(sig) };

    // The vector matters: plain (cofactorless, non-strict) verification
    // accepts it, since [0]B = R + [k]A when A and R are the identity.
    let key = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
    let mut msg = REPORT_SIG_DOMAIN.to_vec();
    msg.extend_from_slice(&body);
    assert!(key.is_weak());
    assert!(
        key.verify(&msg, &ed25519_dalek::Signature::from_bytes(&sig)).is_ok(),
        "plain verify accepts the small-order forgery"
    );
    assert_eq!(verify(&forged).unwrap_err(), VerifyError::BadSignature);
}

#[test]
fn a_validly_signed_non_canonical_body_is_rejected() {
    let key = support::fixed_key();
    let canonical = good().body;
    // seq 1 as the overlong varint 0x81 0x00 (version byte, 32 key bytes, then seq).
    let mut alias = canonical[..33].to_vec();
    alias.extend_from_slice(&[0x81, 0x00]);
    alias.extend_from_slice(&canonical[34..]);
    let mut msg = REPORT_SIG_DOMAIN.to_vec();
    msg.extend_from_slice(&alias);
    let sig = key.sign(&msg).to_bytes();
    let r = SignedReport { body: alias, signature: Signature64(sig) };
    assert_eq!(verify(&r).unwrap_err(), VerifyError::Encoding(encoding::EncodingError::NonCanonical));
}

#[test]
fn a_signature_by_another_key_is_rejected() {
    let r = good();
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let mut msg = REPORT_SIG_DOMAIN.to_vec();
    msg.extend_from_slice(&r.body);
    let t = SignedReport { body: r.body, signature: Signature64(other.sign(&msg).to_bytes()) };
    assert_eq!(verify(&t).unwrap_err(), VerifyError::BadSignature);
}

#[test]
fn a_signature_without_the_domain_prefix_is_rejected() {
    let r = good();
    let sig = support::fixed_key().sign(&r.body).to_bytes();
    assert_eq!(
        verify(&SignedReport { body: r.body, signature: Signature64(sig) }).unwrap_err(),
        VerifyError::BadSignature
    );
}
