//! The wire protocol of DESIGN §4 and §9, version 2: one [`Message`] enum,
//! framed by [`crate::frame`].
//!
//! ```text
//! client: Hello    { protocol, agent_version, device }
//! server: Welcome  { log_key, server_time, max_batch, max_frame, certificate } | Refuse { reason }
//! client: Submit   { batch, reports }        (several may be in flight)
//! server: Ack      { batch, received_at, results: [Outcome], checkpoint, signature }
//! client: Prove    { size, from, ranges, entries }
//! server: Proofs   { consistency, ranges, entries }
//! client: Offer    { sha256, size }          (evidence, DESIGN §10)
//! server: Upload   { sha256, state: Held | From(offset) | Refused(reason) | Mismatch }
//! client: Chunk    { sha256, offset, data }  (several may be in flight)
//! server: Upload   { sha256, state }          (one per Chunk, after its fsync)
//! client: Bye
//! ```
//!
//! Variant order is the wire format: Hello is 0, Welcome 1, Refuse 2,
//! Submit 3, Ack 4, Bye 5, Prove 6, Proofs 7, Offer 8, Upload 9, Chunk 10.
//! Status: Accepted 0, Duplicate 1, Quarantined 2, Rejected 3.
//! [`UploadState`]: Held 0, From 1, Refused 2, Mismatch 3. Hello and Refuse keep the layout
//! they had in version 1, so a peer of either version can read the other's
//! Hello and be refused in words; the ALPN id (`truce/1`) names the framing
//! and stays.
//!
//! **Version 2** (DESIGN §9): `Welcome` names the server's log key and the
//! serial of the client certificate as the server records it. Every `Ack`
//! is signed by the log key ([`crate::log::ReceiptBody`]): every result,
//! with the index of the log entry that records it, and a checkpoint that
//! includes them all. `Prove` asks, for a checkpoint of `size` entries the
//! agent holds, the consistency proof from its kept checkpoint of `from`
//! entries (none when `from` is 0 or equal), a [`RangeProof`] for each
//! half-open range of entry indexes, and the bytes of the entries listed
//! (those the agent cannot rebuild, such as a duplicate's earlier entry).
//! `Proofs` answers in the same order.
//!
//! **Evidence** (DESIGN §10, added to version 2: an agent that never
//! offers a file never sees these). After its reports, an agent offers each
//! attachment the server may lack by the SHA-256 and size its report
//! signed. The server answers `Upload` with the offset it holds durably
//! (`From`), `Held` if it already has the whole file (then nothing is
//! sent), or `Refused` with a reason (no stored report names the file, it
//! is over the size limit, the evidence quota is full, another session is
//! uploading it). The agent then sends `Chunk`s from that offset, several
//! in flight; the server writes each one only if its offset is the end of
//! what it holds, syncs it to disk, and answers each in order with the new
//! durable offset. The answer to the chunk that completes the file is
//! `Held` once the whole file's SHA-256 matched, or `Mismatch` (the bytes
//! were discarded: start again from 0). A chunk at any other offset is not
//! written and is answered `From(durable offset)`, so after a cut the
//! agent simply offers again and resumes there. Frames are answered in
//! the order they arrive, so a `Submit` sent between chunks is answered
//! after the chunks before it: the agent keeps what is in flight near the
//! link's bandwidth-delay product, so a new report never waits long.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::encoding::{self, EncodingError};
use crate::frame::{self, FrameError};
use crate::log::{Outcome, RangeProof};
use crate::report::{Bytes32, Signature64, SignedReport};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 2;

/// The ALPN protocol id.
pub const ALPN: &[u8] = b"truce/1";

/// The server's answer for one report.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Verified and stored.
    Accepted,
    /// Already stored under this id: nothing written.
    Duplicate,
    /// Stored, but not (yet) trusted: the reason says why.
    Quarantined(String),
    /// Not accepted: the reason says why.
    Rejected(String),
}

impl Status {
    /// Whether the server now holds this report (stored or already stored);
    /// such ids are covered by the receipt.
    pub fn is_held(&self) -> bool {
        !matches!(self, Status::Rejected(_))
    }
}

