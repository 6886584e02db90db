//! The database schema and its migrations: the one place that says what the
//! server's database looks like, on SQLite ([`SQLITE`]) and on PostgreSQL
//! ([`POSTGRES`]). The two hold the same tables and columns; PostgreSQL's
//! history starts at SQLite's version 7.
//!
//! SQLite's `PRAGMA user_version` (PostgreSQL's `truce_schema.version`)
//! holds the number of migrations applied. A new version appends a
//! migration to each list; nothing already released is ever edited, so
//! every database walks the same path to the current shape. A database
//! newer than this build is refused rather than guessed at. Each step runs
//! in its own write transaction and re-reads the version inside it, so
//! processes opening one database at once migrate it once.
//!
//! ```text
//! devices     one row per enrolled key: name, added_at, revoked_at, revoke_reason
//! reports     every signed report whose signature verified, exactly once per id:
//!             n (arrival order), id, device, seq, prev, recorded_at, observed_at,
//!             observed_until, category, lat, lon, amends, body, signature,
//!             status (verified | quarantined | rejected), reason, received_at,
//!             incident (NULL until incidents are computed)
//! rejections  reports that failed verification: the bytes as received (bounded),
//!             the reason, and how many times the same bytes arrived
//! forks       two different reports from one device at one seq (equivocation):
//!             the one kept and the one rejected; both stay in `reports`
//!
//! version 2 (incidents):
//! reports     + ev_lat, ev_lon: where the event was (the estimated position
//!             where bearing and distance allow, else the monitor's)
//! incidents   one row per group of reports of one event: category, first and
//!             last observed_at, reports, devices (the corroboration count)
//! incident_devices  the distinct devices of each incident
//! settings    named values: the incident window (minutes, metres)
//!
//! version 6 (TLS identity):
//! reports     + cert_serial, cert_subject: the client certificate a report
//!             came through (NULL when imported from a bundle)
//!
//! version 7 (who has gone quiet):
//! contacts    each device's last session: when, the certificate and the
//!             address it came through
//!
//! version 8 (the transparency log, DESIGN §9; PostgreSQL version 2):
//! log_entries every log entry (`truce_shared::log::Entry` bytes) by index
//! log_hashes  the tree's stored hashes by their stored-hash index (leaves
//!             and every completed subtree: about two per entry)
//! log_head    one row: the log key, the mission, the tree size, its root
//!             and the latest signed checkpoint
//! reports     + entry: the index of the entry that records it
//! rejections  + entry: the same for refused bytes
//!
//! version 9 (disk quotas, compromised keys; PostgreSQL version 3):
//! usage       running counters the writer keeps in the transaction that
//!             changes them: per scope ('key': a device key's stored reports;
//!             'cert': what came through a client certificate, by serial;
//!             'quarantined': quarantined reports per key, and in total under
//!             the empty owner; 'refused': quota refusals per limit name),
//!             reports and bytes
//! devices     + compromised_since: reports of the key recorded after it are
//!             disputed
//! ```
//!
//! Times are unix milliseconds UTC. `seq` is stored as the two's-complement
//! bit pattern of the u64 (`seq as i64`), so every valid seq has one distinct
//! value even above `i64::MAX`; read it back with `as u64`.

use crate::store::StoreError;

/// Version 1: devices, reports, rejections, forks.
const V1: &str = "
CREATE TABLE devices (
    key           BLOB PRIMARY KEY CHECK (length(key) = 32),
    name          TEXT,
    added_at      INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoke_reason TEXT
);

