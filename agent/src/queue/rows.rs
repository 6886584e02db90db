//! What the queue holds, as callers see it: a report's state, the stored
//! receipt, a queued report and the chain head; and how a sealed row is
//! read back.

use super::*;

/// Where a report is in its life on this laptop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Signed and stored here; no server has acknowledged it yet.
    Pending,
    /// The server stored it (Accepted) or already had it (Duplicate).
    Delivered,
    /// The server stored it but does not trust it yet (unknown or revoked device).
    Quarantined,
    /// The server refused it; the reason says why.
    Rejected,
}

impl State {
    /// Every state, in the order `status` shows them.
    pub const ALL: [State; 4] = [State::Pending, State::Delivered, State::Quarantined, State::Rejected];

    /// The name stored in the database and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Delivered => "delivered",
            State::Quarantined => "quarantined",
            State::Rejected => "rejected",
        }
    }

    /// Reads a state name.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The state a server answer puts a report in.
    pub fn from_status(status: &Status) -> State {
        match status {
            Status::Accepted | Status::Duplicate => State::Delivered,
            Status::Quarantined(_) => State::Quarantined,
            Status::Rejected(_) => State::Rejected,
        }
    }
}

/// The server's answer names as stored and shown.
pub(super) fn status_parts(status: &Status) -> (&'static str, Option<&str>) {
    match status {
        Status::Accepted => ("accepted", None),
        Status::Duplicate => ("duplicate", None),
        Status::Quarantined(r) => ("quarantined", Some(r)),
        Status::Rejected(r) => ("rejected", Some(r)),
    }
}

/// A server receipt as kept in the queue: enough to re-check it offline.
/// Protocol 1's (the server key over a time and the held ids) or protocol
/// 2's (the log key over the whole Ack, see [`truce_shared::log::ReceiptBody`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    /// The key the signature verifies under: the server key (protocol 1)
    /// or the log key (protocol 2).
    pub server_key: Bytes32,
    /// The server clock when it signed (protocol 1), or the Ack's
    /// `received_at` (protocol 2).
    pub server_time: i64,
    /// The signature.
    pub signature: Signature64,
    /// The ids the signature covers (empty when only listing).
    pub ids: Vec<Bytes32>,
    /// What a protocol-2 receipt adds; `None` for a protocol-1 receipt.
    pub log: Option<LogReceipt>,
}

/// The parts of a protocol-2 receipt beside key, time and signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogReceipt {
    /// The Submit's batch number.
    pub batch: u64,
    /// The signed checkpoint the Ack carried.
    pub checkpoint: String,
    /// Every result the signature covers (empty when only listing).
    pub results: Vec<Outcome>,
}

impl StoredReceipt {
    /// Whether the signature is the server's over what it covers (for a
    /// protocol-2 receipt, only when its results were read: [`Queue::find`]).
    pub fn verifies(&self) -> bool {
        match &self.log {
            None => {
                truce_shared::signing::verify_receipt(&self.server_key, self.server_time, &self.ids, &self.signature)
            }
            Some(l) => truce_shared::log::verify_receipt(
                &self.server_key,
                &ReceiptBody {
                    batch: l.batch,
                    received_at: self.server_time,
                    results: l.results.as_slice().into(),
                    checkpoint: l.checkpoint.as_str().into(),
                },
                &self.signature,
            ),
        }
    }
}

