//! Evidence over a bad link (DESIGN §13): goodput, bytes resent after a
//! cut, and how long a report waits behind an upload.
//!
//! Everything runs through the relay shaped as the satellite link of
//! DESIGN §13 ([`Shape::SATELLITE`]: 256 kbit/s, 300 ms each way), between
//! the real `truce-agent` and `truce-server`. Each figure has its reference
//! from the same run: the raw rate of a relay of the same shape, and a
//! report's acknowledgement with no upload running.

use std::io::{Read, Write};
use std::process::Child;

use rand::Rng;
use sha2::{Digest, Sha256};
use truce_tests::relay::Shape;

use super::*;

/// What the evidence runs measured, medians.
pub(super) struct EvidenceFigures {
    /// File bytes a second, from the sync's start to its end.
    pub goodput: f64,
    /// The shaped link's raw rate, bytes a second.
    pub link: f64,
    /// Chunk bytes sent twice after a cut mid-upload.
    pub resent: f64,
    /// The largest chunk in force when the link was cut.
    pub chunk: f64,
    /// The bytes the agent allowed in flight when it was cut.
    pub window: f64,
    /// A report recorded during an upload: from `record`'s end to its Ack.
    pub ack_s: f64,
    /// The same with no upload running: `sync` started at once.
    pub idle_ack_s: f64,
}

/// Runs `plan.evidence_runs` rounds, each: one upload timed whole, one
/// upload with reports recorded during it and then cut in its middle and
/// resumed, the link's raw rate, and reports with no upload.
pub(super) fn evidence(pki: &Pki, plan: &Plan, json: bool) -> Result<EvidenceFigures> {
    let shape = Shape::SATELLITE;
    let mut server = TestServer::init();
    server.start(pki, &[]);
    let relay = Relay::start_shaped(server.addr(), shape);
    let files = tempfile::tempdir()?;
    let (mut goodput, mut link, mut resent, mut chunk, mut window, mut acks, mut idle) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for run in 0..plan.evidence_runs {
        let agent = bench_agent(&server, pki, "evidence")?;
        let size = plan.evidence_bytes as f64;

        step(json, "  an upload timed whole");
        // Goodput: one report and its file, the sync timed whole.
        let path = incompressible(files.path(), plan.evidence_bytes, 2 * run as u8)?;
        agent.record_with("impact, video attached", &["--attach", &path])?;
        let start = Instant::now();
        let out = agent.sync(relay.addr).context("sync over the shaped link")?;
        goodput.push(size / start.elapsed().as_secs_f64());
        let sent = summary(&out)?;
        ensure!(sent["evidence_held"] == 1 && sent["evidence_bytes"] == plan.evidence_bytes, "upload: {out}");

        step(json, "  the link's raw rate");
        link.push(raw_rate(shape, plan.evidence_link_bytes)?);

        step(json, "  reports during an upload, then a cut");
        // Reports recorded while a file uploads, then a cut mid-file.
        let path = incompressible(files.path(), plan.evidence_bytes, 2 * run as u8 + 1)?;
        agent.record_with("impact, second video attached", &["--attach", &path])?;
        let before = relay.forwarded();
        let mut sync = agent.spawn_sync(relay.addr)?;
        let upload_at = |part: f64| before + (size * part) as u64;
        for i in 0..plan.evidence_probes {
            wait_for(|| relay.forwarded() >= upload_at(0.15 + 0.3 * i as f64 / plan.evidence_probes as f64))?;
            acks.push(agent.ack_after_record(&format!("recorded during an upload, {i}"), None)?);
            ensure!(sync.try_wait()?.is_none(), "the upload ended before a report recorded during it was answered");
        }
        wait_for(|| relay.forwarded() >= upload_at(0.5))?;
        relay.cut_after(rand::thread_rng().gen_range(0..16 * 1024));
        let cut = sync.wait_with_output()?;
        ensure!(!cut.status.success(), "the sync was not cut: {}", String::from_utf8_lossy(&cut.stderr));
        let (sent_before, largest, in_flight) = sent_chunks(&String::from_utf8_lossy(&cut.stderr))?;
        step(json, "  the upload resumed");
        relay.heal();
        let resumed = agent.sync_logged(relay.addr)?;
        let (sent_after, _, _) = sent_chunks(&resumed)?;
        resent.push((sent_before + sent_after) as f64 - size);
        chunk.push(largest as f64);
        window.push(in_flight as f64);

        step(json, "  reports with no upload");
        // The reference: a report and a sync of it alone on the same link.
        for i in 0..plan.evidence_probes {
            idle.push(agent.ack_after_record(&format!("recorded with no upload, {i}"), Some(relay.addr))?);
        }
    }
    Ok(EvidenceFigures {
        goodput: median(goodput),
        link: median(link),
        resent: median(resent),
        chunk: median(chunk),
        window: median(window),
        ack_s: median(acks),
        idle_ack_s: median(idle),
    })
}

