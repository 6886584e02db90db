//! `device add|list|revoke`: the registry of laptops' report keys.

use std::io::Write;

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde_json::json;
use truce_shared::signing::fingerprint;
use truce_shared::text::printable;
use truce_shared::time::format_ms;
use truce_shared::Bytes32;

use super::args::{parse_key, DeviceCmd};
use crate::paths::DataDir;
use crate::store::{Activity, Device};

/// A day, in ms.
const DAY_MS: i64 = 24 * 3600 * 1000;

/// The time before which a device counts as silent: `now` minus `duration`.
fn silent_cutoff(duration: &str, now: i64) -> Result<i64> {
    let d = duration.trim();
    let ago = if d.starts_with('-') { d.to_string() } else { format!("-{d}") };
    truce_shared::time::parse_time(&ago, now)
        .ok()
        .filter(|t| *t <= now)
        .with_context(|| format!("--silent-for {duration:?}: give a duration such as 30m, 24h or 7d"))
}

/// Reads `--compromised-since`: RFC 3339, a date (its midnight UTC), or a
/// time relative to now ("-2d"); never in the future.
fn compromised_time(text: &str, now: i64) -> Result<i64> {
    let t = text.trim();
    let is_date = t.len() == 10
        && t.as_bytes()
            .iter()
            .enumerate()
            .all(|(i, c)| matches!((i, c), (4 | 7, b'-')) || (i != 4 && i != 7 && c.is_ascii_digit()));
    let full = if is_date { format!("{t}T00:00:00Z") } else { t.to_string() };
    let at = truce_shared::time::parse_time(&full, now).map_err(|_| {
        anyhow::anyhow!(
            "--compromised-since {text:?}: give a time such as 2026-11-20T06:00:00Z, a date such as 2026-11-20 (midnight UTC), or -2d"
        )
    })?;
    if at > now {
        anyhow::bail!(
            "--compromised-since {text:?} is in the future: give the time the key may first have been in other hands"
        );
    }
    Ok(at)
}

/// What the server last heard from a device, in one line.
fn activity_line(a: Option<&Activity>, missing: u64) -> String {
    let Some(a) = a.filter(|a| a.last_heard_at().is_some()) else { return "never heard from".into() };
    let mut parts = Vec::new();
    match (a.last_session_at, &a.last_session_cert) {
        (Some(t), Some(c)) => parts.push(format!(
            "last session {} via certificate {} ({})",
            format_ms(t),
            c.serial,
            printable(&c.subject)
        )),
        (Some(t), None) => parts.push(format!("last session {}", format_ms(t))),
        (None, _) => parts.push("no session recorded".into()),
    }
    match a.last_report_at {
        Some(t) => parts.push(format!("last report {}", format_ms(t))),
        None => parts.push("no report".into()),
    }
    parts.push(format!("{} in the last 24 h", a.reports_since));
    if missing > 0 {
        parts.push(format!("{missing} seq(s) missing"));
    }
    parts.join("; ")
}

fn device_json(d: &Device) -> serde_json::Value {
    json!({
        "device": hex::encode(d.key),
        "fingerprint": fingerprint(&d.key),
        "name": d.name,
        "added_at": format_ms(d.added_at),
        "revoked_at": d.revoked_at.map(format_ms),
        "revoke_reason": d.revoke_reason,
        "compromised_since": d.compromised_since.map(format_ms),
    })
}

