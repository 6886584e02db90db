//! `sync` against a stand-in server (mock_server.rs) over real mTLS on
//! loopback: batches within max_batch with several in flight, state changes
//! only on verified Acks, one-line failures that say why, clock warnings,
//! and `--watch` delivering new records and riding out an outage.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rexpect::process::{Signal, WaitStatus};
use truce_agent::{RecordInput, State};
use truce_shared::Category;

use truce_testkit::Pki;

use crate::mock_server::{Behaviour, MockServer};
use crate::support::{parse_id, TestDir, BIN};

/// A PKI (its server certificate is for localhost and 127.0.0.1), and an
/// initialised agent with its client certificate.
pub struct Setup {
    pub t: TestDir,
    pki: Pki,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Setup {
    pub fn new() -> Setup {
        Setup::with(TestDir::initialised())
    }

    /// Around a data dir made with `init --no-passphrase`.
    pub fn unprotected() -> Setup {
        let t = TestDir::new();
        t.ok(&["--no-passphrase", "init"]);
        Setup::with(t)
    }

    fn with(t: TestDir) -> Setup {
        let pki = Pki::new(&["laptop-1"]);
        let (ca, cert, key) = (pki.file("ca.pem"), pki.file("laptop-1.pem"), pki.file("laptop-1.key"));
        Setup { t, pki, ca, cert, key }
    }

    fn link(&self, addr: &str) {
        self.link_trusting(addr, &self.ca);
    }

    /// Links with the laptop's certificate, trusting the server CA `ca`.
    fn link_trusting(&self, addr: &str, ca: &Path) {
        self.t.ok(&[
            "link",
            "--server",
            addr,
            "--ca",
            ca.to_str().unwrap(),
            "--cert",
            self.cert.to_str().unwrap(),
            "--key",
            self.key.to_str().unwrap(),
        ]);
    }

    pub fn server(&self, b: Behaviour) -> MockServer {
        let s = MockServer::start(&self.pki, &self.ca, b);
        self.link(&s.addr);
        s
    }

    fn record_in_process(&self, n: usize) -> Vec<[u8; 32]> {
        let mut agent = self.t.open();
        (0..n)
            .map(|i| {
                let mut input = RecordInput::new(Category::Explosion, 48.5, 37.9);
                input.description = format!("report {i}");
                agent.record(&input).unwrap().id
            })
            .collect()
    }

    fn count(&self, state: State) -> u64 {
        self.t.open().queue().counts().unwrap().iter().find(|(s, _)| *s == state).unwrap().1
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// A port on which nothing listens (bound, then released).
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

#[test]
fn sync_delivers_everything_in_batches_with_several_in_flight() {
    let s = Setup::new();
    let server = s.server(Behaviour { max_batch: Some(7), hold_acks_until: 4, ..Default::default() });
    let mut ids = s.record_in_process(100);
    ids.push(parse_id(&s.t.ok(&["record", "--category", "drone", "--lat", "1", "--lon", "2"])));

    let out = json(&s.t.ok(&["sync", "--json"]));
    assert_eq!(out["delivered"], 101);
    assert_eq!(out["pending"], 0);
    assert_eq!(out["server_key"], hex::encode(server.server_key));
    {
        let seen = server.seen.lock().unwrap();
        assert_eq!(seen.stored.len(), 101);
        assert!(ids.iter().all(|id| seen.stored.contains(id)));
        assert!(seen.largest_batch <= 7, "batches respect Welcome.max_batch");
        assert_eq!(seen.submits, 15);
        assert_eq!(seen.submits_before_first_ack, 4, "four batches in flight before the first Ack");
        assert_eq!(seen.byes, 1);
    }
    assert_eq!(s.count(State::Delivered), 101);
    let shown = json(&s.t.ok(&["show", &hex::encode(ids[50]), "--json"]));
    assert_eq!(shown["state"], "delivered");
    assert_eq!(shown["answer"]["status"], "accepted");
    assert_eq!(shown["receipt"]["valid"], true);
    assert_eq!(shown["receipt"]["server_key"], hex::encode(server.server_key));
    let status = json(&s.t.ok(&["status", "--json"]));
    assert_eq!(status["last_sync"]["ok"], true);
    assert_eq!(status["server"], server.addr);

    // Nothing pending: a second sync succeeds and submits nothing.
    let text = s.t.ok(&["sync"]);
    assert!(text.contains("delivered 0"), "{text}");
    assert_eq!(server.seen.lock().unwrap().submits, 15);
}

#[test]
fn a_cut_link_leaves_unanswered_reports_pending_and_the_next_sync_finishes() {
    let s = Setup::new();
    let server = s.server(Behaviour { max_batch: Some(5), cut_after_acks: Some(2), ..Default::default() });
    s.record_in_process(30);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains("reports stay pending") || err.contains("stay pending"), "{err}");
    assert_eq!(s.count(State::Delivered), 10, "only acknowledged batches are delivered");
    assert_eq!(s.count(State::Pending), 20);
    let stored_before = server.seen.lock().unwrap().stored.len();
    assert!(stored_before > 10, "the server stored batches whose Acks were lost");

    let out = json(&s.t.ok(&["sync", "--json"]));
    assert_eq!(out["delivered"], 20);
    assert_eq!(s.count(State::Delivered), 30);
    assert_eq!(server.seen.lock().unwrap().stored.len(), 30, "every report stored exactly once");
    let status = json(&s.t.ok(&["status", "--json"]));
    assert_eq!(status["last_sync"]["ok"], true);
}

#[test]
fn a_refused_handshake_exits_non_zero_with_the_reason() {
    let s = Setup::new();
    let _server = s.server(Behaviour { refuse: Some("device revoked".into()), ..Default::default() });
    s.record_in_process(3);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains("refused this laptop: device revoked"), "{err}");
    assert_eq!(s.count(State::Pending), 3);
    let status = json(&s.t.ok(&["status", "--json"]));
    assert_eq!(status["last_sync"]["ok"], false);
    assert!(status["last_sync"]["outcome"].as_str().unwrap().contains("device revoked"));
}

#[test]
fn a_receipt_that_does_not_verify_marks_nothing_delivered() {
    let s = Setup::new();
    let _server = s.server(Behaviour { bad_receipts: true, ..Default::default() });
    s.record_in_process(4);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains("receipt") && err.contains("does not verify"), "{err}");
    assert_eq!(s.count(State::Pending), 4);
}

