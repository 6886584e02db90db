//! A bundle of 100,000 reports streams through the reader in bounded memory,
//! every report verifies and comes back in order. Its own test binary so the
//! peak-memory reading is not disturbed by other tests.

mod support;

use std::fs::File;
use std::io::{BufReader, BufWriter};

use truce_shared::bundle::{BundleError, BundleReader, BundleWriter};
use truce_shared::{sign, verify};

const REPORTS: u64 = 100_000;

/// Peak resident set of this process in KiB (Linux `VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resets the peak to the current resident set (Linux ≥ 4.0).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[test]
fn a_100k_report_bundle_streams_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.truce");
    let key = support::fixed_key();
    let mut obs = support::shelling();
    // About 1 KiB a report: the file (~100 MiB) is far bigger than the bound.
    obs.description = "x".repeat(1000);

    reset_peak();
    let before = peak_rss_kib();
    let mut w = BundleWriter::new(BufWriter::new(File::create(&path).unwrap())).unwrap();
    let mut prev = [0; 32];
    let mut ids = Vec::with_capacity(REPORTS as usize);
    for seq in 1..=REPORTS {
        let r = sign(&key, &support::fixed_envelope(seq, prev, obs.clone())).unwrap();
        prev = r.id();
        ids.push(prev);
        w.write(&r).unwrap();
    }
    assert_eq!(w.count(), REPORTS);
    w.finish().unwrap();
    let file_kib = std::fs::metadata(&path).unwrap().len() / 1024;
    assert!(file_kib > 90 * 1024, "bundle is {file_kib} KiB");

    reset_peak();
    let base = peak_rss_kib();
    let mut n = 0u64;
    for (i, item) in BundleReader::new(BufReader::new(File::open(&path).unwrap())).unwrap().enumerate() {
        let v = verify(&item.unwrap()).unwrap();
        assert_eq!(v.id, ids[i]);
        assert_eq!(v.envelope.seq, i as u64 + 1);
        n += 1;
    }
    assert_eq!(n, REPORTS);
    let grew = peak_rss_kib().saturating_sub(base);
    println!("writer phase started at {before} KiB; reading a {file_kib} KiB bundle raised peak RSS by {grew} KiB");
    assert!(grew < 8 * 1024, "reading raised peak RSS by {grew} KiB");
}

#[test]
fn a_cut_bundle_names_the_broken_report_and_a_foreign_file_is_refused() {
    let mut buf = Vec::new();
    let mut w = BundleWriter::new(&mut buf).unwrap();
    for r in support::fixed_reports() {
        w.write(&r).unwrap();
    }
    w.finish().unwrap();
    let cut = &buf[..buf.len() - 10];
    let items: Vec<_> = BundleReader::new(cut).unwrap().collect();
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[1].is_ok());
    assert!(matches!(&items[2], Err(BundleError::Frame { index: 3, .. })), "{:?}", items[2]);
    assert!(matches!(BundleReader::new(&b"PK\x03\x04 not a bundle"[..]), Err(BundleError::BadMagic)));
    assert!(matches!(BundleReader::new(&b"TRU"[..]), Err(BundleError::BadMagic)));
}
