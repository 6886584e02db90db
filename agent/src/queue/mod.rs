//! The local queue: one SQLite file holding this device's chain of signed
//! reports, their delivery state, the server's answers and receipts.
//!
//! Promises:
//! - A report is appended (head read, seq and prev chosen, row written) in
//!   one `BEGIN IMMEDIATE` transaction, committed with WAL and
//!   `synchronous=FULL` before [`Queue::append`] returns. Two processes
//!   appending at once serialize on SQLite's write lock (each waits up to
//!   [`BUSY_TIMEOUT`]), so the chain never forks.
//! - Rows are never edited except to record the server's answer and to
//!   prune a delivered report's body (see [`prune`]); no row is deleted,
//!   so the chain (seq, id) and the proof of delivery (the receipt) stay.
//! - Report bodies and signatures are sealed under the data key
//!   ([`crate::vault`]); what stays readable without the passphrase is what
//!   `status` needs: seq, id, size, state, the server's answer, times and
//!   receipts. SQLite's `secure_delete` is on, so pages freed by pruning are
//!   zeroed, not left for a captor to read.
//! - Everything that walks the queue streams rows or reads bounded chunks;
//!   nothing loads the whole queue into memory.
//!
//! The schema is created once and stamped with `PRAGMA user_version`, so
//! opening an existing queue costs one pragma read, not DDL.
//!
//! ```sql
//! meta(key TEXT PRIMARY KEY, value TEXT)   -- device, server, last_sync_*
//! reports(
//!   seq INTEGER PRIMARY KEY,        -- chain position 1, 2, 3…
//!   id BLOB UNIQUE,                 -- 32-byte report id
//!   sealed BLOB,                    -- nonce ‖ AEAD(body ‖ signature); NULL once pruned
//!   size INTEGER,                   -- bytes of body + signature
//!   state TEXT,                     -- pending|delivered|quarantined|rejected
//!   answer TEXT, reason TEXT,       -- the server's Status and its reason
//!   answered_at INTEGER,            -- local clock when the Ack arrived
//!   receipt INTEGER → receipts.rowid,
//!   pruned_at INTEGER)              -- when the body was deleted
//! attachments(seq → reports.seq, name TEXT, held INTEGER)
//!                                   -- the sealed evidence files a report names
//!                                   -- (keyed names), and whether the server holds them
//! receipts(rowid, server_key BLOB, server_time INTEGER, signature BLOB,
//!          ids BLOB)                -- the held ids the signature covers
//! ```
//!
//! Schema version 1 (before sealing) kept `body` and `signature` in clear;
//! [`schema`] converts it once the data key is at hand.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use truce_shared::wire::{Receipt, Status};
use truce_shared::{Bytes32, Envelope, Position, Signature64, SignedReport};

use crate::error::{AgentError, Result};
use crate::vault::DataKey;

mod prune;
mod schema;

pub use prune::Pruned;

/// How long a writer waits for another process's transaction to finish
/// before giving up with a clear "queue is busy" error.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many pending reports [`PendingIter`] reads per query: enough to fill
/// several batches, small enough that a 100,000-report queue is never in
/// memory at once.
pub const PENDING_CHUNK: usize = 512;

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
fn status_parts(status: &Status) -> (&'static str, Option<&str>) {
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

/// The local queue database.
pub struct Queue {
    conn: Connection,
    path: PathBuf,
    /// The data key; `None` when opened without the passphrase (`status`),
    /// in which case nothing sealed can be read or written.
    key: Option<DataKey>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("path", &self.path).finish_non_exhaustive()
    }
}

const REPORT_COLUMNS: &str = "r.seq, r.id, r.sealed, r.size, r.state, r.answer, r.reason, r.answered_at,
     c.server_key, c.server_time, c.signature";

