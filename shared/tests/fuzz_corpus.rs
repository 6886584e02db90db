//! Replays the fuzz targets' committed inputs without the fuzzer: the seed
//! corpus (`shared/fuzz/seeds/<target>/`) and every input a fuzz run ever
//! failed on (`shared/fuzz/regressions/<target>/`). Each must pass the
//! target's property in `truce_shared::fuzzing`.

use std::fs;
use std::path::{Path, PathBuf};

use truce_shared::encoding;
use truce_shared::fuzzing;
use truce_shared::wire::Message;
use truce_shared::SignedReport;

/// A fuzz target's property.
type Property = fn(&[u8]);

const TARGETS: [(&str, Property); 4] = [
    ("frame", fuzzing::frame),
    ("message", fuzzing::message),
    ("report", fuzzing::report),
    ("bundle", fuzzing::bundle),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none if the folder is absent.
fn inputs(kind: &str, target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(entries) = fs::read_dir(&dir) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.expect("readable fuzz dir entry").path()).collect();
    paths.sort();
    paths.into_iter().map(|p| (p.clone(), fs::read(&p).expect("readable fuzz input"))).collect()
}

#[test]
fn every_seed_and_every_past_crash_input_passes_its_target() {
    let mut replayed = 0;
    for (target, check) in TARGETS {
        let seeds = inputs("seeds", target);
        assert!(!seeds.is_empty(), "no seed corpus for fuzz target {target}");
        for (path, data) in seeds.iter().chain(&inputs("regressions", target)) {
            let outcome = std::panic::catch_unwind(|| check(data));
            assert!(outcome.is_ok(), "fuzz target {target} fails on {}", path.display());
            replayed += 1;
        }
    }
    println!("replayed {replayed} fuzz inputs");
}

#[test]
fn the_report_seeds_are_valid_reports_so_the_fuzzer_starts_past_verification() {
    for (path, data) in inputs("seeds", "report") {
        let report: SignedReport = encoding::decode(&data).expect("seed decodes");
        truce_shared::verify(&report).unwrap_or_else(|e| panic!("{} does not verify: {e}", path.display()));
    }
    for (path, data) in inputs("seeds", "message") {
        encoding::decode::<Message>(&data).unwrap_or_else(|e| panic!("{} is not a message: {e}", path.display()));
    }
    let (_, bundle) = &inputs("seeds", "bundle")[1];
    let reports: Vec<_> = truce_shared::bundle::BundleReader::new(&bundle[..]).expect("bundle magic").collect();
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| r.as_ref().is_ok_and(|r| truce_shared::verify(r).is_ok())));
}
