//! Floods against the real `truce-server`: 2,000 TCP connections that never
//! speak, 500 that finish TLS and then stall, and a client announcing a
//! 4 GiB frame. Meanwhile a good agent must still sync with bounded latency,
//! and the server's memory must stay bounded.
//!
//! The figures (sync time with and without the flood, server memory per
//! flooding connection) are printed; the README quotes them.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use truce_testkit::{Pki, TestServer};
use truce_tests::harness::Agent;

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
}

/// Records `n` reports in process and times one `truce-agent sync`.
fn timed_sync(agent: &Agent, n: usize, tag: &str) -> Duration {
    let mut a = agent.open();
    for i in 0..n {
        truce_tests::harness::record_in_process(&mut a, &format!("{tag} {i}"));
    }
    drop(a);
    let t = Instant::now();
    agent.sync(None).expect_ok();
    t.elapsed()
}

#[test]
fn floods_do_not_stop_a_good_agent() {
    let pki = Pki::new(&["good", "staller", "cutter"]);
    let mut server = TestServer::init();
    let good = Agent::init();
    server.enrol(&good.key, "good");
    // Timeouts long enough that every flood connection is still open while
    // the good agent syncs.
    server.start(&pki, &["--handshake-timeout", "30", "--idle-timeout", "30", "--metrics", "127.0.0.1:0"]);
    good.link(&pki, "good", server.addr());
    let pid = server.pid().expect("server pid");

    let baseline = timed_sync(&good, 200, "baseline");
    let idle_rss = rss_kib(pid);

    // 2,000 TCP connections that never speak.
    let evicted = "truce_server_connections_refused_total{reason=\"evicted\"}";
    let before = server.metric(evicted);
    let silent: Vec<TcpStream> = (0..2000).map(|_| TcpStream::connect(server.addr()).expect("tcp connect")).collect();
    // The kernel finishes a connect before the server takes it. Until the
    // server has taken all of them from its backlog, each one it takes
    // evicts this address's oldest unauthenticated connection (the per-IP
    // cap), which could be a staller still in its handshake below; so wait
    // for the last of those evictions.
    let evictions = (2000 - truce_shared::limits::MAX_UNAUTHENTICATED_PER_IP) as f64;
    let until = Instant::now() + Duration::from_secs(60);
    while server.metric(evicted) < before + evictions {
        assert!(Instant::now() < until, "the server did not take the 2,000 silent connections in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }

    // 500 connections that finish TLS with a valid certificate, then stall
    // (all but the certificate's cap of sessions are refused after Hello).
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let config = Arc::new(
        truce_agent::tls::client_config(
            std::path::Path::new(&pki.file("ca.pem")),
            std::path::Path::new(&pki.file("staller.pem")),
            std::path::Path::new(&pki.file("staller.key")),
        )
        .expect("client config"),
    );
    let addr = server.addr();
    let stalled = runtime.block_on(async {
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let mut conns = Vec::new();
        for _ in 0..500 {
            let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            conns.push(connector.connect(name, tcp).await.expect("TLS handshake of a staller"));
        }
        conns
    });

    // A client that announces a 4 GiB frame after its Hello: cut at once.
    let cut = runtime.block_on(async {
        // Its own certificate: the stallers' holds its cap of sessions.
        let cutter = Arc::new(
            truce_agent::tls::client_config(
                std::path::Path::new(&pki.file("ca.pem")),
                std::path::Path::new(&pki.file("cutter.pem")),
                std::path::Path::new(&pki.file("cutter.key")),
            )
            .expect("client config"),
        );
        let connector = tokio_rustls::TlsConnector::from(cutter);
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.expect("TLS");
        let hello = truce_shared::wire::Message::Hello {
            protocol: truce_shared::wire::PROTOCOL_VERSION,
            agent_version: "flood".into(),
            device: [1; 32],
        };
        truce_shared::wire::write_message(&mut tls, &hello, truce_shared::limits::MAX_FRAME).await.unwrap();
        let welcome = truce_shared::wire::read_message(&mut tls, truce_shared::limits::MAX_FRAME).await.unwrap();
        assert!(matches!(welcome, Some(truce_shared::wire::Message::Welcome { .. })));
        let t = Instant::now();
        tls.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        tls.write_all(&[0u8; 1024]).await.unwrap();
        tls.flush().await.unwrap();
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the server did not close a 4 GiB frame: {closed:?}");
        t.elapsed()
    });

    let flood_rss = rss_kib(pid);
    let flooded = timed_sync(&good, 200, "flooded");
    let per_conn = (flood_rss.saturating_sub(idle_rss)) as f64 / 2500.0;
    println!(
        "floods: good sync of 200 reports {:.0} ms idle vs {:.0} ms under 2,000 silent + 500 stalled TLS connections; \
         server RSS {} KiB idle, {} KiB flooded ({per_conn:.1} KiB per flood connection); 4 GiB frame cut in {:.1} ms",
        baseline.as_secs_f64() * 1e3,
        flooded.as_secs_f64() * 1e3,
        idle_rss,
        flood_rss,
        cut.as_secs_f64() * 1e3,
    );
    assert!(flooded < Duration::from_secs(10), "the good agent took {flooded:?} under the flood");
    assert!(per_conn < 100.0, "{per_conn:.1} KiB per flooding connection");
    assert!(cut < Duration::from_secs(2), "the 4 GiB frame took {cut:?} to be refused");
    assert_eq!(good.ids_in_state("delivered").len(), 400);
    drop(silent);
    drop(stalled);
    assert!(server.terminate().success(), "server exits 0 after the flood");
}
