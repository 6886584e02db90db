//! The transparency log of DESIGN §9: what an entry is, the Merkle tree
//! over entries, proofs, and the signed checkpoints and receipts.
//!
//! The tree is RFC 9162's (leaf hash SHA-256(0x00 ‖ entry), node hash
//! SHA-256(0x01 ‖ left ‖ right)). Its algorithms — stored hashes, tree
//! hashes, inclusion ("record") and consistency ("tree") proofs — are
//! Cloudflare's `tlog_tiles`, a port of Go's checksum-database tlog; the
//! vectors of transparency-dev's merkle repository check them in
//! `shared/tests/merkle_vectors.rs`. The one algorithm of our own is the
//! [range proof](prove_range), which proves a run of leaves at once so a
//! sync of a thousand reports carries a few kilobytes of proof, not one
//! audit path per report.
//!
//! # Entry format, version 1 (public; never changes silently)
//!
//! An entry is `postcard(Entry)`. Enum variants are encoded by index, so
//! the order below is the format; a new kind of entry is a new variant at
//! the end, and a new layout a new [`ENTRY_VERSION`].
//!
//! ```text
//! Entry   { version: u8 = 1, at: i64 (unix ms, when the server recorded it), event: Event }
//! Event   = 0 Report   { id: [u8;32], device: [u8;32], seq: u64, status: Stored, via: Via }
//!           1 Refused  { id: [u8;32], device: Option<[u8;32]>, reason: String, via: Via }
//!           2 Enrolled { device: [u8;32], name: String }
//!           3 Revoked  { device: [u8;32], since: Option<i64> }
//!           4 Promoted { id: [u8;32] }
//!           5 Fork     { device: [u8;32], seq: u64, kept: [u8;32], rejected: [u8;32] }
//! Stored  = 0 Verified | 1 Quarantined(reason) | 2 Rejected(reason)
//! Via     = 0 Tls { serial: String (lower-case hex) } | 1 Import { bundle: [u8;32] (SHA-256 of the file) }
//!           | 2 Unrecorded (stored before the log existed, by a server that did not record how)
//! ```
//!
//! `Report` is a signed report stored (its bytes travel beside the log: the
//! entry names it by id); `Refused` bytes that failed verification, kept as
//! evidence; `Promoted` a quarantined report verified at enrolment; `Fork`
//! a second report at one seq of one device. The known-answer vectors in
//! `shared/tests/vectors/log.json` pin the bytes and leaf hashes.
//!
//! # Checkpoints
//!
//! A checkpoint is C2SP tlog-checkpoint text (origin line, tree size,
//! base64 root hash) in a C2SP signed note whose one signature is the log
//! key's (Ed25519, key name = origin, key id per the signed-note spec). The
//! origin is `<mission>/truce-log/<fingerprint of the log key>`, so a
//! checkpoint names the key that must have signed it. Any signed-note tool
//! checks one with the verifier key [`LogKey::verifier_key`] prints.
//!
//! # Receipts (protocol 2)
//!
//! ```text
//! signature = Ed25519(log key, "truce/receipt/v2\0" || postcard(ReceiptBody))
//! ReceiptBody { batch: u64, received_at: i64, results: [Outcome], checkpoint: String }
//! Outcome     { id: [u8;32], status: Status, entry: u64 }
//! ```
//!
//! Every result is covered, whatever its status, with the index of the
//! entry that records it (a duplicate names the earlier entry), and the
//! checkpoint is one that includes every such entry.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::report::{Bytes32, Signature64};
use crate::wire::Status;

pub use tlog_tiles::{
    check_record, check_tree, node_hash, prove_record, prove_tree, record_hash, stored_hash_index,
    stored_hashes_for_record_hash, sub_tree_index, tree_hash, Error as TreeError, Hash, HashReader, EMPTY_HASH,
};

/// The entry layout this build writes and reads.
pub const ENTRY_VERSION: u8 = 1;

/// Domain separator of protocol-2 receipts.
pub const RECEIPT_DOMAIN: &[u8] = b"truce/receipt/v2\0";

