//! Bundles: reports and the log's proofs on a USB stick (DESIGN §4, §9, §10).
//!
//! # Version 1
//!
//! ```text
//! bundle = "TRUCEB01" frame*
//! frame  = u32 big-endian length, postcard(SignedReport)
//! ```
//!
//! # Version 2 (public; never changes silently)
//!
//! ```text
//! bundle = "TRUCEB02" frame*
//! frame  = u32 big-endian length, postcard(Item)
//! Item   = 0 Report     (SignedReport)
//!          1 Checkpoint { log_key: [u8;32], note: String }
//!          2 Entry      { index: u64, entry: bytes }
//!          3 Inclusion  { index: u64, size: u64, proof: [[u8;32]] }
//!          4 Evidence   { sha256: [u8;32], size: u64, offset: u64, data: bytes }
//! ```
//!
//! Enum variants are encoded by index, so the order above is the format: a
//! new kind of item is a new variant at the end. A reader meets an item of a kind it does not know
//! as [`BundleError::UnknownItem`], after which it reads on: the frame was
//! whole.
//!
//! - `Report` is the exact signed bytes, as in version 1 (so its frame is
//!   the byte 0 followed by a version-1 frame's body).
//! - `Checkpoint` is the server's signed checkpoint (a C2SP signed note,
//!   [`crate::log::open_checkpoint`]) with the log public key that signed
//!   it. The key travels for convenience only: a reader that has not
//!   pinned the key (by its fingerprint, read out by the coordinator)
//!   learns which key signed the checkpoint, not that it is the server's.
//! - `Entry` is a log entry's bytes ([`crate::log::Entry`]) and its index in
//!   the log; it follows the report it records.
//! - `Inclusion` is the RFC 9162 audit path of the entry at `index` in the
//!   tree of `size` entries ([`crate::log::prove_record`]); it follows the
//!   entry, and `size` is the checkpoint's.
//!
//! - `Evidence` is a piece of an evidence file (DESIGN §10): the bytes at
//!   `offset` of the file whose SHA-256 is `sha256` and whose length is
//!   `size`, as a report signed them. A file travels as consecutive items
//!   of the same `sha256`, in order, with no gap or overlap, from offset 0
//!   to `size`, each carrying at most [`limits::MAX_EVIDENCE_CHUNK`] bytes
//!   (a file of 0 bytes is one item with no data). Files follow the
//!   reports (an importer stores the reports that name a file before it
//!   reads the file). A reader takes a file only if its bytes hash to
//!   `sha256` and a report names it: the item's own hash and size are
//!   claims, not proof.
//!
//! A server's export writes the checkpoint first, then per report: Report,
//! Entry, Inclusion. An agent's `bundle export` writes its reports, then
//! the evidence files they name. The known-answer test `shared/tests/bundle_v2.rs` pins
//! the bytes.
//!
//! [`ItemWriter`] and [`ItemReader`] stream one item at a time, and
//! [`BundleWriter`] (version 1) and [`BundleReader`] (reports of either
//! version) one report at a time: a bundle of any size is written and
//! read in the memory of one report. Reading does not verify: pass each
//! report to [`crate::signing::verify`], each proof to
//! [`crate::log::check_inclusion`].

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::encoding::{self, EncodingError};
use crate::frame::{self, FrameError, HEADER_LEN};
use crate::limits;
use crate::report::{Bytes32, SignedReport};

/// The first eight bytes of a version-1 bundle.
pub const MAGIC: &[u8; 8] = b"TRUCEB01";

/// The first eight bytes of a version-2 bundle.
pub const MAGIC_V2: &[u8; 8] = b"TRUCEB02";

/// The largest framed report a bundle may hold: a body at the report limit
/// plus signature and varints.
pub const MAX_BUNDLE_FRAME: u32 = (limits::MAX_REPORT_BODY + 128) as u32;

/// What an evidence item adds to its data: the kind, the hash, two
/// varints and the data's length.
pub const EVIDENCE_ITEM_OVERHEAD: usize = 1 + 32 + 10 + 10 + 5;

/// The largest frame of a version-2 bundle: an evidence item with a full
/// chunk, or a report frame and the item's kind, whichever is larger.
pub const MAX_ITEM_FRAME: u32 = {
    let evidence = (limits::MAX_EVIDENCE_CHUNK + EVIDENCE_ITEM_OVERHEAD) as u32;
    let report = MAX_BUNDLE_FRAME + 16;
    if evidence > report {
        evidence
    } else {
        report
    }
};

/// How many kinds of item this build reads: the variants of [`Item`].
pub const ITEM_KINDS: u64 = 5;

