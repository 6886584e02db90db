//! Revocation that works live: after `truce-certs crl --revoke`, the
//! running server reads the CRL again (on SIGHUP, or by itself when the
//! file changes), refuses the revoked laptop's next connection and closes
//! its open session, while another laptop's open session goes on. A stale
//! CRL, or one with a lower CRL number, is refused and the CRL in force
//! kept; a stale CRL at start keeps the server from starting.
//!
//! Real binaries (`truce-server`, `truce-agent`, `truce-certs`) over mutual
//! TLS on loopback. The open sessions are raw TLS clients that send Hello
//! and hold the session, as `truce-agent sync` does between batches.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use truce_shared::wire::{self, Message, PROTOCOL_VERSION};
use truce_testkit::{bin, run_args, Pki, TestServer};
use truce_tests::harness::{mission, Agent};

/// Far longer than a reload takes, far shorter than the idle timeout (60 s)
/// that would also close a held session.
const PROMPTLY: Duration = Duration::from_secs(15);

/// `truce-certs ARGS…` through the binary; its stdout.
fn certs(args: &[&str]) -> String {
    run_args(bin("truce-certs"), args).expect_ok()
}

/// `truce-certs crl --out PKI --revoke PKI/NAME.pem`: the serial it revoked.
fn revoke(pki: &Pki, name: &str) -> String {
    let out = certs(&["crl", "--out", pki.dir_str(), "--revoke", &pki.file_str(&format!("{name}.pem"))]);
    let serial = out.lines().find_map(|l| l.strip_prefix("revoked serial ")).unwrap_or_else(|| panic!("{out}"));
    serial.trim().to_lowercase()
}

/// SIGHUP to the running server.
fn hup(server: &TestServer) {
    let pid = server.pid().expect("the server runs").to_string();
    let status = Command::new("kill").args(["-HUP", &pid]).status().expect("run kill");
    assert!(status.success(), "kill -HUP {pid}");
}

