//! `list` and `show`: the queue's reports, newest first, one line each or
//! one in full, as text for people or JSON (JSON Lines for `list`).

use serde::Serialize;
use truce_shared::time::format_ms;
use truce_shared::{Attachment, Bytes32, Envelope};

use super::out::Out;
use super::unlock::Unlock;
use crate::error::{AgentError, Result};
use crate::paths::DataDir;
use crate::queue::{FileState, QueuedReport, State};

/// Runs `list`, optionally of one state only.
pub(super) fn list(state: Option<String>, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let state = state
        .map(|s| {
            State::parse(s.trim()).ok_or_else(|| {
                AgentError::input(
                    "--state",
                    format!("unknown state {s:?}: use pending, delivered, quarantined or rejected"),
                )
            })
        })
        .transpose()?;
    let agent = keys.open(dir)?;
    let device = agent.device();
    let mut any = false;
    agent.queue().for_each(state, |r| {
        any = true;
        let env = r.envelope()?;
        let evidence = match &env {
            Some(e) if !e.observation.attachments.is_empty() => agent.evidence_states(e)?,
            _ => Vec::new(),
        };
        if out.json {
            out.json_line(&with_evidence(ReportJson::new(&r, env.as_ref(), &device, false), &evidence)?)
        } else {
            let mut line = report_line(&r, env.as_ref());
            if !evidence.is_empty() {
                let held = evidence.iter().filter(|(_, s)| *s == FileState::Held).count();
                line.push_str(&format!("  [evidence {held}/{} held by the server]", evidence.len()));
            }
            out.line(&line)
        }
    })?;
    if !any && !out.json {
        out.line("no reports")?;
    }
    Ok(())
}

/// Runs `show` for an id or a unique prefix of one.
pub(super) fn show(id: &str, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let agent = keys.open(dir)?;
    let r = agent.queue().find(id)?;
    let env = r.envelope()?;
    let evidence = match &env {
        Some(e) => agent.evidence_states(e)?,
        None => Vec::new(),
    };
    if out.json {
        out.json_line(&with_evidence(ReportJson::new(&r, env.as_ref(), &agent.device(), true), &evidence)?)?;
    } else {
        for l in report_text(&r, env.as_ref()) {
            out.line(&l)?;
        }
        for (a, state) in &evidence {
            out.line(&format!("evidence:     {}: {}", a.name, state.text()))?;
        }
    }
    Ok(())
}

/// A report's JSON with, per attachment, where its upload stands
/// (`evidence`: sha256 and state).
fn with_evidence(report: ReportJson, evidence: &[(Attachment, FileState)]) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(report).map_err(|e| AgentError::Corrupt(e.to_string()))?;
    if let Some(m) = v.as_object_mut() {
        let list: Vec<serde_json::Value> = evidence
            .iter()
            .map(|(a, s)| {
                let mut e = serde_json::to_value(s).unwrap_or_default();
                if let Some(o) = e.as_object_mut() {
                    o.insert("sha256".into(), hex::encode(a.sha256).into());
                }
                e
            })
            .collect();
        m.insert("evidence".into(), list.into());
    }
    Ok(v)
}

/// An attachment as shown.
#[derive(Serialize)]
pub struct AttachmentJson {
    name: String,
    media_type: String,
    size: u64,
    sha256: String,
}

impl From<&Attachment> for AttachmentJson {
    fn from(a: &Attachment) -> Self {
        AttachmentJson {
            name: a.name.clone(),
            media_type: a.media_type.clone(),
            size: a.size,
            sha256: hex::encode(a.sha256),
        }
    }
}
#[derive(Serialize)]
struct CountJson {
    n: u32,
    qualifier: &'static str,
}

#[derive(Serialize)]
struct ObservationJson {
    observed_at: String,
    observed_until: Option<String>,
    lat: f64,
    lon: f64,
    accuracy_m: Option<u32>,
    bearing_deg: Option<u16>,
    distance_m: Option<[u32; 2]>,
    category: &'static str,
    effect: Option<&'static str>,
    weapon: Option<String>,
    count: Option<CountJson>,
    basis: &'static str,
    description: String,
    attachments: Vec<AttachmentJson>,
}

#[derive(Serialize)]
struct AnswerJson {
    status: Option<String>,
    reason: Option<String>,
    at: Option<String>,
}