impl Queue {
    /// Opens (creating if needed) the queue at `path` for `device`, with the
    /// data key (or without it, to read counts and states only). A queue
    /// that belongs to another device key is refused: mixing two devices in
    /// one chain would break both.
    pub fn open(path: &Path, device: &Bytes32, key: Option<DataKey>) -> Result<Self> {
        // A new queue file is readable by its owner only from the start (its
        // WAL and shared-memory files take the same mode).
        match truce_shared::fs::create_new(path, truce_shared::fs::Access::Private) {
            Err(e) if !e.already_exists() => return Err(e.into()),
            _ => {}
        }
        let conn = Connection::open(path).map_err(|source| db_err(path, source))?;
        let mut q = Queue { conn, path: path.to_path_buf(), key };
        q.setup()?;
        q.check_device(device)?;
        Ok(q)
    }

    /// The data key, or "give the passphrase".
    fn key(&self) -> Result<&DataKey> {
        self.key.as_ref().ok_or(AgentError::PassphraseNeeded)
    }

    /// Whether the data key is at hand.
    pub fn is_unlocked(&self) -> bool {
        self.key.is_some()
    }

    /// Wraps a SQLite error with this queue's path (and the busy case with
    /// what to do).
    fn err(&self, source: rusqlite::Error) -> AgentError {
        db_err(&self.path, source)
    }