/// One log entry: a change to what the record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// [`ENTRY_VERSION`].
    pub version: u8,
    /// When the server recorded the change, unix ms (a report's `received_at`).
    pub at: i64,
    /// What changed.
    pub event: Event,
}

/// What an entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A signed report stored.
    Report {
        /// Its id.
        id: Bytes32,
        /// Its device key.
        device: Bytes32,
        /// Its place in the device's chain.
        seq: u64,
        /// What the server made of it.
        status: Stored,
        /// How it came.
        via: Via,
    },
    /// Bytes that failed verification, kept as evidence.
    Refused {
        /// The id of the bytes as received.
        id: Bytes32,
        /// The device key they claim, if it could be read.
        device: Option<Bytes32>,
        /// Why they failed.
        reason: String,
        /// How they came.
        via: Via,
    },
    /// A device key enrolled.
    Enrolled {
        /// The key.
        device: Bytes32,
        /// Its name.
        name: String,
    },
    /// A device key revoked.
    Revoked {
        /// The key.
        device: Bytes32,
        /// Reports signed after this time (unix ms) are disputed, if given.
        since: Option<i64>,
    },
    /// A quarantined report verified (its key was enrolled).
    Promoted {
        /// The report.
        id: Bytes32,
    },
    /// Two different reports at one seq of one device.
    Fork {
        /// The device.
        device: Bytes32,
        /// The seq.
        seq: u64,
        /// The report stored first.
        kept: Bytes32,
        /// The second one.
        rejected: Bytes32,
    },
}

/// What the server made of a stored report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stored {
    /// Verified: signature valid, key enrolled.
    Verified,
    /// Quarantined, with the reason.
    Quarantined(String),
    /// Kept as evidence only, with the reason.
    Rejected(String),
}

/// How a report reached the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Via {
    /// Over mutual TLS: the client certificate's serial, lower-case hex.
    Tls {
        /// The serial.
        serial: String,
    },
    /// From a bundle file: the SHA-256 of the file.
    Import {
        /// The hash.
        bundle: Bytes32,
    },
    /// Stored before the log existed, by a server that did not record how
    /// (entries a store logs when it is upgraded).
    Unrecorded,
}

impl Entry {
    /// A version-1 entry.
    pub fn new(at: i64, event: Event) -> Entry {
        Entry { version: ENTRY_VERSION, at, event }
    }

    /// The entry's bytes: what the leaf hash covers.
    pub fn encode(&self) -> Vec<u8> {
        crate::encoding::encode(self)
    }

    /// Reads an entry, refusing any version but [`ENTRY_VERSION`] and any
    /// bytes that are not the one encoding of the entry they decode to
    /// (postcard also reads overlong varints): the leaf hash covers the
    /// bytes, so an alias would be a second leaf for one entry, and
    /// `decode(b)?.leaf_hash()` would not be the hash of `b`.
    pub fn decode(bytes: &[u8]) -> Result<Entry, LogError> {
        let e: Entry = crate::encoding::decode(bytes).map_err(|e| LogError::Entry(e.to_string()))?;
        if e.version != ENTRY_VERSION {
            return Err(LogError::Entry(format!("entry version {} (this build reads {ENTRY_VERSION})", e.version)));
        }
        if e.encode() != bytes {
            return Err(LogError::Entry(crate::encoding::EncodingError::NonCanonical.to_string()));
        }
        Ok(e)
    }

    /// The RFC 9162 leaf hash of the entry.
    pub fn leaf_hash(&self) -> Hash {
        record_hash(&self.encode())
    }
}

impl Stored {
    /// The wire status a receipt gives a report first stored this way.
    pub fn status(&self) -> Status {
        match self {
            Stored::Verified => Status::Accepted,
            Stored::Quarantined(r) => Status::Quarantined(r.clone()),
            Stored::Rejected(r) => Status::Rejected(r.clone()),
        }
    }
}

