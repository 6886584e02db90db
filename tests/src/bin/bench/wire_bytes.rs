//! Bytes on the wire: a sync beside its signed bytes, and the handshake.

use super::*;

/// Bytes both ways through a relay for one `truce-agent sync` of
/// `wire_reports` typical reports (handshake, signed receipts with their
/// checkpoints, and the log's range and consistency proofs included),
/// against the sum of their signed bytes (body + signature). Medians over
/// runs.
pub(super) fn wire_bytes(pki: &Pki, plan: &Plan) -> Result<(f64, f64)> {
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
        // The bytes counted include the log's proofs: every report proven.
        let status: serde_json::Value = serde_json::from_str(&agent.cmd(&["--json", "status"]).expect_ok())?;
        ensure!(status["log"]["not_proven"] == 0, "not every report was proven: {status}");
    }
    Ok((median(wire), median(signed)))
}

/// Bytes both ways for a TLS 1.3 handshake with client certificate, then
/// Hello and Welcome: what a sync pays before its first report.
pub(super) fn handshake_bytes(rt: &tokio::runtime::Runtime, pki: &Pki, plan: &Plan) -> Result<f64> {
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
