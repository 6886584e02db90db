//! The SQLite backend: one file, opened with the pragmas DESIGN §5 asks
//! for, and the [`Tx`](super::Tx) operations on a rusqlite connection.

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::sql::{Arg, Row};
use super::{schema, StoreError};

/// How long a connection waits for another process's write lock (a
/// `device add` while the server runs) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Prepared statements kept per connection: every statement the writer
/// runs stays prepared (rusqlite keeps 16 by default; the outcome and
/// incident rules use about 30).
const STATEMENT_CACHE: usize = 64;

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

/// The writer's page cache, in KiB (SQLite's default is 2 MiB). A group
/// commit of the writer's largest group dirties about 16 MiB of pages;
/// with the default cache SQLite spilled them to the WAL in the middle of
/// the transaction, which profiles of ingest showed as a sixth of the
/// writer's time. Readers keep the default: they stream.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// WAL pages between the writer's checkpoints (SQLite's default is 1,000
/// pages, 4 MiB at its default page size). The index pages every report
/// touches were copied to the database file again at each checkpoint: a
/// fifth of the writer's time in profiles of ingest. A checkpoint every
/// 40 MiB instead copies each hot page ten times less often; the WAL peaks
/// near 40 MiB (2,500 of a new store's 16 KiB pages) and is reused after.
const WRITER_CHECKPOINT_PAGES: i64 = 2_500;

/// Opens (or creates) the file and brings its schema up to date.
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    setup(Connection::open(path)?)
}

/// A private database in memory, for unit tests.
pub(super) fn open_in_memory() -> Result<Connection, StoreError> {
    setup(Connection::open_in_memory()?)
}

fn setup(mut conn: Connection) -> Result<Connection, StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // One plan per statement, whatever is bound to it (SQLite's query
    // planner stability guarantee). Without it SQLite lets the value bound
    // to a LIMIT shape the plan, and then compiles the statement again at
    // every execution that binds that parameter anew, even to the same
    // value: a cached statement parsed and planned afresh every time.
    // Incident grouping binds two LIMITs a report, and profiles of ingest
    // showed two fifths of the writer's time in that recompiling. Results
    // never depend on it; no statement of the store relies on a bound
    // value to pick an index (a LIKE pattern, a partial index's condition).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Only takes effect on a new, empty file, before WAL is switched on.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    // WAL lets readers (export, stats) run beside the writer; FULL makes
    // every COMMIT durable before it returns, which is what an Ack
    // promises. Both are set on every connection, as DESIGN §5 says.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Gives a connection the writer's page cache and checkpoint interval
/// (the benchmark's SQLite reference uses it too, to compare like with
/// like).
pub fn tune(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
}

/// Applies the migrations the file lacks, one transaction each; the
/// version is SQLite's `user_version`.
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let Some(step) = schema::next_step(schema::SQLITE, version)? else {
            return Ok(());
        };
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

/// Runs `f` in a write transaction (BEGIN IMMEDIATE: the write lock is
/// taken now, so the checks a rule makes cannot be overtaken by another
/// writer before its inserts), committing if it returns `Ok`.
pub(super) fn write<T>(
    conn: &mut Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let out = f(&tx)?;
    tx.commit()?;
    Ok(out)
}

/// Runs `f` in a read transaction: one snapshot, however long it reads,
/// while the writer goes on committing (WAL).
pub(super) fn read<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let out = f(&tx)?;
    tx.finish()?;
    Ok(out)
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Null => ValueRef::Null,
            Arg::Int(v) => ValueRef::Integer(v),
            Arg::Real(v) => ValueRef::Real(v),
            Arg::Text(v) => ValueRef::Text(v.as_bytes()),
            Arg::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

pub(super) fn execute(c: &Connection, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
    Ok(c.prepare_cached(sql)?.execute(rusqlite::params_from_iter(args))? as u64)
}

pub(super) fn each(
    c: &Connection,
    sql: &str,
    args: &[Arg<'_>],
    f: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut q = c.prepare_cached(sql)?;
    let mut rows = q.query(rusqlite::params_from_iter(args))?;
    while let Some(r) = rows.next()? {
        f(&SqliteRow(r))?;
    }
    Ok(())
}

struct SqliteRow<'a, 'b>(&'a rusqlite::Row<'b>);

fn wrong(index: usize) -> StoreError {
    StoreError::Column { index, problem: "a value of another type" }
}

impl Row for SqliteRow<'_, '_> {
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.0.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Integer(v) => Ok(Some(v)),
            _ => Err(wrong(i)),
        }
    }

    fn opt_f64(&self, i: usize) -> Result<Option<f64>, StoreError> {
        match self.0.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Real(v) => Ok(Some(v)),
            ValueRef::Integer(v) => Ok(Some(v as f64)),
            _ => Err(wrong(i)),
        }
    }

    fn opt_str(&self, i: usize) -> Result<Option<&str>, StoreError> {
        match self.0.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(v) => std::str::from_utf8(v).map(Some).map_err(|_| wrong(i)),
            _ => Err(wrong(i)),
        }
    }

    fn opt_bytes(&self, i: usize) -> Result<Option<&[u8]>, StoreError> {
        match self.0.get_ref(i)? {
            ValueRef::Null => Ok(None),
            ValueRef::Blob(v) => Ok(Some(v)),
            _ => Err(wrong(i)),
        }
    }
}