/// Waits (generously) for a server log line holding every one of `parts`.
fn wait_for_line(server: &TestServer, parts: &[&str]) -> String {
    let deadline = std::time::Instant::now() + PROMPTLY;
    loop {
        let log = server.log();
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no log line with {parts:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A laptop's session held open: TLS with its certificate, Hello, Welcome.
struct Held {
    tls: TlsStream<TcpStream>,
}

impl Held {
    async fn open(pki: &Pki, name: &str, server: &TestServer) -> Held {
        let mut roots = rustls::RootCertStore::empty();
        for c in truce_shared::pem::load_certs(&pki.file("ca.pem")).unwrap() {
            roots.add(c).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(truce_shared::tls::provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                truce_shared::pem::load_certs(&pki.file(&format!("{name}.pem"))).unwrap(),
                truce_shared::pem::load_key(&pki.file(&format!("{name}.key"))).unwrap(),
            )
            .unwrap();
        config.alpn_protocols = vec![wire::ALPN.to_vec()];
        let tcp = TcpStream::connect(server.addr()).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .expect("handshake");
        let hello = Message::Hello { protocol: PROTOCOL_VERSION, agent_version: "held".into(), device: [7; 32] };
        wire::write_message(&mut tls, &hello, 1 << 20).await.unwrap();
        match wire::read_message(&mut tls, 1 << 20).await {
            Ok(Some(Message::Welcome { .. })) => {}
            other => panic!("{name}: expected Welcome, got {other:?}"),
        }
        Held { tls }
    }

    /// Whether the server ends this session within [`PROMPTLY`].
    async fn closed_by_server(&mut self) -> bool {
        match tokio::time::timeout(PROMPTLY, wire::read_message(&mut self.tls, 1 << 20)).await {
            Ok(Ok(None)) | Ok(Err(_)) => true,
            Ok(Ok(Some(m))) => panic!("unexpected message {m:?}"),
            Err(_) => false,
        }
    }

    /// An empty batch answered: the session is alive and served.
    async fn still_served(&mut self) -> bool {
        let submit = Message::Submit { batch: 1, reports: Vec::new() };
        if wire::write_message(&mut self.tls, &submit, 1 << 20).await.is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(PROMPTLY, wire::read_message(&mut self.tls, 1 << 20)).await,
            Ok(Ok(Some(Message::Ack { .. })))
        )
    }
}

/// Two laptops that have synced once, with their sessions held open.
async fn two_laptops_held(extra: &[&str]) -> (Pki, TestServer, Vec<Agent>, Held, Held) {
    let (pki, mut server, agents) = mission(&["laptop-a", "laptop-b"]);
    // `mission` started the server with the defaults: start it again with ours.
    assert!(server.terminate().success());
    server.start(&pki, extra);
    for a in &agents {
        a.record("before the revocation");
        a.sync(None).expect_ok();
    }
    let a = Held::open(&pki, "laptop-a", &server).await;
    let b = Held::open(&pki, "laptop-b", &server).await;
    (pki, server, agents, a, b)
}

/// What both triggers must do once `laptop-a` is revoked.
async fn the_revoked_laptop_is_cut_off(server: &TestServer, serial: &str, agents: &[Agent], mut a: Held, mut b: Held) {
    assert!(a.closed_by_server().await, "the revoked laptop's open session is closed:\n{}", server.log());
    let line = wait_for_line(server, &["session closed: its certificate was revoked"]);
    assert!(line.to_lowercase().contains(serial), "the line names serial {serial}: {line}");
    assert!(b.still_served().await, "the other laptop's open session goes on:\n{}", server.log());
    agents[0].record("after the revocation");
    let err = agents[0].sync(None).expect_fail();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(agents[0].ids_in_state("pending").len(), 1, "nothing lost when refused");
    wait_for_line(server, &["handshake refused", "Revoked"]);
    agents[1].record("after the revocation");
    agents[1].sync(None).expect_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sighup_a_revoked_laptop_is_refused_and_its_open_session_closed() {
    // The file is not looked at by itself during this test: SIGHUP it is.
    let (pki, server, agents, a, b) = two_laptops_held(&["--crl-check-interval", "3600"]).await;
    let serial = revoke(&pki, "laptop-a");
    hup(&server);
    wait_for_line(&server, &["CRL reloaded", "SIGHUP"]);
    the_revoked_laptop_is_cut_off(&server, &serial, &agents, a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_crl_file_changes_a_revoked_laptop_is_cut_off_without_a_signal() {
    let (pki, server, agents, a, b) = two_laptops_held(&["--crl-check-interval", "0.5"]).await;
    let serial = revoke(&pki, "laptop-a");
    wait_for_line(&server, &["CRL reloaded", "file changed"]);
    the_revoked_laptop_is_cut_off(&server, &serial, &agents, a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_crl_is_refused_at_reload_and_the_one_in_force_kept() {
    let (pki, server, agents, _a, mut b) = two_laptops_held(&["--crl-check-interval", "3600"]).await;
    // Stale, and it would revoke laptop-b: neither may take effect.
    certs(&["crl", "--out", pki.dir_str(), "--stale", "--revoke", &pki.file_str("laptop-b.pem")]);
    hup(&server);
    let line = wait_for_line(&server, &["CRL refused"]);
    assert!(line.contains("stale") && line.contains("nextUpdate"), "{line}");
    assert!(b.still_served().await, "{}", server.log());
    agents[1].record("after the stale CRL");
    agents[1].sync(None).expect_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_with_a_lower_number_is_refused() {
    let (pki, server, agents, _a, _b) = two_laptops_held(&["--crl-check-interval", "3600"]).await;
    let older = std::fs::read(pki.file("crl.pem")).unwrap();
    revoke(&pki, "laptop-b");
    hup(&server);
    wait_for_line(&server, &["CRL reloaded"]);
    // The older CRL, which did not revoke laptop-b, put back.
    std::fs::write(pki.file("crl.pem"), older).unwrap();
    hup(&server);
    let line = wait_for_line(&server, &["CRL refused"]);
    assert!(line.contains("lower than the CRL number"), "{line}");
    agents[1].record("after the older CRL came back");
    agents[1].sync(None).expect_fail();
    agents[0].record("still fine");
    agents[0].sync(None).expect_ok();
}

#[test]
fn a_stale_crl_keeps_the_server_from_starting() {
    let pki = Pki::new(&["laptop-a"]);
    certs(&["crl", "--out", pki.dir_str(), "--stale"]);
    let server = TestServer::init();
    let err = server
        .cmd(&[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--ca",
            &pki.file_str("ca.pem"),
            "--cert",
            &pki.file_str("server.pem"),
            "--key",
            &pki.file_str("server.key"),
            "--crl",
            &pki.file_str("crl.pem"),
        ])
        .expect_one_line_error();
    assert!(err.contains("stale") && err.contains("crl.pem"), "{err}");
}

#[test]
fn the_crl_check_interval_must_be_positive() {
    let pki = Pki::new(&[]);
    let server = TestServer::init();
    let run = |interval: &str| {
        server.cmd(&[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--ca",
            &pki.file_str("ca.pem"),
            "--cert",
            &pki.file_str("server.pem"),
            "--key",
            &pki.file_str("server.key"),
            "--crl",
            &pki.file_str("crl.pem"),
            "--crl-check-interval",
            interval,
        ])
    };
    for bad in ["0", "0.0"] {
        let err = run(bad).expect_one_line_error();
        assert!(err.contains("--crl-check-interval must be a positive number of seconds"), "{bad}: {err}");
    }
}