/// Where an upload of one evidence file stands, as the server says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadState {
    /// The server holds the whole file, checked against its hash.
    Held,
    /// The server holds this many bytes durably: send from there.
    From(u64),
    /// The server will not take this file now; the reason says why.
    Refused(String),
    /// The bytes received did not hash to the signed SHA-256: they were
    /// discarded, and an upload must start again from 0.
    Mismatch,
}

/// Every frame on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// First client frame.
    Hello {
        /// [`PROTOCOL_VERSION`].
        protocol: u16,
        /// The agent's version, for logs.
        agent_version: String,
        /// The device key of the connecting laptop.
        device: Bytes32,
    },
    /// The server accepts the session.
    Welcome {
        /// The server's log key: signs receipts and checkpoints.
        log_key: Bytes32,
        /// Server clock, unix ms.
        server_time: i64,
        /// Most reports per Submit.
        max_batch: u32,
        /// Largest frame.
        max_frame: u32,
        /// The client certificate's serial as the server records it
        /// (lower-case hex): what the log's entries name.
        certificate: String,
    },
    /// The server refuses the session.
    Refuse {
        /// Why.
        reason: String,
    },
    /// A batch of reports.
    Submit {
        /// Client-chosen batch number, echoed in the Ack.
        batch: u64,
        /// The reports.
        reports: Vec<SignedReport>,
    },
    /// The answer to a Submit, sent after the durable commit.
    Ack {
        /// The Submit's batch number.
        batch: u64,
        /// The `received_at` of every report this batch stored.
        received_at: i64,
        /// Per report, in submit order.
        results: Vec<Outcome>,
        /// A signed checkpoint that includes every entry `results` names.
        checkpoint: String,
        /// The log key's signature over [`crate::log::ReceiptBody`].
        signature: Signature64,
    },
    /// Client is done.
    Bye,
    /// Asks for proofs against a checkpoint of `size` entries.
    Prove {
        /// The tree size of the checkpoint to prove against.
        size: u64,
        /// The size of the checkpoint the agent kept (0: none).
        from: u64,
        /// Half-open ranges of entry indexes to prove included.
        ranges: Vec<(u64, u64)>,
        /// Entries whose bytes the agent needs.
        entries: Vec<u64>,
    },
    /// The answer to Prove.
    Proofs {
        /// Consistency proof from `from` to `size` (empty if none is needed).
        consistency: Vec<Bytes32>,
        /// One per range asked, in order.
        ranges: Vec<RangeProof>,
        /// The bytes of each entry asked, in order.
        entries: Vec<serde_bytes::ByteBuf>,
    },
    /// Offers an evidence file a stored report names.
    Offer {
        /// The file's SHA-256, as its report signed it.
        sha256: Bytes32,
        /// Its size, as its report signed it.
        size: u64,
    },
    /// The answer to an Offer or a Chunk.
    Upload {
        /// The file it is about.
        sha256: Bytes32,
        /// Where its upload stands.
        state: UploadState,
    },
    /// Bytes of an evidence file, from `offset`.
    Chunk {
        /// The file's SHA-256.
        sha256: Bytes32,
        /// Where `data` starts in the file.
        offset: u64,
        /// The bytes.
        data: serde_bytes::ByteBuf,
    },
}

/// The frame overhead of a [`Message::Chunk`] beyond its data: variant,
/// hash, two varints. A chunk of `n` bytes fits a frame of
/// `n + CHUNK_OVERHEAD`.
pub const CHUNK_OVERHEAD: usize = 1 + 32 + 10 + 10;

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Framing failed (oversized, truncated, i/o).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame is not a message.
    #[error("undecodable message: {0}")]
    Decode(#[from] EncodingError),
}

/// Reads one message; `Ok(None)` on a clean end of stream.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R, max_frame: u32) -> Result<Option<Message>, WireError> {
    match frame::read_frame(r, max_frame).await? {
        None => Ok(None),
        Some(bytes) => Ok(Some(encoding::decode(&bytes)?)),
    }
}

