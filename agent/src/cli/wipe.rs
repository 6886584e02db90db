//! `wipe`: destroy this laptop's keys, then its queue and evidence copies,
//! after a typed confirmation (or `--yes`); says what it cannot promise.

use std::process::ExitCode;

use super::out::Out;
use super::unlock::on_terminal;
use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::paths::DataDir;

/// Runs `wipe`.
pub(super) fn run(dir: &DataDir, yes: bool, out: &mut Out) -> Result<ExitCode> {
    // Only what exists is looked at: a damaged keyring must not stop a wipe.
    if ![dir.keyring(), dir.legacy_key_file(), dir.queue_file(), dir.link_dir()].iter().any(|p| p.exists()) {
        return Err(AgentError::NotInitialised(dir.root().to_path_buf()));
    }
    if !yes {
        if !on_terminal() {
            return Err(AgentError::input("wipe", "no terminal to confirm on: add --yes to wipe without asking"));
        }
        eprintln!(
            "This destroys the keys of {} for good, then its queue and evidence copies. Reports not yet delivered are lost.",
            dir.root().display()
        );
        eprint!("Type WIPE to go on: ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(AgentError::Terminal)?;
        if line.trim() != "WIPE" {
            return Err(AgentError::input("wipe", "not confirmed: nothing was destroyed"));
        }
    }
    let gone = Agent::wipe(dir)?;
    const CANNOT: &str = "wipe cannot reach copies of this disk made earlier (backups, an image taken by anyone who \
        held the laptop), blocks an SSD or the file system kept elsewhere when the files were rewritten, or what the \
        server already holds";
    if out.json {
        let gone: Vec<String> = gone.iter().map(|p| p.display().to_string()).collect();
        out.json_line(&serde_json::json!({ "destroyed": gone, "cannot_promise": CANNOT }))?;
    } else {
        out.line(&format!(
            "wiped {}: the keys were overwritten and removed, so nothing sealed there can be read again, with or without the passphrase",
            dir.root().display()
        ))?;
        out.line(&format!("note: {CANNOT}"))?;
    }
    Ok(ExitCode::SUCCESS)
}
