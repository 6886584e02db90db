//! Bad input never takes the server down (DESIGN §5, §6): an oversized
//! frame, a garbage frame, a client sending one byte a second, a client
//! that never finishes its handshake or never says Hello, a batch over the
//! limit and a message out of place each end that one connection at the
//! limit, while a good client on the same server is served promptly.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use truce_server::Limits;
use truce_shared::encoding;
use truce_shared::wire::{self, Message, Status};

use crate::common::*;

/// A good agent submitting small batches for `for_how_long`; returns the
/// slowest round trip. Panics if any batch is not acknowledged.
async fn good_agent(server: &TestServer, pki: &Pki, for_how_long: Duration) -> Duration {
    let mut c = Client::open(server.addr, pki.client_tls("good")).await;
    let mut d = Device::new();
    let mut slowest = Duration::ZERO;
    let end = Instant::now() + for_how_long;
    while Instant::now() < end {
        let t = Instant::now();
        let ack = c.submit(d.batch(4, "meanwhile")).await;
        assert!(ack.statuses().iter().all(|s| matches!(s, Status::Quarantined(_))));
        slowest = slowest.max(t.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.bye().await;
    slowest
}

/// Runs `bad` beside a good agent; checks the good agent stayed quick.
async fn beside_a_good_agent<F: std::future::Future<Output = ()>>(server: &TestServer, pki: &Pki, bad: F) {
    let (slowest, ()) = tokio::join!(good_agent(server, pki, Duration::from_millis(2500)), bad);
    assert!(slowest < Duration::from_secs(1), "the good agent waited {slowest:?} for an Ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_ends_the_connection() {
    let pki = Pki::new(&["good"]);
    let server = TestServer::start(&pki, quick_limits()).await;
    beside_a_good_agent(&server, &pki, async {
        for announced in [quick_limits().max_frame + 1, u32::MAX] {
            let mut bad = Client::open(server.addr, pki.client_tls("good")).await;
            bad.tls.write_all(&announced.to_be_bytes()).await.unwrap();
            bad.tls.write_all(&[0u8; 1024]).await.unwrap();
            bad.tls.flush().await.unwrap();
            assert!(
                bad.closed_within(Duration::from_secs(2)).await,
                "a {announced}-byte frame must end the connection"
            );
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_frame_ends_the_connection() {
    let pki = Pki::new(&["good"]);
    let server = TestServer::start(&pki, quick_limits()).await;
    beside_a_good_agent(&server, &pki, async {
        let mut bad = Client::open(server.addr, pki.client_tls("good")).await;
        let garbage = [0xFFu8; 300];
        bad.tls.write_all(&(garbage.len() as u32).to_be_bytes()).await.unwrap();
        bad.tls.write_all(&garbage).await.unwrap();
        bad.tls.flush().await.unwrap();
        assert!(bad.closed_within(Duration::from_secs(2)).await, "garbage must end the connection");
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_one_byte_a_second_is_cut_off_at_the_idle_timeout() {
    let pki = Pki::new(&["good"]);
    let server = TestServer::start(&pki, quick_limits()).await;
    let idle = quick_limits().idle_timeout;
    beside_a_good_agent(&server, &pki, async {
        let mut bad = Client::open(server.addr, pki.client_tls("good")).await;
        let mut d = Device::new();
        let frame = {
            let body = encoding::encode(&Message::Submit { batch: 1, reports: d.batch(2, "slowly") });
            let mut f = (body.len() as u32).to_be_bytes().to_vec();
            f.extend(body);
            f
        };
        let start = Instant::now();
        let mut cut = None;
        for b in &frame {
            if bad.tls.write_all(&[*b]).await.is_err() || bad.tls.flush().await.is_err() {
                cut = Some(start.elapsed());
                break;
            }
            let mut probe = [0u8; 1];
            // Waiting one second for the server to speak: it only ever
            // closes here.
            match tokio::time::timeout(Duration::from_secs(1), bad.tls.read(&mut probe)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    cut = Some(start.elapsed());
                    break;
                }
                Ok(Ok(_)) => panic!("the server answered a frame that never finished"),
                Err(_) => {}
            }
        }
        let cut = cut.expect("the slow client must be cut off before its frame is complete");
        assert!(cut >= idle && cut < idle + Duration::from_secs(2), "cut off after {cut:?}, idle timeout {idle:?}");
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_during_the_handshake_or_before_hello_is_cut_off_at_the_handshake_timeout() {
    let pki = Pki::new(&["good"]);
    let server = TestServer::start(&pki, quick_limits()).await;
    let limit = quick_limits().handshake_timeout;
    beside_a_good_agent(&server, &pki, async {
        // TCP only, not a byte of TLS.
        let start = Instant::now();
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await.expect("closed in time");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        let t = start.elapsed();
        assert!(t >= limit && t < limit + Duration::from_secs(2), "TCP-only client dropped after {t:?}");
        // TLS done, but no Hello.
        let start = Instant::now();
        let mut tls = connect(server.addr, pki.client_tls("good")).await.unwrap();
        let r = tokio::time::timeout(PATIENCE, wire::read_message(&mut tls, 1024)).await.expect("closed in time");
        assert!(matches!(r, Ok(None) | Err(_)), "{r:?}");
        let t = start.elapsed();
        assert!(t < limit + Duration::from_secs(2), "silent client dropped after {t:?}");
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_end_the_connection_and_a_wrong_version_is_refused() {
    let pki = Pki::new(&["good"]);
    let server = TestServer::start(&pki, quick_limits()).await;
    let max_batch = quick_limits().max_batch;

    // Over the batch limit advertised in Welcome.
    let mut c = Client::open(server.addr, pki.client_tls("good")).await;
    assert_eq!(c.max_batch, max_batch);
    let mut d = Device::new();
    let ok_batch = c.submit(d.batch(max_batch as usize, "at the limit")).await;
    assert_eq!(ok_batch.results.len(), max_batch as usize);
    c.send(d.batch(max_batch as usize + 1, "over the limit")).await;
    assert!(c.closed_within(Duration::from_secs(2)).await, "a batch over the limit ends the connection");

    // A server message from the client, after a proper Hello.
    let mut c = Client::open(server.addr, pki.client_tls("good")).await;
    wire::write_message(&mut c.tls, &Message::Refuse { reason: "no".into() }, 1024).await.unwrap();
    assert!(c.closed_within(Duration::from_secs(2)).await);

    // Submit before Hello.
    let mut tls = connect(server.addr, pki.client_tls("good")).await.unwrap();
    wire::write_message(&mut tls, &Message::Submit { batch: 1, reports: vec![] }, 1024).await.unwrap();
    let r = tokio::time::timeout(PATIENCE, wire::read_message(&mut tls, 1024)).await.unwrap();
    assert!(matches!(r, Ok(None) | Err(_)), "{r:?}");

    // A Hello of another protocol version gets a Refuse with the reason.
    let mut tls = connect(server.addr, pki.client_tls("good")).await.unwrap();
    let hello = Message::Hello { protocol: 2, agent_version: "future".into(), device: [0; 32] };
    wire::write_message(&mut tls, &hello, 1024).await.unwrap();
    match wire::read_message(&mut tls, 1024).await {
        Ok(Some(Message::Refuse { reason })) => assert!(reason.contains("protocol 2"), "{reason}"),
        other => panic!("expected Refuse, got {other:?}"),
    }

    // The server is still fine.
    let mut c = Client::open(server.addr, pki.client_tls("good")).await;
    assert_eq!(c.submit(d.batch(1, "still fine")).await.results.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let pki = Pki::new(&["good"]);
    let limits = Limits { max_connections: 2, idle_timeout: Duration::from_secs(30), ..quick_limits() };
    let server = TestServer::start(&pki, limits).await;
    let a = Client::open(server.addr, pki.client_tls("good")).await;
    let _b = Client::open(server.addr, pki.client_tls("good")).await;
    // The third is accepted by the kernel but not served: no handshake.
    let third = tokio::spawn({
        let (addr, config) = (server.addr, pki.client_tls("good"));
        async move {
            let start = Instant::now();
            let mut c = Client::open(addr, config).await;
            let waited = start.elapsed();
            let mut d = Device::new();
            c.submit(d.batch(1, "third")).await;
            waited
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "a third connection must wait while two are open");
    a.bye().await;
    let waited = tokio::time::timeout(PATIENCE, third).await.expect("served once a slot is free").unwrap();
    assert!(waited >= Duration::from_millis(500));
    server.stop().await;
}
