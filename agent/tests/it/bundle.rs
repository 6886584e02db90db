//! `bundle export` writes what truce-shared's `BundleReader` reads back,
//! every report verifies, and exporting leaves reports pending.

use truce_agent::State;
use truce_shared::bundle::BundleReader;
use truce_shared::wire::Status;

use crate::support::TestDir;

fn read_bundle(path: &std::path::Path) -> Vec<[u8; 32]> {
    let f = std::fs::File::open(path).unwrap();
    BundleReader::new(std::io::BufReader::new(f))
        .unwrap()
        .map(|r| {
            let v = truce_shared::verify(&r.unwrap()).expect("every bundled report verifies");
            v.id
        })
        .collect()
}

#[test]
fn an_exported_bundle_reads_back_and_every_report_verifies() {
    let t = TestDir::initialised();
    let mut ids = Vec::new();
    for i in 0..25 {
        let d = format!("report {i}");
        ids.push(t.record("heavy-weapons", &d));
    }
    // Mark the first five delivered, as a server's Ack would.
    let results: Vec<_> = ids[..5].iter().map(|id| (*id, Status::Accepted)).collect();
    crate::support::record_ack(&t, &crate::support::log_key(5), &results, 1);

    let pending = t.path("pending.truce");
    let out = t.ok(&["bundle", "export", pending.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["reports"], 20);
    assert_eq!(read_bundle(&pending), ids[5..].to_vec(), "pending reports, oldest first");

    let all = t.path("all.truce");
    let text = t.ok(&["bundle", "export", all.to_str().unwrap(), "--all"]);
    assert!(text.contains("wrote 25 report(s)"), "{text}");
    assert_eq!(read_bundle(&all), ids);

    // Exporting changed nothing: 20 still pending.
    let counts = t.open().queue().counts().unwrap();
    assert_eq!(counts[0], (State::Pending, 20));
    assert_eq!(counts[1], (State::Delivered, 5));
    // No temporary files left beside the bundles.
    let stray: Vec<_> = std::fs::read_dir(t.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".truce-"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

#[test]
fn an_empty_queue_exports_an_empty_bundle() {
    let t = TestDir::initialised();
    let p = t.path("empty.truce");
    t.ok(&["bundle", "export", p.to_str().unwrap()]);
    assert!(read_bundle(&p).is_empty());
    assert_eq!(std::fs::read(&p).unwrap(), b"TRUCEB02");
}
