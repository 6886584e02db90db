//! The report: what a monitor enters ([`Observation`]), what the device signs
//! ([`Envelope`]) and what travels ([`SignedReport`]).
//!
//! Field order here and the vocabulary's enum order (`vocabulary`) *are* the
//! wire format (DESIGN §2): postcard
//! encodes struct fields in declaration order and enum variants by index. Do
//! not reorder, insert or remove anything; append only with a new `version`.
//!
//! [`Observation::validate`] and [`Envelope::validate`] hold every rule a
//! report must meet; signing refuses an invalid envelope and verification
//! rejects one.

use serde::{Deserialize, Serialize};

use crate::limits;
pub use crate::vocabulary::{Basis, Category, Effect, Qualifier};

/// The envelope version this code writes and accepts.
pub const ENVELOPE_VERSION: u16 = 1;

/// A 32-byte identifier: a report id (SHA-256) or an Ed25519 public key.
pub type Bytes32 = [u8; 32];

/// Where the monitor was (WGS84).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Latitude in degrees, -90..=90.
    pub lat: f64,
    /// Longitude in degrees, -180..=180.
    pub lon: f64,
    /// Horizontal accuracy in metres, if known.
    pub accuracy_m: Option<u32>,
}

/// A count of explosions, bursts, vehicles…
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// The number.
    pub n: u32,
    /// How exact it is.
    pub qualifier: Qualifier,
}

/// An evidence file, hashed when the report was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// File name as the monitor knew it.
    pub name: String,
    /// Media type, such as `image/jpeg`.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file's content.
    pub sha256: Bytes32,
}

/// What the monitor enters (DESIGN §2.1). Field order is the wire format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// When it happened, unix milliseconds UTC.
    pub observed_at: i64,
    /// End of a continuous event (or of a "nothing observed" watch).
    pub observed_until: Option<i64>,
    /// Where the monitor was.
    pub position: Position,
    /// Direction of the event from the monitor, degrees 0..360.
    pub bearing_deg: Option<u16>,
    /// Distance range to the event in metres, (min, max).
    pub distance_m: Option<(u32, u32)>,
    /// What it was.
    pub category: Category,
    /// Impact, outgoing, airburst…
    pub effect: Option<Effect>,
    /// Assessed weapon ("152mm artillery").
    pub weapon: Option<String>,
    /// How many.
    pub count: Option<Count>,
    /// How the monitor knows.
    pub basis: Basis,
    /// Free text.
    pub description: String,
    /// Evidence files.
    pub attachments: Vec<Attachment>,
}

/// What the device signs (DESIGN §2.2). Field order is the wire format;
/// `version` must stay first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version, [`ENVELOPE_VERSION`].
    pub version: u16,
    /// The device's Ed25519 public key.
    pub device: Bytes32,
    /// Position in the device's chain: 1, 2, 3…
    pub seq: u64,
    /// Id of the device's previous report; zeros for seq 1.
    pub prev: Bytes32,
    /// The agent's clock when it signed, unix ms.
    pub recorded_at: i64,
    /// Id of an earlier report of this device that this one corrects.
    pub amends: Option<Bytes32>,
    /// What was observed.
    pub observation: Observation,
}

/// A report as it travels and is stored: the exact signed bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReport {
    /// `postcard(Envelope)`.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// Ed25519 over `"truce/report/v1\0" || body`.
    pub signature: Signature64,
}

impl std::fmt::Debug for SignedReport {
    // Payloads stay out of logs: show the id only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedReport").field("id", &hex::encode(self.id())).field("body_len", &self.body.len()).finish()
    }
}

/// A 64-byte Ed25519 signature, encoded by postcard as 64 raw bytes (serde
/// has no derive for arrays longer than 32).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature64(pub [u8; 64]);

impl std::fmt::Debug for Signature64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature64({})", hex::encode(self.0))
    }
}

