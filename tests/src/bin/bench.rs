//! The benchmark harness: every figure of DESIGN §7 beside a reference
//! measured in the same run, each the median of several runs.
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
use truce_testkit::{bin, Pki, TestServer};
use truce_tests::harness::Agent;
use truce_tests::relay::Relay;

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
                    it.next().context("--only needs a figure: ingest, record, wire, export, idle or agent")?.clone(),
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
            ["ingest", "record", "wire", "export", "idle", "agent"].contains(&o.as_str()),
            "--only {o}: unknown figure"
        );
    }

    if want("ingest") {
        step(json, "verify reference");
        f.verify_per_s = median((0..plan.runs).map(|_| verify_rate(plan.verify_per_core)).collect());
        step(json, "server ingest");
        let cost = ingest(&rt, &pki, plan)?;
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
    step(json, "done");

    let all = [
        f.ingest_per_s,
        f.verify_per_s,
        f.sqlite_insert_cpu_us,
        f.sqlite_minimal_cpu_us,
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
    ];
    if only.is_none() {
        ensure!(all.iter().all(|v| v.is_finite() && *v > 0.0), "a figure is missing or not positive");
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
                 agent), for profiling";

fn step(json: bool, what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    if !json {
        eprintln!("[{:>5.1} s] {what}", t.as_secs_f64());
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

/// A typical report: a shelling heard at a bearing and distance, a weapon
/// assessment and a paragraph of description (about 300 signed bytes).
fn typical_envelope(device: [u8; 32], seq: u64, prev: [u8; 32]) -> Envelope {
    let now = truce_shared::time::now_ms();
    Envelope {
        version: ENVELOPE_VERSION,
        device,
        seq,
        prev,
        recorded_at: now,
        amends: None,
        observation: Observation {
            observed_at: now - 300_000,
            observed_until: None,
            position: Position { lat: 48.0159, lon: 37.8029, accuracy_m: Some(10) },
            bearing_deg: Some(315),
            distance_m: Some((5_000, 7_000)),
            category: Category::Shelling,
            effect: None,
            weapon: Some("152mm artillery".into()),
            count: None,
            basis: Basis::Heard,
            description: format!(
                "Report {seq}: two series of outgoing fire heard to the north-west, about six rounds each, \
                 assessed as 152mm artillery; no impacts observed from the patrol base."
            ),
            attachments: vec![],
        },
    }
}

/// One device's chain, signing as it goes.
struct Chain {
    key: SigningKey,
    seq: u64,
    prev: [u8; 32],
}

impl Chain {
    fn new() -> Chain {
        Chain { key: truce_shared::signing::generate_key(), seq: 0, prev: [0; 32] }
    }

    fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    fn next(&mut self) -> Result<SignedReport> {
        self.seq += 1;
        let env = typical_envelope(self.key.verifying_key().to_bytes(), self.seq, self.prev);
        let signed = truce_shared::sign(&self.key, &env)?;
        self.prev = signed.id();
        Ok(signed)
    }
}

/// The reference: raw `verify_strict` of single signatures over messages
/// the size of a typical report, one thread per core.
fn verify_rate(per_core: usize) -> f64 {
    let mut chain = Chain::new();
    let key = chain.key.verifying_key();
    let items: Vec<(Vec<u8>, ed25519_dalek::Signature)> = (0..64)
        .map(|_| {
            let r = chain.next().expect("a typical report signs");
            let mut msg = REPORT_SIG_DOMAIN.to_vec();
            msg.extend_from_slice(&r.body);
            let sig = chain.key.sign(&msg);
            (msg, sig)
        })
        .collect();
    let items = Arc::new(items);
    let n = cores();
    let t = Instant::now();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let items = items.clone();
            std::thread::spawn(move || {
                for i in 0..per_core {
                    let (msg, sig) = &items[i % items.len()];
                    assert!(key.verify_strict(msg, sig).is_ok());
                }
            })
        })
        .collect();
    for th in threads {
        th.join().expect("verify thread");
    }
    (n * per_core) as f64 / t.elapsed().as_secs_f64()
}

fn tls_connector(pki: &Pki) -> Result<TlsConnector> {
    let config = truce_agent::tls::client_config(
        Path::new(&pki.file("ca.pem")),
        Path::new(&pki.file("bench.pem")),
        Path::new(&pki.file("bench.key")),
    )?;
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Connects over mTLS and says Hello; returns the stream after Welcome.
async fn open_session(
    connector: &TlsConnector,
    addr: SocketAddr,
    device: [u8; 32],
) -> Result<TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(ServerName::try_from("127.0.0.1")?, tcp).await?;
    let hello = Message::Hello { protocol: PROTOCOL_VERSION, agent_version: "bench".into(), device };
    wire::write_message(&mut tls, &hello, limits::MAX_FRAME).await?;
    match wire::read_message(&mut tls, limits::MAX_FRAME).await? {
        Some(Message::Welcome { .. }) => Ok(tls),
        other => bail!("expected Welcome, got {other:?}"),
    }
}

/// Server ingest: `connections` sessions, one enrolled device each, submit
/// pre-signed batches of `max_batch` reports with up to 4 in flight; the
/// clock runs from the first Submit to the last Ack (every report must
/// come back Accepted). Median rate over `runs`, and the median of reports
/// per CPU-second the server process used (the load generator shares the
/// same cores, so this shows the server's own cost per report).
/// What ingest measured: the rate, and the CPU each report cost the
/// server and the load generator (medians over runs).
struct IngestCost {
    per_s: f64,
    server_cpu_us: f64,
    /// Of the server's: its one SQLite writer thread.
    writer_cpu_us: f64,
    loadgen_cpu_us: f64,
}

fn ingest(rt: &tokio::runtime::Runtime, pki: &Pki, plan: &Plan) -> Result<IngestCost> {
    const IN_FLIGHT: usize = 4;
    let max_batch = limits::MAX_BATCH as usize;
    let mut server = TestServer::init();
    let mut chains: Vec<Chain> = (0..plan.connections).map(|_| Chain::new()).collect();
    for (i, c) in chains.iter().enumerate() {
        server.enrol(&c.public_hex(), &format!("laptop-{i}"));
    }
    // Every simulated laptop connects with the one bench certificate.
    let per_cert = plan.connections.to_string();
    server.start(pki, &["--max-connections-per-cert", &per_cert]);
    let connector = tls_connector(pki)?;
    let addr = server.addr();
    let pid = server.pid().context("server pid")?;
    let mut rates = Vec::new();
    let (mut server_us, mut writer_us, mut loadgen_us) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.runs {
        // Sign this run's reports up front: the clock measures the server.
        let mut work = Vec::new();
        for c in chains.iter_mut() {
            let reports = (0..plan.per_connection).map(|_| c.next()).collect::<Result<Vec<_>>>()?;
            let frames: Vec<Vec<u8>> = reports
                .chunks(max_batch)
                .enumerate()
                .map(|(b, chunk)| encoding::encode(&Message::Submit { batch: b as u64, reports: chunk.to_vec() }))
                .collect();
            work.push((c.key.verifying_key().to_bytes(), frames));
        }
        let (mut cpu_before, mut writer_before, mut own_before) = (0.0, 0.0, 0.0);
        let elapsed = rt.block_on(async {
            let mut sessions = Vec::new();
            for (device, frames) in work {
                sessions.push((open_session(&connector, addr, device).await?, frames));
            }
            cpu_before = proc_cpu_s(pid)?;
            writer_before = writer_cpu_s(pid)?;
            own_before = proc_cpu_s(std::process::id())?;
            let t = Instant::now();
            let tasks: Vec<_> =
                sessions.into_iter().map(|(tls, frames)| tokio::spawn(submit_all(tls, frames, IN_FLIGHT))).collect();
            let mut accepted = 0;
            for task in tasks {
                accepted += task.await??;
            }
            let elapsed = t.elapsed();
            ensure!(
                accepted == plan.connections * plan.per_connection,
                "{accepted} of {} reports accepted",
                plan.connections * plan.per_connection
            );
            Ok::<_, anyhow::Error>(elapsed)
        })?;
        let cpu = proc_cpu_s(pid)? - cpu_before;
        let own = proc_cpu_s(std::process::id())? - own_before;
        let writer = writer_cpu_s(pid)? - writer_before;
        let reports = (plan.connections * plan.per_connection) as f64;
        rates.push(reports / elapsed.as_secs_f64());
        server_us.push(cpu * 1e6 / reports);
        writer_us.push(writer * 1e6 / reports);
        loadgen_us.push(own * 1e6 / reports);
    }
    Ok(IngestCost {
        per_s: median(rates),
        server_cpu_us: median(server_us),
        writer_cpu_us: median(writer_us),
        loadgen_cpu_us: median(loadgen_us),
    })
}

/// What a floor INSERT stores.
#[derive(Clone, Copy)]
enum Floor {
    /// The row the writer stores, in the server's own schema, every index.
    Server,
    /// The least a store can keep and still drop an exact duplicate or find
    /// a report by its id: the signed bytes under a unique id, no other
    /// column or index.
    Minimal,
}

/// The floor under the writer: CPU a report costs in a bare SQLite INSERT
/// (WAL, synchronous=FULL, a new store's page size, the writer's cache and
/// checkpoint settings), 2,048 rows a transaction, with no checks, no
/// incidents and no other thread competing. Median over runs of this
/// thread's CPU per row.
fn sqlite_insert_floor(plan: &Plan, floor: Floor) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("floor.sqlite");
    let (mut conn, sql) = match floor {
        Floor::Server => {
            drop(truce_server::Store::open(&path)?);
            let sql = "INSERT INTO reports (id, device, seq, prev, recorded_at, observed_at, observed_until, category,
                                            lat, lon, amends, body, signature, status, reason, received_at, ev_lat,
                                            ev_lon, incident)
                       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'shelling', ?8, ?9, NULL, ?10, ?11, 'verified', NULL, ?12,
                               ?8, ?9, 1)";
            (rusqlite::Connection::open(&path)?, sql)
        }
        Floor::Minimal => {
            let c = rusqlite::Connection::open(&path)?;
            c.pragma_update(None, "page_size", truce_server::store::PAGE_SIZE)?;
            c.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
            c.execute_batch(
                "CREATE TABLE reports (n INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, body BLOB NOT NULL,
                                       signature BLOB NOT NULL)",
            )?;
            (c, "INSERT INTO reports (id, body, signature) VALUES (?1, ?2, ?3)")
        }
    };
    conn.pragma_update(None, "synchronous", "FULL")?;
    truce_server::writer::tune(&conn)?;
    let mut chains: Vec<Chain> = (0..plan.connections).map(|_| Chain::new()).collect();
    let mut per_row = Vec::new();
    for _ in 0..plan.runs {
        let mut rows = Vec::new();
        for _ in 0..plan.per_connection {
            for c in chains.iter_mut() {
                let r = c.next()?;
                let env: Envelope = encoding::decode(&r.body)?;
                rows.push((r, env));
            }
        }
        let before = thread_cpu_s()?;
        for chunk in rows.chunks(2048) {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut insert = tx.prepare(sql)?;
                for (r, env) in chunk {
                    let o = &env.observation;
                    match floor {
                        Floor::Server => insert.execute(rusqlite::params![
                            &r.id()[..],
                            &env.device[..],
                            env.seq as i64,
                            &env.prev[..],
                            env.recorded_at,
                            o.observed_at,
                            o.observed_until,
                            o.position.lat,
                            o.position.lon,
                            &r.body,
                            &r.signature.0[..],
                            env.recorded_at,
                        ])?,
                        Floor::Minimal => {
                            insert.execute(rusqlite::params![&r.id()[..], &r.body, &r.signature.0[..]])?
                        }
                    };
                }
            }
            tx.commit()?;
        }
        per_row.push((thread_cpu_s()? - before) * 1e6 / rows.len() as f64);
    }
    Ok(median(per_row))
}

