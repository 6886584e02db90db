//! Evidence on a USB stick (DESIGN §10): a laptop with no link at all
//! writes its reports and the files they name into one bundle; the
//! coordinator checks it offline and imports it, and the server holds
//! each file only if its bytes hash to what the report signed.

use sha2::{Digest, Sha256};
use truce_tests::harness::{one_laptop, Agent};

/// Bytes no compressor or dedup could shortcut.
fn photo(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut h: [u8; 32] = Sha256::digest([seed, 7]).into();
    while out.len() < len {
        h = Sha256::digest(h).into();
        out.extend_from_slice(&h);
    }
    out.truncate(len);
    out
}

/// Records one report attaching `bytes` (written to a file named `name`).
fn record_file(agent: &Agent, dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    agent.record_with("impact, file attached", &["--attach", path.to_str().unwrap()])
}

/// `verify` failed (exit 1); what it printed.
fn failed_stdout(ran: truce_testkit::Ran) -> String {
    assert!(!ran.ok(), "{}", ran.describe("expected failure"));
    ran.stdout()
}

#[test]
fn a_bundle_carries_the_files_verify_checks_them_and_import_holds_them_byte_for_byte() {
    let (pki, mut server, agent) = one_laptop("laptop-07");
    let files = tempfile::tempdir().unwrap();
    // Three pieces (two full, one short), and a file of no bytes at all.
    let clip = photo(2 * 1024 * 1024 + 4321, 1);
    let empty: Vec<u8> = Vec::new();
    record_file(&agent, files.path(), "clip.mp4", &clip);
    record_file(&agent, files.path(), "empty.jpg", &empty);
    agent.record("no file");
    let stick = files.path().join("stick.truceb");
    let out = agent.cmd(&["bundle", "export", stick.to_str().unwrap()]).expect_ok();
    let total = clip.len();
    assert!(out.contains(&format!("wrote 3 pending report(s) and 2 evidence file(s) ({total} bytes)")), "{out}");
    assert_eq!(&std::fs::read(&stick).unwrap()[..8], b"TRUCEB02");

    // Offline, with no database: every report and both files check.
    let verified = server.cmd(&["verify", stick.to_str().unwrap()]).expect_ok();
    assert!(verified.contains("3 report(s): 3 verified, 0 failed"), "{verified}");
    assert!(verified.contains("evidence: 2 file(s): 2 match their signed hash, 0 failed"), "{verified}");
    let clip_sha = hex::encode(Sha256::digest(&clip));
    let empty_sha = hex::encode(Sha256::digest(&empty));
    assert!(verified.contains(&format!("ok    evidence {clip_sha} ({total} bytes)")), "{verified}");

    let ran = server.cmd(&["import", stick.to_str().unwrap()]);
    // No terminal here: progress is plain lines on stderr, up to the whole bundle.
    let progress = ran.stderr();
    let imported = ran.expect_ok();
    let n = std::fs::metadata(&stick).unwrap().len();
    assert!(progress.contains(&format!("import: {n}/{n} bytes (100%)")), "{progress}");
    assert!(imported.contains("imported 3 report(s): 3 accepted"), "{imported}");
    assert!(
        imported.contains(&format!("evidence: 2 file(s): 2 stored ({total} bytes), 0 already held, 0 refused")),
        "{imported}"
    );
    let held = server.dir().join("evidence");
    assert_eq!(std::fs::read(held.join(&clip_sha)).unwrap(), clip, "held byte for byte");
    assert_eq!(std::fs::read(held.join(&empty_sha)).unwrap(), empty);
    assert_eq!(std::fs::read_dir(held.join("partial")).unwrap().count(), 0, "no file of the import left behind");

    // The same stick again: nothing new, nothing twice.
    let again = server.cmd(&["import", stick.to_str().unwrap()]).expect_ok();
    assert!(again.contains("3 duplicate") && again.contains("0 stored (0 bytes), 2 already held"), "{again}");
    let stats = server.cmd(&["stats"]).expect_ok();
    assert!(stats.contains(&format!("2 file(s) named by reports: 2 held ({total} bytes), 0 missing")), "{stats}");

    // The laptop learns at its next sync that the server holds both: the
    // reports are duplicates there, and no evidence byte travels.
    server.start(&pki, &[]);
    let synced = agent.sync(None).expect_ok();
    assert!(synced.contains("evidence held by the server 2 (0 bytes sent)"), "{synced}");
    let status = agent.cmd(&["status"]).expect_ok();
    assert!(status.contains("2 file(s) held by the server, 0 partly sent, 0 not yet sent"), "{status}");
    // And a new bundle leaves out what the server holds.
    let out = agent.cmd(&["bundle", "export", stick.to_str().unwrap()]).expect_ok();
    assert!(out.contains("wrote 0 pending report(s) and 0 evidence file(s) (0 bytes)"), "{out}");
}

