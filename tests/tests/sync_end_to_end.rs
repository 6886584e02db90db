//! Sync end to end: real `truce-agent` and `truce-server` processes over
//! mutual TLS on loopback, with certificates from `truce-certs`.

use std::collections::BTreeSet;

use truce_testkit::{Pki, TestServer};
use truce_tests::harness::{mission, one_laptop, Agent};
use truce_tests::relay::Relay;

#[test]
fn offline_records_sync_once_the_server_comes_up() {
    let (pki, mut server, agent) = one_laptop("laptop-a");

    let ids: Vec<String> = (0..5).map(|i| agent.record(&format!("offline report {i}"))).collect();
    let err = agent.sync(None).expect_fail();
    assert_eq!(err.trim().lines().count(), 1, "one clear line, got: {err}");
    assert!(err.to_lowercase().contains("reach") || err.to_lowercase().contains("connect"), "{err}");
    assert_eq!(agent.ids_in_state("pending").len(), 5);

    server.start(&pki, &[]);
    agent.sync(None).expect_ok();
    let delivered: BTreeSet<String> = agent.ids_in_state("delivered").into_iter().collect();
    assert_eq!(delivered, ids.iter().cloned().collect());
    assert!(agent.ids_in_state("pending").is_empty());
    let verified: BTreeSet<String> = server.ids("verified").into_iter().collect();
    assert_eq!(verified, delivered);
}

#[test]
fn a_lost_ack_is_answered_duplicate_and_stored_once() {
    let (pki, mut server, agent) = one_laptop("laptop-a");
    server.start(&pki, &[]);
    let relay = Relay::start(server.addr());

    // Calibrate: the bytes of one clean sync of one report through the relay.
    agent.record("calibration");
    let start = relay.forwarded();
    agent.sync(Some(relay.addr)).expect_ok();
    let whole = relay.forwarded() - start;

    // Cut ever earlier until the server has committed a report whose ack
    // never reached the agent: the report is on the server, pending here.
    let mut lost_ack = None;
    for back in (1..whole).step_by(7) {
        let id = agent.record("is this ack lost?");
        relay.cut_after(whole - back);
        let _ = agent.sync(Some(relay.addr));
        relay.heal();
        let on_server = server.ids("all").contains(&id);
        let pending = agent.ids_in_state("pending").contains(&id);
        if on_server && pending {
            lost_ack = Some(id);
            break;
        }
        // Either delivered, or never committed: sync it cleanly and go on.
        agent.sync(None).expect_ok();
    }
    let id = lost_ack.expect("some cut point loses the ack after the server committed");

    agent.sync(None).expect_ok();
    assert!(agent.ids_in_state("delivered").contains(&id));
    let shown = agent.cmd(&["--json", "show", &id]).expect_ok();
    assert!(shown.to_lowercase().contains("duplicate"), "the resend is answered Duplicate: {shown}");
    let all = server.ids("all");
    assert_eq!(all.iter().filter(|x| **x == id).count(), 1, "stored once");
}

#[test]
fn two_agents_at_once_a_thousand_reports_each() {
    let (_pki, server, agents) = mission(&["laptop-a", "laptop-b"]);
    for a in &agents {
        // 1,000 reports through the real binary would take a while; the
        // library writes the same queue the binary does.
        let out = a.cmd(&["record", "--category", "drone", "--lat", "48.1", "--lon", "37.9", "--description", "first"]);
        assert!(out.ok(), "{}", out.describe("record"));
        let mut open = a.open();
        for i in 1..1000 {
            truce_tests::harness::record_in_process(&mut open, &format!("report {i}"));
        }
        drop(open);
        assert_eq!(a.ids_in_state("pending").len(), 1000);
    }
    std::thread::scope(|s| {
        for a in &agents {
            s.spawn(|| a.sync(None).expect_ok());
        }
    });
    let verified: BTreeSet<String> = server.ids("verified").into_iter().collect();
    assert_eq!(verified.len(), 2000);
    for a in &agents {
        let delivered = a.ids_in_state("delivered");
        assert_eq!(delivered.len(), 1000);
        assert!(delivered.iter().all(|id| verified.contains(id)));
    }
}

#[test]
fn a_revoked_laptop_is_refused_and_an_unenrolled_key_is_quarantined_until_added() {
    let pki = Pki::new(&["laptop-a", "laptop-b"]);
    let mut server = TestServer::init();
    let enrolled = Agent::init();
    let unenrolled = Agent::init();
    server.enrol(&enrolled.key, "laptop-a");
    server.start(&pki, &[]);
    enrolled.link(&pki, "laptop-a", server.addr());
    unenrolled.link(&pki, "laptop-b", server.addr());
    let q = unenrolled.record("from a key the server does not know yet");

    unenrolled.sync(None).expect_ok();
    assert_eq!(unenrolled.ids_in_state("quarantined"), vec![q.clone()]);
    assert_eq!(server.ids("quarantined"), vec![q.clone()]);
    server.enrol(&unenrolled.key, "laptop-b");
    assert_eq!(server.ids("verified"), vec![q.clone()]);

    // Revoke laptop-a's certificate: the server reads the CRL at start.
    enrolled.record("before revocation");
    pki.revoke("laptop-a");
    server.terminate();
    server.start(&pki, &[]);
    let err = enrolled.sync(None).expect_fail();
    assert_eq!(err.trim().lines().count(), 1, "one clear line, got: {err}");
    assert_eq!(enrolled.ids_in_state("pending").len(), 1, "nothing lost when refused");
}
