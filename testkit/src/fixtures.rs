//! Reports for tests: one plain observation to start from, the envelope a
//! device signs around it, and a device that signs chained reports.
//!
//! Every test observation starts from [`observation`] and changes only what
//! it is about, with struct update syntax:
//!
//! ```
//! use truce_shared::{Effect, Observation};
//! let outgoing = Observation { effect: Some(Effect::Outgoing), ..truce_testkit::observation("outgoing") };
//! ```
//!
//! The values are fixed (no clock, no randomness but [`Device::new`]'s
//! key), so a failing test names the same bytes on every run.
//!
//! This file names only `truce_shared`, `ed25519_dalek` and `hex`:
//! `truce-shared`'s own tests include it by path (see the crate docs on
//! dependency cycles), and its known-answer vectors are built on it.

use ed25519_dalek::{Signer, SigningKey};
use truce_shared::{
    signing, Basis, Bytes32, Category, Envelope, Observation, Position, Signature64, SignedReport, ENVELOPE_VERSION,
};

/// When every fixture observation happened (2026-11-22 09:15 UTC, ms).
pub const OBSERVED_AT: i64 = 1_795_338_900_000;

/// A plain observation: shelling heard 5–7 km away at bearing 337 from a
/// fixed point, no effect, weapon or count.
pub fn observation(description: &str) -> Observation {
    Observation {
        observed_at: OBSERVED_AT,
        observed_until: None,
        position: Position { lat: 48.0159, lon: 37.8029, accuracy_m: Some(12) },
        bearing_deg: Some(337),
        distance_m: Some((5000, 7000)),
        category: Category::Shelling,
        effect: None,
        weapon: None,
        count: None,
        basis: Basis::Heard,
        description: description.into(),
        attachments: vec![],
    }
}

/// The envelope `device` signs at `seq` after `prev`, recorded one minute
/// after the observation.
pub fn envelope(device: Bytes32, seq: u64, prev: Bytes32, observation: Observation) -> Envelope {
    Envelope {
        version: ENVELOPE_VERSION,
        device,
        seq,
        prev,
        recorded_at: observation.observed_at + 60_000,
        amends: None,
        observation,
    }
}

/// A laptop's report key and the head of its chain.
pub struct Device {
    /// The key.
    pub key: SigningKey,
    /// The last seq signed.
    pub seq: u64,
    /// The last id signed.
    pub head: Bytes32,
}

impl Device {
    /// A new random device.
    #[allow(clippy::new_without_default)] // a random key is not a default
    pub fn new() -> Device {
        Device { key: signing::generate_key(), seq: 0, head: [0; 32] }
    }

    /// A device with a fixed key (seed bytes all `seed`), so a failing
    /// test names the same keys and ids on every run.
    pub fn fixed(seed: u8) -> Device {
        Device { key: SigningKey::from_bytes(&[seed; 32]), seq: 0, head: [0; 32] }
    }

    /// The public key.
    pub fn public(&self) -> Bytes32 {
        self.key.verifying_key().to_bytes()
    }

    /// The public key, hex, as `device add` takes it.
    pub fn hex(&self) -> String {
        hex::encode(self.public())
    }

    /// The envelope this device would sign at `seq` after `prev`, around
    /// [`observation`]`(description)`.
    pub fn envelope(&self, seq: u64, prev: Bytes32, description: &str) -> Envelope {
        envelope(self.public(), seq, prev, observation(description))
    }

    /// Signs the next report of the chain.
    pub fn next(&mut self, description: &str) -> SignedReport {
        let r = self.at(self.seq + 1, self.head, description);
        self.seq += 1;
        self.head = r.id();
        r
    }

    /// `n` next reports.
    pub fn batch(&mut self, n: usize, description: &str) -> Vec<SignedReport> {
        (0..n).map(|i| self.next(&format!("{description} {i}"))).collect()
    }

    /// A different report at `seq` (after `prev`), without moving the head:
    /// an equivocation.
    pub fn at(&self, seq: u64, prev: Bytes32, description: &str) -> SignedReport {
        truce_shared::sign(&self.key, &self.envelope(seq, prev, description))
            .unwrap_or_else(|e| panic!("signing fixture report seq {seq}: {e}"))
    }

    /// Signs arbitrary bytes as a report body by hand, skipping every check
    /// `sign` makes: for forged, non-canonical and out-of-range reports.
    /// The domain prefix is spelled out as DESIGN §2.2 gives it, so these
    /// tests also pin it.
    pub fn sign_raw(&self, body: Vec<u8>) -> SignedReport {
        let mut msg = b"truce/report/v1\0".to_vec();
        msg.extend_from_slice(&body);
        SignedReport { body, signature: Signature64(self.key.sign(&msg).to_bytes()) }
    }
}

/// The report with one bit of its signature flipped.
pub fn tampered(r: &SignedReport) -> SignedReport {
    let mut t = r.clone();
    t.signature.0[7] ^= 0x10;
    t
}