/// An agent of its own (keys unsealed: no Argon2id in the timings),
/// enrolled and linked to `server` directly.
fn bench_agent(server: &TestServer, pki: &Pki, tag: &str) -> Result<BenchAgent> {
    let agent = Agent::init_unprotected();
    server.enrol(&agent.key, &format!("{tag}-{}", &agent.key[..8]));
    agent.link(pki, "bench", server.addr());
    let queue = rusqlite::Connection::open_with_flags(
        agent.dir.path().join("queue.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    Ok(BenchAgent { agent, queue })
}

struct BenchAgent {
    agent: Agent,
    /// The agent's queue, read to see a report's state change the moment
    /// its Ack is committed.
    queue: rusqlite::Connection,
}

impl BenchAgent {
    fn record_with(&self, description: &str, extra: &[&str]) -> Result<String> {
        let mut args = vec!["record", "--category", "shelling", "--lat", "48.0159", "--lon", "37.8029"];
        args.extend_from_slice(&["--basis", "heard", "--description", description]);
        args.extend_from_slice(extra);
        let ran = self.agent.cmd(&args);
        ensure!(ran.ok(), "record failed: {}", ran.stderr());
        Ok(truce_tests::harness::last_hex_id(&ran.stdout()))
    }

    /// `--json sync --server via` to its end; stdout.
    fn sync(&self, via: SocketAddr) -> Result<String> {
        let ran = self.agent.cmd(&["--json", "sync", "--server", &via.to_string()]);
        ensure!(ran.ok(), "sync failed: {}", ran.stderr());
        Ok(ran.stdout())
    }

    /// [`BenchAgent::sync`], returning its log (stderr) instead.
    fn sync_logged(&self, via: SocketAddr) -> Result<String> {
        let ran = self.agent.cmd(&["--json", "sync", "--server", &via.to_string()]);
        ensure!(ran.ok(), "sync failed: {}", ran.stderr());
        Ok(ran.stderr())
    }

    /// `sync --server via` as a child process, its output captured.
    fn spawn_sync(&self, via: SocketAddr) -> Result<Child> {
        Ok(Command::new(bin("truce-agent"))
            .args(["--data-dir", self.agent.dir_str(), "--passphrase-file", self.agent.passphrase_file()])
            .args(["sync", "--server", &via.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?)
    }

    /// Records a report (a `record` process), then, with `sync_via`, starts
    /// a `sync` through it; seconds from `record`'s end until the report's
    /// Ack is in the queue.
    fn ack_after_record(&self, description: &str, sync_via: Option<SocketAddr>) -> Result<f64> {
        let id = hex::decode(self.record_with(description, &[])?)?;
        let start = Instant::now();
        let sync = sync_via.map(|via| self.spawn_sync(via)).transpose()?;
        let delivered = || -> Result<bool> {
            let state: String = self.queue.query_row("SELECT state FROM reports WHERE id = ?1", [&id], |r| r.get(0))?;
            Ok(state == "delivered")
        };
        while !delivered()? {
            ensure!(start.elapsed() < Duration::from_secs(60), "a report was not acknowledged within 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = start.elapsed().as_secs_f64();
        if let Some(sync) = sync {
            let out = sync.wait_with_output()?;
            ensure!(out.status.success(), "sync failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(took)
    }
}

/// A file of `len` bytes nothing could compress or find twice (`seed`
/// picks which), in `dir`; its path.
fn incompressible(dir: &Path, len: usize, seed: u8) -> Result<String> {
    let mut bytes = Vec::with_capacity(len + 32);
    let mut h: [u8; 32] = Sha256::digest([seed, 0xe5]).into();
    while bytes.len() < len {
        h = Sha256::digest(h).into();
        bytes.extend_from_slice(&h);
    }
    bytes.truncate(len);
    let path = dir.join(format!("evidence-{seed}.bin"));
    std::fs::write(&path, &bytes)?;
    path.to_str().map(str::to_string).context("a temporary path that is not UTF-8")
}

/// The one JSON line `--json sync` prints.
fn summary(out: &str) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(out.lines().last().context("sync printed nothing")?)?)
}

/// From a sync's log (the agent's last `sync: evidence …` line): the
/// chunk bytes it put on the link, its largest chunk, and the bytes it
/// allowed in flight at its last chunk.
fn sent_chunks(log: &str) -> Result<(u64, u64, u64)> {
    let line = log
        .lines()
        .rfind(|l| l.starts_with("sync: evidence "))
        .with_context(|| format!("no evidence line in the sync's log:\n{log}"))?;
    let tail = line.split("; ").nth(1).with_context(|| format!("no bytes sent in: {line}"))?;
    let n: Vec<u64> = tail.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    match n[..] {
        [sent, chunk, window] => Ok((sent, chunk, window)),
        _ => bail!("not three figures in: {line}"),
    }
}

/// Waits until `done` (at most five minutes: a link far slower than asked
/// for is a failure).
fn wait_for(done: impl Fn() -> bool) -> Result<()> {
    let start = Instant::now();
    while !done() {
        ensure!(start.elapsed() < Duration::from_secs(300), "the upload did not get that far");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The rate of a relay of `shape` measured by pushing `bytes` plain bytes
/// through it to a sink: bytes after the first packet over the time from
/// the first packet's arrival to the last's, so the delay is not counted.
fn raw_rate(shape: Shape, bytes: usize) -> Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let relay = Relay::start_shaped(listener.local_addr()?, shape);
    let sink = std::thread::spawn(move || -> std::io::Result<(usize, f64)> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 64 * 1024];
        let (mut first, mut total, mut since) = (0, 0, None::<Instant>);
        let mut last = Instant::now();
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            match since {
                None => (since, first) = (Some(Instant::now()), n),
                Some(_) => last = Instant::now(),
            }
            total += n;
        }
        let secs = since.map_or(0.0, |t| last.duration_since(t).as_secs_f64());
        Ok((total - first, secs))
    });
    let mut client = std::net::TcpStream::connect(relay.addr)?;
    client.write_all(&vec![0x5a; bytes])?;
    client.shutdown(std::net::Shutdown::Write)?;
    let (carried, secs) = sink.join().map_err(|_| anyhow::anyhow!("the sink panicked"))??;
    ensure!(secs > 0.0, "too few bytes to time the link");
    Ok(carried as f64 / secs)
}
