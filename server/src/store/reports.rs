//! Stored reports and rejections as readers see them, and the queries that
//! stream them (export, stats, verify).

use truce_shared::{Bytes32, Category, Envelope, Signature64, SignedReport};

use super::sql::{args, fixed, Arg, Backend, Row};
use super::{Store, StoreError, Tx};

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
    /// The client certificate it came through; `None` when it was imported
    /// from a bundle (or stored before certificates were recorded).
    pub cert: Option<CertId>,
    /// Its device forked its chain at or before this seq: both branches and
    /// everything after the fork are disputed.
    pub disputed: bool,
    /// The index of the log entry that records it (`None` in a store
    /// whose log is not set up).
    pub entry: Option<u64>,
}

/// The client certificate a report came through: how a stored report is
/// tied to the laptop's TLS credentials, beside its device key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertId {
    /// The certificate's serial number, lower-case hex.
    pub serial: String,
    /// Its subject, as `CN=laptop-07, O=…`.
    pub subject: String,
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
    /// Leave out disputed reports (a forked chain, or a key compromised
    /// before they were recorded): the default view of a verified export;
    /// `--include-disputed` shows them, marked.
    pub exclude_disputed: bool,
    /// The order of the stream.
    pub order: ReportOrder,
    /// Where evidence files are: exports then say per attachment whether
    /// the server holds it.
    pub evidence: Option<std::sync::Arc<crate::evidence::Evidence>>,
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

/// The latest verified amendment of `r` by the same device. (`+x.device`
/// keeps SQLite's planner on the `amends` index; PostgreSQL needs no such
/// hint, and has no such spelling.)
fn amended_by(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "(SELECT x.id FROM reports x WHERE x.amends = r.id AND +x.device = r.device
              AND x.status = 'verified' ORDER BY x.seq DESC LIMIT 1)"
        }
        Backend::Postgres => {
            "(SELECT x.id FROM reports x WHERE x.amends = r.id AND x.device = r.device
              AND x.status = 'verified' ORDER BY x.seq DESC LIMIT 1)"
        }
    }
}

/// Whether a report is disputed: its device forked its chain at or before
/// its seq (the forks table is small and keyed by device and seq), or it
/// was recorded after the time its key was revoked as compromised since
/// (`device revoke --compromised-since`).
/// (A macro, so the columns below can be `concat!`ed from it.)
macro_rules! disputed {
    () => {
        "(EXISTS (SELECT 1 FROM forks f WHERE f.device = r.device AND f.seq <= r.seq)
      OR COALESCE(r.recorded_at > d.compromised_since, FALSE))"
    };
}
const DISPUTED: &str = disputed!();

const REPORT_COLUMNS: &str = concat!(
    "r.n, r.id, r.device, d.name, r.seq, r.prev, r.body, r.signature, r.status, r.reason,
     r.received_at, r.incident, i.devices, r.cert_serial, r.cert_subject,
     CASE WHEN ",
    disputed!(),
    " THEN 1 ELSE 0 END, r.entry"
);

const REPORT_FROM: &str =
    "FROM reports r LEFT JOIN devices d ON d.key = r.device LEFT JOIN incidents i ON i.id = r.incident";

fn report_row(row: &dyn Row) -> Result<ReportRow, StoreError> {
    let status = row.str(8)?;
    let status = ReportStatus::parse(status).ok_or(StoreError::Column { index: 8, problem: "an unknown status" })?;
    Ok(ReportRow {
        n: row.i64(0)?,
        id: row.b32(1)?,
        device: row.b32(2)?,
        device_name: row.opt_string(3)?,
        seq: row.i64(4)? as u64,
        prev: row.b32(5)?,
        body: row.bytes(6)?.to_vec(),
        signature: Signature64(fixed(row.bytes(7)?, 7)?),
        status,
        reason: row.opt_string(9)?,
        received_at: row.i64(10)?,
        incident: row.opt_i64(11)?,
        corroboration: row.opt_i64(12)?.map(|c| c.max(0) as u64),
        cert: match (row.opt_string(13)?, row.opt_string(14)?) {
            (Some(serial), Some(subject)) => Some(CertId { serial, subject }),
            _ => None,
        },
        disputed: row.i64(15)? != 0,
        entry: row.opt_i64(16)?.map(|e| e.max(0) as u64),
        amended_by: row.opt_b32(17)?,
    })
}