/// One report as stored, with its state and the server's answer.
#[derive(Debug, Clone)]
pub struct QueuedReport {
    /// Chain position.
    pub seq: u64,
    /// Report id.
    pub id: Bytes32,
    /// The signed bytes; `None` once pruned after delivery.
    pub signed: Option<SignedReport>,
    /// Bytes of body and signature as recorded (kept after pruning).
    pub size: u64,
    /// Delivery state.
    pub state: State,
    /// The server's status name (`accepted`, `duplicate`, `quarantined`, `rejected`).
    pub answer: Option<String>,
    /// The server's reason, for quarantined and rejected reports.
    pub reason: Option<String>,
    /// Local time the answer arrived, unix ms.
    pub answered_at: Option<i64>,
    /// The receipt that covers this report (its `ids` are filled only by [`Queue::find`]).
    pub receipt: Option<StoredReceipt>,
    /// The index of the server's log entry that records it (protocol 2).
    pub entry: Option<u64>,
    /// When its inclusion in the server's log was proven, unix ms.
    pub proven_at: Option<i64>,
}

impl QueuedReport {
    /// Answered under protocol 2 (it has a log entry) but its inclusion in
    /// the log not proven yet: "delivered, not proven".
    pub fn not_proven(&self) -> bool {
        self.entry.is_some() && self.proven_at.is_none()
    }

    /// The state as people read it: `delivered, not proven` while the
    /// answer is signed but the log has not proven it.
    pub fn state_text(&self) -> String {
        if self.state != State::Pending && self.not_proven() {
            format!("{}, not proven", self.state.as_str())
        } else {
            self.state.as_str().to_string()
        }
    }

    /// Decodes the envelope of the stored body (no signature check);
    /// `None` once the body has been pruned.
    pub fn envelope(&self) -> Result<Option<Envelope>> {
        self.signed
            .as_ref()
            .map(|s| {
                truce_shared::encoding::decode_canonical(&s.body)
                    .map_err(|e| AgentError::Corrupt(format!("report seq {}: {e}", self.seq)))
            })
            .transpose()
    }
}

/// The newest report: seq and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Its seq.
    pub seq: u64,
    /// Its id.
    pub id: Bytes32,
}

/// What one Ack did to the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Reports now delivered.
    pub delivered: u64,
    /// Reports now quarantined.
    pub quarantined: u64,
    /// Reports now rejected.
    pub rejected: u64,
    /// Answers for ids that were not pending here (already answered, or unknown).
    pub ignored: u64,
    /// The indexes (into the Ack's results) of the reports this Ack marked.
    pub marked: Vec<usize>,
}

/// The columns [`report_from_row`] reads, over `reports r` joined with
/// `receipts c` and `log_receipts g` (see [`REPORT_FROM`]).
pub(super) const REPORT_COLUMNS: &str = "r.seq, r.id, r.sealed, r.size, r.state, r.answer, r.reason, r.answered_at,
     c.server_key, c.server_time, c.signature, r.entry, r.proven_at,
     g.log_key, g.received_at, g.signature, g.batch, g.checkpoint";

/// The tables [`REPORT_COLUMNS`] come from.
pub(super) const REPORT_FROM: &str = "reports r LEFT JOIN receipts c ON c.rowid = r.receipt
     LEFT JOIN log_receipts g ON g.rowid = r.log_receipt";

/// Columns after [`REPORT_COLUMNS`] that [`Queue::find`] adds.
pub(super) const FIND_IDS: usize = 18;
pub(super) const FIND_RESULTS: usize = 19;

pub(super) fn sig64(bytes: &[u8], seq: i64) -> Result<Signature64> {
    bytes
        .try_into()
        .map(Signature64)
        .map_err(|_| AgentError::Corrupt(format!("report seq {seq}: bad signature length")))
}

pub(super) fn split_ids(bytes: &[u8]) -> Result<Vec<Bytes32>> {
    if !bytes.len().is_multiple_of(32) {
        return Err(AgentError::Corrupt("receipt id list is not a multiple of 32 bytes".into()));
    }
    Ok(bytes.chunks_exact(32).filter_map(|c| c.try_into().ok()).collect())
}

pub(super) fn id32(id: &[u8], seq: i64) -> Result<Bytes32> {
    id.try_into().map_err(|_| AgentError::Corrupt(format!("report seq {seq}: bad id length")))
}

