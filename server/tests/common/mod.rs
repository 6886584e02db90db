//! Shared test support: a mission PKI from `truce-certs`, a real server
//! (in-process on 127.0.0.1:0, or the real binary), real rustls clients that
//! speak the wire protocol, and devices that sign chained reports. Every
//! helper that owns files or processes cleans up in `Drop`.

#![allow(dead_code)] // each test module uses a different part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use truce_server::paths::DataDir;
use truce_server::{Config, Limits, Store};
use truce_shared::wire::{self, Message, Receipt, Status, PROTOCOL_VERSION};
use truce_shared::{
    limits, signing, Basis, Bytes32, Category, Envelope, Observation, Position, Signature64, SignedReport,
    ENVELOPE_VERSION,
};

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

// ---------------------------------------------------------------- PKI

/// A mission PKI in a temporary directory, made by `truce-certs`.
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    /// CA, server certificate (localhost, 127.0.0.1), empty CRL, and one
    /// valid client certificate per name.
    pub fn new(clients: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        truce_certs::init(dir.path(), &[]).expect("truce-certs init");
        let pki = Pki { dir };
        for c in clients {
            pki.client(c, truce_certs::ClientOptions::default());
        }
        pki
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file in it (`ca.pem`, `laptop.key`…).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Issues another client certificate.
    pub fn client(&self, name: &str, opts: truce_certs::ClientOptions) {
        truce_certs::client(self.dir.path(), name, opts).expect("truce-certs client");
    }

    /// Puts a client on the CRL (a server started afterwards refuses it).
    pub fn revoke(&self, name: &str) {
        truce_certs::revoke(self.dir.path(), name).expect("truce-certs revoke");
    }

    /// The server's TLS policy, exactly as `truce-server run` builds it.
    pub fn server_tls(&self) -> Arc<rustls::ServerConfig> {
        truce_server::tls::server_config(
            &self.file("ca.pem"),
            &self.file("server.pem"),
            &self.file("server.key"),
            &[self.file("crl.pem")],
        )
        .expect("server tls config")
    }

    /// A well-behaved agent's client config for `name`.
    pub fn client_tls(&self, name: &str) -> Arc<ClientConfig> {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
/// its own data dir.
pub struct TestServer {
    data: TempDir,
    handle: Option<truce_server::Handle>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl TestServer {
    /// `init`s a data dir and starts a server with `pki`'s certificates.
    pub async fn start(pki: &Pki, limits: Limits) -> TestServer {
        init_logs();
        let data = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(data.path());
        dir.init().expect("init");
        let config = Config::new(&dir, pki.server_tls(), limits).expect("config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let handle = truce_server::spawn(listener, config).expect("spawn");
        TestServer { addr: handle.addr(), data, handle: Some(handle) }
    }

    /// The data dir (for the CLI's `--data-dir`).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Opens the store beside the running server (WAL: readers don't block it).
    pub fn store(&self) -> Store {
        DataDir::new(self.data.path()).open_store().expect("open store")
    }

    /// The server's receipt key.
    pub fn server_key(&self) -> Bytes32 {
        DataDir::new(self.data.path()).load_key().expect("key").verifying_key().to_bytes()
    }

    /// Runs a `truce-server` command against this data dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(self.data.path(), args)
    }

    /// Shuts down as SIGTERM would and waits.
    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Runs the `truce-server` binary with `--data-dir dir`.
pub fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_truce-server"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run truce-server")
}

/// Stdout of a command that must succeed (prints everything if not).
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Stderr of a command that must fail.
pub fn fails(out: Output) -> String {
    assert!(!out.status.success(), "command succeeded but should not:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).expect("utf-8 stderr")
}

/// The real `truce-server run` binary, on 127.0.0.1 and a port it chose.
pub struct ServerProcess {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts `truce-server --data-dir data run --listen 127.0.0.1:0 …` with
    /// `pki`'s files and `extra` flags; returns once it listens.
    pub fn start(data: &Path, pki: &Pki, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_on(data, pki, "127.0.0.1:0", extra)
    }

    /// [`ServerProcess::start`] on a given address (a restart on the port
    /// the agents already know).
    pub fn start_on(data: &Path, pki: &Pki, listen: &str, extra: &[&str]) -> ServerProcess {
        ServerProcess::start_with(data, pki, listen, extra, &[])
    }

    /// [`ServerProcess::start_on`] with environment variables set.
    pub fn start_with(data: &Path, pki: &Pki, listen: &str, extra: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_truce-server"))
            .arg("--data-dir")
            .arg(data)
            .args(["run", "--listen", listen, "--ca"])
            .arg(pki.file("ca.pem"))
            .arg("--cert")
            .arg(pki.file("server.pem"))
            .arg("--key")
            .arg(pki.file("server.key"))
            .arg("--crl")
            .arg(pki.file("crl.pem"))
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn truce-server");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let _ = tx.send(addr.trim().to_string());
                }
                sink.lock().expect("log").push(line);
            }
        });
        let addr = match rx.recv_timeout(PATIENCE) {
            Ok(a) => a.parse().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // The reader thread may still be copying the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!("truce-server did not start listening:\n{}", log.lock().expect("log").join("\n"));
            }
        };
        ServerProcess { child: Some(child), addr, log }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// The process id (for `kill`).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, the crash: returns once the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM (and returns at once).
    pub fn sigterm(&self) {
        let c = self.child.as_ref().expect("running");
        let sent = Command::new("kill").args(["-TERM", &c.id().to_string()]).status().expect("kill -TERM");
        assert!(sent.success());
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("truce-server did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
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
    /// From Welcome.
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
    /// The receipt.
    pub receipt: Receipt,
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
            Some(Message::Welcome { server_key, max_batch, max_frame, .. }) => {
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
            Ok(Ok(Some(Message::Ack { batch, results, receipt }))) => {
                let held = wire::held_ids(&results);
                assert!(
                    signing::verify_receipt(&self.server_key, receipt.server_time, &held, &receipt.signature),
                    "the receipt must verify with the Welcome's server key"
                );
                Some(Acked { batch, results, receipt })
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

/// A plain observation.
pub fn observation(description: &str) -> Observation {
    Observation {
        observed_at: 1_795_338_900_000,
        observed_until: None,
        position: Position { lat: 48.0159, lon: 37.8029, accuracy_m: Some(12) },
        bearing_deg: Some(337),
        distance_m: Some((5000, 7000)),
        category: Category::Shelling,
        effect: None,
        weapon: None,
        count: None,
        basis: Basis::Heard,
        description: description.into(),
        attachments: vec![],
    }
}

/// A laptop's report key and the head of its chain.
pub struct Device {
    /// The key.
    pub key: SigningKey,
    /// The last seq signed.
    pub seq: u64,
    /// The last id signed.
    pub head: Bytes32,
}

impl Device {
    /// A new random device.
    pub fn new() -> Device {
        Device { key: signing::generate_key(), seq: 0, head: [0; 32] }
    }

    /// A device with a fixed key (seed bytes all `seed`), so a failing
    /// test names the same keys and ids on every run.
    pub fn fixed(seed: u8) -> Device {
        Device { key: SigningKey::from_bytes(&[seed; 32]), seq: 0, head: [0; 32] }
    }

    /// The public key.
    pub fn public(&self) -> Bytes32 {
        self.key.verifying_key().to_bytes()
    }

    /// The public key, hex, as `device add` takes it.
    pub fn hex(&self) -> String {
        hex::encode(self.public())
    }

    /// The envelope this device would sign at `seq` after `prev`.
    pub fn envelope(&self, seq: u64, prev: Bytes32, description: &str) -> Envelope {
        Envelope {
            version: ENVELOPE_VERSION,
            device: self.public(),
            seq,
            prev,
            recorded_at: 1_795_338_960_000,
            amends: None,
            observation: observation(description),
        }
    }

    /// Signs the next report of the chain.
    pub fn next(&mut self, description: &str) -> SignedReport {
        let r = truce_shared::sign(&self.key, &self.envelope(self.seq + 1, self.head, description)).expect("sign");
        self.seq += 1;
        self.head = r.id();
        r
    }

    /// `n` next reports.
    pub fn batch(&mut self, n: usize, description: &str) -> Vec<SignedReport> {
        (0..n).map(|i| self.next(&format!("{description} {i}"))).collect()
    }

    /// A different report at `seq` (after `prev`), without moving the head:
    /// an equivocation.
    pub fn at(&self, seq: u64, prev: Bytes32, description: &str) -> SignedReport {
        truce_shared::sign(&self.key, &self.envelope(seq, prev, description)).expect("sign")
    }

    /// Signs arbitrary bytes as a report body by hand, skipping every check
    /// `sign` makes: for forged, non-canonical and out-of-range reports.
    /// The domain prefix is spelled out as DESIGN §2.2 gives it, so these
    /// tests also pin it.
    pub fn sign_raw(&self, body: Vec<u8>) -> SignedReport {
        let mut msg = b"truce/report/v1\0".to_vec();
        msg.extend_from_slice(&body);
        SignedReport { body, signature: Signature64(self.key.sign(&msg).to_bytes()) }
    }
}

/// The report with one bit of its signature flipped.
pub fn tampered(r: &SignedReport) -> SignedReport {
    let mut t = r.clone();
    t.signature.0[7] ^= 0x10;
    t
}

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
    store.conn().query_row("SELECT COUNT(*) FROM reports WHERE id = ?1", [&id[..]], |r| r.get(0)).expect("count")
}

/// Waits until `f` holds, polling.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