/// Writes one message as a frame.
pub async fn write_message<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message, max_frame: u32) -> std::io::Result<()> {
    frame::write_frame(w, &encoding::encode(msg), max_frame).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_indexes_are_the_documented_ones() {
        let cases = [
            (Message::Hello { protocol: 1, agent_version: String::new(), device: [0; 32] }, 0u8),
            (
                Message::Welcome {
                    log_key: [0; 32],
                    server_time: 0,
                    max_batch: 0,
                    max_frame: 0,
                    certificate: String::new(),
                },
                1,
            ),
            (Message::Refuse { reason: String::new() }, 2),
            (Message::Submit { batch: 0, reports: vec![] }, 3),
            (
                Message::Ack {
                    batch: 0,
                    received_at: 0,
                    results: vec![],
                    checkpoint: String::new(),
                    signature: Signature64([0; 64]),
                },
                4,
            ),
            (Message::Bye, 5),
            (Message::Prove { size: 0, from: 0, ranges: vec![], entries: vec![] }, 6),
            (Message::Proofs { consistency: vec![], ranges: vec![], entries: vec![] }, 7),
            (Message::Offer { sha256: [0; 32], size: 0 }, 8),
            (Message::Upload { sha256: [0; 32], state: UploadState::Held }, 9),
            (Message::Chunk { sha256: [0; 32], offset: 0, data: Default::default() }, 10),
        ];
        for (m, idx) in cases {
            assert_eq!(encoding::encode(&m)[0], idx, "{m:?}");
        }
        let st = [Status::Accepted, Status::Duplicate, Status::Quarantined("x".into()), Status::Rejected("y".into())];
        for (i, s) in st.iter().enumerate() {
            assert_eq!(encoding::encode(s)[0], i as u8);
        }
    }

    /// The evidence messages, byte for byte: a change here breaks every
    /// agent in the field.
    #[test]
    fn evidence_messages_have_known_bytes() {
        let sha = [0xab; 32];
        let cases = [
            (Message::Offer { sha256: sha, size: 300 }, format!("08{}ac02", "ab".repeat(32))),
            (Message::Upload { sha256: sha, state: UploadState::Held }, format!("09{}00", "ab".repeat(32))),
            (
                Message::Upload { sha256: sha, state: UploadState::From(65536) },
                format!("09{}01808004", "ab".repeat(32)),
            ),
            (
                Message::Upload { sha256: sha, state: UploadState::Refused("full".into()) },
                format!("09{}020466756c6c", "ab".repeat(32)),
            ),
            (Message::Upload { sha256: sha, state: UploadState::Mismatch }, format!("09{}03", "ab".repeat(32))),
            (
                Message::Chunk { sha256: sha, offset: 128, data: serde_bytes::ByteBuf::from(vec![1, 2, 3]) },
                format!("0a{}800103010203", "ab".repeat(32)),
            ),
        ];
        for (m, hex) in cases {
            assert_eq!(hex::encode(encoding::encode(&m)), hex, "{m:?}");
            assert_eq!(encoding::decode::<Message>(&hex::decode(&hex).unwrap()).unwrap(), m);
        }
        let big = Message::Chunk { sha256: sha, offset: u64::MAX, data: serde_bytes::ByteBuf::from(vec![0; 1000]) };
        assert!(encoding::encode(&big).len() <= 1000 + CHUNK_OVERHEAD);
    }

    #[tokio::test]
    async fn messages_round_trip_through_frames() {
        let m = Message::Hello { protocol: PROTOCOL_VERSION, agent_version: "0.1.0".into(), device: [9; 32] };
        let mut buf = Vec::new();
        write_message(&mut buf, &m, 1024).await.unwrap();
        assert_eq!(read_message(&mut buf.as_slice(), 1024).await.unwrap(), Some(m));
    }

    #[tokio::test]
    async fn garbage_is_a_decode_error() {
        let mut buf = Vec::new();
        frame::write_frame(&mut buf, &[0xFF, 0xFF, 0xFF], 1024).await.unwrap();
        assert!(matches!(read_message(&mut buf.as_slice(), 1024).await, Err(WireError::Decode(_))));
    }
}
