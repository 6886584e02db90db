//! The real `truce-server` binary in a temporary data dir: `init`, then
//! `run` on `127.0.0.1:0`. The address is the one the server reports in
//! its `listening addr=…` log line, so no port is guessed and none can be
//! taken by someone else between a check and the bind. A restart comes
//! back on that same address, as a real server does for the agents that
//! know it. `Drop` kills the process; the data dir goes with the value.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::pki::Pki;
use crate::run::{bin, run, Ran};

/// How long the server may take to start listening, or to exit.
const PATIENCE: Duration = Duration::from_secs(30);

/// A server data dir, and the `truce-server run` process while it runs.
pub struct TestServer {
    /// The data dir (`--data-dir`), removed on drop.
    data: TempDir,
    /// Where it listened the first time, and listens on every restart.
    addr: Option<SocketAddr>,
    /// The process while it runs.
    child: Option<Child>,
    /// Every line the server wrote to stderr, across restarts.
    log: Arc<Mutex<Vec<String>>>,
    /// `--database`: a PostgreSQL URL, when the store is not the data
    /// dir's SQLite file.
    database: Option<String>,
}

impl TestServer {
    /// `truce-server init` in a new data dir; not started.
    pub fn init() -> TestServer {
        TestServer::init_on(None)
    }

    /// [`TestServer::init`] with the store in the PostgreSQL database at
    /// `database` (`--database`), or in the data dir's SQLite file.
    pub fn init_on(database: Option<&str>) -> TestServer {
        let data = tempfile::tempdir().expect("a temporary data dir");
        let database = database.map(str::to_string);
        let s = TestServer { data, addr: None, child: None, log: Arc::default(), database };
        s.cmd(&["init"]).expect_ok();
        s
    }

    /// A second server of the same deployment: its own data dir, the same
    /// database as `other` and copies of `other`'s receipt key and log key
    /// (servers behind one address sign with one key, and one database
    /// holds one log), as an operator sets one up: no `init`, which would
    /// make keys of its own.
    pub fn init_beside(other: &TestServer) -> TestServer {
        let data = tempfile::tempdir().expect("a temporary data dir");
        for key in ["server.key", "log.key"] {
            std::fs::copy(other.dir().join(key), data.path().join(key)).expect("copy a key");
        }
        let database = other.database.clone();
        TestServer { data, addr: None, child: None, log: Arc::default(), database }
    }

    /// The `--database` flag this server runs with, if any.
    fn database_args(&self) -> Vec<&str> {
        self.database.iter().flat_map(|u| ["--database", u.as_str()]).collect()
    }

    /// Runs a `truce-server` subcommand against this data dir and database
    /// (the server may be running: readers do not block it).
    pub fn cmd(&self, args: &[&str]) -> Ran {
        run(Command::new(bin("truce-server"))
            .arg("--data-dir")
            .arg(self.dir())
            .args(self.database_args())
            .args(args)
            .env("RUST_LOG", "warn"))
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        self.data.path()
    }

    /// The data dir as a string, for command lines.
    pub fn dir_str(&self) -> &str {
        self.dir().to_str().expect("a UTF-8 temporary path")
    }

    /// Enrols a device key (64 hex) under a name.
    pub fn enrol(&self, key_hex: &str, name: &str) {
        self.cmd(&["device", "add", key_hex, "--name", name]).expect_ok();
    }

    /// Ids the server holds with a status (`verified`, `quarantined`,
    /// `rejected`, `all`), every version, from `export --format jsonl`.
    pub fn ids(&self, status: &str) -> Vec<String> {
        json_ids(&self.cmd(&["export", "--format", "jsonl", "--status", status, "--history"]).expect_ok())
    }

    /// Starts `truce-server run` with the PKI's CA, server certificate and
    /// CRL and `extra` flags; returns once it listens.
    pub fn start(&mut self, pki: &Pki, extra: &[&str]) {
        self.start_with_env(pki, extra, &[]);
    }

    /// [`TestServer::start`] with environment variables set.
    pub fn start_with_env(&mut self, pki: &Pki, extra: &[&str], env: &[(&str, &str)]) {
        let listen = self.addr.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        let mut args: Vec<OsString> = vec!["--listen".into(), listen.into(), "--ca".into(), pki.file("ca.pem").into()];
        args.extend(["--cert".into(), pki.file("server.pem").into(), "--key".into(), pki.file("server.key").into()]);
        args.extend(["--crl".into(), pki.file("crl.pem").into()]);
        args.extend(extra.iter().map(OsString::from));
        self.start_bare(&args, env);
    }

