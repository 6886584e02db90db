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
//!   receipt INTEGER → receipts.rowid,         -- a protocol-1 receipt
//!   pruned_at INTEGER,              -- when the body was deleted
//!   log_receipt INTEGER → log_receipts.rowid, -- a protocol-2 receipt
//!   entry INTEGER,                  -- the server's log entry that records it
//!   proven_at INTEGER)              -- when its inclusion was proven (NULL: not yet)
//! attachments(seq → reports.seq, name TEXT, held INTEGER,
//!             sent INTEGER, note TEXT)
//!                                   -- the sealed evidence files a report names
//!                                   -- (keyed names), whether the server holds them,
//!                                   -- the bytes it holds of a partial upload, and
//!                                   -- why it last refused one
//! receipts(rowid, server_key BLOB, server_time INTEGER, signature BLOB,
//!          ids BLOB)                -- the held ids the signature covers
//! log_receipts(rowid, log_key BLOB, batch INTEGER, received_at INTEGER,
//!          signature BLOB, checkpoint TEXT,
//!          results BLOB)            -- postcard(Vec<Outcome>): all the signature covers
//! ```
//!
//! Meta keys of the log (DESIGN §9): `log_key` (the pinned log key, hex),
//! `log_key_expected` (what `link --server-key` gave), `log_checkpoint`
//! (the last checkpoint whose proofs verified, as signed).
//!
//! Schema version 1 (before sealing) kept `body` and `signature` in clear;
//! [`schema`] converts it once the data key is at hand.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use truce_shared::log::{Outcome, ReceiptBody};
use truce_shared::wire::Status;
use truce_shared::{Bytes32, Envelope, Position, Signature64, SignedReport};

use crate::error::{AgentError, Result};
use crate::vault::DataKey;

mod acks;
mod chain;
mod evidence;
mod prune;
mod reads;
mod rows;
mod schema;

pub use acks::LogAck;
pub use evidence::{FileState, FileUpload};
pub use prune::Pruned;
pub use reads::PendingIter;
use rows::{
    id32, open_row, prefix_range, report_from_row, split_ids, status_parts, FIND_IDS, FIND_RESULTS, REPORT_COLUMNS,
    REPORT_FROM,
};
pub use rows::{AckOutcome, ChainHead, LogReceipt, QueuedReport, State, StoredReceipt};

/// How long a writer waits for another process's transaction to finish
/// before giving up with a clear "queue is busy" error.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many pending reports [`PendingIter`] reads per query: enough to fill
/// several batches, small enough that a 100,000-report queue is never in
/// memory at once.
pub const PENDING_CHUNK: usize = 512;

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

    /// Removes meta values in one transaction.
    pub fn remove_meta(&mut self, keys: &[&str]) -> Result<()> {
        let path = self.path.clone();
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut st = tx.prepare_cached("DELETE FROM meta WHERE key = ?1")?;
                for k in keys {
                    st.execute([k])?;
                }
            }
            tx.commit()
        };
        run(&mut self.conn).map_err(|e| db_err(&path, e))
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
}

/// The SQLite error, with "busy" turned into what to do.
fn db_err(path: &Path, source: rusqlite::Error) -> AgentError {
    if source.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) {
        return AgentError::Busy(path.to_path_buf());
    }
    AgentError::Db { path: path.to_path_buf(), source }
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
