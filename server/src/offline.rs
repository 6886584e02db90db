//! `verify BUNDLE [--devices FILE]`: re-verifies a bundle offline, with no
//! database and no trust in the server that wrote it.
//!
//! Each report goes through the one verification function the server uses
//! ([`truce_shared::signing::verify`]: `verify_strict`, canonical decoding,
//! field rules). With a devices file (from `export --format bundle
//! --devices-out`, or `device list --json`), a report whose key is not in
//! the list fails as "unknown device"; a report of a device revoked since
//! is still shown as valid, with the revocation noted, because reports the
//! server verified before the revocation stay verified.
//!
//! The bundle streams: a file of any size is checked in the memory of one
//! report. A damaged frame stops the reading (the position of whatever
//! follows is unknown), and the report it broke is named by its position.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Serialize;
use truce_shared::bundle::{MAGIC, MAX_BUNDLE_FRAME};
use truce_shared::frame::{read_frame_sync, HEADER_LEN};
use truce_shared::signing::{claimed_device, fingerprint, report_id, verify};
use truce_shared::time::format_ms;
use truce_shared::{encoding, Bytes32, SignedReport};

use crate::export::DeviceEntry;

/// The enrolled devices a bundle is checked against.
#[derive(Debug, Clone, Default)]
pub struct DeviceList {
    by_key: HashMap<Bytes32, DeviceEntry>,
}

/// Why a devices file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    /// The file could not be read.
    #[error("cannot read the devices file: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a device entry.
    #[error("devices file line {line}: {detail} (expected JSON lines like {{\"device\": \"64 hex\", \"name\": \"laptop-1\"}}, as `truce-server device list --json` prints)")]
    Bad {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
}

impl DeviceList {
    /// Reads a devices file: JSON Lines of [`DeviceEntry`] (extra fields are
    /// ignored, so `device list --json` output works as it is).
    pub fn read(r: impl Read) -> Result<DeviceList, DevicesError> {
        let mut by_key = HashMap::new();
        for (i, line) in BufReader::new(r).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |detail: String| DevicesError::Bad { line: i + 1, detail };
            let e: DeviceEntry = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            let key = hex::decode(&e.device)
                .ok()
                .and_then(|k| Bytes32::try_from(k).ok())
                .ok_or_else(|| bad(format!("{:?} is not a 64-hex device key", e.device)))?;
            by_key.insert(key, e);
        }
        Ok(DeviceList { by_key })
    }

    /// Reads a devices file from disk.
    pub fn open(path: &Path) -> Result<DeviceList, DevicesError> {
        DeviceList::read(std::fs::File::open(path)?)
    }

    /// How many devices.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// True if the list is empty.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// One frame of a bundle and what offline verification found in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleEntry {
    /// 1-based position in the bundle.
    pub index: u64,
    /// Byte offset of its frame in the file.
    pub offset: u64,
    /// True if the report verified (and, with a devices file, its device is listed).
    pub ok: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// The id of the bytes as read (a tampered report has a different id
    /// from the one its device signed).
    pub id: Option<String>,
    /// The device key the bytes claim, hex.
    pub device: Option<String>,
    /// The device's name from the devices file.
    pub device_name: Option<String>,
    /// The chain position, when the body decodes.
    pub seq: Option<u64>,
    /// When it was observed, when the body decodes.
    pub observed_at: Option<String>,
    /// A note that does not fail the report (a device revoked since).
    pub note: Option<String>,
}

/// The totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    /// Reports read (including the one a damaged frame broke).
    pub reports: u64,
    /// Reports that verified.
    pub ok: u64,
    /// Reports that failed.
    pub failed: u64,
    /// True if a damaged frame stopped the reading early.
    pub truncated: bool,
}

/// Why a bundle could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyBundleError {
    /// Not a bundle.
    #[error("not a Truce bundle (the file does not start with TRUCEB01)")]
    BadMagic,
    /// The file could not be read.
    #[error("cannot read the bundle: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks every report of the bundle read from `input`, calling `each` with
