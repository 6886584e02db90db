//! The PostgreSQL backend: a pool of tokio-postgres connections
//! (deadpool-postgres), TLS to the database when the URL asks for it, and
//! the [`Tx`](super::Tx) operations on a pooled connection.
//!
//! The store's callers are threads (the writer, the commands), not async
//! tasks, so the backend owns a small tokio runtime and every operation
//! waits on it. Called from inside another runtime (the server opening its
//! store at start), the wait moves to a scoped thread of its own.
//!
//! # Several servers, one database
//!
//! Every write transaction first takes one transaction-scoped advisory
//! lock, [`WRITE_LOCK`], which PostgreSQL releases at COMMIT or ROLLBACK:
//! writes from every server are applied one transaction at a time, as
//! SQLite's BEGIN IMMEDIATE applies them within one file. Each server still
//! folds the batches of all its connections into one transaction (group
//! commit), so the lock is taken once per group, not once per report.
//! Under that lock the outcome rules read what every server has committed
//! (READ COMMITTED reads a fresh snapshot per statement): a report sent to
//! two servers at once is stored by the first and answered Duplicate by
//! the second; a device's chain (forks, gaps) is checked with every other
//! server's reports in view; incidents group reports whatever server they
//! came through; enrolment promotes every server's quarantined reports.
//! One lock rather than one per device, because incident grouping reads
//! and merges across devices, and (DESIGN §9) the log needs one sequence
//! across servers anyway.

use std::future::Future;
use std::str::FromStr;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use postgres_types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::config::SslMode;

use super::sql::{Arg, Row};
use super::{schema, StoreError};

/// The advisory lock every write transaction takes (an arbitrary constant:
/// "truce" in ASCII). See the module docs.
pub const WRITE_LOCK: i64 = 0x0074_7275_6365;

/// Connections a store's pool opens at most. The writer holds one; readers
/// (export, stats) take the others.
const POOL_SIZE: usize = 8;

/// How long a session may sit idle inside a transaction before
/// PostgreSQL ends it, releasing the write lock (see [`PgStore::connect`]).
pub const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Idle time before TCP keepalives probe the database link.
pub const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// Rows fetched per round trip when streaming a large result.
const STREAM_PAGE: i32 = 512;

/// Rows a stream fetches in its first round trip; each later page is twice
/// the last, up to [`STREAM_PAGE`]. A scan that stops at its first rows
/// (incident grouping's search for a member within the distance, which
/// usually stops at the first) then costs PostgreSQL those rows, not every
/// row that matches.
const STREAM_FIRST_PAGE: i32 = 16;

/// A connection string's `sslrootcert`: the CA certificate (PEM) the
/// database server's certificate must chain to. libpq reads it; the Rust
/// client does not, so it is taken out of the URL here.
const ROOT_CERT_PARAM: &str = "sslrootcert";

/// A PostgreSQL database: the pool and the runtime it runs on.
pub struct PgStore {
    pool: Pool,
    rt: OwnedRuntime,
    /// The URL without its password, for messages.
    shown: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("database", &self.shown).finish()
    }
}

/// A runtime that may be dropped anywhere, an async context included.
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl OwnedRuntime {
    /// Runs `f` to completion on this runtime and waits for it.
    fn block_on<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let Some(rt) = self.0.as_ref() else { unreachable!("the runtime lives as long as the store") };
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(f);
        }
        // Blocking a runtime's thread on another runtime panics: wait on a
        // thread of our own instead (only the server's start does this).
        std::thread::scope(|s| match s.spawn(|| rt.block_on(f)).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }
}

/// An error and its causes on one line: a pool's error alone says only
/// that the TLS handshake failed, its sources say why.
pub(super) fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        next = cause.source();
    }
    text
}