/// One item of a version-2 bundle. The variant order is the format (see
/// the module documentation); new kinds are appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Item {
    /// A signed report, exactly as its device signed it.
    Report(SignedReport),
    /// The server's signed checkpoint and the log key that signed it.
    Checkpoint {
        /// The log public key (not to be trusted unless pinned).
        log_key: Bytes32,
        /// The signed note.
        note: String,
    },
    /// The log entry that records the report before it.
    Entry {
        /// Its index in the log.
        index: u64,
        /// Its bytes (what the leaf hash covers).
        #[serde(with = "serde_bytes")]
        entry: Vec<u8>,
    },
    /// The audit path of the entry before it, to the checkpoint's tree.
    Inclusion {
        /// The entry's index.
        index: u64,
        /// The size of the tree the path leads to.
        size: u64,
        /// The RFC 9162 audit path.
        proof: Vec<Bytes32>,
    },
    /// A piece of an evidence file, in order (see the module documentation).
    Evidence {
        /// The SHA-256 a report signed for the file.
        sha256: Bytes32,
        /// The file's length, as signed.
        size: u64,
        /// Where `data` starts in the file.
        offset: u64,
        /// At most [`limits::MAX_EVIDENCE_CHUNK`] bytes of it.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
}

/// Which layout a bundle has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `TRUCEB01`: reports only.
    V1,
    /// `TRUCEB02`: typed items.
    V2,
}

/// Why a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file does not start with `TRUCEB01` or `TRUCEB02`.
    #[error("not a Truce bundle (the file does not start with TRUCEB01 or TRUCEB02)")]
    BadMagic,
    /// A frame is oversized or cut short.
    #[error("report #{index}: {source}")]
    Frame {
        /// 1-based position of the report in the bundle.
        index: u64,
        /// What went wrong.
        source: FrameError,
    },
    /// A frame is not a SignedReport (version 1) or an item (version 2).
    #[error("report #{index}: {source}")]
    Decode {
        /// 1-based position of the report in the bundle.
        index: u64,
        /// What went wrong.
        source: EncodingError,
    },
    /// An item of a kind this build does not know (written by a later
    /// one); the frame was whole, so reading goes on.
    #[error("item of unknown kind {kind} after report #{after} (written by a later version?)")]
    UnknownItem {
        /// Reports before it.
        after: u64,
        /// The kind: its variant index.
        kind: u64,
    },
    /// The file could not be read.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Reads and checks the magic.
fn read_magic(input: &mut impl Read) -> Result<Version, BundleError> {
    let mut magic = [0u8; 8];
    match input.read_exact(&mut magic) {
        Ok(()) if &magic == MAGIC => Ok(Version::V1),
        Ok(()) if &magic == MAGIC_V2 => Ok(Version::V2),
        Ok(()) => Err(BundleError::BadMagic),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(BundleError::BadMagic),
        Err(e) => Err(e.into()),
    }
}

