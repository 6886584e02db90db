//! `init`: the receipt key and the database, made once.

use std::io::Write;

use anyhow::Result;
use serde_json::json;
use truce_shared::signing::fingerprint;

use crate::paths::DataDir;

pub(super) fn run(dir: &DataDir, mission: &str, json: bool, out: &mut impl Write) -> Result<()> {
    let key = dir.init(mission)?;
    let pk = key.verifying_key().to_bytes();
    if json {
        writeln!(
            out,
            "{}",
            json!({"data_dir": dir.root(), "server_key": hex::encode(pk), "fingerprint": fingerprint(&pk)})
        )?;
    } else {
        writeln!(out, "server initialised in {}", dir.root().display())?;
        writeln!(out, "receipt key: {}", hex::encode(pk))?;
        writeln!(out, "fingerprint: {}", fingerprint(&pk))?;
    }
    Ok(())
}
