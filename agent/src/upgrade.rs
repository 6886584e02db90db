//! Converting a data dir made before sealing: its evidence files and TLS
//! key.
//!
//! The queue converts itself (`queue::schema`), the device key is
//! converted by `Agent::upgrade`; this seals each clear copy
//! `attachments/<sha256>` that a report names into `attachments/<keyed
//! name>` and destroys the clear one, destroys clear copies no report names
//! (left by a `record` that failed after copying), and seals the TLS key.
//! Every step skips what is already done, so an interrupted conversion
//! finishes on the next run.

use std::fs::File;

use truce_shared::fs::{self, Access};

use crate::error::{AgentError, Result};
use crate::paths::{self, DataDir};
use crate::queue::Queue;
use crate::vault::DataKey;

/// Seals every clear evidence file the queue's reports name, and removes
/// clear staging leftovers of interrupted `record`s.
pub fn seal_files(dir: &DataDir, queue: &Queue, key: &DataKey) -> Result<()> {
    let adir = dir.attachments_dir();
    if !adir.exists() {
        return Ok(());
    }
    let mut hashes = Vec::new();
    queue.for_each_signed(false, |_, _, signed| {
        if let Some(signed) = signed {
            let env: std::result::Result<truce_shared::Envelope, _> =
                truce_shared::encoding::decode_canonical(&signed.body);
            if let Ok(env) = env {
                hashes.extend(env.observation.attachments.iter().map(|a| a.sha256));
            }
        }
        Ok(())
    })?;
    hashes.sort_unstable();
    hashes.dedup();
    for sha in hashes {
        let clear = adir.join(hex::encode(sha));
        if !clear.exists() {
            continue;
        }
        if !dir.attachment(&key.file_name(&sha)).exists() {
            // Sealed the way `record` seals a new attachment.
            let staged = crate::attachments::stage_attachment(dir, key, &clear)?;
            if staged.attachment.sha256 != sha {
                // The clear copy changed after it was recorded: keep it as
                // it is for a person to look at, and seal nothing under a
                // hash it does not have (dropping the staged copy removes it).
                return Err(AgentError::Corrupt(format!(
                    "{} does not match the hash its report signed: move it away and run again",
                    clear.display()
                )));
            }
            staged.persist(dir)?;
            fs::sync_dir(&adir)?;
        }
        paths::shred(&clear)?;
    }
    // What is left in clear is named by no report: a copy from a `record`
    // that failed after copying, or a staging file. Sealed files start
    // with the magic; everything else goes.
    let entries = std::fs::read_dir(&adir).map_err(|e| AgentError::io("cannot read", &adir, e))?;
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_file() && !is_sealed(&p)? {
            paths::shred(&p)?;
        }
    }
    Ok(fs::sync_dir(&adir)?)
}

fn is_sealed(path: &std::path::Path) -> Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 8];
    let n =
        File::open(path).and_then(|mut f| f.read(&mut magic)).map_err(|e| AgentError::io("cannot read", path, e))?;
    Ok(n == magic.len() && &magic == crate::vault::FILE_MAGIC)
}

/// Seals the clear TLS key `link` stored before sealing, and destroys it
/// and any temporary copies `link` left.
pub fn seal_tls_key(dir: &DataDir, key: &DataKey) -> Result<()> {
    let clear = dir.legacy_link_key();
    if clear.exists() {
        let pem = zeroize::Zeroizing::new(std::fs::read(&clear).map_err(|e| AgentError::io("cannot read", &clear, e))?);
        fs::write_atomic(&dir.link_key(), &key.seal_secret(crate::link::TLS_KEY_LABEL, &pem), Access::Private)?;
        paths::shred(&clear)?;
    }
    if let Ok(entries) = std::fs::read_dir(dir.link_dir()) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".link-") {
                paths::shred(&entry.path())?;
            }
        }
    }
    Ok(())
}
