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

//!
//! # Layout
//!
//! - `mod.rs`: [`Store`]: opening a file (pragmas, migrations) and write
//!   transactions.
//! - `error.rs`: [`StoreError`] and [`DeviceError`].
//! - `outcome.rs`: DESIGN §5's outcome rules for a batch ([`Store::apply`]).
//! - `devices.rs`: the device registry: enrol, revoke, list.
//! - `contacts.rs`: who has been heard from, and when.
//! - `reports.rs`: stored reports and rejections, and the queries that
//!   stream them.
//! - `incidents.rs`: incidents kept up to date as reports arrive.
//! - `schema.rs`: the SQLite schema and its migrations.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

mod contacts;
mod devices;
mod error;
mod incidents;
mod outcome;
mod reports;
pub mod schema;
#[cfg(test)]
mod tests;

pub use contacts::{Activity, Contact};
pub use devices::{Device, Enrolled, Revoked};
pub use error::{DeviceError, StoreError};
pub use outcome::{REASON_EQUIVOCATION, REASON_REVOKED, REASON_UNKNOWN_DEVICE};
pub use reports::{CertId, RejectionRow, ReportOrder, ReportQuery, ReportRow, ReportStatus};

/// How long a connection waits for another process's write lock (a
/// `device add` while the server runs) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

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
            let window = incidents::load_window(&tx)?;
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
}
