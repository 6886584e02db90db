//! Replays the session fuzz target's committed inputs without the fuzzer:
//! the seeds (`server/fuzz/seeds/session/`) and every input a fuzz run
//! ever failed on (`server/fuzz/regressions/session/`).

use std::fs;
use std::path::{Path, PathBuf};

fn inputs(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(kind).join("session");
    let Ok(entries) = fs::read_dir(&dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> =
        entries.map(|e| e.expect("readable fuzz dir entry").path()).filter(|p| p.is_file()).collect();
    paths.sort();
    paths
}

#[test]
fn every_session_seed_and_past_crash_input_ends_cleanly_with_well_formed_answers() {
    let seeds = inputs("seeds");
    assert!(!seeds.is_empty(), "no seed corpus for the session target");
    for path in seeds.iter().chain(&inputs("regressions")) {
        let data = fs::read(path).expect("readable fuzz input");
        let outcome = std::panic::catch_unwind(|| truce_server::fuzzing::session(&data));
        assert!(outcome.is_ok(), "the session target fails on {}", path.display());
    }
}

#[test]
fn the_full_session_seed_reaches_the_commit_path_and_gets_its_acks() {
    let seed =
        inputs("seeds").into_iter().find(|p| p.ends_with("seed-hello-submit-bye")).expect("the full-session seed");
    let data = fs::read(seed).expect("readable seed");
    assert_eq!(truce_server::fuzzing::session(&data), 2, "Hello, two Submits, Bye: two Acks");
}