pub(super) fn run(dir: &DataDir, cmd: DeviceCmd, json: bool, out: &mut impl Write) -> Result<()> {
    let now = truce_shared::time::now_ms();
    match cmd {
        DeviceCmd::Add { key, name } => {
            let k = parse_key(&key)?;
            let e = dir.open_store()?.add_device(&k, name.as_deref(), now)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"device": hex::encode(k), "name": name, "new": e.new, "promoted": e.promoted, "held_back": e.held_back})
                )?;
            } else {
                let who = printable(name.as_deref().unwrap_or("device"));
                let verb = if e.new { "enrolled" } else { "already enrolled:" };
                write!(out, "{verb} {who} {}", fingerprint(&k))?;
                if e.promoted > 0 {
                    write!(out, "; {} quarantined report(s) now verified", e.promoted)?;
                }
                if e.held_back > 0 {
                    write!(out, "; {} left quarantined: two reports at one seq (equivocation)", e.held_back)?;
                }
                writeln!(out)?;
            }
        }
        DeviceCmd::List { silent_for } => {
            let cutoff = silent_for.as_deref().map(|d| silent_cutoff(d, now)).transpose()?;
            let store = dir.open_store()?;
            let devices = store.devices()?;
            let activity: HashMap<Bytes32, Activity> =
                store.activity(now - DAY_MS)?.into_iter().map(|a| (a.device, a)).collect();
            let missing: HashMap<String, u64> =
                store.stats()?.chains.into_iter().map(|c| (c.device, c.missing)).collect();
            let mut listed = 0;
            for d in &devices {
                let a = activity.get(&d.key);
                let heard = a.and_then(Activity::last_heard_at);
                if let Some(cutoff) = cutoff {
                    if heard.is_some_and(|t| t >= cutoff) {
                        continue;
                    }
                }
                listed += 1;
                let missing = missing.get(&hex::encode(d.key)).copied().unwrap_or(0);
                if json {
                    let mut v = device_json(d);
                    v["last_session_at"] = json!(a.and_then(|a| a.last_session_at).map(format_ms));
                    v["last_session_cert_serial"] =
                        json!(a.and_then(|a| a.last_session_cert.as_ref()).map(|c| &c.serial));
                    v["last_session_cert_subject"] =
                        json!(a.and_then(|a| a.last_session_cert.as_ref()).map(|c| &c.subject));
                    v["last_session_peer"] = json!(a.and_then(|a| a.last_session_peer.as_ref()));
                    v["last_report_at"] = json!(a.and_then(|a| a.last_report_at).map(format_ms));
                    v["reports_24h"] = json!(a.map_or(0, |a| a.reports_since));
                    v["missing_seqs"] = json!(missing);
                    writeln!(out, "{v}")?;
                } else {
                    write!(
                        out,
                        "{}  {}  {:<16}  added {}",
                        hex::encode(d.key),
                        fingerprint(&d.key),
                        printable(d.name.as_deref().unwrap_or("-")),
                        format_ms(d.added_at)
                    )?;
                    if let Some(r) = d.revoked_at {
                        write!(out, "  REVOKED {}", format_ms(r))?;
                        if let Some(why) = &d.revoke_reason {
                            write!(out, " ({})", printable(why))?;
                        }
                        if let Some(t) = d.compromised_since {
                            write!(out, ", compromised since {}", format_ms(t))?;
                        }
                    }
                    writeln!(out)?;
                    writeln!(out, "    {}", activity_line(a, missing))?;
                }
            }
            if devices.is_empty() && !json {
                writeln!(out, "no devices enrolled: `truce-server device add KEY --name NAME`")?;
            } else if listed == 0 && !json {
                if let Some(d) = &silent_for {
                    writeln!(out, "every device was heard from within {d}")?;
                }
            }
        }
        DeviceCmd::Revoke { key, reason, compromised_since } => {
            let k = parse_key(&key)?;
            let since = compromised_since.as_deref().map(|t| compromised_time(t, now)).transpose()?;
            let r = dir.open_store()?.revoke_device(&k, reason.as_deref(), now, since)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"device": hex::encode(k), "revoked_at": format_ms(r.revoked_at), "new": r.new,
                           "compromised_since": r.compromised_since.map(format_ms)})
                )?;
            } else {
                let when = format_ms(r.revoked_at);
                let what = if r.new { "revoked" } else { "already revoked" };
                writeln!(
                    out,
                    "{what} {} at {when}: its reports received from now on are quarantined",
                    fingerprint(&k)
                )?;
                if let Some(t) = r.compromised_since {
                    writeln!(
                        out,
                        "compromised since {}: its reports recorded after it are disputed (left out of a verified \
                         export unless --include-disputed)",
                        format_ms(t)
                    )?;
                }
                writeln!(out, "also revoke its TLS certificate (truce-certs revoke NAME) and restart the server with the new crl.pem")?;
            }
        }
    }
    Ok(())
}
