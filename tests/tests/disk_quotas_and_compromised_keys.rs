//! Issue 24, through the real binaries: a device key's disk quota refuses
//! the next report with a reason the agent shows while another laptop
//! syncs on; and `device revoke --compromised-since` disputes the reports
//! recorded after that time, in stats and exports, with the log recording
//! it and `audit` staying clean.

use std::time::Duration;

use truce_shared::log::{Entry, Event};
use truce_shared::time::{format_ms, now_ms};
use truce_testkit::{Pki, TestServer};
use truce_tests::harness::{one_laptop, Agent};

/// The ids and `disputed` of each exported JSON line.
fn disputed(jsonl: &str) -> Vec<(String, bool)> {
    jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .map(|v| (v["id"].as_str().unwrap_or_default().to_string(), v["disputed"].as_bool().unwrap_or(false)))
        .collect()
}

#[test]
fn a_key_quota_of_two_accepts_two_refuses_the_third_and_another_laptop_still_syncs() {
    let pki = Pki::new(&["laptop-a", "laptop-b"]);
    let mut server = TestServer::init();
    let (a, b) = (Agent::init(), Agent::init());
    server.enrol(&a.key, "laptop-a");
    server.enrol(&b.key, "laptop-b");
    server.start(&pki, &["--max-reports-per-key", "2"]);
    a.link(&pki, "laptop-a", server.addr());
    b.link(&pki, "laptop-b", server.addr());

    a.record("first");
    a.record("second");
    a.sync(None).expect_ok();
    assert_eq!(a.ids_in_state("delivered").len(), 2);
    let third = a.record("one past the quota");
    let err = a.sync(None).expect_fail();
    assert!(err.contains("quota reached (max-reports-per-key)"), "the agent shows why: {err}");
    assert_eq!(a.ids_in_state("pending"), vec![third.clone()], "the report stays on the laptop");
    assert!(!server.ids("all").contains(&third));

    let other = b.record("another laptop");
    b.sync(None).expect_ok();
    assert!(server.ids("verified").contains(&other), "everyone else's reports still flow");

    let stats = server.cmd(&["stats"]).expect_ok();
    assert!(stats.contains("quota refusals: 1 batch(es) refused: 1 by --max-reports-per-key"), "{stats}");
    let log = server.log();
    assert!(log.contains("quota reached") && log.contains("max-reports-per-key"), "a line for the operator: {log}");
}

#[test]
fn revoke_compromised_since_disputes_the_reports_recorded_after_it() {
    let (pki, mut server, agent) = one_laptop("laptop-a");
    server.start(&pki, &[]);
    let before = agent.record("recorded while the laptop was in safe hands");
    // Recorded times are the laptop's clock, in ms; a second either side
    // of T keeps them apart however the clock is read.
    std::thread::sleep(Duration::from_millis(1100));
    let t = format_ms(now_ms());
    std::thread::sleep(Duration::from_millis(1100));
    let after = agent.record("recorded after it was seized");
    agent.sync(None).expect_ok();

    // A time that cannot be read, or lies ahead, is one clear line.
    let err = server.cmd(&["device", "revoke", &agent.key, "--compromised-since", "yesterday"]).expect_fail();
    assert!(err.contains("--compromised-since") && err.trim().lines().count() == 1, "{err}");
    let out = server
        .cmd(&["device", "revoke", &agent.key, "--reason", "seized at checkpoint 4", "--compromised-since", &t])
        .expect_ok();
    assert!(out.contains("compromised since"), "{out}");

    // A verified export leaves the disputed report out; --include-disputed
    // shows both, marked; other statuses always show them, marked.
    let default = server.cmd(&["export", "--format", "jsonl"]).expect_ok();
    assert_eq!(disputed(&default), vec![(before.clone(), false)]);
    let all = server.cmd(&["export", "--format", "jsonl", "--include-disputed"]).expect_ok();
    let mut got = disputed(&all);
    got.sort();
    let mut want = vec![(before.clone(), false), (after.clone(), true)];
    want.sort();
    assert_eq!(got, want);
    let csv = server.cmd(&["export", "--format", "csv", "--status", "all"]).expect_ok();
    let row = csv.lines().find(|l| l.starts_with(&after)).expect("the disputed report's row");
    assert!(row.ends_with(",true"), "{row}");

    let stats: serde_json::Value =
        serde_json::from_str(server.cmd(&["--json", "stats"]).expect_ok().trim()).expect("stats json");
    assert_eq!(stats["chains"][0]["disputed"], 1, "{stats}");

    // The log records the revocation with its since, and audit is clean.
    let entries = server.cmd(&["log", "entries", "--out", "-"]).expect_ok();
    let since: Vec<Option<i64>> = entries
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| hex::decode(v["entry"].as_str()?).ok())
        .filter_map(|b| Entry::decode(&b).ok())
        .filter_map(|e| match e.event {
            Event::Revoked { since, .. } => Some(since),
            _ => None,
        })
        .collect();
    let t_ms = truce_shared::time::parse_time(&t, now_ms()).expect("T");
    assert_eq!(since, vec![Some(t_ms)]);
    let audit = server.cmd(&["audit"]);
    assert!(audit.ok() && audit.stdout().contains("audit clean"), "{}", audit.describe("audit"));

    // An earlier suspicion, as a date (its midnight UTC), widens the dispute.
    let day = &format_ms(now_ms() - 2 * 86_400_000)[..10];
    server.cmd(&["device", "revoke", &agent.key, "--compromised-since", day]).expect_ok();
    let all = server.cmd(&["export", "--format", "jsonl", "--include-disputed"]).expect_ok();
    assert!(disputed(&all).iter().all(|(_, d)| *d), "{all}");
    assert_eq!(server.cmd(&["export", "--format", "jsonl"]).expect_ok().trim(), "");
    let audit = server.cmd(&["audit"]);
    assert!(audit.ok(), "{}", audit.describe("audit"));
}
