//! A seized laptop gives up nothing it can avoid (DESIGN §11), through the
//! real binary: nothing an observation says is anywhere on disk in clear;
//! without the passphrase only counts and states can be read; a wrong
//! passphrase changes nothing; `passphrase` re-seals the keyring alone;
//! pruning keeps the chain and the receipts; `wipe` leaves nothing that
//! can be read; `--no-passphrase` says so on every run. (Converting a data
//! dir made before sealing: `conversion.rs`.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rusqlite::params;
use sha2::{Digest, Sha256};
use truce_agent::State;
use truce_shared::wire::Status;

use crate::support::{parse_id, run, verified_chain, TestDir};

pub(crate) const DESCRIPTION: &str = "Tanks of the 12th brigade behind the grain silo at Kalynivka";
pub(crate) const WEAPON: &str = "T-72B3 main battle tank";
pub(crate) const LAT: &str = "48.73519";
pub(crate) const LON: &str = "37.58841";

/// Evidence bytes no real file starts with.
pub(crate) fn photo_bytes() -> Vec<u8> {
    let mut b = b"PHOTO-OF-THE-SILO-".to_vec();
    b.extend((0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    b
}

/// Every file under `dir`, recursively, with its bytes.
pub(crate) fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The needles a captor would look for: the texts, the coordinates as text
/// and as the f64 bytes the report encodes, the attachment's name, a slice
/// of its bytes and its hash.
pub(crate) fn needles(photo: &[u8]) -> Vec<(String, Vec<u8>)> {
    let lat: f64 = LAT.parse().unwrap();
    let lon: f64 = LON.parse().unwrap();
    vec![
        ("description".into(), DESCRIPTION.as_bytes().to_vec()),
        ("a word of it".into(), b"Kalynivka".to_vec()),
        ("weapon".into(), WEAPON.as_bytes().to_vec()),
        ("latitude text".into(), LAT.as_bytes().to_vec()),
        ("longitude text".into(), LON.as_bytes().to_vec()),
        ("latitude bytes".into(), lat.to_le_bytes().to_vec()),
        ("longitude bytes".into(), lon.to_le_bytes().to_vec()),
        ("attachment name".into(), b"silo-east.jpg".to_vec()),
        ("attachment bytes".into(), photo[1000..1064].to_vec()),
        ("attachment start".into(), photo[..18].to_vec()),
        ("attachment sha256".into(), Sha256::digest(photo).to_vec()),
        ("attachment sha256 hex".into(), hex::encode(Sha256::digest(photo)).into_bytes()),
    ]
}

pub(crate) fn assert_nothing_in_clear(dir: &Path, photo: &[u8], when: &str) {
    let files = all_files(dir);
    assert!(files.keys().any(|p| p.ends_with("queue.sqlite")), "{when}: the queue is there to search");
    assert_none_in(&files, photo, when);
}

pub(crate) fn assert_none_in(files: &BTreeMap<PathBuf, Vec<u8>>, photo: &[u8], when: &str) {
    for (path, bytes) in files {
        let name = path.to_string_lossy();
        for (what, needle) in needles(photo) {
            assert!(!contains(bytes, &needle), "{when}: the {what} is in clear in {}", path.display());
            assert!(!contains(name.as_bytes(), &needle), "{when}: the {what} is in the file name {name}");
        }
    }
}

pub(crate) fn record_observation(t: &TestDir, photo: &Path) -> [u8; 32] {
    parse_id(&t.ok(&[
        "record",
        "--category",
        "heavy-weapons",
        "--lat",
        LAT,
        "--lon",
        LON,
        "--weapon",
        WEAPON,
        "--description",
        DESCRIPTION,
        "--attach",
        photo.to_str().unwrap(),
    ]))
}

/// Runs without any passphrase and expects one clear error line.
pub(crate) fn refused_without_passphrase(t: &TestDir, args: &[&str]) -> String {
    let o = run(&mut t.bare_command(args));
    assert!(!o.status.success(), "{args:?} without the passphrase\n{}", o);
    let err = String::from_utf8(o.out.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err:?}");
    err
}

#[test]
fn nothing_an_observation_says_is_on_disk_in_clear() {
    let t = TestDir::initialised();
    let photo = photo_bytes();
    let photo_path = t.path("silo-east.jpg");
    std::fs::write(&photo_path, &photo).unwrap();
    // A reader kept open, so the last `record` to close does not fold the
    // WAL away: it is searched while it holds the recent commits, then
    // again after a checkpoint moved them into the main file.
    let db = rusqlite::Connection::open(t.dir.join("queue.sqlite")).unwrap();
    db.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get::<_, i64>(0)).unwrap();
    let first = record_observation(&t, &photo_path);
    for _ in 0..3 {
        record_observation(&t, &photo_path);
    }
    let wal = std::fs::metadata(t.dir.join("queue.sqlite-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal > 0, "the WAL holds the commits and is searched too");
    assert_nothing_in_clear(&t.dir, &photo, "after recording");
    db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    drop(db);
    assert_nothing_in_clear(&t.dir, &photo, "after a checkpoint");
    // Yet everything comes back with the passphrase.
    let shown = t.ok(&["show", &hex::encode(first)]);
    assert!(shown.contains(DESCRIPTION) && shown.contains(WEAPON) && shown.contains("silo-east.jpg"), "{shown}");
    let agent = t.open();
    let mut copy = Vec::new();
    agent.read_attachment(&Sha256::digest(&photo).into(), &mut copy).unwrap();
    assert!(copy == photo, "the sealed evidence copy opens to the original bytes");
    assert_eq!(verified_chain(&t.dir).len(), 4);
}

#[test]
fn without_the_passphrase_only_counts_and_states_can_be_read() {
    let t = TestDir::initialised();
    let photo_path = t.path("silo-east.jpg");
    std::fs::write(&photo_path, photo_bytes()).unwrap();
    let id = hex::encode(record_observation(&t, &photo_path));
    let bundle = t.path("b.truce");
    for args in [
        vec!["record", "--category", "drone", "--lat", "1", "--lon", "2"],
        vec!["list"],
        vec!["show", &id],
        vec!["sync"],
        vec!["bundle", "export", bundle.to_str().unwrap()],
        vec!["prune"],
    ] {
        let err = refused_without_passphrase(&t, &args);
        assert!(err.starts_with("error: this laptop's keys are sealed") && err.contains("--passphrase-file"), "{err}");
    }
    assert!(!bundle.exists());
    // status and key need no passphrase.
    let o = run(&mut t.bare_command(&["status", "--json"]));
    assert!(o.status.success(), "{}", o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["counts"]["pending"], 1);
    assert_eq!(v["protected"], true);
    assert_eq!(v["head"]["id"], id.as_str());
    let o = run(&mut t.bare_command(&["key"]));
    assert!(o.status.success(), "{}", o);
}

#[test]
fn a_wrong_passphrase_changes_nothing_and_says_only_that() {
    let t = TestDir::initialised();
    t.ok(&["record", "--category", "drone", "--lat", "1", "--lon", "2"]);
    let wrong = t.path("wrong");
    std::fs::write(&wrong, "not the passphrase\n").unwrap();
    let before = all_files(&t.dir);
    for args in [
        vec!["record", "--category", "drone", "--lat", "1", "--lon", "2"],
        vec!["list"],
        vec!["passphrase", "--new-passphrase-file", wrong.to_str().unwrap()],
    ] {
        let mut c = t.bare_command(&["--passphrase-file", wrong.to_str().unwrap()]);
        let o = run(c.args(&args));
        assert!(!o.status.success(), "{args:?}\n{}", o);
        let err = String::from_utf8(o.out.stderr.clone()).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{err:?}");
        assert!(err.starts_with("error: wrong passphrase: nothing was changed"), "{err}");
    }
    assert!(all_files(&t.dir) == before, "no file changed");
}

#[test]
fn a_new_passphrase_reseals_the_keyring_and_nothing_else() {
    let t = TestDir::initialised();
    let id = t.ok(&["record", "--category", "drone", "--lat", "1", "--lon", "2", "--description", "before"]);
    let queue_before = std::fs::read(t.dir.join("queue.sqlite")).unwrap();
    let ring_before = std::fs::read(t.dir.join("keyring")).unwrap();
    let new = t.path("new");
    std::fs::write(&new, "a different set of words\n").unwrap();
    let out = t.ok(&["passphrase", "--new-passphrase-file", new.to_str().unwrap()]);
    assert!(out.contains("passphrase changed"), "{out}");
    assert!(std::fs::read(t.dir.join("queue.sqlite")).unwrap() == queue_before, "the queue is not re-encrypted");
    assert_ne!(std::fs::read(t.dir.join("keyring")).unwrap(), ring_before);
    // The old passphrase no longer opens; the new one does, and the queue reads.
    let err = t.fails(&["list"]);
    assert!(err.starts_with("error: wrong passphrase"), "{err}");
    let mut c = t.bare_command(&["--passphrase-file", new.to_str().unwrap(), "show", id.trim()]);
    let o = run(&mut c);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("before"), "{}", o);
    // Too short a new passphrase is refused before anything changes.
    let short = t.path("short");
    std::fs::write(&short, "abc\n").unwrap();
    let ring = std::fs::read(t.dir.join("keyring")).unwrap();
    let mut c = t.bare_command(&["--passphrase-file", new.to_str().unwrap()]);
    let o = run(c.args(["passphrase", "--new-passphrase-file", short.to_str().unwrap()]));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("too short"), "{}", o);
    assert!(std::fs::read(t.dir.join("keyring")).unwrap() == ring, "refused before anything changed");
    // No copy of an old keyring is left behind.
    assert_eq!(all_files(&t.dir).keys().filter(|p| p.to_string_lossy().contains("keyring")).count(), 1);
}

/// Marks reports delivered and proven as a server's signed Ack and its
/// proofs would, `answered_at`
/// set back so the keep period has passed.
pub(crate) fn deliver(t: &TestDir, ids: &[[u8; 32]], days_ago: i64) {
    let results: Vec<_> = ids.iter().map(|id| (*id, Status::Accepted)).collect();
    crate::support::record_ack(t, &crate::support::log_key(5), &results, 1);
    // Proven in the log, as sync's proofs would: only then is a body pruned.
    let proven: Vec<_> = ids.iter().enumerate().map(|(i, id)| (*id, i as u64)).collect();
    t.open().record_proven(&proven, "a checkpoint").unwrap();
    let db = rusqlite::Connection::open(t.dir.join("queue.sqlite")).unwrap();
    let at = truce_shared::time::now_ms() - days_ago * 86_400_000;
    for id in ids {
        db.execute("UPDATE reports SET answered_at = ?1 WHERE id = ?2", params![at, &id[..]]).unwrap();
    }
}

#[test]
fn pruning_deletes_old_delivered_bodies_and_keeps_the_chain_and_receipts() {
    let t = TestDir::initialised();
    let ids: Vec<[u8; 32]> = (0..5)
        .map(|i| {
            let d = format!("pruned later {i}");
            parse_id(&t.ok(&["record", "--category", "drone", "--lat", "1", "--lon", "2", "--description", &d]))
        })
        .collect();
    // Three delivered 8 days ago, one 2 days ago, one still pending.
    deliver(&t, &ids[..3], 8);
    deliver(&t, &ids[3..4], 2);
    // The default keep period (7 days) prunes at the next unlocked command.
    let list = t.ok(&["list"]);
    assert_eq!(list.matches("(pruned after delivery").count(), 3, "{list}");
    let status: serde_json::Value = serde_json::from_str(&t.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["pruned"], 3);
    assert_eq!(status["keep_delivered_s"], 7 * 86_400);
    // What is left of a pruned report: id, seq, state, answer and receipt.
    let shown: serde_json::Value = serde_json::from_str(&t.ok(&["show", &hex::encode(ids[0]), "--json"])).unwrap();
    assert_eq!(shown["pruned"], true);
    assert_eq!(shown["state"], "delivered");
    assert!(shown["observation"].is_null());
    assert_eq!(shown["receipt"]["valid"], true, "the receipt still proves delivery");
    // --keep-delivered 0 prunes the one delivered 2 days ago too, and is kept.
    let out = t.ok(&["prune", "--keep-delivered", "0"]);
    assert!(out.contains("pruned 1 report(s)"), "{out}");
    let status: serde_json::Value = serde_json::from_str(&t.ok(&["status", "--json"])).unwrap();
    assert_eq!(status["keep_delivered_s"], 0);
    assert_eq!(status["counts"]["pending"], 1);
    // The head itself delivered and pruned at once.
    deliver(&t, &ids[4..], 0);
    let out = t.ok(&["prune"]);
    assert!(out.contains("pruned 1 report(s)"), "{out}");
    // The chain goes on: a new record links to the pruned head, and the
    // whole chain checks with the pruned links taken at their ids.
    let next = parse_id(&t.ok(&["record", "--category", "drone", "--lat", "1", "--lon", "2"]));
    let agent = t.open();
    let check = agent.check_chain().unwrap();
    assert_eq!(check.reports, 6);
    assert_eq!(check.head.map(|h| h.id), Some(next));
    let r = agent.queue().find(&hex::encode(next)).unwrap();
    assert_eq!(r.envelope().unwrap().unwrap().prev, ids[4]);
    assert_eq!(agent.queue().counts().unwrap()[1], (State::Delivered, 5));
    // A bad duration is refused with the forms to use.
    let err = t.fails(&["prune", "--keep-delivered", "a week"]);
    assert!(err.contains("0, 90m, 12h or 7d"), "{err}");
}

#[test]
fn wipe_leaves_nothing_that_can_be_read_even_with_the_passphrase() {
    let t = TestDir::initialised();
    let photo = photo_bytes();
    let photo_path = t.path("silo-east.jpg");
    std::fs::write(&photo_path, &photo).unwrap();
    record_observation(&t, &photo_path);
    // A captor's copy of the queue taken now, to try after the wipe.
    let queue_copy = std::fs::read(t.dir.join("queue.sqlite")).unwrap();
    // No terminal and no --yes: refused, nothing destroyed.
    let err = t.fails(&["wipe"]);
    assert!(err.contains("--yes"), "{err}");
    assert!(t.dir.join("keyring").exists());
    let out = t.ok(&["wipe", "--yes"]);
    assert!(out.contains("cannot reach copies of this disk"), "{out}");
    assert!(!t.dir.join("keyring").exists());
    let left = all_files(&t.dir);
    assert!(left.is_empty(), "wipe removed the queue, evidence and link files too: {:?}", left.keys());
    // Put the queue copy back: with the passphrase it still cannot be read,
    // because the data key that sealed it is gone.
    std::fs::write(t.dir.join("queue.sqlite"), &queue_copy).unwrap();
    let err = t.fails(&["list"]);
    assert!(err.contains("run `truce-agent init` first"), "{err}");
    // A new init starts a new device in the same dir.
    std::fs::remove_file(t.dir.join("queue.sqlite")).unwrap();
    t.ok(&["init"]);
}

#[test]
fn no_passphrase_works_and_says_so_on_every_run() {
    let t = TestDir::new();
    let o = run(&mut t.bare_command(&["--no-passphrase", "init"]));
    assert!(o.status.success(), "{}", o);
    let warned =
        |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).contains("not protected by a passphrase");
    assert!(warned(&o.out), "{}", o);
    for args in [vec!["record", "--category", "drone", "--lat", "1", "--lon", "2"], vec!["list"], vec!["status"]] {
        let o = run(&mut t.bare_command(&args));
        assert!(o.status.success(), "{args:?}: {}", o);
        assert!(warned(&o.out), "{args:?} warns: {}", o);
    }
    // Setting a passphrase later protects it from then on.
    let o = run(&mut t.bare_command(&["passphrase", "--new-passphrase-file", t.passphrase_file().to_str().unwrap()]));
    assert!(o.status.success(), "{}", o);
    assert!(refused_without_passphrase(&t, &["list"]).contains("sealed"));
    assert_eq!(t.ok(&["list"]).lines().count(), 1);
}