/// Why a log item does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The entry bytes are not an entry this build reads.
    #[error("undecodable log entry: {0}")]
    Entry(String),
    /// The checkpoint is not a well-formed signed note.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// The checkpoint is not signed by the expected log key.
    #[error("checkpoint not signed by log key {0}")]
    NotSigned(String),
    /// A proof does not lead to the root it should.
    #[error("proof does not verify: {0}")]
    Proof(String),
}

// ---------------------------------------------------------------------------
// The log key, checkpoints and receipts.

/// The server's log key: signs checkpoints and receipts.
pub struct LogKey {
    key: SigningKey,
    origin: String,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey").field("origin", &self.origin).finish_non_exhaustive()
    }
}

/// The default mission name in a log's origin line.
pub const DEFAULT_MISSION: &str = "truce";

/// The origin line of the log signed by `key` for `mission`.
pub fn origin(mission: &str, key: &Bytes32) -> String {
    format!("{mission}/truce-log/{}", crate::signing::fingerprint(key))
}

/// Whether `mission` may stand in an origin line (and a signed-note key
/// name): 1–64 of ASCII letters, digits, `.`, `_` and `-`.
pub fn valid_mission(mission: &str) -> bool {
    (1..=64).contains(&mission.len())
        && mission.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn note_key_id(name: &str, public: &Bytes32) -> u32 {
    let mut encoded = Vec::with_capacity(33);
    encoded.push(0x01); // signed-note's Ed25519 algorithm byte
    encoded.extend_from_slice(public);
    signed_note::key_id(name, &encoded)
}

impl LogKey {
    /// The key from its 32-byte seed, for `mission`.
    pub fn new(seed: &[u8; 32], mission: &str) -> LogKey {
        let key = SigningKey::from_bytes(seed);
        let origin = origin(mission, &key.verifying_key().to_bytes());
        LogKey { key, origin }
    }

    /// The public key.
    pub fn public(&self) -> Bytes32 {
        self.key.verifying_key().to_bytes()
    }

    /// The origin line of its checkpoints (also the signed-note key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The C2SP signed-note verifier key, `<name>+<key id hex>+<base64(0x01 ‖ key)>`,
    /// which any signed-note tool takes.
    pub fn verifier_key(&self) -> String {
        signed_note::new_ed25519_verifier_key(&self.origin, &self.key.verifying_key())
    }

    /// A signed checkpoint for a tree of `size` entries with root `root`.
    pub fn checkpoint(&self, size: u64, root: &Hash) -> String {
        let text = format!("{}\n{}\n{}\n", self.origin, size, root);
        let sig = self.key.sign(text.as_bytes()).to_bytes();
        let mut line = Vec::with_capacity(68);
        line.extend_from_slice(&note_key_id(&self.origin, &self.public()).to_be_bytes());
        line.extend_from_slice(&sig);
        use base64::Engine as _;
        format!("{text}\n\u{2014} {} {}\n", self.origin, base64::engine::general_purpose::STANDARD.encode(line))
    }

    /// Signs a protocol-2 receipt.
    pub fn sign_receipt(&self, body: &ReceiptBody<'_>) -> Signature64 {
        Signature64(self.key.sign(&receipt_message(body)).to_bytes())
    }
}

/// A log key as a person gives it (`link --server-key`, `verify
/// --log-key`): its fingerprint (`abcd-ef01-2345-6789`, dashes optional) or
/// the whole public key (64 hex digits), in either case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPin {
    /// A fingerprint, normalised to lower case with dashes.
    Fingerprint(String),
    /// The public key itself.
    Key(Bytes32),
}

impl KeyPin {
    /// Reads a fingerprint or a hex public key; `None` if it is neither.
    pub fn parse(text: &str) -> Option<KeyPin> {
        let t = text.trim().to_ascii_lowercase();
        if t.len() == 64 {
            let mut key = [0u8; 32];
            hex::decode_to_slice(&t, &mut key).ok()?;
            return Some(KeyPin::Key(key));
        }
        let digits: String = t.chars().filter(|c| *c != '-' && *c != ' ').collect();
        if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some(KeyPin::Fingerprint(format!("{}-{}-{}-{}", &digits[0..4], &digits[4..8], &digits[8..12], &digits[12..16])))
    }

