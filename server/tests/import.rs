//! `import` (DESIGN §5): a bundle carried on a USB stick gets exactly the
//! outcomes the same reports get over the wire, through the same verifier,
//! writer and rules; a damaged bundle is reported by file and index, its
//! readable reports imported.

use std::collections::BTreeMap;
use std::path::Path;

use truce_server::store::ReportStatus;
use truce_shared::bundle::BundleWriter;
use truce_shared::wire::Status;
use truce_shared::{encoding, frame, SignedReport};

use crate::common::*;

fn write_bundle(path: &Path, reports: &[SignedReport]) {
    let mut w = BundleWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for r in reports {
        w.write(r).unwrap();
    }
    w.finish().unwrap();
}

fn counts(statuses: &[Status]) -> serde_json::Value {
    let mut s = truce_server::import::ImportSummary::default();
    for st in statuses {
        s.add(st);
    }
    serde_json::to_value(&s).unwrap()
}

/// Each stored report's status and reason, by id.
fn stored(store: &truce_server::Store) -> BTreeMap<String, (ReportStatus, Option<String>)> {
    let mut out = BTreeMap::new();
    store
        .for_each_report(&Default::default(), |r| {
            out.insert(hex::encode(r.id), (r.status, r.reason));
            Ok::<_, truce_server::StoreError>(())
        })
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_gets_the_same_outcomes_as_the_wire() {
    let pki = Pki::new(&["laptop"]);
    let mut enrolled = Device::new();
    let mut stranger = Device::new();
    let a = enrolled.batch(3, "enrolled");
    let fork = enrolled.at(2, a[0].id(), "the other seq 2");
    let forged = tampered(&enrolled.next("forged"));
    let mut env = enrolled.envelope(5, forged.id(), "longitude 200");
    env.observation.position.lon = 200.0;
    let out_of_range = enrolled.sign_raw(encoding::encode(&env));
    let s = stranger.batch(2, "not enrolled");
    let reports: Vec<SignedReport> = [
        a.clone(),
        vec![a[1].clone(), fork.clone(), forged.clone(), out_of_range.clone()],
        s.clone(),
        vec![s[0].clone(), fork.clone()],
    ]
    .concat();

    // Over the wire.
    let wire_server = InProcessServer::start(&pki, quick_limits()).await;
    ok(wire_server.cli(&["device", "add", &enrolled.hex()]));
    let mut c = Client::open(wire_server.addr, pki.client_tls("laptop")).await;
    let wire_statuses = c.submit(reports.clone()).await.statuses();
    c.bye().await;

    // On a stick.
    let data = tempfile::tempdir().unwrap();
    ok(cli(data.path(), &["init"]));
    ok(cli(data.path(), &["device", "add", &enrolled.hex()]));
    let bundle = data.path().join("stick.truce");
    write_bundle(&bundle, &reports);
    let out = ok(cli(data.path(), &["--json", "import", bundle.to_str().unwrap()]));
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary, counts(&wire_statuses), "import counts = wire outcomes\n{out}");
    assert_eq!(summary["accepted"], 3);
    assert_eq!(summary["duplicate"], 2);
    assert_eq!(summary["quarantined"]["unknown device"], 2);
    assert_eq!(summary["rejected"]["equivocation"], 2);
    assert_eq!(summary["rejected"]["bad signature"], 1);

    // The stores agree report by report.
    let imported = truce_server::paths::DataDir::new(data.path()).open_store().unwrap();
    assert_eq!(stored(&imported), stored(&wire_server.store()));
    assert_eq!(imported.stats().unwrap().forks, 1);

    // The same stick again: nothing new.
    let out = ok(cli(data.path(), &["import", bundle.to_str().unwrap()]));
    assert!(out.starts_with("imported 11 report(s): 0 accepted, 7 duplicate, 0 quarantined, 4 rejected"), "{out}");
    wire_server.stop().await;
}

#[test]
fn a_damaged_bundle_is_reported_by_index_and_the_readable_reports_imported() {
    let data = tempfile::tempdir().unwrap();
    ok(cli(data.path(), &["init"]));
    let mut d = Device::new();
    ok(cli(data.path(), &["device", "add", &d.hex()]));
    let (r1, r2) = (d.next("one"), d.next("two"));

    // #1 a report, #2 a frame that is not a report, #3 a report, #4 cut short.
    let damaged = data.path().join("damaged.truce");
    {
        let mut w = BundleWriter::new(Vec::new()).unwrap();
        w.write(&r1).unwrap();
        let mut bytes = w.finish().unwrap();
        frame::write_frame_sync(&mut bytes, &[0xFF; 40], 1024).unwrap();
        frame::write_frame_sync(&mut bytes, &encoding::encode(&r2), 1 << 20).unwrap();
        bytes.extend_from_slice(&100u32.to_be_bytes());
        bytes.extend_from_slice(&[0; 10]);
        std::fs::write(&damaged, bytes).unwrap();
    }
    let not_a_bundle = data.path().join("notes.txt");
    std::fs::write(&not_a_bundle, "shopping list").unwrap();
    let r3 = d.next("three");
    let good = data.path().join("good.truce");
    write_bundle(&good, std::slice::from_ref(&r3));

    let out = cli(
        data.path(),
        &["--json", "import", damaged.to_str().unwrap(), not_a_bundle.to_str().unwrap(), good.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "damaged input is not silently dropped");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], 3, "{summary}");
    assert_eq!(summary["rejected"]["malformed"], 2, "{summary}");
    let stderr = String::from_utf8(out.out.stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(lines[0].contains("damaged.truce: report #2"), "{stderr}");
    assert!(lines[1].contains("damaged.truce: report #4") && lines[1].contains("truncated"), "{stderr}");
    assert!(lines[2].contains("notes.txt") && lines[2].contains("not a Truce bundle"), "{stderr}");
    let store = truce_server::paths::DataDir::new(data.path()).open_store().unwrap();
    for r in [&r1, &r2, &r3] {
        assert_eq!(rows_with_id(&store, &r.id()), 1);
    }
}

#[test]
fn a_bundle_of_many_bad_frames_is_counted_not_listed() {
    use truce_server::import::MAX_PROBLEMS_LISTED;
    let data = tempfile::tempdir().unwrap();
    ok(cli(data.path(), &["init"]));
    let mut d = Device::new();
    ok(cli(data.path(), &["device", "add", &d.hex()]));
    let good = d.next("the one good report");
    let bad_frames = 200_000u64;
    let path = data.path().join("junk.truce");
    {
        let mut w = BundleWriter::new(Vec::new()).unwrap();
        w.write(&good).unwrap();
        let mut bytes = w.finish().unwrap();
        for _ in 0..bad_frames {
            frame::write_frame_sync(&mut bytes, &[0xFF; 3], 1024).unwrap();
        }
        std::fs::write(&path, bytes).unwrap();
    }
    let out = cli(data.path(), &["--json", "import", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "bad frames are not silently dropped");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], 1, "{summary}");
    assert_eq!(summary["rejected"]["malformed"], bad_frames, "every bad frame is counted");
    assert_eq!(summary["problems"].as_array().unwrap().len(), MAX_PROBLEMS_LISTED);
    assert_eq!(summary["problems_not_listed"], bad_frames - MAX_PROBLEMS_LISTED as u64);
    let stderr = String::from_utf8(out.out.stderr.clone()).unwrap();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), MAX_PROBLEMS_LISTED + 1, "{}", &stderr[..stderr.len().min(400)]);
    assert!(lines[MAX_PROBLEMS_LISTED].contains(&format!("and {} more", bad_frames - MAX_PROBLEMS_LISTED as u64)));
}