/// Unseals one queue row. A row that does not open under this key for its
/// (seq, id) was not written by this agent.
pub(super) fn open_row(key: &DataKey, seq: i64, id: &[u8], sealed: &[u8]) -> Result<SignedReport> {
    let id = id32(id, seq)?;
    let (body, signature) = key
        .open_report(seq as u64, &id, sealed)
        .ok_or_else(|| AgentError::Corrupt(format!("report seq {seq} does not unseal with this laptop's data key")))?;
    Ok(SignedReport { body, signature: Signature64(signature) })
}

pub(super) fn report_from_row(key: &DataKey, row: &rusqlite::Row<'_>) -> Result<QueuedReport> {
    let corrupt = |e: rusqlite::Error| AgentError::Corrupt(e.to_string());
    let seq: i64 = row.get(0).map_err(corrupt)?;
    let id: Vec<u8> = row.get(1).map_err(corrupt)?;
    let sealed: Option<Vec<u8>> = row.get(2).map_err(corrupt)?;
    let size: i64 = row.get(3).map_err(corrupt)?;
    let state: String = row.get(4).map_err(corrupt)?;
    let bad_key = || AgentError::Corrupt(format!("report seq {seq}: bad server key"));
    let server_key: Option<Vec<u8>> = row.get(8).map_err(corrupt)?;
    let log_key: Option<Vec<u8>> = row.get(13).map_err(corrupt)?;
    let receipt = match (log_key, server_key) {
        (Some(k), _) => Some(StoredReceipt {
            server_key: k.try_into().map_err(|_| bad_key())?,
            server_time: row.get(14).map_err(corrupt)?,
            signature: sig64(&row.get::<_, Vec<u8>>(15).map_err(corrupt)?, seq)?,
            ids: Vec::new(),
            log: Some(LogReceipt {
                batch: row.get::<_, i64>(16).map_err(corrupt)? as u64,
                checkpoint: row.get(17).map_err(corrupt)?,
                results: Vec::new(),
            }),
        }),
        (None, Some(k)) => Some(StoredReceipt {
            server_key: k.try_into().map_err(|_| bad_key())?,
            server_time: row.get(9).map_err(corrupt)?,
            signature: sig64(&row.get::<_, Vec<u8>>(10).map_err(corrupt)?, seq)?,
            ids: Vec::new(),
            log: None,
        }),
        (None, None) => None,
    };
    Ok(QueuedReport {
        seq: seq as u64,
        signed: sealed.map(|s| open_row(key, seq, &id, &s)).transpose()?,
        id: id32(&id, seq)?,
        size: size.max(0) as u64,
        state: State::parse(&state).ok_or_else(|| AgentError::Corrupt(format!("report seq {seq}: state {state:?}")))?,
        answer: row.get(5).map_err(corrupt)?,
        reason: row.get(6).map_err(corrupt)?,
        answered_at: row.get(7).map_err(corrupt)?,
        receipt,
        entry: row.get::<_, Option<i64>>(11).map_err(corrupt)?.map(|e| e as u64),
        proven_at: row.get(12).map_err(corrupt)?,
    })
}

/// The inclusive range of 32-byte ids that start with a hex prefix.
pub(crate) fn prefix_range(prefix: &str) -> Result<(Bytes32, Bytes32)> {
    let p = prefix.trim().to_ascii_lowercase();
    if p.is_empty() || p.len() > 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AgentError::BadId(prefix.to_string()));
    }
    let lo_hex = format!("{p:0<64}");
    let hi_hex = format!("{p:f<64}");
    let mut lo = [0u8; 32];
    let mut hi = [0u8; 32];
    hex::decode_to_slice(lo_hex, &mut lo).map_err(|_| AgentError::BadId(prefix.to_string()))?;
    hex::decode_to_slice(hi_hex, &mut hi).map_err(|_| AgentError::BadId(prefix.to_string()))?;
    Ok((lo, hi))
}