/// Streams the reports that match `query` to `f` inside `tx`, with the
/// transaction (so `f` may read more in the same snapshot).
pub(super) fn stream_reports(
    tx: &Tx<'_>,
    query: &ReportQuery,
    f: &mut dyn FnMut(&Tx<'_>, ReportRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let amended = amended_by(tx.backend());
    // With latest_only every row streamed has no amendment, so the
    // column is NULL and the subquery runs once, in the filter; SQLite
    // would otherwise run it twice a row (column and filter).
    let mut sql = if query.latest_only {
        format!("SELECT {REPORT_COLUMNS}, NULL AS amended_by {REPORT_FROM} WHERE {amended} IS NULL")
    } else {
        format!("SELECT {REPORT_COLUMNS}, {amended} AS amended_by {REPORT_FROM} WHERE 1 = 1")
    };
    let status = query.status.map(|s| s.as_str());
    let category = query.category.map(|c| c.name());
    let mut args: Vec<Arg<'_>> = Vec::new();
    // Each condition takes its value as the next numbered parameter.
    fn filter<'a>(sql: &mut String, args: &mut Vec<Arg<'a>>, cond: &str, v: Arg<'a>) {
        args.push(v);
        sql.push_str(&format!(" AND {cond} ?{}", args.len()));
    }
    if let Some(s) = status {
        filter(&mut sql, &mut args, "r.status =", Arg::Text(s));
    }
    if let Some(d) = &query.device {
        filter(&mut sql, &mut args, "r.device =", Arg::Blob(d));
    }
    if let Some(c) = category {
        filter(&mut sql, &mut args, "r.category =", Arg::Text(c));
    }
    if let Some(t) = query.observed_since {
        filter(&mut sql, &mut args, "r.observed_at >=", Arg::Int(t));
    }
    if let Some(t) = query.observed_until {
        filter(&mut sql, &mut args, "r.observed_at <=", Arg::Int(t));
    }
    if let Some(n) = query.after {
        filter(&mut sql, &mut args, "r.n >", Arg::Int(n));
    }
    if query.exclude_disputed {
        sql.push_str(&format!(" AND NOT {DISPUTED}"));
    }
    if let Some(c) = query.min_corroboration {
        filter(&mut sql, &mut args, "i.devices >=", Arg::Int(c.min(i64::MAX as u64) as i64));
    }
    if let Some([w, s, e, n]) = query.bbox {
        filter(&mut sql, &mut args, "r.lat >=", Arg::Real(s));
        filter(&mut sql, &mut args, "r.lat <=", Arg::Real(n));
        if w <= e {
            filter(&mut sql, &mut args, "r.lon >=", Arg::Real(w));
            filter(&mut sql, &mut args, "r.lon <=", Arg::Real(e));
        } else {
            args.push(Arg::Real(w));
            args.push(Arg::Real(e));
            sql.push_str(&format!(" AND (r.lon >= ?{} OR r.lon <= ?{})", args.len() - 1, args.len()));
        }
    }
    sql.push_str(match query.order {
        ReportOrder::Arrival => " ORDER BY r.n",
        ReportOrder::Observed => " ORDER BY r.observed_at, r.n",
    });
    tx.stream(&sql, &args, &mut |row| f(tx, report_row(row)?))
}

/// An error of the caller's, carried out of a row callback (which can only
/// return a [`StoreError`]).
pub(super) fn carried<E>(slot: &mut Option<E>, e: E) -> StoreError {
    *slot = Some(e);
    StoreError::Stopped
}

/// The outcome of a stream whose callback may have stopped it: the
/// callback's own error first, else the store's, else the rows passed.
pub(super) fn finish<E: From<StoreError>>(r: Result<(), StoreError>, failed: Option<E>, n: u64) -> Result<u64, E> {
    match (r, failed) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(e.into()),
        (Ok(()), None) => Ok(n),
    }
}

impl Store {
    /// One stored report by id.
    pub fn report(&self, id: &Bytes32) -> Result<Option<ReportRow>, StoreError> {
        self.read(|tx| {
            let sql = format!("SELECT {REPORT_COLUMNS}, {} {REPORT_FROM} WHERE r.id = ?1", amended_by(tx.backend()));
            tx.one(&sql, args![id], report_row)
        })
    }

    /// Streams the stored reports that match `query` to `f`, one row at a
    /// time, in bounded memory, and returns how many it passed. Stops at the
    /// first error `f` returns.
    pub fn for_each_report<E: From<StoreError>>(
        &self,
        query: &ReportQuery,
        mut f: impl FnMut(ReportRow) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut failed: Option<E> = None;
        let mut n = 0;
        let r = self.read(|tx| {
            stream_reports(tx, query, &mut |_, row| {
                f(row).map_err(|e| carried(&mut failed, e))?;
                n += 1;
                Ok(())
            })
        });
        finish(r, failed, n)
    }

    /// Streams every rejection (bytes that failed verification), oldest
    /// first.
    pub fn for_each_rejection<E: From<StoreError>>(
        &self,
        mut f: impl FnMut(RejectionRow) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut failed: Option<E> = None;
        let mut n = 0;
        let r = self.read(|tx| {
            tx.stream(
                "SELECT id, device, reason, body, body_len, first_received_at, last_received_at, times
                 FROM rejections ORDER BY n",
                &[],
                &mut |r| {
                    let row = RejectionRow {
                        id: r.b32(0)?,
                        device: r.opt_b32(1)?,
                        reason: r.str(2)?.to_string(),
                        body: r.bytes(3)?.to_vec(),
                        body_len: r.i64(4)?.max(0) as u64,
                        first_received_at: r.i64(5)?,
                        last_received_at: r.i64(6)?,
                        times: r.i64(7)?.max(0) as u64,
                    };
                    f(row).map_err(|e| carried(&mut failed, e))?;
                    n += 1;
                    Ok(())
                },
            )
        });
        finish(r, failed, n)
    }
}
