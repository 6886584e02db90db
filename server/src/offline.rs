//! `verify BUNDLE [--devices FILE] [--log-key KEY]`: re-verifies a bundle
//! offline, with no database and no trust in the server that wrote it.
//!
//! Each report goes through the one verification function the server uses
//! ([`truce_shared::signing::verify`]: `verify_strict`, canonical decoding,
//! field rules). With a devices file (from `export --format bundle
//! --devices-out`, or `device list --json`), a report whose key is not in
//! the list fails as "unknown device"; a report of a device revoked since
//! is still shown as valid, with the revocation noted, because reports the
//! server verified before the revocation stay verified.
//!
//! A version-2 bundle (DESIGN §9) also carries the server's signed
//! checkpoint and, per report, its log entry and inclusion proof. The
//! checkpoint is opened with the pinned log key (`--log-key`, the
//! fingerprint the coordinator reads out, or the whole key); one signed by
//! any other key fails. Unpinned, it is opened with the key the bundle
//! names, and said to be unpinned. A report is "proven in the log" when
//! its entry decodes, names this report's id (the id of the bytes as
//! read), and the entry's leaf hash and audit path lead to the
//! checkpoint's root. Per device, seqs missing between the first and the
//! last exported report are named in a note: the bundle does not carry
//! them (filtered out by the export, amended, or never received).
//!
//! A laptop's version-2 bundle (`truce-agent bundle export`) carries no
//! log items: its reports are checked as a version-1 bundle's are, and
//! proofs are expected only of a bundle whose first item is a log item
//! (a server's export starts with its checkpoint). A log item anywhere
//! else fails the bundle.
//!
//! Evidence files (DESIGN §10) are checked each against its signed hash:
//! a file passes when its pieces come in order, cover its whole size,
//! hash to the SHA-256 they claim, and a report of this bundle that
//! verified names that SHA-256 with that size (the pieces' own claims
//! prove nothing: the report's signature does).
//!
//! The bundle streams: a file of any size is checked in the memory of one
//! report or one evidence piece (and the seqs of each device, for the gap
//! notes, and the hashes of the files reports name). A damaged
//! frame stops the reading (the position of whatever follows is unknown),
//! and the report it broke is named by its position.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde::Serialize;
use truce_shared::bundle::{BundleError, EvidenceFile, Item, ItemReader, Version};
use truce_shared::log::{check_inclusion, open_checkpoint, Checkpoint, Entry, Event, Stored};
use truce_shared::signing::{claimed_device, fingerprint, report_id, verify};
use truce_shared::time::format_ms;
use truce_shared::{Bytes32, SignedReport};

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

/// The log key `verify --log-key` pins ([`KeyPin`]).
pub use truce_shared::log::KeyPin as LogPin;

/// Reads `--log-key`.
pub fn parse_log_pin(text: &str) -> Result<LogPin, String> {
    LogPin::parse(text).ok_or_else(|| {
        format!(
            "{text:?} is not a log key: give its fingerprint (abcd-ef01-2345-6789, as `truce-server key` \
             prints it) or the 64-hex public key"
        )
    })
}

/// What a bundle's checkpoint turned out to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointCheck {
    /// Byte offset of its frame.
    pub offset: u64,
    /// True if it opened: a well-formed signed note, signed by the key
    /// (the pinned key, or unpinned the one the bundle names).
    pub ok: bool,
    /// Why it did not.
    pub error: Option<String>,
    /// Its origin line (`<mission>/truce-log/<fingerprint>`).
    pub origin: Option<String>,
    /// Entries in the tree it signs.
    pub size: Option<u64>,
    /// The log key the bundle names, hex.
    pub log_key: String,
    /// That key's fingerprint.
    pub fingerprint: String,
    /// True if `--log-key` pinned the key it was checked with.
    pub pinned: bool,
}

/// One report of a bundle and what offline verification found in it.
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
    /// Whether it is proven in the log (`None` in a version-1 bundle,
    /// which carries no proofs).
    pub proven: Option<bool>,
    /// The index of its log entry, as the bundle says.
    pub log_entry: Option<u64>,
    /// Why it is not proven.
    pub proof_error: Option<String>,
}

