//! The server's SQLite store: schema, the ingest rules of DESIGN §5, the
//! device registry, statistics and streaming reads for export.
//!
//! Every connection sets WAL and `synchronous=FULL`. [`Store::apply`] runs
//! the outcome rules for any number of checked reports inside the caller's
//! transaction, so the writer can commit many connections' batches at once
//! (group commit) and `import` uses exactly the same rules.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use truce_shared::wire::Status;
use truce_shared::{Bytes32, SignedReport, VerifiedReport, VerifyError};

/// Schema version in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE devices (
    key           BLOB PRIMARY KEY,
    name          TEXT,
    added_at      INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoke_reason TEXT
);
CREATE TABLE reports (
    id             BLOB PRIMARY KEY,
    device         BLOB NOT NULL,
    seq            INTEGER NOT NULL,
    prev           BLOB NOT NULL,
    recorded_at    INTEGER NOT NULL,
    observed_at    INTEGER NOT NULL,
    category       INTEGER NOT NULL,
    lat            REAL NOT NULL,
    lon            REAL NOT NULL,
    amends         BLOB,
    body           BLOB NOT NULL,
    signature      BLOB NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('verified', 'quarantined', 'rejected')),
    reason         TEXT,
    received_at    INTEGER NOT NULL,
    incident       INTEGER
);
CREATE INDEX reports_device_seq ON reports (device, seq);
CREATE INDEX reports_category_time ON reports (category, observed_at);
CREATE INDEX reports_amends ON reports (amends) WHERE amends IS NOT NULL;
CREATE TABLE rejections (
    n           INTEGER PRIMARY KEY,
    id          BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    body        BLOB NOT NULL,
    signature   BLOB NOT NULL
);
CREATE TABLE forks (
    device      BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    kept        BLOB NOT NULL,
    rejected    BLOB NOT NULL,
    detected_at INTEGER NOT NULL
);
";

/// A storage failure. Callers never ack what failed to commit.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database was made by a newer Truce.
    #[error("database schema version {0} is newer than this truce-server understands ({SCHEMA_VERSION})")]
    TooNew(i64),
}

/// A report after verification, ready for the writer.
#[derive(Debug)]
pub enum Checked {
    /// The signature and fields are valid.
    Valid(Box<VerifiedReport>),
    /// Verification failed: the report and why.
    Invalid {
        /// The report id (of whatever body arrived).
        id: Bytes32,
        /// The report as received.
        report: SignedReport,
        /// What failed.
        error: VerifyError,
    },
}

impl Checked {
    /// Verifies one report with the one verification function.
    pub fn check(report: SignedReport) -> Checked {
        match truce_shared::verify(&report) {
            Ok(v) => Checked::Valid(Box::new(v)),
            Err(error) => Checked::Invalid { id: report.id(), report, error },
        }
    }

    /// The report id.
    pub fn id(&self) -> Bytes32 {
        match self {
            Checked::Valid(v) => v.id,
            Checked::Invalid { id, .. } => *id,
        }
    }
}

/// An enrolled device.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    /// Public key, hex.
    pub key: String,
    /// Name given at enrolment.
    pub name: Option<String>,
    /// When it was enrolled (RFC 3339).
    pub added_at: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
}

