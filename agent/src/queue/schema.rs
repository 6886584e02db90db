//! The queue's schema, its per-connection settings, and its migrations:
//! version 1 (bodies in clear, before sealing) to version 2 (sealed), and
//! version 2 to 3 (protocol 2: signed log receipts, each report's log entry
//! and whether its inclusion was proven), and version 3 to 4 (evidence
//! upload: per file, the bytes the server holds and why it refused).

use rusqlite::{params, Connection, TransactionBehavior};

use super::{db_err, Queue};
use crate::error::{AgentError, Result};
use crate::vault::DataKey;

/// The schema version this build writes (`PRAGMA user_version`).
pub(super) const SCHEMA_VERSION: i32 = 4;

/// What version 3 adds to version 2: protocol-2 receipts (kept whole, so
/// they can be checked again offline) and, per report, the log entry that
/// records it, the receipt that names it and when its inclusion was proven.
/// Version-1 receipts stay in `receipts`, still readable.
const LOG_V3: &str = "
CREATE TABLE log_receipts (
    rowid       INTEGER PRIMARY KEY,
    log_key     BLOB NOT NULL,
    batch       INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    signature   BLOB NOT NULL,
    checkpoint  TEXT NOT NULL,
    results     BLOB NOT NULL
);
ALTER TABLE reports ADD COLUMN log_receipt INTEGER REFERENCES log_receipts(rowid);
ALTER TABLE reports ADD COLUMN entry INTEGER;
ALTER TABLE reports ADD COLUMN proven_at INTEGER;
";

/// What version 4 adds: per evidence file, how many bytes the server said
/// it holds durably (an upload resumes there) and the reason it last gave
/// for not taking the file. Same for every row of one file.
const EVIDENCE_V4: &str = "
ALTER TABLE attachments ADD COLUMN sent INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attachments ADD COLUMN note TEXT;
";

const META_AND_RECEIPTS: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS receipts (
    rowid       INTEGER PRIMARY KEY,
    server_key  BLOB NOT NULL,
    server_time INTEGER NOT NULL,
    signature   BLOB NOT NULL,
    ids         BLOB NOT NULL
);
";

/// The reports and attachments tables of version 2 (the reports table
/// under `{name}`, so the migration can build it beside the old one).
fn reports_v2(name: &str) -> String {
    format!(
        "
CREATE TABLE {name} (
    seq         INTEGER PRIMARY KEY,
    id          BLOB NOT NULL UNIQUE,
    sealed      BLOB,
    size        INTEGER NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'delivered', 'quarantined', 'rejected')),
    answer      TEXT,
    reason      TEXT,
    answered_at INTEGER,
    receipt     INTEGER REFERENCES receipts(rowid),
    pruned_at   INTEGER
);
"
    )
}

