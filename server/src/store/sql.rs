//! The seam between the store's rules and its two databases.
//!
//! Every rule of the store (outcomes, devices, incidents, queries) is
//! written once, as SQL that SQLite and PostgreSQL both run, against a
//! [`Tx`]: a transaction on either backend. A statement numbers its
//! parameters `?1`, `?2`… (PostgreSQL's `$1`, `$2`… are made from them) and
//! binds [`Arg`]s; a result row is read through [`Row`], by column index.
//! Where the dialects differ, a rule asks [`Tx::backend`] and picks one of
//! two statements; the differences are few and named at each place
//! (SQLite's `+column`, which keeps a planner off an index, has no
//! PostgreSQL spelling).
//!
//! Nothing of rusqlite or tokio-postgres leaves this module and the two
//! backend modules (`sqlite.rs`, `postgres.rs`).

use super::postgres::PgTx;
use super::StoreError;

/// Which database a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One SQLite file: the embedded default.
    Sqlite,
    /// A PostgreSQL database, shared by any number of servers.
    Postgres,
}

/// A value bound to a statement parameter. Borrowed: binding a report's
/// body copies nothing.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// SQL NULL.
    Null,
    /// An integer (every integer column is 64-bit on both backends).
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes (SQLite BLOB, PostgreSQL BYTEA).
    Blob(&'a [u8]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<u32> for Arg<'_> {
    fn from(v: u32) -> Self {
        Arg::Int(i64::from(v))
    }
}

impl From<f64> for Arg<'_> {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Blob(v)
    }
}

impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Arg::Blob(v)
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Arg<'a> {
    fn from(v: &'a [u8; N]) -> Self {
        Arg::Blob(v)
    }
}

impl<'a, T: Into<Arg<'a>>> From<Option<T>> for Arg<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}

/// Builds a `&[Arg]` from values of mixed types: `args![id, seq, name]`.
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::store::Arg::from($v)),*][..] };
}
pub(crate) use args;

/// One result row, read by column index. A column of another type than the
/// one asked for is a damaged or foreign database, reported as an error.
pub trait Row {
    /// An integer column (a boolean reads as 0 or 1).
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError>;
    /// A floating-point column.
    fn opt_f64(&self, i: usize) -> Result<Option<f64>, StoreError>;
    /// A text column.
    fn opt_str(&self, i: usize) -> Result<Option<&str>, StoreError>;
    /// A bytes column.
    fn opt_bytes(&self, i: usize) -> Result<Option<&[u8]>, StoreError>;

    /// A NOT NULL integer column.
    fn i64(&self, i: usize) -> Result<i64, StoreError> {
        self.opt_i64(i)?.ok_or(StoreError::Column { index: i, problem: "NULL" })
    }
    /// A NOT NULL floating-point column.
    fn f64(&self, i: usize) -> Result<f64, StoreError> {
        self.opt_f64(i)?.ok_or(StoreError::Column { index: i, problem: "NULL" })
    }
    /// A NOT NULL text column.
    fn str(&self, i: usize) -> Result<&str, StoreError> {
        self.opt_str(i)?.ok_or(StoreError::Column { index: i, problem: "NULL" })
    }
    /// A NOT NULL bytes column.
    fn bytes(&self, i: usize) -> Result<&[u8], StoreError> {
        self.opt_bytes(i)?.ok_or(StoreError::Column { index: i, problem: "NULL" })
    }
    /// An optional text column, owned.
    fn opt_string(&self, i: usize) -> Result<Option<String>, StoreError> {
        Ok(self.opt_str(i)?.map(str::to_owned))
    }
    /// A 32-byte key or id.
    fn b32(&self, i: usize) -> Result<[u8; 32], StoreError> {
        fixed(self.bytes(i)?, i)
    }
    /// An optional 32-byte key or id.
    fn opt_b32(&self, i: usize) -> Result<Option<[u8; 32]>, StoreError> {
        self.opt_bytes(i)?.map(|b| fixed(b, i)).transpose()
    }
}

/// A bytes column of exactly `N` bytes; another length is a damaged file.
pub fn fixed<const N: usize>(bytes: &[u8], index: usize) -> Result<[u8; N], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Column { index, problem: "a blob of the wrong length" })
}

/// A transaction on either backend. Rules take `&Tx` and never commit:
/// [`super::Store::write`] and [`super::Store::read`] begin and end it.
pub struct Tx<'a>(pub(super) TxInner<'a>, pub(super) std::cell::RefCell<super::log::Tail>);

pub(super) enum TxInner<'a> {
    Sqlite(&'a rusqlite::Connection),
    Postgres(&'a PgTx<'a>),
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tx").field(&self.backend()).finish()
    }
}

impl<'a> Tx<'a> {
    pub(super) fn new(inner: TxInner<'a>) -> Tx<'a> {
        Tx(inner, Default::default())
    }
}

impl Tx<'_> {
    /// The database this transaction is on, for the few statements whose
    /// spelling differs.
    pub fn backend(&self) -> Backend {
        match self.0 {
            TxInner::Sqlite(_) => Backend::Sqlite,
            TxInner::Postgres(_) => Backend::Postgres,
        }
    }

    /// Runs a statement; returns the rows it changed.
    pub fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        match &self.0 {
            TxInner::Sqlite(c) => super::sqlite::execute(c, sql, args),
            TxInner::Postgres(t) => t.execute(sql, args),
        }
    }

    /// Runs a query and passes each row to `f`, in order. For result sets
    /// that may be large, use [`Tx::stream`].
    pub fn each(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        f: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match &self.0 {
            TxInner::Sqlite(c) => super::sqlite::each(c, sql, args, f),
            TxInner::Postgres(t) => t.each(sql, args, f),
        }
    }

    /// [`Tx::each`] in bounded memory however many rows match (a
    /// million-row export): PostgreSQL fetches them through a cursor, a
    /// page at a time; SQLite steps through them anyway. Also for a scan
    /// that `f` may stop early (by returning an error, such as
    /// [`StoreError::Stopped`]): PostgreSQL's first page is small, so
    /// such a scan costs the rows it read, where [`Tx::each`] fetches
    /// every row that matches before `f` sees the first.
    pub fn stream(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        f: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match &self.0 {
            TxInner::Sqlite(c) => super::sqlite::each(c, sql, args, f),
            TxInner::Postgres(t) => t.stream(sql, args, f),
        }
    }

    /// The first row of a query, mapped by `f`; `None` if there is none.
    pub fn one<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        f: impl FnOnce(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let mut f = Some(f);
        let mut out = None;
        self.each(sql, args, &mut |r| {
            if let Some(f) = f.take() {
                out = Some(f(r)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Every row of a query, mapped by `f`.
    pub fn all<T>(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        mut f: impl FnMut(&dyn Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        self.each(sql, args, &mut |r| {
            out.push(f(r)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// A count or other single integer (NULL reads as 0).
    pub fn count(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        Ok(self.one(sql, args, |r| r.opt_i64(0))?.flatten().unwrap_or(0).max(0) as u64)
    }

    /// Whether a query returns any row.
    pub fn exists(&self, sql: &str, args: &[Arg<'_>]) -> Result<bool, StoreError> {
        Ok(self.one(sql, args, |_| Ok(()))?.is_some())
    }
}
