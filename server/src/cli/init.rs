//! `init`: the receipt key, the log key and the database, made once.

use std::io::Write;

use anyhow::{bail, Result};
use serde_json::json;
use truce_shared::log::{valid_mission, LogKey};
use truce_shared::signing::fingerprint;

use crate::paths::DataDir;

pub(super) fn run(dir: &DataDir, mission: &str, json: bool, out: &mut impl Write) -> Result<()> {
    if !valid_mission(mission) {
        bail!("--mission {mission:?}: use 1 to 64 letters, digits, '.', '_' or '-' (it names the log)");
    }
    let key = dir.init(mission)?;
    let pk = key.verifying_key().to_bytes();
    let log = LogKey::new(&dir.load_log_seed()?, mission);
    let lk = log.public();
    if json {
        writeln!(
            out,
            "{}",
            json!({"data_dir": dir.root(), "server_key": hex::encode(pk), "fingerprint": fingerprint(&pk),
                   "log_key": hex::encode(lk), "log_fingerprint": fingerprint(&lk), "origin": log.origin()})
        )?;
    } else {
        writeln!(out, "server initialised in {}", dir.root().display())?;
        writeln!(out, "receipt key:     {}", hex::encode(pk))?;
        writeln!(out, "log key:         {}", hex::encode(lk))?;
        writeln!(out, "log fingerprint: {}", fingerprint(&lk))?;
        writeln!(out, "Give monitors the log fingerprint: truce-agent link … --server-key {}", fingerprint(&lk))?;
    }
    Ok(())
}
