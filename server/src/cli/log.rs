//! `key`, `log checkpoint|entries|prove` and `audit`: the transparency log
//! for coordinators and auditors (DESIGN §9).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::json;
use truce_shared::log::{self as tlog, HashReader};
use truce_shared::signing::fingerprint;
use truce_shared::Bytes32;

use super::LogCmd;
use crate::paths::DataDir;
use crate::store::Store;

fn opened(dir: &DataDir) -> Result<(Store, std::sync::Arc<tlog::LogKey>)> {
    let store = dir.open_store()?;
    let key = store.log_key().context("the store's log is not set up")?;
    Ok((store, key))
}

/// `key`: the log's public key, fingerprint, origin and verifier key.
pub(super) fn key(dir: &DataDir, json: bool, out: &mut impl Write) -> Result<()> {
    let (_, key) = opened(dir)?;
    let pk = key.public();
    if json {
        writeln!(
            out,
            "{}",
            json!({"log_key": hex::encode(pk), "fingerprint": fingerprint(&pk), "origin": key.origin(),
                   "verifier_key": key.verifier_key()})
        )?;
    } else {
        writeln!(out, "log key:      {}", hex::encode(pk))?;
        writeln!(out, "fingerprint:  {}", fingerprint(&pk))?;
        writeln!(out, "origin:       {}", key.origin())?;
        writeln!(out, "verifier key: {}", key.verifier_key())?;
        writeln!(out, "Give monitors the fingerprint: truce-agent link … --server-key {}", fingerprint(&pk))?;
    }
    Ok(())
}

pub(super) fn run(dir: &DataDir, cmd: LogCmd, json: bool, out: &mut impl Write) -> Result<()> {
    let (store, _) = opened(dir)?;
    let head = store.log_head()?.context("the store's log is not set up")?;
    match cmd {
        LogCmd::Checkpoint => {
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"size": head.size, "root": hex::encode(head.root.0), "checkpoint": head.checkpoint})
                )?;
            } else {
                write!(out, "{}", head.checkpoint)?;
            }
        }
        LogCmd::Entries { out: file } => entries(&store, &file)?,
        LogCmd::Prove { id } => prove(&store, &id, &head, json, out)?,
    }
    Ok(())
}

fn entries(store: &Store, file: &Path) -> Result<()> {
    let mut w: Box<dyn Write> = if file == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(file).with_context(|| format!("cannot create {}", file.display()))?,
        ))
    };
    let mut failed = None;
    store
        .read(|tx| {
            tx.stream("SELECT idx, entry FROM log_entries ORDER BY idx", &[], &mut |r| {
                let bytes = r.bytes(1)?;
                let line = json!({"index": r.i64(0)?, "entry": hex::encode(bytes),
                              "leaf": hex::encode(tlog::record_hash(bytes).0)});
                if let Err(e) = writeln!(w, "{line}") {
                    failed = Some(e);
                    return Err(crate::store::StoreError::Stopped);
                }
                Ok(())
            })
        })
        .or_else(|e| if matches!(e, crate::store::StoreError::Stopped) { Ok(()) } else { Err(e) })?;
    if let Some(e) = failed {
        return Err(e).context("cannot write the entries");
    }
    w.flush()?;
    Ok(())
}

struct Hashes<'a>(&'a Store);

impl HashReader for Hashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog::Hash>, tlog::TreeError> {
        self.0
            .read(|tx| {
                indexes
                    .iter()
                    .map(|&i| {
                        tx.one("SELECT hash FROM log_hashes WHERE idx = ?1", &[crate::store::Arg::Int(i as i64)], |r| {
                            r.b32(0)
                        })
                    })
                    .collect::<Result<Option<Vec<_>>, _>>()
            })
            .ok()
            .flatten()
            .map(|v| v.into_iter().map(tlog::Hash).collect())
            .ok_or(tlog::TreeError::IndexesNotInTree)
    }
}

fn prove(store: &Store, id: &Bytes32, head: &crate::store::Head, json: bool, out: &mut impl Write) -> Result<()> {
    let entry = store.read(|tx| {
        let arg = [crate::store::Arg::Blob(&id[..])];
        match tx.one("SELECT entry FROM reports WHERE id = ?1", &arg, |r| r.opt_i64(0))? {
            Some(e) => Ok(e),
            None => Ok(tx.one("SELECT entry FROM rejections WHERE id = ?1", &arg, |r| r.opt_i64(0))?.flatten()),
        }
    })?;
    let Some(index) = entry.map(|e| e as u64) else {
        bail!("no report {} in the log", hex::encode(id));
    };
    let proof = tlog::prove_record(head.size, index, &Hashes(store)).context("cannot read the proof")?;
    let leaf = Hashes(store).read_hashes(&[tlog::stored_hash_index(0, index)]).context("cannot read the leaf")?[0];
    let hexes: Vec<String> = proof.iter().map(|h| hex::encode(h.0)).collect();
    if json {
        writeln!(
            out,
            "{}",
            json!({"id": hex::encode(id), "index": index, "size": head.size, "leaf": hex::encode(leaf.0),
                   "root": hex::encode(head.root.0), "proof": hexes, "checkpoint": head.checkpoint})
        )?;
    } else {
        writeln!(out, "report {} is entry {index} of {}", hex::encode(id), head.size)?;
        writeln!(out, "leaf hash: {}", hex::encode(leaf.0))?;
        writeln!(out, "root:      {}", hex::encode(head.root.0))?;
        writeln!(out, "inclusion proof (RFC 9162, {} hashes):", hexes.len())?;
        for h in &hexes {
            writeln!(out, "  {h}")?;
        }
        write!(out, "checkpoint:\n{}", head.checkpoint)?;
    }
    Ok(())
}

/// `audit`: exit 1 naming each discrepancy.
pub(super) fn audit(dir: &DataDir, files: &[PathBuf], json: bool, out: &mut impl Write) -> Result<ExitCode> {
    let (store, _) = opened(dir)?;
    let mut checkpoints = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read checkpoint {}", f.display()))?;
        checkpoints.push((f.display().to_string(), text));
    }
    let a = crate::audit::audit(&store, &checkpoints)?;
    if json {
        writeln!(out, "{}", serde_json::to_string(&a)?)?;
    } else {
        for d in &a.discrepancies {
            writeln!(out, "DISCREPANCY: {}", truce_shared::text::printable(d))?;
        }
        let verdict = if a.discrepancies.is_empty() { "clean" } else { "FAILED" };
        writeln!(
            out,
            "audit {verdict}: {} log entries replayed (root {}), {} reports, {} refused, {} devices, {} checkpoint(s) checked, {} discrepancies",
            a.entries,
            a.root,
            a.reports,
            a.refused,
            a.devices,
            a.checkpoints,
            a.discrepancies.len()
        )?;
    }
    Ok(if a.discrepancies.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