#[test]
fn init_on_a_terminal_asks_twice_and_refuses_a_mismatch() {
    use rexpect::session::spawn_command;
    let t = TestDir::new();
    let spawn = || {
        let mut c = t.bare_command(&["init"]);
        c.stdin(std::process::Stdio::inherit());
        spawn_command(c, Some(20_000)).unwrap()
    };
    let mut p = spawn();
    p.exp_string("new passphrase: ").unwrap();
    // While the keys may be in its memory, the process writes no core file.
    #[cfg(target_os = "linux")]
    {
        let dir = t.dir.to_str().unwrap();
        let pid = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                contains(&cmd, dir.as_bytes()) && contains(&cmd, b"init")
            })
            .expect("the init process");
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
        assert_eq!(core.split_whitespace().skip(4).take(2).collect::<Vec<_>>(), ["0", "0"], "{core}");
    }
    p.send_line("first set of words").unwrap();
    p.exp_string("the same again: ").unwrap();
    p.send_line("second set of words").unwrap();
    p.exp_string("the two passphrases differ: nothing was changed").unwrap();
    p.exp_eof().unwrap();
    assert!(!t.dir.join("keyring").exists());
    let mut p = spawn();
    p.exp_string("new passphrase: ").unwrap();
    p.send_line(crate::support::PASSPHRASE).unwrap();
    p.exp_string("the same again: ").unwrap();
    p.send_line(crate::support::PASSPHRASE).unwrap();
    p.exp_string("fingerprint:").unwrap();
    p.exp_eof().unwrap();
    // Sealed under what was typed: the passphrase file opens it.
    assert!(t.ok(&["status"]).contains("sealed under a passphrase"));
    // wipe on a terminal wants the typed word.
    let mut c = t.bare_command(&["wipe"]);
    c.stdin(std::process::Stdio::inherit());
    let mut p = spawn_command(c, Some(20_000)).unwrap();
    p.exp_string("Type WIPE to go on: ").unwrap();
    p.send_line("yes").unwrap();
    p.exp_string("not confirmed: nothing was destroyed").unwrap();
    p.exp_eof().unwrap();
    assert!(t.dir.join("keyring").exists());
}