/// each outcome in order, and returns the totals.
pub fn verify_bundle(
    input: impl Read,
    devices: Option<&DeviceList>,
    mut each: impl FnMut(&BundleEntry) -> std::io::Result<()>,
) -> Result<Totals, VerifyBundleError> {
    let mut r = BufReader::new(input);
    let mut magic = [0u8; 8];
    match r.read_exact(&mut magic) {
        Ok(()) if &magic == MAGIC => {}
        Ok(()) => return Err(VerifyBundleError::BadMagic),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(VerifyBundleError::BadMagic),
        Err(e) => return Err(e.into()),
    }
    let mut totals = Totals::default();
    let mut offset = MAGIC.len() as u64;
    loop {
        let index = totals.reports + 1;
        let mut c = BundleEntry {
            index,
            offset,
            ok: false,
            error: None,
            id: None,
            device: None,
            device_name: None,
            seq: None,
            observed_at: None,
            note: None,
        };
        let frame = match read_frame_sync(&mut r, MAX_BUNDLE_FRAME) {
            Ok(None) => break,
            Ok(Some(f)) => f,
            Err(e) => {
                c.error = Some(format!("damaged frame: {e}; the rest of the bundle cannot be read"));
                totals.reports += 1;
                totals.failed += 1;
                totals.truncated = true;
                each(&c)?;
                break;
            }
        };
        offset += (HEADER_LEN + frame.len()) as u64;
        totals.reports += 1;
        check(&frame, devices, &mut c);
        if c.ok {
            totals.ok += 1;
        } else {
            totals.failed += 1;
        }
        each(&c)?;
    }
    Ok(totals)
}

