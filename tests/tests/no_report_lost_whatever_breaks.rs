//! The core promise under faults: a TCP relay cuts the link at random byte
//! offsets and SIGKILL hits the agent or the server at random moments during
//! sync; after each trial everything restarts and syncs to completion, and
//! then every recorded report is on the server exactly once and every agent
//! shows it delivered.
//!
//! `TRUCE_FAULT_TRIALS` sets the number of trials (30 by default, as in CI;
//! try 200+ locally) and `TRUCE_FAULT_SEED` replays a failing run: the seed is
//! printed at the start and in every failure message.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use truce_testkit::{bin, signal, TestPostgres, TestServer};
use truce_tests::harness::mission_on;
use truce_tests::relay::Relay;

/// Everything the server holds, id → how many rows (must always be 1).
fn server_rows(server: &TestServer) -> BTreeMap<String, usize> {
    let out = server.cmd(&["export", "--format", "jsonl", "--status", "all", "--history"]).expect_ok();
    let mut rows = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("export line is JSON");
        *rows.entry(v["id"].as_str().expect("id").to_string()).or_insert(0) += 1;
    }
    rows
}

/// What one trial does to the sync.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The relay cuts every connection after this many bytes.
    CutLink(u64),
    /// SIGKILL the syncing agent after this many milliseconds.
    KillAgent(u64),
    /// SIGKILL the server after this many milliseconds, then restart it.
    KillServer(u64),
}

#[test]
fn every_report_arrives_exactly_once_whatever_breaks() {
    whatever_breaks(None);
}

/// The same trials with the server's store in a real PostgreSQL: the
/// server is killed between its transaction and its answer there too.
#[test]
fn every_report_arrives_exactly_once_whatever_breaks_on_postgresql() {
    let pg = TestPostgres::start();
    whatever_breaks(Some(&pg.fresh_database()));
}

fn whatever_breaks(database: Option<&str>) {
    let trials: u64 = std::env::var("TRUCE_FAULT_TRIALS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let seed: u64 =
        std::env::var("TRUCE_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::thread_rng().gen());
    println!("fault suite: {trials} trials, seed {seed} (replay with TRUCE_FAULT_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let (pki, mut server, agents) = mission_on(&["laptop-a", "laptop-b"], database);
    let relay = Relay::start(server.addr());
    let mut recorded: BTreeSet<String> = BTreeSet::new();
    let mut tally: BTreeMap<&str, u64> = BTreeMap::new();

    for trial in 1..=trials {
        let ctx = format!("trial {trial} of seed {seed}");
        for a in &agents {
            for _ in 0..rng.gen_range(1..=6) {
                recorded.insert(a.record(&format!("trial {trial}")));
            }
        }
        let fault = match rng.gen_range(0..3) {
            0 => Fault::CutLink(rng.gen_range(0..12_000)),
            1 => Fault::KillAgent(rng.gen_range(0..400)),
            _ => Fault::KillServer(rng.gen_range(0..400)),
        };
        *tally
            .entry(match fault {
                Fault::CutLink(_) => "cut link",
                Fault::KillAgent(_) => "kill agent",
                Fault::KillServer(_) => "kill server",
            })
            .or_insert(0) += 1;

        if let Fault::CutLink(n) = fault {
            relay.cut_after(n);
        }
        let mut syncs: Vec<_> = agents
            .iter()
            .map(|a| {
                Command::new(bin("truce-agent"))
                    .args(["--data-dir", a.dir_str(), "sync", "--server", &relay.addr.to_string()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn sync")
            })
            .collect();
        match fault {
            Fault::KillAgent(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                let victim = rng.gen_range(0..syncs.len());
                signal(&syncs[victim], "KILL");
            }
            Fault::KillServer(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                server.kill();
            }
            Fault::CutLink(_) => {}
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        for s in &mut syncs {
            while s.try_wait().expect("wait sync").is_none() {
                assert!(Instant::now() < deadline, "{ctx}: a sync hung after {fault:?}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }

        // Recovery: link back, server up, every agent syncs to completion.
        relay.heal();
        if !server.is_running() {
            server.start(&pki, &[]);
        }
        for a in &agents {
            let mut attempts = 0;
            loop {
                let out = a.sync(None);
                if out.ok() {
                    break;
                }
                attempts += 1;
                assert!(attempts < 5, "{ctx}: recovery sync keeps failing after {fault:?}\n{}", out.describe("sync"));
                std::thread::sleep(Duration::from_millis(200));
            }
        }

        let rows = server_rows(&server);
        for id in &recorded {
            assert_eq!(
                rows.get(id),
                Some(&1),
                "{ctx}: report {id} is on the server {:?} times after {fault:?}",
                rows.get(id)
            );
        }
        assert_eq!(rows.len(), recorded.len(), "{ctx}: the server holds reports nobody recorded");
        for a in &agents {
            assert!(a.ids_in_state("pending").is_empty(), "{ctx}: an agent still has pending reports after {fault:?}");
        }
        let delivered: BTreeSet<String> = agents.iter().flat_map(|a| a.ids_in_state("delivered")).collect();
        assert_eq!(delivered, recorded, "{ctx}: not every report shows delivered after {fault:?}");

        // The log and the store agree after the fault, and the checkpoint
        // each laptop kept is one the log contains.
        let kept = tempfile::tempdir().expect("a dir for checkpoints");
        let mut files = Vec::new();
        for (i, a) in agents.iter().enumerate() {
            let note = a.cmd(&["checkpoint"]);
            assert!(note.ok(), "{ctx}: agent {i} kept no checkpoint after {fault:?}: {}", note.describe("checkpoint"));
            let note = note.stdout();
            let file = kept.path().join(format!("agent-{i}.checkpoint"));
            std::fs::write(&file, note).unwrap();
            files.push(file.to_string_lossy().into_owned());
        }
        let mut args = vec!["audit"];
        for f in &files {
            args.extend(["--checkpoint", f.as_str()]);
        }
        let audit = server.cmd(&args);
        assert!(audit.ok(), "{ctx}: audit after {fault:?}:\n{}", audit.describe("audit"));
    }
    println!("fault suite: {trials} trials passed, {} reports, faults {tally:?}, seed {seed}", recorded.len());
}
