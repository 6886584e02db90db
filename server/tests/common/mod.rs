//! The server's own test support, on top of `truce-testkit` (the PKI, the
//! `truce-server` process as [`TestServer`], the binary runner and the
//! signing [`Device`], re-exported here): an in-process server on
//! 127.0.0.1:0, real rustls clients that speak the wire protocol, and
//! readers of a data dir. Every helper that owns files or processes cleans
//! up in `Drop`.

#![allow(dead_code)] // each test module uses a different part

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use truce_server::evidence::EvidenceLimits;
use truce_server::paths::DataDir;
use truce_server::store::{Arg, Database};
use truce_server::{Config, Limits, Store};
use truce_shared::wire::{self, Message, Status, PROTOCOL_VERSION};
use truce_shared::{limits, Bytes32, SignedReport};
pub use truce_testkit::{run, tampered, Device, Pki, Ran, TestPostgres, TestServer};

/// How long a test waits for anything that should be quick.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Logs of in-process servers go to the test's captured output.
pub fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}

// ---------------------------------------------------------------- databases

/// Which database a test's server keeps its store in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// The data dir's SQLite file.
    Sqlite,
    /// A real PostgreSQL server of the test's own.
    Postgres,
}

/// The database of one test: the data dir's file, or a PostgreSQL server
/// started for it (stopped and removed when this is dropped).
pub struct TestDb {
    _server: Option<TestPostgres>,
    url: Option<String>,
}

impl TestDb {
    /// Starts what `db` needs.
    pub fn new(db: Db) -> TestDb {
        match db {
            Db::Sqlite => TestDb { _server: None, url: None },
            Db::Postgres => {
                let server = TestPostgres::start();
                let url = server.fresh_database();
                TestDb { _server: Some(server), url: Some(url) }
            }
        }
    }

    /// `--database` for a data dir, if not its own file.
    pub fn database(&self) -> Option<Database> {
        self.url.clone().map(Database::Postgres)
    }

    /// The command-line flags that point `truce-server` at it.
    pub fn args(&self) -> Vec<String> {
        self.url.iter().flat_map(|u| ["--database".to_string(), u.clone()]).collect()
    }
}

/// Declares `mod NAME { fn sqlite(); fn postgres(); }`: the test body
/// `fn NAME(db: Db)` run once on each database.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::common::Db::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name($crate::common::Db::Postgres)
            }
        }
    )*};
}

/// [`on_both_databases`] for async test bodies.
#[macro_export]
macro_rules! on_both_databases_async {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Db::Postgres).await
            }
        }
    )*};
}

// ---------------------------------------------------------------- PKI

/// The server's and a good agent's TLS configuration for a [`Pki`], built
/// by the server library as `truce-server run` builds it.
pub trait PkiTls {
    /// The server's TLS policy, exactly as `truce-server run` builds it.
    fn server_tls(&self) -> Arc<rustls::ServerConfig>;
    /// A well-behaved agent's client config for `name`.
    fn client_tls(&self, name: &str) -> Arc<ClientConfig>;
}

impl PkiTls for Pki {
    fn server_tls(&self) -> Arc<rustls::ServerConfig> {
        truce_server::tls::server_config(
            &self.file("ca.pem"),
            &self.file("server.pem"),
            &self.file("server.key"),
            &[self.file("crl.pem")],
        )
        .expect("server tls config")
    }

    fn client_tls(&self, name: &str) -> Arc<ClientConfig> {
        client_tls(self, Some(name), &[&rustls::version::TLS13], vec![wire::ALPN.to_vec()])
    }
}

