//! `bundle export`: pending (or all) reports into a file for a USB stick.

use std::path::Path;

use super::out::Out;
use super::unlock::Unlock;
use crate::error::Result;
use crate::paths::DataDir;

/// Runs `bundle export`.
pub(super) fn export(
    file: &Path,
    all: bool,
    evidence: bool,
    dir: &DataDir,
    keys: &Unlock,
    out: &mut Out,
) -> Result<()> {
    let agent = keys.open(dir)?;
    let done = agent.export_bundle(file, all, evidence)?;
    for why in &done.left_out {
        eprintln!("warning: an evidence file is left out of the bundle: {why}");
    }
    if out.json {
        out.json_line(&serde_json::json!({
            "file": file.display().to_string(),
            "reports": done.reports,
            "all": all,
            "evidence_files": done.files,
            "evidence_bytes": done.bytes,
            "evidence_left_out": done.left_out,
        }))?;
    } else {
        let which = if all { "" } else { "pending " };
        let n = done.reports;
        let files = if evidence {
            format!(" and {} evidence file(s) ({} bytes)", done.files, done.bytes)
        } else {
            " and no evidence (--no-evidence)".into()
        };
        out.line(&format!(
            "wrote {n} {which}report(s){files} to {} (they stay pending until a server acknowledges them)",
            file.display()
        ))?;
    }
    Ok(())
}
