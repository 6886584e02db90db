//! A temporary agent data directory and the real binary to run in it,
//! with `truce-testkit`'s runner: a failure shows the command line, cwd,
//! status, stdout and stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use truce_agent::vault::Passphrase;
use truce_agent::Agent;
use truce_shared::Bytes32;
pub use truce_testkit::{run, Ran};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_truce-agent");

/// The passphrase every test data dir is sealed with (given by file, as a
/// script would).
pub const PASSPHRASE: &str = "test laptop passphrase";

/// [`PASSPHRASE`] for the library.
pub fn pass() -> Passphrase {
    Passphrase::new(PASSPHRASE.to_string()).unwrap()
}

/// A data dir inside a temp dir that is removed on drop.
pub struct TestDir {
    /// Holds the temp dir alive.
    pub tmp: tempfile::TempDir,
    /// The agent data dir (not created until `init`).
    pub dir: PathBuf,
}

impl TestDir {
    /// A data dir path (nothing made yet) and, beside it, a file holding
    /// [`PASSPHRASE`].
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("agent");
        std::fs::write(tmp.path().join("passphrase"), format!("{PASSPHRASE}\n")).unwrap();
        TestDir { tmp, dir }
    }

    /// A new dir where `init` has run (through the binary), sealed under
    /// [`PASSPHRASE`].
    pub fn initialised() -> Self {
        let t = TestDir::new();
        t.ok(&["init"]);
        t
    }

    /// The passphrase file.
    pub fn passphrase_file(&self) -> PathBuf {
        self.tmp.path().join("passphrase")
    }

    /// The command with `--data-dir` and `--passphrase-file` set and no
    /// inherited TRUCE_AGENT_DIR or TRUCE_PASSPHRASE_FILE.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = self.bare_command(&[]);
        c.arg("--passphrase-file").arg(self.passphrase_file()).args(args);
        c
    }

    /// The command with `--data-dir` set and no passphrase at all.
    pub fn bare_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--data-dir")
            .arg(&self.dir)
            .args(args)
            .env_remove("TRUCE_AGENT_DIR")
            .env_remove("TRUCE_PASSPHRASE_FILE")
            .stdin(Stdio::null());
        c
    }

    /// Runs to the end (see [`TestDir::command`]).
    pub fn run(&self, args: &[&str]) -> Ran {
        run(&mut self.command(args))
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.run(args).expect_ok()
    }

    /// Runs and requires failure; returns the one stderr line.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.ok(), "{}", o.describe("expected failure"));
        assert!(o.stdout.is_empty(), "{}", o.describe("a failure prints nothing on stdout"));
        let err = o.stderr();
        assert_eq!(err.lines().count(), 1, "{}", o.describe("expected one line of error"));
        assert!(err.starts_with("error: "), "{err:?}");
        err.trim_end().to_string()
    }

    /// Runs and requires failure of a command that may log progress lines
    /// on stderr first (sync): the error is the last line, and one line.
    pub fn fails_after_log(&self, args: &[&str]) -> String {
        let err = self.run(args).expect_fail();
        let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "one error line, got {err:?}");
        assert_eq!(err.lines().last(), Some(errors[0]), "the error is the last line: {err:?}");
        errors[0].to_string()
    }

    /// Records a report of `category` at lat 1, lon 2 through the binary;
    /// returns its id.
    pub fn record(&self, category: &str, description: &str) -> Bytes32 {
        parse_id(&self.ok(&[
            "record",
            "--category",
            category,
            "--lat",
            "1",
            "--lon",
            "2",
            "--description",
            description,
        ]))
    }

    /// The agent in process, unlocked with [`PASSPHRASE`].
    pub fn open(&self) -> Agent {
        Agent::open(&self.dir, Some(&pass())).unwrap()
    }

    /// A file beside the data dir, in the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// Parses a 64-hex id.
pub fn parse_id(s: &str) -> Bytes32 {
    let s = s.trim();
    assert_eq!(s.len(), 64, "not a 64-hex id: {s:?}");
    let mut id = [0u8; 32];
    hex::decode_to_slice(s, &mut id).unwrap();
    id
}

/// Verifies every report in the queue with `truce_shared::verify` and
/// checks the chain links (one device, seq 1, 2, 3…, prev = previous id);
/// returns the ids in chain order. Done here, independently of the
/// agent's own `check_chain`.
pub fn verified_chain(dir: &Path) -> Vec<Bytes32> {
    let agent = Agent::open(dir, Some(&pass())).unwrap();
    let device = agent.device();
    let mut ids = Vec::new();
    let mut prev = [0u8; 32];
    agent
        .queue()
        .for_each_signed(false, |seq, _, signed| {
            let signed = signed.unwrap_or_else(|| panic!("seq {seq} was pruned"));
            let v = truce_shared::verify(&signed).unwrap_or_else(|e| panic!("seq {seq} does not verify: {e}"));
            assert_eq!(v.envelope.device, device, "seq {seq}: device");
            assert_eq!(v.envelope.seq, ids.len() as u64 + 1, "seq {seq}: gap or repeat");
            assert_eq!(v.envelope.seq, seq, "row seq and envelope seq differ");
            assert_eq!(v.envelope.prev, prev, "seq {seq}: prev does not link to the previous report");
            prev = v.id;
            ids.push(v.id);
            Ok(())
        })
        .unwrap();
    ids
}

/// A seed from `TRUCE_TEST_SEED` or the clock, printed so a failure can be
/// replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("TRUCE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    });
    eprintln!("{test}: seed {seed} (replay with TRUCE_TEST_SEED={seed})");
    seed
}

/// Records a protocol-2 Ack for `results` in the queue, as sync does
/// after verifying it: each result at entry `i` of a tree of as many
/// leaves, signed by `key`. Returns what the queue did.
pub fn record_ack(
    t: &TestDir,
    key: &truce_shared::log::LogKey,
    results: &[(Bytes32, truce_shared::wire::Status)],
    received_at: i64,
) -> truce_agent::AckOutcome {
    use truce_shared::log::{record_hash, MemoryTree, Outcome, ReceiptBody};
    let outcomes: Vec<Outcome> = results
        .iter()
        .enumerate()
        .map(|(i, (id, status))| Outcome { id: *id, status: status.clone(), entry: i as u64 })
        .collect();
    let mut tree = MemoryTree::new();
    for (id, _) in results {
        tree.push(record_hash(id)).unwrap();
    }
    let checkpoint = key.checkpoint(tree.size(), &tree.root().unwrap());
    let body = ReceiptBody {
        batch: 1,
        received_at,
        results: outcomes.as_slice().into(),
        checkpoint: checkpoint.as_str().into(),
    };
    let signature = key.sign_receipt(&body);
    let ack = truce_agent::LogAck {
        log_key: key.public(),
        batch: 1,
        received_at,
        results: &outcomes,
        checkpoint: &checkpoint,
        signature,
    };
    t.open().record_ack(&ack).unwrap()
}

/// A log key for tests, from a fixed seed.
pub fn log_key(seed: u8) -> truce_shared::log::LogKey {
    truce_shared::log::LogKey::new(&[seed; 32], truce_shared::log::DEFAULT_MISSION)
}