CREATE TABLE reports (
    n              INTEGER PRIMARY KEY,
    id             BLOB NOT NULL UNIQUE CHECK (length(id) = 32),
    device         BLOB NOT NULL,
    seq            INTEGER NOT NULL,
    prev           BLOB NOT NULL,
    recorded_at    INTEGER NOT NULL,
    observed_at    INTEGER NOT NULL,
    observed_until INTEGER,
    category       TEXT NOT NULL,
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
-- Chains: duplicates of a seq (forks), gaps, promotion on enrolment.
CREATE INDEX reports_device_seq ON reports (device, seq);
-- Incidents look for the same category close in time.
CREATE INDEX reports_category_time ON reports (category, observed_at);
-- Exports filter by time.
CREATE INDEX reports_observed ON reports (observed_at);
-- \"Is this report amended by a later one?\"
CREATE INDEX reports_amends ON reports (amends) WHERE amends IS NOT NULL;

CREATE TABLE rejections (
    n                 INTEGER PRIMARY KEY,
    id                BLOB NOT NULL,
    signature         BLOB NOT NULL,
    device            BLOB,
    reason            TEXT NOT NULL,
    body              BLOB NOT NULL,
    body_len          INTEGER NOT NULL,
    first_received_at INTEGER NOT NULL,
    last_received_at  INTEGER NOT NULL,
    times             INTEGER NOT NULL DEFAULT 1,
    UNIQUE (id, signature)
);

CREATE TABLE forks (
    device      BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    kept        BLOB NOT NULL,
    rejected    BLOB NOT NULL,
    detected_at INTEGER NOT NULL,
    PRIMARY KEY (device, seq, rejected)
);
";

/// Version 2: incidents. Existing reports get the monitor's position as
/// their event position; `Store::open` regroups them on the first open
/// (see `crate::incidents::rebuild`).
const V2: &str = "
ALTER TABLE reports ADD COLUMN ev_lat REAL;
ALTER TABLE reports ADD COLUMN ev_lon REAL;
UPDATE reports SET ev_lat = lat, ev_lon = lon;
CREATE INDEX reports_incident ON reports (incident) WHERE incident IS NOT NULL;

CREATE TABLE incidents (
    id       INTEGER PRIMARY KEY,
    category TEXT NOT NULL,
    first_at INTEGER NOT NULL,
    last_at  INTEGER NOT NULL,
    reports  INTEGER NOT NULL,
    devices  INTEGER NOT NULL
);

CREATE TABLE incident_devices (
    incident INTEGER NOT NULL,
    device   BLOB NOT NULL,
    PRIMARY KEY (incident, device)
) WITHOUT ROWID;

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO settings (name, value) VALUES ('regroup', 1);
";

/// Version 3: each incident keeps the latitude span of its members, and
/// reports are indexed by (incident, observed_at), so grouping a new report
/// looks at the few incidents near it and stops at the first close member
/// of each, instead of scanning every report of its category in the time
/// window (quadratic when hundreds of reports describe one event). The
/// spans are filled by regrouping on the first open.
const V3: &str = "
ALTER TABLE incidents ADD COLUMN min_lat REAL NOT NULL DEFAULT 0;
ALTER TABLE incidents ADD COLUMN max_lat REAL NOT NULL DEFAULT 0;
CREATE INDEX incidents_category_last ON incidents (category, last_at);
DROP INDEX reports_incident;
CREATE INDEX reports_incident_time ON reports (incident, observed_at) WHERE incident IS NOT NULL;
INSERT OR REPLACE INTO settings (name, value) VALUES ('regroup', 1);
";

/// Version 4: amendments indexed with their seq, so "the latest verified
/// amendment of this report" (a column of every exported row) walks the
/// index backwards instead of sorting in a temporary b-tree for each row.
const V4: &str = "
DROP INDEX reports_amends;
CREATE INDEX reports_amends ON reports (amends, seq) WHERE amends IS NOT NULL;
";

/// Version 5: the (category, observed_at) index goes. Grouping has looked
/// incidents up by their own spans since version 3, so nothing searched it
/// any more, and every stored report paid for one more b-tree insert in the
/// writer. An export by category walks the observation-time index instead.
const V5: &str = "
DROP INDEX reports_category_time;
";

/// Version 6: each report keeps the client certificate it came through
/// (serial, lower-case hex, and subject), NULL for reports imported from a
/// bundle and for those stored before this version.
const V6: &str = "
ALTER TABLE reports ADD COLUMN cert_serial TEXT;
ALTER TABLE reports ADD COLUMN cert_subject TEXT;
";

/// Version 7: each device's last session (the device key its Hello named,
/// the certificate and address it came through), for `device list`. The
/// reports a device sent are found through (device, seq): no new index,
/// so the writer pays nothing more per report.
const V7: &str = "
CREATE TABLE contacts (
    device          BLOB PRIMARY KEY,
    last_session_at INTEGER NOT NULL,
    cert_serial     TEXT,
    cert_subject    TEXT,
    peer            TEXT
) WITHOUT ROWID;
";

/// Version 8: the transparency log (DESIGN §9). A store upgraded to it
/// logs what it already holds when its log key is first loaded.
const V8: &str = "
CREATE TABLE log_entries (
    idx   INTEGER PRIMARY KEY,
    entry BLOB NOT NULL
);
CREATE TABLE log_hashes (
    idx  INTEGER PRIMARY KEY,
    hash BLOB NOT NULL CHECK (length(hash) = 32)
);
CREATE TABLE log_head (
    one        INTEGER PRIMARY KEY CHECK (one = 1),
    log_key    BLOB NOT NULL CHECK (length(log_key) = 32),
    mission    TEXT NOT NULL,
    size       INTEGER NOT NULL,
    root       BLOB NOT NULL,
    checkpoint TEXT NOT NULL
);
ALTER TABLE reports ADD COLUMN entry INTEGER;
ALTER TABLE rejections ADD COLUMN entry INTEGER;
";

/// Version 9: the evidence files each stored report names (DESIGN §10),
/// so the server takes an upload only for a file some report signed, and
/// exports say which files it holds. Reports stored before it are indexed
/// on the first open (`Store::setup`).
const V9: &str = "
CREATE TABLE attachments (
    sha256 BLOB NOT NULL CHECK (length(sha256) = 32),
    report BLOB NOT NULL,
    size   INTEGER NOT NULL,
    PRIMARY KEY (sha256, report)
) WITHOUT ROWID;
INSERT INTO settings (name, value) VALUES ('index_attachments', 1);
";

/// Version 10: disk quotas and compromised keys. The counters start from
/// what the store holds (the body bytes of stored reports; refused bytes
/// stored before are not counted against their certificate, which the
/// rows do not record).
const V10: &str = "
CREATE TABLE usage (
    scope   TEXT NOT NULL,
    owner   BLOB NOT NULL,
    reports INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    PRIMARY KEY (scope, owner)
) WITHOUT ROWID;
INSERT INTO usage (scope, owner, reports, bytes)
    SELECT 'key', device, count(*), sum(length(body)) FROM reports GROUP BY device;
INSERT INTO usage (scope, owner, reports, bytes)
    SELECT 'cert', CAST(cert_serial AS BLOB), count(*), sum(length(body)) FROM reports
    WHERE cert_serial IS NOT NULL GROUP BY cert_serial;
INSERT INTO usage (scope, owner, reports, bytes)
    SELECT 'quarantined', device, count(*), sum(length(body)) FROM reports
    WHERE status = 'quarantined' GROUP BY device;
INSERT INTO usage (scope, owner, reports, bytes)
    SELECT 'quarantined', x'', count(*), coalesce(sum(length(body)), 0) FROM reports
    WHERE status = 'quarantined';
ALTER TABLE devices ADD COLUMN compromised_since INTEGER;
";

/// The PostgreSQL schema, as migrations of its own (version in the
/// `truce_schema` table). Its first version is SQLite's seventh, spelled
/// for PostgreSQL: 64-bit integers everywhere (a seq is a u64's bit
/// pattern, as in SQLite), BYTEA for keys, ids and bodies, identity
/// columns where SQLite has its rowid.
const PG_V1: &str = "
CREATE TABLE devices (
    key           BYTEA PRIMARY KEY CHECK (length(key) = 32),
    name          TEXT,
    added_at      BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT
);

CREATE TABLE reports (
    n              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id             BYTEA NOT NULL UNIQUE CHECK (length(id) = 32),
    device         BYTEA NOT NULL,
    seq            BIGINT NOT NULL,
    prev           BYTEA NOT NULL,
    recorded_at    BIGINT NOT NULL,
    observed_at    BIGINT NOT NULL,
    observed_until BIGINT,
    category       TEXT NOT NULL,
    lat            DOUBLE PRECISION NOT NULL,
    lon            DOUBLE PRECISION NOT NULL,
    amends         BYTEA,
    body           BYTEA NOT NULL,
    signature      BYTEA NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('verified', 'quarantined', 'rejected')),
    reason         TEXT,
    received_at    BIGINT NOT NULL,
    incident       BIGINT,
    ev_lat         DOUBLE PRECISION,
    ev_lon         DOUBLE PRECISION,
    cert_serial    TEXT,
    cert_subject   TEXT
);
CREATE INDEX reports_device_seq ON reports (device, seq);
CREATE INDEX reports_observed ON reports (observed_at);
CREATE INDEX reports_amends ON reports (amends, seq) WHERE amends IS NOT NULL;
CREATE INDEX reports_incident_time ON reports (incident, observed_at) WHERE incident IS NOT NULL;

