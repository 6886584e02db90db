//! `status`: counts by state, chain head, protection, pruning, server and
//! last sync; needs no passphrase.

use serde::Serialize;
use truce_shared::time::format_ms;

use super::out::Out;
use super::prune::keep_text;
use super::unlock::Unlock;
use crate::agent::AgentStatus;
use crate::error::Result;
use crate::paths::DataDir;

/// Runs `status`.
pub(super) fn run(dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let root = dir.root().display().to_string();
    let agent = keys.open_locked(dir)?;
    let s = agent.status()?;
    if out.json {
        out.json_line(&StatusJson::new(&s, &root))?;
    } else {
        for l in status_text(&s, &root) {
            out.line(&l)?;
        }
    }
    Ok(())
}

/// `checkpoint`: the kept checkpoint's signed note, exactly as the server
/// signed it (as JSON: origin, size, root and the note).
pub(super) fn checkpoint(dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let agent = keys.open_locked(dir)?;
    let Some(cp) = agent.kept_checkpoint()? else {
        return Err(crate::error::AgentError::NoCheckpoint);
    };
    if out.json {
        out.json_line(&serde_json::json!({
            "origin": cp.origin, "size": cp.size, "root": cp.root.to_string(), "note": cp.note
        }))?;
    } else {
        out.raw(cp.note.as_bytes())?;
    }
    Ok(())
}

/// `status` as JSON.
#[derive(Serialize)]
pub struct StatusJson {
    device: String,
    fingerprint: String,
    data_dir: String,
    counts: serde_json::Map<String, serde_json::Value>,
    head: Option<HeadJson>,
    /// Whether the keys are sealed under a passphrase.
    protected: bool,
    /// Delivered reports' bodies are deleted this long after delivery, seconds.
    keep_delivered_s: i64,
    /// Reports whose bodies have been pruned.
    pruned: u64,
    server: Option<String>,
    last_sync: Option<LastSyncJson>,
    /// The server's transparency log as this laptop knows it.
    log: LogJson,
    /// Evidence files by where their upload stands.
    evidence: EvidenceJson,
}

#[derive(Serialize)]
struct EvidenceJson {
    held: u64,
    partial: u64,
    not_sent: u64,
}

#[derive(Serialize)]
struct LogJson {
    /// The pinned log key, hex, and its fingerprint.
    key: Option<String>,
    fingerprint: Option<String>,
    /// What `link --server-key` said to expect.
    expected: Option<String>,
    /// The last checkpoint whose proofs verified.
    checkpoint: Option<CheckpointJson>,
    /// Reports delivered (or otherwise answered) but not yet proven.
    not_proven: u64,
}

#[derive(Serialize)]
struct CheckpointJson {
    origin: String,
    size: u64,
    /// Base64, as in the checkpoint.
    root: String,
}

#[derive(Serialize)]
struct HeadJson {
    seq: u64,
    id: String,
}

#[derive(Serialize)]
struct LastSyncJson {
    at: String,
    ok: bool,
    outcome: String,
}

impl StatusJson {
    /// The status view.
    pub fn new(s: &AgentStatus, data_dir: &str) -> Self {
        StatusJson {
            device: hex::encode(s.device),
            fingerprint: s.fingerprint.clone(),
            data_dir: data_dir.to_string(),
            counts: s.counts.iter().map(|(st, n)| (st.as_str().to_string(), serde_json::Value::from(*n))).collect(),
            head: s.head.map(|h| HeadJson { seq: h.seq, id: hex::encode(h.id) }),
            protected: s.protected,
            keep_delivered_s: s.keep_delivered_ms / 1000,
            pruned: s.pruned,
            server: s.server.clone(),
            last_sync: s.last_sync.as_ref().map(|l| LastSyncJson {
                at: format_ms(l.at),
                ok: l.ok,
                outcome: l.outcome.clone(),
            }),
            log: LogJson {
                key: s.log_key.map(hex::encode),
                fingerprint: s.log_key.as_ref().map(truce_shared::signing::fingerprint),
                expected: s.log_key_expected.clone(),
                checkpoint: s.checkpoint.as_ref().map(|c| CheckpointJson {
                    origin: c.origin.clone(),
                    size: c.size,
                    root: c.root.to_string(),
                }),
                not_proven: s.unproven,
            },
            evidence: EvidenceJson { held: s.evidence.0, partial: s.evidence.1, not_sent: s.evidence.2 },
        }
    }
}

/// `status` for people.
pub fn status_text(s: &AgentStatus, data_dir: &str) -> Vec<String> {
    let counts: Vec<String> = s.counts.iter().map(|(st, n)| format!("{n} {}", st.as_str())).collect();
    let mut l = vec![
        format!("device:     {} ({})", hex::encode(s.device), s.fingerprint),
        format!("data dir:   {data_dir}"),
        format!("reports:    {}", counts.join(", ")),
        match s.head {
            Some(h) => format!("chain head: seq {} id {}", h.seq, hex::encode(h.id)),
            None => "chain head: none yet (no reports)".to_string(),
        },
        format!(
            "keys:       {}",
            if s.protected {
                "sealed under a passphrase"
            } else {
                "NOT PROTECTED (made with --no-passphrase): set one with `truce-agent passphrase`"
            }
        ),
        format!("pruning:    {} ({} pruned so far)", keep_text(s.keep_delivered_ms), s.pruned),
        format!("server:     {}", s.server.as_deref().unwrap_or("not linked (run `truce-agent link`)")),
    ];
    l.push(match (&s.log_key, &s.log_key_expected) {
        (Some(k), _) => format!("log key:    {} (pinned)", truce_shared::signing::fingerprint(k)),
        (None, Some(e)) => format!("log key:    none pinned yet; must be {e}"),
        (None, None) => "log key:    none pinned yet (pinned at the first sync)".to_string(),
    });
    l.push(match &s.checkpoint {
        Some(c) => format!("checkpoint: {} size {} root {}", c.origin, c.size, c.root),
        None => "checkpoint: none verified yet".to_string(),
    });
    let (held, partial, not_sent) = s.evidence;
    if held + partial + not_sent > 0 {
        l.push(format!(
            "evidence:   {held} file(s) held by the server, {partial} partly sent, {not_sent} not yet sent"
        ));
    }
    if s.unproven > 0 {
        l.push(format!("not proven: {} report(s) answered but not yet proven in the server's log", s.unproven));
    }
    l.push(match &s.last_sync {
        Some(ls) => format!("last sync:  {} {}: {}", format_ms(ls.at), if ls.ok { "ok" } else { "failed" }, ls.outcome),
        None => "last sync:  never".to_string(),
    });
    l
}
