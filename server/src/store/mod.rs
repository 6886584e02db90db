//! The server's store: the outcome rules of DESIGN §5, the device
//! registry, incidents, and streaming reads for export and stats, on one
//! of two databases: an SQLite file (the default) or PostgreSQL, which
//! several servers can share (DESIGN §12).
//!
//! Every rule is written once, against the seam of `sql.rs` ([`Tx`]): SQL
//! that both databases run, bound and read the same way. A write
//! transaction holds the database's write lock (SQLite's BEGIN IMMEDIATE,
//! PostgreSQL's advisory lock): the writer thread ([`crate::writer`])
//! applies every batch queued from every connection in one of them and
//! commits them together (group commit), and `import` goes through the
//! same writer, so a report gets the same answer however it arrived. A
//! committed transaction is durable on both (SQLite: WAL with
//! `synchronous=FULL`; PostgreSQL: its default `synchronous_commit`).
//!
//! The store never verifies signatures: it takes [`Checked`] reports, whose
//! verification ran elsewhere (off the async threads, in parallel). It
//! does not know about connections, receipts or TLS.
//!
//! # Layout
//!
//! - `mod.rs`: [`Store`] and [`Database`]: opening either database, and
//!   its read and write transactions.
//! - `sql.rs`: the seam: [`Tx`], [`Arg`], [`Row`].
//! - `sqlite.rs`, `postgres.rs`: the two backends, the only files that
//!   name rusqlite or tokio-postgres.
//! - `error.rs`: [`StoreError`] and [`DeviceError`].
//! - `outcome.rs`: DESIGN §5's outcome rules for a batch ([`Store::apply`]).
//! - `quota.rs`: disk quotas per key, certificate and quarantine, and the
//!   counters the writer keeps for them ([`Quotas`]).
//! - `devices.rs`: the device registry: enrol, revoke, list.
//! - `contacts.rs`: who has been heard from, and when.
//! - `reports.rs`: stored reports and rejections, and the queries that
//!   stream them.
//! - `incidents.rs`: incidents kept up to date as reports arrive.
//! - `stats.rs`: the counts and chain health `stats` shows.
//! - `copy.rs`: moving a whole store to another database (`migrate`).
//! - `schema.rs`: both schemas and their migrations.
//!
//! [`Checked`]: crate::verify::Checked

use std::path::{Path, PathBuf};

mod contacts;
mod copy;
mod devices;
mod error;
mod evidence;
mod incidents;
mod log;
mod outcome;
mod postgres;
mod quota;
mod reports;
pub mod schema;
mod sql;
mod sqlite;
mod stats;
#[cfg(test)]
mod tests;

pub use contacts::{Activity, Contact};
pub use copy::Moved;
pub use devices::{Device, Enrolled, Revoked};
pub use error::{DeviceError, StoreError};
pub use log::{Head, Proofs, Proved};
pub use outcome::{Applied, Arrival, REASON_EQUIVOCATION, REASON_REVOKED, REASON_UNKNOWN_DEVICE};
pub use postgres::redact;
pub use quota::{QuotaHit, Quotas};
pub use reports::{CertId, RejectionRow, ReportOrder, ReportQuery, ReportRow, ReportStatus};
#[cfg(test)]
pub(crate) use sql::args;
pub use sql::{Arg, Backend, Row, Tx};
pub use sqlite::{tune as tune_sqlite, PAGE_SIZE};
pub use stats::{Chain, DeviceCounts, IncidentCounts, RejectionCounts, Stats, StatusCounts};

use sql::TxInner;

/// Where a store lives: `--database`, or the data dir's SQLite file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// An SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://…` or `postgresql://…`).
    Postgres(String),
}

