//! The agent's settings come in layers too: its defaults, then
//! `truce-agent.toml` in its data dir, then the environment, then flags.
//! Real `truce-agent` and `truce-server` processes over mutual TLS.

use std::process::Command;

use truce_testkit::{bin, run, Pki, Ran, TestServer};
use truce_tests::harness::Agent;

/// `truce-agent --data-dir DIR ARGS…` with only `env` (no passphrase flag).
fn bare(agent: &Agent, args: &[&str], env: &[(&str, &str)]) -> Ran {
    run(Command::new(bin("truce-agent"))
        .args(["--data-dir", agent.dir_str()])
        .args(args)
        .env_remove("TRUCE_PASSPHRASE_FILE")
        .env_remove("TRUCE_AGENT_SERVER")
        .envs(env.iter().copied()))
}

#[test]
fn the_file_gives_the_server_and_passphrase_file_the_environment_and_flags_override_it() {
    let pki = Pki::new(&["laptop"]);
    let mut server = TestServer::init();
    let agent = Agent::init();
    server.enrol(&agent.key, "laptop");
    server.start(&pki, &[]);
    // Linked to an address where nothing listens: only the file's server can take the reports.
    let dead = "127.0.0.1:1";
    agent.link(&pki, "laptop", dead.parse().unwrap());
    let first = agent.record("sent to the server the config file names");
    let live = server.addr().to_string();
    let file = agent.dir.path().join("truce-agent.toml");
    std::fs::write(
        &file,
        format!("server = \"{live}\"\npassphrase_file = {:?}\nconnect_timeout = 5\n", agent.passphrase_file()),
    )
    .unwrap();
    // No --passphrase-file, no --server: both from the file.
    bare(&agent, &["sync"], &[]).expect_ok();
    assert_eq!(agent.ids_in_state("delivered"), vec![first]);

    // The environment beats the file; a flag beats the environment.
    agent.record("held back by the environment");
    let env = [("TRUCE_AGENT_SERVER", dead)];
    let err = bare(&agent, &["sync"], &env).expect_one_line_error();
    assert!(err.contains(dead), "{err}");
    assert_eq!(agent.ids_in_state("pending").len(), 1);
    bare(&agent, &["sync", "--server", &live], &env).expect_ok();
    assert!(agent.ids_in_state("pending").is_empty());

    let out = bare(&agent, &["sync", "--print-config", "--connect-timeout", "7"], &env).expect_ok();
    let from_file = format!("# file {}", file.display());
    assert!(out.contains(&format!("server = \"{dead}\"  # environment TRUCE_AGENT_SERVER")), "{out}");
    assert!(out.contains(&format!("passphrase_file = {:?}  {from_file}", agent.passphrase_file())), "{out}");
    assert!(out.contains("connect_timeout = 7.0  # flag --connect-timeout"), "{out}");
    assert!(!out.contains("harness laptop passphrase"), "never the passphrase itself: {out}");

    // An unknown key stops every command, naming the file, the line and the key.
    std::fs::write(&file, format!("server = \"{live}\"\nservr = \"typo\"\n")).unwrap();
    let err = bare(&agent, &["status"], &[]).expect_one_line_error();
    assert!(err.contains(&file.display().to_string()) && err.contains("line 2") && err.contains("servr"), "{err}");
    std::fs::write(&file, "connect_timeout = \"soon\"\n").unwrap();
    let err = bare(&agent, &["sync", "--print-config"], &[]).expect_one_line_error();
    assert!(err.contains("line 1: connect_timeout: "), "{err}");
}
