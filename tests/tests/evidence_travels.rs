//! Evidence travels (DESIGN §10), through the real binaries over real mTLS:
//! a photo attached to a report reaches the server byte for byte after
//! the report, an upload cut mid-file resumes where the server's durable
//! offset says, and the same file named twice travels once.

use sha2::{Digest, Sha256};
use truce_tests::harness::one_laptop;
use truce_tests::relay::Relay;

/// A photo-sized file of bytes no compressor or dedup could shortcut.
fn photo(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut h: [u8; 32] = Sha256::digest([seed]).into();
    while out.len() < len {
        h = Sha256::digest(h).into();
        out.extend_from_slice(&h);
    }
    out.truncate(len);
    out
}

fn record_with(agent: &truce_tests::harness::Agent, path: &std::path::Path) -> String {
    agent.record_with("impact, photo attached", &["--attach", path.to_str().unwrap()])
}

fn show_json(agent: &truce_tests::harness::Agent, id: &str) -> serde_json::Value {
    serde_json::from_str(&agent.cmd(&["--json", "show", id]).expect_ok()).unwrap()
}

#[test]
fn a_photo_reaches_the_server_byte_for_byte_after_its_report() {
    let (pki, mut server, agent) = one_laptop("laptop-01");
    let _ = pki;
    let files = tempfile::tempdir().unwrap();
    let bytes = photo(700_000, 1);
    let path = files.path().join("impact.jpg");
    std::fs::write(&path, &bytes).unwrap();
    let id = record_with(&agent, &path);
    let sha = hex::encode(Sha256::digest(&bytes));
    // Offline: the report and its file wait.
    assert_eq!(show_json(&agent, &id)["evidence"][0]["state"], "pending");
    server.start(&pki, &[]);
    let out = agent.sync(None).expect_ok();
    assert!(out.contains("evidence held by the server 1"), "{out}");
    let held = server.dir().join("evidence").join(&sha);
    assert_eq!(std::fs::read(&held).unwrap(), bytes, "the server holds the file byte for byte");
    let shown = show_json(&agent, &id);
    assert_eq!(shown["evidence"][0]["state"], "held", "{shown}");
    assert_eq!(shown["evidence"][0]["sha256"], sha.as_str());
    let status = agent.cmd(&["status"]).expect_ok();
    assert!(status.contains("evidence:   1 file(s) held by the server, 0 partly sent, 0 not yet sent"), "{status}");
    // The same photo on a second report travels no more.
    let id2 = record_with(&agent, &path);
    let out = agent.sync(None).expect_ok();
    assert!(out.contains("(0 bytes sent)"), "{out}");
    assert_eq!(show_json(&agent, &id2)["evidence"][0]["state"], "held");
    // Investigators: stats counts it, rows say it is held, and
    // `export --evidence` writes it under its hash.
    let stats = server.cmd(&["stats"]).expect_ok();
    assert!(stats.contains("evidence: 1 file(s) named by reports: 1 held (700000 bytes), 0 missing"), "{stats}");
    let out_dir = files.path().join("evidence-out");
    let rows = server.cmd(&["export", "--evidence", out_dir.to_str().unwrap()]).expect_ok();
    let row: serde_json::Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
    assert_eq!(row["attachments"][0]["held"], true, "{row}");
    assert_eq!(std::fs::read(out_dir.join(&sha)).unwrap(), bytes);
    // Even changed on disk after recording, the original is what travelled:
    // the laptop keeps its own sealed copy.
    std::fs::write(&path, b"edited afterwards").unwrap();
    assert_eq!(std::fs::read(&held).unwrap(), bytes);
}

#[test]
fn an_upload_cut_mid_file_resumes_at_the_durable_offset() {
    let (pki, mut server, agent) = one_laptop("laptop-01");
    server.start(&pki, &[]);
    let relay = Relay::start(server.addr());
    let files = tempfile::tempdir().unwrap();
    let bytes = photo(3_000_000, 2);
    let path = files.path().join("clip.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let id = record_with(&agent, &path);
    // The handshake and the report take a few kB: cut well into the file.
    relay.cut_after(1_200_000);
    let cut = agent.sync(Some(relay.addr));
    assert!(!cut.ok(), "the cut sync fails");
    assert!(relay.is_cut());
    // The report went first, and is delivered; the file is partly there.
    assert_eq!(agent.ids_in_state("delivered"), vec![id.clone()]);
    let sha = hex::encode(Sha256::digest(&bytes));
    let partial = server.dir().join("evidence").join("partial").join(&sha);
    let durable = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    // How much is durable depends on what the server read before the cut
    // reset the connection (its socket buffer may be dropped): some, not how
    // much. What matters is below: it is the file's start, and the resume
    // sends exactly the rest.
    assert!(durable > 0, "the chunks the server read before the cut are held durably");
    assert_eq!(&std::fs::read(&partial).unwrap()[..], &bytes[..durable as usize], "what is held is the file's start");
    let shown = show_json(&agent, &id);
    assert!(["partial", "pending"].contains(&shown["evidence"][0]["state"].as_str().unwrap()), "{shown}");
    relay.heal();
    let out = agent.sync(Some(relay.addr)).expect_ok();
    // The second session sends only what the server lacked.
    let sent: u64 = out
        .split("held by the server 1 (")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count in: {out}"));
    assert_eq!(sent, bytes.len() as u64 - durable, "resumed at the durable offset, nothing sent twice: {out}");
    assert_eq!(std::fs::read(server.dir().join("evidence").join(&sha)).unwrap(), bytes);
    assert!(!partial.exists(), "the partial file became the held one");
    assert_eq!(show_json(&agent, &id)["evidence"][0]["state"], "held");
}

#[test]
fn a_file_over_the_size_limit_is_refused_with_its_reason_and_reports_still_flow() {
    let (pki, mut server, agent) = one_laptop("laptop-01");
    server.start(&pki, &["--max-evidence-size", "100000"]);
    let files = tempfile::tempdir().unwrap();
    let (small, big) = (photo(100_000, 3), photo(100_001, 4));
    let (sp, bp) = (files.path().join("small.jpg"), files.path().join("big.jpg"));
    std::fs::write(&sp, &small).unwrap();
    std::fs::write(&bp, &big).unwrap();
    let id_small = record_with(&agent, &sp);
    let id_big = record_with(&agent, &bp);
    let out = agent.sync(None).expect_ok();
    assert!(out.contains("delivered 2"), "{out}");
    assert!(out.contains("evidence held by the server 1"), "{out}");
    assert!(out.contains("evidence refused 1"), "{out}");
    assert_eq!(show_json(&agent, &id_small)["evidence"][0]["state"], "held");
    let shown = show_json(&agent, &id_big);
    assert_eq!(shown["evidence"][0]["state"], "pending", "{shown}");
    assert!(shown["evidence"][0]["refused"].as_str().unwrap().contains("--max-evidence-size"), "{shown}");
    let text = agent.cmd(&["show", &id_big]).expect_ok();
    assert!(text.contains("not yet sent (the server said: the file is 100001 bytes, over"), "{text}");
    let stats = server.cmd(&["stats"]).expect_ok();
    assert!(stats.contains("2 file(s) named by reports: 1 held (100000 bytes), 1 missing"), "{stats}");
}
