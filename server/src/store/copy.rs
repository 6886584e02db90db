//! Moving a whole store to another database: `truce-server migrate`, from
//! one server's SQLite file to the PostgreSQL database several servers will
//! share.
//!
//! Rows are copied table by table, keyed by what identifies them (a
//! report's id, a device's key, a rejection's bytes), so running it twice
//! copies nothing twice and a partly finished run can simply be run again.
//! A row the destination already holds is left as it is, with two
//! exceptions that only ever move forward: a device revoked in the source
//! since an earlier run is revoked in the destination too (a revoked laptop
//! must never come back), and a report promoted from quarantine in the
//! source is promoted in the destination.
//! Reports keep their arrival order (they are read in the order of `n` and
//! take new numbers in that order). Incidents are not copied row by row:
//! they are derived from the verified reports, so the destination groups
//! its reports again under its own window once new reports arrived. Rows go
//! in as multi-row INSERTs of [`CHUNK_ROWS`], a round trip per chunk rather
//! than per row, all in one transaction: a failure leaves the destination
//! as it was.

use super::sql::{Arg, Row, Tx};
use super::{incidents, Store, StoreError};

/// Rows per INSERT (21 columns × 400 rows stays far below both backends'
/// limits on parameters per statement).
const CHUNK_ROWS: usize = 400;

/// What a migration copied: rows the destination lacked, and rows it
/// brought forward (a revocation, a promotion).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Moved {
    /// Devices enrolled or revoked.
    pub devices: u64,
    /// Stored reports (verified, quarantined, rejected as evidence).
    pub reports: u64,
    /// Bytes that failed verification.
    pub rejections: u64,
    /// Forks recorded.
    pub forks: u64,
    /// Last sessions of devices.
    pub contacts: u64,
    /// Incidents in the destination after grouping its reports again
    /// (0 when no report was copied, which leaves its incidents as they
    /// were).
    pub incidents: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Real,
    Text,
    Blob,
}

/// One table as copied: its columns, the order read, and how a row the
/// destination already holds is recognised.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    order: &'static str,
    conflict: &'static str,
}

use Kind::{Blob, Int, Real, Text};

const DEVICES: Table = Table {
    name: "devices",
    columns: &[
        ("key", Blob),
        ("name", Text),
        ("added_at", Int),
        ("revoked_at", Int),
        ("revoke_reason", Text),
        ("compromised_since", Int),
    ],
    order: "added_at, key",
    conflict: "ON CONFLICT (key) DO UPDATE SET revoked_at = COALESCE(devices.revoked_at, excluded.revoked_at),
               revoke_reason = COALESCE(devices.revoke_reason, excluded.revoke_reason),
               compromised_since = COALESCE(excluded.compromised_since, devices.compromised_since)
               WHERE (devices.revoked_at IS NULL AND excluded.revoked_at IS NOT NULL)
                  OR (excluded.compromised_since IS NOT NULL
                      AND (devices.compromised_since IS NULL OR devices.compromised_since != excluded.compromised_since))",
};

const REPORTS: Table = Table {
    name: "reports",
    columns: &[
        ("id", Blob),
        ("device", Blob),
        ("seq", Int),
        ("prev", Blob),
        ("recorded_at", Int),
        ("observed_at", Int),
        ("observed_until", Int),
        ("category", Text),
        ("lat", Real),
        ("lon", Real),
        ("amends", Blob),
        ("body", Blob),
        ("signature", Blob),
        ("status", Text),
        ("reason", Text),
        ("received_at", Int),
        ("ev_lat", Real),
        ("ev_lon", Real),
        ("cert_serial", Text),
        ("cert_subject", Text),
        ("entry", Int),
    ],
    order: "n",
    conflict: "ON CONFLICT (id) DO UPDATE SET status = excluded.status, reason = excluded.reason
               WHERE reports.status = 'quarantined' AND excluded.status = 'verified'",
};

const REJECTIONS: Table = Table {
    name: "rejections",
    columns: &[
        ("id", Blob),
        ("signature", Blob),
        ("device", Blob),
        ("reason", Text),
        ("body", Blob),
        ("body_len", Int),
        ("first_received_at", Int),
        ("last_received_at", Int),
        ("times", Int),
        ("entry", Int),
    ],
    order: "n",
    conflict: "ON CONFLICT (id, signature) DO NOTHING",
};

const FORKS: Table = Table {
    name: "forks",
    columns: &[("device", Blob), ("seq", Int), ("kept", Blob), ("rejected", Blob), ("detected_at", Int)],
    order: "device, seq, rejected",
    conflict: "ON CONFLICT DO NOTHING",
};

const CONTACTS: Table = Table {
    name: "contacts",
    columns: &[
        ("device", Blob),
        ("last_session_at", Int),
        ("cert_serial", Text),
        ("cert_subject", Text),
        ("peer", Text),
    ],
    order: "device",
    conflict: "ON CONFLICT (device) DO NOTHING",
};

/// The log travels whole: its entries and stored hashes by index (the same
/// key signs on), and its head moves forward only.
const LOG_ENTRIES: Table = Table {
    name: "log_entries",
    columns: &[("idx", Int), ("entry", Blob)],
    order: "idx",
    conflict: "ON CONFLICT (idx) DO NOTHING",
};

const LOG_HASHES: Table = Table {
    name: "log_hashes",
    columns: &[("idx", Int), ("hash", Blob)],
    order: "idx",
    conflict: "ON CONFLICT (idx) DO NOTHING",
};

