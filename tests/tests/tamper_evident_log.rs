//! The transparency log against tampering (DESIGN §9): a real server fed
//! by a real agent over mTLS, then its SQLite file edited behind its back
//! as an operator (or whoever holds the server) could. `truce-server
//! audit` must name each change, and exit non-zero; untouched, it is clean.

use rusqlite::Connection;
use truce_testkit::TestServer;
use truce_tests::harness::one_laptop;

/// A server holding 6 verified reports from one enrolled laptop, stopped.
fn populated() -> TestServer {
    let (pki, mut server, agent) = one_laptop("laptop-a");
    server.start(&pki, &[]);
    for i in 0..6 {
        agent.record(&format!("tamper test {i}"));
    }
    agent.sync(None).expect_ok();
    server.terminate();
    assert_eq!(server.ids("verified").len(), 6);
    server
}

fn db(server: &TestServer) -> Connection {
    Connection::open(server.dir().join("truce.sqlite")).expect("the store")
}

/// Runs `audit`; returns (exit ok, stdout).
fn audit(server: &TestServer, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["audit"];
    args.extend_from_slice(extra);
    let ran = server.cmd(&args);
    (ran.ok(), ran.stdout())
}

fn checkpoint(server: &TestServer) -> String {
    let out = server.cmd(&["log", "checkpoint"]).expect_ok();
    assert!(out.contains("/truce-log/"), "a checkpoint names the log key: {out}");
    out
}

#[test]
fn an_untouched_store_audits_clean_and_its_checkpoint_covers_every_entry() {
    let server = populated();
    let (ok, out) = audit(&server, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("audit clean"), "{out}");
    // Enrolment, then six reports: seven entries.
    assert!(out.contains("7 log entries"), "{out}");
    let cp = checkpoint(&server);
    assert_eq!(cp.lines().nth(1), Some("7"), "{cp}");
    let key = server.cmd(&["--json", "key"]).expect_ok();
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    assert!(cp.starts_with(key["origin"].as_str().unwrap()), "{cp} / {key}");
    let id = &server.ids("verified")[0];
    let proof = server.cmd(&["--json", "log", "prove", id]).expect_ok();
    let proof: serde_json::Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(proof["size"], 7);
    assert_eq!(proof["proof"].as_array().unwrap().len(), 3, "an audit path of a tree of 7: {proof}");
}

#[test]
fn a_deleted_row_a_changed_status_and_an_added_row_are_each_named() {
    let server = populated();
    let ids = server.ids("verified");
    let c = db(&server);
    let id = |s: &str| hex::decode(s).unwrap();
    c.execute("DELETE FROM reports WHERE id = ?1", [id(&ids[0])]).unwrap();
    c.execute("UPDATE reports SET status = 'quarantined', reason = 'x' WHERE id = ?1", [id(&ids[1])]).unwrap();
    // A row added without an entry: a copy of a report under another id.
    c.execute_batch(
        "CREATE TEMP TABLE t AS SELECT * FROM reports LIMIT 1;
         UPDATE t SET n = 1000, id = zeroblob(32), seq = 99, entry = NULL;
         INSERT INTO reports SELECT * FROM t;",
    )
    .unwrap();
    drop(c);
    let (ok, out) = audit(&server, &[]);
    assert!(!ok, "audit must fail: {out}");
    let short = |s: &str| s[..16].to_string();
    assert!(out.contains(&format!("report {} is in the log", short(&ids[0]))) && out.contains("row deleted"), "{out}");
    assert!(out.contains(&format!("report {}: the store says quarantined", short(&ids[1]))), "{out}");
    assert!(out.contains("report 0000000000000000 is in the store but no log entry"), "{out}");
    assert!(out.contains("its signed bytes do not verify"), "the added copy's id is not its bytes' hash: {out}");
}

#[test]
fn a_truncated_log_is_named() {
    let server = populated();
    let c = db(&server);
    c.execute("DELETE FROM log_entries WHERE idx >= 5", []).unwrap();
    drop(c);
    let (ok, out) = audit(&server, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("the log holds 5 entries but its head says 7"), "{out}");
    assert!(out.contains("missing from the store") || out.contains("no log entry records it"), "{out}");
}

