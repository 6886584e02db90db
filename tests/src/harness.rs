//! Drives the real `truce-agent` binary for the end-to-end tests, the demo
//! and the benchmark: [`Agent`], a sealed agent data dir, and
//! [`one_laptop`], a mission of one. The PKI, the server process and the
//! binary runner are `truce-testkit`'s ([`Pki`], [`TestServer`], [`Ran`]);
//! every process is killed and every directory removed in `Drop`.

use std::net::SocketAddr;
use std::process::Command;

use tempfile::TempDir;
use truce_testkit::{bin, json_ids, run, Pki, Ran, TestServer};

/// A mission of one laptop: a PKI with a client certificate `name`, a
/// server that has enrolled the agent's key, and the agent, linked to it.
/// The server has run once, to learn the address it picks on port 0, and
/// is stopped: the mission starts offline, and `start` brings it back on
/// the address the agent knows.
pub fn one_laptop(name: &str) -> (Pki, TestServer, Agent) {
    let pki = Pki::new(&[name]);
    let mut server = TestServer::init();
    let agent = Agent::init();
    server.enrol(&agent.key, name);
    server.start(&pki, &[]);
    agent.link(&pki, name, server.addr());
    assert!(server.terminate().success(), "the server stops cleanly:\n{}", server.log());
    (pki, server, agent)
}

/// A mission of laptops: a PKI with a client certificate per name, a
/// running server that has enrolled each agent's key, and the agents,
/// linked to it (in the order of `names`).
pub fn mission(names: &[&str]) -> (Pki, TestServer, Vec<Agent>) {
    mission_on(names, None)
}

/// [`mission`] with the server's store in the PostgreSQL database at
/// `database`.
pub fn mission_on(names: &[&str], database: Option<&str>) -> (Pki, TestServer, Vec<Agent>) {
    let pki = Pki::new(names);
    let mut server = TestServer::init_on(database);
    server.start(&pki, &[]);
    let agents: Vec<Agent> = names.iter().map(|_| Agent::init()).collect();
    for (a, name) in agents.iter().zip(names) {
        server.enrol(&a.key, name);
        a.link(&pki, name, server.addr());
    }
    (pki, server, agents)
}

/// The passphrase of every harness agent: their keys are sealed, as a
/// monitor's are (DESIGN §11), and given by file as a script would.
pub const PASSPHRASE: &str = "harness laptop passphrase";

/// An agent data dir, sealed under [`PASSPHRASE`].
pub struct Agent {
    /// The data dir (`--data-dir`).
    pub dir: TempDir,
    /// Holds the passphrase file (outside the data dir, as a monitor's
    /// should be).
    _pass: TempDir,
    /// The passphrase file's path.
    pass_file: String,
    /// The device's public key, 64 hex.
    pub key: String,
}

impl Agent {
    /// `truce-agent init` in a new data dir, sealed with a passphrase file.
    pub fn init() -> Agent {
        Agent::init_with(&["init"])
    }

    /// `truce-agent --no-passphrase init`: keys not protected (trials; and
    /// measurements of the queue's own memory, without Argon2id's).
    pub fn init_unprotected() -> Agent {
        Agent::init_with(&["--no-passphrase", "init"])
    }

    fn init_with(init: &[&str]) -> Agent {
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = tempfile::tempdir().expect("tempdir");
        let pass_file = pass.path().join("passphrase");
        std::fs::write(&pass_file, format!("{PASSPHRASE}\n")).expect("passphrase file");
        let pass_file = pass_file.to_str().expect("utf-8 temp path").to_string();
        let mut a = Agent { dir, _pass: pass, pass_file, key: String::new() };
        a.cmd(init).expect_ok();
        let key = a.cmd(&["--json", "key"]).expect_ok();
        let v: serde_json::Value = serde_json::from_str(&key).expect("key --json is JSON");
        a.key = v["device"].as_str().expect("device in key --json").to_string();
        a
    }