/// One evidence file of a bundle, checked against its signed hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceCheck {
    /// Byte offset of its first piece's frame.
    pub offset: u64,
    /// The SHA-256 its pieces claim, hex.
    pub sha256: String,
    /// The size its pieces claim.
    pub size: u64,
    /// True if the file is whole, hashes to that SHA-256, and a verified
    /// report of the bundle names it with that size.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}

/// What verification reports, in bundle order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Seen<'a> {
    /// The checkpoint (first in a version-2 bundle).
    Checkpoint(&'a CheckpointCheck),
    /// A report.
    Report(&'a BundleEntry),
    /// An evidence file.
    Evidence(&'a EvidenceCheck),
    /// Something that fails the bundle but is no report (a log item that
    /// follows no report, a second checkpoint).
    Problem(&'a str),
    /// Something to know that fails nothing (seqs not in the bundle, an
    /// item of a kind this build does not know).
    Note(&'a str),
}

/// The totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    /// The bundle's version (1 or 2).
    pub version: u8,
    /// Reports read (including the one a damaged frame broke).
    pub reports: u64,
    /// Reports that verified.
    pub ok: u64,
    /// Reports that failed.
    pub failed: u64,
    /// Reports proven in the log (version 2).
    pub proven: u64,
    /// Reports not proven in the log (version 2).
    pub not_proven: u64,
    /// True if the bundle's checkpoint opened (version 2).
    pub checkpoint_ok: bool,
    /// Problems that are no report's ([`Seen::Problem`]).
    pub problems: u64,
    /// Seqs missing between the first and last report of each device.
    pub missing_seqs: u64,
    /// True if a damaged frame stopped the reading early.
    pub truncated: bool,
    /// True if the bundle carries the log's proofs (its first item is a
    /// log item): every report must then be proven.
    pub log: bool,
    /// Evidence files read.
    pub evidence: u64,
    /// Evidence files that match their signed hash.
    pub evidence_ok: u64,
    /// Evidence files that do not, or that no report of the bundle names.
    pub evidence_failed: u64,
}

impl Totals {
    /// True if nothing failed: every report verified, every evidence file
    /// matches and, in a bundle with the log's proofs, the checkpoint
    /// opened and every report is proven.
    pub fn clean(&self) -> bool {
        self.failed == 0
            && self.problems == 0
            && self.evidence_failed == 0
            && (!self.log || (self.checkpoint_ok && self.not_proven == 0))
    }
}

/// Why a bundle could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyBundleError {
    /// Not a bundle.
    #[error("not a Truce bundle (the file does not start with TRUCEB01 or TRUCEB02)")]
    BadMagic,
    /// The file could not be read.
    #[error("cannot read the bundle: {0}")]
    Io(#[from] std::io::Error),
}

/// A report read, waiting for the log items that follow it.
struct Pending {
    c: BundleEntry,
    report: SignedReport,
    entry: Option<(u64, Vec<u8>)>,
    inclusion: Option<(u64, u64, Vec<Bytes32>)>,
}

struct State<'a, F> {
    devices: Option<&'a DeviceList>,
    checkpoint: Option<Checkpoint>,
    /// Why there is no checkpoint to prove against.
    no_checkpoint: String,
    totals: Totals,
    chains: HashMap<Bytes32, Vec<u64>>,
    /// The sizes verified reports give each file they name.
    named: HashMap<Bytes32, Vec<u64>>,
    /// The evidence file whose pieces are being read, with where it began
    /// and the first thing wrong with it.
    file: Option<(u64, EvidenceFile, Option<String>)>,
    each: F,
}

impl<F: FnMut(Seen<'_>) -> std::io::Result<()>> State<'_, F> {
    fn report_done(&mut self, c: &BundleEntry) -> std::io::Result<()> {
        if c.ok {
            self.totals.ok += 1;
        } else {
            self.totals.failed += 1;
        }
        match c.proven {
            Some(true) => self.totals.proven += 1,
            Some(false) => self.totals.not_proven += 1,
            None => {}
        }
        (self.each)(Seen::Report(c))
    }

    fn finish(&mut self, p: Option<Pending>) -> std::io::Result<()> {
        let Some(mut p) = p else { return Ok(()) };
        let claimed = check(&p.report, self.devices, &mut p.c, &mut self.named);
        if let (true, Some((device, seq))) = (p.c.ok, claimed) {
            self.chains.entry(device).or_default().push(seq);
        }
        if self.totals.log {
            match self.prove(&p) {
                Ok(note) => {
                    p.c.proven = Some(true);
                    if let Some(n) = note {
                        p.c.note = Some(match p.c.note.take() {
                            Some(before) => format!("{before}; {n}"),
                            None => n,
                        });
                    }
                }
                Err(why) => {
                    p.c.proven = Some(false);
                    p.c.proof_error = Some(why);
                }
            }
            p.c.log_entry = p.entry.as_ref().map(|(i, _)| *i);
        }
        self.report_done(&p.c)
    }

    /// Whether `p` is proven in the log: `Ok` with a note on how the log
    /// recorded it, or why not.
    fn prove(&self, p: &Pending) -> Result<Option<String>, String> {
        let Some(cp) = &self.checkpoint else { return Err(self.no_checkpoint.clone()) };
        let Some((index, bytes)) = &p.entry else { return Err("the bundle carries no log entry for it".into()) };
        let entry = Entry::decode(bytes).map_err(|e| format!("its log entry {index}: {e}"))?;
        let id = report_id(&p.report.body);
        let status = match &entry.event {
            Event::Report { id: logged, status, .. } if *logged == id => status,
            Event::Report { id: logged, .. } => {
                return Err(format!(
                    "log entry {index} records report {}…, not this one",
                    hex::encode(logged).get(..16).unwrap_or_default()
                ))
            }
            _ => return Err(format!("log entry {index} records no report")),
        };
        let Some((at, size, proof)) = &p.inclusion else {
            return Err(format!("the bundle carries no inclusion proof for log entry {index}"));
        };
        if at != index {
            return Err(format!("the inclusion proof is for entry {at}, not {index}"));
        }
        if *size != cp.size {
            return Err(format!("the inclusion proof leads to a tree of {size}, the checkpoint's has {}", cp.size));
        }
        check_inclusion(cp, *index, bytes, proof).map_err(|e| e.to_string())?;
        Ok(match status {
            Stored::Verified => None,
            Stored::Quarantined(r) => Some(format!("the log recorded it as quarantined: {r}")),
            Stored::Rejected(r) => Some(format!("the log recorded it as rejected: {r}")),
        })
    }

    fn checkpoint(&mut self, offset: u64, log_key: Bytes32, note: &str, pin: Option<&LogPin>) -> std::io::Result<()> {
        let mut c = CheckpointCheck {
            offset,
            ok: false,
            error: None,
            origin: None,
            size: None,
            log_key: hex::encode(log_key),
            fingerprint: fingerprint(&log_key),
            pinned: pin.is_some(),
        };
        let opened = match pin {
            Some(pin) if !pin.matches(&log_key) => Err(format!(
                "the checkpoint is signed by log key {}, not the pinned {}: this bundle is not from the log you \
                 expect",
                fingerprint(&log_key),
                pin.fingerprint()
            )),
            _ => open_checkpoint(note, &log_key).map_err(|e| e.to_string()),
        };
        match opened {
            Ok(cp) => {
                c.ok = true;
                c.origin = Some(cp.origin.clone());
                c.size = Some(cp.size);
                self.checkpoint = Some(cp);
                self.totals.checkpoint_ok = true;
            }
            Err(e) => {
                self.no_checkpoint = format!("the checkpoint failed: {e}");
                c.error = Some(e);
            }
        }
        (self.each)(Seen::Checkpoint(&c))
    }

    /// A piece of an evidence file.
    fn piece(&mut self, at: u64, sha256: Bytes32, size: u64, offset: u64, data: &[u8]) -> std::io::Result<()> {
        if self.file.as_ref().is_none_or(|(_, f, _)| *f.sha256() != sha256) {
            self.end_file()?;
            self.file = Some((at, EvidenceFile::new(sha256, size), None));
        }
        if let Some((_, f, error @ None)) = self.file.as_mut() {
            if let Err(e) = f.take(size, offset, data) {
                *error = Some(format!("at byte {at}: {e}"));
            }
        }
        Ok(())
    }

    /// The pieces of the file being read ended: check it.
    fn end_file(&mut self) -> std::io::Result<()> {
        let Some((offset, f, error)) = self.file.take() else { return Ok(()) };
        let (sha256, size, taken) = (*f.sha256(), f.size(), f.taken());
        let named = self.named.get(&sha256);
        let error = match error {
            Some(e) => Some(e),
            None if !f.is_complete() => Some(format!("the bundle holds only {taken} of its {size} bytes")),
            None if !f.matches() => Some("its bytes hash to another SHA-256 than the one its pieces claim".into()),
            None if named.is_none() => Some("no report of this bundle that verified names this file".into()),
            None if !named.is_some_and(|n| n.contains(&size)) => {
                Some("the reports of this bundle give this file another size".into())
            }
            None => None,
        };
        let c = EvidenceCheck { offset, sha256: hex::encode(sha256), size, ok: error.is_none(), error };
        self.totals.evidence += 1;
        if c.ok {
            self.totals.evidence_ok += 1;
        } else {
            self.totals.evidence_failed += 1;
        }
        (self.each)(Seen::Evidence(&c))
    }

    fn problem(&mut self, what: &str) -> std::io::Result<()> {
        self.totals.problems += 1;
        (self.each)(Seen::Problem(what))
    }

    /// Notes each device's seqs missing between its first and last report.
    fn gaps(&mut self) -> std::io::Result<()> {
        let mut chains: Vec<(Bytes32, Vec<u64>)> = std::mem::take(&mut self.chains).into_iter().collect();
        chains.sort();
        for (device, mut seqs) in chains {
            seqs.sort_unstable();
            seqs.dedup();
            let mut ranges = Vec::new();
            let mut missing = 0u64;
            for w in seqs.windows(2) {
                if w[1] > w[0] + 1 {
                    missing += w[1] - w[0] - 1;
                    ranges.push(if w[1] == w[0] + 2 {
                        format!("{}", w[0] + 1)
                    } else {
                        format!("{}–{}", w[0] + 1, w[1] - 1)
                    });
                }
            }
            if missing == 0 {
                continue;
            }
            self.totals.missing_seqs += missing;
            let who = self
                .devices
                .and_then(|d| d.by_key.get(&device))
                .and_then(|e| e.name.clone())
                .unwrap_or_else(|| fingerprint(&device));
            let shown = if ranges.len() > 10 {
                format!("{} and {} more range(s)", ranges[..10].join(", "), ranges.len() - 10)
            } else {
                ranges.join(", ")
            };
            let (first, last) = (seqs.first().copied().unwrap_or(0), seqs.last().copied().unwrap_or(0));
            let note = format!(
                "device {who}: {missing} seq(s) between {first} and {last} are not in this bundle ({shown}): \
                 filtered out by the export, amended, or never received"
            );
            (self.each)(Seen::Note(&note))?;
        }
        Ok(())
    }
}

fn blank(index: u64, offset: u64) -> BundleEntry {
    BundleEntry {
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
        proven: None,
        log_entry: None,
        proof_error: None,
    }
}

/// Checks every report of the bundle read from `input` (and, in a
/// version-2 bundle, the checkpoint and each report's proof, against the
/// key `pin` names if given), calling `each` with what it finds in order,
/// and returns the totals.
pub fn verify_bundle(
    input: impl Read,
    devices: Option<&DeviceList>,
    pin: Option<&LogPin>,
    each: impl FnMut(Seen<'_>) -> std::io::Result<()>,
) -> Result<Totals, VerifyBundleError> {
    let mut items = match ItemReader::new(BufReader::new(input)) {
        Ok(r) => r,
        Err(BundleError::Io(e)) => return Err(e.into()),
        Err(_) => return Err(VerifyBundleError::BadMagic),
    };
    let version = match items.version() {
        Version::V1 => 1,
        Version::V2 => 2,
    };
    let mut st = State {
        devices,
        checkpoint: None,
        no_checkpoint: "the bundle has no checkpoint".into(),
        totals: Totals { version, ..Totals::default() },
        chains: HashMap::new(),
        named: HashMap::new(),
        file: None,
        each,
    };
    let mut pending: Option<Pending> = None;
    let mut seen_checkpoint = false;
    let mut first = true;
    while let Some((offset, item)) = items.next_at() {
        let index = items.reports();
        let is_log = matches!(item, Ok(Item::Checkpoint { .. } | Item::Entry { .. } | Item::Inclusion { .. }));
        if std::mem::take(&mut first) {
            st.totals.log = is_log;
        }
        if !matches!(item, Ok(Item::Evidence { .. })) {
            st.end_file()?;
        }
        if is_log && !st.totals.log {
            st.finish(pending.take())?;
            st.problem(&format!(
                "a log item at byte {offset} in a bundle that does not start with the log's checkpoint"
            ))?;
            continue;
        }
        match item {
            Ok(Item::Evidence { sha256, size, offset: at, data }) => {
                // The report before it is done: its files are named now.
                st.finish(pending.take())?;
                st.piece(offset, sha256, size, at, &data)?;
            }
            Ok(Item::Report(report)) => {
                st.finish(pending.take())?;
                st.totals.reports += 1;
                pending = Some(Pending { c: blank(index, offset), report, entry: None, inclusion: None });
            }
            Ok(Item::Checkpoint { log_key, note }) => {
                st.finish(pending.take())?;
                if seen_checkpoint {
                    st.problem(&format!("a second checkpoint at byte {offset}: a bundle carries one"))?;
                } else {
                    seen_checkpoint = true;
                    st.checkpoint(offset, log_key, &note, pin)?;
                }
            }
            Ok(Item::Entry { index: at, entry }) => match pending.as_mut() {
                Some(p) if p.entry.is_none() => p.entry = Some((at, entry)),
                _ => st.problem(&format!("log entry {at} at byte {offset} follows no report"))?,
            },
            Ok(Item::Inclusion { index: at, size, proof }) => match pending.as_mut() {
                Some(p) if p.inclusion.is_none() => p.inclusion = Some((at, size, proof)),
                _ => st.problem(&format!("the inclusion proof of entry {at} at byte {offset} follows no report"))?,
            },
            Err(BundleError::UnknownItem { kind, .. }) => {
                (st.each)(Seen::Note(&format!(
                    "an item of kind {kind} at byte {offset}, which this build does not read: passed over"
                )))?;
            }
            Err(e) => {
                st.finish(pending.take())?;
                st.totals.reports += 1;
                let mut c = blank(index, offset);
                c.error = Some(match e {
                    BundleError::Frame { source, .. } => {
                        st.totals.truncated = true;
                        format!("damaged frame: {source}; the rest of the bundle cannot be read")
                    }
                    BundleError::Decode { source, .. } if version == 1 => format!("not a signed report: {source}"),
                    BundleError::Decode { source, .. } => format!("not a bundle item: {source}"),
                    other => other.to_string(),
                });
                if st.totals.log {
                    c.proven = Some(false);
                    c.proof_error = Some("unreadable".into());
                }
                st.report_done(&c)?;
            }
        }
    }
    st.finish(pending.take())?;
    st.end_file()?;
    st.gaps()?;
    Ok(st.totals)
}

/// Fills in `c` for one report; returns the device and seq it claims when
/// its body decodes.
fn check(
    report: &SignedReport,
    devices: Option<&DeviceList>,
    c: &mut BundleEntry,
    named: &mut HashMap<Bytes32, Vec<u64>>,
) -> Option<(Bytes32, u64)> {
    c.id = Some(hex::encode(report_id(&report.body)));
    let claimed = claimed_device(&report.body).ok();
    c.device = claimed.map(hex::encode);
    let entry = claimed.and_then(|k| devices.and_then(|d| d.by_key.get(&k)));
    c.device_name = entry.and_then(|e| e.name.clone());
    match verify(report) {
        Err(e) => {
            c.error = Some(e.reason());
            None
        }
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
            if c.ok {
                for a in &v.envelope.observation.attachments {
                    named.entry(a.sha256).or_default().push(a.size);
                }
            }
            Some((v.envelope.device, v.envelope.seq))
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
        let t = verify_bundle(bytes, devices, None, |s| {
            if let Seen::Report(c) = s {
                seen.push(c.clone());
            }
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
        assert!(matches!(verify_bundle(&bytes[..], None, None, |_| Ok(())), Err(VerifyBundleError::BadMagic)));
        assert!(matches!(verify_bundle(&b"TRUCE"[..], None, None, |_| Ok(())), Err(VerifyBundleError::BadMagic)));
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

    /// The frames of a version-1 bundle after the magic.
    fn split(bytes: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = 8;
        while at < bytes.len() {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            out.push(bytes[at..at + 4 + len].to_vec());
            at += 4 + len;
        }
        out
    }

    fn all_seen(bytes: &[u8], pin: Option<&LogPin>) -> (Totals, Vec<String>) {
        let mut seen = Vec::new();
        let t = verify_bundle(bytes, None, pin, |s| {
            seen.push(serde_json::to_string(&s).unwrap());
            Ok(())
        })
        .unwrap();
        (t, seen)
    }

    #[test]
    fn seqs_left_out_of_a_chain_are_noted_without_failing() {
        let (bytes, _, _) = bundle(7);
        let f = split(&bytes);
        let mut gappy = bytes[..8].to_vec();
        for (i, frame) in f.iter().enumerate() {
            if ![2, 4, 5].contains(&i) {
                gappy.extend_from_slice(frame);
            }
        }
        let (t, seen) = all_seen(&gappy, None);
        assert_eq!((t.ok, t.missing_seqs), (4, 3));
        assert!(t.clean());
        let note = seen.iter().find(|s| s.starts_with("{\"note\"")).unwrap();
        assert!(note.contains("3 seq(s) between 1 and 7") && note.contains("(3, 5–6)"), "{note}");
    }

    #[test]
    fn a_version_2_bundle_without_a_checkpoint_or_with_stray_items_fails() {
        use truce_shared::bundle::ItemWriter;
        let (bytes, _, _) = bundle(1);
        let report: SignedReport = truce_shared::encoding::decode(&split(&bytes)[0][4..]).unwrap();
        let mut w = ItemWriter::new(Vec::new()).unwrap();
        w.write(&Item::Entry { index: 0, entry: vec![1] }).unwrap();
        w.write(&Item::Report(report)).unwrap();
        let v2 = w.finish().unwrap();
        let (t, seen) = all_seen(&v2, None);
        assert_eq!((t.version, t.ok, t.not_proven, t.problems), (2, 1, 1, 1));
        assert!(!t.clean());
        assert!(seen[0].contains("follows no report"), "{seen:?}");
        assert!(seen[1].contains("the bundle has no checkpoint"), "{seen:?}");
    }

    #[test]
    fn a_log_key_is_a_fingerprint_or_a_key() {
        let key = [5u8; 32];
        let fp = fingerprint(&key);
        assert!(parse_log_pin(&fp).unwrap().matches(&key));
        assert!(parse_log_pin(&fp.to_uppercase().replace('-', "")).unwrap().matches(&key));
        assert!(parse_log_pin(&hex::encode(key)).unwrap().matches(&key));
        assert!(!parse_log_pin(&hex::encode([6u8; 32])).unwrap().matches(&key));
        assert!(parse_log_pin("abcd").is_err());
        assert!(parse_log_pin(&"zz".repeat(32)).is_err());
    }
}
