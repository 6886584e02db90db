//! The server's SQLite store: the outcome rules of DESIGN §5, the device
//! registry, and streaming reads for export and stats.
//!
//! Every connection to the file sets WAL and `synchronous=FULL`, so a
//! committed transaction survives power loss. [`Store::apply`] runs the
//! outcome rules for a batch inside the caller's transaction: the writer
//! thread ([`crate::writer`]) calls it for every batch queued from every
//! connection and commits them together (group commit), and `import` goes
//! through the same writer, so a report gets the same answer however it
//! arrived.
//!
//! The store never verifies signatures: it takes [`Checked`] reports, whose
//! verification ran elsewhere (off the async threads, in parallel). It
//! does not know about connections, receipts or TLS.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use truce_shared::wire::Status;
use truce_shared::{limits, Bytes32, Category, Envelope, Signature64, SignedReport};

use crate::incidents::{self, Incident, Window};
use crate::schema;
use crate::verify::Checked;

/// The reason a report of a key that is not enrolled is quarantined.
pub const REASON_UNKNOWN_DEVICE: &str = "unknown device";
/// The reason a report of a revoked key is quarantined.
pub const REASON_REVOKED: &str = "revoked";
/// The reason a second, different report at a device's seq is rejected
/// (and the reason a quarantined fork is held back at enrolment).
pub const REASON_EQUIVOCATION: &str = "equivocation";

/// How long a connection waits for another process's write lock (a
/// `device add` while the server runs) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A storage failure. Nothing that failed to commit is ever acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused: disk full, file unreadable, locked for too long.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer truce-server.
    #[error(
        "the database has schema version {found} but this truce-server reads up to {supported}: upgrade truce-server"
    )]
    TooNew {
        /// `user_version` in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
}

/// Why a device could not be enrolled or revoked.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The key was revoked; revocation is permanent.
    #[error("this device was revoked at {}: a revoked key stays revoked; the laptop needs a new key", truce_shared::time::format_ms(*revoked_at))]
    Revoked {
        /// When it was revoked, unix ms.
        revoked_at: i64,
    },
    /// `revoke` of a key that was never enrolled.
    #[error("this device is not enrolled: see `truce-server device list`")]
    NotEnrolled,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for DeviceError {
    fn from(e: rusqlite::Error) -> Self {
        DeviceError::Store(e.into())
    }
}

/// A stored report's status: the `status` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReportStatus {
    /// Signature valid, key enrolled and not revoked.
    Verified,
    /// Signature valid, but the key is unknown or revoked (see `reason`).
    Quarantined,
    /// Kept as evidence only (an equivocating second version).
    Rejected,
}

impl ReportStatus {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Verified => "verified",
            ReportStatus::Quarantined => "quarantined",
            ReportStatus::Rejected => "rejected",
        }
    }

    /// Reads the column value.
    pub fn parse(s: &str) -> Option<ReportStatus> {
        match s {
            "verified" => Some(ReportStatus::Verified),
            "quarantined" => Some(ReportStatus::Quarantined),
            "rejected" => Some(ReportStatus::Rejected),
            _ => None,
        }
    }
}

/// A category as it is stored and shown: kebab-case (`small-arms-fire`).
pub fn category_name(c: Category) -> String {
    // The serde names are the contract's (DESIGN §2.1: kebab-case).
    match serde_json::to_value(c) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{c:?}"),
    }
}

/// One enrolled (or revoked) device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The Ed25519 public key.
    pub key: Bytes32,
    /// A name for people ("laptop-07").
    pub name: Option<String>,
    /// When it was enrolled, unix ms.
    pub added_at: i64,
    /// When it was revoked, unix ms.
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
}

/// What `device add` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrolled {
    /// False if the key was already enrolled (the name may have changed).
    pub new: bool,
    /// Quarantined ("unknown device") reports now verified.
    pub promoted: u64,
    /// Quarantined reports left quarantined because their seq is forked.
    pub held_back: u64,
}

/// What `device revoke` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// When the revocation took effect, unix ms (the first revocation's).
    pub revoked_at: i64,
    /// False if the key was already revoked.
    pub new: bool,
}