const INDEXES_V2: &str = "
CREATE TABLE IF NOT EXISTS attachments (
    seq  INTEGER NOT NULL REFERENCES reports(seq),
    name TEXT NOT NULL,
    held INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (seq, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attachments_by_name ON attachments(name);
CREATE INDEX IF NOT EXISTS reports_by_state ON reports(state, seq);
-- What pruning looks for, without walking every delivered report.
CREATE INDEX IF NOT EXISTS reports_unpruned ON reports(answered_at)
    WHERE sealed IS NOT NULL AND state IN ('delivered', 'quarantined');
";

impl Queue {
    /// Per-connection settings, and the schema on first use. A version-1
    /// queue is converted when the data key is at hand, and refused without
    /// it.
    pub(super) fn setup(&mut self) -> Result<()> {
        let path = self.path.clone();
        let v = self.connection_settings().map_err(|e| db_err(&path, e))?;
        if v == SCHEMA_VERSION {
            return Ok(());
        }
        if v > SCHEMA_VERSION {
            return Err(AgentError::Corrupt(format!(
                "{} has schema version {v}, newer than this truce-agent's {SCHEMA_VERSION}: upgrade truce-agent",
                path.display()
            )));
        }
        if v == 0 {
            return self.create_schema().map_err(|e| db_err(&path, e));
        }
        if v == 1 {
            let key = self.key.clone().ok_or(AgentError::PassphraseNeeded)?;
            migrate_v1(&mut self.conn, &key).map_err(|e| match e {
                Migration::Db(e) => db_err(&path, e),
                Migration::Agent(e) => e,
            })?;
            // The clear bodies are gone from the tables (secure_delete zeroed
            // their pages); move every page out of the WAL and empty it, so no
            // old frame keeps a copy either.
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .and_then(|()| self.conn.execute_batch("VACUUM"))
                .and_then(|()| self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
                .map_err(|e| db_err(&path, e))?;
        }
        // Nothing sealed changes: this runs without the data key too.
        migrate_v2(&mut self.conn).map_err(|e| db_err(&path, e))
    }

    /// Sets the per-connection pragmas; returns the schema version.
    fn connection_settings(&mut self) -> rusqlite::Result<i32> {
        self.conn.busy_timeout(super::BUSY_TIMEOUT)?;
        // synchronous is per connection: without FULL a WAL commit is not
        // durable against power loss, and `record` promises that it is.
        // secure_delete zeroes what is deleted (pruned bodies) instead of
        // leaving it in free pages.
        self.conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;")?;
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0))
    }

    /// Creates the schema (once; a concurrent creator is waited for).
    fn create_schema(&mut self) -> rusqlite::Result<()> {
        // WAL is a property of the file, set once; it cannot change inside a
        // transaction, so it comes first.
        let _mode: String = self.conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let v: i32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if v == 0 {
            tx.execute_batch(META_AND_RECEIPTS)?;
            tx.execute_batch(&reports_v2("reports"))?;
            tx.execute_batch(INDEXES_V2)?;
            tx.execute_batch(LOG_V3)?;
            tx.execute_batch(EVIDENCE_V4)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()
    }
}

/// Version 2 to 3 (the protocol-2 receipts table and three new columns of
/// reports, NULL for every report answered before) and 3 to 4 (two columns
/// of attachments), in one transaction.
fn migrate_v2(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let v: i32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if v == 2 {
        tx.execute_batch(LOG_V3)?;
    }
    if v == 2 || v == 3 {
        tx.execute_batch(EVIDENCE_V4)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    // Otherwise another process converted it while this one waited.
    tx.commit()
}

enum Migration {
    Db(rusqlite::Error),
    Agent(AgentError),
}

impl From<rusqlite::Error> for Migration {
    fn from(e: rusqlite::Error) -> Self {
        Migration::Db(e)
    }
}

/// Version 1 to 2 in one transaction: every body and signature sealed into
/// a new reports table, the attachments each report names recorded under
/// their keyed names, the old table dropped. A crash leaves version 1 whole.
fn migrate_v1(conn: &mut Connection, key: &DataKey) -> std::result::Result<(), Migration> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let v: i32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if v != 1 {
        // Another process converted it while this one waited.
        return Ok(tx.commit()?);
    }
    tx.execute_batch(&reports_v2("reports_v2"))?;
    tx.execute_batch(
        "CREATE TABLE attachments (
            seq  INTEGER NOT NULL,
            name TEXT NOT NULL,
            held INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (seq, name)
        ) WITHOUT ROWID;",
    )?;
    {
        let mut read = tx.prepare(
            "SELECT seq, id, body, signature, state, answer, reason, answered_at, receipt FROM reports ORDER BY seq",
        )?;
        let mut write = tx.prepare(
            "INSERT INTO reports_v2(seq, id, sealed, size, state, answer, reason, answered_at, receipt)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut attach = tx.prepare("INSERT OR IGNORE INTO attachments(seq, name) VALUES (?1, ?2)")?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let id: Vec<u8> = row.get(1)?;
            let body: Vec<u8> = row.get(2)?;
            let sig: Vec<u8> = row.get(3)?;
            let corrupt = |what: &str| Migration::Agent(AgentError::Corrupt(format!("report seq {seq}: {what}")));
            let id32: [u8; 32] = id.as_slice().try_into().map_err(|_| corrupt("bad id length"))?;
            let sig64: [u8; 64] = sig.as_slice().try_into().map_err(|_| corrupt("bad signature length"))?;
            let sealed = key.seal_report(seq as u64, &id32, &body, &sig64);
            let env: truce_shared::Envelope =
                truce_shared::encoding::decode_canonical(&body).map_err(|_| corrupt("body does not decode"))?;
            for a in &env.observation.attachments {
                attach.execute(params![seq, key.file_name(&a.sha256)])?;
            }
            write.execute(params![
                seq,
                id,
                sealed,
                (body.len() + 64) as i64,
                row.get::<_, String>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, Option<i64>>(7)?,
                row.get::<_, Option<i64>>(8)?,
            ])?;
        }
    }
    tx.execute_batch("DROP TABLE reports; ALTER TABLE reports_v2 RENAME TO reports;")?;
    tx.execute_batch(INDEXES_V2)?;
    tx.pragma_update(None, "user_version", 2)?;
    Ok(tx.commit()?)
}
