//! `device add|list|revoke`: the registry of laptops' report keys.

use std::io::Write;

use anyhow::Result;
use serde_json::json;
use truce_shared::signing::fingerprint;
use truce_shared::text::printable;
use truce_shared::time::format_ms;

use super::args::{parse_key, DeviceCmd};
use crate::paths::DataDir;
use crate::store::Device;

fn device_json(d: &Device) -> serde_json::Value {
    json!({
        "device": hex::encode(d.key),
        "fingerprint": fingerprint(&d.key),
        "name": d.name,
        "added_at": format_ms(d.added_at),
        "revoked_at": d.revoked_at.map(format_ms),
        "revoke_reason": d.revoke_reason,
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
        DeviceCmd::List => {
            let devices = dir.open_store()?.devices()?;
            for d in &devices {
                if json {
                    writeln!(out, "{}", device_json(d))?;
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
                    }
                    writeln!(out)?;
                }
            }
            if devices.is_empty() && !json {
                writeln!(out, "no devices enrolled: `truce-server device add KEY --name NAME`")?;
            }
        }
        DeviceCmd::Revoke { key, reason } => {
            let k = parse_key(&key)?;
            let r = dir.open_store()?.revoke_device(&k, reason.as_deref(), now)?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"device": hex::encode(k), "revoked_at": format_ms(r.revoked_at), "new": r.new})
                )?;
            } else {
                let when = format_ms(r.revoked_at);
                let what = if r.new { "revoked" } else { "already revoked" };
                writeln!(
                    out,
                    "{what} {} at {when}: its reports received from now on are quarantined",
                    fingerprint(&k)
                )?;
                writeln!(out, "also revoke its TLS certificate (truce-certs revoke NAME) and restart the server with the new crl.pem")?;
            }
        }
    }
    Ok(())
}
