//! `bundle export`: the queue onto a USB stick when there is no link at all.
//!
//! The file is written with truce-shared's [`BundleWriter`] (DESIGN §4),
//! streaming one report at a time from SQLite, through `truce_shared::fs`'s
//! [`AtomicFile`] (a temporary file beside the target, synced, renamed, the
//! directory synced), readable by its owner only: a stick pulled out mid-write
//! leaves the old file or none, never half a bundle under the final name.
//! Exporting changes nothing in the queue: reports stay pending until a
//! server acknowledges them (over sync, once the bundle has been imported).

use std::io::BufWriter;
use std::path::Path;

use truce_shared::bundle::BundleWriter;
use truce_shared::fs::{Access, AtomicFile};

use crate::error::{AgentError, Result};
use crate::queue::Queue;

/// Writes pending (or all) reports, oldest first, to `path`. Returns how
/// many were written (pruned reports, whose bodies are gone, are not).
pub fn export(queue: &Queue, path: &Path, all: bool) -> Result<u64> {
    let file = AtomicFile::create(path, Access::Private)?;
    let write_err = |e| AgentError::io("cannot write", path, e);
    let mut writer = BundleWriter::new(BufWriter::new(file)).map_err(write_err)?;
    // A pruned report has no body to carry: the server already holds it.
    queue.for_each_signed(!all, |_, _, report| match report {
        Some(report) => writer.write(&report).map_err(write_err),
        None => Ok(()),
    })?;
    let count = writer.count();
    let file = writer.finish().map_err(write_err)?.into_inner().map_err(|e| write_err(e.into_error()))?;
    // Synced, renamed, and the rename synced before anyone pulls the stick out.
    file.commit()?;
    Ok(count)
}