impl Serialize for Signature64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(64)?;
        for b in &self.0 {
            t.serialize_element(b)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Signature64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Signature64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("64 bytes")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Signature64, A::Error> {
                let mut out = [0u8; 64];
                for (i, b) in out.iter_mut().enumerate() {
                    *b = a.next_element()?.ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Signature64(out))
            }
        }
        d.deserialize_tuple(64, V)
    }
}

/// Why an observation or envelope is not a valid report. Each message names
/// the field and what to do, so a monitor can fix it on the spot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// Latitude outside -90..=90 or not a number.
    #[error("latitude {0} is out of range: use decimal degrees between -90 and 90")]
    Latitude(String),
    /// Longitude outside -180..=180 or not a number.
    #[error("longitude {0} is out of range: use decimal degrees between -180 and 180")]
    Longitude(String),
    /// `observed_until` before `observed_at`.
    #[error("the end time is before the start time: --until must be at or after --at")]
    UntilBeforeAt,
    /// Bearing of 360 or more.
    #[error("bearing {0} is out of range: use degrees from 0 to 359")]
    Bearing(u16),
    /// Distance range with min > max.
    #[error("distance {0}-{1} m is inverted: give the smaller distance first")]
    DistanceInverted(u32, u32),
    /// Weapon text too long.
    #[error("weapon is {0} bytes: shorten it to at most {max} bytes", max = limits::MAX_WEAPON)]
    WeaponTooLong(usize),
    /// Description too long.
    #[error("description is {0} bytes: shorten it to at most {max} bytes (8 KiB)", max = limits::MAX_DESCRIPTION)]
    DescriptionTooLong(usize),
    /// Too many attachments.
    #[error("{0} attachments: attach at most {max}", max = limits::MAX_ATTACHMENTS)]
    TooManyAttachments(usize),
    /// Attachment name empty or too long.
    #[error("attachment name must be 1 to {max} bytes", max = limits::MAX_ATTACHMENT_NAME)]
    AttachmentName,
    /// Attachment media type empty or too long.
    #[error("attachment media type must be 1 to {max} bytes", max = limits::MAX_MEDIA_TYPE)]
    AttachmentMediaType,
    /// Unsupported envelope version.
    #[error("envelope version {0} is not supported (this build reads version {v})", v = ENVELOPE_VERSION)]
    Version(u16),
    /// seq 0.
    #[error("seq must start at 1")]
    SeqZero,
    /// seq 1 with a non-zero prev.
    #[error("the first report of a device (seq 1) must have an all-zero prev")]
    FirstPrevNotZero,
    /// A later report with a zero prev.
    #[error("seq {0} has an all-zero prev: only seq 1 may")]
    PrevZero(u64),
    /// A report amending itself.
    #[error("a report cannot amend itself")]
    AmendsSelf,
    /// A report too large to be one report.
    #[error("report body is {0} bytes, over the limit of {max}", max = limits::MAX_REPORT_BODY)]
    BodyTooLarge(usize),
}

impl Observation {
    /// Checks every field rule of DESIGN §2.1.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let p = &self.position;
        if !p.lat.is_finite() || !(-90.0..=90.0).contains(&p.lat) {
            return Err(ValidationError::Latitude(p.lat.to_string()));
        }
        if !p.lon.is_finite() || !(-180.0..=180.0).contains(&p.lon) {
            return Err(ValidationError::Longitude(p.lon.to_string()));
        }
        if let Some(until) = self.observed_until {
            if until < self.observed_at {
                return Err(ValidationError::UntilBeforeAt);
            }
        }
        if let Some(b) = self.bearing_deg {
            if b >= 360 {
                return Err(ValidationError::Bearing(b));
            }
        }
        if let Some((min, max)) = self.distance_m {
            if min > max {
                return Err(ValidationError::DistanceInverted(min, max));
            }
        }
        if let Some(w) = &self.weapon {
            if w.len() > limits::MAX_WEAPON {
                return Err(ValidationError::WeaponTooLong(w.len()));
            }
        }
        if self.description.len() > limits::MAX_DESCRIPTION {
            return Err(ValidationError::DescriptionTooLong(self.description.len()));
        }
        if self.attachments.len() > limits::MAX_ATTACHMENTS {
            return Err(ValidationError::TooManyAttachments(self.attachments.len()));
        }
        for a in &self.attachments {
            if a.name.is_empty() || a.name.len() > limits::MAX_ATTACHMENT_NAME {
                return Err(ValidationError::AttachmentName);
            }
            if a.media_type.is_empty() || a.media_type.len() > limits::MAX_MEDIA_TYPE {
                return Err(ValidationError::AttachmentMediaType);
            }
        }
        Ok(())
    }
}

