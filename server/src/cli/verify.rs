//! `verify`: a bundle re-verified offline, report by report, with its log
//! proofs when it carries them.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;
use truce_shared::text::printable;

use crate::offline::{parse_log_pin, verify_bundle, BundleEntry, CheckpointCheck, DeviceList, EvidenceCheck, Seen};

pub(super) fn run(
    bundle: &std::path::Path,
    devices: Option<&std::path::Path>,
    log_key: Option<&str>,
    quiet: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let pin = log_key.map(parse_log_pin).transpose().map_err(|e| anyhow::anyhow!("--log-key: {e}"))?;
    let list = devices.map(|p| DeviceList::open(p).with_context(|| format!("{}", p.display()))).transpose()?;
    let file = std::fs::File::open(bundle).with_context(|| format!("cannot open {}", bundle.display()))?;
    let totals = verify_bundle(file, list.as_ref(), pin.as_ref(), |seen| {
        if json {
            // A report is a line of its own fields (as before bundles carried
            // proofs); anything else is named by its kind.
            let line = match seen {
                Seen::Report(c) => serde_json::to_string(c),
                other => serde_json::to_string(&other),
            };
            return writeln!(out, "{}", line.map_err(std::io::Error::other)?);
        }
        match seen {
            Seen::Checkpoint(c) => checkpoint(out, c),
            Seen::Report(c) => report(out, c, quiet),
            Seen::Evidence(c) => evidence(out, c, quiet),
            Seen::Problem(p) => writeln!(out, "FAIL  {}", printable(p)),
            Seen::Note(n) => writeln!(out, "note  {}", printable(n)),
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
        if totals.log {
            writeln!(out, "log: {} proven in the log, {} not proven", totals.proven, totals.not_proven)?;
        } else if totals.version >= 2 {
            writeln!(out, "log: no log proofs present (a laptop's bundle carries reports and evidence only)")?;
        } else {
            writeln!(out, "log: no log proofs present (a version-1 bundle carries reports only)")?;
        }
        if totals.evidence > 0 {
            writeln!(
                out,
                "evidence: {} file(s): {} match their signed hash, {} failed",
                totals.evidence, totals.evidence_ok, totals.evidence_failed
            )?;
        }
        if totals.truncated {
            writeln!(out, "the bundle is damaged: reading stopped at the report marked FAIL")?;
        }
    }
    Ok(if totals.clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn checkpoint(out: &mut impl Write, c: &CheckpointCheck) -> std::io::Result<()> {
    match (&c.error, &c.origin, c.size) {
        (None, Some(origin), Some(size)) if c.pinned => writeln!(
            out,
            "checkpoint: {} at {size} entries, signed by the pinned log key {}",
            printable(origin),
            c.fingerprint
        ),
        (None, Some(origin), Some(size)) => writeln!(
            out,
            "checkpoint: {} at {size} entries, signed by log key {} as the bundle says — UNPINNED: anyone can \
             sign a bundle; give --log-key with the fingerprint the coordinator reads out to check it is the \
             server's",
            printable(origin),
            c.fingerprint
        ),
        (error, ..) => writeln!(
            out,
            "FAIL  checkpoint at byte {}: {}; no report of this bundle is proven",
            c.offset,
            printable(error.as_deref().unwrap_or("failed"))
        ),
    }
}

fn evidence(out: &mut impl Write, c: &EvidenceCheck, quiet: bool) -> std::io::Result<()> {
    match &c.error {
        None if quiet => Ok(()),
        None => writeln!(out, "ok    evidence {} ({} bytes) matches its signed hash", c.sha256, c.size),
        Some(e) => writeln!(out, "FAIL  evidence {} ({} bytes): {}", c.sha256, c.size, printable(e)),
    }
}

fn report(out: &mut impl Write, c: &BundleEntry, quiet: bool) -> std::io::Result<()> {
    let proof_ok = c.proven != Some(false);
    if quiet && c.ok && proof_ok {
        return Ok(());
    }
    let who = match (&c.device_name, &c.device) {
        (Some(n), _) => printable(n).into_owned(),
        (None, Some(d)) => d.get(..16).unwrap_or(d).to_string(),
        (None, None) => "-".into(),
    };
    let id = c.id.as_deref().and_then(|i| i.get(..16)).unwrap_or("-");
    let seq = c.seq.map(|s| format!("seq {s}")).unwrap_or_default();
    if c.ok {
        let tag = if proof_ok { "ok  " } else { "FAIL" };
        write!(out, "{tag}  #{:<6} {id}…  {who} {seq}  {}", c.index, c.observed_at.as_deref().unwrap_or(""))?;
    } else {
        write!(
            out,
            "FAIL  #{:<6} at byte {}: {}  (id as read {id}…, device {who})",
            c.index,
            c.offset,
            printable(c.error.as_deref().unwrap_or("failed"))
        )?;
    }
    match (c.proven, c.log_entry) {
        (Some(true), Some(e)) => write!(out, "  proven in the log (entry {e})")?,
        (Some(false), _) => write!(out, "  NOT PROVEN: {}", printable(c.proof_error.as_deref().unwrap_or("no proof")))?,
        _ => {}
    }
    if let Some(note) = &c.note {
        write!(out, "  ({})", printable(note))?;
    }
    writeln!(out)
}
