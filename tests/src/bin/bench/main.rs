//! The benchmark harness: every figure of DESIGN §7 and §13 beside a
//! reference measured in the same run, each the median of several runs.
//!
//! ```text
//! cargo run --release -p truce-tests --bin bench            # full: a few minutes
//! cargo run --release -p truce-tests --bin bench -- --quick # under a minute
//! cargo run --release -p truce-tests --bin bench -- --json  # one JSON object
//! ```
//!
//! It runs the real `truce-server` and `truce-agent` binaries (built in the
//! same profile) with a throwaway PKI on loopback, and an in-process load
//! generator that speaks the wire protocol over mTLS like 64 agents at once.
//! Ingest is measured twice: on the server's SQLite file, and on a real
//! PostgreSQL started from the system's binaries (as the tests start it,
//! `truce_testkit::TestPostgres`, but with PostgreSQL's default
//! durability and its data on disk), on the same cores. Evidence goes
//! through the harness's relay shaped as a bad satellite link.
//! Figures from a debug build are meaningless; only `--release` counts.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use ed25519_dalek::{Signer, SigningKey};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use truce_shared::report::{Basis, Category, Envelope, Observation, Position, ENVELOPE_VERSION};
use truce_shared::signing::REPORT_SIG_DOMAIN;
use truce_shared::wire::{self, Message, Status, PROTOCOL_VERSION};
use truce_shared::{encoding, limits, SignedReport};
use truce_testkit::{bin, Pki, TestPostgres, TestServer};
use truce_tests::harness::Agent;
use truce_tests::relay::Relay;

mod evidence;
mod export;
mod ingest;
mod load;
mod measure;
mod memory;
mod record;
mod table;
mod wire_bytes;

use evidence::*;
use export::*;
use ingest::*;
use load::*;
use measure::*;
use memory::*;
use record::*;
use table::*;
use wire_bytes::*;

/// What one run measures and how hard.
struct Plan {
    /// Repetitions of each timed figure; the median is reported.
    runs: usize,
    /// Agent connections submitting at once.
    connections: usize,
    /// Reports each connection submits per ingest run.
    per_connection: usize,
    /// Signatures each core verifies for the reference rate.
    verify_per_core: usize,
    /// In-process records (and bare commits) per latency run.
    records: usize,
    /// `truce-agent record` processes per run.
    cli_records: usize,
    /// Reports in the wire-size sync.
    wire_reports: usize,
    /// Reports in the export store.
    export_rows: i64,
    /// Idle mTLS connections held open.
    idle_connections: usize,
    /// Reports in the agent queue for the sync memory figure.
    queue_reports: u64,
    /// Rounds of the evidence figures (each uploads two files over the
    /// shaped link, at 32 kB/s).
    evidence_runs: usize,
    /// The evidence file's size.
    evidence_bytes: usize,
    /// Reports recorded during each upload, and with none running.
    evidence_probes: usize,
    /// Plain bytes pushed to time the shaped link's raw rate.
    evidence_link_bytes: usize,
}

const FULL: Plan = Plan {
    runs: 5,
    connections: 64,
    per_connection: 512,
    verify_per_core: 20_000,
    records: 500,
    cli_records: 30,
    wire_reports: 1_000,
    export_rows: 1_000_000,
    idle_connections: 1_000,
    queue_reports: 100_000,
    evidence_runs: 3,
    evidence_bytes: 2_000_000,
    evidence_probes: 3,
    evidence_link_bytes: 256 * 1024,
};

const QUICK: Plan = Plan {
    runs: 3,
    connections: 64,
    per_connection: 16,
    verify_per_core: 1_000,
    records: 40,
    cli_records: 5,
    wire_reports: 200,
    export_rows: 20_000,
    idle_connections: 100,
    queue_reports: 2_000,
    evidence_runs: 1,
    evidence_bytes: 256 * 1024,
    evidence_probes: 2,
    evidence_link_bytes: 64 * 1024,
};

