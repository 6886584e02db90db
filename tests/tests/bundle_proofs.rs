//! Bundles carry proofs (DESIGN §9): a real server, fed by a real agent
//! over mTLS, exports a version-2 bundle; `truce-server verify` proves
//! every report in the log offline, pinned by the log key's fingerprint;
//! a flipped byte in an entry or a proof, or another server's key, fails
//! loudly; a version-1 bundle from the agent still verifies (saying it
//! carries no proofs), and `import` reads both versions.

use std::path::{Path, PathBuf};

use truce_testkit::{Ran, TestServer};
use truce_tests::harness::one_laptop;

/// The frames of a bundle: (offset of the frame, its kind byte, its length).
fn frames(bytes: &[u8]) -> Vec<(usize, u8, usize)> {
    let mut out = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, bytes[at + 4], len));
        at += 4 + len;
    }
    out
}

fn fingerprint(server: &TestServer) -> String {
    let key = server.cmd(&["--json", "key"]).expect_ok();
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    key["fingerprint"].as_str().unwrap().to_string()
}

fn verify(server: &TestServer, bundle: &Path, extra: &[&str]) -> Ran {
    let mut args = vec!["verify", bundle.to_str().unwrap()];
    args.extend_from_slice(extra);
    server.cmd(&args)
}

/// A copy of `bundle` with one bit flipped at `pos`.
fn flipped(bundle: &Path, pos: usize, name: &str) -> PathBuf {
    let mut bytes = std::fs::read(bundle).unwrap();
    bytes[pos] ^= 0x01;
    let out = bundle.with_file_name(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

#[test]
fn an_exported_bundle_proves_every_report_and_tampering_or_another_key_fails() {
    let (pki, mut server, agent) = one_laptop("laptop-a");
    server.start(&pki, &[]);
    for i in 0..5 {
        agent.record(&format!("bundle proof test {i}"));
    }
    agent.sync(None).expect_ok();
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("evidence.truceb");
    let devices = out.path().join("evidence.devices.jsonl");
    server
        .cmd(&[
            "export",
            "--format",
            "bundle",
            "--out",
            bundle.to_str().unwrap(),
            "--devices-out",
            devices.to_str().unwrap(),
        ])
        .expect_ok();

    assert!(devices.exists(), "--devices-out still writes the devices");
    server.terminate();
    let fp = fingerprint(&server);

    // Pinned: every report proven.
    let text = verify(&server, &bundle, &["--devices", devices.to_str().unwrap(), "--log-key", &fp]).expect_ok();
    assert!(text.contains(&format!("signed by the pinned log key {fp}")), "{text}");
    assert!(text.contains("5 report(s): 5 verified, 0 failed"), "{text}");
    assert!(text.contains("log: 5 proven in the log, 0 not proven"), "{text}");
    assert_eq!(text.matches("proven in the log (entry ").count(), 5, "{text}");
    // The whole key pins too, in upper case.
    let key = server.cmd(&["--json", "key"]).expect_ok();
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    let hex_key = key["log_key"].as_str().unwrap().to_uppercase();
    verify(&server, &bundle, &["--log-key", &hex_key, "--quiet"]).expect_ok();

    // Unpinned: proven against the key the bundle names, and said so.
    let text = verify(&server, &bundle, &[]).expect_ok();
    assert!(text.contains("UNPINNED") && text.contains(&fp), "{text}");

    // JSON: the checkpoint, each report proven, the totals.
    let json = verify(&server, &bundle, &["--json", "--log-key", &fp]).expect_ok();
    let lines: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["checkpoint"]["pinned"], true, "{json}");
    assert!(lines[1..6].iter().all(|l| l["proven"] == true), "{json}");
    assert_eq!(lines[6]["totals"]["proven"], 5, "{json}");

    // Another server's log key: the checkpoint fails loudly, nothing is proven.
    let other = TestServer::init();
    let other_fp = fingerprint(&other);
    let ran = verify(&server, &bundle, &["--log-key", &other_fp]);
    assert!(!ran.ok());
    let text = ran.stdout();
    assert!(text.contains("FAIL  checkpoint") && text.contains(&format!("not the pinned {other_fp}")), "{text}");
    assert!(text.contains("log: 0 proven in the log, 5 not proven"), "{text}");

    // A flipped byte in the third report's entry, or in its audit path.
    let bytes = std::fs::read(&bundle).unwrap();
    let f = frames(&bytes);
    assert_eq!(&bytes[..8], b"TRUCEB02");
    let kinds: Vec<u8> = f.iter().map(|x| x.1).collect();
    assert_eq!(kinds[..4], [1, 0, 2, 3], "checkpoint, then report, entry, proof");
    assert_eq!(kinds.len(), 1 + 5 * 3);
    let (entry_at, _, entry_len) = f[1 + 2 * 3 + 1];
    let (proof_at, _, proof_len) = f[1 + 2 * 3 + 2];
    for (pos, name) in [(entry_at + 4 + entry_len - 1, "entry.truceb"), (proof_at + 4 + proof_len - 1, "proof.truceb")]
    {
        let bad = flipped(&bundle, pos, name);
        let ran = verify(&server, &bad, &["--log-key", &fp]);
        assert!(!ran.ok(), "{name}: {}", ran.stdout());
        let text = ran.stdout();
        assert!(text.contains("5 report(s): 5 verified, 0 failed"), "{name}: {text}");
        assert!(text.contains("log: 4 proven in the log, 1 not proven"), "{name}: {text}");
        let line = text.lines().find(|l| l.contains("NOT PROVEN")).unwrap();
        assert!(line.starts_with("FAIL  #3 "), "{name}: {line}");
    }

    // A flipped byte in the checkpoint's signed text.
    let bad = flipped(&bundle, f[0].0 + 4 + 40, "checkpoint.truceb");
    let ran = verify(&server, &bad, &[]);
    assert!(!ran.ok() && ran.stdout().contains("FAIL  checkpoint"), "{}", ran.stdout());

    // Import reads version 2 (the log items are the exporting server's
    // business: import passes over them): into another server, every
    // report, quarantined there (its device is not enrolled).
    let imported = other.cmd(&["import", bundle.to_str().unwrap()]).expect_ok();
    assert!(imported.contains("imported 5 report(s)") && imported.contains("5 quarantined"), "{imported}");
}

#[test]
fn a_laptops_bundle_verifies_without_proofs_and_imports() {
    let (_pki, server, agent) = one_laptop("laptop-b");
    for i in 0..3 {
        agent.record(&format!("usb bundle {i}"));
    }
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("usb.truceb");
    agent.cmd(&["bundle", "export", bundle.to_str().unwrap()]).expect_ok();
    assert_eq!(&std::fs::read(&bundle).unwrap()[..8], b"TRUCEB02");
    let text = verify(&server, &bundle, &[]).expect_ok();
    assert!(text.contains("3 report(s): 3 verified, 0 failed"), "{text}");
    assert!(text.contains("no log proofs present (a laptop's bundle"), "{text}");
    let imported = server.cmd(&["import", bundle.to_str().unwrap()]).expect_ok();
    assert!(imported.contains("imported 3 report(s): 3 accepted"), "{imported}");
}
