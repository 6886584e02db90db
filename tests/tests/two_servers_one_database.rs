//! Two `truce-server run` processes on one real PostgreSQL database
//! (DESIGN §12), with the agents of a mission spread across them: one
//! server is SIGKILLed while its laptops sync, they deliver through the
//! other (as they would behind a load balancer), and afterwards every
//! recorded report is stored exactly once, every agent holds it as
//! delivered, and the barrage they all heard is one incident corroborated
//! by the devices of both servers.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use truce_testkit::{bin, Pki, TestPostgres, TestServer};
use truce_tests::harness::Agent;

const NAMES: [&str; 4] = ["laptop-0", "laptop-1", "laptop-2", "laptop-3"];

/// Every stored row, id → how many (must be 1), read through `server`.
fn rows(server: &TestServer) -> BTreeMap<String, usize> {
    let mut rows = BTreeMap::new();
    for id in server.ids("all") {
        *rows.entry(id).or_insert(0) += 1;
    }
    rows
}

#[test]
fn agents_spread_over_two_servers_deliver_each_report_once_when_one_dies() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let pki = Pki::new(&NAMES);
    let mut first = TestServer::init_on(Some(&url));
    let mut second = TestServer::init_beside(&first);
    first.start(&pki, &[]);
    second.start(&pki, &[]);

    // Two laptops talk to each server; enrolment through the first is seen
    // by both (one registry).
    let agents: Vec<Agent> = NAMES.iter().map(|_| Agent::init()).collect();
    for (i, (a, name)) in agents.iter().zip(NAMES).enumerate() {
        first.enrol(&a.key, name);
        a.link(&pki, name, if i < 2 { first.addr() } else { second.addr() });
    }
    let mut recorded = BTreeSet::new();
    for a in &agents {
        for i in 0..12 {
            recorded.insert(a.record(&format!("barrage, report {i}")));
        }
    }

    // The second server's laptops start syncing; it is killed under them.
    let mut syncs: Vec<_> = agents[2..]
        .iter()
        .map(|a| {
            Command::new(bin("truce-agent"))
                .args(["--data-dir", a.dir_str(), "--passphrase-file", a.passphrase_file(), "sync"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sync")
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    second.kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    for s in &mut syncs {
        while s.try_wait().expect("wait for sync").is_none() {
            assert!(Instant::now() < deadline, "a sync hung after its server was killed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Meanwhile the first server's laptops deliver; the second's go through
    // the first, as a load balancer would send them, then the second comes
    // back and a sync through it finds nothing left to send.
    for a in &agents[..2] {
        a.sync(None).expect_ok();
    }
    for a in &agents[2..] {
        a.sync(Some(first.addr())).expect_ok();
    }
    second.start(&pki, &[]);
    for a in &agents[2..] {
        let out = a.sync(None).expect_ok();
        assert!(out.contains("delivered 0"), "nothing is left to send through the second: {out}");
    }

    for server in [&first, &second] {
        let rows = rows(server);
        for id in &recorded {
            assert_eq!(rows.get(id), Some(&1), "report {id} is stored {:?} times", rows.get(id));
        }
        assert_eq!(rows.len(), recorded.len(), "the database holds reports nobody recorded");
    }
    for a in &agents {
        assert_eq!(a.ids_in_state("delivered").len(), 12, "every report of {} shows delivered", a.key);
    }
    let incidents = second.cmd(&["--json", "incidents"]).expect_ok();
    let incidents: Vec<serde_json::Value> =
        incidents.lines().map(|l| serde_json::from_str(l).expect("an incident as JSON")).collect();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0]["devices"], 4, "one incident, seen by the laptops of both servers: {incidents:?}");
}
