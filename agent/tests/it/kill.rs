//! A record loop killed with SIGKILL at a random moment: every id that was
//! printed is in the queue, and the chain is intact (verified, linked, no
//! gap). 20 repetitions on the same data dir, so each one also opens a
//! queue that a killed process left behind. The data dir is sealed, so each
//! record first unlocks it (Argon2id, a few hundred ms): the kill moment is
//! drawn over unlock and record together.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::support::{parse_id, seed, verified_chain, TestDir};

#[test]
fn sigkill_during_a_record_loop_loses_no_printed_id() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("sigkill_during_a_record_loop_loses_no_printed_id"));
    let t = TestDir::initialised();
    let mut printed = Vec::new();
    let mut killed_mid_run = 0;
    for rep in 0..20 {
        let kill_at = Instant::now() + Duration::from_micros(rng.gen_range(0..750_000));
        loop {
            let mut child = t
                .command(&[
                    "record",
                    "--category",
                    "explosion",
                    "--lat",
                    "48.5",
                    "--lon",
                    "37.9",
                    "--description",
                    "loop",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let status = loop {
                if let Some(s) = child.try_wait().unwrap() {
                    break Some(s);
                }
                if Instant::now() >= kill_at {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    break None;
                }
                std::thread::sleep(Duration::from_micros(200));
            };
            let mut out = String::new();
            child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            match status {
                Some(s) => {
                    let mut err = String::new();
                    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                    assert!(s.success(), "rep {rep}: record failed: {err}");
                    printed.push(parse_id(&out));
                }
                None => {
                    // Killed: if it got as far as printing, the id must be kept.
                    if !out.trim().is_empty() {
                        printed.push(parse_id(&out));
                    }
                    killed_mid_run += 1;
                    break;
                }
            }
        }
        let ids = verified_chain(&t.dir);
        for id in &printed {
            assert!(ids.contains(id), "rep {rep}: printed id {} is not in the queue", hex::encode(id));
        }
        // And the binary still works on what the killed process left.
        let o = t.run(&["status", "--json"]);
        assert!(o.status.success(), "{}", o);
    }
    assert_eq!(killed_mid_run, 20);
    eprintln!("{} ids printed across 20 kills; chain intact", printed.len());
}