CREATE TABLE rejections (
    n                 BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    id                BYTEA NOT NULL,
    signature         BYTEA NOT NULL,
    device            BYTEA,
    reason            TEXT NOT NULL,
    body              BYTEA NOT NULL,
    body_len          BIGINT NOT NULL,
    first_received_at BIGINT NOT NULL,
    last_received_at  BIGINT NOT NULL,
    times             BIGINT NOT NULL DEFAULT 1,
    UNIQUE (id, signature)
);

CREATE TABLE forks (
    device      BYTEA NOT NULL,
    seq         BIGINT NOT NULL,
    kept        BYTEA NOT NULL,
    rejected    BYTEA NOT NULL,
    detected_at BIGINT NOT NULL,
    PRIMARY KEY (device, seq, rejected)
);

CREATE TABLE incidents (
    id       BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    category TEXT NOT NULL,
    first_at BIGINT NOT NULL,
    last_at  BIGINT NOT NULL,
    reports  BIGINT NOT NULL,
    devices  BIGINT NOT NULL,
    min_lat  DOUBLE PRECISION NOT NULL DEFAULT 0,
    max_lat  DOUBLE PRECISION NOT NULL DEFAULT 0
);
CREATE INDEX incidents_category_last ON incidents (category, last_at);

CREATE TABLE incident_devices (
    incident BIGINT NOT NULL,
    device   BYTEA NOT NULL,
    PRIMARY KEY (incident, device)
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE contacts (
    device          BYTEA PRIMARY KEY,
    last_session_at BIGINT NOT NULL,
    cert_serial     TEXT,
    cert_subject    TEXT,
    peer            TEXT
);
";

/// PostgreSQL's version 2: SQLite's version 8.
const PG_V2: &str = "
CREATE TABLE log_entries (
    idx   BIGINT PRIMARY KEY,
    entry BYTEA NOT NULL
);
CREATE TABLE log_hashes (
    idx  BIGINT PRIMARY KEY,
    hash BYTEA NOT NULL CHECK (length(hash) = 32)
);
CREATE TABLE log_head (
    one        BIGINT PRIMARY KEY CHECK (one = 1),
    log_key    BYTEA NOT NULL CHECK (length(log_key) = 32),
    mission    TEXT NOT NULL,
    size       BIGINT NOT NULL,
    root       BYTEA NOT NULL,
    checkpoint TEXT NOT NULL
);
ALTER TABLE reports ADD COLUMN entry BIGINT;
ALTER TABLE rejections ADD COLUMN entry BIGINT;
";

/// PostgreSQL version 3: SQLite's ninth.
const PG_V3: &str = "
CREATE TABLE attachments (
    sha256 BYTEA NOT NULL CHECK (length(sha256) = 32),
    report BYTEA NOT NULL,
    size   BIGINT NOT NULL,
    PRIMARY KEY (sha256, report)
);
INSERT INTO settings (name, value) VALUES ('index_attachments', 1);
";

/// PostgreSQL's version 4: SQLite's version 10.
const PG_V4: &str = "
CREATE TABLE usage (
    scope   TEXT NOT NULL,
    owner   BYTEA NOT NULL,
    reports BIGINT NOT NULL,
    bytes   BIGINT NOT NULL,
    PRIMARY KEY (scope, owner)
);
INSERT INTO usage (scope, owner, reports, bytes)
    SELECT 'key', device, count(*), sum(length(body))::BIGINT FROM reports GROUP BY device;
INSERT INTO usage (scope, owner, reports, bytes)
    SELECT 'cert', convert_to(cert_serial, 'UTF8'), count(*), sum(length(body))::BIGINT FROM reports
    WHERE cert_serial IS NOT NULL GROUP BY cert_serial;
INSERT INTO usage (scope, owner, reports, bytes)
    SELECT 'quarantined', device, count(*), sum(length(body))::BIGINT FROM reports
    WHERE status = 'quarantined' GROUP BY device;
INSERT INTO usage (scope, owner, reports, bytes)
    SELECT 'quarantined', ''::BYTEA, count(*), coalesce(sum(length(body)), 0)::BIGINT FROM reports
    WHERE status = 'quarantined';
ALTER TABLE devices ADD COLUMN compromised_since BIGINT;
";

/// SQLite's migrations, in order; the file's `user_version` counts those
/// applied.
pub(super) const SQLITE: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10];

