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

/// Where the laptop keeps its sealed copy of the file with this hash.
fn sealed_copy(agent: &truce_tests::harness::Agent, sha: &[u8; 32]) -> std::path::PathBuf {
    let name = agent.open().data_key().expect("the data key").file_name(sha);
    agent.dir.path().join("attachments").join(name)
}

#[test]
fn a_copy_altered_on_the_laptop_is_never_sent_and_never_shown_to_investigators() {
    let (pki, mut server, agent) = one_laptop("laptop-01");
    let files = tempfile::tempdir().unwrap();
    // Three photos: one whose sealed copy gets a byte flipped, one whose
    // sealed copy is replaced by the third's (a whole, valid sealed file
    // of this laptop, so every chunk authenticates), and the third, intact.
    let photos: Vec<Vec<u8>> = (0..3).map(|i| photo(200_000 + i * 1000, 10 + i as u8)).collect();
    let mut ids = Vec::new();
    let mut shas = Vec::new();
    for (i, bytes) in photos.iter().enumerate() {
        let path = files.path().join(format!("photo-{i}.jpg"));
        std::fs::write(&path, bytes).unwrap();
        ids.push(record_with(&agent, &path));
        shas.push(<[u8; 32]>::from(Sha256::digest(bytes)));
    }
    let (flipped, swapped, intact) = (sealed_copy(&agent, &shas[0]), sealed_copy(&agent, &shas[1]), &shas[2]);
    let mut sealed = std::fs::read(&flipped).unwrap();
    let mid = sealed.len() / 2;
    sealed[mid] ^= 0x01;
    std::fs::write(&flipped, sealed).unwrap();
    std::fs::copy(sealed_copy(&agent, intact), &swapped).unwrap();

    server.start(&pki, &[]);
    let out = agent.sync(None);
    // Reports go through; the two altered copies are refused by the laptop
    // itself, each saying why; only the intact photo travels.
    let text = out.stdout() + &out.stderr();
    assert!(text.contains("delivered 3"), "{out}");
    assert!(text.contains("evidence held by the server 1"), "{out}");
    assert!(text.contains("evidence refused 2"), "{out}");
    assert_eq!(agent.ids_in_state("delivered").len(), 3);
    let state = |i: usize| show_json(&agent, &ids[i])["evidence"][0].clone();
    assert_eq!(state(0)["state"], "pending", "{}", state(0));
    assert!(state(0)["refused"].as_str().unwrap().contains("damaged"), "{}", state(0));
    assert_eq!(state(1)["state"], "pending", "{}", state(1));
    assert!(state(1)["refused"].as_str().unwrap().contains("not the file its report signed"), "{}", state(1));
    assert_eq!(state(2)["state"], "held", "{}", state(2));
    let status = agent.cmd(&["status"]).expect_ok();
    assert!(status.contains("evidence:   1 file(s) held by the server, 0 partly sent, 2 not yet sent"), "{status}");

    // The server never holds either, not even in part, and refused nothing
    // (nothing reached it to refuse).
    let evidence = server.dir().join("evidence");
    let mut held: Vec<String> = std::fs::read_dir(&evidence)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    held.sort();
    assert_eq!(held, vec![hex::encode(intact)]);
    assert_eq!(std::fs::read_dir(evidence.join("partial")).unwrap().count(), 0);
    let stats = server.cmd(&["stats"]).expect_ok();
    assert!(stats.contains("3 file(s) named by reports: 1 held (202000 bytes), 2 missing"), "{stats}");
    assert!(stats.contains("0 refused"), "{stats}");

    // Investigators: rows say which are not held, and the export writes
    // only the intact photo.
    let out_dir = files.path().join("evidence-out");
    let rows = server.cmd(&["export", "--evidence", out_dir.to_str().unwrap()]).expect_ok();
    for line in rows.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let held = row["attachments"][0]["held"].as_bool().unwrap();
        assert_eq!(held, row["id"] == ids[2].as_str(), "{row}");
    }
    let written: Vec<String> =
        std::fs::read_dir(&out_dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(written, vec![hex::encode(intact)]);
    assert_eq!(std::fs::read(out_dir.join(hex::encode(intact))).unwrap(), photos[2]);

    // Trying again changes nothing: the laptop never sends them.
    let again = agent.sync(None);
    assert!((again.stdout() + &again.stderr()).contains("evidence refused 2"), "{again}");
    assert!(!evidence.join(hex::encode(shas[0])).exists() && !evidence.join(hex::encode(shas[1])).exists());
}
