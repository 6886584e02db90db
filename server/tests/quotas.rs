//! Disk quotas at their edges: per device key, per client certificate and
//! for the quarantine, each refusing the batch from the first report it has
//! no room for with `Refuse` and the reason, counted in `stats`, while
//! everyone else's reports still flow; and refused bodies kept as their id
//! and a bounded prefix, with `audit` still clean.

use truce_server::store::Quotas;
use truce_server::Limits;
use truce_shared::wire::{self, Message, Status};
use truce_shared::{limits, SignedReport};

use crate::common::*;

/// Sends `reports` and expects `Refuse`: returns its reason.
async fn refused(c: &mut Client, reports: Vec<SignedReport>) -> String {
    c.send(reports).await;
    match tokio::time::timeout(std::time::Duration::from_secs(30), wire::read_message(&mut c.tls, limits::MAX_FRAME))
        .await
    {
        Ok(Ok(Some(Message::Refuse { reason }))) => reason,
        other => panic!("expected Refuse, got {other:?}"),
    }
}

fn quarantined(n: usize) -> Vec<Status> {
    vec![Status::Quarantined("unknown device".into()); n]
}

fn audit_is_clean(server: &InProcessServer) {
    let out = ok(server.cli(&["--json", "audit"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["discrepancies"].as_array().map(Vec::len), Some(0), "{out}");
}

async fn each_quota_refuses_at_its_edge_and_everyone_else_flows(db: Db) {
    let pki = Pki::new(&["laptop-a", "laptop-b", "laptop-c"]);
    let quotas = Quotas {
        max_reports_per_key: 3,
        max_reports_per_cert: 5,
        max_quarantined: 4,
        max_quarantined_per_key: 2,
        ..Quotas::default()
    };
    let server = InProcessServer::start_on(&pki, Limits { quotas, ..quick_limits() }, db).await;
    let (mut d1, mut d2) = (Device::fixed(71), Device::fixed(72));
    ok(server.cli(&["device", "add", &d1.hex()]));
    ok(server.cli(&["device", "add", &d2.hex()]));
    let store = server.store();

    // Per key: 3 accepted, the 4th refused with the reason; a resend of
    // the 3 stored is still answered (Duplicate costs nothing).
    let mut a = Client::open(server.addr, pki.client_tls("laptop-a")).await;
    let first = d1.batch(3, "within the key's quota");
    assert_eq!(a.submit(first.clone()).await.statuses(), vec![Status::Accepted; 3]);
    let over = d1.next("one past the key's quota");
    let reason = refused(&mut a, vec![over.clone()]).await;
    assert!(reason.contains("max-reports-per-key") && reason.contains("3 reports"), "{reason}");
    assert!(store.report(&over.id()).unwrap().is_none(), "nothing past the quota is stored");
    let mut a = Client::open(server.addr, pki.client_tls("laptop-a")).await;
    assert_eq!(a.submit(first).await.statuses(), vec![Status::Duplicate; 3]);

    // Per certificate: laptop-a has 3 stored; another key through it gets 2
    // more, and the batch is refused from the 3rd on (the 2 before it are
    // stored, unacknowledged).
    let d2_three = d2.batch(3, "through laptop-a's certificate");
    let reason = refused(&mut a, d2_three.clone()).await;
    assert!(reason.contains("max-reports-per-cert"), "{reason}");
    let held: Vec<bool> = d2_three.iter().map(|r| store.report(&r.id()).unwrap().is_some()).collect();
    assert_eq!(held, vec![true, true, false]);
    // Everyone else's reports still flow: the same key through another
    // certificate (the two stored before are Duplicate).
    let mut b = Client::open(server.addr, pki.client_tls("laptop-b")).await;
    assert_eq!(b.submit(d2_three).await.statuses(), vec![Status::Duplicate, Status::Duplicate, Status::Accepted]);

    b.bye().await;
    // Quarantine per key (through a third laptop, whose certificate has
    // room): 2 of one unknown key, the 3rd refused.
    let mut b = Client::open(server.addr, pki.client_tls("laptop-c")).await;
    let (mut s1, mut s2, mut s3) = (Device::fixed(81), Device::fixed(82), Device::fixed(83));
    assert_eq!(b.submit(s1.batch(2, "unknown key")).await.statuses(), quarantined(2));
    let reason = refused(&mut b, vec![s1.next("a third of one unknown key")]).await;
    assert!(reason.contains("max-quarantined-per-key"), "{reason}");
    // In total: 4 quarantined, the 5th (of a third key) refused.
    let mut b = Client::open(server.addr, pki.client_tls("laptop-c")).await;
    assert_eq!(b.submit(s2.batch(2, "another unknown key")).await.statuses(), quarantined(2));
    let late = s3.next("the quarantine is full");
    let reason = refused(&mut b, vec![late.clone()]).await;
    assert!(reason.contains("max-quarantined") && reason.contains("4 quarantined"), "{reason}");
    // Enrolment takes reports out of quarantine, and makes room.
    let out = ok(server.cli(&["--json", "device", "add", &s1.hex()]));
    assert!(out.contains("\"promoted\":2"), "{out}");
    let mut b = Client::open(server.addr, pki.client_tls("laptop-c")).await;
    assert_eq!(b.submit(vec![late]).await.statuses(), quarantined(1));
    b.bye().await;

    // The operator sees each refusal counted.
    let stats: serde_json::Value = serde_json::from_str(ok(server.cli(&["--json", "stats"])).trim()).unwrap();
    let q = &stats["quota_refusals"];
    for limit in ["max-reports-per-key", "max-reports-per-cert", "max-quarantined-per-key", "max-quarantined"] {
        assert_eq!(q[limit], 1, "{limit}: {stats}");
    }
    let text = ok(server.cli(&["stats"]));
    assert!(text.contains("quota refusals: 4 batch(es) refused"), "{text}");
    audit_is_clean(&server);
    server.stop().await;
}

async fn byte_quotas_refuse_at_their_edge(db: Db) {
    let pki = Pki::new(&["laptop-a", "laptop-b"]);
    let mut d1 = Device::fixed(91);
    let two = d1.batch(2, "bytes");
    let third = d1.next("one byte too many");
    let edge = (two[0].body.len() + two[1].body.len()) as u64;
    let quotas = Quotas { max_bytes_per_key: edge, max_bytes_per_cert: edge + 1, ..Quotas::default() };
    let server = InProcessServer::start_on(&pki, Limits { quotas, ..quick_limits() }, db).await;
    ok(server.cli(&["device", "add", &d1.hex()]));
    let mut a = Client::open(server.addr, pki.client_tls("laptop-a")).await;
    assert_eq!(a.submit(two).await.statuses(), vec![Status::Accepted; 2]);
    let reason = refused(&mut a, vec![third]).await;
    assert!(reason.contains("max-bytes-per-key"), "{reason}");
    // The certificate has one byte of room: a refused body of a few bytes
    // (kept whole) does not fit.
    let mut d2 = Device::fixed(92);
    let mut a = Client::open(server.addr, pki.client_tls("laptop-a")).await;
    let reason = refused(&mut a, vec![tampered(&d2.next("forged"))]).await;
    assert!(reason.contains("max-bytes-per-cert"), "{reason}");
    let mut b = Client::open(server.addr, pki.client_tls("laptop-b")).await;
    ok(server.cli(&["device", "add", &d2.hex()]));
    assert_eq!(b.submit(vec![d2.next("another laptop")]).await.statuses(), vec![Status::Accepted]);
    b.bye().await;
    server.stop().await;
}

async fn a_refused_body_is_kept_as_its_hash_and_a_prefix(db: Db) {
    let pki = Pki::new(&["laptop"]);
    let server = InProcessServer::start_on(&pki, quick_limits(), db).await;
    let mut d = Device::fixed(95);
    ok(server.cli(&["device", "add", &d.hex()]));
    let long = tampered(&d.next(&"x".repeat(6000)));
    let short = tampered(&d.at(1, [0; 32], "short"));
    assert!(long.body.len() > limits::REJECTED_PREFIX && short.body.len() < limits::REJECTED_PREFIX);
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    let ack = c.submit(vec![long.clone(), short.clone()]).await;
    assert!(ack.statuses().iter().all(|s| matches!(s, Status::Rejected(_))), "{ack:?}");
    c.bye().await;
    let mut kept = Vec::new();
    server
        .store()
        .for_each_rejection(|r| {
            kept.push(r);
            Ok::<_, truce_server::StoreError>(())
        })
        .unwrap();
    let l = kept.iter().find(|r| r.id == long.id()).expect("the long body's row");
    assert_eq!(l.body, long.body[..limits::REJECTED_PREFIX], "the first REJECTED_PREFIX bytes");
    assert_eq!(l.body_len, long.body.len() as u64, "and the length as received");
    assert_eq!(l.id, truce_shared::signing::report_id(&long.body), "the id is the hash of all of it");
    let s = kept.iter().find(|r| r.id == short.id()).expect("the short body's row");
    assert_eq!(s.body, short.body, "a body under the prefix is kept whole");
    // The log's Refused entries name those ids, and audit finds nothing amiss.
    audit_is_clean(&server);
    server.stop().await;
}

crate::on_both_databases_async!(
    each_quota_refuses_at_its_edge_and_everyone_else_flows,
    byte_quotas_refuse_at_their_edge,
    a_refused_body_is_kept_as_its_hash_and_a_prefix
);
