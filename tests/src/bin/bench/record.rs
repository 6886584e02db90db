//! Recording on the laptop: in process and through the CLI.

use super::*;

/// Record latency in process (validate, sign, chain, durable commit)
/// against a bare WAL `synchronous=FULL` one-row commit on the same disk.
/// Returns the medians over runs of (record p50, p99, commit p50, p99).
pub(super) fn record_latency(plan: &Plan) -> Result<(f64, f64, f64, f64)> {
    let (mut r50, mut r99, mut c50, mut c99) = (vec![], vec![], vec![], vec![]);
    for _ in 0..plan.runs {
        let tmp = tempfile::tempdir()?;
        let bare = rusqlite::Connection::open(tmp.path().join("bare.sqlite"))?;
        let _: String = bare.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        bare.execute_batch("PRAGMA synchronous = FULL; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);")?;
        let payload = vec![7u8; 300];
        let mut commit = Vec::with_capacity(plan.records);
        for _ in 0..plan.records {
            let t = Instant::now();
            bare.execute("INSERT INTO t(v) VALUES (?1)", [&payload])?;
            commit.push(t.elapsed().as_secs_f64() * 1e3);
        }
        // Sealed, as a monitor's is: the data key seals every row.
        let pass = truce_agent::vault::Passphrase::new(truce_tests::harness::PASSPHRASE.into())?;
        let mut agent =
            truce_agent::Agent::init(tmp.path().join("agent"), &truce_agent::vault::Protection::Passphrase(pass))?;
        let mut input = truce_agent::RecordInput::new(Category::Shelling, 48.0159, 37.8029);
        input.description = typical_envelope([0; 32], 1, [0; 32]).observation.description;
        let mut record = Vec::with_capacity(plan.records);
        for _ in 0..plan.records {
            let t = Instant::now();
            agent.record(&input)?;
            record.push(t.elapsed().as_secs_f64() * 1e3);
        }
        r50.push(percentile(&mut record, 0.5));
        r99.push(percentile(&mut record, 0.99));
        c50.push(percentile(&mut commit, 0.5));
        c99.push(percentile(&mut commit, 0.99));
    }
    Ok((median(r50), median(r99), median(c50), median(c99)))
}

/// `truce-agent record` as a whole process, flags given, p50 wall time:
/// without a passphrase (`init --no-passphrase`: what every record cost
/// before sealing) and sealed, the passphrase from a file (Argon2id unlock
/// included, DESIGN §13).
pub(super) fn record_cli(plan: &Plan) -> Result<(f64, f64)> {
    let plain = tempfile::tempdir()?;
    let plain_dir = plain.path().to_str().context("utf-8 temp path")?;
    let init = Command::new(bin("truce-agent"))
        .args(["--data-dir", plain_dir, "--no-passphrase", "init"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    ensure!(init.success(), "truce-agent init --no-passphrase failed");
    let sealed = Agent::init();
    let one = |dir: &str, pass: Option<&str>, i: usize| -> Result<f64> {
        let t = Instant::now();
        let mut cmd = Command::new(bin("truce-agent"));
        cmd.args(["--data-dir", dir]);
        if let Some(p) = pass {
            cmd.args(["--passphrase-file", p]);
        }
        let status = cmd
            .args(["record", "--category", "shelling", "--lat", "48.0159"])
            .args(["--lon", "37.8029", "--at", "-5m", "--basis", "heard", "--bearing", "315"])
            .args(["--description", &format!("bench record {i}: outgoing fire heard to the north-west")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        ensure!(status.success(), "truce-agent record failed");
        Ok(t.elapsed().as_secs_f64() * 1e3)
    };
    let (mut plain_t, mut sealed_t) = (Vec::new(), Vec::new());
    for _ in 0..plan.runs {
        for i in 0..plan.cli_records {
            plain_t.push(one(plain_dir, None, i)?);
        }
        // Each sealed record runs Argon2id (64 MiB, 3 passes): fewer of them.
        for i in 0..plan.cli_records.div_ceil(4) {
            sealed_t.push(one(sealed.dir_str(), Some(sealed.passphrase_file()), i)?);
        }
    }
    Ok((percentile(&mut plain_t, 0.5), percentile(&mut sealed_t, 0.5)))
}