    /// Stamps a new queue with its device, or checks an existing one.
    fn check_device(&mut self, device: &Bytes32) -> Result<()> {
        let want = hex::encode(device);
        let have = match self.meta("device")? {
            Some(d) => d,
            None => {
                self.conn
                    .execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('device', ?1)", [&want])
                    .map_err(|e| self.err(e))?;
                self.meta("device")?.unwrap_or_default()
            }
        };
        if have != want {
            return Err(AgentError::Corrupt(format!(
                "{} holds the reports of another device key ({}…): move it away, or restore that device's key",
                self.path.display(),
                &have.get(..16).unwrap_or(&have)
            )));
        }
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads a meta value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| self.err(e))
    }

    /// Sets meta values in one transaction.
    pub fn set_meta(&mut self, pairs: &[(&str, &str)]) -> Result<()> {
        let path = self.path.clone();
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut st = tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?;
                for (k, v) in pairs {
                    st.execute([k, v])?;
                }
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| db_err(&path, e))
    }

    /// The newest report, if any.
    pub fn head(&self) -> Result<Option<ChainHead>> {
        head_of(&self.conn).map_err(|e| self.err(e))
    }

    /// Appends one report to the chain in one durable transaction.
    ///
    /// `build` gets the next seq and prev (from the head read inside the
    /// transaction, under the write lock) and returns the signed report and
    /// the keyed names of the evidence files it names; if it fails nothing
    /// is written. It runs under the write lock, so files it moves into
    /// place cannot be pruned before the row that names them commits.
    /// Returns the new head.
    pub fn append<F>(&mut self, build: F) -> Result<ChainHead>
    where
        F: FnOnce(u64, Bytes32) -> Result<(SignedReport, Vec<String>)>,
    {
        let path = self.path.clone();
        let key = self.key.clone().ok_or(AgentError::PassphraseNeeded)?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, e))?;
        let head = head_of(&tx).map_err(|e| db_err(&path, e))?;
        let (seq, prev) = match head {
            Some(h) => (h.seq + 1, h.id),
            None => (1, [0; 32]),
        };
        // On error the transaction is dropped, which rolls it back.
        let (signed, files) = build(seq, prev)?;
        let id = signed.id();
        let seq_i = i64::try_from(seq).map_err(|_| AgentError::Corrupt("seq overflow".into()))?;
        let sealed = key.seal_report(seq, &id, &signed.body, &signed.signature.0);
        let size = (signed.body.len() + 64) as i64;
        tx.prepare_cached("INSERT INTO reports(seq, id, sealed, size) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut st| st.execute(params![seq_i, &id[..], sealed, size]))
            .map_err(|e| db_err(&path, e))?;
        for name in &files {
            tx.prepare_cached("INSERT OR IGNORE INTO attachments(seq, name) VALUES (?1, ?2)")
                .and_then(|mut st| st.execute(params![seq_i, name]))
                .map_err(|e| db_err(&path, e))?;
        }
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(ChainHead { seq, id })
    }

    /// The position of the newest report still holding its body, for the
    /// interactive default.
    pub fn last_position(&self) -> Result<Option<Position>> {
        let key = self.key()?;
        let row: Option<(i64, Vec<u8>, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT seq, id, sealed FROM reports WHERE sealed IS NOT NULL ORDER BY seq DESC LIMIT 1")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
            .map_err(|e| self.err(e))?;
        let Some((seq, id, sealed)) = row else { return Ok(None) };
        let signed = open_row(key, seq, &id, &sealed)?;
        Ok(truce_shared::encoding::decode_canonical(&signed.body).ok().map(|e: Envelope| e.observation.position))
    }

    /// Finds one report by full id or unique hex prefix, with its receipt's ids.
    pub fn find(&self, prefix: &str) -> Result<QueuedReport> {
        let (lo, hi) = prefix_range(prefix)?;
        let sql = format!(
            "SELECT {REPORT_COLUMNS}, c.ids FROM reports r LEFT JOIN receipts c ON c.rowid = r.receipt
             WHERE r.id >= ?1 AND r.id <= ?2 LIMIT 2"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let mut rows = st.query(params![&lo[..], &hi[..]]).map_err(|e| self.err(e))?;
        let mut found = None;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            if found.is_some() {
                return Err(AgentError::Ambiguous(prefix.to_string()));
            }
            let mut rep = report_from_row(self.key()?, row)?;
            if let Some(r) = rep.receipt.as_mut() {
                let ids: Vec<u8> = row.get(11).map_err(|e| self.err(e))?;
                r.ids = split_ids(&ids)?;
            }
            found = Some(rep);
        }
        found.ok_or_else(|| AgentError::NotFound(prefix.to_string()))
    }

    /// Calls `f` on each report, newest first, optionally only those in
    /// `state`. Rows stream from SQLite one at a time. `f` returning `false`
    /// stops the walk (a closed pipe, say).
    pub fn for_each(&self, state: Option<State>, mut f: impl FnMut(QueuedReport) -> Result<bool>) -> Result<()> {
        let key = self.key()?;
        let filter = if state.is_some() { "WHERE r.state = ?1" } else { "WHERE ?1 IS NULL" };
        let sql = format!(
            "SELECT {REPORT_COLUMNS} FROM reports r LEFT JOIN receipts c ON c.rowid = r.receipt
             {filter} ORDER BY r.seq DESC"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let mut rows = st.query([state.map(State::as_str)]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            if !f(report_from_row(key, row)?)? {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f` on each report in chain order (oldest first), all reports
    /// or pending only: its seq, id and signed bytes (`None` once pruned).
    /// For bundles and chain checks.
    pub fn for_each_signed(
        &self,
        pending_only: bool,
        mut f: impl FnMut(u64, Bytes32, Option<SignedReport>) -> Result<()>,
    ) -> Result<()> {
        let key = self.key()?;
        let sql = if pending_only {
            "SELECT seq, id, sealed FROM reports WHERE state = 'pending' ORDER BY seq"
        } else {
            "SELECT seq, id, sealed FROM reports ORDER BY seq"
        };
        let mut st = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let seq: i64 = row.get(0).map_err(|e| self.err(e))?;
            let id: Vec<u8> = row.get(1).map_err(|e| self.err(e))?;
            let sealed: Option<Vec<u8>> = row.get(2).map_err(|e| self.err(e))?;
            let id32 = id32(&id, seq)?;
            let signed = sealed.map(|s| open_row(key, seq, &id, &s)).transpose()?;
            f(seq as u64, id32, signed)?;
        }
        Ok(())
    }

    /// Up to `limit` pending reports with seq > `after`, oldest first.
    pub fn pending_chunk(&self, after: u64, limit: usize) -> Result<Vec<(u64, SignedReport)>> {
        let key = self.key()?;
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, id, sealed FROM reports WHERE state = 'pending' AND seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = st.query(params![after, limit]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let seq: i64 = row.get(0).map_err(|e| self.err(e))?;
            let id: Vec<u8> = row.get(1).map_err(|e| self.err(e))?;
            // A pending report is never pruned: no body is a damaged queue.
            let sealed: Option<Vec<u8>> = row.get(2).map_err(|e| self.err(e))?;
            let sealed = sealed.ok_or_else(|| AgentError::Corrupt(format!("pending report seq {seq} has no body")))?;
            out.push((seq as u64, open_row(key, seq, &id, &sealed)?));
        }
        Ok(out)
    }

    /// Iterates over pending reports oldest first, reading
    /// [`PENDING_CHUNK`] at a time.
    pub fn pending(&self) -> PendingIter<'_> {
        PendingIter { queue: self, after: 0, buf: Vec::new().into_iter(), done: false }
    }

    /// Count of reports in each state, in [`State::ALL`] order.
    pub fn counts(&self) -> Result<[(State, u64); 4]> {
        let mut out = State::ALL.map(|s| (s, 0u64));
        let mut st =
            self.conn.prepare("SELECT state, COUNT(*) FROM reports GROUP BY state").map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let name: String = row.get(0).map_err(|e| self.err(e))?;
            let n: i64 = row.get(1).map_err(|e| self.err(e))?;
            if let Some(slot) = out.iter_mut().find(|(s, _)| s.as_str() == name) {
                slot.1 = n as u64;
            }
        }
        Ok(out)
    }

    /// Records the server's answers for one Ack in one transaction: each
    /// pending report named in `results` takes the state its status gives,
    /// with the status, reason, `answered_at` and the receipt (kept once,
    /// with every id it covers). Answers for reports that are not pending
    /// here are ignored, so an earlier answer and receipt are never replaced.
    pub fn record_ack(
        &mut self,
        results: &[(Bytes32, Status)],
        receipt: &Receipt,
        server_key: &Bytes32,
        answered_at: i64,
    ) -> Result<AckOutcome> {
        let path = self.path.clone();
        let held = truce_shared::wire::held_ids(results);
        let run = |conn: &mut Connection| -> rusqlite::Result<AckOutcome> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let receipt_row: Option<i64> = if held.is_empty() {
                None
            } else {
                let ids: Vec<u8> = held.iter().flat_map(|i| i.iter().copied()).collect();
                tx.prepare_cached(
                    "INSERT INTO receipts(server_key, server_time, signature, ids) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    &server_key[..],
                    receipt.server_time,
                    &receipt.signature.0[..],
                    ids
                ])?;
                Some(tx.last_insert_rowid())
            };
            let mut out = AckOutcome::default();
            {
                let mut st = tx.prepare_cached(
                    "UPDATE reports SET state = ?2, answer = ?3, reason = ?4, answered_at = ?5, receipt = ?6
                     WHERE id = ?1 AND state = 'pending'",
                )?;
                for (id, status) in results {
                    let state = State::from_status(status);
                    let (answer, reason) = status_parts(status);
                    let rc = if status.is_held() { receipt_row } else { None };
                    let n = st.execute(params![&id[..], state.as_str(), answer, reason, answered_at, rc])?;
                    match (n, state) {
                        (0, _) => out.ignored += 1,
                        (_, State::Delivered) => out.delivered += 1,
                        (_, State::Quarantined) => out.quarantined += 1,
                        (_, State::Rejected) => out.rejected += 1,
                        (_, State::Pending) => {}
                    }
                }
            }
            tx.commit()?;
            Ok(out)
        };
        run(&mut self.conn).map_err(|e| db_err(&path, e))
    }
}

