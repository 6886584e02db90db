//! Stored reports and rejections as readers see them, and the queries that
//! stream them (export, stats, verify).

use rusqlite::types::Value;
use rusqlite::{params_from_iter, OptionalExtension, Row};
use truce_shared::{Bytes32, Category, Envelope, Signature64, SignedReport};

use super::{Store, StoreError};

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
}

/// The client certificate a report came through: how a stored report is
/// tied to the laptop's TLS credentials, beside its device key.
#[derive(Debug, Clone, PartialEq, Eq)]
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
     r.received_at, r.incident, i.devices, r.cert_serial, r.cert_subject";

const REPORT_FROM: &str =
    "FROM reports r LEFT JOIN devices d ON d.key = r.device LEFT JOIN incidents i ON i.id = r.incident";

/// Reads a 32-byte blob column; anything else means the file was damaged.
/// Borrows the blob rather than allocating: exports read three a row.
pub(super) fn blob32(row: &Row<'_>, idx: usize) -> rusqlite::Result<Bytes32> {
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
        cert: match (row.get::<_, Option<String>>(13)?, row.get::<_, Option<String>>(14)?) {
            (Some(serial), Some(subject)) => Some(CertId { serial, subject }),
            _ => None,
        },
        amended_by: opt_blob32(row, 15)?,
    })
}

impl Store {
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
            filter(&mut sql, &mut args, "r.category =", Value::Text(c.name().to_string()));
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