    /// Starts `truce-server run` with only `args` after `run` (no PKI
    /// flags, no `--listen`: for settings from a config file or the
    /// environment) and `env`; returns once it listens.
    pub fn start_bare(&mut self, args: &[OsString], env: &[(&str, &str)]) {
        assert!(self.child.is_none(), "the server is already running");
        let listen = "(from its settings)";
        let mut child = Command::new(bin("truce-server"))
            .arg("--data-dir")
            .arg(self.dir())
            .args(self.database_args())
            .arg("run")
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn truce-server");
        let stderr = child.stderr.take().expect("the server's stderr");
        let (tx, rx) = mpsc::channel();
        let sink = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // Logged before the address is passed on, so whoever gets
                // the address finds the whole line in the log.
                let addr = line
                    .contains("listening")
                    .then(|| {
                        line.split("addr=").nth(1).map(|a| a.split_whitespace().next().unwrap_or_default().to_string())
                    })
                    .flatten();
                sink.lock().expect("the server log").push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let addr = loop {
            match rx.recv_timeout(Duration::from_millis(20)) {
                Ok(a) => break a.parse().unwrap_or_else(|e| panic!("listening address {a:?}: {e}")),
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        // The reader thread may still be copying the last lines.
                        std::thread::sleep(Duration::from_millis(100));
                        panic!("truce-server exited at start ({status}) on {listen}:\n{}", self.log());
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!("truce-server did not listen on {listen} within {PATIENCE:?}:\n{}", self.log());
                }
            }
        };
        self.addr = Some(addr);
        self.child = Some(child);
    }

    /// Where it listens: the port it picked at its first start.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the server has no address before its first start (it binds 127.0.0.1:0)")
    }

    /// Where it serves metrics (`run --metrics`), from its `listening …
    /// metrics=ADDR` log line, at its latest start.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        let log = self.log.lock().expect("the server log");
        let line = log.iter().rev().find(|l| l.contains("listening"))?;
        line.split(" metrics=").nth(1)?.split_whitespace().next()?.parse().ok()
    }

    /// The value of one sample (name and labels, as
    /// `truce_server_connections{state="unauthenticated"}`) in a scrape of
    /// its metrics listener ([`TestServer::metrics_addr`]).
    pub fn metric(&self, series: &str) -> f64 {
        use std::io::{Read, Write};
        let addr = self.metrics_addr().expect("the server serves no metrics: start it with --metrics 127.0.0.1:0");
        let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics listener");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: truce\r\n\r\n").expect("send the metrics request");
        let mut scrape = String::new();
        s.read_to_string(&mut scrape).expect("read the metrics answer");
        metric_sample(&scrape, series).unwrap_or_else(|| panic!("no sample {series} in:\n{scrape}"))
    }

    /// What the server logged so far, across restarts.
    pub fn log(&self) -> String {
        self.log.lock().expect("the server log").join("\n")
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

    /// Sends SIGTERM and returns at once.
    pub fn sigterm(&self) {
        signal(self.child.as_ref().expect("the server is running"), "TERM");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait()
    }

    /// Waits for the process to exit by itself (killing it after
    /// 30 seconds, and failing).
    pub fn wait(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("the server is running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = c.try_wait().expect("wait for truce-server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("truce-server did not exit within {PATIENCE:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `id` of every line of JSON Lines output (`truce-server export
/// --format jsonl`, `truce-agent --json list`), in order.
pub fn json_ids(json_lines: &str) -> Vec<String> {
    json_lines
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"));
            v["id"].as_str().unwrap_or_else(|| panic!("no id in the JSON line: {l}")).to_string()
        })
        .collect()
}

/// Sends a signal (`"TERM"`, `"INT"`, `"KILL"`) to a child process. std can
/// only send SIGKILL and calling `kill(2)` through libc needs `unsafe`,
/// which this project forbids, so this runs the `kill` command.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
    assert!(status.map(|s| s.success()).unwrap_or(false), "kill -{name} {} failed", child.id());
}

/// The value of the sample `series` (name and labels) in a scrape in the
/// Prometheus text format, if it has one.
pub fn metric_sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
}
