//! `init` makes the sealed keyring once (0600 in a 0700 dir) and prints the
//! key; a second `init` fails and leaves the keyring unchanged; every other
//! command run before `init` says to run it first.

use std::os::unix::fs::PermissionsExt;

use crate::support::TestDir;

#[test]
fn init_makes_a_0600_key_in_a_0700_dir_and_prints_it() {
    let t = TestDir::new();
    let out = t.ok(&["init", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let device = v["device"].as_str().unwrap();
    assert_eq!(device.len(), 64);
    let fp = v["fingerprint"].as_str().unwrap();
    let mut key = [0u8; 32];
    hex::decode_to_slice(device, &mut key).unwrap();
    assert_eq!(fp, truce_shared::signing::fingerprint(&key));
    let key_file = t.dir.join("keyring");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(t.dir.join("queue.sqlite")).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&t.dir).unwrap().permissions().mode() & 0o777, 0o700);
    // `key` shows the same, as text and JSON.
    assert!(t.ok(&["key"]).contains(device));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&t.ok(&["key", "--json"])).unwrap()["device"], device);
    // Text init prints the key and fingerprint too.
    let t2 = TestDir::new();
    let text = t2.ok(&["init"]);
    assert!(text.contains("public key:") && text.contains("fingerprint:"), "{text}");
}

#[test]
fn a_second_init_fails_and_leaves_the_key_unchanged() {
    let t = TestDir::initialised();
    let key_file = t.dir.join("keyring");
    let before = std::fs::read(&key_file).unwrap();
    let mtime = std::fs::metadata(&key_file).unwrap().modified().unwrap();
    let err = t.fails(&["init"]);
    assert!(err.contains("a device key already exists") && err.contains("refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read(&key_file).unwrap(), before);
    assert_eq!(std::fs::metadata(&key_file).unwrap().modified().unwrap(), mtime);
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn every_other_command_before_init_says_to_run_init() {
    let t = TestDir::new();
    let bundle = t.path("b.truce");
    let want = format!("error: no device key in {}: run `truce-agent init` first", t.dir.display());
    for args in [
        vec!["key"],
        vec!["status"],
        vec!["list"],
        vec!["show", "abcd"],
        vec!["record", "--category", "drone", "--lat", "1", "--lon", "2"],
        vec!["sync"],
        vec!["bundle", "export", bundle.to_str().unwrap()],
        vec!["link", "--server", "h:1", "--ca", "a", "--cert", "b", "--key", "c"],
    ] {
        assert_eq!(t.fails(&args), want, "{args:?}");
    }
    assert!(!t.dir.join("keyring").exists());
}

#[test]
fn the_data_dir_comes_from_the_environment_too() {
    let t = TestDir::new();
    let o = crate::support::run(
        std::process::Command::new(crate::support::BIN)
            .arg("init")
            .env("TRUCE_AGENT_DIR", &t.dir)
            .env("TRUCE_PASSPHRASE_FILE", t.passphrase_file()),
    );
    assert!(o.status.success(), "{}", o);
    assert!(t.dir.join("keyring").exists());
    // The passphrase came from the environment's file: it opens with it.
    drop(t.open());
}
