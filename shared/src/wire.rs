//! The wire protocol of DESIGN §4: one [`Message`] enum, framed by
//! [`crate::frame`].
//!
//! ```text
//! client: Hello    { protocol, agent_version, device }
//! server: Welcome  { server_key, server_time, max_batch, max_frame } | Refuse { reason }
//! client: Submit   { batch, reports }        (several may be in flight)
//! server: Ack      { batch, results: [(id, Status)], receipt }
//! client: Bye
//! ```
//!
//! Variant order is the wire format: Hello is 0, Welcome 1, Refuse 2,
//! Submit 3, Ack 4, Bye 5. Status: Accepted 0, Duplicate 1, Quarantined 2,
//! Rejected 3.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::encoding::{self, EncodingError};
use crate::frame::{self, FrameError};
use crate::report::{Bytes32, Signature64, SignedReport};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

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

/// A server's signed statement that it held these reports at this time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Server clock, unix ms.
    pub server_time: i64,
    /// Ed25519(server key, "truce/receipt/v1\0" || postcard((server_time, held ids))).
    pub signature: Signature64,
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
        /// The server's receipt key.
        server_key: Bytes32,
        /// Server clock, unix ms.
        server_time: i64,
        /// Most reports per Submit.
        max_batch: u32,
        /// Largest frame.
        max_frame: u32,
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
        /// Per report, in submit order.
        results: Vec<(Bytes32, Status)>,
        /// Signed proof of receipt for the held ids.
        receipt: Receipt,
    },
    /// Client is done.
    Bye,
}

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

/// The ids an Ack's receipt covers, in result order.
pub fn held_ids(results: &[(Bytes32, Status)]) -> Vec<Bytes32> {
    results.iter().filter(|(_, s)| s.is_held()).map(|(id, _)| *id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_indexes_are_the_documented_ones() {
        let cases = [
            (Message::Hello { protocol: 1, agent_version: String::new(), device: [0; 32] }, 0u8),
            (Message::Welcome { server_key: [0; 32], server_time: 0, max_batch: 0, max_frame: 0 }, 1),
            (Message::Refuse { reason: String::new() }, 2),
            (Message::Submit { batch: 0, reports: vec![] }, 3),
            (
                Message::Ack {
                    batch: 0,
                    results: vec![],
                    receipt: Receipt { server_time: 0, signature: Signature64([0; 64]) },
                },
                4,
            ),
            (Message::Bye, 5),
        ];
        for (m, idx) in cases {
            assert_eq!(encoding::encode(&m)[0], idx, "{m:?}");
        }
        let st = [Status::Accepted, Status::Duplicate, Status::Quarantined("x".into()), Status::Rejected("y".into())];
        for (i, s) in st.iter().enumerate() {
            assert_eq!(encoding::encode(s)[0], i as u8);
        }
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
