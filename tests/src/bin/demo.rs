//! The one-command demo: a throwaway mission on loopback, end to end.
//!
//! `cargo run --release -p truce-tests --bin demo` makes a PKI, enrols
//! three laptops, records reports on two of them while the server is down,
//! starts the server, syncs, resends one report (counted once), carries the
//! third laptop's reports over as a USB bundle, and prints the verified
//! export as a table, writing GeoJSON beside it. One report attaches a
//! photo-sized file: the demo shows it held by the server after the sync
//! and written out by `export --evidence`, byte for byte. It exits 0 and leaves
//! nothing running (every process is killed in `Drop`, even on failure).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use sha2::Digest;
use truce_testkit::{Pki, Ran, TestServer};
use truce_tests::harness::Agent;

fn step(text: &str) {
    println!("\n== {text}");
}

fn check(cmd: Ran, what: &str) -> Result<String> {
    if !cmd.ok() {
        bail!("{}", cmd.describe(what));
    }
    Ok(cmd.stdout())
}

fn main() -> std::process::ExitCode {
    match demo() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn demo() -> Result<()> {
    let out_dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "truce-demo-output".into()));
    std::fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;

    step("a throwaway mission PKI (truce-certs init; client laptop-a, laptop-b, laptop-c)");
    let pki = Pki::new(&["laptop-a", "laptop-b", "laptop-c"]);
    println!("CA, server and three laptop certificates in {}", pki.dir_str());

    step("the collection server's data dir (truce-server init) and three laptops (truce-agent init)");
    let mut server = TestServer::init();
    let laptops = [Agent::init(), Agent::init(), Agent::init()];
    for (agent, name) in laptops.iter().zip(["laptop-a", "laptop-b", "laptop-c"]) {
        check(server.cmd(&["device", "add", &agent.key, "--name", name]), "enrol")?;
        println!("enrolled {name}: {}", &agent.key);
    }
    // The server binds port 0: a first run tells the laptops its address.
    server.start(&pki, &[]);
    laptops[0].link(&pki, "laptop-a", server.addr());
    laptops[1].link(&pki, "laptop-b", server.addr());
    server.terminate();

    step("monitors record while the server is down");
    let a = &laptops[0];
    let b = &laptops[1];
    // A photo-sized file of bytes no compressor could shortcut.
    let photo_path = out_dir.join("impact-photo.jpg");
    let photo = photo_bytes(1_500_000);
    std::fs::write(&photo_path, &photo).with_context(|| format!("write {}", photo_path.display()))?;
    let photo_sha = hex::encode(sha2::Sha256::digest(&photo));
    let a1 = check(
        a.cmd(&[
            "record",
            "--attach",
            &photo_path.to_string_lossy(),
            "--category",
            "shelling",
            "--effect",
            "outgoing",
            "--weapon",
            "152mm artillery",
            "--count",
            "2",
            "--basis",
            "heard",
            "--lat",
            "48.0159",
            "--lon",
            "37.8029",
            "--bearing",
            "NNW",
            "--distance",
            "5-7km",
            "--at",
            "-20m",
            "--description",
            "heard two explosions assessed as outgoing 152mm artillery, NNW",
        ]),
        "record",
    )?;
    println!("laptop-a recorded {}", a1.trim());
    check(
        a.cmd(&[
            "record",
            "--category",
            "small-arms-fire",
            "--count",
            "30",
            "--about",
            "--basis",
            "heard",
            "--lat",
            "48.0159",
            "--lon",
            "37.8029",
            "--at",
            "-12m",
            "--description",
            "about 30 bursts, \"heavy\", to the east",
        ]),
        "record",
    )?;
    check(
        b.cmd(&[
            "record",
            "--category",
            "shelling",
            "--effect",
            "impact",
            "--basis",
            "seen",
            "--lat",
            "48.0600",
            "--lon",
            "37.7500",
            "--bearing",
            "70",
            "--distance",
            "1-2km",
            "--at",
            "-18m",
            "--description",
            "two impacts east-north-east of the checkpoint, smoke visible",
        ]),
        "record",
    )?;
    check(
        b.cmd(&[
            "record",
            "--category",
            "nothing-observed",
            "--lat",
            "48.0301",
            "--lon",
            "37.7702",
            "--at",
            "-6h",
            "--until",
            "-1h",
            "--description",
            "positioned at the checkpoint, observed nothing",
        ]),
        "record",
    )?;
    let failed = a.sync(None);
    if failed.ok() {
        bail!("sync succeeded with the server down");
    }
    println!("laptop-a sync while the server is down: {}", failed.stderr().trim());

    step("the server starts (truce-server run, mTLS on loopback) and both laptops sync");
    server.start(&pki, &[]);
    println!("server listening on {}", server.addr());
    for (agent, name) in [(a, "laptop-a"), (b, "laptop-b")] {
        let out = agent.sync(None);
        println!("{name}: {}", check(out, "sync")?.trim());
    }
    let a1_id = truce_tests::harness::last_hex_id(&a1);
    let shown = check(a.cmd(&["show", &a1_id]), "show")?;
    for line in shown.lines().filter(|l| l.contains("evidence")) {
        println!("laptop-a, report {}…: {}", &a1_id[..16], line.trim());
    }
    if !shown.contains("held by the server") {
        bail!("the photo is not held by the server after sync:\n{shown}");
    }

    step("laptop-a resends everything on a USB stick: the server counts each report once");
    let resend = out_dir.join("laptop-a-resend.truce");
    check(a.cmd(&["bundle", "export", &resend.to_string_lossy(), "--all"]), "bundle export")?;
    println!("{}", check(server.cmd(&["import", &resend.to_string_lossy()]), "import")?.trim());

    step("laptop-c never had a link: its reports travel as a bundle");
    let c = &laptops[2];
    check(
        c.cmd(&[
            "record",
            "--category",
            "shelling",
            "--effect",
            "impact",
            "--basis",
            "seen",
            "--lat",
            "48.0400",
            "--lon",
            "37.7800",
            "--bearing",
            "330",
            "--distance",
            "3-4km",
            "--at",
            "-19m",
            "--description",
            "impacts to the north-north-west, near the school",
        ]),
        "record",
    )?;
    let carried = out_dir.join("laptop-c.truce");
    check(c.cmd(&["bundle", "export", &carried.to_string_lossy()]), "bundle export")?;
    println!("{}", check(server.cmd(&["import", &carried.to_string_lossy()]), "import")?.trim());

    step("the verified export");
    let jsonl = check(server.cmd(&["export", "--format", "jsonl"]), "export")?;
    print_table(&jsonl)?;
    let geojson = out_dir.join("reports.geojson");
    check(server.cmd(&["export", "--format", "geojson", "--out", &geojson.to_string_lossy()]), "export geojson")?;
    println!("\nGeoJSON written to {}", geojson.display());
    println!("{}", check(server.cmd(&["stats"]), "stats")?.trim());

    step("evidence for investigators: the photo attached to laptop-a's first report (export --evidence)");
    let evidence_dir = out_dir.join("evidence");
    check(server.cmd(&["export", "--evidence", &evidence_dir.to_string_lossy()]), "export --evidence")?;
    let written = std::fs::read(evidence_dir.join(&photo_sha)).context("the photo is not in the evidence export")?;
    if written != photo {
        bail!("the exported photo differs from the one attached");
    }
    println!(
        "{} bytes written to {}, byte for byte the file laptop-a attached (SHA-256 {photo_sha})",
        written.len(),
        evidence_dir.join(&photo_sha).display()
    );

    step("the tamper-evident record: the log's latest checkpoint, and an audit with the one laptop-a kept");
    print!("{}", check(server.cmd(&["log", "checkpoint"]), "log checkpoint")?);
    let kept = check(a.cmd(&["--json", "status"]), "status")?;
    let kept: serde_json::Value = serde_json::from_str(&kept).context("status --json")?;
    println!(
        "laptop-a verified the server's log up to {} entries (pinned log key {})",
        kept["log"]["checkpoint"]["size"], kept["log"]["fingerprint"]
    );
    let note = check(a.cmd(&["checkpoint"]), "checkpoint")?;
    let file = out_dir.join("laptop-a.checkpoint");
    std::fs::write(&file, note)?;
    println!("{}", check(server.cmd(&["audit", "--checkpoint", &file.to_string_lossy()]), "audit")?.trim());

    let status = server.terminate();
    if !status.success() {
        bail!("server exited with {status} after SIGTERM");
    }
    println!("\nserver stopped cleanly; demo done");
    Ok(())
}

/// `len` bytes of a hash chain: a stand-in for a photo.
fn photo_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut h: [u8; 32] = sha2::Sha256::digest(b"truce demo photo").into();
    while out.len() < len {
        h = sha2::Sha256::digest(h).into();
        out.extend_from_slice(&h);
    }
    out.truncate(len);
    out
}

/// Prints export rows as an aligned table.
fn print_table(jsonl: &str) -> Result<()> {
    let cols = ["device_name", "seq", "observed_at", "category", "basis", "incident", "corroboration", "description"];
    let mut rows = vec![cols.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    for line in jsonl.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).context("export line is not JSON")?;
        rows.push(
            cols.iter()
                .map(|c| match &v[*c] {
                    serde_json::Value::String(s) => s.chars().take(48).collect(),
                    serde_json::Value::Null => "-".into(),
                    other => other.to_string(),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> =
        (0..cols.len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for (n, r) in rows.iter().enumerate() {
        let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("{}", line.join("  ").trim_end());
        if n == 0 {
            println!("{}", widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
        }
    }
    println!("({} verified reports)", rows.len() - 1);
    Ok(())
}