#[test]
fn a_pruned_report_keeps_its_evidence_until_the_server_holds_it() {
    let t = TestDir::initialised();
    let photo = photo_bytes();
    let photo_path = t.path("silo-east.jpg");
    std::fs::write(&photo_path, &photo).unwrap();
    let id = record_observation(&t, &photo_path);
    deliver(&t, &[id], 0);
    let out = t.ok(&["prune", "--keep-delivered", "0"]);
    assert!(out.contains("pruned 1 report(s) and 0 evidence file(s)"), "{out}");
    // The body is gone; the evidence copy is the only one until upload
    // (DESIGN §10) says the server holds it, so it stays, sealed.
    let shown: serde_json::Value = serde_json::from_str(&t.ok(&["show", &hex::encode(id), "--json"])).unwrap();
    assert_eq!(shown["pruned"], true);
    let mut copy = Vec::new();
    t.open().read_attachment(&Sha256::digest(&photo).into(), &mut copy).unwrap();
    assert!(copy == photo);
    // Once the server holds it, the next prune deletes it.
    let mut agent = t.open();
    let name = agent.data_key().unwrap().file_name(&Sha256::digest(&photo).into());
    agent.queue_mut().mark_file_held(&name).unwrap();
    drop(agent);
    let out = t.ok(&["prune"]);
    assert!(out.contains("0 report(s) and 0 evidence file(s)"), "the report was pruned already: {out}");
    assert!(t.dir.join("attachments").join(&name).exists(), "files go with the prune of their last report");
    let id2 = record_observation(&t, &photo_path);
    let mut agent = t.open();
    agent.queue_mut().mark_file_held(&name).unwrap();
    drop(agent);
    deliver(&t, &[id2], 0);
    let out = t.ok(&["prune"]);
    assert!(out.contains("pruned 1 report(s) and 1 evidence file(s)"), "{out}");
    assert!(!t.dir.join("attachments").join(&name).exists());
}

#[test]
fn wipe_works_on_a_damaged_keyring_and_leaves_no_copy_of_it() {
    let t = TestDir::initialised();
    t.ok(&["record", "--category", "drone", "--lat", "1", "--lon", "2"]);
    // A keyring being replaced when the laptop was taken: a full copy
    // under a temporary name.
    std::fs::copy(t.dir.join("keyring"), t.dir.join(".truce-AbC123")).unwrap();
    std::fs::write(t.dir.join("keyring"), b"{ damaged").unwrap();
    let err = t.fails(&["list"]);
    assert!(err.contains("damaged"), "{err}");
    let out = t.ok(&["wipe", "--yes"]);
    assert!(out.contains("wiped"), "{out}");
    assert!(all_files(&t.dir).is_empty(), "{:?}", all_files(&t.dir).keys());
}
