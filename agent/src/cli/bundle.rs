//! `bundle export`: pending (or all) reports into a file for a USB stick.

use std::path::Path;

use super::out::Out;
use super::unlock::Unlock;
use crate::error::Result;
use crate::paths::DataDir;

/// Runs `bundle export`.
pub(super) fn export(file: &Path, all: bool, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let agent = keys.open(dir)?;
    let n = agent.export_bundle(file, all)?;
    if out.json {
        out.json_line(&serde_json::json!({ "file": file.display().to_string(), "reports": n, "all": all }))?;
    } else {
        let which = if all { "" } else { "pending " };
        out.line(&format!(
            "wrote {n} {which}report(s) to {} (they stay pending until a server acknowledges them)",
            file.display()
        ))?;
    }
    Ok(())
}
