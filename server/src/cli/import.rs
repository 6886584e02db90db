//! `import`: bundles in, and what became of each report.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use truce_shared::text::printable;

use crate::paths::DataDir;

pub(super) fn run(
    dir: &DataDir,
    files: &[PathBuf],
    limits: crate::evidence::EvidenceLimits,
    json: bool,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let sink = crate::import::EvidenceSink {
        evidence: crate::evidence::Evidence::open(&dir.evidence_dir(), limits)?,
        store: dir.open_store()?,
    };
    // The bar follows the bundles' bytes (a plain line every tenth when
    // stderr is no terminal, nothing under --json).
    let total = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    let progress = crate::progress::Progress::new("import", total, json);
    let s = crate::import::import_files(dir.open_store()?, &sink, files, &progress)
        .context("import stopped (the reports before it are stored)")?;
    if json {
        writeln!(out, "{}", serde_json::to_string(&s)?)?;
    } else {
        let total = s.accepted + s.duplicate + s.quarantined_total() + s.rejected_total();
        writeln!(
            out,
            "imported {total} report(s): {} accepted, {} duplicate, {} quarantined, {} rejected",
            s.accepted,
            s.duplicate,
            s.quarantined_total(),
            s.rejected_total()
        )?;
        for (reason, n) in &s.quarantined {
            writeln!(out, "  quarantined ({}): {n}", printable(reason))?;
        }
        for (reason, n) in &s.rejected {
            writeln!(out, "  rejected ({}): {n}", printable(reason))?;
        }
        let files = s.evidence_stored + s.evidence_already_held + s.evidence_refused_total();
        if files > 0 {
            writeln!(
                out,
                "evidence: {files} file(s): {} stored ({} bytes), {} already held, {} refused",
                s.evidence_stored,
                s.evidence_bytes,
                s.evidence_already_held,
                s.evidence_refused_total()
            )?;
            for (reason, n) in &s.evidence_refused {
                writeln!(out, "  refused ({}): {n}", printable(reason))?;
            }
        }
    }
    for p in &s.problems {
        if p.index == 0 {
            eprintln!("error: {}: {}", p.file.display(), printable(&p.error.to_string()));
        } else {
            eprintln!("error: {}: report #{}: {}", p.file.display(), p.index, printable(&p.error.to_string()));
        }
    }
    if s.problems_not_listed > 0 {
        eprintln!(
            "error: and {} more unreadable frame(s) or file(s), not listed (the first {} are above)",
            s.problems_not_listed,
            crate::import::MAX_PROBLEMS_LISTED
        );
    }
    // Unreadable input is not silently dropped: the exit status says so.
    Ok(if s.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
