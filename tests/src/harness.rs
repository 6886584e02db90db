//! Runs the real binaries against each other: a PKI from `truce-certs`, a
//! `truce-server` process on loopback, `truce-agent` processes in their own
//! data dirs. Everything lives in temporary directories and every process is
//! killed in `Drop`, so a failing test leaves nothing behind.
//!
//! On failure, [`Cmd`] output carries the command line, stdout and stderr,
//! the way ripgrep's test utilities do.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Path of a workspace binary (`truce-agent`, `truce-server`, `truce-certs`)
/// built in the same profile as the running executable. If the binaries are
/// missing (say `cargo run -p truce-tests --bin demo` on a fresh clone) they
/// are built once with the same cargo.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        let mut dir = exe.parent().expect("exe dir").to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let all_there = ["truce-agent", "truce-server", "truce-certs"].iter().all(|b| dir.join(b).exists());
        if !all_there {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "truce-agent", "-p", "truce-server", "-p", "truce-certs"]);
            if dir.ends_with("release") {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build for the truce binaries");
            assert!(status.success(), "building the truce binaries failed");
        }
        dir
    });
    dir.join(name)
}

/// A finished command: what ran and what it printed.
pub struct Cmd {
    /// The command line, for messages.
    pub line: String,
    /// Its output.
    pub out: Output,
}

impl Cmd {
    /// Runs `program args…` with `envs`, waiting for it.
    pub fn run(program: &Path, args: &[&str]) -> Cmd {
        let line = format!("{} {}", program.display(), args.join(" "));
        let out = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("could not run {line}: {e}"));
        Cmd { line, out }
    }

    /// Stdout as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// Stderr as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }

    /// Panics with everything printed unless it exited 0; returns stdout.
    pub fn expect_ok(self) -> String {
        assert!(self.ok(), "{}", self.describe("expected success"));
        self.stdout()
    }

    /// Panics unless it failed; returns stderr.
    pub fn expect_fail(self) -> String {
        assert!(!self.ok(), "{}", self.describe("expected failure"));
        self.stderr()
    }

    /// A full account for a failing assertion.
    pub fn describe(&self, what: &str) -> String {
        format!(
            "{what}\ncommand: {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
            self.line,
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }
}

/// A throwaway mission PKI made by `truce-certs`.
pub struct Pki {
    /// Holds ca.pem, server.pem/key, crl.pem and NAME.pem/key.
    pub dir: TempDir,
}

impl Pki {
    /// `truce-certs init`, then a client certificate per name.
    pub fn new(clients: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().to_str().expect("utf-8 temp path");
        Cmd::run(&bin("truce-certs"), &["init", "--out", out]).expect_ok();
        let pki = Pki { dir };
        for name in clients {
            pki.client(name);
        }
        pki
    }

    /// `truce-certs client NAME`.
    pub fn client(&self, name: &str) {
        Cmd::run(&bin("truce-certs"), &["client", name, "--out", self.path_str()]).expect_ok();
    }

    /// `truce-certs revoke NAME`.
    pub fn revoke(&self, name: &str) {
        Cmd::run(&bin("truce-certs"), &["revoke", name, "--out", self.path_str()]).expect_ok();
    }