#[test]
fn a_file_altered_on_the_stick_fails_verify_and_is_not_held_but_its_report_is_imported() {
    let (_pki, server, agent) = one_laptop("laptop-07");
    let files = tempfile::tempdir().unwrap();
    let bytes = photo(300_000, 2);
    let id = record_file(&agent, files.path(), "impact.jpg", &bytes);
    let stick = files.path().join("stick.truceb");
    agent.cmd(&["bundle", "export", stick.to_str().unwrap()]).expect_ok();
    // Change one byte of the photo inside the bundle: it sits near the end,
    // after the report.
    let mut raw = std::fs::read(&stick).unwrap();
    let at = raw.len() - 1000;
    raw[at] ^= 0x40;
    std::fs::write(&stick, &raw).unwrap();

    let verified = failed_stdout(server.cmd(&["verify", stick.to_str().unwrap()]));
    let sha = hex::encode(Sha256::digest(&bytes));
    assert!(
        verified.contains(&format!("FAIL  evidence {sha} (300000 bytes): its bytes hash to another SHA-256")),
        "{verified}"
    );
    assert!(verified.contains("1 report(s): 1 verified, 0 failed"), "{verified}");

    let imported = server.cmd(&["import", stick.to_str().unwrap()]).expect_ok();
    assert!(imported.contains("imported 1 report(s): 1 accepted"), "{imported}");
    assert!(imported.contains("0 stored (0 bytes), 0 already held, 1 refused"), "{imported}");
    assert!(imported.contains("refused (its bytes hash to another SHA-256 than the one signed): 1"), "{imported}");
    assert!(!server.dir().join("evidence").join(&sha).exists(), "an altered file is never held");
    let stats = server.cmd(&["stats"]).expect_ok();
    assert!(stats.contains("1 file(s) named by reports: 0 held (0 bytes), 1 missing"), "{stats}");
    // Investigators see the report, with its file not held, and get no file.
    let out_dir = files.path().join("for-investigators");
    let rows = server.cmd(&["export", "--evidence", out_dir.to_str().unwrap()]).expect_ok();
    let row: serde_json::Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["attachments"][0]["held"], false, "{row}");
    assert!(!out_dir.join(&sha).exists());
}

#[test]
fn no_evidence_leaves_the_files_out_and_a_file_no_report_names_is_refused() {
    let (_pki, server, agent) = one_laptop("laptop-07");
    let files = tempfile::tempdir().unwrap();
    record_file(&agent, files.path(), "impact.jpg", &photo(50_000, 3));
    let stick = files.path().join("reports-only.truceb");
    let out = agent.cmd(&["bundle", "export", "--no-evidence", stick.to_str().unwrap()]).expect_ok();
    assert!(out.contains("wrote 1 pending report(s) and no evidence (--no-evidence)"), "{out}");
    let verified = server.cmd(&["verify", stick.to_str().unwrap()]).expect_ok();
    assert!(!verified.contains("evidence:"), "{verified}");

    // A file no report names: another laptop's bundle with its report cut
    // out. Verify fails it, and import refuses it.
    let other = Agent::init();
    let odd = photo(10_000, 4);
    record_file(&other, files.path(), "odd.jpg", &odd);
    let theirs = files.path().join("theirs.truceb");
    other.cmd(&["bundle", "export", theirs.to_str().unwrap()]).expect_ok();
    let raw = std::fs::read(&theirs).unwrap();
    // The magic, then the first frame (the report) is skipped: evidence only.
    let first = u32::from_be_bytes(raw[8..12].try_into().unwrap()) as usize;
    let mut alone = raw[..8].to_vec();
    alone.extend_from_slice(&raw[12 + first..]);
    let only_file = files.path().join("file-alone.truceb");
    std::fs::write(&only_file, &alone).unwrap();
    let verified = failed_stdout(server.cmd(&["verify", only_file.to_str().unwrap()]));
    assert!(verified.contains("no report of this bundle that verified names this file"), "{verified}");
    let imported = server.cmd(&["import", only_file.to_str().unwrap()]).expect_ok();
    assert!(imported.contains("refused (no report stored here names this file): 1"), "{imported}");
    let sha = hex::encode(Sha256::digest(&odd));
    assert!(!server.dir().join("evidence").join(sha).exists());
}
