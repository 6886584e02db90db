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
    agent.link(&LinkInput { server: a.server.clone(), ca: a.ca, cert: a.cert, key: a.key })?;
    if out.json {
        out.json_line(&serde_json::json!({ "server": a.server.trim(), "data_dir": dir.root().display().to_string() }))?;
    } else {
        out.line(&format!(
            "linked to {} (certificates stored in {})",
            a.server.trim(),
            agent.dir().link_dir().display()
        ))?;
    }
    Ok(())
}