    /// The folder, as a string for command lines.
    pub fn path_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    /// A file in the folder, as a string.
    pub fn file(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A server data dir, and the server process when it runs.
pub struct Server {
    /// The data dir (`--data-dir`).
    pub dir: TempDir,
    /// Where it listens (the same port across restarts).
    pub addr: SocketAddr,
    child: Option<Child>,
    /// Lines the running server wrote to stderr, for failure messages.
    log: Option<mpsc::Receiver<String>>,
}

impl Server {
    /// `truce-server init` in a new data dir; not started.
    pub fn init() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Server { dir, addr: SocketAddr::from(([127, 0, 0, 1], free_port())), child: None, log: None };
        s.cmd(&["init"]).expect_ok();
        s
    }

    /// Runs a `truce-server` subcommand against this data dir.
    pub fn cmd(&self, args: &[&str]) -> Cmd {
        let mut all = vec!["--data-dir", self.dir_str()];
        all.extend_from_slice(args);
        Cmd::run(&bin("truce-server"), &all)
    }

    /// Ids the server holds with a status (`verified`, `quarantined`,
    /// `rejected`, `all`), every version, from `export --format jsonl`.
    pub fn ids(&self, status: &str) -> Vec<String> {
        let out = self.cmd(&["export", "--format", "jsonl", "--status", status, "--history"]).expect_ok();
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("export line is JSON");
                v["id"].as_str().expect("id").to_string()
            })
            .collect()
    }

    /// The data dir as a string.
    pub fn dir_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    /// Enrols a device key.
    pub fn enrol(&self, key_hex: &str, name: &str) {
        self.cmd(&["device", "add", key_hex, "--name", name]).expect_ok();
    }

    /// Starts `truce-server run` with the PKI's server certificate and CRL and
    /// waits until it accepts TCP connections.
    pub fn start(&mut self, pki: &Pki, extra: &[&str]) {
        assert!(self.child.is_none(), "server already running");
        let listen = self.addr.to_string();
        let (ca, cert, key, crl) =
            (pki.file("ca.pem"), pki.file("server.pem"), pki.file("server.key"), pki.file("crl.pem"));
        let mut args = vec![
            "--data-dir",
            self.dir_str(),
            "run",
            "--listen",
            &listen,
            "--ca",
            &ca,
            "--cert",
            &cert,
            "--key",
            &key,
            "--crl",
            &crl,
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(bin("truce-server"))
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn truce-server");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(self.addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let log: Vec<String> = rx.try_iter().collect();
                panic!("truce-server exited at start ({status}):\n{}", log.join("\n"));
            }
            assert!(Instant::now() < deadline, "truce-server did not listen on {} within 20 s", self.addr);
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        self.log = Some(rx);
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: the crash case. Returns once the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("server running");
        signal(&c, "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("truce-server did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.as_ref().map(|rx| rx.try_iter().collect()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends a signal (`"TERM"`, `"INT"`, `"KILL"`) to a child process. std can
/// only send SIGKILL and calling `kill(2)` through libc needs `unsafe`,
/// which this project forbids, so this runs the `kill` command.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
    assert!(status.map(|s| s.success()).unwrap_or(false), "kill -{name} {} failed", child.id());
}

/// A mission of one laptop: a PKI with a client certificate `name`, a
/// server (not started) that has enrolled the agent's key, and the agent,
/// linked to it.
pub fn one_laptop(name: &str) -> (Pki, Server, Agent) {
    let pki = Pki::new(&[name]);
    let server = Server::init();
    let agent = Agent::init();
    server.enrol(&agent.key, name);
    agent.link(&pki, name, server.addr);
    (pki, server, agent)
}

/// The passphrase of every harness agent: their keys are sealed, as a
/// monitor's are (DESIGN §11), and given by file as a script would.
pub const PASSPHRASE: &str = "harness laptop passphrase";

/// An agent data dir, sealed under [`PASSPHRASE`].
pub struct Agent {
    /// The data dir (`--data-dir`).
    pub dir: TempDir,
    /// Holds the passphrase file (outside the data dir, as a monitor's
    /// should be).
    _pass: TempDir,
    /// The passphrase file's path.
    pass_file: String,
    /// The device's public key, 64 hex.
    pub key: String,
}

impl Agent {
    /// `truce-agent init` in a new data dir, sealed with a passphrase file.
    pub fn init() -> Agent {
        Agent::init_with(&["init"])
    }

    /// `truce-agent --no-passphrase init`: keys not protected (trials; and
    /// measurements of the queue's own memory, without Argon2id's).
    pub fn init_unprotected() -> Agent {
        Agent::init_with(&["--no-passphrase", "init"])
    }

    fn init_with(init: &[&str]) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = tempfile::tempdir().expect("tempdir");
        let pass_file = pass.path().join("passphrase");
        std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).expect("passphrase file");
        let pass_file = pass_file.to_str().expect("utf-8 temp path").to_string();
        let mut a = Agent { dir, _pass: pass, pass_file, key: String::new() };
        a.cmd(init).expect_ok();
        let key = a.cmd(&["--json", "key"]).expect_ok();
        let v: serde_json::Value = serde_json::from_str(&key).expect("key --json is JSON");
        a.key = v["device"].as_str().expect("device in key --json").to_string();
        a
    }

    /// Runs a `truce-agent` subcommand against this data dir, with the
    /// passphrase file.
    pub fn cmd(&self, args: &[&str]) -> Cmd {
        let mut all = vec!["--data-dir", self.dir_str(), "--passphrase-file", self.passphrase_file()];
        all.extend_from_slice(args);
        Cmd::run(&bin("truce-agent"), &all)
    }

    /// The passphrase file's path.
    pub fn passphrase_file(&self) -> &str {
        &self.pass_file
    }

    /// The unsealed device seed and data key (for tests that build a queue
    /// directly).
    pub fn secrets(&self) -> truce_agent::vault::Secrets {
        let pass = truce_agent::vault::Passphrase::new(PASSPHRASE.to_string()).expect("passphrase");
        let ring = truce_agent::vault::Keyring::load(&self.dir.path().join("keyring"))
            .expect("keyring readable")
            .expect("keyring present");
        ring.unseal(Some(&pass)).expect("keyring unseals")
    }

    /// Opens the agent in process with its keys (unlocks once: Argon2id).
    pub fn open(&self) -> truce_agent::Agent {
        let pass = truce_agent::vault::Passphrase::new(PASSPHRASE.to_string()).expect("passphrase");
        truce_agent::Agent::open(self.dir.path(), Some(&pass)).expect("open agent data dir")
    }

    /// The data dir as a string.
    pub fn dir_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    /// `truce-agent link` with the PKI's client certificate `name`.
    pub fn link(&self, pki: &Pki, name: &str, server: SocketAddr) {
        let (ca, cert, key) = (pki.file("ca.pem"), pki.file(&format!("{name}.pem")), pki.file(&format!("{name}.key")));
        self.cmd(&["link", "--server", &server.to_string(), "--ca", &ca, "--cert", &cert, "--key", &key]).expect_ok();
    }

    /// Records a simple shelling report; returns its id.
    pub fn record(&self, description: &str) -> String {
        let out = self
            .cmd(&[
                "record",
                "--category",
                "shelling",
                "--lat",
                "48.0159",
                "--lon",
                "37.8029",
                "--at",
                "-5m",
                "--basis",
                "heard",
                "--description",
                description,
            ])
            .expect_ok();
        last_hex_id(&out)
    }

    /// `sync` once, optionally through another address (a relay).
    pub fn sync(&self, via: Option<SocketAddr>) -> Cmd {
        match via {
            Some(addr) => self.cmd(&["sync", "--server", &addr.to_string()]),
            None => self.cmd(&["sync"]),
        }
    }

    /// Report ids in a given state, from `list --json`.
    pub fn ids_in_state(&self, state: &str) -> Vec<String> {
        let out = self.cmd(&["--json", "list", "--state", state]).expect_ok();
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("list --json line is JSON");
                v["id"].as_str().expect("id in list --json").to_string()
            })
            .collect()
    }
}

/// The last 64-hex token printed: the id `record` prints.
pub fn last_hex_id(out: &str) -> String {
    out.split(|c: char| !c.is_ascii_hexdigit())
        .rfind(|t| t.len() == 64)
        .unwrap_or_else(|| panic!("no 64-hex id in output: {out}"))
        .to_string()
}

/// Records a report in-process through the agent library: the same code and
/// the same queue file as `truce-agent record`, without a process start, for
/// tests that need thousands of reports (open the agent once with
/// [`Agent::open`]).
pub fn record_in_process(agent: &mut truce_agent::Agent, description: &str) -> String {
    let input = truce_agent::RecordInput {
        category: truce_shared::Category::Drone,
        observed_at: None,
        observed_until: None,
        position: truce_shared::Position { lat: 48.1, lon: 37.9, accuracy_m: Some(10) },
        bearing_deg: Some(90),
        distance_m: Some((1000, 2000)),
        effect: None,
        weapon: None,
        count: None,
        basis: truce_shared::Basis::Seen,
        description: description.to_string(),
        attachments: vec![],
        amends: None,
    };
    hex::encode(agent.record(&input).expect("record in process").id)
}