/// One row of `reports`, as export and `verify` tools read it: the signed
/// bytes and what the server knows about them. (A million-row export reads
/// a row in a few microseconds; columns the body already holds are not
/// read twice.)
#[derive(Clone, PartialEq)]
pub struct ReportRow {
    /// Arrival order: increases with every stored report; a cursor for
    /// resuming a stream.
    pub n: i64,
    /// The report id.
    pub id: Bytes32,
    /// The device key.
    pub device: Bytes32,
    /// The device's enrolled name, if any.
    pub device_name: Option<String>,
    /// Position in the device's chain.
    pub seq: u64,
    /// Id of the device's previous report.
    pub prev: Bytes32,
    /// The exact signed bytes: every observation field, the time it was
    /// recorded and what it amends are read from them ([`ReportRow::envelope`]),
    /// never from the columns the server indexes them by.
    pub body: Vec<u8>,
    /// The device's signature over `body`.
    pub signature: Signature64,
    /// Verified, quarantined or rejected.
    pub status: ReportStatus,
    /// Why quarantined or rejected.
    pub reason: Option<String>,
    /// When the server first stored it, unix ms.
    pub received_at: i64,
    /// The incident it belongs to (verified reports that describe an event).
    pub incident: Option<i64>,
    /// Distinct devices in that incident.
    pub corroboration: Option<u64>,
    /// The latest verified report of the same device that amends this one.
    pub amended_by: Option<Bytes32>,
}

impl std::fmt::Debug for ReportRow {
    // Payloads stay out of logs: identity and status only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportRow")
            .field("n", &self.n)
            .field("id", &hex::encode(self.id))
            .field("seq", &self.seq)
            .field("status", &self.status)
            .field("reason", &self.reason)
            .finish_non_exhaustive()
    }
}

impl ReportRow {
    /// The signed report, exactly as it arrived.
    pub fn signed(&self) -> SignedReport {
        SignedReport { body: self.body.clone(), signature: self.signature }
    }

    /// Decodes the stored body (every observation field). The body passed
    /// verification, canonical encoding included, before it was stored, so
    /// this fails only if the file was tampered with. It decodes without
    /// encoding again to compare: that check was made at the door, and a
    /// million-row export spent a tenth of its formatting time repeating it.
    /// (Anyone who doubts a row checks its signature: `verify` on a bundle.)
    pub fn envelope(&self) -> Result<Envelope, truce_shared::encoding::EncodingError> {
        truce_shared::encoding::decode(&self.body)
    }
}

/// One row of `rejections`: bytes that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectionRow {
    /// Id of the body as received.
    pub id: Bytes32,
    /// The device key the body claims, if it could be read.
    pub device: Option<Bytes32>,
    /// Why it failed.
    pub reason: String,
    /// The body (only the first [`limits::MAX_REPORT_BODY`] bytes of an
    /// oversized one).
    pub body: Vec<u8>,
    /// The body's full length as received.
    pub body_len: u64,
    /// First arrival, unix ms.
    pub first_received_at: i64,
    /// Latest arrival, unix ms.
    pub last_received_at: i64,
    /// How many times these exact bytes arrived.
    pub times: u64,
}

/// Which stored reports to stream, and in what order.
#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    /// Only this status; `None` for every status.
    pub status: Option<ReportStatus>,
    /// Only this device.
    pub device: Option<Bytes32>,
    /// Only this category.
    pub category: Option<Category>,
    /// Only reports observed at or after this time (unix ms).
    pub observed_since: Option<i64>,
    /// Only reports observed at or before this time (unix ms).
    pub observed_until: Option<i64>,
    /// Only reports stored after arrival number `n` (resume a stream).
    pub after: Option<i64>,
    /// Only reports whose monitor position lies in this box (west, south,
    /// east, north; west > east crosses the antimeridian).
    pub bbox: Option<[f64; 4]>,
    /// Only reports in an incident corroborated by at least this many devices.
    pub min_corroboration: Option<u64>,
    /// Leave out versions superseded by a verified amendment (the default
    /// view of an export; `--history` shows every version).
    pub latest_only: bool,
    /// The order of the stream.
    pub order: ReportOrder,
}

/// The order [`Store::for_each_report`] streams in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReportOrder {
    /// As stored (arrival number `n`).
    #[default]
    Arrival,
    /// By observation time, then arrival.
    Observed,
}

/// The latest verified amendment of `r` by the same device.
const AMENDED_BY: &str = "(SELECT x.id FROM reports x WHERE x.amends = r.id AND +x.device = r.device
      AND x.status = 'verified' ORDER BY x.seq DESC LIMIT 1)";

const REPORT_COLUMNS: &str = "r.n, r.id, r.device, d.name, r.seq, r.prev, r.body, r.signature, r.status, r.reason,
     r.received_at, r.incident, i.devices";

const REPORT_FROM: &str =
    "FROM reports r LEFT JOIN devices d ON d.key = r.device LEFT JOIN incidents i ON i.id = r.incident";

