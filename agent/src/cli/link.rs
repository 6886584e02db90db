//! `link`: store how to reach the server (address, mission CA, this
//! laptop's certificate and key), checked before anything is stored.

use super::args::LinkArgs;
use super::out::Out;
use super::unlock::Unlock;
use crate::error::Result;
use crate::link::LinkInput;
use crate::paths::DataDir;

/// Runs `link`.
pub(super) fn run(a: LinkArgs, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let mut agent = keys.open(dir)?;
    agent.link(&LinkInput {
        server: a.server.clone(),
        ca: a.ca,
        cert: a.cert,
        key: a.key,
        server_key: a.server_key.clone(),
    })?;
    let expected = agent.expected_log_key()?.map(|k| k.text());
    if out.json {
        out.json_line(&serde_json::json!({
            "server": a.server.trim(),
            "data_dir": dir.root().display().to_string(),
            "server_key": expected,
        }))?;
    } else {
        out.line(&format!(
            "linked to {} (certificates stored in {})",
            a.server.trim(),
            agent.dir().link_dir().display()
        ))?;
        out.line(&match expected {
            Some(k) => format!("the server's log key must be {k}: any other is refused"),
            None => match agent.log_key()? {
                Some(k) => format!("the server's log key stays pinned as {}", truce_shared::signing::fingerprint(&k)),
                None => "the server's log key will be pinned at the first sync (no --server-key given)".to_string(),
            },
        })?;
    }
    Ok(())
}