/// A client config trusting `pki`'s CA: with or without a client
/// certificate, with these TLS versions and ALPN offers.
pub fn client_tls(
    pki: &Pki,
    cert: Option<&str>,
    versions: &[&'static SupportedProtocolVersion],
    alpn: Vec<Vec<u8>>,
) -> Arc<ClientConfig> {
    let provider = Arc::new(truce_shared::tls::provider());
    let mut roots = RootCertStore::empty();
    for c in truce_server::tls::load_certs(&pki.file("ca.pem")).expect("ca") {
        roots.add(c).expect("add root");
    }
    let b = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let mut cfg = match cert {
        Some(name) => b
            .with_client_auth_cert(
                truce_server::tls::load_certs(&pki.file(&format!("{name}.pem"))).expect("client cert"),
                truce_server::tls::load_key(&pki.file(&format!("{name}.key"))).expect("client key"),
            )
            .expect("client auth"),
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn;
    Arc::new(cfg)
}

// ---------------------------------------------------------------- servers

/// Small limits so the abuse tests run in seconds.
pub fn quick_limits() -> Limits {
    Limits {
        max_frame: 64 * 1024,
        max_batch: 64,
        max_connections: 256,
        handshake_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

/// A real server running in this test's tokio runtime, on 127.0.0.1:0, with
/// its own data dir (the binary is [`TestServer`]).
pub struct InProcessServer {
    handle: Option<truce_server::Handle>,
    data: TempDir,
    db: TestDb,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl InProcessServer {
    /// `init`s a data dir and starts a server with `pki`'s certificates.
    pub async fn start(pki: &Pki, limits: Limits) -> InProcessServer {
        InProcessServer::start_on(pki, limits, Db::Sqlite).await
    }

    /// [`InProcessServer::start`] with its store in `db`.
    pub async fn start_on(pki: &Pki, limits: Limits, db: Db) -> InProcessServer {
        InProcessServer::start_configured(pki, limits, db, EvidenceLimits::default()).await
    }

    /// [`InProcessServer::start`] with these limits on evidence.
    pub async fn start_with_evidence(pki: &Pki, limits: Limits, evidence: EvidenceLimits) -> InProcessServer {
        InProcessServer::start_configured(pki, limits, Db::Sqlite, evidence).await
    }

    async fn start_configured(pki: &Pki, limits: Limits, db: Db, evidence: EvidenceLimits) -> InProcessServer {
        init_logs();
        let data = tempfile::tempdir().expect("tempdir");
        let db = TestDb::new(db);
        let dir = DataDir::new(data.path()).with_database(db.database());
        // Opening a PostgreSQL store blocks: not on the runtime's threads.
        let config = tokio::task::block_in_place(|| {
            dir.init(truce_shared::log::DEFAULT_MISSION).expect("init");
            Config { evidence, ..Config::new(&dir, pki.server_tls(), limits).expect("config") }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let handle = truce_server::spawn(listener, config).expect("spawn");
        InProcessServer { addr: handle.addr(), data, db, handle: Some(handle) }
    }

    /// The data dir (for the CLI's `--data-dir`).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Opens the store beside the running server (readers don't block it).
    pub fn store(&self) -> Store {
        DataDir::new(self.data.path()).with_database(self.db.database()).open_store().expect("open store")
    }

    /// The server's log key, which signs its receipts and checkpoints.
    pub fn server_key(&self) -> Bytes32 {
        self.store().log_key().expect("the log key").public()
    }

    /// Runs a `truce-server` command against this data dir and database.
    pub fn cli(&self, args: &[&str]) -> Ran {
        let db = self.db.args();
        let mut all: Vec<&str> = db.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        cli(self.data.path(), &all)
    }

    /// Shuts down as SIGTERM would and waits.
    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Runs the `truce-server` binary with `--data-dir dir`.
pub fn cli(dir: &Path, args: &[&str]) -> Ran {
    run(Command::new(env!("CARGO_BIN_EXE_truce-server")).arg("--data-dir").arg(dir).args(args).env("RUST_LOG", "warn"))
}

/// Stdout of a command that must succeed (prints everything if not).
pub fn ok(out: Ran) -> String {
    out.expect_ok()
}

/// Stderr of a command that must fail (prints everything if not).
pub fn fails(out: Ran) -> String {
    out.expect_fail()
}

// ---------------------------------------------------------------- clients

/// A TLS connection to the server, before any protocol message.
pub async fn connect(addr: SocketAddr, config: Arc<ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("server name");
    tokio::time::timeout(PATIENCE, TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))?
}

/// Connects, says Hello and returns the server's first answer, or why
/// there was none. In TLS 1.3 a refused client certificate shows up only
/// here, on the first read, so this is how a refusal is observed.
pub async fn first_answer(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<Message, String> {
    let mut tls = connect(addr, config).await.map_err(|e| format!("handshake: {e}"))?;
    let hello = Message::Hello { protocol: PROTOCOL_VERSION, agent_version: "test".into(), device: [0; 32] };
    wire::write_message(&mut tls, &hello, limits::MAX_FRAME).await.map_err(|e| format!("write: {e}"))?;
    match tokio::time::timeout(PATIENCE, wire::read_message(&mut tls, limits::MAX_FRAME)).await {
        Err(_) => Err("no answer".into()),
        Ok(Err(e)) => Err(format!("read: {e}")),
        Ok(Ok(None)) => Err("closed".into()),
        Ok(Ok(Some(m))) => Ok(m),
    }
}

/// An agent session: Hello done, Welcome received.
pub struct Client {
    /// The TLS stream.
    pub tls: TlsStream<TcpStream>,
    /// From Welcome: the log key.
    pub server_key: Bytes32,
    /// From Welcome.
    pub max_batch: u32,
    /// From Welcome.
    pub max_frame: u32,
    next_batch: u64,
}

/// One Ack.
#[derive(Debug, Clone)]
pub struct Acked {
    /// The batch number.
    pub batch: u64,
    /// Per report.
    pub results: Vec<(Bytes32, Status)>,
    /// Per report, the index of the log entry that records it.
    pub entries: Vec<u64>,
    /// The signed checkpoint the receipt names, opened.
    pub checkpoint: truce_shared::log::Checkpoint,
}

/// The ids of results the server now holds (stored or already stored).
pub fn held_ids(results: &[(Bytes32, Status)]) -> Vec<Bytes32> {
    results.iter().filter(|(_, s)| s.is_held()).map(|(id, _)| *id).collect()
}

impl Acked {
    /// Just the statuses.
    pub fn statuses(&self) -> Vec<Status> {
        self.results.iter().map(|(_, s)| s.clone()).collect()
    }
}

impl Client {
    /// Connects with `config` and opens a session.
    pub async fn open(addr: SocketAddr, config: Arc<ClientConfig>) -> Client {
        let mut tls = connect(addr, config).await.expect("tls handshake");
        let hello = Message::Hello { protocol: PROTOCOL_VERSION, agent_version: "test/1".into(), device: [1; 32] };
        wire::write_message(&mut tls, &hello, limits::MAX_FRAME).await.expect("hello");
        match wire::read_message(&mut tls, limits::MAX_FRAME).await.expect("welcome") {
            Some(Message::Welcome { log_key: server_key, max_batch, max_frame, .. }) => {
                Client { tls, server_key, max_batch, max_frame, next_batch: 1 }
            }
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Sends one Submit without waiting; returns its batch number.
    pub async fn send(&mut self, reports: Vec<SignedReport>) -> u64 {
        let batch = self.next_batch;
        self.next_batch += 1;
        wire::write_message(&mut self.tls, &Message::Submit { batch, reports }, limits::MAX_FRAME)
            .await
            .expect("submit");
        batch
    }

    /// Reads the next Ack and checks its receipt against the server key.
    pub async fn ack(&mut self) -> Option<Acked> {
        match tokio::time::timeout(PATIENCE, wire::read_message(&mut self.tls, limits::MAX_FRAME)).await {
            Ok(Ok(Some(Message::Ack { batch, received_at, results, checkpoint, signature }))) => {
                let body = truce_shared::log::ReceiptBody {
                    batch,
                    received_at,
                    results: results.as_slice().into(),
                    checkpoint: checkpoint.as_str().into(),
                };
                assert!(
                    truce_shared::log::verify_receipt(&self.server_key, &body, &signature),
                    "the receipt must verify with the Welcome's log key"
                );
                let checkpoint = truce_shared::log::open_checkpoint(&checkpoint, &self.server_key)
                    .expect("the checkpoint is signed by the log key");
                assert!(results.iter().all(|o| o.entry < checkpoint.size), "the checkpoint includes every entry");
                let entries = results.iter().map(|o| o.entry).collect();
                let results = results.into_iter().map(|o| (o.id, o.status)).collect();
                Some(Acked { batch, results, entries, checkpoint })
            }
            Ok(Ok(Some(other))) => panic!("expected Ack, got {other:?}"),
            Ok(Ok(None)) | Ok(Err(_)) => None,
            Err(_) => panic!("no Ack within {PATIENCE:?}"),
        }
    }

    /// Submits and waits for the Ack.
    pub async fn submit(&mut self, reports: Vec<SignedReport>) -> Acked {
        let n = reports.len();
        let batch = self.send(reports).await;
        let ack = self.ack().await.expect("an Ack");
        assert_eq!(ack.batch, batch);
        assert_eq!(ack.results.len(), n);
        ack
    }

    /// Says Bye and closes.
    pub async fn bye(mut self) {
        let _ = wire::write_message(&mut self.tls, &Message::Bye, limits::MAX_FRAME).await;
        let _ = self.tls.shutdown().await;
    }

    /// Whether the server has closed the connection (EOF or error on read)
    /// within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        matches!(
            tokio::time::timeout(within, wire::read_message(&mut self.tls, limits::MAX_FRAME)).await,
            Ok(Ok(None)) | Ok(Err(_))
        )
    }
}

// ---------------------------------------------------------------- devices

/// The SQLite file of a data dir, opened with plain rusqlite (not through
/// the server's `Store`), the way an investigator would after a crash.
pub fn open_db(data: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(DataDir::new(data).db_file()).expect("open the database")
}

/// Every report id in the database of `data`.
pub fn stored_ids(data: &Path) -> std::collections::BTreeSet<Bytes32> {
    let db = open_db(data);
    let mut q = db.prepare("SELECT id FROM reports").expect("query");
    let ids = q.query_map([], |r| r.get::<_, Vec<u8>>(0)).expect("ids");
    ids.map(|id| id.expect("row").try_into().expect("32-byte id")).collect()
}

/// `truce-server --json stats` for a data dir.
pub fn stats_json(data: &Path) -> serde_json::Value {
    serde_json::from_str(ok(cli(data, &["--json", "stats"])).trim()).expect("stats JSON")
}

/// Rows in the store with this id (must be 0 or 1).
pub fn rows_with_id(store: &Store, id: &Bytes32) -> i64 {
    let n = store.read(|tx| tx.count("SELECT COUNT(*) FROM reports WHERE id = ?1", &[Arg::Blob(id)])).expect("count");
    n as i64
}

/// Waits until `f` holds, polling.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