    /// Whether `key` is the key this names.
    pub fn matches(&self, key: &Bytes32) -> bool {
        match self {
            KeyPin::Fingerprint(fp) => *fp == crate::signing::fingerprint(key),
            KeyPin::Key(k) => k == key,
        }
    }

    /// As stored and shown: the fingerprint, or the key in hex.
    pub fn text(&self) -> String {
        match self {
            KeyPin::Fingerprint(fp) => fp.clone(),
            KeyPin::Key(k) => hex::encode(k),
        }
    }

    /// The fingerprint it names.
    pub fn fingerprint(&self) -> String {
        match self {
            KeyPin::Fingerprint(fp) => fp.clone(),
            KeyPin::Key(k) => crate::signing::fingerprint(k),
        }
    }
}

/// A checkpoint whose signature checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// The origin line.
    pub origin: String,
    /// Entries in the tree.
    pub size: u64,
    /// The root hash.
    pub root: Hash,
    /// The signed note, exactly as received.
    pub note: String,
}

struct StrictVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl signed_note::Verifier for StrictVerifier {
    fn name(&self) -> &str {
        &self.name
    }
    fn key_id(&self) -> u32 {
        self.id
    }
    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(sig) else { return false };
        self.key.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig)).is_ok()
    }
}

/// Checks a signed checkpoint against the log key: a well-formed note, an
/// origin that names this key's fingerprint, a valid signature
/// (`verify_strict`) under the key name the origin gives.
pub fn open_checkpoint(note: &str, log_key: &Bytes32) -> Result<Checkpoint, LogError> {
    let fp = crate::signing::fingerprint(log_key);
    let parsed = signed_note::Note::from_bytes(note.as_bytes()).map_err(|e| LogError::Malformed(e.to_string()))?;
    let cp = tlog_tiles::Checkpoint::from_bytes(parsed.text()).map_err(|e| LogError::Malformed(e.to_string()))?;
    let name = cp.origin().to_string();
    if !name.ends_with(&format!("/truce-log/{fp}")) {
        return Err(LogError::NotSigned(format!("{fp} (the origin is {name:?})")));
    }
    let key = VerifyingKey::from_bytes(log_key).map_err(|_| LogError::NotSigned(fp.clone()))?;
    let verifier = StrictVerifier { id: note_key_id(&name, log_key), name, key };
    let list = signed_note::VerifierList::new(vec![Box::new(verifier)]);
    parsed.verify(&list).map_err(|e| LogError::NotSigned(format!("{fp}: {e}")))?;
    Ok(Checkpoint { origin: cp.origin().to_string(), size: cp.size(), root: *cp.hash(), note: note.to_string() })
}

/// The longest audit path a tree of up to 2^64 entries has.
pub const MAX_AUDIT_PATH: usize = 64;

/// Checks that `entry` (a log entry's bytes) is the entry at `index` of the
/// tree `checkpoint` signs, by its RFC 9162 audit path `proof` (as
/// [`prove_record`] makes it for the checkpoint's size).
pub fn check_inclusion(checkpoint: &Checkpoint, index: u64, entry: &[u8], proof: &[Bytes32]) -> Result<(), LogError> {
    if index >= checkpoint.size {
        return Err(LogError::Proof(format!("entry {index} is not within the tree of {}", checkpoint.size)));
    }
    if proof.len() > MAX_AUDIT_PATH {
        return Err(LogError::Proof(format!("an audit path of {} hashes is too long", proof.len())));
    }
    let path: Vec<Hash> = proof.iter().map(|h| Hash(*h)).collect();
    check_record(&path, checkpoint.size, checkpoint.root, index, record_hash(entry)).map_err(|e| {
        LogError::Proof(format!("entry {index} does not lead to the root of the tree of {}: {e}", checkpoint.size))
    })
}

