//! Fixtures shared by truce-shared's integration tests: a fixed device key
//! and a few fixed reports, so the known-answer vectors are reproducible.
//!
//! The observation and envelope come from `truce-testkit`'s `fixtures.rs`,
//! included by path: `truce-testkit` depends on `truce-shared`, so a
//! dev-dependency back would make a cycle (see that crate's docs).

#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use truce_shared::*;

#[path = "../../../testkit/src/fixtures.rs"]
mod fixtures;
pub use fixtures::*;

/// The fixed test key: seed = 32 bytes of 0x42. Never a real device's.
pub fn fixed_key() -> SigningKey {
    Device::fixed(0x42).key
}

/// The observation of the first known-answer report: shelling heard,
/// assessed as two outgoing rounds of 152mm artillery.
pub fn shelling() -> Observation {
    Observation {
        effect: Some(Effect::Outgoing),
        weapon: Some("152mm artillery".into()),
        count: Some(Count { n: 2, qualifier: Qualifier::Exact }),
        ..observation("heard two explosions assessed as outgoing 152mm artillery 5–7 km NNW")
    }
}

/// An envelope of the fixed key at `seq` after `prev`.
pub fn fixed_envelope(seq: u64, prev: Bytes32, observation: Observation) -> Envelope {
    envelope(fixed_key().verifying_key().to_bytes(), seq, prev, observation)
}

/// The three fixed reports of the known-answer vectors: a shelling report,
/// a "nothing observed" watch with an attachment, and a correction of the
/// first.
pub fn fixed_reports() -> Vec<SignedReport> {
    let key = fixed_key();
    let first = sign(&key, &fixed_envelope(1, [0; 32], shelling())).unwrap();
    let mut watch = shelling();
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
    let second = sign(&key, &fixed_envelope(2, first.id(), watch)).unwrap();
    let mut fix = shelling();
    fix.count = Some(Count { n: 30, qualifier: Qualifier::About });
    fix.description = "correction: about 30 bursts, not two".into();
    let mut env = fixed_envelope(3, second.id(), fix);
    env.amends = Some(first.id());
    let third = sign(&key, &env).unwrap();
    vec![first, second, third]
}