#[test]
fn a_log_rewritten_and_re_signed_with_the_real_key_is_caught_by_a_kept_checkpoint() {
    let server = populated();
    let kept = server.dir().join("laptop.checkpoint");
    std::fs::write(&kept, checkpoint(&server)).unwrap();
    let (ok, out) = audit(&server, &["--checkpoint", kept.to_str().unwrap()]);
    assert!(ok, "the checkpoint a laptop kept matches the log: {out}");

    // Whoever holds the server drops a report and rebuilds the whole log
    // from what is left, signed with the real log key: the store and its
    // new log agree, so the audit alone is clean...
    let ids = server.ids("verified");
    let c = db(&server);
    c.execute("DELETE FROM reports WHERE id = ?1", [hex::decode(&ids[2]).unwrap()]).unwrap();
    c.execute_batch("DELETE FROM log_entries; DELETE FROM log_hashes; DELETE FROM log_head;").unwrap();
    drop(c);
    let (ok, out) = audit(&server, &[]);
    assert!(ok, "the rewrite is self-consistent: {out}");
    // ...but the checkpoint a laptop kept proves the server showed another
    // history.
    let (ok, out) = audit(&server, &["--checkpoint", kept.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("different history") || out.contains("cut back"), "{out}");
}

#[test]
fn a_checkpoint_signed_by_another_key_is_named() {
    let server = populated();
    let other = TestServer::init();
    let foreign = other.dir().join("other.checkpoint");
    std::fs::write(&foreign, other.cmd(&["log", "checkpoint"]).expect_ok()).unwrap();
    let (ok, out) = audit(&server, &["--checkpoint", foreign.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.contains("is not signed by this log's key"), "{out}");
}

// ------------------------------------------------- the agent's own checks

fn agent_status(agent: &truce_tests::harness::Agent) -> serde_json::Value {
    serde_json::from_str(&agent.cmd(&["--json", "status"]).expect_ok()).expect("status --json")
}

fn fingerprint(server: &TestServer) -> String {
    let key: serde_json::Value = serde_json::from_str(&server.cmd(&["--json", "key"]).expect_ok()).unwrap();
    key["fingerprint"].as_str().unwrap().to_string()
}

#[test]
fn an_agent_pinned_with_the_coordinators_fingerprint_proves_every_report_it_delivered() {
    let (pki, mut server, agent) = one_laptop("laptop-a");
    let fp = fingerprint(&server);
    let ca = pki.file_str("ca.pem");
    let (cert, key) = (pki.file_str("laptop-a.pem"), pki.file_str("laptop-a.key"));
    server.start(&pki, &[]);
    let addr = server.addr().to_string();
    agent
        .cmd(&["link", "--server", &addr, "--ca", &ca, "--cert", &cert, "--key", &key, "--server-key", &fp])
        .expect_ok();
    let ids: Vec<String> = (0..3).map(|i| agent.record(&format!("proven {i}"))).collect();
    let none = agent.cmd(&["checkpoint"]).expect_fail();
    assert!(none.contains("no verified checkpoint yet"), "{none}");
    agent.sync(None).expect_ok();
    // What the laptop kept is, byte for byte, the server's latest checkpoint.
    assert_eq!(agent.cmd(&["checkpoint"]).expect_ok(), checkpoint(&server));
    let s = agent_status(&agent);
    assert_eq!(s["log"]["fingerprint"].as_str(), Some(fp.as_str()), "{s}");
    assert_eq!(s["log"]["not_proven"], 0, "{s}");
    // The checkpoint the laptop kept is the server's: enrolment + 3 reports.
    assert_eq!(s["log"]["checkpoint"]["size"], 4, "{s}");
    for id in &ids {
        let shown: serde_json::Value = serde_json::from_str(&agent.cmd(&["--json", "show", id]).expect_ok()).unwrap();
        assert_eq!(shown["proven"], true, "{shown}");
    }
}

#[test]
fn an_agent_linked_to_another_log_key_refuses_to_sync_and_marks_nothing() {
    let (pki, mut server, agent) = one_laptop("laptop-a");
    let other = TestServer::init();
    let wrong = fingerprint(&other);
    let ca = pki.file_str("ca.pem");
    let (cert, key) = (pki.file_str("laptop-a.pem"), pki.file_str("laptop-a.key"));
    server.start(&pki, &[]);
    let addr = server.addr().to_string();
    agent
        .cmd(&["link", "--server", &addr, "--ca", &ca, "--cert", &cert, "--key", &key, "--server-key", &wrong])
        .expect_ok();
    let id = agent.record("to the wrong server?");
    let err = agent.sync(None).expect_fail();
    assert_eq!(err.trim().lines().count(), 1, "one loud line: {err}");
    assert!(err.contains(&wrong), "it names the key it expected: {err}");
    assert_eq!(agent.ids_in_state("pending"), vec![id]);
    assert!(server.ids("all").is_empty(), "nothing was sent");
}

#[test]
fn a_log_rewritten_and_re_signed_is_caught_by_the_agent_on_its_next_sync() {
    let (pki, mut server, agent) = one_laptop("laptop-a");
    server.start(&pki, &[]);
    for i in 0..3 {
        agent.record(&format!("before the rewrite {i}"));
    }
    agent.sync(None).expect_ok();
    assert_eq!(agent_status(&agent)["log"]["checkpoint"]["size"], 4);
    server.terminate();

    // Whoever holds the server drops a report and rebuilds the log from
    // what is left, signed with the real key.
    let victim = server.ids("verified").remove(0);
    let c = db(&server);
    c.execute("DELETE FROM reports WHERE id = ?1", [hex::decode(&victim).unwrap()]).unwrap();
    c.execute_batch("DELETE FROM log_entries; DELETE FROM log_hashes; DELETE FROM log_head;").unwrap();
    drop(c);
    server.start(&pki, &[]);

    let id = agent.record("after the rewrite");
    let err = agent.sync(None).expect_fail();
    let alarms: Vec<&str> = err.lines().filter(|l| l.contains("ALARM:")).collect();
    assert_eq!(alarms.len(), 1, "one loud line: {err}");
    assert!(alarms[0].contains("does not prove"), "{err}");
    let evidence = std::path::Path::new(agent.dir_str()).join("evidence");
    let kept: Vec<_> = std::fs::read_dir(&evidence).expect("an evidence dir").collect();
    assert_eq!(kept.len(), 1, "one alarm, one folder");
    let folder = kept[0].as_ref().unwrap().path();
    assert!(folder.join("kept.checkpoint").is_file() && folder.join("new.checkpoint").is_file());
    // The new report reached the server, but its log did not prove it.
    let shown: serde_json::Value = serde_json::from_str(&agent.cmd(&["--json", "show", &id]).expect_ok()).unwrap();
    assert_eq!(shown["proven"], false, "{shown}");
    assert_eq!(agent_status(&agent)["log"]["checkpoint"]["size"], 4, "the kept checkpoint stays the verified one");
    // And the auditor, given the laptop's kept checkpoint, sees it too.
    let (ok, out) = audit(&server, &["--checkpoint", folder.join("kept.checkpoint").to_str().unwrap()]);
    assert!(!ok && out.contains("different history"), "{out}");
}

#[test]
fn a_store_from_before_the_log_gets_a_log_key_and_its_history_logged() {
    let server = populated();
    // As a data dir made before the log: no log.key, no log tables' rows,
    // no entry indexes.
    std::fs::remove_file(server.dir().join("log.key")).unwrap();
    let c = db(&server);
    c.execute_batch(
        "DELETE FROM log_entries; DELETE FROM log_hashes; DELETE FROM log_head;
         UPDATE reports SET entry = NULL;",
    )
    .unwrap();
    drop(c);
    let key = server.cmd(&["--json", "key"]).expect_ok();
    let key: serde_json::Value = serde_json::from_str(&key).unwrap();
    assert_eq!(key["log_key"].as_str().unwrap().len(), 64);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.dir().join("log.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the new log key is private");
    let (ok, out) = audit(&server, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("7 log entries"), "the enrolment and six reports are logged: {out}");
    let entries = server.dir().join("entries.jsonl");
    server.cmd(&["log", "entries", "--out", entries.to_str().unwrap()]).expect_ok();
    assert_eq!(std::fs::read_to_string(&entries).unwrap().lines().count(), 7);
}