/// What a protocol-2 receipt signs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptBody<'a> {
    /// The Submit's batch number.
    pub batch: u64,
    /// The `received_at` of every report this batch stored.
    pub received_at: i64,
    /// Every result of the batch, in submit order.
    #[serde(borrow)]
    pub results: std::borrow::Cow<'a, [Outcome]>,
    /// A checkpoint that includes every entry the results name.
    pub checkpoint: std::borrow::Cow<'a, str>,
}

/// One report's result in an Ack: what became of it and the entry that
/// records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The report id.
    pub id: Bytes32,
    /// What became of it.
    pub status: Status,
    /// The index of the log entry that records it (for a duplicate, the
    /// earlier entry).
    pub entry: u64,
}

/// The bytes a protocol-2 receipt signs.
pub fn receipt_message(body: &ReceiptBody<'_>) -> Vec<u8> {
    let mut m = RECEIPT_DOMAIN.to_vec();
    m.extend_from_slice(&crate::encoding::encode(body));
    m
}

/// Checks a protocol-2 receipt (`verify_strict`).
pub fn verify_receipt(log_key: &Bytes32, body: &ReceiptBody<'_>, sig: &Signature64) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(log_key) else { return false };
    key.verify_strict(&receipt_message(body), &ed25519_dalek::Signature::from_bytes(&sig.0)).is_ok()
}

// ---------------------------------------------------------------------------
// Range proofs: a run of leaves proved at once.

/// A node of the tree: a perfect subtree of `2^level` leaves, the
/// `index`-th at that level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    level: u8,
    index: u64,
}

/// The perfect subtrees that cover leaves `[lo, hi)`, left to right, each
/// as large as its position allows (a compact range).
fn compact(mut lo: u64, hi: u64) -> Vec<Node> {
    let mut out = Vec::new();
    while lo < hi {
        // The largest aligned power of two that starts at lo and fits.
        let mut level = if lo == 0 { 63 } else { lo.trailing_zeros().min(63) as u8 };
        while level > 0 && (1u64 << level) > hi - lo {
            level -= 1;
        }
        out.push(Node { level, index: lo >> level });
        lo += 1u64 << level;
    }
    out
}

/// The proof that leaves `[lo, hi)` are in a tree of `size` leaves: the
/// hashes of the perfect subtrees left of `lo` and right of `hi`, each in
/// left-to-right order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeProof {
    /// Subtrees covering `[0, lo)`.
    pub left: Vec<Bytes32>,
    /// Subtrees covering `[hi, size)`.
    pub right: Vec<Bytes32>,
}

/// The stored-hash indexes a [`RangeProof`] of `[lo, hi)` in a tree of
/// `size` leaves needs, left part then right part.
pub fn range_indexes(lo: u64, hi: u64, size: u64) -> (Vec<u64>, Vec<u64>) {
    let idx = |n: &Node| stored_hash_index(n.level, n.index);
    (compact(0, lo).iter().map(idx).collect(), compact(hi, size).iter().map(idx).collect())
}

/// Builds the proof that leaves `[lo, hi)` are in the tree of `size`
/// leaves, reading stored hashes from `r`.
pub fn prove_range<R: HashReader>(lo: u64, hi: u64, size: u64, r: &R) -> Result<RangeProof, LogError> {
    if !(lo < hi && hi <= size) {
        return Err(LogError::Proof(format!("range {lo}..{hi} is not within a tree of {size}")));
    }
    let (left, right) = range_indexes(lo, hi, size);
    let read = |ix: &[u64]| -> Result<Vec<Bytes32>, LogError> {
        let hashes = r.read_hashes(ix).map_err(|e| LogError::Proof(e.to_string()))?;
        if hashes.len() != ix.len() {
            return Err(LogError::Proof("the store returned too few hashes".into()));
        }
        Ok(hashes.into_iter().map(|h| h.0).collect())
    };
    Ok(RangeProof { left: read(&left)?, right: read(&right)? })
}