/// The SQLite store.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew(version));
        }
        if version < 1 {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            tx.commit()?;
        }
        Ok(Store { conn })
    }

    /// The connection, for read-only queries (export, stats).
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Starts a write transaction (BEGIN IMMEDIATE).
    pub fn begin(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?)
    }

    /// Applies DESIGN §5's outcome rules to checked reports inside `tx`.
    /// Returns each report's status, in order.
    pub fn apply(tx: &Transaction<'_>, items: &[Checked], now: i64) -> Result<Vec<(Bytes32, Status)>, StoreError> {
        let mut out = Vec::with_capacity(items.len());
        let mut existing = tx.prepare_cached("SELECT status, reason FROM reports WHERE id = ?1")?;
        let mut device_q = tx.prepare_cached("SELECT revoked_at FROM devices WHERE key = ?1")?;
        let mut same_seq = tx
            .prepare_cached("SELECT id FROM reports WHERE device = ?1 AND seq = ?2 AND status != 'rejected' LIMIT 1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO reports (id, device, seq, prev, recorded_at, observed_at, category, lat, lon, amends, body,
                                  signature, status, reason, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        let mut reject = tx.prepare_cached(
            "INSERT INTO rejections (id, received_at, reason, body, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut fork = tx.prepare_cached(
            "INSERT INTO forks (device, seq, kept, rejected, detected_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for item in items {
            let id = item.id();
            let stored: Option<(String, Option<String>)> =
                existing.query_row([&id[..]], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            if let Some((status, reason)) = stored {
                // Same id already stored: nothing written. A report stored as
                // rejected evidence stays rejected however often it comes.
                let st =
                    if status == "rejected" { Status::Rejected(reason.unwrap_or_default()) } else { Status::Duplicate };
                out.push((id, st));
                continue;
            }
            let v = match item {
                Checked::Invalid { report, error, .. } => {
                    let reason = error.reason();
                    tracing::warn!(id = %hex::encode(id), %reason, "report rejected");
                    reject.execute(params![&id[..], now, reason, report.body, &report.signature.0[..]])?;
                    out.push((id, Status::Rejected(reason)));
                    continue;
                }
                Checked::Valid(v) => v,
            };
            let env = &v.envelope;
            let seq = i64::try_from(env.seq).unwrap_or(i64::MAX);
            let (mut status, mut reason) =
                match device_q.query_row([&env.device[..]], |r| r.get::<_, Option<i64>>(0)).optional()? {
                    None => ("quarantined", Some("unknown device")),
                    Some(Some(_revoked)) => ("quarantined", Some("revoked")),
                    Some(None) => ("verified", None),
                };
            let other: Option<Vec<u8>> = same_seq.query_row(params![&env.device[..], seq], |r| r.get(0)).optional()?;
            if let Some(kept) = &other {
                tracing::warn!(device = %hex::encode(env.device), seq, "equivocation: two reports at one seq");
                fork.execute(params![&env.device[..], seq, kept, &id[..], now])?;
                status = "rejected";
                reason = Some("equivocation");
            }
            let obs = &env.observation;
            insert.execute(params![
                &id[..],
                &env.device[..],
                seq,
                &env.prev[..],
                env.recorded_at,
                obs.observed_at,
                obs.category as i64,
                obs.position.lat,
                obs.position.lon,
                env.amends.as_ref().map(|a| &a[..]),
                v.signed.body,
                &v.signed.signature.0[..],
                status,
                reason,
                now,
            ])?;
            out.push((
                id,
                match (status, reason) {
                    ("verified", _) => Status::Accepted,
                    ("quarantined", r) => Status::Quarantined(r.unwrap_or_default().to_string()),
                    (_, r) => Status::Rejected(r.unwrap_or_default().to_string()),
                },
            ));
        }
        Ok(out)
    }

    /// Enrols a device (or renames it) and promotes its reports quarantined
    /// as "unknown device". Returns how many were promoted.
    pub fn add_device(&mut self, key: &Bytes32, name: Option<&str>, now: i64) -> Result<usize, StoreError> {
        let tx = self.begin()?;
        tx.execute(
            "INSERT INTO devices (key, name, added_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET name = COALESCE(excluded.name, devices.name)",
            params![&key[..], name, now],
        )?;
        let revoked: Option<i64> =
            tx.query_row("SELECT revoked_at FROM devices WHERE key = ?1", [&key[..]], |r| r.get(0))?;
        let promoted = if revoked.is_none() {
            tx.execute(
                "UPDATE reports SET status = 'verified', reason = NULL
                 WHERE device = ?1 AND status = 'quarantined' AND reason = 'unknown device'",
                [&key[..]],
            )?
        } else {
            0
        };
        tx.commit()?;
        Ok(promoted)
    }

    /// Revokes a device: later reports from it are quarantined. Returns
    /// false if the device is not enrolled.
    pub fn revoke_device(&mut self, key: &Bytes32, reason: Option<&str>, now: i64) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE devices SET revoked_at = COALESCE(revoked_at, ?2), revoke_reason = COALESCE(?3, revoke_reason)
             WHERE key = ?1",
            params![&key[..], now, reason],
        )?;
        Ok(n > 0)
    }

    /// Every enrolled device, oldest first.
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut q = self
            .conn
            .prepare("SELECT key, name, added_at, revoked_at, revoke_reason FROM devices ORDER BY added_at, key")?;
        let rows = q.query_map([], |r| {
            Ok(Device {
                key: hex::encode(r.get::<_, Vec<u8>>(0)?),
                name: r.get(1)?,
                added_at: truce_shared::time::format_ms(r.get(2)?),
                revoked_at: r.get::<_, Option<i64>>(3)?.map(truce_shared::time::format_ms),
                revoke_reason: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Counts and chain health for `stats`.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        let c = &self.conn;
        let count = |sql: &str| -> Result<i64, StoreError> { Ok(c.query_row(sql, [], |r| r.get(0))?) };
        let mut by_reason = Vec::new();
        {
            let mut q = c.prepare(
                "SELECT reason, SUM(n) FROM (
                    SELECT reason, COUNT(*) AS n FROM rejections GROUP BY reason
                    UNION ALL SELECT reason, COUNT(*) FROM reports WHERE status = 'rejected' GROUP BY reason)
                 GROUP BY reason ORDER BY 2 DESC",
            )?;
            for row in q.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
                by_reason.push(row?);
            }
        }
        let mut chains = Vec::new();
        {
            let mut q = c.prepare(
                "SELECT r.device, d.name, COUNT(DISTINCT r.seq), MAX(r.seq) FROM reports r
                 LEFT JOIN devices d ON d.key = r.device GROUP BY r.device ORDER BY d.name, r.device",
            )?;
            let mut forks = c.prepare("SELECT COUNT(*) FROM forks WHERE device = ?1")?;
            let mut seqs = c.prepare("SELECT DISTINCT seq FROM reports WHERE device = ?1 ORDER BY seq")?;
            let rows: Vec<(Vec<u8>, Option<String>, i64, i64)> =
                q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<Result<_, _>>()?;
            for (device, name, distinct, max) in rows {
                let mut missing = Vec::new();
                if distinct < max {
                    let mut expect = 1i64;
                    for s in seqs.query_map([&device], |r| r.get::<_, i64>(0))? {
                        let s = s?;
                        if s > expect {
                            missing.push((expect, s - 1));
                        }
                        expect = s + 1;
                    }
                }
                chains.push(ChainStats {
                    device: hex::encode(&device),
                    name,
                    reports: distinct,
                    head_seq: max,
                    missing,
                    forks: forks.query_row([&device], |r| r.get(0))?,
                });
            }
        }
        Ok(Stats {
            verified: count("SELECT COUNT(*) FROM reports WHERE status = 'verified'")?,
            quarantined: count("SELECT COUNT(*) FROM reports WHERE status = 'quarantined'")?,
            rejected: count("SELECT COUNT(*) FROM reports WHERE status = 'rejected'")?
                + count("SELECT COUNT(*) FROM rejections")?,
            rejected_by_reason: by_reason,
            devices_enrolled: count("SELECT COUNT(*) FROM devices WHERE revoked_at IS NULL")?,
            devices_revoked: count("SELECT COUNT(*) FROM devices WHERE revoked_at IS NOT NULL")?,
            forks: count("SELECT COUNT(*) FROM forks")?,
            chains,
        })
    }
}

/// What `stats` shows.
#[derive(Debug, serde::Serialize)]
pub struct Stats {
    /// Verified reports.
    pub verified: i64,
    /// Quarantined reports.
    pub quarantined: i64,
    /// Rejected reports (stored evidence and refused bytes).
    pub rejected: i64,
    /// Rejections by reason.
    pub rejected_by_reason: Vec<(String, i64)>,
    /// Devices enrolled and not revoked.
    pub devices_enrolled: i64,
    /// Devices revoked.
    pub devices_revoked: i64,
    /// Forks (equivocations) seen.
    pub forks: i64,
    /// Per device chain health.
    pub chains: Vec<ChainStats>,
}

/// One device's chain as the server sees it.
#[derive(Debug, serde::Serialize)]
pub struct ChainStats {
    /// Device key, hex.
    pub device: String,
    /// Enrolled name.
    pub name: Option<String>,
    /// Distinct seqs held.
    pub reports: i64,
    /// Highest seq held.
    pub head_seq: i64,
    /// Missing seq ranges (inclusive): reports withheld or not yet arrived.
    pub missing: Vec<(i64, i64)>,
    /// Seqs with two different reports.
    pub forks: i64,
}
