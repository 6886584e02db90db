//! A data dir made before sealing is converted by its first command with
//! nothing lost, and an interrupted conversion ends sealed under the
//! protection given when it resumes.

use rusqlite::params;
use sha2::{Digest, Sha256};

use crate::sealed::{
    all_files, assert_nothing_in_clear, contains, needles, photo_bytes, refused_without_passphrase, DESCRIPTION, LAT,
    LON, WEAPON,
};
use crate::support::{run, verified_chain, TestDir};

/// The layout of a data dir made before sealing: the raw seed in
/// `device.key`, schema version 1 with bodies in clear, evidence under its
/// SHA-256, the TLS key in clear.
fn make_old_data_dir(t: &TestDir, photo: &[u8]) -> Vec<[u8; 32]> {
    let dir = &t.dir;
    std::fs::create_dir_all(dir.join("attachments")).unwrap();
    std::fs::create_dir_all(dir.join("link")).unwrap();
    let key = truce_shared::signing::generate_key();
    std::fs::write(dir.join("device.key"), key.to_bytes()).unwrap();
    let sha: [u8; 32] = Sha256::digest(photo).into();
    std::fs::write(dir.join("attachments").join(hex::encode(sha)), photo).unwrap();
    std::fs::write(
        dir.join("link/client.key"),
        "-----BEGIN PRIVATE KEY-----\nOLDKEYMATERIAL\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let db = rusqlite::Connection::open(dir.join("queue.sqlite")).unwrap();
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
         CREATE TABLE receipts (rowid INTEGER PRIMARY KEY, server_key BLOB NOT NULL, server_time INTEGER NOT NULL,
             signature BLOB NOT NULL, ids BLOB NOT NULL);
         CREATE TABLE reports (seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, body BLOB NOT NULL,
             signature BLOB NOT NULL, state TEXT NOT NULL DEFAULT 'pending'
             CHECK (state IN ('pending', 'delivered', 'quarantined', 'rejected')),
             answer TEXT, reason TEXT, answered_at INTEGER, receipt INTEGER REFERENCES receipts(rowid));
         CREATE INDEX reports_by_state ON reports(state, seq);
         PRAGMA user_version = 1;",
    )
    .unwrap();
    db.execute("INSERT INTO meta(key, value) VALUES ('device', ?1)", [hex::encode(key.verifying_key().to_bytes())])
        .unwrap();
    db.execute("INSERT INTO meta(key, value) VALUES ('server', '127.0.0.1:4433')", []).unwrap();
    let mut prev = [0u8; 32];
    let mut ids = Vec::new();
    for seq in 1..=3u64 {
        let mut o = truce_shared::Observation {
            observed_at: 1_795_338_900_000,
            observed_until: None,
            position: truce_shared::Position { lat: LAT.parse().unwrap(), lon: LON.parse().unwrap(), accuracy_m: None },
            bearing_deg: None,
            distance_m: None,
            category: truce_shared::Category::HeavyWeapons,
            effect: None,
            weapon: Some(WEAPON.into()),
            count: None,
            basis: truce_shared::Basis::Seen,
            description: DESCRIPTION.into(),
            attachments: vec![],
        };
        if seq == 2 {
            o.attachments.push(truce_shared::Attachment {
                name: "silo-east.jpg".into(),
                media_type: "image/jpeg".into(),
                size: photo.len() as u64,
                sha256: sha,
            });
        }
        let env = truce_shared::Envelope {
            version: truce_shared::ENVELOPE_VERSION,
            device: key.verifying_key().to_bytes(),
            seq,
            prev,
            recorded_at: 1_795_338_900_000 + seq as i64,
            amends: None,
            observation: o,
        };
        let signed = truce_shared::sign(&key, &env).unwrap();
        db.execute(
            "INSERT INTO reports(seq, id, body, signature) VALUES (?1, ?2, ?3, ?4)",
            params![seq as i64, &signed.id()[..], &signed.body, &signed.signature.0[..]],
        )
        .unwrap();
        prev = signed.id();
        ids.push(prev);
    }
    ids
}