/// The kind of the item in `frame`: the varint its encoding starts with
/// (`None` if it does not start with one).
pub fn item_kind(frame: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, b) in frame.iter().take(10).enumerate() {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Writes reports to a version-1 bundle, one at a time.
pub struct BundleWriter<W: Write> {
    out: W,
    count: u64,
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle: writes the magic.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(Self { out, count: 0 })
    }

    /// Appends one report.
    pub fn write(&mut self, report: &SignedReport) -> io::Result<()> {
        frame::write_frame_sync(&mut self.out, &encoding::encode(report), MAX_BUNDLE_FRAME)?;
        self.count += 1;
        Ok(())
    }

    /// Reports written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes items to a version-2 bundle, one at a time.
pub struct ItemWriter<W: Write> {
    out: W,
    reports: u64,
}

impl<W: Write> ItemWriter<W> {
    /// Starts a bundle: writes the magic.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC_V2)?;
        Ok(Self { out, reports: 0 })
    }

    /// Appends one item.
    pub fn write(&mut self, item: &Item) -> io::Result<()> {
        frame::write_frame_sync(&mut self.out, &encoding::encode(item), MAX_ITEM_FRAME)?;
        if matches!(item, Item::Report(_)) {
            self.reports += 1;
        }
        Ok(())
    }

    /// Reports written so far.
    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads the items of a bundle of either version, one at a time (an
/// iterator): a version-1 bundle's reports come as [`Item::Report`].
pub struct ItemReader<R: Read> {
    input: R,
    version: Version,
    reports: u64,
    offset: u64,
    done: bool,
}

impl<R: Read> ItemReader<R> {
    /// Opens a bundle: reads and checks the magic.
    pub fn new(mut input: R) -> Result<Self, BundleError> {
        let version = read_magic(&mut input)?;
        Ok(Self { input, version, reports: 0, offset: MAGIC.len() as u64, done: false })
    }

    /// The bundle's layout.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Reports read so far (including a frame that broke while one was
    /// expected).
    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// The byte offset of the next frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next item, with the byte offset of its frame; `None` at the end.
    pub fn next_at(&mut self) -> Option<(u64, Result<Item, BundleError>)> {
        if self.done {
            return None;
        }
        let at = self.offset;
        let max = match self.version {
            Version::V1 => MAX_BUNDLE_FRAME,
            Version::V2 => MAX_ITEM_FRAME,
        };
        let bytes = match frame::read_frame_sync(&mut self.input, max) {
            Ok(None) => {
                self.done = true;
                return None;
            }
            Ok(Some(bytes)) => bytes,
            Err(source) => {
                // After a framing error the stream position is unknown: stop.
                self.done = true;
                self.reports += 1;
                return Some((at, Err(BundleError::Frame { index: self.reports, source })));
            }
        };
        self.offset += (HEADER_LEN + bytes.len()) as u64;
        let item = match self.version {
            Version::V1 => encoding::decode::<SignedReport>(&bytes).map(Item::Report),
            Version::V2 => match item_kind(&bytes) {
                Some(kind) if kind >= ITEM_KINDS => {
                    return Some((at, Err(BundleError::UnknownItem { after: self.reports, kind })))
                }
                _ => encoding::decode::<Item>(&bytes),
            },
        };
        let item = match item {
            Ok(item) => item,
            Err(source) => {
                // Most of a bundle's bytes are reports: count it as one.
                self.reports += 1;
                return Some((at, Err(BundleError::Decode { index: self.reports, source })));
            }
        };
        if matches!(item, Item::Report(_)) {
            self.reports += 1;
        }
        Some((at, Ok(item)))
    }
}

impl<R: Read> Iterator for ItemReader<R> {
    type Item = Result<Item, BundleError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_at().map(|(_, r)| r)
    }
}

/// Reads the reports of a bundle of either version, one at a time (an
/// iterator), passing over a version-2 bundle's log items (and items of
/// kinds it does not know).
pub struct BundleReader<R: Read> {
    items: ItemReader<R>,
}

impl<R: Read> BundleReader<R> {
    /// Opens a bundle: reads and checks the magic.
    pub fn new(input: R) -> Result<Self, BundleError> {
        Ok(Self { items: ItemReader::new(input)? })
    }

    /// 1-based index of the last report returned.
    pub fn index(&self) -> u64 {
        self.items.reports()
    }

    /// The bundle's layout.
    pub fn version(&self) -> Version {
        self.items.version()
    }
}

impl<R: Read> Iterator for BundleReader<R> {
    type Item = Result<SignedReport, BundleError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.items.next()? {
                Ok(Item::Report(r)) => return Some(Ok(r)),
                Ok(_) | Err(BundleError::UnknownItem { .. }) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Why an evidence item does not continue the file it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PieceError {
    /// The item's size differs from the file's first item.
    #[error("a piece gives the file another size ({got} bytes, not {size})")]
    OtherSize {
        /// The size the first item gave.
        size: u64,
        /// The size this one gives.
        got: u64,
    },
    /// The item does not start where the bytes so far end.
    #[error("a piece at offset {got}, where the file's bytes so far end at {expected}")]
    OutOfOrder {
        /// Where the next piece must start.
        expected: u64,
        /// Where this one starts.
        got: u64,
    },
    /// The item runs past the file's size.
    #[error("a piece runs past the file's size of {size} bytes")]
    PastTheEnd {
        /// The file's size.
        size: u64,
    },
    /// The item carries more than [`limits::MAX_EVIDENCE_CHUNK`] bytes.
    #[error("a piece of {got} bytes, over the limit of {max}", max = limits::MAX_EVIDENCE_CHUNK)]
    TooBig {
        /// Its length.
        got: usize,
    },
}

/// Follows the evidence items of one file as they are read: checks each
/// continues the file where the last ended, and hashes the bytes, so a
/// reader knows at the end whether they are the file a report signed.
pub struct EvidenceFile {
    sha256: Bytes32,
    size: u64,
    next: u64,
    hasher: sha2::Sha256,
}

impl EvidenceFile {
    /// A file announced by its first item's hash and size.
    pub fn new(sha256: Bytes32, size: u64) -> EvidenceFile {
        use sha2::Digest;
        EvidenceFile { sha256, size, next: 0, hasher: sha2::Sha256::new() }
    }

    /// The hash the items claim.
    pub fn sha256(&self) -> &Bytes32 {
        &self.sha256
    }

    /// The size the items claim.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes taken so far.
    pub fn taken(&self) -> u64 {
        self.next
    }

    /// Takes the next piece (`size` and `offset` as the item gives them).
    pub fn take(&mut self, size: u64, offset: u64, data: &[u8]) -> Result<(), PieceError> {
        use sha2::Digest;
        if size != self.size {
            return Err(PieceError::OtherSize { size: self.size, got: size });
        }
        if data.len() > limits::MAX_EVIDENCE_CHUNK {
            return Err(PieceError::TooBig { got: data.len() });
        }
        if offset != self.next {
            return Err(PieceError::OutOfOrder { expected: self.next, got: offset });
        }
        let end = offset.checked_add(data.len() as u64).filter(|&e| e <= self.size);
        let Some(end) = end else { return Err(PieceError::PastTheEnd { size: self.size }) };
        self.hasher.update(data);
        self.next = end;
        Ok(())
    }

    /// True once every byte up to the size is taken.
    pub fn is_complete(&self) -> bool {
        self.next == self.size
    }

    /// Whether the bytes taken are the whole file and hash to its SHA-256.
    pub fn matches(self) -> bool {
        use sha2::Digest;
        self.is_complete() && <[u8; 32]>::from(self.hasher.finalize()) == self.sha256
    }
}
