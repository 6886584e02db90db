//! Each bad input is refused with one line that names the field and the
//! fix; nothing is written (same chain, no new attachment copies).

use std::path::Path;

use crate::support::{verified_chain, TestDir};

/// The chain and the attachment store, to compare before and after.
fn snapshot(dir: &Path) -> (Vec<[u8; 32]>, Vec<String>) {
    let mut files: Vec<String> = std::fs::read_dir(dir.join("attachments"))
        .map(|rd| rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    files.sort();
    (verified_chain(dir), files)
}

#[test]
fn each_bad_input_is_refused_and_changes_nothing() {
    let t = TestDir::initialised();
    let photo = t.path("photo.jpg");
    std::fs::write(&photo, b"jpeg bytes").unwrap();
    let photo = photo.to_str().unwrap().to_string();
    // One good report with an attachment, so "unchanged" has something to keep.
    let first = t.ok(&["record", "--category", "drone", "--lat", "1", "--lon", "2", "--attach", &photo]);
    let before = snapshot(&t.dir);
    let long_description = "x".repeat(8 * 1024 + 1);
    let long_weapon = "w".repeat(129);
    let missing = t.path("missing.jpg").to_str().unwrap().to_string();
    let many: Vec<String> = (0..33).map(|_| photo.clone()).collect();
    let base = ["record", "--category", "shelling", "--lat", "48.5", "--lon", "37.9"];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|s| s.to_string()).collect() };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["record", "--category", "shelling", "--lat", "91", "--lon", "37.9"]
                .into_iter()
                .map(String::from)
                .collect(),
            "latitude 91 is out of range",
        ),
        (
            vec!["record", "--category", "shelling", "--lat", "48", "--lon", "-180.5"]
                .into_iter()
                .map(String::from)
                .collect(),
            "longitude -180.5 is out of range",
        ),
        (
            vec!["record", "--category", "artillery", "--lat", "48", "--lon", "37"]
                .into_iter()
                .map(String::from)
                .collect(),
            "--category: unknown value \"artillery\"",
        ),
        (
            vec!["record", "--category", "shelling", "--lat", "north", "--lon", "37"]
                .into_iter()
                .map(String::from)
                .collect(),
            "--lat: \"north\" is not a number",
        ),
        (
            vec!["record", "--category", "shelling", "--lat", "48"].into_iter().map(String::from).collect(),
            "--lon missing",
        ),
        (with(&["--description", &long_description]), "description is 8193 bytes"),
        (with(&["--weapon", &long_weapon]), "weapon is 129 bytes"),
        (with(&["--attach", &missing]), "no such file"),
        (with(&["--attach", &photo, &missing]), "no such file"),
        (with(&["--at", "yesterday"]), "--at: cannot read time \"yesterday\""),
        (with(&["--at", "-1h", "--until", "-2h"]), "--until must be at or after --at"),
        (with(&["--bearing", "360"]), "bearing 360 is out of range"),
        (with(&["--distance", "7000-5000"]), "distance 7000-5000 m is inverted"),
        (with(&["--distance", "far"]), "--distance: \"far\" is not a distance"),
        (with(&["--effect", "big"]), "--effect: unknown value \"big\""),
        (with(&["--basis", "guessed"]), "--basis: unknown value \"guessed\""),
        (with(&["--count", "many"]), "--count: \"many\" is not a whole number"),
        (with(&["--accuracy", "-3"]), "--accuracy"),
        (with(&["--amends", "ffffffffff"]), "--amends: no report ffffffffff"),
        (with(&["--amends", "zz"]), "is not a report id"),
        (with(&["--about"]), "--count"),
        (with(&["--attach"]).into_iter().chain(many).collect(), "33 attachments"),
    ];
    for (args, expect) in cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = t.fails(&argv);
        assert!(err.contains(expect), "{:?}: expected {expect:?} in {err:?}", &argv[..argv.len().min(9)]);
        assert_eq!(snapshot(&t.dir), before, "{err}: the queue or attachments changed");
    }
    // No staging copies were left behind either.
    let leftovers: Vec<_> = std::fs::read_dir(t.dir.join("attachments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(verified_chain(&t.dir).len(), 1, "still only {first}");
}

#[test]
fn usage_mistakes_are_one_line_and_a_bare_command_shows_help() {
    let t = TestDir::initialised();
    let err = t.fails(&["record", "--bogus"]);
    assert!(err.contains("unexpected argument '--bogus'") && err.contains("--help"), "{err}");
    let err = t.fails(&["record", "--category", "drone", "--lat", "1", "--lon", "2", "--about"]);
    assert!(err.contains("--count"), "{err}");
    let err = t.fails(&[]);
    assert!(err.contains("subcommand"), "{err}");
    let o = std::process::Command::new(crate::support::BIN).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Usage: truce-agent"));
    assert!(t.ok(&["--help"]).contains("bundle"));
    assert!(t.ok(&["--version"]).starts_with("truce-agent "));
}
