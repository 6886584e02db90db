//! The key exchange: a Truce agent and server agree on the hybrid
//! post-quantum X25519MLKEM768 (traffic recorded today stays unreadable
//! to whoever breaks X25519 later), while a client that only offers X25519
//! (an `openssl s_client` check, a mission's own tool) still gets in.
//! Real binaries over mutual TLS on loopback; the group is read from the
//! server's `authenticated … key_exchange=…` log line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::aws_lc_rs::{self, kx_group};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use truce_testkit::{Pki, TestServer};
use truce_tests::harness::mission;

/// Waits (generously) for a server log line holding every one of `parts`.
fn wait_for_line(server: &TestServer, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no log line with {parts:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_agent_and_the_server_agree_on_x25519mlkem768() {
    let (_pki, server, agents) = mission(&["laptop-a"]);
    agents[0].record("over the hybrid key exchange");
    agents[0].sync(None).expect_ok();
    let line = wait_for_line(&server, &["authenticated", "key_exchange="]);
    assert!(line.contains("key_exchange=X25519MLKEM768"), "{line}");
    assert_eq!(server.ids("verified").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_offering_only_x25519_still_connects() {
    let pki = Pki::new(&["tool"]);
    let mut server = TestServer::init();
    server.start(&pki, &[]);

    // A plain rustls client, not Truce's provider: X25519 is all it offers.
    let provider = CryptoProvider { kx_groups: vec![kx_group::X25519], ..aws_lc_rs::default_provider() };
    let mut roots = rustls::RootCertStore::empty();
    for c in truce_shared::pem::load_certs(&pki.file("ca.pem")).unwrap() {
        roots.add(c).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            truce_shared::pem::load_certs(&pki.file("tool.pem")).unwrap(),
            truce_shared::pem::load_key(&pki.file("tool.key")).unwrap(),
        )
        .unwrap();
    config.alpn_protocols = vec![truce_shared::wire::ALPN.to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake with only X25519 succeeds");
    let group = tls.get_ref().1.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name()));
    assert_eq!(group.as_deref(), Some("X25519"));
    let line = wait_for_line(&server, &["authenticated", "key_exchange="]);
    assert!(line.contains("key_exchange=X25519 ") || line.ends_with("key_exchange=X25519"), "{line}");
}
