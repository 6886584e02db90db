//! What the CLI prints: plain text for people, or with `--json` one JSON
//! document per command (JSON Lines for `list`).
//!
//! The JSON shapes here are a documented interface (agent/README.md): add
//! fields, never rename or remove them. Times are RFC 3339 UTC strings,
//! ids and keys 64 lowercase hex digits.

use std::io::{self, Write};

use serde::Serialize;
use truce_shared::time::format_ms;
use truce_shared::{Attachment, Bytes32, Envelope};

use crate::agent::{AgentStatus, Recorded};
use crate::error::{AgentError, Result};
use crate::queue::{QueuedReport, State};
use crate::record::kebab;

/// Writes to stdout; a closed pipe (`| head`) ends output quietly.
pub struct Out {
    out: io::BufWriter<io::StdoutLock<'static>>,
    /// `--json` was given.
    pub json: bool,
    closed: bool,
}

impl Out {
    /// Output to stdout, JSON or text.
    pub fn new(json: bool) -> Self {
        Out { out: io::BufWriter::new(io::stdout().lock()), json, closed: false }
    }

    /// Whether the reader has gone away.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Writes one line; after a broken pipe, writes nothing and says so.
    pub fn line(&mut self, s: &str) -> Result<bool> {
        if self.closed {
            return Ok(false);
        }
        match writeln!(self.out, "{s}") {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(false)
            }
            Err(e) => Err(AgentError::Terminal(e)),
        }
    }

    /// Writes bytes as they are (a manual page); a closed pipe ends quietly.
    pub fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        match self.out.write_all(bytes) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(AgentError::Terminal(e)),
            Ok(()) => Ok(()),
        }
    }

    /// Writes a value as one line of JSON.
    pub fn json_line<T: Serialize>(&mut self, v: &T) -> Result<bool> {
        let s = serde_json::to_string(v).map_err(|e| AgentError::Terminal(io::Error::other(e)))?;
        self.line(&s)
    }

    /// Flushes (ignoring a reader that has gone).
    pub fn flush(&mut self) -> Result<()> {
        match self.out.flush() {
            Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(AgentError::Terminal(e)),
            _ => Ok(()),
        }
    }
}

/// `init` and `key`: the device's public key.
#[derive(Serialize)]
pub struct KeyJson {
    /// Public key, 64 hex.
    pub device: String,
    /// Short fingerprint to read out.
    pub fingerprint: String,
    /// The data directory.
    pub data_dir: String,
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

/// `record`'s answer.
#[derive(Serialize)]
pub struct RecordedJson {
    id: String,
    seq: u64,
    attachments: Vec<AttachmentJson>,
}

impl From<&Recorded> for RecordedJson {
    fn from(r: &Recorded) -> Self {
        RecordedJson { id: hex::encode(r.id), seq: r.seq, attachments: r.attachments.iter().map(Into::into).collect() }
    }
}

#[derive(Serialize)]
struct CountJson {
    n: u32,
    qualifier: String,
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
    category: String,
    effect: Option<String>,
    weapon: Option<String>,
    count: Option<CountJson>,
    basis: String,
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
    server_key: String,
    server_time: String,
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
                server_key: hex::encode(c.server_key),
                server_time: format_ms(c.server_time),
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
        category: kebab(&o.category),
        effect: o.effect.as_ref().map(kebab),
        weapon: o.weapon.clone(),
        count: o.count.map(|c| CountJson { n: c.n, qualifier: kebab(&c.qualifier) }),
        basis: kebab(&o.basis),
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
            r.state.as_str()
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
        r.state.as_str(),
        format_ms(o.observed_at),
        kebab(&o.category),
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
        format!("state:        {}", r.state.as_str()),
    ];
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
    l.push(format!("category:     {}", kebab(&o.category)));
    let acc = o.position.accuracy_m.map(|a| format!(" (±{a} m)")).unwrap_or_default();
    l.push(format!("position:     {}, {}{acc}", o.position.lat, o.position.lon));
    if let Some(b) = o.bearing_deg {
        l.push(format!("bearing:      {b}°"));
    }
    if let Some((a, b)) = o.distance_m {
        l.push(if a == b { format!("distance:     {a} m") } else { format!("distance:     {a}–{b} m") });
    }
    if let Some(e) = &o.effect {
        l.push(format!("effect:       {}", kebab(e)));
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
    l.push(format!("basis:        {}", kebab(&o.basis)));
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
            "receipt:      server time {}, {} ({} reports covered)",
            format_ms(c.server_time),
            if c.verifies() { "signature valid" } else { "SIGNATURE DOES NOT VERIFY" },
            c.ids.len()
        ));
        l.push(format!("server key:   {}", hex::encode(c.server_key)));
    }
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
    l.push(match &s.last_sync {
        Some(ls) => format!("last sync:  {} {}: {}", format_ms(ls.at), if ls.ok { "ok" } else { "failed" }, ls.outcome),
        None => "last sync:  never".to_string(),
    });
    l
}

/// The keep period in a sentence.
pub fn keep_text(ms: i64) -> String {
    if ms == 0 {
        "delivered reports' bodies are deleted as soon as the server holds them".to_string()
    } else {
        format!("delivered reports' bodies are deleted {} after delivery", human_ms(ms))
    }
}

/// A keep period as people write it: `0`, `90m`, `12h`, `7d`.
pub fn human_ms(ms: i64) -> String {
    const MIN: i64 = 60_000;
    match ms {
        0 => "at once".to_string(),
        m if m % (24 * 60 * MIN) == 0 => format!("{}d", m / (24 * 60 * MIN)),
        m if m % (60 * MIN) == 0 => format!("{}h", m / (60 * MIN)),
        m if m % MIN == 0 => format!("{}m", m / MIN),
        m => format!("{}s", m / 1000),
    }
}
