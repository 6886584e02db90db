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
        self.t.ok(&self.link_args(addr, ca, &[]).iter().map(String::as_str).collect::<Vec<_>>());
    }

    fn link_args(&self, addr: &str, ca: &Path, extra: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = ["link", "--server", addr, "--ca", ca.to_str().unwrap()]
            .iter()
            .chain(&["--cert", self.cert.to_str().unwrap(), "--key", self.key.to_str().unwrap()])
            .map(|s| s.to_string())
            .collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    /// Links to `addr` with `link --server-key KEY`.
    fn link_expecting(&self, addr: &str, key: &str) -> String {
        self.t.ok(&self
            .link_args(addr, &self.ca, &["--server-key", key])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>())
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
    // The duplicates' earlier entries were fetched and proven too, and so
    // were the 10 the first session marked but was cut before proving.
    assert_eq!(out["proven"], 30);
    assert_eq!(status["log"]["not_proven"], 0, "nothing is left unproven");
    assert_eq!(status["log"]["checkpoint"]["size"], 30);
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

fn fingerprint(key: &[u8; 32]) -> String {
    truce_shared::signing::fingerprint(key)
}

#[test]
fn a_clean_sync_pins_the_key_proves_every_report_and_status_shows_the_checkpoint() {
    let s = Setup::new();
    let server = s.server(Behaviour { max_batch: Some(4), ..Default::default() });
    let first = s.record_in_process(10);
    let o = s.t.run(&["sync", "--json"]);
    assert!(o.status.success(), "{}", o);
    let err = String::from_utf8(o.out.stderr.clone()).unwrap();
    let fp = fingerprint(&server.server_key);
    assert!(
        err.contains(&format!("pinned the server's log key {fp}: first seen; compare it with the fingerprint")),
        "{err}"
    );
    let out = json(&String::from_utf8(o.out.stdout.clone()).unwrap());
    assert_eq!((out["delivered"].as_u64(), out["proven"].as_u64()), (Some(10), Some(10)));
    assert_eq!(out["pinned_now"], true);
    let shown = json(&s.t.ok(&["show", &hex::encode(first[3]), "--json"]));
    assert_eq!((shown["proven"].as_bool(), shown["log_entry"].as_u64()), (Some(true), Some(3)));
    assert_eq!(shown["receipt"]["valid"], true);
    let list = s.t.ok(&["list"]);
    assert!(!list.contains("not proven"), "{list}");
    let text = s.t.ok(&["show", &hex::encode(first[0])]);
    assert!(text.contains("log entry:    0 (proven included"), "{text}");

    // A second sync: the log grew, consistent with the kept checkpoint.
    s.record_in_process(5);
    let out = json(&s.t.ok(&["sync", "--json"]));
    assert_eq!((out["proven"].as_u64(), out["pinned_now"].as_bool()), (Some(5), Some(false)));
    assert!(server.seen.lock().unwrap().proves >= 2);
    let status = json(&s.t.ok(&["status", "--json"]));
    assert_eq!(status["log"]["fingerprint"], fp);
    assert_eq!(status["log"]["key"], hex::encode(server.server_key));
    let cp = &status["log"]["checkpoint"];
    assert_eq!(cp["size"], 15);
    assert_eq!(cp["origin"], format!("truce/truce-log/{fp}"));
    let root = server.log.lock().unwrap().tree.root().unwrap().to_string();
    assert_eq!(cp["root"], root);
    assert_eq!(status["log"]["not_proven"], 0);
    let text = s.t.ok(&["status"]);
    assert!(text.contains(&format!("log key:    {fp} (pinned)")), "{text}");
    assert!(text.contains(&format!("checkpoint: truce/truce-log/{fp} size 15 root {root}")), "{text}");
}

#[test]
fn a_different_log_key_later_is_refused_and_nothing_is_marked() {
    let s = Setup::new();
    let first = s.server(Behaviour::default());
    s.record_in_process(1);
    s.t.ok(&["sync"]);
    // Another server (another log key) at the linked address's place.
    let other = s.server(Behaviour::default());
    s.record_in_process(2);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains(&format!("shows log key {}", fingerprint(&other.server_key))), "{err}");
    assert!(err.contains(&format!("not the pinned {}", fingerprint(&first.server_key))), "{err}");
    assert!(err.contains("reports stay pending"), "{err}");
    assert_eq!(other.seen.lock().unwrap().submits, 0, "nothing sent");
    assert_eq!(s.count(State::Pending), 2);
    let status = json(&s.t.ok(&["status", "--json"]));
    assert_eq!(status["log"]["fingerprint"], fingerprint(&first.server_key), "the pin stays");
    assert_eq!(status["last_sync"]["ok"], false);
}

#[test]
fn a_log_key_other_than_link_server_key_is_refused() {
    let s = Setup::new();
    let server = MockServer::start(&s.pki, &s.ca, Behaviour::default());
    let e = s.t.fails(
        &s.link_args(&server.addr, &s.ca, &["--server-key", "abcd-12"]).iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(e.contains("--server-key"), "{e}");
    let wrong = fingerprint(&[9; 32]);
    let text = s.link_expecting(&server.addr, &wrong);
    assert!(text.contains(&format!("must be {wrong}")), "{text}");
    s.record_in_process(2);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains(&format!("not {wrong} given to `link --server-key`")), "{err}");
    assert_eq!(server.seen.lock().unwrap().submits, 0);
    assert_eq!(s.count(State::Pending), 2);

    // The right one, in capitals: pinned without the first-seen warning.
    s.link_expecting(&server.addr, &fingerprint(&server.server_key).to_uppercase());
    let o = s.t.run(&["sync"]);
    assert!(o.status.success(), "{}", o);
    assert!(!String::from_utf8(o.out.stderr.clone()).unwrap().contains("first seen"));
    assert_eq!(s.count(State::Delivered), 2);
}

#[test]
fn a_server_that_rewrites_its_log_raises_the_alarm_and_leaves_evidence() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    let server = s.server(Behaviour::default());
    s.record_in_process(3);
    s.t.ok(&["sync"]);
    server.log.lock().unwrap().rewrite_first_entry();
    let later = s.record_in_process(2);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.starts_with("error: ALARM: the server's log does not prove what it acknowledged"), "{err}");
    assert!(err.contains("does not extend the kept tree of 3"), "{err}");
    // Delivered (the receipts are signed), not proven.
    assert_eq!(s.count(State::Delivered), 5);
    let list = s.t.ok(&["list"]);
    for id in &later {
        let line = list.lines().find(|l| l.starts_with(&hex::encode(id)[..12])).unwrap();
        assert!(line.contains("delivered, not proven"), "{line}");
    }
    let status = json(&s.t.ok(&["status", "--json"]));
    assert_eq!(status["log"]["checkpoint"]["size"], 3, "the kept checkpoint is replaced only by a verified one");
    assert_eq!(status["log"]["not_proven"], 2);
    // The evidence: one directory, both checkpoints and what failed.
    let ev = s.t.dir.join("evidence");
    let dirs: Vec<_> = std::fs::read_dir(&ev).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(dirs.len(), 1);
    assert!(dirs[0].file_name().unwrap().to_str().unwrap().starts_with("log-"));
    assert_eq!(std::fs::metadata(&dirs[0]).unwrap().permissions().mode() & 0o777, 0o700);
    for f in ["kept.checkpoint", "new.checkpoint", "what.txt"] {
        let p = dirs[0].join(f);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
    }
    let kept = std::fs::read_to_string(dirs[0].join("kept.checkpoint")).unwrap();
    assert!(truce_shared::log::open_checkpoint(&kept, &server.server_key).unwrap().size == 3);
    let new = std::fs::read_to_string(dirs[0].join("new.checkpoint")).unwrap();
    assert!(truce_shared::log::open_checkpoint(&new, &server.server_key).unwrap().size == 5);
    assert!(std::fs::read_to_string(dirs[0].join("what.txt")).unwrap().contains("does not extend"));
}

#[test]
fn a_server_that_refuses_proofs_raises_the_alarm() {
    let s = Setup::new();
    let _server = s.server(Behaviour { refuse_proofs: true, ..Default::default() });
    s.record_in_process(2);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains("ALARM") && err.contains("refused to give proofs: no proofs today"), "{err}");
    assert_eq!(s.count(State::Delivered), 2);
    assert!(s.t.ok(&["list"]).contains("delivered, not proven"));
    // Not proven: the server may not hold them, so their bodies stay.
    let out = s.t.ok(&["prune", "--keep-delivered", "0"]);
    assert!(out.contains("pruned 0 report(s)"), "{out}");
}

#[test]
fn a_server_of_an_older_protocol_is_named() {
    let s = Setup::new();
    let _server = s.server(Behaviour {
        refuse: Some("unsupported protocol version 2 (this server speaks 1)".into()),
        ..Default::default()
    });
    s.record_in_process(1);
    let err = s.t.fails_after_log(&["sync"]);
    assert!(err.contains("speaks an older protocol") && err.contains("server must be upgraded"), "{err}");
    assert_eq!(s.count(State::Pending), 1);
}