#[test]
fn watch_stops_on_an_error_that_needs_a_person_instead_of_retrying_it() {
    let s = Setup::new();
    let server = s.server(Behaviour { bad_receipts: true, ..Default::default() });
    s.record_in_process(2);
    let mut child = s.t.command(&["sync", "--watch"]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    // A receipt that does not verify will not verify on a retry either:
    // watch ends by itself, non-zero, saying why and that a person must act.
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > end {
            child.kill().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let status = status.unwrap_or_else(|| panic!("sync --watch kept retrying a bad receipt: {err}"));
    assert!(!status.success());
    assert!(err.contains("sync --watch stopped") && err.contains("a person must act"), "{err}");
    assert!(err.lines().last().unwrap_or("").contains("does not verify"), "{err}");
    assert_eq!(server.seen.lock().unwrap().hellos, 1, "no second session: {err}");
    assert_eq!(s.count(State::Pending), 2);
}

#[test]
fn an_unreachable_server_is_one_clear_line() {
    let s = Setup::new();
    s.record_in_process(1);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains("not linked") && err.contains("truce-agent link"), "{err}");
    s.link(&closed_port());
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains("cannot reach the server") && err.contains("connection refused"), "{err}");
    assert_eq!(s.count(State::Pending), 1);
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let s = Setup::new();
    let other = Pki::new(&[]);
    // The server trusts only the other CA's clients.
    let server = MockServer::start(&s.pki, &other.file("ca.pem"), Behaviour::default());
    s.link(&server.addr);
    s.record_in_process(1);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains("refused this laptop's certificate"), "{err}");
    assert_eq!(s.count(State::Pending), 1);
}

#[test]
fn a_server_certificate_for_another_name_is_refused() {
    let s = Setup::new();
    // A CA the agent trusts, whose server certificate names another host.
    let wrong = Pki::with_server_names(&["other.example"], &[]);
    let server = MockServer::start(&wrong, &s.ca, Behaviour::default());
    s.link_trusting(&server.addr, &wrong.file("ca.pem"));
    s.record_in_process(1);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains("server's certificate was not accepted"), "{err}");
}

