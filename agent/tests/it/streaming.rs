//! The queue streams: listing, exporting and syncing 100,000 reports never
//! holds them all in memory. The child's peak resident memory (VmHWM) is
//! read from /proc while it runs and must stay far below the queue's size.
//!
//! The data dir is made with `--no-passphrase`, so what is measured is the
//! queue's work alone (every row is still sealed and opened): unlocking a
//! sealed keyring takes Argon2id's 64 MiB (DESIGN §11) for a moment before
//! any report is read, which would hide the streaming behind it.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use truce_shared::Observation;

use crate::mock_server::{Behaviour, MockServer};
use crate::support::TestDir;
use crate::sync::Setup;

const N: u64 = 100_000;
/// DESIGN §7: the agent syncs a 100,000-report queue in at most 64 MB.
const LIMIT_KB: u64 = 64 * 1024;

/// Fills the queue with `n` valid, chained, signed reports in one
/// transaction (setup only: `record` commits one by one, durably, which
/// would make this test take minutes).
fn bulk_fill(t: &TestDir, n: u64) {
    // The keys as the agent unseals them: rows are sealed like `record`'s.
    let ring = truce_agent::vault::Keyring::load(&t.dir.join("keyring")).unwrap().unwrap();
    let secrets = ring.unseal(None).unwrap();
    let key = SigningKey::from_bytes(&secrets.seed);
    let data_key = secrets.data_key();
    let device = key.verifying_key().to_bytes();
    // The schema exists once `init` has run.
    let mut db = rusqlite::Connection::open(t.dir.join("queue.sqlite")).unwrap();
    let tx = db.transaction().unwrap();
    let mut prev = [0u8; 32];
    {
        let mut st = tx.prepare("INSERT INTO reports(seq, id, sealed, size) VALUES (?1, ?2, ?3, ?4)").unwrap();
        for seq in 1..=n {
            let description = format!("two explosions NNW, report {seq}, {}", "x".repeat(200));
            let observation =
                Observation { weapon: Some("152mm artillery".into()), ..truce_testkit::observation(&description) };
            let env = truce_testkit::envelope(device, seq, prev, observation);
            let signed = truce_shared::sign(&key, &env).unwrap();
            let id = signed.id();
            let sealed = data_key.seal_report(seq, &id, &signed.body, &signed.signature.0);
            st.execute(rusqlite::params![seq as i64, &id[..], sealed, (signed.body.len() + 64) as i64]).unwrap();
            prev = id;
        }
    }
    tx.commit().unwrap();
}

/// Runs the binary, draining stdout, and returns (success, stdout lines,
/// peak RSS in kB).
fn run_measured(t: &TestDir, args: &[&str]) -> (bool, u64, u64) {
    let mut child = t.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut lines = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return lines,
                Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64,
            }
        }
    });
    let mut peak = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
            if let Some(kb) = s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)) {
                peak = peak.max(kb.parse().unwrap_or(0));
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let lines = reader.join().unwrap();
    if !status.success() {
        let mut err = String::new();
        child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        eprintln!("truce-agent {args:?}: {status}: {err}");
    }
    (status.success(), lines, peak)
}

#[test]
fn listing_exporting_and_syncing_100k_reports_stream() {
    let s = Setup::unprotected();
    bulk_fill(&s.t, N);
    let bytes = std::fs::metadata(s.t.dir.join("queue.sqlite")).unwrap().len();
    eprintln!("queue of {N} reports: {} MB on disk", bytes / 1_000_000);

    let (ok, lines, list_kb) = run_measured(&s.t, &["list", "--json"]);
    assert!(ok);
    assert_eq!(lines, N);
    let bundle = s.t.path("all.truce");
    let (ok, _, export_kb) = run_measured(&s.t, &["bundle", "export", bundle.to_str().unwrap()]);
    assert!(ok);
    let bundle_bytes = std::fs::metadata(&bundle).unwrap().len();
    assert!(bundle_bytes > 25_000_000, "{bundle_bytes}");

    let server = s.server(Behaviour { max_batch: Some(128), ..Default::default() });
    let (ok, _, sync_kb) = run_measured(&s.t, &["sync", "--json"]);
    assert!(ok, "{}", s.t.run(&["status"]));
    assert_eq!(server.seen.lock().unwrap().stored.len() as u64, N);
    eprintln!("peak RSS: list {list_kb} kB, bundle export {export_kb} kB, sync {sync_kb} kB (limit {LIMIT_KB} kB)");
    for (what, kb) in [("list", list_kb), ("bundle export", export_kb), ("sync", sync_kb)] {
        assert!(kb > 0, "{what}: could not read VmHWM");
        assert!(kb < LIMIT_KB, "{what} peaked at {kb} kB");
    }
    let _: &MockServer = &server;
}