const LOG_HEAD: Table = Table {
    name: "log_head",
    columns: &[("one", Int), ("log_key", Blob), ("mission", Text), ("size", Int), ("root", Blob), ("checkpoint", Text)],
    order: "one",
    conflict: "ON CONFLICT (one) DO UPDATE SET size = excluded.size, root = excluded.root,
               checkpoint = excluded.checkpoint WHERE log_head.size < excluded.size",
};

/// The evidence files reports name, as the writer indexed them.
const ATTACHMENTS: Table = Table {
    name: "attachments",
    columns: &[("sha256", Blob), ("report", Blob), ("size", Int)],
    order: "sha256, report",
    conflict: "ON CONFLICT (sha256, report) DO NOTHING",
};

/// The incident window travels with the store; the regroup flag does not.
const SETTINGS: Table = Table {
    name: "settings",
    columns: &[("name", Text), ("value", Int)],
    order: "name",
    conflict: "ON CONFLICT (name) DO NOTHING",
};

/// A value read from the source, held until its chunk is written.
enum Owned {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Owned {
    fn read(r: &dyn Row, i: usize, kind: Kind) -> Result<Owned, StoreError> {
        Ok(match kind {
            Int => r.opt_i64(i)?.map_or(Owned::Null, Owned::Int),
            Real => r.opt_f64(i)?.map_or(Owned::Null, Owned::Real),
            Text => r.opt_string(i)?.map_or(Owned::Null, Owned::Text),
            Blob => r.opt_bytes(i)?.map_or(Owned::Null, |b| Owned::Blob(b.to_vec())),
        })
    }

    fn arg(&self) -> Arg<'_> {
        match self {
            Owned::Null => Arg::Null,
            Owned::Int(v) => Arg::Int(*v),
            Owned::Real(v) => Arg::Real(*v),
            Owned::Text(v) => Arg::Text(v),
            Owned::Blob(v) => Arg::Blob(v),
        }
    }
}

/// Writes `rows` into `table` in one multi-row INSERT; returns the rows
/// the destination did not already hold.
fn insert(dst: &Tx<'_>, table: &Table, rows: &[Vec<Owned>]) -> Result<u64, StoreError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let width = names.len();
    let tuples: Vec<String> = (0..rows.len())
        .map(|r| {
            let params: Vec<String> = (1..=width).map(|c| format!("?{}", r * width + c)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let sql =
        format!("INSERT INTO {} ({}) VALUES {} {}", table.name, names.join(", "), tuples.join(", "), table.conflict);
    let args: Vec<Arg<'_>> = rows.iter().flatten().map(Owned::arg).collect();
    dst.execute(&sql, &args)
}

/// Copies every row of `table` from `src` to `dst` that `dst` lacks.
fn copy_table(src: &Tx<'_>, dst: &Tx<'_>, table: &Table, filter: &str) -> Result<u64, StoreError> {
    let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
    let sql = format!("SELECT {} FROM {} {filter} ORDER BY {}", names.join(", "), table.name, table.order);
    let mut chunk: Vec<Vec<Owned>> = Vec::with_capacity(CHUNK_ROWS);
    let mut moved = 0;
    src.stream(&sql, &[], &mut |r| {
        let row: Result<Vec<Owned>, StoreError> =
            table.columns.iter().enumerate().map(|(i, &(_, kind))| Owned::read(r, i, kind)).collect();
        chunk.push(row?);
        if chunk.len() == CHUNK_ROWS {
            moved += insert(dst, table, &chunk)?;
            chunk.clear();
        }
        Ok(())
    })?;
    moved += insert(dst, table, &chunk)?;
    Ok(moved)
}

impl Store {
    /// Copies into this store every device, report, rejection, fork and
    /// last session of `from` that it lacks, and the incident window if it
    /// has none; then groups its reports into incidents again if any
    /// report was copied. One transaction: all of it, or nothing.
    pub fn copy_from(&mut self, from: &Store) -> Result<Moved, StoreError> {
        from.read(|src| {
            self.write(|dst| {
                let key = "SELECT log_key FROM log_head WHERE one = 1";
                let theirs = src.one(key, &[], |r| r.b32(0))?;
                let ours = dst.one(key, &[], |r| r.b32(0))?;
                if let (Some(t), Some(o)) = (theirs, ours) {
                    if t != o {
                        return Err(StoreError::Config(format!(
                            "the database already holds a log signed by key {}, not this store's {}: one \
                             database holds one log",
                            truce_shared::signing::fingerprint(&o),
                            truce_shared::signing::fingerprint(&t)
                        )));
                    }
                }
                let mut moved = Moved {
                    devices: copy_table(src, dst, &DEVICES, "")?,
                    reports: copy_table(src, dst, &REPORTS, "")?,
                    rejections: copy_table(src, dst, &REJECTIONS, "")?,
                    forks: copy_table(src, dst, &FORKS, "")?,
                    contacts: copy_table(src, dst, &CONTACTS, "")?,
                    incidents: 0,
                };
                copy_table(src, dst, &SETTINGS, "WHERE name NOT IN ('regroup', 'index_attachments')")?;
                copy_table(src, dst, &ATTACHMENTS, "")?;
                copy_table(src, dst, &LOG_ENTRIES, "")?;
                copy_table(src, dst, &LOG_HASHES, "")?;
                copy_table(src, dst, &LOG_HEAD, "")?;
                super::quota::recount(dst)?;
                if moved.reports > 0 {
                    let window = incidents::load_window(dst)?;
                    moved.incidents = incidents::rebuild(dst, window)?;
                }
                Ok(moved)
            })
        })
    }
}
