//! A sealed laptop against the real server (DESIGN §11): the agent keeps
//! its keys sealed and prunes what the server holds, and the server sees
//! one unbroken chain across the pruning.

use truce_tests::harness::one_laptop;

#[test]
fn after_pruning_the_chain_goes_on_and_the_server_accepts_it() {
    let (pki, mut server, agent) = one_laptop("laptop-a");
    server.start(&pki, &[]);

    let first: Vec<String> = (0..3).map(|i| agent.record(&format!("before pruning {i}"))).collect();
    // Prune at once after delivery: the sync itself deletes the bodies.
    agent.cmd(&["prune", "--keep-delivered", "0"]).expect_ok();
    agent.sync(None).expect_ok();
    let status: serde_json::Value = serde_json::from_str(&agent.cmd(&["--json", "status"]).expect_ok()).expect("JSON");
    assert_eq!(status["pruned"], 3, "{status}");
    for id in &first {
        let shown: serde_json::Value =
            serde_json::from_str(&agent.cmd(&["--json", "show", id]).expect_ok()).expect("JSON");
        assert_eq!(shown["pruned"], true);
        assert_eq!(shown["receipt"]["valid"], true, "delivery stays provable: {shown}");
    }

    // The next record chains on the pruned head and the server takes it as
    // verified: no gap, no fork.
    let next = agent.record("after pruning");
    agent.sync(None).expect_ok();
    let held = server.ids("verified");
    assert_eq!(held.len(), 4, "{held:?}");
    assert!(held.contains(&next));
    let stats: serde_json::Value = serde_json::from_str(&server.cmd(&["--json", "stats"]).expect_ok()).expect("JSON");
    assert_eq!(stats["forks"], 0, "{stats}");
    let chain = &stats["chains"][0];
    assert_eq!((chain["seqs"].as_u64(), chain["head_seq"].as_u64()), (Some(4), Some(4)), "{stats}");
    assert_eq!((chain["broken_links"].as_u64(), chain["missing"].as_u64()), (Some(0), Some(0)), "{stats}");
}