/// Reads a 32-byte blob column; anything else means the file was damaged.
/// Borrows the blob rather than allocating: exports read three a row.
fn blob32(row: &Row<'_>, idx: usize) -> rusqlite::Result<Bytes32> {
    blob_array(row, idx)
}

fn opt_blob32(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<Bytes32>> {
    match row.get_ref(idx)? {
        rusqlite::types::ValueRef::Null => Ok(None),
        _ => blob32(row, idx).map(Some),
    }
}

fn blob_array<const N: usize>(row: &Row<'_>, idx: usize) -> rusqlite::Result<[u8; N]> {
    let v = row.get_ref(idx)?;
    let blob = v.as_blob().map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, v.data_type(), e.into()))?;
    blob.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Blob,
            format!("{} bytes, not {N}", blob.len()).into(),
        )
    })
}

fn report_row(row: &Row<'_>) -> rusqlite::Result<ReportRow> {
    let signature = Signature64(blob_array(row, 7)?);
    let status = row.get_ref(8)?.as_str()?;
    let status = ReportStatus::parse(status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Text, format!("status {status:?}").into())
    })?;
    Ok(ReportRow {
        n: row.get(0)?,
        id: blob32(row, 1)?,
        device: blob32(row, 2)?,
        device_name: row.get(3)?,
        seq: row.get::<_, i64>(4)? as u64,
        prev: blob32(row, 5)?,
        body: row.get(6)?,
        signature,
        status,
        reason: row.get(9)?,
        received_at: row.get(10)?,
        incident: row.get(11)?,
        corroboration: row.get::<_, Option<i64>>(12)?.map(|c| c as u64),
        amended_by: opt_blob32(row, 13)?,
    })
}

/// The page size of a new store (SQLite's default is 4 KiB; an existing
/// file keeps its own). Every stored report lands at a random place in the
/// index of report ids, so each commit rewrites about one index page per
/// report into the WAL, whatever the page size; fewer, larger pages make
/// the b-trees shallower and those rewrites cheaper per report. Measured
/// with the benchmark: the writer's CPU per report 36.6 -> 31.4 us, the
/// bare INSERT floor 20.4 -> 18.6 us. (Inserting the same rows with the
/// sqlite3 shell, 8 KiB pages saved about half as much and 32 KiB no more
/// than 16 KiB.)
pub const PAGE_SIZE: i64 = 16 * 1024;

/// The SQLite store. One per thread: the writer owns one, and every
/// command or reader opens its own.
pub struct Store {
    conn: Connection,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.conn.path()).finish()
    }
}

