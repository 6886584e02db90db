//! Nothing acknowledged is ever lost (DESIGN §6), checked on the real
//! binary: an Ack is sent only after its batch is committed, so a SIGKILL
//! right after an Ack never loses what it acknowledged; and SIGTERM lets the
//! batch in progress finish and be acknowledged, then exits 0.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use truce_shared::wire::Status;
use truce_shared::{Bytes32, SignedReport};

use crate::common::*;

/// Server crashes in the SIGKILL test.
const CRASHES: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_report_survives_a_sigkill_right_after_its_ack() {
    sigkill_right_after_acks(None).await;
}

/// The same on PostgreSQL: the Ack follows the COMMIT there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acked_report_survives_a_sigkill_right_after_its_ack_on_postgresql() {
    let pg = TestPostgres::start();
    sigkill_right_after_acks(Some(pg.fresh_database())).await;
}

/// Every report id stored, read through the server's own store.
fn stored(data: &std::path::Path, database: Option<&str>) -> BTreeSet<Bytes32> {
    let dir = truce_server::paths::DataDir::new(data)
        .with_database(database.map(|u| truce_server::store::Database::Postgres(u.to_string())));
    let store = dir.open_store().expect("open the store");
    let query = truce_server::ReportQuery::default();
    let mut ids = BTreeSet::new();
    store
        .for_each_report(&query, |r| {
            assert!(ids.insert(r.id), "a report stored twice");
            Ok::<_, truce_server::StoreError>(())
        })
        .expect("read the store");
    ids
}