/// Fills in `c` for one frame.
fn check(frame: &[u8], devices: Option<&DeviceList>, c: &mut BundleEntry) {
    let report: SignedReport = match encoding::decode(frame) {
        Ok(r) => r,
        Err(e) => {
            c.error = Some(format!("not a signed report: {e}"));
            return;
        }
    };
    c.id = Some(hex::encode(report_id(&report.body)));
    let claimed = claimed_device(&report.body).ok();
    c.device = claimed.map(hex::encode);
    let entry = claimed.and_then(|k| devices.and_then(|d| d.by_key.get(&k)));
    c.device_name = entry.and_then(|e| e.name.clone());
    match verify(&report) {
        Err(e) => c.error = Some(e.reason()),
        Ok(v) => {
            c.seq = Some(v.envelope.seq);
            c.observed_at = Some(format_ms(v.envelope.observation.observed_at));
            match (devices, entry) {
                (Some(_), None) => {
                    c.error =
                        Some(format!("unknown device {}: not in the devices file", fingerprint(&v.envelope.device)))
                }
                (_, Some(DeviceEntry { revoked_at: Some(at), .. })) => {
                    c.ok = true;
                    c.note = Some(format!("device revoked at {at}"));
                }
                _ => c.ok = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use truce_shared::bundle::BundleWriter;
    use truce_shared::{Basis, Category, Envelope, Observation, Position, ENVELOPE_VERSION};

    fn bundle(n: u64) -> (Vec<u8>, Vec<Bytes32>, Bytes32) {
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut w = BundleWriter::new(Vec::new()).unwrap();
        let mut prev = [0; 32];
        let mut ids = Vec::new();
        for seq in 1..=n {
            let env = Envelope {
                version: ENVELOPE_VERSION,
                device: key.verifying_key().to_bytes(),
                seq,
                prev,
                recorded_at: 1_700_000_000_000,
                amends: None,
                observation: Observation {
                    observed_at: 1_700_000_000_000,
                    observed_until: None,
                    position: Position { lat: 48.0, lon: 37.8, accuracy_m: Some(10) },
                    bearing_deg: Some(300),
                    distance_m: Some((3000, 5000)),
                    category: Category::Shelling,
                    effect: None,
                    weapon: None,
                    count: None,
                    basis: Basis::Heard,
                    description: "four impacts".into(),
                    attachments: vec![],
                },
            };
            let r = truce_shared::sign(&key, &env).unwrap();
            prev = r.id();
            ids.push(prev);
            w.write(&r).unwrap();
        }
        (w.finish().unwrap(), ids, key.verifying_key().to_bytes())
    }

    fn run(bytes: &[u8], devices: Option<&DeviceList>) -> (Totals, Vec<BundleEntry>) {
        let mut seen = Vec::new();
        let t = verify_bundle(bytes, devices, |c| {
            seen.push(c.clone());
            Ok(())
        })
        .unwrap();
        (t, seen)
    }

    #[test]
    fn every_flipped_byte_fails_and_names_its_report() {
        let (bytes, _, _) = bundle(3);
        let (t, _) = run(&bytes, None);
        assert_eq!((t.reports, t.ok, t.failed), (3, 3, 0));
        // The frame each byte belongs to: 1-based index.
        let mut owner = vec![0u64; bytes.len()];
        let mut at = 8;
        for i in 1..=3u64 {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            owner[at..at + 4 + len].iter_mut().for_each(|o| *o = i);
            at += 4 + len;
        }
        for pos in 8..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = bytes.clone();
                bad[pos] ^= bit;
                let (t, seen) = run(&bad, None);
                let failed: Vec<u64> = seen.iter().filter(|c| !c.ok).map(|c| c.index).collect();
                assert!(t.failed >= 1, "flipping bit {bit:#x} of byte {pos} went unnoticed");
                assert_eq!(failed[0], owner[pos], "byte {pos}: the first failure names the report it broke");
            }
        }
    }

    #[test]
    fn the_magic_is_checked() {
        let (mut bytes, _, _) = bundle(1);
        bytes[0] = b'X';
        assert!(matches!(verify_bundle(&bytes[..], None, |_| Ok(())), Err(VerifyBundleError::BadMagic)));
        assert!(matches!(verify_bundle(&b"TRUCE"[..], None, |_| Ok(())), Err(VerifyBundleError::BadMagic)));
    }

    #[test]
    fn a_devices_file_checks_enrolment() {
        let (bytes, _, key) = bundle(2);
        let listed = format!("{{\"device\":\"{}\",\"name\":\"laptop-1\"}}\n", hex::encode(key));
        let list = DeviceList::read(listed.as_bytes()).unwrap();
        let (t, seen) = run(&bytes, Some(&list));
        assert_eq!(t.ok, 2);
        assert_eq!(seen[0].device_name.as_deref(), Some("laptop-1"));

        let other = format!("{{\"device\":\"{}\"}}\n", "11".repeat(32));
        let (t, seen) = run(&bytes, Some(&DeviceList::read(other.as_bytes()).unwrap()));
        assert_eq!(t.failed, 2);
        assert!(seen[0].error.as_deref().unwrap().starts_with("unknown device"));

        let revoked = format!("{{\"device\":\"{}\",\"revoked_at\":\"2026-01-01T00:00:00.000Z\"}}\n", hex::encode(key));
        let (t, seen) = run(&bytes, Some(&DeviceList::read(revoked.as_bytes()).unwrap()));
        assert_eq!(t.ok, 2);
        assert!(seen[1].note.as_deref().unwrap().contains("revoked"));

        assert!(DeviceList::read(&b"{\"device\":\"zz\"}\n"[..]).is_err());
        assert!(DeviceList::read(&b"not json\n"[..]).is_err());
    }

    #[test]
    fn a_cut_bundle_is_named_at_its_last_report() {
        let (bytes, _, _) = bundle(2);
        let (t, seen) = run(&bytes[..bytes.len() - 10], None);
        assert!(t.truncated);
        assert_eq!((t.ok, t.failed), (1, 1));
        assert_eq!(seen[1].index, 2);
    }
}
