//! Who gets a connection (issue 24, denial of service): connections that
//! never authenticate cannot keep a laptop out, one certificate cannot take
//! every session, and frames wait for the bytes-in-flight budget instead of
//! growing the server's memory.

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use truce_server::Limits;
use truce_shared::wire::Message;

use crate::common::*;

/// Opens, submits one report and waits for its Ack: how long that took.
async fn one_sync(server: &InProcessServer, pki: &Pki, device: &mut Device) -> Duration {
    let start = Instant::now();
    let mut c = Client::open(server.addr, pki.client_tls("good")).await;
    c.submit(vec![device.next("through the flood")]).await;
    c.bye().await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_a_handshake_cannot_keep_a_laptop_out() {
    let pki = Pki::new(&["good"]);
    // A long handshake timeout, so the flood is not cleared by timeouts:
    // only the gate's dropping of the oldest lets the laptop in.
    let limits = Limits {
        handshake_timeout: Duration::from_secs(10),
        max_unauthenticated: 16,
        max_unauthenticated_per_ip: 16,
        max_connections: 32,
        ..quick_limits()
    };
    let server = InProcessServer::start(&pki, limits).await;
    let mut device = Device::fixed(61);
    server.store().add_device(&device.public(), Some("good"), truce_shared::time::now_ms()).expect("enrol");
    // Far more than the budget (and than every session slot), held open
    // with nothing sent...
    let mut held = Vec::new();
    for _ in 0..100 {
        held.push(TcpStream::connect(server.addr).await.expect("connect"));
    }
    // ...and more arriving all the time, as a flood would.
    let addr = server.addr;
    let flood = tokio::spawn(async move {
        let mut recent = std::collections::VecDeque::new();
        loop {
            if let Ok(s) = TcpStream::connect(addr).await {
                recent.push_back(s);
                if recent.len() > 200 {
                    recent.pop_front();
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    for attempt in 1..=5 {
        let took = one_sync(&server, &pki, &mut device).await;
        assert!(took < Duration::from_secs(3), "sync {attempt} through the flood took {took:?}");
    }
    flood.abort();
    drop(held);
    assert_eq!(stored_ids(server.data_dir()).len(), 5, "every report of every sync is stored");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_certificate_holds_at_most_its_cap_of_sessions() {
    let pki = Pki::new(&["good", "other"]);
    let server = InProcessServer::start(&pki, Limits { max_connections_per_cert: 2, ..quick_limits() }).await;
    let first = Client::open(server.addr, pki.client_tls("good")).await;
    let _second = Client::open(server.addr, pki.client_tls("good")).await;
    match first_answer(server.addr, pki.client_tls("good")).await {
        Ok(Message::Refuse { reason }) => {
            assert!(reason.contains("already has 2 connections open"), "the refusal says why: {reason}")
        }
        other => panic!("a third session of one certificate must be refused with a reason, got {other:?}"),
    }
    assert!(
        matches!(first_answer(server.addr, pki.client_tls("other")).await, Ok(Message::Welcome { .. })),
        "another laptop is served meanwhile"
    );
    // A closed session gives its slot back.
    first.bye().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match first_answer(server.addr, pki.client_tls("good")).await {
            Ok(Message::Welcome { .. }) => break,
            other => assert!(Instant::now() < deadline, "the slot never came back: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

/// A client announces a frame of the largest size and sends only part of
/// it; meanwhile another laptop submits one report. Returns how long that
/// Ack took.
async fn ack_beside_a_stalled_frame(budget: u64) -> Duration {
    let pki = Pki::new(&["good", "stalled"]);
    let limits = Limits { max_frame_bytes_in_flight: budget, idle_timeout: Duration::from_secs(2), ..quick_limits() };
    let max_frame = limits.max_frame;
    let server = InProcessServer::start(&pki, limits).await;
    let mut device = Device::fixed(62);
    server.store().add_device(&device.public(), Some("good"), truce_shared::time::now_ms()).expect("enrol");
    let mut stalled = Client::open(server.addr, pki.client_tls("stalled")).await;
    stalled.tls.write_all(&max_frame.to_be_bytes()).await.unwrap();
    stalled.tls.write_all(&[0u8; 1024]).await.unwrap();
    stalled.tls.flush().await.unwrap();
    // Let the server read the length and reserve it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let took = one_sync(&server, &pki, &mut device).await;
    assert!(stalled.closed_within(Duration::from_secs(5)).await, "the stalled frame is cut off at the idle timeout");
    server.stop().await;
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_waits_until_the_bytes_in_flight_fit_the_budget() {
    let frame = u64::from(quick_limits().max_frame) + 4;
    // Room for exactly one whole frame (the smallest budget allowed): the
    // stalled frame holds all of it, so the other laptop's frame waits
    // until the stalled one is cut off at the idle timeout (2 s).
    let waited = ack_beside_a_stalled_frame(frame).await;
    assert!(waited >= Duration::from_millis(1500), "the frame must wait for the budget, Ack after {waited:?}");
    assert!(waited < Duration::from_secs(6), "and be served once the budget is free, Ack after {waited:?}");
    // Room for two: nobody waits.
    let served = ack_beside_a_stalled_frame(2 * frame).await;
    assert!(served < Duration::from_secs(1), "with room in the budget the Ack came after {served:?}");
}
