//! Nothing acknowledged is ever lost (DESIGN §6), checked on the real
//! binary: an Ack is sent only after its batch is committed, so a SIGKILL
//! right after an Ack never loses what it acknowledged; and SIGTERM lets the
//! batch in progress finish and be acknowledged, then exits 0.

use std::collections::BTreeSet;

use truce_server::paths::DataDir;
use truce_shared::wire::{held_ids, Status};
use truce_shared::{Bytes32, SignedReport};

use crate::common::*;

fn stored_ids(data: &std::path::Path) -> BTreeSet<Bytes32> {
    let store = DataDir::new(data).open_store().expect("reopen the store");
    let mut q = store.conn().prepare("SELECT id FROM reports").unwrap();
    let ids = q.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap();
    ids.map(|id| id.unwrap().try_into().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_report_survives_a_sigkill_right_after_its_ack() {
    let pki = Pki::new(&["laptop"]);
    let data = tempfile::tempdir().unwrap();
    ok(cli(data.path(), &["init"]));
    let mut d = Device::new();
    ok(cli(data.path(), &["device", "add", &d.hex()]));
    let mut acked: Vec<Bytes32> = Vec::new();
    for round in 0..8 {
        let mut server = ServerProcess::start(data.path(), &pki, &[]);
        let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
        // Several batches in flight, so the kill lands while the server is
        // busy committing the next one.
        for _ in 0..4 {
            c.send(d.batch(32, "before the crash")).await;
        }
        let ack = c.ack().await.expect("an Ack before the kill");
        server.kill();
        acked.extend(held_ids(&ack.results));
        // Acks already on their way were also sent after their commits.
        while let Some(more) = c.ack().await {
            acked.extend(held_ids(&more.results));
        }
        let stored = stored_ids(data.path());
        let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).map(hex::encode).collect();
        assert!(lost.is_empty(), "round {round}: acked but not in the database after SIGKILL: {lost:?}");
    }
    assert!(acked.len() >= 8 * 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_acks_the_batches_it_stored_and_exits_0() {
    let pki = Pki::new(&["laptop"]);
    let data = tempfile::tempdir().unwrap();
    ok(cli(data.path(), &["init"]));
    let mut d = Device::new();
    ok(cli(data.path(), &["device", "add", &d.hex()]));
    let batches: Vec<Vec<SignedReport>> = (0..20).map(|_| d.batch(64, "during shutdown")).collect();

    let mut server = ServerProcess::start(data.path(), &pki, &[]);
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    for b in &batches {
        c.send(b.clone()).await;
    }
    let mut acked = BTreeSet::new();
    let first = c.ack().await.expect("first Ack");
    acked.extend(held_ids(&first.results));
    // SIGTERM while the next batches are being verified and committed.
    server.sigterm();
    let mut acks = 1;
    while let Some(ack) = c.ack().await {
        assert!(ack.statuses().iter().all(|s| *s == Status::Accepted));
        acked.extend(held_ids(&ack.results));
        acks += 1;
    }
    let status = tokio::task::spawn_blocking(move || {
        let s = server.wait();
        (s, server.log())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {:?}; log:\n{}", status.0, status.1);
    assert!(status.1.contains("shutdown requested"), "{}", status.1);
    // Every batch the server stored was acknowledged before it exited:
    // what is in the database is exactly what the agent was told.
    assert_eq!(stored_ids(data.path()), acked, "stored == acked ({acks} Acks)");
    eprintln!("SIGTERM: {acks} of 20 batches acked");

    // The rest is delivered on the next run; the acked ones are Duplicates.
    let server = ServerProcess::start(data.path(), &pki, &[]);
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    for b in &batches {
        for (id, s) in c.submit(b.clone()).await.results {
            let expect = if acked.contains(&id) { Status::Duplicate } else { Status::Accepted };
            assert_eq!(s, expect);
        }
    }
    assert_eq!(stored_ids(data.path()).len(), 20 * 64);
}