/// Iterator over pending reports, oldest first, in bounded chunks.
pub struct PendingIter<'q> {
    queue: &'q Queue,
    after: u64,
    buf: std::vec::IntoIter<(u64, SignedReport)>,
    done: bool,
}

impl Iterator for PendingIter<'_> {
    type Item = Result<(u64, SignedReport)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.buf.next() {
            self.after = item.0;
            return Some(Ok(item));
        }
        if self.done {
            return None;
        }
        match self.queue.pending_chunk(self.after, PENDING_CHUNK) {
            Ok(chunk) => {
                if chunk.len() < PENDING_CHUNK {
                    self.done = true;
                }
                self.buf = chunk.into_iter();
                let item = self.buf.next()?;
                self.after = item.0;
                Some(Ok(item))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn head_of(conn: &Connection) -> rusqlite::Result<Option<ChainHead>> {
    conn.prepare_cached("SELECT seq, id FROM reports ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| {
            let seq: i64 = r.get(0)?;
            let id: Vec<u8> = r.get(1)?;
            Ok((seq, id))
        })
        .optional()
        .map(|o| o.and_then(|(seq, id)| Some(ChainHead { seq: u64::try_from(seq).ok()?, id: id.try_into().ok()? })))
}

/// The SQLite error, with "busy" turned into what to do.
fn db_err(path: &Path, source: rusqlite::Error) -> AgentError {
    if source.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) {
        return AgentError::Busy(path.to_path_buf());
    }
    AgentError::Db { path: path.to_path_buf(), source }
}

