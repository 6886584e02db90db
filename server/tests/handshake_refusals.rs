//! The transport lock (DESIGN §5): only a client with a certificate from the
//! mission CA, not revoked, not expired, over TLS 1.3 with ALPN `truce/1`,
//! gets a session. Each refusal is checked beside a good client on the same
//! server, so a refusal cannot pass because the server is simply down.

use truce_shared::wire::{self, Message};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_missions_current_certificates_over_tls13_and_truce1_get_a_session() {
    let pki = Pki::new(&["good", "revoked"]);
    pki.client_with("expired", truce_certs::ClientOptions::expired());
    pki.revoke("revoked");
    let other = Pki::new(&["stranger"]);
    let server = InProcessServer::start(&pki, quick_limits()).await;
    let tls13 = &[&rustls::version::TLS13][..];
    let truce = || vec![wire::ALPN.to_vec()];

    let good = first_answer(server.addr, pki.client_tls("good")).await;
    assert!(matches!(good, Ok(Message::Welcome { .. })), "a good client gets Welcome: {good:?}");

    let cases = [
        ("no client certificate", client_tls(&pki, None, tls13, truce())),
        ("a certificate from another CA", client_tls_other_ca(&pki, &other, "stranger")),
        ("an expired certificate", client_tls(&pki, Some("expired"), tls13, truce())),
        ("a revoked certificate", client_tls(&pki, Some("revoked"), tls13, truce())),
        ("TLS 1.2 only", client_tls(&pki, Some("good"), &[&rustls::version::TLS12], truce())),
        ("ALPN other than truce/1", client_tls(&pki, Some("good"), tls13, vec![b"http/1.1".to_vec()])),
        ("no ALPN at all", client_tls(&pki, Some("good"), tls13, vec![])),
    ];
    for (what, config) in cases {
        let r = first_answer(server.addr, config).await;
        assert!(r.is_err(), "{what}: the server must refuse, got {r:?}");
        // Right after, on the same server, the good client gets in.
        let good = first_answer(server.addr, pki.client_tls("good")).await;
        assert!(matches!(good, Ok(Message::Welcome { .. })), "after {what}: {good:?}");
    }

    // And the good client still works after all that.
    let mut c = Client::open(server.addr, pki.client_tls("good")).await;
    let mut d = Device::fixed(1);
    let ack = c.submit(vec![d.next("after the refusals")]).await;
    assert_eq!(ack.results.len(), 1);
    c.bye().await;
    server.stop().await;
}

/// A client whose certificate comes from `other`'s CA but which trusts the
/// mission's server (so only the client side is wrong).
fn client_tls_other_ca(pki: &Pki, other: &Pki, name: &str) -> std::sync::Arc<rustls::ClientConfig> {
    let provider = std::sync::Arc::new(truce_shared::tls::provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in truce_server::tls::load_certs(&pki.file("ca.pem")).unwrap() {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            truce_server::tls::load_certs(&other.file(&format!("{name}.pem"))).unwrap(),
            truce_server::tls::load_key(&other.file(&format!("{name}.key"))).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![wire::ALPN.to_vec()];
    std::sync::Arc::new(cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refusals_are_handshake_failures_where_tls_allows() {
    // With TLS 1.2 or a foreign ALPN the handshake itself fails (the
    // client sees the alert while connecting); a missing certificate is
    // refused on the first read in TLS 1.3; no ALPN completes the handshake
    // and is then dropped by the server without a word.
    let pki = Pki::new(&["good"]);
    let server = InProcessServer::start(&pki, quick_limits()).await;
    let tls13 = &[&rustls::version::TLS13][..];
    let e = connect(server.addr, client_tls(&pki, Some("good"), &[&rustls::version::TLS12], vec![wire::ALPN.to_vec()]))
        .await
        .expect_err("TLS 1.2 handshake fails");
    assert!(e.to_string().to_lowercase().contains("protocol"), "{e}");
    let e = connect(server.addr, client_tls(&pki, Some("good"), tls13, vec![b"h2".to_vec()]))
        .await
        .expect_err("foreign ALPN handshake fails");
    assert!(e.to_string().contains("NoApplicationProtocol"), "{e}");
    let r = first_answer(server.addr, client_tls(&pki, None, tls13, vec![wire::ALPN.to_vec()])).await;
    assert!(r.as_ref().is_err_and(|e| e.contains("CertificateRequired") || e.contains("read")), "{r:?}");
    let mut bare =
        connect(server.addr, client_tls(&pki, Some("good"), tls13, vec![])).await.expect("handshake completes");
    assert_eq!(bare.get_ref().1.alpn_protocol(), None);
    let r = tokio::time::timeout(PATIENCE, wire::read_message(&mut bare, 1024)).await.expect("closed promptly");
    assert!(matches!(r, Ok(None) | Err(_)), "no ALPN: the server closes without answering: {r:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_revoked_with_truce_certs_is_refused_once_the_server_restarts_with_the_new_crl() {
    // The operator's procedure (server/README.md): `truce-certs revoke NAME`,
    // then restart `truce-server run --crl crl.pem`, which reads CRLs at start.
    let pki = Pki::new(&["laptop-07", "laptop-08"]);
    let mut server = TestServer::init();
    server.start(&pki, &[]);
    for laptop in ["laptop-07", "laptop-08"] {
        let r = first_answer(server.addr(), pki.client_tls(laptop)).await;
        assert!(matches!(r, Ok(Message::Welcome { .. })), "{laptop} before the revocation: {r:?}");
    }
    pki.revoke("laptop-07");
    assert!(server.terminate().success());
    server.start(&pki, &[]);
    let r = first_answer(server.addr(), pki.client_tls("laptop-07")).await;
    assert!(r.is_err(), "a revoked laptop must be refused after the restart: {r:?}");
    let r = first_answer(server.addr(), pki.client_tls("laptop-08")).await;
    assert!(matches!(r, Ok(Message::Welcome { .. })), "the other laptop still gets in: {r:?}");
    eventually("the refusal is logged with its reason", || {
        server.log().lines().any(|l| l.contains("handshake refused") && l.contains("Revoked"))
    })
    .await;
}