/// Checks that `leaves` (leaf hashes) are the leaves `[lo, lo + len)` of
/// the tree of `size` leaves whose root is `root`.
pub fn check_range(proof: &RangeProof, size: u64, root: &Hash, lo: u64, leaves: &[Hash]) -> Result<(), LogError> {
    let hi = lo.checked_add(leaves.len() as u64).ok_or_else(|| LogError::Proof("range overflows".into()))?;
    if leaves.is_empty() || hi > size {
        return Err(LogError::Proof(format!("range {lo}..{hi} is not within a tree of {size}")));
    }
    let left = compact(0, lo);
    let right = compact(hi, size);
    if proof.left.len() != left.len() || proof.right.len() != right.len() {
        return Err(LogError::Proof("wrong number of hashes".into()));
    }
    // Push every subtree left to right, merging siblings as they meet: what
    // remains covers [0, size) as RFC 9162 splits it.
    let mut stack: Vec<(Node, Hash)> = Vec::with_capacity(2 * 64);
    let mut push = |node: Node, hash: Hash| {
        stack.push((node, hash));
        while stack.len() >= 2 {
            let (r, rh) = stack[stack.len() - 1];
            let (l, lh) = stack[stack.len() - 2];
            if l.level == r.level && l.index % 2 == 0 && r.index == l.index + 1 {
                stack.truncate(stack.len() - 2);
                stack.push((Node { level: l.level + 1, index: l.index / 2 }, node_hash(lh, rh)));
            } else {
                break;
            }
        }
    };
    for (node, h) in left.iter().zip(&proof.left) {
        push(*node, Hash(*h));
    }
    for (i, h) in leaves.iter().enumerate() {
        push(Node { level: 0, index: lo + i as u64 }, *h);
    }
    for (node, h) in right.iter().zip(&proof.right) {
        push(*node, Hash(*h));
    }
    let mut it = stack.iter().rev();
    let Some(&(_, mut acc)) = it.next() else { return Err(LogError::Proof("empty tree".into())) };
    for (_, h) in it {
        acc = node_hash(*h, acc);
    }
    if acc == *root {
        Ok(())
    } else {
        Err(LogError::Proof(format!("leaves {lo}..{hi} do not lead to the root of the tree of {size}")))
    }
}

/// A [`HashReader`] over every stored hash of a tree held in memory (tests,
/// `audit`'s replay).
#[derive(Debug, Default, Clone)]
pub struct MemoryTree {
    hashes: Vec<Hash>,
    size: u64,
}

impl HashReader for MemoryTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TreeError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i).ok().and_then(|i| self.hashes.get(i).copied()).ok_or(TreeError::IndexesNotInTree)
            })
            .collect()
    }
}