async fn sigkill_right_after_acks(database: Option<String>) {
    let pki = Pki::new(&["laptop"]);
    let mut server = TestServer::init_on(database.as_deref());
    let data = server.dir().to_path_buf();
    let mut d = Device::fixed(1);
    ok(server.cmd(&["device", "add", &d.hex()]));
    let mut acked: Vec<Bytes32> = Vec::new();
    let mut sent: Vec<SignedReport> = Vec::new();
    for round in 0..CRASHES {
        // The first run picks a port; every restart comes back on it, as
        // a real server would for agents that already know its address.
        server.start(&pki, &[]);
        let mut c = Client::open(server.addr(), pki.client_tls("laptop")).await;
        // Several batches in flight, so the kill lands while the server is
        // busy verifying and committing the next ones.
        for _ in 0..4 {
            let batch = d.batch(32, "before the crash");
            sent.extend(batch.iter().cloned());
            c.send(batch).await;
        }
        let ack = c.ack().await.expect("an Ack before the kill");
        server.kill();
        acked.extend(held_ids(&ack.results));
        // Acks already on their way were also sent after their commits.
        while let Some(more) = c.ack().await {
            acked.extend(held_ids(&more.results));
        }
        // Reopen the file with plain SQLite, as after a real crash.
        if database.is_none() {
            let db = open_db(&data);
            let integrity: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
            assert_eq!(integrity, "ok", "round {round}");
        }
        let stored = stored(&data, database.as_deref());
        let lost: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).map(hex::encode).collect();
        assert!(lost.is_empty(), "round {round}: acked but not in the database after SIGKILL: {lost:?}");
    }
    assert!(acked.len() >= CRASHES * 32);

    // After the crashes, the agent resends everything (it cannot know what
    // the lost Acks said): the acked reports are Duplicates, the rest are
    // Accepted now, and every report is stored exactly once.
    server.start(&pki, &[]);
    let mut c = Client::open(server.addr(), pki.client_tls("laptop")).await;
    let acked: BTreeSet<Bytes32> = acked.into_iter().collect();
    for chunk in sent.chunks(64) {
        for (id, s) in c.submit(chunk.to_vec()).await.results {
            assert!(s == Status::Duplicate || (s == Status::Accepted && !acked.contains(&id)), "{s:?}");
        }
    }
    c.bye().await;
    assert_eq!(stored(&data, database.as_deref()).len(), sent.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_acks_the_batches_in_flight_and_exits_0() {
    let pki = Pki::new(&["laptop"]);
    let mut server = TestServer::init();
    let data = server.dir().to_path_buf();
    let mut d = Device::fixed(2);
    let mut e = Device::fixed(3);
    ok(cli(&data, &["device", "add", &d.hex()]));
    ok(cli(&data, &["device", "add", &e.hex()]));
    let batches: Vec<Vec<SignedReport>> = (0..10).map(|_| d.batch(64, "during shutdown")).collect();
    let other = e.batch(64, "the other connection");

    server.start(&pki, &[]);
    let addr = server.addr();
    let mut c = Client::open(addr, pki.client_tls("laptop")).await;
    let mut c2 = Client::open(addr, pki.client_tls("laptop")).await;
    // Bystanders that must not hold up the exit: a session that never
    // submits, and a TCP connection that never starts TLS (the default
    // idle and handshake timeouts are a minute and ten seconds).
    let idle = Client::open(addr, pki.client_tls("laptop")).await;
    let _tcp_only = tokio::net::TcpStream::connect(addr).await.unwrap();

    // Hold SQLite's write lock, so the batches are certainly in flight
    // (verified, waiting at the writer) when SIGTERM arrives.
    let lock = open_db(&data);
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    for b in &batches {
        c.send(b.clone()).await;
    }
    c2.send(other.clone()).await;
    let no_ack = tokio::time::timeout(Duration::from_millis(300), c.ack()).await;
    assert!(no_ack.is_err(), "nothing may be acked while the database is locked");
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.is_running(), "the server must wait for its batches in flight:\n{}", server.log());
    lock.execute_batch("ROLLBACK").unwrap();
    let released = Instant::now();

    let mut acked = BTreeSet::new();
    let mut acks = 0;
    while let Some(ack) = c.ack().await {
        assert!(ack.statuses().iter().all(|s| *s == Status::Accepted));
        acked.extend(held_ids(&ack.results));
        acks += 1;
    }
    assert!(acks >= 1, "the batch in flight when SIGTERM came must be acked");
    let ack2 = c2.ack().await.expect("the other connection's batch in flight is acked too");
    acked.extend(held_ids(&ack2.results));
    assert_eq!(held_ids(&ack2.results).len(), other.len());
    let (status, log, mut server) = tokio::task::spawn_blocking(move || {
        let s = server.wait();
        (s, server.log(), server)
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(log.contains("shutdown requested"), "{log}");
    let took = released.elapsed();
    assert!(took < Duration::from_secs(5), "exit took {took:?} after the commit could proceed:\n{log}");
    drop(idle);
    // Every batch the server stored was acknowledged before it exited:
    // what is in the database is exactly what the agents were told.
    assert_eq!(stored_ids(&data), acked, "stored == acked ({acks} Acks on the busy connection)");

    // The rest is delivered on the next run; the acked ones are Duplicates.
    server.start(&pki, &[]);
    let mut c = Client::open(server.addr(), pki.client_tls("laptop")).await;
    for b in &batches {
        for (id, s) in c.submit(b.clone()).await.results {
            let expect = if acked.contains(&id) { Status::Duplicate } else { Status::Accepted };
            assert_eq!(s, expect);
        }
    }
    assert_eq!(stored_ids(&data).len(), 11 * 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_stream_of_pipelined_batches_leaves_stored_equal_to_acked() {
    // No lock this time: SIGTERM lands wherever it lands in a stream of
    // pipelined batches, and whatever the server stored it acknowledged.
    let pki = Pki::new(&["laptop"]);
    let mut server = TestServer::init();
    let data = server.dir().to_path_buf();
    let mut d = Device::fixed(4);
    ok(cli(&data, &["device", "add", &d.hex()]));
    server.start(&pki, &[]);
    let mut c = Client::open(server.addr(), pki.client_tls("laptop")).await;
    for _ in 0..20 {
        c.send(d.batch(64, "streaming")).await;
    }
    let mut acked: BTreeSet<Bytes32> = held_ids(&c.ack().await.expect("first Ack").results).into_iter().collect();
    server.sigterm();
    while let Some(ack) = c.ack().await {
        acked.extend(held_ids(&ack.results));
    }
    let (status, _server) = tokio::task::spawn_blocking(move || (server.wait(), server)).await.unwrap();
    assert!(status.success(), "{status:?}");
    assert_eq!(stored_ids(&data), acked);
}

/// The writer's fault switch exists in debug builds only, which is what
/// `cargo test` (and CI) builds; a release test build leaves this test out.
#[cfg(debug_assertions)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_writer_dies_exits_non_zero_and_acks_nothing_more() {
    let pki = Pki::new(&["laptop"]);
    let mut server = TestServer::init();
    let data = server.dir().to_path_buf();
    let mut d = Device::fixed(4);
    ok(cli(&data, &["device", "add", &d.hex()]));
    let first = d.batch(8, "before the writer dies");
    let second = d.batch(8, "after");
    // Debug builds only: the writer commits one group, then panics.
    let env = [("TRUCE_TEST_WRITER_PANIC_AFTER", "1")];
    server.start_with_env(&pki, &[], &env);
    let mut c = Client::open(server.addr(), pki.client_tls("laptop")).await;
    let ack = c.submit(first.clone()).await;
    assert!(ack.statuses().iter().all(|s| *s == Status::Accepted));
    c.send(second.clone()).await;
    assert!(c.ack().await.is_none(), "no Ack for a batch the dead writer never stored");
    let (status, log, _server) = tokio::task::spawn_blocking(move || {
        let s = server.wait();
        (s, server.log(), server)
    })
    .await
    .unwrap();
    assert!(!status.success(), "a server without its writer must exit non-zero for systemd to restart it:\n{log}");
    assert!(log.contains("the writer thread died"), "{log}");
    assert_eq!(stored_ids(&data).len(), first.len(), "only what was acknowledged is stored");
}