/// PostgreSQL's migrations, in order; `truce_schema.version` counts those
/// applied.
pub(super) const POSTGRES: &[&str] = &[PG_V1, PG_V2, PG_V3, PG_V4];

/// The migration that follows `version` in `steps`, if any; a version
/// newer than this build knows is refused (a newer truce-server wrote it).
pub(super) fn next_step(steps: &'static [&'static str], version: i64) -> Result<Option<&'static str>, StoreError> {
    let supported = steps.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew { found: version, supported });
    }
    Ok(usize::try_from(version).ok().and_then(|v| steps.get(v)).copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_gets_every_migration_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        drop(crate::store::Store::open_sqlite(&path).unwrap());
        drop(crate::store::Store::open_sqlite(&path).unwrap());
        let c = rusqlite::Connection::open(&path).unwrap();
        let v: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SQLITE.len() as i64);
        let tables: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('devices', 'reports', 'rejections', 'forks', 'incidents')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 5);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        rusqlite::Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SQLITE.len() as i64 + 1)
            .unwrap();
        assert!(matches!(crate::store::Store::open_sqlite(&path), Err(StoreError::TooNew { .. })));
        assert!(matches!(next_step(POSTGRES, POSTGRES.len() as i64 + 1), Err(StoreError::TooNew { .. })));
        assert_eq!(next_step(POSTGRES, POSTGRES.len() as i64).unwrap(), None);
    }
}