impl Store {
    /// Opens the database at `path`, creating it and bringing its schema up
    /// to date if needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::setup(Connection::open(path)?)
    }

    /// A private database in memory, for unit tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Store, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Only takes effect on a new, empty file, before WAL is switched on.
        conn.pragma_update(None, "page_size", PAGE_SIZE)?;
        // WAL lets readers (export, stats) run beside the writer; FULL makes
        // every COMMIT durable before it returns, which is what an Ack
        // promises. Both are set on every connection, as DESIGN §5 says.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        // A migration (or an interrupted regrouping) asks for the incidents
        // to be grouped again; whoever opens the file first does it.
        let regroup: Option<i64> =
            conn.query_row("SELECT value FROM settings WHERE name = 'regroup'", [], |r| r.get(0)).optional()?;
        if regroup == Some(1) {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let window = Window::load(&tx)?;
            incidents::rebuild(&tx, window)?;
            tx.commit()?;
        }
        Ok(Store { conn })
    }

    /// The connection, for read-only queries beside this module (stats,
    /// export). Writes go through the methods here.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Starts a write transaction (BEGIN IMMEDIATE: the write lock is taken
    /// now, so the checks [`Store::apply`] makes cannot be overtaken by
    /// another writer before the inserts).
    pub fn begin(&mut self) -> Result<Transaction<'_>, StoreError> {
        Ok(self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// Applies DESIGN §5's outcome rules to one batch inside `tx` and
    /// returns each report's status, in order. The writer calls it for every
    /// batch queued from every connection, then commits once (group
    /// commit); nothing is durable, or may be acknowledged, before that
    /// commit returns.
    ///
    /// `now` is the `received_at` of every report stored.
    pub fn apply(tx: &Transaction<'_>, batch: &[Checked], now: i64) -> Result<Vec<(Bytes32, Status)>, StoreError> {
        let window = Window::load(tx)?;
        // A batch is usually one device's: its enrolment is read once.
        let mut devices = HashMap::new();
        batch.iter().map(|item| Ok((item.id(), apply_one(tx, item, now, window, &mut devices)?))).collect()
    }

    /// The incident window in force (stored in the database).
    pub fn incident_window(&self) -> Result<Window, StoreError> {
        Window::load(&self.conn)
    }

    /// Changes the incident window and groups every report again under it.
    /// Returns the number of incidents.
    pub fn set_incident_window(&mut self, window: Window) -> Result<u64, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        window.save(&tx)?;
        let n = incidents::rebuild(&tx, window)?;
        tx.commit()?;
        Ok(n)
    }

    /// The incidents corroborated by at least `min_devices` devices, most
    /// corroborated first, then newest.
    pub fn incidents(&self, min_devices: u64) -> Result<Vec<Incident>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT id, category, first_at, last_at, reports, devices FROM incidents
             WHERE devices >= ?1 ORDER BY devices DESC, last_at DESC, id",
        )?;
        let rows = q.query_map([min_devices.min(i64::MAX as u64) as i64], |r| {
            Ok(Incident {
                id: r.get(0)?,
                category: r.get(1)?,
                first_at: r.get(2)?,
                last_at: r.get(3)?,
                reports: r.get::<_, i64>(4)? as u64,
                devices: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Enrols a device (or renames it) and promotes its reports quarantined
    /// as "unknown device" to verified, except those at a forked seq, which
    /// stay quarantined with the reason "equivocation".
    pub fn add_device(&mut self, key: &Bytes32, name: Option<&str>, now: i64) -> Result<Enrolled, DeviceError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<Option<i64>> =
            tx.query_row("SELECT revoked_at FROM devices WHERE key = ?1", [&key[..]], |r| r.get(0)).optional()?;
        let new = match existing {
            Some(Some(revoked_at)) => return Err(DeviceError::Revoked { revoked_at }),
            Some(None) => {
                tx.execute("UPDATE devices SET name = COALESCE(?2, name) WHERE key = ?1", params![&key[..], name])?;
                false
            }
            None => {
                tx.execute(
                    "INSERT INTO devices (key, name, added_at) VALUES (?1, ?2, ?3)",
                    params![&key[..], name, now],
                )?;
                true
            }
        };
        let held_back = tx.execute(
            "UPDATE reports SET reason = ?2
             WHERE device = ?1 AND status = 'quarantined' AND reason = ?3
               AND seq IN (SELECT seq FROM forks WHERE device = ?1)",
            params![&key[..], REASON_EQUIVOCATION, REASON_UNKNOWN_DEVICE],
        )?;
        let promoted: Vec<i64> = tx
            .prepare(
                "UPDATE reports SET status = 'verified', reason = NULL
                 WHERE device = ?1 AND status = 'quarantined' AND reason = ?2 RETURNING n",
            )?
            .query_map(params![&key[..], REASON_UNKNOWN_DEVICE], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        // The promoted reports join their incidents, oldest observation
        // first (the order does not change the groups, only their ids).
        let window = Window::load(&tx)?;
        let ordered: Vec<i64> = {
            let mut q = tx.prepare_cached("SELECT observed_at FROM reports WHERE n = ?1")?;
            let mut with_time = promoted
                .iter()
                .map(|&n| Ok((q.query_row([n], |r| r.get::<_, i64>(0))?, n)))
                .collect::<Result<Vec<_>, rusqlite::Error>>()?;
            with_time.sort_unstable();
            with_time.into_iter().map(|(_, n)| n).collect()
        };
        for n in ordered {
            incidents::on_verified(&tx, n, window)?;
        }
        let promoted = promoted.len();
        tx.commit()?;
        Ok(Enrolled { new, promoted: promoted as u64, held_back: held_back as u64 })
    }

    /// Revokes an enrolled device: reports of its key received from now on
    /// are quarantined ("revoked"). Reports already verified stay verified:
    /// they arrived while the key was trusted.
    pub fn revoke_device(&mut self, key: &Bytes32, reason: Option<&str>, now: i64) -> Result<Revoked, DeviceError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<Option<i64>> =
            tx.query_row("SELECT revoked_at FROM devices WHERE key = ?1", [&key[..]], |r| r.get(0)).optional()?;
        let revoked = match existing {
            None => return Err(DeviceError::NotEnrolled),
            Some(Some(revoked_at)) => {
                if reason.is_some() {
                    tx.execute("UPDATE devices SET revoke_reason = ?2 WHERE key = ?1", params![&key[..], reason])?;
                }
                Revoked { revoked_at, new: false }
            }
            Some(None) => {
                tx.execute(
                    "UPDATE devices SET revoked_at = ?2, revoke_reason = ?3 WHERE key = ?1",
                    params![&key[..], now, reason],
                )?;
                Revoked { revoked_at: now, new: true }
            }
        };
        tx.commit()?;
        Ok(revoked)
    }

    /// Every device, in enrolment order.
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut q = self
            .conn
            .prepare("SELECT key, name, added_at, revoked_at, revoke_reason FROM devices ORDER BY added_at, key")?;
        let rows = q.query_map([], |r| {
            Ok(Device {
                key: blob32(r, 0)?,
                name: r.get(1)?,
                added_at: r.get(2)?,
                revoked_at: r.get(3)?,
                revoke_reason: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One stored report by id.
    pub fn report(&self, id: &Bytes32) -> Result<Option<ReportRow>, StoreError> {
        let sql = format!("SELECT {REPORT_COLUMNS}, {AMENDED_BY} {REPORT_FROM} WHERE r.id = ?1");
        Ok(self.conn.query_row(&sql, [&id[..]], report_row).optional()?)
    }

    /// Streams the stored reports that match `query` to `f`, one row at a
    /// time, in bounded memory, and returns how many it passed. Stops at the
    /// first error `f` returns.
    pub fn for_each_report<E: From<StoreError>>(
        &self,
        query: &ReportQuery,
        mut f: impl FnMut(ReportRow) -> Result<(), E>,
    ) -> Result<u64, E> {
        // With latest_only every row streamed has no amendment, so the
        // column is NULL and the subquery runs once, in the filter; SQLite
        // would otherwise run it twice a row (column and filter).
        let mut sql = if query.latest_only {
            format!("SELECT {REPORT_COLUMNS}, NULL AS amended_by {REPORT_FROM} WHERE {AMENDED_BY} IS NULL")
        } else {
            format!("SELECT {REPORT_COLUMNS}, {AMENDED_BY} AS amended_by {REPORT_FROM} WHERE 1")
        };
        let mut args: Vec<Value> = Vec::new();
        // Each condition takes its value as the next numbered parameter.
        fn filter(sql: &mut String, args: &mut Vec<Value>, cond: &str, v: Value) {
            args.push(v);
            sql.push_str(&format!(" AND {cond} ?{}", args.len()));
        }
        if let Some(s) = query.status {
            filter(&mut sql, &mut args, "r.status =", Value::Text(s.as_str().into()));
        }
        if let Some(d) = query.device {
            filter(&mut sql, &mut args, "r.device =", Value::Blob(d.to_vec()));
        }
        if let Some(c) = query.category {
            filter(&mut sql, &mut args, "r.category =", Value::Text(category_name(c)));
        }
        if let Some(t) = query.observed_since {
            filter(&mut sql, &mut args, "r.observed_at >=", Value::Integer(t));
        }
        if let Some(t) = query.observed_until {
            filter(&mut sql, &mut args, "r.observed_at <=", Value::Integer(t));
        }
        if let Some(n) = query.after {
            filter(&mut sql, &mut args, "r.n >", Value::Integer(n));
        }
        if let Some(c) = query.min_corroboration {
            filter(&mut sql, &mut args, "i.devices >=", Value::Integer(c.min(i64::MAX as u64) as i64));
        }
        if let Some([w, s, e, n]) = query.bbox {
            filter(&mut sql, &mut args, "r.lat >=", Value::Real(s));
            filter(&mut sql, &mut args, "r.lat <=", Value::Real(n));
            if w <= e {
                filter(&mut sql, &mut args, "r.lon >=", Value::Real(w));
                filter(&mut sql, &mut args, "r.lon <=", Value::Real(e));
            } else {
                args.push(Value::Real(w));
                args.push(Value::Real(e));
                sql.push_str(&format!(" AND (r.lon >= ?{} OR r.lon <= ?{})", args.len() - 1, args.len()));
            }
        }
        sql.push_str(match query.order {
            ReportOrder::Arrival => " ORDER BY r.n",
            ReportOrder::Observed => " ORDER BY r.observed_at, r.n",
        });
        let mut q = self.conn.prepare(&sql).map_err(StoreError::from)?;
        let mut rows = q.query(params_from_iter(args)).map_err(StoreError::from)?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(StoreError::from)? {
            f(report_row(row).map_err(StoreError::from)?)?;
            n += 1;
        }
        Ok(n)
    }

    /// Streams every rejection (bytes that failed verification), oldest
    /// first.
    pub fn for_each_rejection<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(RejectionRow) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut q = self
            .conn
            .prepare(
                "SELECT id, device, reason, body, body_len, first_received_at, last_received_at, times
                 FROM rejections ORDER BY n",
            )
            .map_err(StoreError::from)?;
        let mut rows = q.query([]).map_err(StoreError::from)?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(StoreError::from)? {
            let row = (|| {
                Ok::<_, rusqlite::Error>(RejectionRow {
                    id: blob32(r, 0)?,
                    device: opt_blob32(r, 1)?,
                    reason: r.get(2)?,
                    body: r.get(3)?,
                    body_len: r.get::<_, i64>(4)? as u64,
                    first_received_at: r.get(5)?,
                    last_received_at: r.get(6)?,
                    times: r.get::<_, i64>(7)? as u64,
                })
            })()
            .map_err(StoreError::from)?;
            f(row)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Enrolment as the batch found it: `None` unknown, `Some(None)` enrolled,
/// `Some(Some(t))` revoked at `t`. Nothing changes it within a transaction
/// (enrolment and revocation are commands, not the writer).
type Enrolment = Option<Option<i64>>;

/// The outcome rules of DESIGN §5 for one report, inside the writer's
/// transaction. The order of the checks is the rule:
/// 1. verification failed → Rejected(reason), the bytes kept in `rejections`;
/// 2. the same id is stored → Duplicate, nothing written (a report kept as
///    rejected evidence answers Rejected again, so a resend gets the answer
///    the first send got);
/// 3. the device has a different report at this seq → Rejected
///    ("equivocation"), stored as evidence, the fork recorded;
/// 4. the key is enrolled → Accepted (verified); unknown → Quarantined
///    ("unknown device"); revoked → Quarantined ("revoked").
fn apply_one(
    tx: &Transaction<'_>,
    item: &Checked,
    now: i64,
    window: Window,
    devices: &mut HashMap<Bytes32, Enrolment>,
) -> Result<Status, StoreError> {
    let v = match item {
        Checked::Invalid { id, report, error } => {
            let reason = error.reason();
            tracing::warn!(id = %hex::encode(&id[..8]), %reason, "report rejected");
            let kept = &report.body[..report.body.len().min(limits::MAX_REPORT_BODY)];
            let device = truce_shared::signing::claimed_device(&report.body).ok();
            // The same bytes sent again bump a counter instead of adding a
            // row: a replayed forgery costs one row, however often it comes.
            tx.prepare_cached(
                "INSERT INTO rejections (id, signature, device, reason, body, body_len, first_received_at, last_received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (id, signature) DO UPDATE SET times = times + 1, last_received_at = excluded.last_received_at",
            )?
            .execute(params![
                &id[..],
                &report.signature.0[..],
                device.as_ref().map(|d| &d[..]),
                reason,
                kept,
                report.body.len() as i64,
                now
            ])?;
            return Ok(Status::Rejected(reason));
        }
        Checked::Valid(v) => v,
    };
    let id = v.id;
    let env = &v.envelope;
    let seq = env.seq as i64;
    // One look at the reports stored at this device and seq settles rules
    // 2 and 3: an id is the hash of a body that names its device and seq,
    // so this very report, if stored, is among them; any other one not
    // rejected is the report this one forks from.
    let mut kept: Option<Vec<u8>> = None;
    {
        let mut q =
            tx.prepare_cached("SELECT id, status, reason FROM reports WHERE device = ?1 AND seq = ?2 ORDER BY n")?;
        let mut rows = q.query(params![&env.device[..], seq])?;
        while let Some(r) = rows.next()? {
            let stored_id = r.get_ref(0)?.as_blob().map_err(rusqlite::Error::from)?;
            let status = ReportStatus::parse(r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?);
            if stored_id == id {
                return Ok(if status == Some(ReportStatus::Rejected) {
                    Status::Rejected(r.get::<_, Option<String>>(2)?.unwrap_or_else(|| REASON_EQUIVOCATION.into()))
                } else {
                    Status::Duplicate
                });
            }
            if kept.is_none() && status != Some(ReportStatus::Rejected) {
                kept = Some(stored_id.to_vec());
            }
        }
    }
    let (status, reason) = if let Some(kept) = kept {
        tracing::warn!(
            device = %truce_shared::signing::fingerprint(&env.device),
            seq = env.seq,
            "equivocation: a second report at one seq; both kept as evidence"
        );
        tx.prepare_cached(
            "INSERT OR IGNORE INTO forks (device, seq, kept, rejected, detected_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![&env.device[..], seq, kept, &id[..], now])?;
        (ReportStatus::Rejected, Some(REASON_EQUIVOCATION))
    } else {
        let revoked_at = match devices.get(&env.device) {
            Some(&known) => known,
            None => {
                let found: Enrolment = tx
                    .prepare_cached("SELECT revoked_at FROM devices WHERE key = ?1")?
                    .query_row([&env.device[..]], |r| r.get(0))
                    .optional()?;
                devices.insert(env.device, found);
                found
            }
        };
        match revoked_at {
            None => (ReportStatus::Quarantined, Some(REASON_UNKNOWN_DEVICE)),
            Some(Some(_)) => (ReportStatus::Quarantined, Some(REASON_REVOKED)),
            Some(None) => (ReportStatus::Verified, None),
        }
    };
    let obs = &env.observation;
    let (ev_lat, ev_lon) = incidents::event_position(obs);
    let category = category_name(obs.category);
    // A verified report finds its incident before it is stored, so the one
    // INSERT writes it whole: no read back, no second write of the row.
    let member = incidents::Member {
        n: 0,
        device: env.device.to_vec(),
        category,
        observed_at: obs.observed_at,
        ev: (ev_lat, ev_lon),
    };
    let incident =
        if status == ReportStatus::Verified { incidents::place_new(tx, &id, &member, window)? } else { None };
    tx.prepare_cached(
        "INSERT INTO reports (id, device, seq, prev, recorded_at, observed_at, observed_until, category, lat, lon,
                              amends, body, signature, status, reason, received_at, ev_lat, ev_lon, incident)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?
    .execute(params![
        &id[..],
        &env.device[..],
        seq,
        &env.prev[..],
        env.recorded_at,
        obs.observed_at,
        obs.observed_until,
        member.category,
        obs.position.lat,
        obs.position.lon,
        env.amends.as_ref().map(|a| &a[..]),
        v.signed.body,
        &v.signed.signature.0[..],
        status.as_str(),
        reason,
        now,
        ev_lat,
        ev_lon,
        incident,
    ])?;
    if status == ReportStatus::Verified {
        incidents::stored_verified(tx, incident, &member, env.amends.as_ref().map(|a| &a[..]), window)?;
    }
    Ok(match status {
        ReportStatus::Verified => Status::Accepted,
        ReportStatus::Quarantined => Status::Quarantined(reason.unwrap_or_default().into()),
        ReportStatus::Rejected => Status::Rejected(reason.unwrap_or_default().into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use truce_shared::{Basis, Observation, Position, ENVELOPE_VERSION};

    fn obs(t: i64) -> Observation {
        Observation {
            observed_at: t,
            observed_until: None,
            position: Position { lat: 48.0, lon: 37.8, accuracy_m: None },
            bearing_deg: None,
            distance_m: None,
            category: Category::SmallArmsFire,
            effect: None,
            weapon: None,
            count: None,
            basis: Basis::Heard,
            description: "bursts to the north".into(),
            attachments: vec![],
        }
    }

    fn report(key: &SigningKey, seq: u64, prev: Bytes32, t: i64) -> SignedReport {
        let env = Envelope {
            version: ENVELOPE_VERSION,
            device: key.verifying_key().to_bytes(),
            seq,
            prev,
            recorded_at: t,
            amends: None,
            observation: obs(t),
        };
        truce_shared::sign(key, &env).unwrap()
    }

    fn apply(store: &mut Store, reports: &[SignedReport]) -> Vec<Status> {
        let checked: Vec<Checked> = reports.iter().cloned().map(Checked::check).collect();
        let tx = store.begin().unwrap();
        let out = Store::apply(&tx, &checked, 1_000).unwrap();
        tx.commit().unwrap();
        out.into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn the_outcomes_of_design_section_5() {
        let mut s = Store::open_in_memory().unwrap();
        let key = SigningKey::from_bytes(&[7; 32]);
        let dev = key.verifying_key().to_bytes();
        let a = report(&key, 1, [0; 32], 10);
        let b = report(&key, 2, a.id(), 20);
        let fork = report(&key, 2, a.id(), 21);
        let mut bad = report(&key, 3, b.id(), 30);
        bad.signature.0[0] ^= 1;

        assert_eq!(
            apply(&mut s, &[a.clone(), a.clone()]),
            vec![Status::Quarantined("unknown device".into()), Status::Duplicate]
        );
        let e = s.add_device(&dev, Some("laptop-1"), 50).unwrap();
        assert_eq!(e, Enrolled { new: true, promoted: 1, held_back: 0 });
        assert_eq!(s.report(&a.id()).unwrap().unwrap().status, ReportStatus::Verified);
        assert_eq!(
            apply(&mut s, &[b.clone(), fork.clone(), bad.clone(), bad.clone(), fork.clone()]),
            vec![
                Status::Accepted,
                Status::Rejected("equivocation".into()),
                Status::Rejected("bad signature".into()),
                Status::Rejected("bad signature".into()),
                Status::Rejected("equivocation".into()),
            ]
        );
        let forks: i64 = s.conn().query_row("SELECT COUNT(*) FROM forks", [], |r| r.get(0)).unwrap();
        assert_eq!(forks, 1);
        let (rows, times): (i64, i64) = s
            .conn()
            .query_row("SELECT COUNT(*), SUM(times) FROM rejections", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        assert_eq!((rows, times), (1, 2), "the same forged bytes twice are one row, counted twice");

        let r = s.revoke_device(&dev, Some("laptop lost"), 60).unwrap();
        assert_eq!(r, Revoked { revoked_at: 60, new: true });
        let c = report(&key, 3, b.id(), 70);
        assert_eq!(apply(&mut s, &[c]), vec![Status::Quarantined("revoked".into())]);
        assert!(matches!(s.add_device(&dev, None, 80), Err(DeviceError::Revoked { revoked_at: 60 })));
    }

    #[test]
    fn enrolment_holds_back_quarantined_forks() {
        let mut s = Store::open_in_memory().unwrap();
        let key = SigningKey::from_bytes(&[8; 32]);
        let a = report(&key, 1, [0; 32], 10);
        let a2 = report(&key, 1, [0; 32], 11);
        let b = report(&key, 2, a.id(), 20);
        apply(&mut s, &[a.clone(), a2, b.clone()]);
        let e = s.add_device(&key.verifying_key().to_bytes(), None, 50).unwrap();
        assert_eq!((e.promoted, e.held_back), (1, 1));
        let row = s.report(&a.id()).unwrap().unwrap();
        assert_eq!((row.status, row.reason.as_deref()), (ReportStatus::Quarantined, Some("equivocation")));
        assert_eq!(s.report(&b.id()).unwrap().unwrap().status, ReportStatus::Verified);
    }

    #[test]
    fn rows_stream_with_their_columns() {
        let mut s = Store::open_in_memory().unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        let a = report(&key, 1, [0; 32], 10);
        let b = report(&key, 2, a.id(), 5);
        apply(&mut s, &[a.clone(), b.clone()]);
        let mut seen = Vec::new();
        let q = ReportQuery { order: ReportOrder::Observed, ..Default::default() };
        let n = s
            .for_each_report(&q, |r| {
                seen.push(r);
                Ok::<_, StoreError>(())
            })
            .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen[0].id, b.id());
        assert_eq!(seen[1].signed(), a);
        let env = seen[1].envelope().unwrap();
        assert_eq!((env.seq, env.observation.observed_at), (1, 10));
        let q = ReportQuery { after: Some(seen[1].n), ..Default::default() };
        assert_eq!(s.for_each_report(&q, |_| Ok::<_, StoreError>(())).unwrap(), 1);
    }

    #[test]
    fn seqs_above_i64_max_stay_distinct() {
        let mut s = Store::open_in_memory().unwrap();
        let key = SigningKey::from_bytes(&[10; 32]);
        let big = report(&key, u64::MAX, [1; 32], 10);
        let big2 = report(&key, u64::MAX - 1, [1; 32], 10);
        assert_eq!(apply(&mut s, &[big.clone(), big2]).iter().filter(|s| matches!(s, Status::Rejected(_))).count(), 0);
        assert_eq!(s.report(&big.id()).unwrap().unwrap().seq, u64::MAX);
    }

    #[test]
    fn a_new_store_gets_large_pages_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let page_size = |s: &Store| s.conn().pragma_query_value(None, "page_size", |r| r.get::<_, i64>(0)).unwrap();
        let new = Store::open(&dir.path().join("new.sqlite")).unwrap();
        assert_eq!(page_size(&new), PAGE_SIZE);

        // A store made before the page size was set: 4 KiB pages, in WAL.
        let old_path = dir.path().join("old.sqlite");
        let old = Connection::open(&old_path).unwrap();
        old.pragma_update(None, "page_size", 4096).unwrap();
        old.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(())).unwrap();
        old.execute_batch("CREATE TABLE early (x INTEGER)").unwrap();
        drop(old);
        let mut old = Store::open(&old_path).unwrap();
        assert_eq!(page_size(&old), 4096);
        let key = SigningKey::from_bytes(&[11; 32]);
        old.add_device(&key.verifying_key().to_bytes(), Some("laptop"), 1).unwrap();
        let a = report(&key, 1, [0; 32], 10);
        assert_eq!(apply(&mut old, &[a.clone(), a]), vec![Status::Accepted, Status::Duplicate]);
    }
}