fn sig64(bytes: &[u8], seq: i64) -> Result<Signature64> {
    bytes
        .try_into()
        .map(Signature64)
        .map_err(|_| AgentError::Corrupt(format!("report seq {seq}: bad signature length")))
}

fn split_ids(bytes: &[u8]) -> Result<Vec<Bytes32>> {
    if !bytes.len().is_multiple_of(32) {
        return Err(AgentError::Corrupt("receipt id list is not a multiple of 32 bytes".into()));
    }
    Ok(bytes.chunks_exact(32).filter_map(|c| c.try_into().ok()).collect())
}

fn id32(id: &[u8], seq: i64) -> Result<Bytes32> {
    id.try_into().map_err(|_| AgentError::Corrupt(format!("report seq {seq}: bad id length")))
}

/// Unseals one queue row. A row that does not open under this key for its
/// (seq, id) was not written by this agent.
fn open_row(key: &DataKey, seq: i64, id: &[u8], sealed: &[u8]) -> Result<SignedReport> {
    let id = id32(id, seq)?;
    let (body, signature) = key
        .open_report(seq as u64, &id, sealed)
        .ok_or_else(|| AgentError::Corrupt(format!("report seq {seq} does not unseal with this laptop's data key")))?;
    Ok(SignedReport { body, signature: Signature64(signature) })
}

fn report_from_row(key: &DataKey, row: &rusqlite::Row<'_>) -> Result<QueuedReport> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_cover_odd_and_full_lengths() {
        let (lo, hi) = prefix_range("abc").unwrap();
        assert_eq!(&lo[..2], &[0xab, 0xc0]);
        assert_eq!(&hi[..2], &[0xab, 0xcf]);
        assert!(hi[2..].iter().all(|&b| b == 0xff));
        let full = "ab".repeat(32);
        let (lo, hi) = prefix_range(&full).unwrap();
        assert_eq!(lo, hi);
        assert!(prefix_range("").is_err());
        assert!(prefix_range("xyz").is_err());
        assert!(prefix_range(&"a".repeat(65)).is_err());
    }

    #[test]
    fn a_queue_refuses_another_device() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        drop(Queue::open(&path, &[1; 32], None).unwrap());
        drop(Queue::open(&path, &[1; 32], None).unwrap());
        assert!(matches!(Queue::open(&path, &[2; 32], None), Err(AgentError::Corrupt(_))));
    }
}
