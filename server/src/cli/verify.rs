//! `verify`: a bundle re-verified offline, report by report.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;
use truce_shared::text::printable;

pub(super) fn run(
    bundle: &std::path::Path,
    devices: Option<&std::path::Path>,
    quiet: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
    use crate::offline::{verify_bundle, DeviceList};
    let list = devices.map(|p| DeviceList::open(p).with_context(|| format!("{}", p.display()))).transpose()?;
    let file = std::fs::File::open(bundle).with_context(|| format!("cannot open {}", bundle.display()))?;
    let totals = verify_bundle(file, list.as_ref(), |c| {
        if json {
            return writeln!(out, "{}", serde_json::to_string(c).map_err(std::io::Error::other)?);
        }
        if quiet && c.ok {
            return Ok(());
        }
        let who = match (&c.device_name, &c.device) {
            (Some(n), _) => printable(n).into_owned(),
            (None, Some(d)) => d.get(..16).unwrap_or(d).to_string(),
            (None, None) => "-".into(),
        };
        let id = c.id.as_deref().map(|i| &i[..16]).unwrap_or("-");
        let seq = c.seq.map(|s| format!("seq {s}")).unwrap_or_default();
        if c.ok {
            write!(out, "ok    #{:<6} {id}…  {who} {seq}  {}", c.index, c.observed_at.as_deref().unwrap_or(""))?;
            if let Some(note) = &c.note {
                write!(out, "  ({})", printable(note))?;
            }
            writeln!(out)
        } else {
            writeln!(
                out,
                "FAIL  #{:<6} at byte {}: {}  (id as read {id}…, device {who})",
                c.index,
                c.offset,
                printable(c.error.as_deref().unwrap_or("failed"))
            )
        }
    })
    .with_context(|| format!("{}", bundle.display()))?;
    if json {
        writeln!(out, "{}", json!({"totals": totals}))?;
    } else {
        write!(out, "{} report(s): {} verified, {} failed", totals.reports, totals.ok, totals.failed)?;
        if list.is_none() {
            write!(out, " (signatures only: give --devices FILE to check enrolment too)")?;
        }
        writeln!(out)?;
        if totals.truncated {
            writeln!(out, "the bundle is damaged: reading stopped at the report marked FAIL")?;
        }
    }
    Ok(if totals.failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
