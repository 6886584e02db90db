//! The device and its passphrase: `init` (make the key and the queue),
//! `key` (show the public key and fingerprint) and `passphrase` (change or
//! remove it).

use serde::Serialize;

use super::out::Out;
use super::prune::parse_keep;
use super::unlock::{warn_unprotected, Unlock};
use crate::agent::{Agent, DirState};
use crate::error::{AgentError, Result};
use crate::paths::DataDir;
use crate::vault::Protection;

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

/// Runs `init`.
pub(super) fn init(keep_delivered: Option<String>, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let keep = keep_delivered.as_deref().map(|k| parse_keep("--keep-delivered", k)).transpose()?;
    if Agent::dir_state(dir)? != DirState::Empty {
        return Err(AgentError::AlreadyInitialised(dir.root().to_path_buf()));
    }
    let protection = keys.choose(keys.file.as_ref(), keys.no_passphrase)?;
    if matches!(protection, Protection::None) {
        warn_unprotected();
    }
    let mut agent = Agent::init(dir.root(), &protection)?;
    if let Some(ms) = keep {
        agent.set_keep_delivered_ms(ms)?;
    }
    key_out(&agent, dir, out, true)
}

/// Runs `key`.
pub(super) fn key(dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let agent = keys.open_locked(dir)?;
    key_out(&agent, dir, out, false)
}

/// Runs `passphrase`: a new one from `new_file` or asked twice, or none
/// with `remove`.
pub(super) fn passphrase(
    new_file: Option<std::path::PathBuf>,
    remove: bool,
    dir: &DataDir,
    keys: &Unlock,
    out: &mut Out,
) -> Result<()> {
    let state = Agent::dir_state(dir)?;
    match state {
        DirState::Empty => return Err(AgentError::NotInitialised(dir.root().to_path_buf())),
        DirState::NeedsUpgrade => {
            // Converting asks for the new passphrase anyway.
            keys.upgrade(dir)?;
        }
        DirState::Sealed | DirState::Unprotected => {
            let old = if state == DirState::Sealed { Some(keys.current()?) } else { None };
            // Check the old one before asking twice for a new one.
            Agent::check_passphrase(dir, old.as_ref())?;
            let new = keys.choose(new_file.as_ref(), remove || keys.no_passphrase)?;
            Agent::change_passphrase(dir, old.as_ref(), &new)?;
        }
    }
    let protected = Agent::dir_state(dir)? == DirState::Sealed;
    if out.json {
        out.json_line(&serde_json::json!({ "protected": protected, "data_dir": dir.root().display().to_string() }))?;
    } else if protected {
        out.line("passphrase changed: use the new one from now on")?;
    } else {
        warn_unprotected();
        out.line("passphrase removed")?;
    }
    Ok(())
}

/// The public key and fingerprint; `new` adds what to do with them after `init`.
fn key_out(agent: &Agent, dir: &DataDir, out: &mut Out, new: bool) -> Result<()> {
    let root = dir.root().display().to_string();
    let device = hex::encode(agent.device());
    if out.json {
        out.json_line(&KeyJson { device, fingerprint: agent.fingerprint(), data_dir: root.clone() })?;
    } else {
        if new {
            out.line(&format!("device key created in {root}"))?;
        }
        out.line(&format!("public key:  {device}"))?;
        out.line(&format!("fingerprint: {}", agent.fingerprint()))?;
        if new {
            out.line("read the fingerprint out to the coordinator so they can enrol this laptop")?;
        }
    }
    Ok(())
}