impl MemoryTree {
    /// An empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Appends a leaf by its hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> Result<u64, TreeError> {
        let n = self.size;
        let new = stored_hashes_for_record_hash(n, leaf, self)?;
        self.hashes.extend(new);
        self.size += 1;
        Ok(n)
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash.
    pub fn root(&self) -> Result<Hash, TreeError> {
        tree_hash(self.size, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> (MemoryTree, Vec<Hash>) {
        let mut t = MemoryTree::new();
        let leaves: Vec<Hash> = (0..n).map(|i| record_hash(&i.to_be_bytes())).collect();
        for l in &leaves {
            t.push(*l).unwrap();
        }
        (t, leaves)
    }

    /// RFC 9162's MTH written out, to check everything else against.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_HASH,
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(mth(&leaves[..k]), mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn every_range_of_every_small_tree_proves_and_a_wrong_leaf_does_not() {
        for size in 1..=33u64 {
            let (t, leaves) = tree(size);
            let root = t.root().unwrap();
            assert_eq!(root, mth(&leaves), "size {size}");
            for lo in 0..size {
                for hi in lo + 1..=size {
                    let p = prove_range(lo, hi, size, &t).unwrap();
                    let run = &leaves[lo as usize..hi as usize];
                    check_range(&p, size, &root, lo, run).unwrap();
                    let mut bad = run.to_vec();
                    bad[0].0[0] ^= 1;
                    assert!(check_range(&p, size, &root, lo, &bad).is_err());
                    if lo > 0 {
                        assert!(check_range(&p, size, &root, lo - 1, run).is_err(), "shifted left");
                    }
                }
            }
        }
    }

    #[test]
    fn range_edges_are_refused_or_checked() {
        let (t, leaves) = tree(5);
        let root = t.root().unwrap();
        assert!(prove_range(3, 3, 5, &t).is_err(), "empty range");
        assert!(prove_range(4, 6, 5, &t).is_err(), "past the end");
        let p = prove_range(4, 5, 5, &t).unwrap();
        assert!(check_range(&p, 5, &root, 4, &[]).is_err());
        assert!(check_range(&p, 5, &root, u64::MAX, &leaves[4..]).is_err());
        // The last leaf of a tree, and a whole tree of one.
        check_range(&p, 5, &root, 4, &leaves[4..]).unwrap();
        let (one, l1) = tree(1);
        let p1 = prove_range(0, 1, 1, &one).unwrap();
        assert!(p1.left.is_empty() && p1.right.is_empty());
        check_range(&p1, 1, &one.root().unwrap(), 0, &l1).unwrap();
    }

    #[test]
    fn a_checkpoint_opens_with_its_key_only() {
        let key = LogKey::new(&[7; 32], "smm-east");
        let (t, _) = tree(3);
        let note = key.checkpoint(3, &t.root().unwrap());
        let cp = open_checkpoint(&note, &key.public()).unwrap();
        assert_eq!((cp.size, cp.root, cp.origin.as_str()), (3, t.root().unwrap(), key.origin()));
        let other = LogKey::new(&[8; 32], "smm-east");
        assert!(matches!(open_checkpoint(&note, &other.public()), Err(LogError::NotSigned(_))));
        let forged = note.replace("\n3\n", "\n4\n");
        assert!(open_checkpoint(&forged, &key.public()).is_err());
        assert!(matches!(open_checkpoint("not a note", &key.public()), Err(LogError::Malformed(_))));
    }

    #[test]
    fn a_receipt_covers_every_result() {
        let key = LogKey::new(&[7; 32], DEFAULT_MISSION);
        let results = vec![
            Outcome { id: [1; 32], status: Status::Accepted, entry: 4 },
            Outcome { id: [2; 32], status: Status::Rejected("bad signature".into()), entry: 5 },
        ];
        let body =
            ReceiptBody { batch: 1, received_at: 9, results: results.as_slice().into(), checkpoint: "cp".into() };
        let sig = key.sign_receipt(&body);
        assert!(verify_receipt(&key.public(), &body, &sig));
        let mut changed = results.clone();
        changed[1].status = Status::Duplicate;
        let body2 = ReceiptBody { results: changed.as_slice().into(), ..body.clone() };
        assert!(!verify_receipt(&key.public(), &body2, &sig));
    }

    #[test]
    fn an_entry_of_another_version_is_refused() {
        let mut e = Entry::new(1, Event::Promoted { id: [3; 32] });
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
        e.version = 2;
        assert!(matches!(Entry::decode(&e.encode()), Err(LogError::Entry(_))));
    }

    #[test]
    fn an_entry_is_read_only_in_its_one_encoding() {
        let e = Entry::new(300, Event::Promoted { id: [3; 32] });
        let b = e.encode();
        // `at` = 300 is zigzag 600, the varint d8 04; d8 84 00 is the same
        // number overlong, which postcard reads.
        assert_eq!(&b[..3], &[1, 0xd8, 0x04]);
        let mut alias = vec![1, 0xd8, 0x84, 0x00];
        alias.extend_from_slice(&b[3..]);
        assert_eq!(crate::encoding::decode::<Entry>(&alias), Ok(e.clone()), "postcard reads the alias");
        assert_ne!(record_hash(&alias), e.leaf_hash(), "and it is another leaf");
        assert!(matches!(Entry::decode(&alias), Err(LogError::Entry(_))));
        let mut trailing = b.clone();
        trailing.push(0);
        assert!(matches!(Entry::decode(&trailing), Err(LogError::Entry(_))));
        assert_eq!(Entry::decode(&b), Ok(e));
    }
}
