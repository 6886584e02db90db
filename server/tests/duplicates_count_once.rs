//! Duplicates never double-count (DESIGN §6): many connections submitting
//! overlapping batches at the same moment store every distinct report
//! exactly once, and exactly one of all the answers for a report is
//! Accepted; every other is Duplicate.

use std::collections::HashMap;
use std::sync::Arc;

use truce_shared::wire::Status;
use truce_shared::{Bytes32, SignedReport};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_connections_with_overlapping_batches_store_each_report_once() {
    const CONNECTIONS: usize = 32;
    const BATCHES: usize = 6;
    const BATCH: usize = 20;
    let pki = Pki::new(&["laptop"]);
    // One certificate opens all the connections here: let it.
    let limits = truce_server::Limits { max_connections_per_cert: CONNECTIONS, ..quick_limits() };
    let server = InProcessServer::start(&pki, limits).await;
    let now = truce_shared::time::now_ms();
    let mut all: Vec<SignedReport> = Vec::new();
    for seed in 0..8 {
        let mut d = Device::fixed(20 + seed);
        store_add(&server, &d);
        all.extend(d.batch(40, "overlap"));
    }
    let all = Arc::new(all);
    let config = pki.client_tls("laptop");

    let mut tasks = Vec::new();
    for conn in 0..CONNECTIONS {
        let (all, config, addr) = (all.clone(), config.clone(), server.addr);
        tasks.push(tokio::spawn(async move {
            let mut c = Client::open(addr, config).await;
            // Each connection walks the same reports from a different
            // starting point, so every report is sent by many connections
            // at nearly the same time; batches are pipelined.
            let start = conn * all.len() / CONNECTIONS;
            let mut sent = Vec::new();
            for b in 0..BATCHES {
                let batch: Vec<SignedReport> =
                    (0..BATCH).map(|i| all[(start + b * BATCH + i) % all.len()].clone()).collect();
                sent.push(batch.iter().map(|r| r.id()).collect::<Vec<_>>());
                c.send(batch).await;
            }
            let mut answers = Vec::new();
            for ids in sent {
                let ack = c.ack().await.expect("ack");
                assert_eq!(ack.results.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids, "acks in order");
                answers.extend(ack.results);
            }
            c.bye().await;
            answers
        }));
    }
    let mut accepted: HashMap<Bytes32, usize> = HashMap::new();
    let mut answered = 0;
    for t in tasks {
        for (id, status) in t.await.expect("connection task") {
            answered += 1;
            match status {
                Status::Accepted => *accepted.entry(id).or_default() += 1,
                Status::Duplicate => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(answered, CONNECTIONS * BATCHES * BATCH);
    // Every report was sent (the walks cover everything) …
    assert_eq!(accepted.len(), all.len(), "every distinct report accepted");
    // … and accepted exactly once, however many connections sent it.
    assert!(accepted.values().all(|&n| n == 1), "{accepted:?}");
    // The database itself, read with plain SQLite: one row per report.
    let db = open_db(server.data_dir());
    let rows: i64 = db.query_row("SELECT COUNT(*) FROM reports", [], |r| r.get(0)).unwrap();
    let distinct: i64 = db.query_row("SELECT COUNT(DISTINCT id) FROM reports", [], |r| r.get(0)).unwrap();
    assert_eq!((rows, distinct), (all.len() as i64, all.len() as i64));
    let stored = stored_ids(server.data_dir());
    assert!(all.iter().all(|r| stored.contains(&r.id())), "every distinct report is stored");
    let earliest: i64 = db.query_row("SELECT MIN(received_at) FROM reports", [], |r| r.get(0)).unwrap();
    assert!(earliest >= now);
    let verified: i64 =
        db.query_row("SELECT COUNT(*) FROM reports WHERE status = 'verified'", [], |r| r.get(0)).unwrap();
    assert_eq!(verified, all.len() as i64);
    server.stop().await;
}

fn store_add(server: &InProcessServer, d: &Device) {
    server.store().add_device(&d.public(), None, truce_shared::time::now_ms()).expect("enrol");
}
