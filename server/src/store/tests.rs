//! The store's rules, checked on a store in memory.

use super::*;
use ed25519_dalek::SigningKey;
use truce_shared::wire::Status;
use truce_shared::{Bytes32, Observation, SignedReport};

use crate::verify::Checked;

fn obs(t: i64) -> Observation {
    Observation { observed_at: t, ..truce_testkit::observation("bursts to the north") }
}

fn report(key: &SigningKey, seq: u64, prev: Bytes32, t: i64) -> SignedReport {
    let env = truce_testkit::envelope(key.verifying_key().to_bytes(), seq, prev, obs(t));
    truce_shared::sign(key, &env).unwrap()
}

fn apply(store: &mut Store, reports: &[SignedReport]) -> Vec<Status> {
    let checked: Vec<Checked> = reports.iter().cloned().map(Checked::check).collect();
    let out = store.write(|tx| Store::apply(tx, &checked, 1_000, &super::Arrival::Import([0; 32]))).unwrap();
    out.into_iter().map(|o| o.status).collect()
}

#[test]
fn the_outcomes_of_design_section_5() {
    let mut s = Store::open_in_memory().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let dev = key.verifying_key().to_bytes();
    let a = report(&key, 1, [0; 32], 10);
    let b = report(&key, 2, a.id(), 20);
    let fork = report(&key, 2, a.id(), 21);
    let mut bad = report(&key, 3, b.id(), 30);
    bad.signature.0[0] ^= 1;

    assert_eq!(
        apply(&mut s, &[a.clone(), a.clone()]),
        vec![Status::Quarantined("unknown device".into()), Status::Duplicate]
    );
    let e = s.add_device(&dev, Some("laptop-1"), 50).unwrap();
    assert_eq!(e, Enrolled { new: true, promoted: 1, held_back: 0 });
    assert_eq!(s.report(&a.id()).unwrap().unwrap().status, ReportStatus::Verified);
    assert_eq!(
        apply(&mut s, &[b.clone(), fork.clone(), bad.clone(), bad.clone(), fork.clone()]),
        vec![
            Status::Accepted,
            Status::Rejected("equivocation".into()),
            Status::Rejected("bad signature".into()),
            Status::Rejected("bad signature".into()),
            Status::Rejected("equivocation".into()),
        ]
    );
    let st = s.stats().unwrap();
    assert_eq!(st.forks, 1);
    let (rows, times) = (st.rejections.distinct, st.rejections.arrivals);
    assert_eq!((rows, times), (1, 2), "the same forged bytes twice are one row, counted twice");

    let r = s.revoke_device(&dev, Some("laptop lost"), 60, None).unwrap();
    assert_eq!(r, Revoked { revoked_at: 60, new: true, compromised_since: None });
    let c = report(&key, 3, b.id(), 70);
    assert_eq!(apply(&mut s, &[c]), vec![Status::Quarantined("revoked".into())]);
    assert!(matches!(s.add_device(&dev, None, 80), Err(DeviceError::Revoked { revoked_at: 60 })));
}

#[test]
fn enrolment_holds_back_quarantined_forks() {
    let mut s = Store::open_in_memory().unwrap();
    let key = SigningKey::from_bytes(&[8; 32]);
    let a = report(&key, 1, [0; 32], 10);
    let a2 = report(&key, 1, [0; 32], 11);
    let b = report(&key, 2, a.id(), 20);
    apply(&mut s, &[a.clone(), a2, b.clone()]);
    let e = s.add_device(&key.verifying_key().to_bytes(), None, 50).unwrap();
    assert_eq!((e.promoted, e.held_back), (1, 1));
    let row = s.report(&a.id()).unwrap().unwrap();
    assert_eq!((row.status, row.reason.as_deref()), (ReportStatus::Quarantined, Some("equivocation")));
    assert_eq!(s.report(&b.id()).unwrap().unwrap().status, ReportStatus::Verified);
}

#[test]
fn rows_stream_with_their_columns() {
    let mut s = Store::open_in_memory().unwrap();
    let key = SigningKey::from_bytes(&[9; 32]);
    let a = report(&key, 1, [0; 32], 10);
    let b = report(&key, 2, a.id(), 5);
    apply(&mut s, &[a.clone(), b.clone()]);
    let mut seen = Vec::new();
    let q = ReportQuery { order: ReportOrder::Observed, ..Default::default() };
    let n = s
        .for_each_report(&q, |r| {
            seen.push(r);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(seen[0].id, b.id());
    assert_eq!(seen[1].signed(), a);
    let env = seen[1].envelope().unwrap();
    assert_eq!((env.seq, env.observation.observed_at), (1, 10));
    let q = ReportQuery { after: Some(seen[1].n), ..Default::default() };
    assert_eq!(s.for_each_report(&q, |_| Ok::<_, StoreError>(())).unwrap(), 1);
}

#[test]
fn seqs_above_i64_max_stay_distinct() {
    let mut s = Store::open_in_memory().unwrap();
    let key = SigningKey::from_bytes(&[10; 32]);
    let big = report(&key, u64::MAX, [1; 32], 10);
    let big2 = report(&key, u64::MAX - 1, [1; 32], 10);
    assert_eq!(apply(&mut s, &[big.clone(), big2]).iter().filter(|s| matches!(s, Status::Rejected(_))).count(), 0);
    assert_eq!(s.report(&big.id()).unwrap().unwrap().seq, u64::MAX);
}

#[test]
fn a_new_store_gets_large_pages_and_an_old_one_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let page_size = |p: &std::path::Path| {
        rusqlite::Connection::open(p).unwrap().pragma_query_value(None, "page_size", |r| r.get::<_, i64>(0)).unwrap()
    };
    let new_path = dir.path().join("new.sqlite");
    drop(Store::open_sqlite(&new_path).unwrap());
    assert_eq!(page_size(&new_path), PAGE_SIZE);

    // A store made before the page size was set: 4 KiB pages, in WAL.
    let old_path = dir.path().join("old.sqlite");
    let old = rusqlite::Connection::open(&old_path).unwrap();
    old.pragma_update(None, "page_size", 4096).unwrap();
    old.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(())).unwrap();
    old.execute_batch("CREATE TABLE early (x INTEGER)").unwrap();
    drop(old);
    let mut old = Store::open_sqlite(&old_path).unwrap();
    old.open_log(&[1; 32], "truce").unwrap();
    assert_eq!(page_size(&old_path), 4096);
    let key = SigningKey::from_bytes(&[11; 32]);
    old.add_device(&key.verifying_key().to_bytes(), Some("laptop"), 1).unwrap();
    let a = report(&key, 1, [0; 32], 10);
    assert_eq!(apply(&mut old, &[a.clone(), a]), vec![Status::Accepted, Status::Duplicate]);
}
