//! Fixtures shared by truce-shared's integration tests: a fixed device key
//! and a few fixed reports, so the known-answer vectors are reproducible.

#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use truce_shared::*;

/// The fixed test key: seed = 32 bytes of 0x42. Never a real device's.
pub fn fixed_key() -> SigningKey {
    SigningKey::from_bytes(&[0x42; 32])
}

/// A plain observation.
pub fn observation() -> Observation {
    Observation {
        observed_at: 1_795_338_900_000,
        observed_until: None,
        position: Position { lat: 48.0159, lon: 37.8029, accuracy_m: Some(12) },
        bearing_deg: Some(337),
        distance_m: Some((5000, 7000)),
        category: Category::Shelling,
        effect: Some(Effect::Outgoing),
        weapon: Some("152mm artillery".into()),
        count: Some(Count { n: 2, qualifier: Qualifier::Exact }),
        basis: Basis::Heard,
        description: "heard two explosions assessed as outgoing 152mm artillery 5–7 km NNW".into(),
        attachments: vec![],
    }
}

/// An envelope of the fixed key at `seq` after `prev`.
pub fn envelope(seq: u64, prev: Bytes32, observation: Observation) -> Envelope {
    Envelope {
        version: ENVELOPE_VERSION,
        device: fixed_key().verifying_key().to_bytes(),
        seq,
        prev,
        recorded_at: observation.observed_at + 60_000,
        amends: None,
        observation,
    }
}

/// The three fixed reports of the known-answer vectors: a shelling report,
/// a "nothing observed" watch with an attachment, and a correction of the
/// first.
pub fn fixed_reports() -> Vec<SignedReport> {
    let key = fixed_key();
    let first = sign(&key, &envelope(1, [0; 32], observation())).unwrap();
    let mut watch = observation();
    watch.observed_until = Some(watch.observed_at + 5 * 3_600_000);
    watch.category = Category::NothingObserved;
    watch.bearing_deg = None;
    watch.distance_m = None;
    watch.effect = None;
    watch.weapon = None;
    watch.count = None;
    watch.basis = Basis::Seen;
    watch.description = "positioned 6 km north-west of the city, observed nothing".into();
    watch.attachments = vec![Attachment {
        name: "panorama.jpg".into(),
        media_type: "image/jpeg".into(),
        size: 123_456,
        sha256: [0xAB; 32],
    }];
    let second = sign(&key, &envelope(2, first.id(), watch)).unwrap();
    let mut fix = observation();
    fix.count = Some(Count { n: 30, qualifier: Qualifier::About });
    fix.description = "correction: about 30 bursts, not two".into();
    let mut env = envelope(3, second.id(), fix);
    env.amends = Some(first.id());
    let third = sign(&key, &env).unwrap();
    vec![first, second, third]
}
