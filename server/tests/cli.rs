//! The command line a coordinator uses: `init` once, `device add|list|
//! revoke`, `stats`, `--json` everywhere, and errors as one line that says
//! what to do.

use crate::common::*;

fn one_line(err: &str) -> &str {
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line, got:\n{err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    lines[0]
}

#[test]
fn every_command_before_init_says_to_run_init() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("never-initialised");
    let d = dir.to_str().unwrap();
    for args in [&["device", "list"][..], &["stats"], &["device", "add", &"ab".repeat(32)], &["import", "x.truce"]] {
        let err = fails(cli(&dir, args));
        let line = one_line(&err);
        assert!(line.contains(&format!("no server key in {d}: run `truce-server init` first")), "{args:?}: {line}");
    }
}

#[test]
fn init_makes_a_key_once_and_never_overwrites_it() {
    let data = tempfile::tempdir().unwrap();
    let err = fails(cli(data.path(), &["init", "--mission", "smm east"]));
    assert!(one_line(&err).contains("--mission"), "{err}");
    let out = ok(cli(data.path(), &["--json", "init", "--mission", "smm-east"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let key = v["server_key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 64);
    // The log key is another key; `key` prints the same one, and its origin
    // names the mission and the fingerprint.
    assert_ne!(v["log_key"], v["server_key"]);
    let k: serde_json::Value = serde_json::from_str(ok(cli(data.path(), &["--json", "key"])).trim()).unwrap();
    assert_eq!((&k["log_key"], &k["fingerprint"]), (&v["log_key"], &v["log_fingerprint"]));
    assert_eq!(k["origin"].as_str().unwrap(), format!("smm-east/truce-log/{}", v["log_fingerprint"].as_str().unwrap()));
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(data.path().join("log.key")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let err = fails(cli(data.path(), &["init"]));
    assert!(one_line(&err).contains("already exists"), "{err}");
    // Still the same key: the env var finds the same data dir as the flag.
    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_truce-server"))
        .args(["--json", "stats"])
        .env("TRUCE_SERVER_DIR", data.path()));
    let stats: serde_json::Value = serde_json::from_str(&ok(out)).unwrap();
    assert_eq!(stats["reports"]["verified"], 0);
    let on_disk = std::fs::read(data.path().join("server.key")).unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&on_disk.try_into().unwrap());
    assert_eq!(hex::encode(sk.verifying_key().to_bytes()), key);
}

#[test]
fn devices_are_enrolled_listed_and_revoked() {
    let data = tempfile::tempdir().unwrap();
    ok(cli(data.path(), &["init"]));
    let (a, b) = (Device::new(), Device::new());
    let out = ok(cli(data.path(), &["device", "add", &a.hex(), "--name", "laptop-07"]));
    assert!(out.starts_with("enrolled laptop-07 "), "{out}");
    ok(cli(data.path(), &["device", "add", &b.hex()]));
    let out = ok(cli(data.path(), &["device", "revoke", &b.hex(), "--reason", "stolen"]));
    assert!(out.contains("revoked") && out.contains("crl.pem"), "{out}");
    let list = ok(cli(data.path(), &["--json", "device", "list"]));
    let rows: Vec<serde_json::Value> = list.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["device"].as_str(), rows[0]["name"].as_str()), (Some(a.hex().as_str()), Some("laptop-07")));
    assert!(rows[0]["revoked_at"].is_null());
    assert_eq!(rows[1]["revoke_reason"], "stolen");
    let text = ok(cli(data.path(), &["device", "list"]));
    assert!(text.contains("laptop-07") && text.contains("REVOKED") && text.contains("(stolen)"), "{text}");

    let err = fails(cli(data.path(), &["device", "add", "not-hex"]));
    assert!(one_line(&err).contains("is not a device key: give the 64 hex digits"), "{err}");
    let err = fails(cli(data.path(), &["device", "revoke", &Device::new().hex()]));
    assert!(one_line(&err).contains("not enrolled"), "{err}");
}

#[test]
fn run_refuses_bad_files_and_limits_in_one_line() {
    let pki = Pki::new(&[]);
    let data = tempfile::tempdir().unwrap();
    ok(cli(data.path(), &["init"]));
    let ca = pki.file("ca.pem");
    let base = |extra: &[&str], key: &str| {
        let mut args = vec!["run", "--listen", "127.0.0.1:0", "--ca", ca.to_str().unwrap()];
        let (cert, key) = (pki.file("server.pem"), pki.file(key));
        let (cert, key) = (cert.to_str().unwrap().to_string(), key.to_str().unwrap().to_string());
        args.extend(["--cert", &cert, "--key", &key]);
        args.extend_from_slice(extra);
        fails(cli(data.path(), &args))
    };
    // Without a CRL it refuses before anything else, unless told not to care.
    let err = base(&[], "server.key");
    assert!(one_line(&err).contains("no --crl given") && err.contains("--no-crl"), "{err}");
    let err = base(&["--no-crl", "--crl", ca.to_str().unwrap()], "server.key");
    assert!(one_line(&err).contains("--no-crl") && err.contains("--crl"), "{err}");
    let err = base(&["--no-crl"], "missing.key");
    assert!(one_line(&err).contains("cannot read") && err.contains("missing.key"), "{err}");
    let err = base(&["--no-crl"], "ca.pem");
    assert!(one_line(&err).contains("is not a PEM file with a private key"), "{err}");
    let err = base(&["--max-frame", "100"], "server.key");
    assert!(one_line(&err).contains("--max-frame 100 is too small"), "{err}");
    let err = base(&["--idle-timeout", "0"], "server.key");
    assert!(one_line(&err).contains("--idle-timeout must be a positive number of seconds"), "{err}");
    let err = base(&["--crl", ca.to_str().unwrap()], "server.key");
    assert!(one_line(&err).contains("CRL"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_shows_outcomes_devices_gaps_and_forks() {
    let pki = Pki::new(&["laptop"]);
    let server = InProcessServer::start(&pki, quick_limits()).await;
    let mut d = Device::new();
    ok(server.cli(&["device", "add", &d.hex(), "--name", "laptop-3"]));
    let r1 = d.next("1");
    let _withheld = d.next("2");
    let r3 = d.next("3");
    let fork = d.at(3, _withheld.id(), "another 3");
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    c.submit(vec![r1, r3, fork, tampered(&d.next("4"))]).await;
    c.bye().await;
    let out = ok(server.cli(&["--json", "stats"]));
    let s: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(s["reports"]["verified"], 2);
    assert_eq!(s["reports"]["rejected"], 1);
    assert_eq!(s["rejected_by_reason"]["equivocation"], 1);
    assert_eq!(s["rejected_by_reason"]["bad signature"], 1);
    assert_eq!(s["devices"]["enrolled"], 1);
    assert_eq!(s["forks"], 1);
    let chain = &s["chains"][0];
    assert_eq!(chain["name"], "laptop-3");
    assert_eq!(chain["gaps"], serde_json::json!([[2, 2]]));
    assert_eq!(chain["missing"], 1);
    // The fork at seq 3: both versions there are disputed (and anything later).
    assert_eq!(chain["disputed"], 2);
    let text = ok(server.cli(&["stats"]));
    assert!(text.contains("2 verified") && text.contains("missing (seq 2)") && text.contains("1 FORKED"), "{text}");
    assert!(text.contains("2 report(s) DISPUTED"), "{text}");
    server.stop().await;
}

#[test]
fn names_and_reasons_reach_the_terminal_escaped_and_json_keeps_them() {
    let data = tempfile::tempdir().unwrap();
    ok(cli(data.path(), &["init"]));
    let d = Device::new();
    // Clear the screen, retitle the window, and a line of its own.
    let name = "laptop\u{1b}[2J\u{1b}]0;owned\u{7}\nREVOKED 1999";
    let out = ok(cli(data.path(), &["device", "add", &d.hex(), "--name", name]));
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("laptop\\u{1b}[2J"), "{out:?}");
    ok(cli(data.path(), &["device", "revoke", &d.hex(), "--reason", "seized\r\u{1b}[1Aall clear"]));
    for args in [&["device", "list"][..], &["stats"]] {
        let out = ok(cli(data.path(), args));
        assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{args:?}: {out:?}");
        assert_eq!(out.matches("REVOKED 1999").count(), out.matches("\\nREVOKED 1999").count(), "{args:?}: {out:?}");
    }
    let listed = ok(cli(data.path(), &["device", "list"]));
    assert!(listed.contains("(seized\\r\\u{1b}[1Aall clear)"), "{listed:?}");
    // JSON keeps the exact text (its encoder escapes control characters).
    let json = ok(cli(data.path(), &["--json", "device", "list"]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["name"], name);
}

/// A session as a laptop with `device` opens it: Hello naming the key,
/// then one Submit of `reports`, answered.
async fn sync_as(
    server: &InProcessServer,
    pki: &Pki,
    cert: &str,
    device: &Device,
    reports: Vec<truce_shared::SignedReport>,
) {
    use truce_shared::wire::{self, Message, PROTOCOL_VERSION};
    let max = truce_shared::limits::MAX_FRAME;
    let mut tls = connect(server.addr, pki.client_tls(cert)).await.unwrap();
    let hello = Message::Hello { protocol: PROTOCOL_VERSION, agent_version: "test".into(), device: device.public() };
    wire::write_message(&mut tls, &hello, max).await.unwrap();
    assert!(matches!(wire::read_message(&mut tls, max).await.unwrap(), Some(Message::Welcome { .. })));
    wire::write_message(&mut tls, &Message::Submit { batch: 1, reports }, max).await.unwrap();
    assert!(matches!(wire::read_message(&mut tls, max).await.unwrap(), Some(Message::Ack { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_list_says_who_has_gone_quiet() {
    let pki = Pki::new(&["laptop-07"]);
    let server = InProcessServer::start(&pki, quick_limits()).await;
    let mut heard = Device::fixed(81);
    let silent = Device::fixed(82);
    ok(server.cli(&["device", "add", &heard.hex(), "--name", "laptop-07"]));
    ok(server.cli(&["device", "add", &silent.hex(), "--name", "laptop-08"]));
    let reports = heard.batch(2, "heard from");
    sync_as(&server, &pki, "laptop-07", &heard, reports).await;

    let list: Vec<serde_json::Value> =
        ok(server.cli(&["device", "list", "--json"])).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(list.len(), 2);
    let (a, b) = (&list[0], &list[1]);
    assert_eq!(a["name"], "laptop-07");
    assert!(a["last_session_at"].is_string(), "{a}");
    assert!(a["last_report_at"].is_string(), "{a}");
    assert_eq!(a["reports_24h"], 2);
    assert_eq!(a["missing_seqs"], 0);
    assert!(a["last_session_cert_subject"].as_str().unwrap().contains("CN=laptop-07"), "{a}");
    assert!(a["last_session_cert_serial"].as_str().is_some_and(|s| !s.is_empty()), "{a}");
    assert_eq!(b["name"], "laptop-08");
    assert!(b["last_session_at"].is_null() && b["last_report_at"].is_null(), "{b}");
    assert_eq!(b["reports_24h"], 0);

    // Text, for a coordinator: who has been silent for an hour.
    let silent_list = ok(server.cli(&["device", "list", "--silent-for", "1h"]));
    assert!(silent_list.contains("laptop-08") && silent_list.contains("never heard from"), "{silent_list}");
    assert!(!silent_list.contains("laptop-07"), "{silent_list}");
    let all = ok(server.cli(&["device", "list"]));
    assert!(all.contains("last session") && all.contains("2 in the last 24 h"), "{all}");
    let err = fails(server.cli(&["device", "list", "--silent-for", "soon"]));
    assert!(one_line(&err).contains("--silent-for \"soon\": give a duration such as 30m, 24h or 7d"), "{err}");
    server.stop().await;
}