#[test]
fn a_clock_far_from_the_servers_is_warned_about() {
    let s = Setup::new();
    let _server = s.server(Behaviour { clock_offset_ms: 5 * 60_000, ..Default::default() });
    s.record_in_process(1);
    let o = s.t.run(&["sync"]);
    assert!(o.status.success(), "{}", o);
    let err = String::from_utf8(o.out.stderr.clone()).unwrap();
    assert!(err.contains("warning: this laptop's clock is 5 min behind the server's"), "{err}");
}

#[test]
fn link_refuses_files_that_are_not_certificates_or_keys() {
    let s = Setup::new();
    let junk = s.t.path("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let (ca, cert, key) = (s.ca.to_str().unwrap(), s.cert.to_str().unwrap(), s.key.to_str().unwrap());
    let j = junk.to_str().unwrap();
    assert!(s
        .t
        .fails(&["link", "--server", "127.0.0.1:1", "--ca", j, "--cert", cert, "--key", key])
        .contains("holds no certificate"));
    assert!(s
        .t
        .fails(&["link", "--server", "127.0.0.1:1", "--ca", ca, "--cert", j, "--key", key])
        .contains("holds no certificate"));
    assert!(s
        .t
        .fails(&["link", "--server", "127.0.0.1:1", "--ca", ca, "--cert", cert, "--key", j])
        .contains("holds no private key"));
    s.pki.client("laptop-2");
    let other_key = s.pki.file("laptop-2.key");
    let e = s.t.fails(&[
        "link",
        "--server",
        "127.0.0.1:1",
        "--ca",
        ca,
        "--cert",
        cert,
        "--key",
        other_key.to_str().unwrap(),
    ]);
    assert!(e.contains("does not fit the client certificate"), "{e}");
    assert!(s.t.fails(&["link", "--server", "nohost", "--ca", ca, "--cert", cert, "--key", key]).contains("HOST:PORT"));
    assert!(!s.t.dir.join("link").exists(), "nothing stored");
    s.link("127.0.0.1:1");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.t.dir.join("link/client.key.sealed")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The key is kept sealed only: its PEM is nowhere in the data dir.
    assert!(!s.t.dir.join("link/client.key").exists());
    let pem = std::fs::read(key).unwrap();
    let sealed = std::fs::read(s.t.dir.join("link/client.key.sealed")).unwrap();
    assert!(!sealed.windows(32).any(|w| pem.windows(32).any(|p| p == w)), "no 32 bytes of the PEM in the sealed file");
}

/// Waits until `cond` holds, up to `limit`.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

#[test]
fn watch_rides_out_an_outage_delivers_new_records_and_stops_on_sigterm() {
    let s = Setup::new();
    let addr = closed_port();
    s.link(&addr);
    let first = s.record_in_process(2);

    // Through a pty, so the progress bar path runs too.
    let mut c = std::process::Command::new(BIN);
    c.arg("--data-dir").arg(&s.t.dir).arg("--passphrase-file").arg(s.t.passphrase_file());
    c.args(["sync", "--watch"]).env_remove("TRUCE_AGENT_DIR");
    let mut p = rexpect::session::spawn_command(c, Some(30_000)).unwrap();
    p.exp_string("connection refused").unwrap();

    // The server comes up on the linked address: delivered within the backoff cap.
    let server = MockServer::start_on(&addr, &s.pki, &s.ca, Behaviour::default());
    assert!(
        wait_for(Duration::from_secs(25), || first.iter().all(|id| server.seen.lock().unwrap().stored.contains(id))),
        "reports recorded while offline are delivered once the server is back"
    );
    // A new record is delivered within a couple of seconds.
    let id = parse_id(&s.t.ok(&["record", "--category", "mine", "--lat", "1", "--lon", "1"]));
    let t0 = Instant::now();
    assert!(wait_for(Duration::from_secs(10), || server.seen.lock().unwrap().stored.contains(&id)));
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
    assert!(wait_for(Duration::from_secs(5), || s.count(State::Delivered) == 3));

    p.process_mut().signal(Signal::SIGTERM).unwrap();
    p.exp_eof().unwrap();
    assert!(matches!(p.process().wait().unwrap(), WaitStatus::Exited(_, 0)));
}
