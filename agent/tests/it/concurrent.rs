//! Two `record`s at the same moment never fork the chain: processes (and
//! in-process handles) writing one queue serialize on its write lock.

use std::thread;

use truce_agent::{Agent, RecordInput};
use truce_shared::Category;

use crate::support::{verified_chain, TestDir};

#[test]
fn two_record_processes_at_once_never_fork() {
    let t = TestDir::initialised();
    let ids: Vec<_> = thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let t = &t;
                s.spawn(move || {
                    (0..30)
                        .map(|i| {
                            let d = format!("worker {w} #{i}");
                            t.record("drone", &d)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let chain = verified_chain(&t.dir);
    assert_eq!(chain.len(), 60, "every record is in the chain once");
    for id in ids {
        assert!(chain.contains(&id));
    }
}

#[test]
fn concurrent_in_process_handles_never_fork() {
    let t = TestDir::initialised();
    thread::scope(|s| {
        for w in 0..4 {
            let dir = t.dir.clone();
            s.spawn(move || {
                let mut agent = Agent::open(&dir, Some(&crate::support::pass())).unwrap();
                for i in 0..50 {
                    let mut input = RecordInput::new(Category::Shelling, 10.0, 20.0);
                    input.description = format!("handle {w} #{i}");
                    agent.record(&input).unwrap();
                }
            });
        }
    });
    assert_eq!(verified_chain(&t.dir).len(), 200);
}