/// Masks the password of a connection URL, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (auth, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match auth.rsplit_once('@') {
        Some((cred, host)) => {
            let user = cred.split_once(':').map_or(cred, |(u, _)| u);
            let masked = if cred.contains(':') { format!("{user}:***") } else { user.to_string() };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

/// Takes `sslrootcert=FILE` out of a URL's query (see [`ROOT_CERT_PARAM`]).
fn take_root_cert(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_string(), None) };
    let mut root = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.split_once('=') {
            Some((k, v)) if k == ROOT_CERT_PARAM => {
                root = Some(v.to_string());
                false
            }
            _ => true,
        })
        .collect();
    let url = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    (url, root)
}

fn tls_config(root_cert: Option<&str>, shown: &str) -> Result<rustls::ClientConfig, StoreError> {
    let Some(path) = root_cert else {
        return Err(StoreError::Config(format!(
            "{shown} asks for TLS: add sslrootcert=FILE to the URL, the CA certificate (PEM) of the database server"
        )));
    };
    let pem = std::fs::read(path).map_err(|e| StoreError::Config(format!("cannot read sslrootcert {path}: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| StoreError::Config(format!("sslrootcert {path}: {e}")))?;
        roots.add(cert).map_err(|e| StoreError::Config(format!("sslrootcert {path}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(StoreError::Config(format!("sslrootcert {path} holds no certificate")));
    }
    // AWS-LC with its default key exchange groups, not Truce's own pair:
    // PostgreSQL's OpenSSL offers only prime256v1 (`ssl_ecdh_curve`) unless
    // told otherwise, and the hybrid is still tried first where it has it.
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| StoreError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host/db`, with
    /// `?sslmode=require&sslrootcert=CA.pem` for TLS) and brings its
    /// schema up to date.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let shown = redact(url);
        let (url, root_cert) = take_root_cert(url);
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| StoreError::Config(format!("{shown} is not a PostgreSQL URL: {e}")))?;
        // A server whose machine or link vanishes in the middle of a
        // transaction would hold the write lock, and stop every other
        // server's writes, until the database noticed: by default, hours
        // of TCP keepalive. The session ends after SESSION_IDLE idle in a
        // transaction instead (a group commit never pauses that long),
        // and keepalives probe a silent link after KEEPALIVE_IDLE. A URL
        // that sets its own `options` keeps them.
        if config.get_options().is_none() {
            config.options(format!("-c idle_in_transaction_session_timeout={}", SESSION_IDLE.as_millis()));
        }
        config.keepalives(true).keepalives_idle(KEEPALIVE_IDLE);
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        // As libpq: `prefer` (the default) without a CA to check the
        // server against connects in the clear; `require` insists on TLS.
        let plain = match config.get_ssl_mode() {
            SslMode::Disable => true,
            SslMode::Prefer => root_cert.is_none(),
            _ => false,
        };
        let manager = match plain {
            true => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            false => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(root_cert.as_deref(), &shown)?);
                Manager::from_config(config, tls, manager_config)
            }
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("truce-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Config(format!("cannot start the database client: {e}")))?;
        let rt = OwnedRuntime(Some(rt));
        let pool = {
            let _inside = rt.0.as_ref().map(|r| r.enter());
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Config(format!("cannot make a pool for {shown}: {e}")))?
        };
        let store = PgStore { pool, rt, shown };
        store.migrate()?;
        Ok(store)
    }

    /// The database, password masked.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.rt
            .block_on(self.pool.get())
            .map_err(|e| StoreError::Unavailable(format!("{}: {}", self.shown, causes(&e))))
    }

    /// Applies the migrations the database lacks, under the write lock, so
    /// servers starting together migrate once.
    fn migrate(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            // Asked first rather than CREATE TABLE IF NOT EXISTS, which
            // logs a notice at every start.
            if !tx.exists(
                "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'truce_schema'",
                &[],
            )? {
                tx.batch("CREATE TABLE truce_schema (version BIGINT NOT NULL)")?;
            }
            let version = match tx.one_i64("SELECT version FROM truce_schema")? {
                Some(v) => v,
                None => {
                    tx.execute("INSERT INTO truce_schema (version) VALUES (0)", &[])?;
                    0
                }
            };
            let mut version = version;
            while let Some(step) = schema::next_step(schema::POSTGRES, version)? {
                tx.batch(step)?;
                version += 1;
                tx.execute("UPDATE truce_schema SET version = ?1", &[Arg::Int(version)])?;
            }
            Ok(())
        })
    }

    /// Runs `f` in a write transaction holding [`WRITE_LOCK`]; commits if
    /// it returns `Ok`, rolls back otherwise.
    pub(super) fn write<T>(&self, f: impl FnOnce(&PgTx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut client = self.client()?;
        let tx = self.rt.block_on(client.transaction())?;
        let tx = PgTx { tx, rt: &self.rt };
        tx.execute("SELECT pg_advisory_xact_lock(?1)", &[Arg::Int(WRITE_LOCK)])?;
        let out = f(&tx)?;
        self.rt.block_on(tx.tx.commit())?;
        Ok(out)
    }

    /// Runs `f` in a read-only transaction that sees one snapshot
    /// (REPEATABLE READ), however long it reads.
    pub(super) fn read<T>(&self, f: impl FnOnce(&PgTx<'_>) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut client = self.client()?;
        let tx = self.rt.block_on(
            client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start(),
        )?;
        let tx = PgTx { tx, rt: &self.rt };
        let out = f(&tx)?;
        self.rt.block_on(tx.tx.commit())?;
        Ok(out)
    }
}

/// A transaction on a pooled connection.
pub struct PgTx<'a> {
    tx: deadpool_postgres::Transaction<'a>,
    rt: &'a OwnedRuntime,
}

/// The statement as PostgreSQL spells it: `?N` parameters become `$N`.
fn dollar(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('?') {
        return sql.into();
    }
    sql.replace('?', "$").into()
}

fn params<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
}

impl PgTx<'_> {
    pub(super) fn execute(&self, sql: &str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        self.rt
            .block_on(async {
                let st = self.tx.prepare_cached(&dollar(sql)).await?;
                self.tx.execute(&st, &params(args)).await
            })
            .map_err(StoreError::from)
    }

    /// Several statements without parameters (schema changes).
    pub(super) fn batch(&self, sql: &str) -> Result<(), StoreError> {
        Ok(self.rt.block_on(self.tx.batch_execute(sql))?)
    }

    fn exists(&self, sql: &str, args: &[Arg<'_>]) -> Result<bool, StoreError> {
        let mut found = false;
        self.each(sql, args, &mut |_| {
            found = true;
            Ok(())
        })?;
        Ok(found)
    }

    fn one_i64(&self, sql: &str) -> Result<Option<i64>, StoreError> {
        let mut out = None;
        self.each(sql, &[], &mut |r| {
            out = r.opt_i64(0)?;
            Ok(())
        })?;
        Ok(out)
    }

    pub(super) fn each(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        f: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        // The rows are in hand before `f` sees them: `f` may query again.
        let rows = self.rt.block_on(async {
            let st = self.tx.prepare_cached(&dollar(sql)).await?;
            self.tx.query(&st, &params(args)).await
        })?;
        for r in &rows {
            f(&PgRow(r))?;
        }
        Ok(())
    }

    pub(super) fn stream(
        &self,
        sql: &str,
        args: &[Arg<'_>],
        f: &mut dyn FnMut(&dyn Row) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let portal = self.rt.block_on(async {
            let st = self.tx.prepare_cached(&dollar(sql)).await?;
            self.tx.bind(&st, &params(args)).await
        })?;
        let mut size = STREAM_FIRST_PAGE;
        loop {
            let page = self.rt.block_on(self.tx.query_portal(&portal, size))?;
            for r in &page {
                f(&PgRow(r))?;
            }
            if page.len() < size as usize {
                return Ok(());
            }
            size = (size * 2).min(STREAM_PAGE);
        }
    }
}

impl ToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::FLOAT8 => (v as f64).to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                _ => Err(format!("an integer given for a parameter of type {ty}").into()),
            },
            Arg::Real(v) => match *ty {
                Type::FLOAT4 => (v as f32).to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Arg::Text(v) => v.to_sql(ty, out),
            Arg::Blob(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `to_sql`, against the type PostgreSQL inferred.
        true
    }

    to_sql_checked!();
}

struct PgRow<'a>(&'a tokio_postgres::Row);

impl PgRow<'_> {
    fn get<'r, T: postgres_types::FromSql<'r>>(&'r self, i: usize) -> Result<T, StoreError> {
        self.0.try_get(i).map_err(|_| StoreError::Column { index: i, problem: "a value of another type" })
    }

    fn ty(&self, i: usize) -> Result<&Type, StoreError> {
        self.0.columns().get(i).map(|c| c.type_()).ok_or(StoreError::Column { index: i, problem: "no such column" })
    }

    /// A column of another type than asked for, read as NULL if it is
    /// one: a bare `NULL AS x` in a query is typed text by PostgreSQL.
    fn null_or_wrong<T>(&self, i: usize) -> Result<Option<T>, StoreError> {
        let is_null = match *self.ty(i)? {
            Type::TEXT | Type::VARCHAR | Type::UNKNOWN => self.get::<Option<&str>>(i)?.is_none(),
            Type::INT8 => self.get::<Option<i64>>(i)?.is_none(),
            Type::BYTEA => self.get::<Option<&[u8]>>(i)?.is_none(),
            _ => false,
        };
        match is_null {
            true => Ok(None),
            false => Err(StoreError::Column { index: i, problem: "a value of another type" }),
        }
    }
}

impl Row for PgRow<'_> {
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, StoreError> {
        match *self.ty(i)? {
            Type::INT2 => Ok(self.get::<Option<i16>>(i)?.map(i64::from)),
            Type::INT4 => Ok(self.get::<Option<i32>>(i)?.map(i64::from)),
            Type::BOOL => Ok(self.get::<Option<bool>>(i)?.map(i64::from)),
            Type::INT8 => self.get(i),
            _ => self.null_or_wrong(i),
        }
    }

    fn opt_f64(&self, i: usize) -> Result<Option<f64>, StoreError> {
        match *self.ty(i)? {
            Type::FLOAT4 => Ok(self.get::<Option<f32>>(i)?.map(f64::from)),
            Type::INT8 => Ok(self.get::<Option<i64>>(i)?.map(|v| v as f64)),
            Type::FLOAT8 => self.get(i),
            _ => self.null_or_wrong(i),
        }
    }

    fn opt_str(&self, i: usize) -> Result<Option<&str>, StoreError> {
        match *self.ty(i)? {
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::UNKNOWN => self.get(i),
            _ => self.null_or_wrong(i),
        }
    }

    fn opt_bytes(&self, i: usize) -> Result<Option<&[u8]>, StoreError> {
        match *self.ty(i)? {
            Type::BYTEA => self.get(i),
            _ => self.null_or_wrong(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_never_reaches_a_message() {
        assert_eq!(redact("postgres://truce:s3cret@db.example/truce"), "postgres://truce:***@db.example/truce");
        assert_eq!(
            redact("postgres://truce@db.example/truce?sslmode=require"),
            "postgres://truce@db.example/truce?sslmode=require"
        );
        assert_eq!(redact("postgres://db.example/truce"), "postgres://db.example/truce");
    }

    #[test]
    fn sslrootcert_is_read_by_truce_not_by_the_driver() {
        let (url, root) = take_root_cert("postgres://u@h/d?sslmode=require&sslrootcert=/etc/ca.pem");
        assert_eq!((url.as_str(), root.as_deref()), ("postgres://u@h/d?sslmode=require", Some("/etc/ca.pem")));
        assert_eq!(take_root_cert("postgres://u@h/d"), ("postgres://u@h/d".to_string(), None));
    }

    #[test]
    fn parameters_are_numbered_the_postgresql_way() {
        assert_eq!(dollar("SELECT a FROM t WHERE b = ?1 AND c = ?12"), "SELECT a FROM t WHERE b = $1 AND c = $12");
    }
}
