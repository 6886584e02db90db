//! Bad input never takes the server down (DESIGN §5, §6): an oversized
//! frame, a garbage frame, a client sending one byte a second, a client
//! that never finishes its handshake or never says Hello, a batch over the
//! limit and a message out of place each end that one connection at the
//! limit, while a good client on the same server is served promptly.
//!
//! Every named limit is also checked at its edge: a frame of exactly
//! `max_frame` bytes is served and one byte more is not; `max_batch`
//! reports are acked and one more is not; a client that meets the
//! handshake or idle deadline just in time is served, and one that misses
//! it is cut off; with `max_connections` open, the next one waits for a
//! slot. The last test sets every limit with the real binary's flags.

use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use truce_server::Limits;
use truce_shared::wire::{self, Message, Status};
use truce_shared::{encoding, SignedReport};

use crate::common::*;

/// A good agent submitting small batches for `for_how_long`; returns the
/// slowest round trip. Panics if any batch is not acknowledged.
async fn good_agent(server: &InProcessServer, pki: &Pki, for_how_long: Duration) -> Duration {
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
async fn beside_a_good_agent<F: std::future::Future<Output = ()>>(server: &InProcessServer, pki: &Pki, bad: F) {
    let (slowest, ()) = tokio::join!(good_agent(server, pki, Duration::from_millis(2500)), bad);
    assert!(slowest < Duration::from_secs(1), "the good agent waited {slowest:?} for an Ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_ends_the_connection() {
    let pki = Pki::new(&["good"]);
    let server = InProcessServer::start(&pki, quick_limits()).await;
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
    let server = InProcessServer::start(&pki, quick_limits()).await;
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
    let server = InProcessServer::start(&pki, quick_limits()).await;
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
        // The server's clock started at its Welcome, a moment before ours.
        let early = Duration::from_millis(200);
        assert!(
            cut + early >= idle && cut < idle + Duration::from_secs(2),
            "cut off after {cut:?}, idle timeout {idle:?}"
        );
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_during_the_handshake_or_before_hello_is_cut_off_at_the_handshake_timeout() {
    let pki = Pki::new(&["good"]);
    let server = InProcessServer::start(&pki, quick_limits()).await;
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
    let server = InProcessServer::start(&pki, quick_limits()).await;
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

    // A Hello of another protocol version gets a Refuse with the reason:
    // an older agent is told to upgrade.
    for (protocol, says) in [(3u16, "protocol 3 is not supported"), (1, "upgrade truce-agent")] {
        let mut tls = connect(server.addr, pki.client_tls("good")).await.unwrap();
        let hello = Message::Hello { protocol, agent_version: "other".into(), device: [0; 32] };
        wire::write_message(&mut tls, &hello, 1024).await.unwrap();
        match wire::read_message(&mut tls, 1024).await {
            Ok(Some(Message::Refuse { reason })) => assert!(reason.contains(says), "{reason}"),
            other => panic!("expected Refuse, got {other:?}"),
        }
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
    let server = InProcessServer::start(&pki, limits).await;
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

/// A chain of reports from `d` (after its head, without moving it) with
/// these description lengths.
fn chain_with(d: &Device, lens: &[usize]) -> Vec<SignedReport> {
    let (mut seq, mut prev) = (d.seq, d.head);
    lens.iter()
        .map(|&n| {
            seq += 1;
            let r = d.at(seq, prev, &"x".repeat(n));
            prev = r.id();
            r
        })
        .collect()
}

/// A Submit of valid reports whose encoding is exactly `size` bytes: full
/// reports, then one whose description takes up the rest (one byte of
/// description is one byte of frame while every length varint stays two
/// bytes wide, as it does between 128 and 16383).
fn submit_of_exactly(d: &Device, batch: u64, size: usize) -> Message {
    let mut lens = Vec::new();
    loop {
        let trial = |last: usize| {
            let mut l = lens.clone();
            l.push(last);
            Message::Submit { batch, reports: chain_with(d, &l) }
        };
        let short = encoding::encode(&trial(1000)).len();
        assert!(short <= size, "cannot make a Submit as small as {size} bytes");
        if 1000 + (size - short) <= 8000 {
            let msg = trial(1000 + (size - short));
            assert_eq!(encoding::encode(&msg).len(), size);
            return msg;
        }
        lens.push(6000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_exactly_max_frame_is_served_and_one_byte_more_ends_the_connection() {
    let pki = Pki::new(&["good"]);
    let limits = quick_limits();
    let max = limits.max_frame as usize;
    let server = InProcessServer::start(&pki, limits).await;
    let d = Device::fixed(9);

    let mut c = Client::open(server.addr, pki.client_tls("good")).await;
    assert_eq!(c.max_frame as usize, max, "Welcome advertises the limit");
    let at_limit = submit_of_exactly(&d, 1, max);
    let Message::Submit { reports, .. } = &at_limit else { unreachable!() };
    let n = reports.len();
    wire::write_message(&mut c.tls, &at_limit, u32::MAX).await.unwrap();
    let ack = c.ack().await.expect("a frame of exactly max_frame bytes is served");
    assert_eq!((ack.batch, ack.results.len()), (1, n));

    // The same session, one byte more: a valid message, refused for its size alone.
    let over = submit_of_exactly(&d, 2, max + 1);
    // The server reads the length and hangs up, so the write itself may
    // already fail.
    let written = wire::write_message(&mut c.tls, &over, u32::MAX).await;
    assert!(
        written.is_err() || c.closed_within(Duration::from_secs(2)).await,
        "max_frame + 1 bytes must end the connection"
    );

    // And the server serves the next client.
    let mut c = Client::open(server.addr, pki.client_tls("good")).await;
    assert_eq!(c.submit(Device::fixed(10).batch(1, "next")).await.results.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_one_byte_at_a_time_is_cut_off_at_the_handshake_timeout() {
    let pki = Pki::new(&["good"]);
    let server = InProcessServer::start(&pki, quick_limits()).await;
    let limit = quick_limits().handshake_timeout;
    beside_a_good_agent(&server, &pki, async {
        // A real ClientHello, trickled at four bytes a second.
        let mut conn =
            rustls::ClientConnection::new(pki.client_tls("good"), ServerName::try_from("localhost").unwrap()).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let start = Instant::now();
        let mut cut = None;
        for b in &hello {
            if tcp.write_all(&[*b]).await.is_err() {
                cut = Some(start.elapsed());
                break;
            }
            let mut buf = [0u8; 64];
            match tokio::time::timeout(Duration::from_millis(250), tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    cut = Some(start.elapsed());
                    break;
                }
                Ok(Ok(_)) => panic!("the server answered a ClientHello that never finished"),
                Err(_) => {}
            }
        }
        let cut = cut.expect("the trickling handshake must be cut off");
        // The server's clock starts at accept, a little before this one
        // (after connect returned): the cut may come that much early.
        let early = Duration::from_millis(100);
        assert!(cut + early >= limit && cut < limit + Duration::from_secs(2), "cut off after {cut:?}, limit {limit:?}");
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handshake_deadline_covers_tls_and_hello_and_a_client_in_time_is_served() {
    let pki = Pki::new(&["good"]);
    let limit = Duration::from_secs(2);
    let server = InProcessServer::start(&pki, Limits { handshake_timeout: limit, ..quick_limits() }).await;
    let name = || ServerName::try_from("localhost").unwrap();
    let hello = Message::Hello { protocol: wire::PROTOCOL_VERSION, agent_version: "late".into(), device: [0; 32] };

    // In time: TCP now, TLS and Hello well inside the deadline.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(limit / 2).await;
    let mut tls = tokio_rustls::TlsConnector::from(pki.client_tls("good")).connect(name(), tcp).await.unwrap();
    wire::write_message(&mut tls, &hello, 1024).await.unwrap();
    let r = tokio::time::timeout(PATIENCE, wire::read_message(&mut tls, 1024)).await.unwrap();
    assert!(matches!(r, Ok(Some(Message::Welcome { .. }))), "a client inside the deadline is served: {r:?}");

    // Too late: TLS inside the deadline, but Hello after it.
    let start = Instant::now();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(limit / 2).await;
    let mut tls = tokio_rustls::TlsConnector::from(pki.client_tls("good")).connect(name(), tcp).await.unwrap();
    let r = tokio::time::timeout(PATIENCE, wire::read_message(&mut tls, 1024)).await.expect("closed in time");
    assert!(matches!(r, Ok(None) | Err(_)), "no Hello by the deadline: closed, got {r:?}");
    let t = start.elapsed();
    assert!(t >= limit && t < limit + Duration::from_secs(2), "closed after {t:?}, limit {limit:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_just_under_the_idle_timeout_is_fine_and_just_over_it_ends_the_session() {
    let pki = Pki::new(&["good"]);
    let idle = Duration::from_secs(2);
    let server = InProcessServer::start(&pki, Limits { idle_timeout: idle, ..quick_limits() }).await;
    let mut d = Device::fixed(11);
    let mut c = Client::open(server.addr, pki.client_tls("good")).await;
    // Each frame restarts the clock: two pauses of 60% of the limit are fine.
    for _ in 0..2 {
        tokio::time::sleep(idle * 6 / 10).await;
        assert_eq!(c.submit(d.batch(1, "after a pause")).await.results.len(), 1);
    }
    // Then silence: the session ends at the limit, not before.
    let start = Instant::now();
    assert!(c.closed_within(idle + Duration::from_secs(2)).await, "silence past the idle timeout ends the session");
    let t = start.elapsed();
    assert!(t >= idle - Duration::from_millis(50), "closed after {t:?}, before the idle timeout {idle:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_flags_set_every_limit() {
    // The real binary, every limit set by its flag, each observed.
    let pki = Pki::new(&["good"]);
    let mut server = TestServer::init();
    server.start(
        &pki,
        &[
            "--max-frame",
            "65536",
            "--max-batch",
            "8",
            "--max-connections",
            "2",
            "--handshake-timeout",
            "2",
            "--idle-timeout",
            "2",
        ],
    );
    let config = pki.client_tls("good");
    let mut d = Device::fixed(12);

    // Frame and batch: advertised in Welcome and enforced.
    let mut a = Client::open(server.addr(), config.clone()).await;
    assert_eq!((a.max_frame, a.max_batch), (65536, 8));
    assert_eq!(a.submit(d.batch(8, "max-batch")).await.results.len(), 8);
    a.send(d.batch(9, "max-batch + 1")).await;
    assert!(a.closed_within(Duration::from_secs(2)).await, "--max-batch 8: a Submit of 9 ends the connection");
    let mut a = Client::open(server.addr(), config.clone()).await;
    a.tls.write_all(&65537u32.to_be_bytes()).await.unwrap();
    a.tls.flush().await.unwrap();
    assert!(a.closed_within(Duration::from_secs(2)).await, "--max-frame 65536: 65537 ends the connection");

    // Connections: with two open, a third waits until one closes.
    let a = Client::open(server.addr(), config.clone()).await;
    let mut b = Client::open(server.addr(), config.clone()).await;
    let third = tokio::spawn({
        let (addr, config) = (server.addr(), config.clone());
        async move { Client::open(addr, config).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!third.is_finished(), "--max-connections 2: a third connection waits");
    let freed = Instant::now();
    a.bye().await;
    let mut third = tokio::time::timeout(PATIENCE, third).await.expect("served once a slot is free").unwrap();
    assert!(freed.elapsed() < Duration::from_secs(1), "served when the slot freed, not at a timeout");
    assert_eq!(third.submit(d.batch(1, "third")).await.results.len(), 1);

    // Idle: two seconds of silence ends a session.
    let start = Instant::now();
    assert!(b.closed_within(Duration::from_secs(4)).await, "--idle-timeout 2");
    assert!(start.elapsed() < Duration::from_secs(4));
    drop(third);

    // Handshake: a TCP connection that never starts TLS is dropped at 2 s.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await.expect("dropped in time");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    let t = start.elapsed();
    assert!(t >= Duration::from_secs(2) && t < Duration::from_secs(4), "--handshake-timeout 2: dropped after {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_values_the_limit_flags_take_start_a_working_server() {
    // usize::MAX connections and verification threads (and the largest
    // frame budget) mean "no cap": the server must start and serve, not panic.
    let pki = Pki::new(&["good"]);
    let mut server = TestServer::init();
    let max = usize::MAX.to_string();
    server.start(
        &pki,
        &[
            "--max-connections",
            &max,
            "--verify-threads",
            &max,
            "--max-frame",
            &u32::MAX.to_string(),
            "--max-frame-bytes-in-flight",
            &u64::MAX.to_string(),
            "--max-unauthenticated",
            &max,
            "--max-unauthenticated-per-ip",
            &max,
            "--max-connections-per-cert",
            &max,
        ],
    );
    let mut c = Client::open(server.addr(), pki.client_tls("good")).await;
    assert_eq!(c.max_frame, u32::MAX);
    assert_eq!(c.submit(Device::fixed(13).batch(3, "no cap")).await.results.len(), 3);
}