impl Database {
    /// Reads a `--database` value: a PostgreSQL URL, or a path to an
    /// SQLite file.
    pub fn parse(s: &str) -> Database {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Database::Postgres(s.to_string())
        } else {
            Database::Sqlite(PathBuf::from(s))
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(p) => write!(f, "{}", p.display()),
            Database::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

/// The store. On SQLite, one per thread: the writer owns one, and every
/// command or reader opens its own. On PostgreSQL, a pool of connections.
pub struct Store {
    db: Db,
    /// Signs the log's checkpoints ([`Store::open_log`]).
    log_key: Option<std::sync::Arc<truce_shared::log::LogKey>>,
}

enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::PgStore),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.db {
            Db::Sqlite(c) => f.debug_struct("Store").field("sqlite", &c.path()).finish(),
            Db::Postgres(p) => f.debug_struct("Store").field("postgres", &p.shown()).finish(),
        }
    }
}

impl Store {
    /// Opens a store, creating it and bringing its schema up to date if
    /// needed.
    pub fn open(db: &Database) -> Result<Store, StoreError> {
        match db {
            Database::Sqlite(path) => Store::open_sqlite(path),
            Database::Postgres(url) => {
                Store::setup(Store { db: Db::Postgres(postgres::PgStore::connect(url)?), log_key: None })
            }
        }
    }

    /// Opens the SQLite file at `path`.
    pub fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Store::setup(Store { db: Db::Sqlite(sqlite::open(path)?), log_key: None })
    }

    /// A private SQLite database in memory, for unit tests.
    /// Its log is set up with a fixed key.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let mut store = Store::setup(Store { db: Db::Sqlite(sqlite::open_in_memory()?), log_key: None })?;
        store.open_log(&[0x42; 32], truce_shared::log::DEFAULT_MISSION)?;
        Ok(store)
    }

    fn setup(mut store: Store) -> Result<Store, StoreError> {
        // A migration (or an interrupted regrouping) asks for the incidents
        // to be grouped again; whoever opens the store first does it.
        let regroup = |tx: &Tx<'_>| tx.one("SELECT value FROM settings WHERE name = 'regroup'", &[], |r| r.i64(0));
        if store.read(regroup)? == Some(1) {
            store.write(|tx| {
                if regroup(tx)? == Some(1) {
                    let window = incidents::load_window(tx)?;
                    incidents::rebuild(tx, window)?;
                }
                Ok(())
            })?;
        }
        evidence::index_stored(&mut store)?;
        Ok(store)
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Gives the store the writer's settings (on SQLite, a larger page
    /// cache and rarer checkpoints; nothing to do on PostgreSQL).
    pub fn tune_for_writer(&self) {
        if let Db::Sqlite(c) = &self.db {
            if let Err(e) = sqlite::tune(c) {
                // Only slower without it; nothing is at stake.
                tracing::warn!(error = %e, "cannot tune the writer's page cache and checkpoints");
            }
        }
    }

    /// Runs `f` in a write transaction holding the database's write lock,
    /// and commits if `f` returns `Ok` (nothing is written otherwise).
    /// Durable when this returns `Ok`.
    pub fn write<T>(&mut self, f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.write_logged(f).map(|(t, _)| t)
    }

    /// [`Store::write`], and the log's head as the commit leaves it: what
    /// `f` appended, with a checkpoint signed before the commit (`None`
    /// where the log is not set up yet).
    pub fn write_logged<T>(
        &mut self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<(T, Option<Head>), StoreError> {
        let key = self.log_key.clone();
        let run = |tx: &Tx<'_>| {
            let t = f(tx)?;
            Ok((t, log::finish(tx, key.as_deref())?))
        };
        match &mut self.db {
            Db::Sqlite(c) => sqlite::write(c, |c| run(&Tx::new(TxInner::Sqlite(c)))),
            Db::Postgres(p) => p.write(|t| run(&Tx::new(TxInner::Postgres(t)))),
        }
    }

    /// Runs `f` in a read transaction: one consistent snapshot while
    /// writers go on.
    pub fn read<T>(&self, f: impl FnOnce(&Tx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        match &self.db {
            Db::Sqlite(c) => sqlite::read(c, |c| f(&Tx::new(TxInner::Sqlite(c)))),
            Db::Postgres(p) => p.read(|t| f(&Tx::new(TxInner::Postgres(t)))),
        }
    }
}
