//! `run --metrics ADDR` serves the Prometheus text format on a listener of
//! its own: the real binary is driven over mTLS, then scraped over plain
//! TCP, and the counters must match what was sent.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use truce_shared::wire::{Message, Status};

use crate::common::*;

/// One scrape: the status line, headers and body, as text.
async fn scrape(addr: SocketAddr) -> String {
    try_scrape(addr).await.expect("a scrape of the metrics listener")
}

/// One scrape, or the error a listener with every slot taken gives (it
/// closes at once, before reading the request: a reset).
async fn try_scrape(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: truce\r\n\r\n").await?;
    let mut out = String::new();
    tokio::time::timeout(PATIENCE, s.read_to_string(&mut out)).await.expect("an answer in time")?;
    Ok(out)
}

/// The value of the sample `series` (name and labels) in a scrape.
fn value(scrape: &str, series: &str) -> f64 {
    truce_testkit::metric_sample(scrape, series).unwrap_or_else(|| panic!("no sample {series} in:\n{scrape}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_what_was_sent_and_the_listener_is_bounded() {
    let pki = Pki::new(&["laptop"]);
    let mut server = TestServer::init();
    let mut known = Device::new();
    server.enrol(&known.hex(), "laptop");
    let mut unknown = Device::new();
    server.start(&pki, &["--metrics", "127.0.0.1:0", "--max-connections-per-cert", "1"]);
    let metrics =
        server.metrics_addr().unwrap_or_else(|| panic!("no metrics= in the listening line:\n{}", server.log()));

    let before = scrape(metrics).await;
    assert!(before.starts_with("HTTP/1.1 200 OK\r\n"), "{before}");
    assert!(before.contains("\r\nContent-Type: text/plain; version=0.0.4"), "{before}");
    assert_eq!(value(&before, "truce_server_reports_total{outcome=\"accepted\"}"), 0.0);
    let age = value(&before, "truce_server_crl_age_seconds");
    assert!((0.0..3600.0).contains(&age), "the CRL was made just now: {age}");

    let (r1, r2, r3) = (known.next("one"), known.next("two"), known.next("three"));
    let mut c = Client::open(server.addr(), pki.client_tls("laptop")).await;
    let a = c.submit(vec![r1.clone(), r2]).await;
    assert_eq!(a.statuses(), vec![Status::Accepted, Status::Accepted]);
    let b = c.submit(vec![r1, r3, unknown.next("who?"), tampered(&known.next("four"))]).await;
    assert!(matches!(
        b.statuses()[..],
        [Status::Duplicate, Status::Accepted, Status::Quarantined(_), Status::Rejected(_)]
    ));
    // A second session of the same certificate is over its cap of 1.
    let refused = first_answer(server.addr(), pki.client_tls("laptop")).await;
    assert!(matches!(refused, Ok(Message::Refuse { .. })), "{refused:?}");

    let during = scrape(metrics).await;
    assert_eq!(value(&during, "truce_server_connections{state=\"authenticated\"}"), 1.0, "{during}");
    c.bye().await;
    let m = scrape(metrics).await;
    for (series, want) in [
        ("truce_server_reports_total{outcome=\"accepted\"}", 3.0),
        ("truce_server_reports_total{outcome=\"duplicate\"}", 1.0),
        ("truce_server_reports_total{outcome=\"quarantined\"}", 1.0),
        ("truce_server_reports_total{outcome=\"rejected\"}", 1.0),
        ("truce_server_commit_group_reports_sum", 6.0),
        ("truce_server_commit_group_batches_sum", 2.0),
        ("truce_server_commit_seconds_count", 2.0),
        ("truce_server_commit_seconds_bucket{le=\"+Inf\"}", 2.0),
        ("truce_server_connections_accepted_total", 2.0),
        ("truce_server_connections_refused_total{reason=\"cert_cap\"}", 1.0),
        ("truce_server_limit_hits_total{limit=\"max_connections_per_cert\"}", 1.0),
        ("truce_server_limit_hits_total{limit=\"max_batch\"}", 0.0),
        ("truce_server_connections{state=\"unauthenticated\"}", 0.0),
    ] {
        assert_eq!(value(&m, series), want, "{series} in:\n{m}");
    }
    assert!(value(&m, "truce_server_commit_seconds_sum") > 0.0);

    // Bounded: four idle scrapers hold every slot; a fifth is closed at
    // once, unanswered, and the server's own listener is untouched.
    let mut idle = Vec::new();
    for _ in 0..truce_shared::limits::MAX_METRICS_CONNECTIONS {
        idle.push(TcpStream::connect(metrics).await.unwrap());
    }
    let mut fifth = TcpStream::connect(metrics).await.unwrap();
    let mut buf = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(3), fifth.read_to_end(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "the fifth is closed at once: {n:?} {buf:?}");
    let c = Client::open(server.addr(), pki.client_tls("laptop")).await;
    c.bye().await;
    drop(idle);
    // Freed, a scrape is answered again.
    let mut again = String::new();
    for _ in 0..50 {
        // Until the server has seen the idle ones go, a scrape may still
        // be closed at once.
        again = try_scrape(metrics).await.unwrap_or_else(|e| e.to_string());
        if again.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    assert!(server.terminate().success());
}