#[derive(Serialize)]
struct ReceiptJson {
    /// 1 (the server key over the held ids) or 2 (the log key over the Ack).
    protocol: u8,
    server_key: String,
    server_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<String>,
    signature: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    covers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid: Option<bool>,
}

/// One report, as `list` (one per line) and `show` print it.
#[derive(Serialize)]
pub struct ReportJson {
    id: String,
    seq: u64,
    prev: Option<String>,
    device: String,
    state: State,
    /// Whether the server's log proved it includes the answer (`null`
    /// for reports pending or answered before protocol 2).
    proven: Option<bool>,
    /// The index of the server's log entry that records it.
    log_entry: Option<u64>,
    /// Bytes of the signed report as recorded.
    size: u64,
    /// The body was deleted after delivery (`prune`): only id, seq, state,
    /// answer and receipt remain, and the fields from the body are null.
    pruned: bool,
    recorded_at: Option<String>,
    amends: Option<String>,
    observation: Option<ObservationJson>,
    answer: Option<AnswerJson>,
    receipt: Option<ReceiptJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
}

impl ReportJson {
    /// The view of a queued report (`env` is `None` once pruned); `detail`
    /// adds what only `show` prints (signature, verification, the receipt's
    /// ids and validity).
    pub fn new(r: &QueuedReport, env: Option<&Envelope>, device: &Bytes32, detail: bool) -> Self {
        ReportJson {
            id: hex::encode(r.id),
            seq: r.seq,
            prev: env.map(|e| hex::encode(e.prev)),
            device: hex::encode(env.map_or(*device, |e| e.device)),
            state: r.state,
            proven: r.entry.map(|_| r.proven_at.is_some()),
            log_entry: r.entry,
            size: r.size,
            pruned: r.signed.is_none(),
            recorded_at: env.map(|e| format_ms(e.recorded_at)),
            amends: env.and_then(|e| e.amends).map(hex::encode),
            observation: env.map(|e| observation_json(&e.observation)),
            answer: r.answer.as_ref().map(|a| AnswerJson {
                status: Some(a.clone()),
                reason: r.reason.clone(),
                at: r.answered_at.map(format_ms),
            }),
            receipt: r.receipt.as_ref().map(|c| ReceiptJson {
                protocol: if c.log.is_some() { 2 } else { 1 },
                server_key: hex::encode(c.server_key),
                server_time: format_ms(c.server_time),
                checkpoint: c.log.as_ref().filter(|_| detail).map(|l| l.checkpoint.clone()),
                signature: hex::encode(c.signature.0),
                covers: detail.then(|| c.ids.iter().map(hex::encode).collect()),
                valid: detail.then(|| c.verifies()),
            }),
            signature: r.signed.as_ref().filter(|_| detail).map(|s| hex::encode(s.signature.0)),
            verified: r.signed.as_ref().filter(|_| detail).map(|s| truce_shared::verify(s).is_ok()),
        }
    }
}

fn observation_json(o: &truce_shared::Observation) -> ObservationJson {
    ObservationJson {
        observed_at: format_ms(o.observed_at),
        observed_until: o.observed_until.map(format_ms),
        lat: o.position.lat,
        lon: o.position.lon,
        accuracy_m: o.position.accuracy_m,
        bearing_deg: o.bearing_deg,
        distance_m: o.distance_m.map(|(a, b)| [a, b]),
        category: o.category.name(),
        effect: o.effect.map(|e| e.name()),
        weapon: o.weapon.clone(),
        count: o.count.map(|c| CountJson { n: c.n, qualifier: c.qualifier.name() }),
        basis: o.basis.name(),
        description: o.description.clone(),
        attachments: o.attachments.iter().map(Into::into).collect(),
    }
}

/// One line of `list` for people: short id, seq, state, time, category,
/// position, the start of the description (or that the body was pruned).
pub fn report_line(r: &QueuedReport, env: Option<&Envelope>) -> String {
    let Some(env) = env else {
        return format!(
            "{}  #{:<5} {:<11} (pruned after delivery: id, state and receipt kept)",
            &hex::encode(r.id)[..12],
            r.seq,
            r.state_text()
        );
    };
    let o = &env.observation;
    let mut desc: String = o.description.chars().take(40).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if o.description.chars().count() > 40 {
        desc.push('…');
    }
    format!(
        "{}  #{:<5} {:<11} {}  {:<20} {:.5},{:.5}  {}",
        &hex::encode(r.id)[..12],
        r.seq,
        r.state_text(),
        format_ms(o.observed_at),
        o.category.name(),
        o.position.lat,
        o.position.lon,
        desc
    )
}

