//! Memory: idle sessions on the server, the agent syncing and unlocking.

use super::*;

/// Server peak memory per idle mTLS session: the growth of its peak RSS
/// from before to after `idle_connections` sessions (TLS, Hello, Welcome,
/// then silence), divided by their number.
pub(super) fn idle_connections(rt: &tokio::runtime::Runtime, pki: &Pki, plan: &Plan) -> Result<f64> {
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
pub(super) fn agent_sync_peak(pki: &Pki, plan: &Plan) -> Result<(f64, f64)> {
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