    /// Runs a `truce-agent` subcommand against this data dir, with the
    /// passphrase file.
    pub fn cmd(&self, args: &[&str]) -> Ran {
        run(Command::new(bin("truce-agent"))
            .args(["--data-dir", self.dir_str(), "--passphrase-file", self.passphrase_file()])
            .args(args))
    }

    /// The passphrase file's path.
    pub fn passphrase_file(&self) -> &str {
        &self.pass_file
    }

    /// The unsealed device seed and data key (for tests that build a queue
    /// directly).
    pub fn secrets(&self) -> truce_agent::vault::Secrets {
        let pass = truce_agent::vault::Passphrase::new(PASSPHRASE.to_string()).expect("passphrase");
        let ring = truce_agent::vault::Keyring::load(&self.dir.path().join("keyring"))
            .expect("keyring readable")
            .expect("keyring present");
        ring.unseal(Some(&pass)).expect("keyring unseals")
    }

    /// Opens the agent in process with its keys (unlocks once: Argon2id).
    pub fn open(&self) -> truce_agent::Agent {
        let pass = truce_agent::vault::Passphrase::new(PASSPHRASE.to_string()).expect("passphrase");
        truce_agent::Agent::open(self.dir.path(), Some(&pass)).expect("open agent data dir")
    }

    /// The data dir as a string.
    pub fn dir_str(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    /// `truce-agent link` with the PKI's client certificate `name`.
    pub fn link(&self, pki: &Pki, name: &str, server: SocketAddr) {
        let (ca, cert, key) =
            (pki.file_str("ca.pem"), pki.file_str(&format!("{name}.pem")), pki.file_str(&format!("{name}.key")));
        self.cmd(&["link", "--server", &server.to_string(), "--ca", &ca, "--cert", &cert, "--key", &key]).expect_ok();
    }

    /// Records a simple shelling report; returns its id.
    pub fn record(&self, description: &str) -> String {
        self.record_with(description, &[])
    }

    /// [`Agent::record`] with more `record` arguments (`--attach FILE`…).
    pub fn record_with(&self, description: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "record",
            "--category",
            "shelling",
            "--lat",
            "48.0159",
            "--lon",
            "37.8029",
            "--at",
            "-5m",
            "--basis",
            "heard",
            "--description",
            description,
        ];
        args.extend_from_slice(extra);
        last_hex_id(&self.cmd(&args).expect_ok())
    }

    /// `sync` once, optionally through another address (a relay).
    pub fn sync(&self, via: Option<SocketAddr>) -> Ran {
        match via {
            Some(addr) => self.cmd(&["sync", "--server", &addr.to_string()]),
            None => self.cmd(&["sync"]),
        }
    }

    /// Report ids in a given state, from `list --json`.
    pub fn ids_in_state(&self, state: &str) -> Vec<String> {
        json_ids(&self.cmd(&["--json", "list", "--state", state]).expect_ok())
    }
}

/// The last 64-hex token printed: the id `record` prints.
pub fn last_hex_id(out: &str) -> String {
    out.split(|c: char| !c.is_ascii_hexdigit())
        .rfind(|t| t.len() == 64)
        .unwrap_or_else(|| panic!("no 64-hex id in output: {out}"))
        .to_string()
}

/// Records a report in-process through the agent library: the same code and
/// the same queue file as `truce-agent record`, without a process start, for
/// tests that need thousands of reports (open the agent once with
/// [`Agent::open`]).
pub fn record_in_process(agent: &mut truce_agent::Agent, description: &str) -> String {
    let input = truce_agent::RecordInput {
        position: truce_shared::Position { lat: 48.1, lon: 37.9, accuracy_m: Some(10) },
        bearing_deg: Some(90),
        distance_m: Some((1000, 2000)),
        description: description.to_string(),
        ..truce_agent::RecordInput::new(truce_shared::Category::Drone, 48.1, 37.9)
    };
    hex::encode(agent.record(&input).expect("record in process").id)
}
