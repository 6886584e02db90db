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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReceipt {
    /// The server key the signature verifies under.
    pub server_key: Bytes32,
    /// The server clock when it signed.
    pub server_time: i64,
    /// Ed25519 over `(server_time, ids)`.
    pub signature: Signature64,
    /// The ids the signature covers (empty when only listing).
    pub ids: Vec<Bytes32>,
}

impl StoredReceipt {
    /// Whether the signature is the server's over these ids and time.
    pub fn verifies(&self) -> bool {
        truce_shared::signing::verify_receipt(&self.server_key, self.server_time, &self.ids, &self.signature)
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
}

impl QueuedReport {
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckOutcome {
    /// Reports now delivered.
    pub delivered: u64,
    /// Reports now quarantined.
    pub quarantined: u64,
    /// Reports now rejected.
    pub rejected: u64,
    /// Answers for ids that were not pending here (already answered, or unknown).
    pub ignored: u64,
}

pub(super) const REPORT_COLUMNS: &str = "r.seq, r.id, r.sealed, r.size, r.state, r.answer, r.reason, r.answered_at,
     c.server_key, c.server_time, c.signature";

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
    let server_key: Option<Vec<u8>> = row.get(8).map_err(corrupt)?;
    let receipt = match server_key {
        None => None,
        Some(k) => Some(StoredReceipt {
            server_key: k.try_into().map_err(|_| AgentError::Corrupt(format!("report seq {seq}: bad server key")))?,
            server_time: row.get(9).map_err(corrupt)?,
            signature: sig64(&row.get::<_, Vec<u8>>(10).map_err(corrupt)?, seq)?,
            ids: Vec::new(),
        }),
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