#[test]
fn a_data_dir_made_before_sealing_is_converted_with_nothing_lost() {
    let t = TestDir::new();
    let photo = photo_bytes();
    let ids = make_old_data_dir(&t, &photo);
    // The search finds what an old data dir keeps in clear.
    let before = all_files(&t.dir);
    for what in ["description", "weapon", "latitude bytes", "attachment bytes"] {
        let needle = needles(&photo).into_iter().find(|(w, _)| w == what).unwrap().1;
        assert!(before.values().any(|b| contains(b, &needle)), "the old layout holds the {what} in clear");
    }
    // Without a passphrase to seal under, it says how to convert.
    let err = refused_without_passphrase(&t, &["status"]);
    assert!(err.contains("older truce-agent") && err.contains("--passphrase-file"), "{err}");
    assert!(t.dir.join("device.key").exists(), "nothing changed");
    // The first command with a passphrase converts it.
    let o = run(&mut t.command(&["status", "--json"]));
    assert!(o.status.success(), "{}", o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("converted"), "{}", o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["counts"]["pending"], 3);
    assert_eq!(v["protected"], true);
    assert_eq!(v["server"], "127.0.0.1:4433");
    assert!(!t.dir.join("device.key").exists() && !t.dir.join("link/client.key").exists());
    assert!(t.dir.join("link/client.key.sealed").exists());
    assert_nothing_in_clear(&t.dir, &photo, "after conversion");
    for (p, bytes) in all_files(&t.dir) {
        assert!(!contains(&bytes, b"OLDKEYMATERIAL"), "the old TLS key is in clear in {}", p.display());
    }
    // Nothing lost: the same chain, the evidence opens, and the TLS key too.
    assert_eq!(verified_chain(&t.dir), ids);
    let agent = t.open();
    let mut copy = Vec::new();
    agent.read_attachment(&Sha256::digest(&photo).into(), &mut copy).unwrap();
    assert!(copy == photo);
    let sealed_tls = std::fs::read(t.dir.join("link/client.key.sealed")).unwrap();
    let pem = agent.data_key().unwrap().open_secret(truce_agent::link::TLS_KEY_LABEL, &sealed_tls).unwrap();
    assert!(contains(&pem, b"OLDKEYMATERIAL"));
    // And it opens with the passphrase from then on, converting nothing again.
    let o = run(&mut t.command(&["list"]));
    assert!(o.status.success() && !String::from_utf8_lossy(&o.stderr).contains("convert"), "{}", o);
}

#[test]
fn a_conversion_begun_without_a_passphrase_ends_sealed_under_the_one_given() {
    let t = TestDir::new();
    let photo = photo_bytes();
    make_old_data_dir(&t, &photo);
    // A clear copy no report names (a `record` that failed after copying).
    let orphan = t.dir.join("attachments").join("ab".repeat(32));
    std::fs::write(&orphan, b"ORPHANED-CLEAR-COPY of a photo").unwrap();
    // An interrupted conversion begun with --no-passphrase: its keyring is
    // there, device.key too.
    let seed: [u8; 32] = std::fs::read(t.dir.join("device.key")).unwrap().try_into().unwrap();
    let device = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
    let ring = truce_agent::vault::Keyring::seal(
        device,
        &truce_agent::vault::Secrets::new(&seed),
        &truce_agent::vault::Protection::None,
    )
    .unwrap();
    std::fs::write(t.dir.join("keyring"), ring.to_bytes()).unwrap();
    // Resumed with a passphrase: it ends sealed under it.
    let o = run(&mut t.command(&["status", "--json"]));
    assert!(o.status.success(), "{}", o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["protected"], true);
    assert!(refused_without_passphrase(&t, &["list"]).contains("sealed"));
    assert_eq!(t.ok(&["list"]).lines().count(), 3);
    assert!(!orphan.exists(), "the orphaned clear copy was destroyed");
    for (p, bytes) in all_files(&t.dir) {
        assert!(!contains(&bytes, b"ORPHANED-CLEAR-COPY"), "{}", p.display());
    }
}