impl Envelope {
    /// Checks the envelope's own rules, then the observation's. The rule
    /// "amends is never the report itself" needs the id and is checked where
    /// the id is known ([`crate::signing`]).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.version != ENVELOPE_VERSION {
            return Err(ValidationError::Version(self.version));
        }
        match self.seq {
            0 => return Err(ValidationError::SeqZero),
            1 if self.prev != [0; 32] => return Err(ValidationError::FirstPrevNotZero),
            s if s > 1 && self.prev == [0; 32] => return Err(ValidationError::PrevZero(s)),
            _ => {}
        }
        self.observation.validate()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_observation() -> Observation {
        Observation {
            observed_at: 1_760_000_000_000,
            observed_until: None,
            position: Position { lat: 48.5, lon: 37.9, accuracy_m: Some(10) },
            bearing_deg: Some(315),
            distance_m: Some((5000, 7000)),
            category: Category::Shelling,
            effect: Some(Effect::Outgoing),
            weapon: Some("152mm artillery".into()),
            count: Some(Count { n: 2, qualifier: Qualifier::Exact }),
            basis: Basis::Heard,
            description: "two explosions NNW".into(),
            attachments: vec![],
        }
    }

    #[test]
    fn a_sample_is_valid() {
        sample_observation().validate().unwrap();
    }

    #[test]
    fn each_rule_is_enforced() {
        type Mutation = fn(&mut Observation);
        let cases: Vec<(Mutation, &str)> = vec![
            (|o| o.position.lat = 91.0, "latitude"),
            (|o| o.position.lat = f64::NAN, "latitude"),
            (|o| o.position.lon = -180.5, "longitude"),
            (|o| o.position.lon = f64::INFINITY, "longitude"),
            (|o| o.observed_until = Some(o.observed_at - 1), "end time"),
            (|o| o.bearing_deg = Some(360), "bearing"),
            (|o| o.distance_m = Some((7, 5)), "distance"),
            (|o| o.weapon = Some("x".repeat(129)), "weapon"),
            (|o| o.description = "x".repeat(8 * 1024 + 1), "description"),
        ];
        for (mutate, word) in cases {
            let mut o = sample_observation();
            mutate(&mut o);
            let e = o.validate().unwrap_err().to_string();
            assert!(e.contains(word), "{e:?} should mention {word}");
        }
    }

    #[test]
    fn limits_are_inclusive_at_the_edge() {
        let mut o = sample_observation();
        o.weapon = Some("x".repeat(128));
        o.description = "x".repeat(8 * 1024);
        o.bearing_deg = Some(359);
        o.distance_m = Some((5, 5));
        o.position = Position { lat: -90.0, lon: 180.0, accuracy_m: None };
        o.observed_until = Some(o.observed_at);
        o.attachments = (0..32)
            .map(|i| Attachment { name: format!("f{i}"), media_type: "image/jpeg".into(), size: 1, sha256: [0; 32] })
            .collect();
        o.validate().unwrap();
        o.attachments.push(o.attachments[0].clone());
        assert_eq!(o.validate(), Err(ValidationError::TooManyAttachments(33)));
    }
}