/// CPU seconds this thread has used, to the nanosecond: the first field of
/// schedstat, where stat(5) counts in clock ticks (10 ms), too coarse for
/// the few milliseconds a `--quick` floor takes.
fn thread_cpu_s() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let ns: u64 = stat.split_whitespace().next().context("empty schedstat")?.parse()?;
    Ok(ns as f64 / 1e9)
}

/// User + system CPU seconds a process has used so far.
fn proc_cpu_s(pid: u32) -> Result<f64> {
    stat_cpu_s(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of the server's writer thread (named `truce-writer`).
fn writer_cpu_s(pid: u32) -> Result<f64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        if std::fs::read_to_string(dir.join("comm"))?.trim() == "truce-writer" {
            return stat_cpu_s(&dir.join("stat").to_string_lossy());
        }
    }
    bail!("the server {pid} has no truce-writer thread")
}

/// utime + stime of a stat(5) file, in seconds.
fn stat_cpu_s(path: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> { Ok(f.get(i).context("short /proc stat")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    Ok((ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_S)
}

/// USER_HZ, which Linux fixes at 100 for /proc on every architecture it
/// runs Truce on.
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// Sends every Submit frame, keeping up to `window` unacknowledged; returns
/// how many reports came back Accepted.
async fn submit_all(tls: TlsStream<tokio::net::TcpStream>, frames: Vec<Vec<u8>>, window: usize) -> Result<usize> {
    let (mut rd, mut wr) = tokio::io::split(tls);
    let total = frames.len();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(window);
    let writer = tokio::spawn(async move {
        for f in frames {
            // A permit per frame in flight; the reader returns them.
            tx.send(()).await?;
            wr.write_all(&(f.len() as u32).to_be_bytes()).await?;
            wr.write_all(&f).await?;
            wr.flush().await?;
        }
        Ok::<_, anyhow::Error>(wr)
    });
    let mut accepted = 0;
    for _ in 0..total {
        match wire::read_message(&mut rd, limits::MAX_FRAME).await? {
            Some(Message::Ack { results, .. }) => {
                accepted += results.iter().filter(|(_, s)| *s == Status::Accepted).count();
            }
            other => bail!("expected Ack, got {other:?}"),
        }
        rx.recv().await;
    }
    let mut wr = writer.await??;
    let bye = encoding::encode(&Message::Bye);
    wr.write_all(&(bye.len() as u32).to_be_bytes()).await?;
    wr.write_all(&bye).await?;
    wr.shutdown().await?;
    Ok(accepted)
}

/// Record latency in process (validate, sign, chain, durable commit)
/// against a bare WAL `synchronous=FULL` one-row commit on the same disk.
/// Returns the medians over runs of (record p50, p99, commit p50, p99).
fn record_latency(plan: &Plan) -> Result<(f64, f64, f64, f64)> {
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
fn record_cli(plan: &Plan) -> Result<(f64, f64)> {
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

/// Bytes both ways through a relay for one `truce-agent sync` of
/// `wire_reports` typical reports (handshake included), against the sum of
/// their signed bytes (body + signature). Medians over runs.
fn wire_bytes(pki: &Pki, plan: &Plan) -> Result<(f64, f64)> {
    let mut server = TestServer::init();
    server.start(pki, &[]);
    let relay = Relay::start(server.addr());
    let (mut wire, mut signed) = (vec![], vec![]);
    for _ in 0..plan.runs.min(3) {
        let agent = Agent::init();
        server.enrol(&agent.key, &format!("wire-{}", &agent.key[..8]));
        agent.link(pki, "bench", relay.addr);
        let mut a = agent.open();
        let mut input = truce_agent::RecordInput::new(Category::Shelling, 48.0159, 37.8029);
        input.bearing_deg = Some(315);
        input.distance_m = Some((5_000, 7_000));
        input.weapon = Some("152mm artillery".into());
        input.basis = Basis::Heard;
        input.description = typical_envelope([0; 32], 1, [0; 32]).observation.description;
        for _ in 0..plan.wire_reports {
            a.record(&input)?;
        }
        drop(a);
        let db = rusqlite::Connection::open(agent.dir.path().join("queue.sqlite"))?;
        let sum: i64 = db.query_row("SELECT sum(size) FROM reports", [], |r| r.get(0))?;
        let before = relay.forwarded();
        agent.sync(None).expect_ok();
        // The relay counts as it forwards; let the last bytes through.
        std::thread::sleep(Duration::from_millis(200));
        wire.push((relay.forwarded() - before) as f64);
        signed.push(sum as f64);
        ensure!(agent.ids_in_state("delivered").len() == plan.wire_reports, "not every report was delivered");
    }
    Ok((median(wire), median(signed)))
}

/// Bytes both ways for a TLS 1.3 handshake with client certificate, then
/// Hello and Welcome: what a sync pays before its first report.
fn handshake_bytes(rt: &tokio::runtime::Runtime, pki: &Pki, plan: &Plan) -> Result<f64> {
    let mut server = TestServer::init();
    server.start(pki, &[]);
    let relay = Relay::start(server.addr());
    let connector = tls_connector(pki)?;
    let mut sizes = Vec::new();
    for _ in 0..plan.runs {
        let before = relay.forwarded();
        rt.block_on(async {
            let mut tls = open_session(&connector, relay.addr, [9; 32]).await?;
            // Session tickets come after the handshake; let them arrive.
            tokio::time::sleep(Duration::from_millis(100)).await;
            tls.shutdown().await?;
            Ok::<_, anyhow::Error>(())
        })?;
        std::thread::sleep(Duration::from_millis(100));
        sizes.push((relay.forwarded() - before) as f64);
    }
    Ok(median(sizes))
}

/// Export rate to JSON Lines from a store of `export_rows` reports, as the
/// `truce-server export` process runs it, and beside it the reference: the
/// same number of bytes written to a file in the same directory and
/// fsynced, as the export does, but with nothing to read or format.
/// Returns the medians over runs of (rows/s, bytes written, reference
/// rows/s). Dirty pages are flushed (`sync`) and the last output deleted
/// before each timed step, so one step's writeback or freeing does not
/// land on the next.
fn export_rate(plan: &Plan) -> Result<(f64, f64, f64)> {
    let server = TestServer::init();
    let mut chain = Chain::new();
    server.enrol(&chain.public_hex(), "export");
    let r = chain.next()?;
    // Copies of one signed body under distinct ids and sequence numbers:
    // export reads rows and does not re-verify them, and signing a million
    // reports would only slow the harness down.
    let db = rusqlite::Connection::open(server.dir().join("truce.sqlite"))?;
    db.execute(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1)
         INSERT INTO reports (id, device, seq, prev, recorded_at, observed_at, category, lat, lon, body,
                              signature, status, received_at, ev_lat, ev_lon)
         SELECT randomblob(32), ?2, i, zeroblob(32), 0, i, 'shelling', 48.0, 37.8, ?3, ?4, 'verified', 0, 48.0, 37.8
         FROM k",
        rusqlite::params![plan.export_rows, &chain.key.verifying_key().to_bytes()[..], &r.body, &r.signature.0[..]],
    )?;
    drop(db);
    let out = server.dir().join("export.jsonl");
    let copy = server.dir().join("reference.out");
    let (mut rates, mut sizes, mut refs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.runs.min(3) {
        // The last run's gigabyte is deleted outside the clock: freeing it
        // is not the export's work (renaming over it showed in profiles).
        if out.exists() {
            std::fs::remove_file(&out)?;
        }
        sync()?;
        let t = Instant::now();
        let out_s = out.to_str().context("utf-8 temp path")?;
        server.cmd(&["export", "--format", "jsonl", "--out", out_s]).expect_ok();
        let secs = t.elapsed().as_secs_f64();
        let lines = std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&out)?)).count();
        ensure!(lines as i64 == plan.export_rows, "export wrote {lines} of {} rows", plan.export_rows);
        rates.push(plan.export_rows as f64 / secs);
        let size = std::fs::metadata(&out)?.len();
        sizes.push(size as f64);
        // The reference writes the export's own first bytes over and over.
        let mut chunk = vec![0u8; 256 * 1024];
        let got = std::io::Read::read(&mut std::fs::File::open(&out)?, &mut chunk)?;
        chunk.truncate(got.max(1));
        sync()?;
        let t = Instant::now();
        let mut f = std::fs::File::create(&copy)?;
        let mut left = size as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            std::io::Write::write_all(&mut f, &chunk[..n])?;
            left -= n;
        }
        f.sync_all()?;
        refs.push(plan.export_rows as f64 / t.elapsed().as_secs_f64());
        std::fs::remove_file(&copy)?;
    }
    Ok((median(rates), median(sizes), median(refs)))
}

/// Flushes every dirty page to disk (sync(1)).
fn sync() -> Result<()> {
    ensure!(std::process::Command::new("sync").status()?.success(), "sync failed");
    Ok(())
}

/// A `/proc/PID/status` value in KiB.
fn proc_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Server peak memory per idle mTLS session: the growth of its peak RSS
/// from before to after `idle_connections` sessions (TLS, Hello, Welcome,
/// then silence), divided by their number.
fn idle_connections(rt: &tokio::runtime::Runtime, pki: &Pki, plan: &Plan) -> Result<f64> {
    let mut server = TestServer::init();
    // Every idle session uses the one bench certificate.
    let per_cert = (2 * plan.idle_connections).to_string();
    server
        .start(pki, &["--idle-timeout", "600", "--handshake-timeout", "600", "--max-connections-per-cert", &per_cert]);
    let pid = server.pid().context("server pid")?;
    let connector = tls_connector(pki)?;
    // One session first, so the baseline includes what any first session
    // allocates once (the TLS and session machinery, the writer).
    let first = rt.block_on(open_session(&connector, server.addr(), [1; 32]))?;
    std::thread::sleep(Duration::from_millis(200));
    let before = proc_kib(pid, "VmRSS:")?;
    let held = rt.block_on(async {
        let mut held = Vec::with_capacity(plan.idle_connections);
        for _ in 0..plan.idle_connections {
            held.push(open_session(&connector, server.addr(), [1; 32]).await?);
        }
        Ok::<_, anyhow::Error>(held)
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let peak = proc_kib(pid, "VmHWM:")?;
    drop(held);
    drop(first);
    Ok(peak.saturating_sub(before) as f64 / plan.idle_connections as f64)
}

/// Agent peak memory (VmHWM of the `truce-agent sync` process) delivering
/// a queue of `queue_reports` reports, and the peak of unlocking a sealed
/// keyring alone (`list` of an empty state: Argon2id, nothing read), MiB.
/// The sync runs on a data dir made with `--no-passphrase`, so its figure
/// is the queue's streaming alone (every row is still sealed and opened).
fn agent_sync_peak(pki: &Pki, plan: &Plan) -> Result<(f64, f64)> {
    let mut server = TestServer::init();
    let agent = Agent::init_unprotected();
    server.enrol(&agent.key, "queue");
    server.start(pki, &[]);
    agent.link(pki, "bench", server.addr());
    fill_queue(&agent, plan.queue_reports)?;
    let sync = peak_of(Command::new(bin("truce-agent")).args(["--data-dir", agent.dir_str(), "sync"]))?;
    let sealed = Agent::init();
    let unlock = peak_of(Command::new(bin("truce-agent")).args([
        "--data-dir",
        sealed.dir_str(),
        "--passphrase-file",
        sealed.passphrase_file(),
        "list",
        "--state",
        "rejected",
    ]))?;
    Ok((sync, unlock))
}

/// Runs a command to its end and returns its peak resident memory, MiB.
fn peak_of(cmd: &mut Command) -> Result<f64> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let mut peak = 0;
    let status = loop {
        if let Ok(kb) = proc_kib(child.id(), "VmHWM:") {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    ensure!(status.success(), "{cmd:?} failed");
    ensure!(peak > 0, "could not read the agent's VmHWM");
    Ok(peak as f64 / 1024.0)
}

/// Fills an agent's queue with `n` signed reports in one transaction,
/// straight into its SQLite file (recording them one durable commit at a
/// time would take minutes and measure nothing new).
fn fill_queue(agent: &Agent, n: u64) -> Result<()> {
    let secrets = agent.secrets();
    let data_key = secrets.data_key();
    let mut chain = Chain { key: SigningKey::from_bytes(&secrets.seed), seq: 0, prev: [0; 32] };
    let mut db = rusqlite::Connection::open(agent.dir.path().join("queue.sqlite"))?;
    let tx = db.transaction()?;
    {
        // Sealed rows, as `record` writes them.
        let mut st = tx.prepare("INSERT INTO reports(seq, id, sealed, size) VALUES (?1, ?2, ?3, ?4)")?;
        for _ in 0..n {
            let r = chain.next()?;
            let sealed = data_key.seal_report(chain.seq, &r.id(), &r.body, &r.signature.0);
            st.execute(rusqlite::params![chain.seq as i64, &r.id()[..], sealed, (r.body.len() + 64) as i64])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn print_table(f: &Figures, plan: &Plan, quick: bool, took: Duration, want: &dyn Fn(&str) -> bool) {
    let mode = if quick { "quick" } else { "full" };
    println!("truce bench ({mode}: median of {} runs, {} cores, {:.0} s)\n", plan.runs, cores(), took.as_secs_f64());
    println!("{:<34} {:>14}  {:<34} {:>10}  {:<12}", "figure", "measured", "reference (same run)", "ratio", "target");
    let row =
        |group: &str, name: &str, v: String, reference: String, ratio: String, target: &str, met: Option<bool>| {
            if !want(group) {
                return;
            }
            let mark = match met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            println!("{name:<34} {v:>14}  {reference:<34} {ratio:>10}  {target:<12} {mark}");
        };
    row(
        "ingest",
        &format!("ingest, {} mTLS connections", plan.connections),
        format!("{:.0}/s", f.ingest_per_s),
        format!("verify_strict {:.0}/s", f.verify_per_s),
        format!("{:.2}", f.ingest_ratio),
        ">= 0.8",
        Some(f.ingest_ratio >= 0.8),
    );
    row(
        "ingest",
        "ingest, per server CPU-second",
        format!("{:.0}/s", f.ingest_per_server_cpu_s),
        format!("verify_strict {:.0}/core-s", f.verify_per_s / cores() as f64),
        format!("{:.2}", f.ingest_cpu_ratio),
        "",
        None,
    );
    row(
        "ingest",
        "CPU a report: server + load gen",
        format!("{:.1} + {:.1} us", f.ingest_server_cpu_us, f.ingest_loadgen_cpu_us),
        format!("verify_strict {:.1} us", 1e6 * cores() as f64 / f.verify_per_s),
        String::new(),
        "",
        None,
    );
    row(
        "ingest",
        "  of it, the server's SQLite writer",
        format!("{:.1} us", f.ingest_writer_cpu_us),
        format!("bare SQLite INSERT {:.1} us", f.sqlite_insert_cpu_us),
        format!("{:.2}", f.ingest_writer_cpu_us / f.sqlite_insert_cpu_us),
        "",
        None,
    );
    row(
        "ingest",
        "ceiling: server schema / minimal",
        format!("{:.2} / {:.2}", f.ingest_ceiling_ratio, f.ingest_minimal_ceiling_ratio),
        format!("id+signed bytes INSERT {:.1} us", f.sqlite_minimal_cpu_us),
        String::new(),
        "",
        None,
    );
    row(
        "record",
        "record in process p50 / p99",
        format!("{:.2} / {:.2} ms", f.record_p50_ms, f.record_p99_ms),
        format!("bare commit {:.2} / {:.2} ms", f.commit_p50_ms, f.commit_p99_ms),
        format!("{:.2}", f.record_p99_ratio),
        "<= 2",
        Some(f.record_p99_ratio <= 2.0),
    );
    row(
        "record",
        "truce-agent record (process) p50",
        format!("{:.1} ms", f.record_cli_p50_ms),
        "no passphrase".to_string(),
        String::new(),
        "<= 20 ms",
        Some(f.record_cli_p50_ms <= 20.0),
    );
    row(
        "record",
        "  sealed, unlock included, p50",
        format!("{:.0} ms", f.record_cli_sealed_p50_ms),
        format!(
            "Argon2id {} MiB, {} passes",
            truce_agent::vault::KDF_MEMORY_KIB / 1024,
            truce_agent::vault::KDF_PASSES
        ),
        String::new(),
        "<= 1.5 s",
        Some(f.record_cli_sealed_p50_ms <= 1500.0),
    );
    row(
        "wire",
        &format!("sync of {} reports, bytes", plan.wire_reports),
        format!("{:.0}", f.wire_bytes),
        format!("signed bytes {:.0}", f.signed_bytes),
        format!("{:.3}", f.wire_ratio),
        "<= 1.15",
        Some(f.wire_ratio <= 1.15),
    );
    row(
        "wire",
        "handshake + Hello/Welcome, bytes",
        format!("{:.0}", f.handshake_bytes),
        String::new(),
        String::new(),
        "<= 6 KB",
        Some(f.handshake_bytes <= 6000.0),
    );
    row(
        "export",
        &format!("export JSON Lines, {} rows", plan.export_rows),
        format!("{:.0}/s", f.export_per_s),
        format!("write+fsync {:.0} MB: {:.0}/s", f.export_bytes / 1e6, f.export_write_per_s),
        format!("{:.2}", f.export_per_s / f.export_write_per_s),
        ">= 200,000/s",
        Some(f.export_per_s >= 200_000.0),
    );
    row(
        "idle",
        &format!("server, {} idle mTLS sessions", plan.idle_connections),
        format!("{:.1} KiB/conn", f.idle_conn_kb),
        String::new(),
        String::new(),
        "<= 100 KB",
        Some(f.idle_conn_kb <= 100.0),
    );
    row(
        "agent",
        &format!("agent sync of {} queued, peak", plan.queue_reports),
        format!("{:.1} MiB", f.agent_sync_peak_mb),
        "no passphrase: the queue alone".to_string(),
        String::new(),
        "<= 64 MB",
        Some(f.agent_sync_peak_mb <= 64.0),
    );
    row(
        "agent",
        "  unlock of a sealed keyring, peak",
        format!("{:.1} MiB", f.agent_unlock_peak_mb),
        format!("Argon2id memory {} MiB", truce_agent::vault::KDF_MEMORY_KIB / 1024),
        String::new(),
        "",
        None,
    );
}