/// `show` for people: one field per line.
pub fn report_text(r: &QueuedReport, env: Option<&Envelope>) -> Vec<String> {
    let mut l = vec![
        format!("id:           {}", hex::encode(r.id)),
        format!("seq:          {}", r.seq),
        format!("state:        {}", r.state_text()),
    ];
    if let Some(e) = r.entry {
        l.push(format!(
            "log entry:    {e} ({})",
            if r.proven_at.is_some() {
                "proven included in the server's log"
            } else {
                "not proven yet: the server signed it, its log has not proven it"
            }
        ));
    }
    match (env, &r.signed) {
        (Some(env), Some(signed)) => body_text(&mut l, env, signed),
        _ => l.push(format!(
            "body:         pruned after delivery ({} bytes were signed; the receipt below proves delivery)",
            r.size
        )),
    }
    answer_text(&mut l, r);
    l
}

fn body_text(l: &mut Vec<String>, env: &Envelope, signed: &truce_shared::SignedReport) {
    let o = &env.observation;
    l.push(format!("observed at:  {}", format_ms(o.observed_at)));
    if let Some(u) = o.observed_until {
        l.push(format!("until:        {}", format_ms(u)));
    }
    l.push(format!("category:     {}", o.category.name()));
    let acc = o.position.accuracy_m.map(|a| format!(" (±{a} m)")).unwrap_or_default();
    l.push(format!("position:     {}, {}{acc}", o.position.lat, o.position.lon));
    if let Some(b) = o.bearing_deg {
        l.push(format!("bearing:      {b}°"));
    }
    if let Some((a, b)) = o.distance_m {
        l.push(if a == b { format!("distance:     {a} m") } else { format!("distance:     {a}–{b} m") });
    }
    if let Some(e) = &o.effect {
        l.push(format!("effect:       {}", e.name()));
    }
    if let Some(w) = &o.weapon {
        l.push(format!("weapon:       {w}"));
    }
    if let Some(c) = &o.count {
        let q = match c.qualifier {
            truce_shared::Qualifier::Exact => "",
            truce_shared::Qualifier::About => "about ",
            truce_shared::Qualifier::AtLeast => "at least ",
        };
        l.push(format!("count:        {q}{}", c.n));
    }
    l.push(format!("basis:        {}", o.basis.name()));
    if !o.description.is_empty() {
        l.push(format!("description:  {}", o.description));
    }
    for a in &o.attachments {
        l.push(format!(
            "attachment:   {} ({}, {} bytes, sha256 {})",
            a.name,
            a.media_type,
            a.size,
            hex::encode(a.sha256)
        ));
    }
    if let Some(a) = env.amends {
        l.push(format!("amends:       {}", hex::encode(a)));
    }
    l.push(format!("recorded at:  {}", format_ms(env.recorded_at)));
    l.push(format!("device:       {}", hex::encode(env.device)));
    l.push(format!("prev:         {}", hex::encode(env.prev)));
    l.push(format!("signature:    {}", if truce_shared::verify(signed).is_ok() { "valid" } else { "DOES NOT VERIFY" }));
}

fn answer_text(l: &mut Vec<String>, r: &QueuedReport) {
    if let Some(a) = &r.answer {
        // The server's words: shown, never obeyed by the terminal.
        let reason = r.reason.as_ref().map(|x| format!(" ({})", truce_shared::text::printable(x))).unwrap_or_default();
        let at = r.answered_at.map(|t| format!(" at {}", format_ms(t))).unwrap_or_default();
        l.push(format!("server said:  {a}{reason}{at}"));
    }
    if let Some(c) = &r.receipt {
        l.push(format!(
            "receipt:      {} {}, {} ({} reports covered)",
            if c.log.is_some() { "received at" } else { "server time" },
            format_ms(c.server_time),
            if c.verifies() { "signature valid" } else { "SIGNATURE DOES NOT VERIFY" },
            c.ids.len()
        ));
        match &c.log {
            Some(_) => l.push(format!(
                "log key:      {} ({})",
                hex::encode(c.server_key),
                truce_shared::signing::fingerprint(&c.server_key)
            )),
            None => l.push(format!("server key:   {}", hex::encode(c.server_key))),
        }
    }
}
