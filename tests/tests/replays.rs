//! Replays: a report sent again and again is one row, and a receipt cannot
//! be replayed to vouch for another report.

use std::sync::Arc;

use truce_server::{Checked, Store};
use truce_shared::wire::{self, Message, Status};
use truce_testkit::{Pki, TestServer};
use truce_tests::harness::Agent;

/// `n` real reports from a real agent's queue, recorded by the binary.
fn reports(agent: &Agent, n: usize) -> Vec<truce_shared::SignedReport> {
    for i in 0..n {
        agent.record(&format!("replayed {i}"));
    }
    let a = agent.open();
    let all: Vec<_> = a.queue().pending().map(|r| r.expect("readable").1).collect();
    assert_eq!(all.len(), n);
    all
}

#[test]
fn a_report_replayed_a_million_times_is_one_row() {
    let agent = Agent::init();
    let report = reports(&agent, 1).remove(0);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_sqlite(&dir.path().join("db.sqlite")).unwrap();
    store.open_log(&[5; 32], truce_shared::log::DEFAULT_MISSION).unwrap();
    let verified = truce_shared::verify(&report).unwrap();
    let mut accepted = 0;
    let mut duplicate = 0;
    for _ in 0..100 {
        // The writer's own rule, 10,000 arrivals per transaction.
        let batch: Vec<Checked> = (0..10_000).map(|_| Checked::Valid(Box::new(verified.clone()))).collect();
        let import = truce_server::store::Arrival::Import([0; 32]);
        for o in store.write(|tx| Store::apply(tx, &batch, 0, &import)).unwrap() {
            match o.status {
                Status::Quarantined(_) | Status::Accepted => accepted += 1,
                Status::Duplicate => duplicate += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!((accepted, duplicate), (1, 999_999));
    let rows = store.read(|tx| tx.count("SELECT COUNT(*) FROM reports", &[])).unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn a_report_replayed_over_the_wire_is_one_row_and_receipts_do_not_transfer() {
    let pki = Pki::new(&["replayer"]);
    let mut server = TestServer::init();
    let agent = Agent::init();
    server.enrol(&agent.key, "replayer");
    server.start(&pki, &[]);
    let mut two = reports(&agent, 2);
    let second = two.pop().unwrap();
    let first = two.pop().unwrap();

    let config = Arc::new(
        truce_agent::tls::client_config(
            std::path::Path::new(&pki.file("ca.pem")),
            std::path::Path::new(&pki.file("replayer.pem")),
            std::path::Path::new(&pki.file("replayer.key")),
        )
        .unwrap(),
    );
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let addr = server.addr();
    let second_id = second.id();
    let (server_key, acks) = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
        let max = truce_shared::limits::MAX_FRAME;
        let hello =
            Message::Hello { protocol: wire::PROTOCOL_VERSION, agent_version: "replay".into(), device: [0; 32] };
        wire::write_message(&mut tls, &hello, max).await.unwrap();
        let Some(Message::Welcome { log_key: server_key, max_batch, .. }) =
            wire::read_message(&mut tls, max).await.unwrap()
        else {
            panic!("no Welcome")
        };
        let mut acks = Vec::new();
        for batch in 0..8u64 {
            let mut reports = vec![first.clone(); max_batch as usize];
            if batch == 7 {
                reports[0] = second.clone();
            }
            wire::write_message(&mut tls, &Message::Submit { batch, reports }, max).await.unwrap();
            match wire::read_message(&mut tls, max).await.unwrap() {
                Some(Message::Ack { batch: b, received_at, results, checkpoint, signature }) if b == batch => {
                    acks.push((results, (received_at, checkpoint, signature)))
                }
                other => panic!("expected Ack {batch}, got {other:?}"),
            }
        }
        (server_key, acks)
    });
    let statuses: Vec<&Status> = acks.iter().flat_map(|(r, _)| r.iter().map(|o| &o.status)).collect();
    assert_eq!(statuses.iter().filter(|s| ***s == Status::Accepted).count(), 2, "first and second accepted once each");
    assert_eq!(statuses.iter().filter(|s| ***s == Status::Duplicate).count(), 8 * 128 - 2);

    // Each receipt vouches for exactly its own Ack's results, time and
    // checkpoint, signed by the log key.
    use truce_shared::log::{verify_receipt, ReceiptBody};
    let (results0, (at0, cp0, sig0)) = &acks[0];
    let body = |results: &[truce_shared::log::Outcome], batch: u64, at: i64| ReceiptBody {
        batch,
        received_at: at,
        results: results.to_vec().into(),
        checkpoint: cp0.as_str().into(),
    };
    assert!(verify_receipt(&server_key, &body(results0, 0, *at0), sig0));
    let mut other = results0.clone();
    other[0].id = second_id;
    assert!(
        !verify_receipt(&server_key, &body(&other, 0, *at0), sig0),
        "a receipt for the first report must not vouch for the second"
    );
    assert!(!verify_receipt(&server_key, &body(results0, 0, at0 + 1), sig0));
    assert!(!verify_receipt(&server_key, &body(results0, 1, *at0), sig0), "nor for another batch");

    let out = server.cmd(&["export", "--format", "jsonl", "--status", "all", "--history"]).expect_ok();
    assert_eq!(out.lines().filter(|l| !l.trim().is_empty()).count(), 2, "two rows for two distinct reports");
}
