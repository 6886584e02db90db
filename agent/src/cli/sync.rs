//! `sync`: deliver the pending queue once, or with `--watch` keep
//! delivering (new records within seconds, retries while offline) until
//! SIGTERM or Ctrl-C; one summary per session.

use std::io::IsTerminal;
use std::process::ExitCode;

use super::args::SyncArgs;
use super::config_file::Settings;
use super::out::Out;
use super::unlock::Unlock;
use crate::error::{AgentError, Result};
use crate::paths::DataDir;

/// Runs `sync`.
pub(super) fn run(a: &SyncArgs, settings: &Settings, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<ExitCode> {
    use crate::sync::{self, Progress, SyncOptions, SyncSummary};
    // `--watch` unlocks once, here, and keeps the keys for its whole run.
    let mut agent = keys.open(dir)?;
    let progress = if std::io::stderr().is_terminal() { Progress::Bar } else { Progress::Log };
    let opts = SyncOptions {
        server: settings.server.value.clone(),
        connect_timeout: settings.connect_timeout()?,
        progress,
        ..SyncOptions::default()
    };
    let rt = sync::runtime()?;
    let summary_json = |s: &SyncSummary| {
        serde_json::json!({
            "server": s.server,
            "server_key": hex::encode(s.server_key),
            "server_key_fingerprint": truce_shared::signing::fingerprint(&s.server_key),
            "pinned_now": matches!(s.pinning, Some(crate::agent::log::Pinning::FirstSeen | crate::agent::log::Pinning::Expected)),
            "proven": s.proven,
            "delivered": s.delivered,
            "quarantined": s.quarantined,
            "rejected": s.rejected,
            "pending": s.pending,
            "batches": s.batches,
            "clock_skew_ms": s.clock_skew_ms,
            "evidence_held": s.evidence_held,
            "evidence_bytes": s.evidence_bytes,
            "evidence_refused": s.evidence_refused,
        })
    };
    if a.watch {
        let result = rt.block_on(async {
            let shutdown = async {
                match truce_shared::signal::shutdown_signal() {
                    Ok(stop) => {
                        stop.await;
                    }
                    // A failure to install the handlers leaves the default
                    // behaviour (the process ends), which loses nothing either.
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            sync::watch(&mut agent, &opts, shutdown, |r| {
                // Failures are logged by watch with the retry delay.
                if let Ok(s) = r {
                    if out.json {
                        let _ = out.json_line(&summary_json(s)).and_then(|_| out.flush());
                    } else {
                        eprintln!("sync: {}: {}", s.server, s.line());
                    }
                }
            })
            .await
        });
        result?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = rt.block_on(sync::sync_once(&mut agent, &opts))?;
    if out.json {
        out.json_line(&summary_json(&s))?;
    } else {
        out.line(&format!("{}: {}", s.server, s.line()))?;
    }
    if s.pending > 0 {
        // Records made while syncing; the next sync takes them.
        return Err(AgentError::StillPending(s.pending));
    }
    if s.rejected > 0 {
        eprintln!("warning: the server rejected {} report(s): see `truce-agent list --state rejected`", s.rejected);
    }
    Ok(ExitCode::SUCCESS)
}
