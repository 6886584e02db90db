//! `stats`: counts by outcome, devices, chains, incidents.

use std::io::Write;

use anyhow::Result;
use truce_shared::text::printable;

use crate::paths::DataDir;

/// Evidence as `stats` counts it: files named by stored reports, held,
/// partly uploaded, missing, and refused by hash.
#[derive(serde::Serialize)]
struct EvidenceStats {
    named: u64,
    held: u64,
    held_bytes: u64,
    partial: u64,
    partial_bytes: u64,
    missing: u64,
    refused: u64,
}

fn evidence_stats(dir: &DataDir, store: &crate::store::Store) -> Result<EvidenceStats> {
    let ev = crate::evidence::Evidence::open(&dir.evidence_dir(), crate::evidence::EvidenceLimits::default())?;
    let c = ev.counts()?;
    let (mut named, mut held) = (0u64, 0u64);
    store.for_each_named_file(&mut |sha, _| {
        named += 1;
        if ev.holds(&sha) {
            held += 1;
        }
    })?;
    Ok(EvidenceStats {
        named,
        held: c.held,
        held_bytes: c.held_bytes,
        partial: c.partial,
        partial_bytes: c.partial_bytes,
        missing: named - held,
        refused: c.refused,
    })
}

pub(super) fn run(dir: &DataDir, json: bool, out: &mut impl Write) -> Result<()> {
    let store = dir.open_store()?;
    let s = store.stats()?;
    let e = evidence_stats(dir, &store)?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        if let Some(m) = v.as_object_mut() {
            m.insert("evidence".into(), serde_json::to_value(&e)?);
        }
        writeln!(out, "{}", serde_json::to_string(&v)?)?;
        return Ok(());
    }
    let r = &s.reports;
    writeln!(
        out,
        "reports: {} verified, {} quarantined, {} rejected (kept as evidence)",
        r.verified, r.quarantined, r.rejected
    )?;
    for (reason, n) in &s.quarantined_by_reason {
        writeln!(out, "  quarantined ({}): {n}", printable(reason))?;
    }
    writeln!(
        out,
        "refused: {} report(s) failed verification ({} distinct)",
        s.rejections.arrivals, s.rejections.distinct
    )?;
    for (reason, n) in &s.rejected_by_reason {
        writeln!(out, "  rejected ({}): {n}", printable(reason))?;
    }
    writeln!(
        out,
        "evidence: {} file(s) named by reports: {} held ({} bytes), {} missing; {} partial upload(s) ({} bytes); {} refused (bytes did not match the signed hash)",
        e.named, e.held, e.held_bytes, e.missing, e.partial, e.partial_bytes, e.refused
    )?;
    writeln!(out, "devices: {} enrolled, {} revoked; forks: {}", s.devices.enrolled, s.devices.revoked, s.forks)?;
    let i = &s.incidents;
    writeln!(
        out,
        "incidents: {} ({} seen by 2 or more devices, at most {}); window {} min, {} m",
        i.total, i.corroborated, i.max_corroboration, i.window.minutes, i.window.metres
    )?;
    if !s.quota_refusals.is_empty() {
        let hits: Vec<String> = s.quota_refusals.iter().map(|(limit, n)| format!("{n} by --{limit}")).collect();
        writeln!(
            out,
            "quota refusals: {} batch(es) refused: {}",
            s.quota_refusals.values().sum::<u64>(),
            hits.join(", ")
        )?;
    }
    for c in &s.chains {
        let mut line = format!(
            "  {} {} ({}): {} seq(s), head {}",
            &c.device[..16],
            printable(c.name.as_deref().unwrap_or("-")),
            c.registry,
            c.seqs,
            c.head_seq
        );
        if c.missing > 0 {
            let gaps: Vec<String> =
                c.gaps.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
            let more = if (c.gaps.len() as u64) < c.missing && c.gaps.len() == 100 { ", …" } else { "" };
            line.push_str(&format!(", {} missing (seq {}{more})", c.missing, gaps.join(", ")));
        }
        if c.forks > 0 {
            line.push_str(&format!(", {} FORKED seq(s), {} report(s) DISPUTED", c.forks, c.disputed));
        } else if c.disputed > 0 {
            line.push_str(&format!(", {} report(s) DISPUTED (recorded after the key was compromised)", c.disputed));
        }
        if c.broken_links > 0 {
            line.push_str(&format!(", {} broken link(s)", c.broken_links));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}