/// The figures, named as in the JSON output.
#[derive(Default, serde::Serialize)]
struct Figures {
    ingest_per_s: f64,
    verify_per_s: f64,
    ingest_ratio: f64,
    ingest_per_server_cpu_s: f64,
    ingest_cpu_ratio: f64,
    ingest_server_cpu_us: f64,
    ingest_writer_cpu_us: f64,
    sqlite_insert_cpu_us: f64,
    sqlite_minimal_cpu_us: f64,
    ingest_ceiling_ratio: f64,
    ingest_minimal_ceiling_ratio: f64,
    ingest_loadgen_cpu_us: f64,
    pg_ingest_per_s: f64,
    pg_ingest_ratio: f64,
    pg_ingest_server_cpu_us: f64,
    pg_ingest_writer_cpu_us: f64,
    pg_ingest_db_cpu_us: f64,
    pg_ingest_loadgen_cpu_us: f64,
    /// Truce servers one PostgreSQL could feed, by CPU alone: a server's
    /// CPU a report over PostgreSQL's.
    pg_servers_per_db: f64,
    record_p50_ms: f64,
    record_p99_ms: f64,
    commit_p50_ms: f64,
    commit_p99_ms: f64,
    record_p99_ratio: f64,
    record_cli_p50_ms: f64,
    record_cli_sealed_p50_ms: f64,
    wire_bytes: f64,
    signed_bytes: f64,
    wire_ratio: f64,
    handshake_bytes: f64,
    export_per_s: f64,
    export_bytes: f64,
    export_write_per_s: f64,
    idle_conn_kb: f64,
    agent_sync_peak_mb: f64,
    agent_unlock_peak_mb: f64,
    evidence_goodput_kbit_s: f64,
    evidence_link_kbit_s: f64,
    evidence_goodput_ratio: f64,
    /// Chunk bytes sent twice after a cut mid-upload: may be 0.
    evidence_resent_bytes: f64,
    evidence_chunk_bytes: f64,
    evidence_resent_chunks: f64,
    /// The agent's bytes-in-flight limit when the link was cut.
    evidence_window_bytes: f64,
    evidence_report_ack_s: f64,
    idle_report_ack_s: f64,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut quick = false;
    let mut json = false;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--json" => json = true,
            "--only" => {
                only = Some(
                    it.next()
                        .context("--only needs a figure: ingest, record, wire, export, idle, agent or evidence")?
                        .clone(),
                )
            }
            "-h" | "--help" => {
                println!("{}", HELP);
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; see --help"),
        }
    }
    if cfg!(debug_assertions) && !json {
        eprintln!("note: a debug build; run with --release for figures that mean anything");
    }
    let plan = if quick { &QUICK } else { &FULL };
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let pki = Pki::new(&["bench"]);
    let mut f = Figures::default();
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if let Some(o) = &only {
        ensure!(
            ["ingest", "record", "wire", "export", "idle", "agent", "evidence"].contains(&o.as_str()),
            "--only {o}: unknown figure"
        );
    }

    if want("ingest") {
        step(json, "verify reference");
        f.verify_per_s = median((0..plan.runs).map(|_| verify_rate(plan.verify_per_core)).collect());
        step(json, "server ingest");
        let cost = ingest(&rt, &pki, plan, None)?;
        (f.ingest_per_s, f.ingest_per_server_cpu_s) = (cost.per_s, 1e6 / cost.server_cpu_us);
        (f.ingest_server_cpu_us, f.ingest_writer_cpu_us, f.ingest_loadgen_cpu_us) =
            (cost.server_cpu_us, cost.writer_cpu_us, cost.loadgen_cpu_us);
        f.sqlite_insert_cpu_us = sqlite_insert_floor(plan, Floor::Server)?;
        f.sqlite_minimal_cpu_us = sqlite_insert_floor(plan, Floor::Minimal)?;
        let verify_us = 1e6 * cores() as f64 / f.verify_per_s;
        f.ingest_ceiling_ratio = verify_us / (verify_us + f.sqlite_insert_cpu_us);
        f.ingest_minimal_ceiling_ratio = verify_us / (verify_us + f.sqlite_minimal_cpu_us);
        f.ingest_ratio = f.ingest_per_s / f.verify_per_s;
        f.ingest_cpu_ratio = f.ingest_per_server_cpu_s / (f.verify_per_s / cores() as f64);
        step(json, "server ingest on PostgreSQL");
        // PostgreSQL's default durability (fsync on, synchronous commit),
        // its data on disk as the SQLite server's is.
        let pg = TestPostgres::start_durable();
        let cost = ingest(&rt, &pki, plan, Some(&pg))?;
        drop(pg);
        (f.pg_ingest_per_s, f.pg_ingest_server_cpu_us, f.pg_ingest_writer_cpu_us) =
            (cost.per_s, cost.server_cpu_us, cost.writer_cpu_us);
        (f.pg_ingest_db_cpu_us, f.pg_ingest_loadgen_cpu_us) = (cost.db_cpu_us, cost.loadgen_cpu_us);
        f.pg_ingest_ratio = f.pg_ingest_per_s / f.verify_per_s;
        f.pg_servers_per_db = f.pg_ingest_server_cpu_us / f.pg_ingest_db_cpu_us;
    }
    if want("record") {
        step(json, "record latency");
        (f.record_p50_ms, f.record_p99_ms, f.commit_p50_ms, f.commit_p99_ms) = record_latency(plan)?;
        f.record_p99_ratio = f.record_p99_ms / f.commit_p99_ms;
        step(json, "record as a process");
        (f.record_cli_p50_ms, f.record_cli_sealed_p50_ms) = record_cli(plan)?;
    }
    if want("wire") {
        step(json, "bytes on the wire");
        (f.wire_bytes, f.signed_bytes) = wire_bytes(&pki, plan)?;
        f.wire_ratio = f.wire_bytes / f.signed_bytes;
        f.handshake_bytes = handshake_bytes(&rt, &pki, plan)?;
    }
    if want("export") {
        step(json, "export");
        (f.export_per_s, f.export_bytes, f.export_write_per_s) = export_rate(plan)?;
    }
    if want("idle") {
        step(json, "idle connections");
        f.idle_conn_kb = idle_connections(&rt, &pki, plan)?;
    }
    if want("agent") {
        step(json, "agent sync memory");
        (f.agent_sync_peak_mb, f.agent_unlock_peak_mb) = agent_sync_peak(&pki, plan)?;
    }
    if want("evidence") {
        step(json, "evidence over a shaped link");
        let e = evidence(&pki, plan, json)?;
        (f.evidence_goodput_kbit_s, f.evidence_link_kbit_s) = (e.goodput * 8e-3, e.link * 8e-3);
        f.evidence_goodput_ratio = e.goodput / e.link;
        (f.evidence_resent_bytes, f.evidence_chunk_bytes) = (e.resent, e.chunk);
        f.evidence_resent_chunks = e.resent / e.chunk;
        f.evidence_window_bytes = e.window;
        (f.evidence_report_ack_s, f.idle_report_ack_s) = (e.ack_s, e.idle_ack_s);
    }
    step(json, "done");

    let all = [
        f.ingest_per_s,
        f.verify_per_s,
        f.sqlite_insert_cpu_us,
        f.sqlite_minimal_cpu_us,
        f.pg_ingest_per_s,
        f.pg_ingest_server_cpu_us,
        f.pg_ingest_db_cpu_us,
        f.record_p50_ms,
        f.record_p99_ms,
        f.commit_p99_ms,
        f.record_cli_p50_ms,
        f.record_cli_sealed_p50_ms,
        f.wire_ratio,
        f.handshake_bytes,
        f.export_per_s,
        f.idle_conn_kb,
        f.agent_sync_peak_mb,
        f.agent_unlock_peak_mb,
        f.evidence_goodput_kbit_s,
        f.evidence_link_kbit_s,
        f.evidence_chunk_bytes,
        f.evidence_window_bytes,
        f.evidence_report_ack_s,
        f.idle_report_ack_s,
    ];
    if only.is_none() {
        ensure!(all.iter().all(|v| v.is_finite() && *v > 0.0), "a figure is missing or not positive");
        // Nothing resent after a cut is a result, not a missing figure.
        ensure!(f.evidence_resent_bytes.is_finite() && f.evidence_resent_bytes >= 0.0, "resent bytes below 0");
    }
    if json {
        let mut v = serde_json::to_value(&f)?;
        v["quick"] = quick.into();
        v["runs"] = plan.runs.into();
        v["cores"] = cores().into();
        v["seconds"] = started.elapsed().as_secs().into();
        println!("{v}");
    } else {
        print_table(&f, plan, quick, started.elapsed(), &want);
    }
    Ok(())
}

const HELP: &str = "truce bench: the performance figures of DESIGN §7, each beside its reference

Usage: cargo run --release -p truce-tests --bin bench -- [--quick] [--json] [--only FIGURE]

  --quick        a smaller run (under a minute), for checking the harness works
  --json         print one JSON object instead of the table
  --only FIGURE  measure one group only (ingest, record, wire, export, idle,
                 agent, evidence), for profiling

Ingest runs on SQLite and then on a PostgreSQL the harness starts itself
from the system's binaries (apt-get install postgresql; TRUCE_PG_BINDIR
names another directory holding initdb and pg_ctl). That PostgreSQL shares
the machine's cores with the server and the load generator.

Evidence goes through the harness's relay shaped as DESIGN §13's satellite
link (256 kbit/s, 300 ms each way); at that rate a full run uploads 12 MB,
so the evidence group alone takes several minutes.";

fn step(json: bool, what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    if !json {
        eprintln!("[{:>5.1} s] {what}", t.as_secs_f64());
    }
}
