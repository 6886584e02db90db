//! `bundle export`: the queue onto a USB stick when there is no link at all.
//!
//! The file is written with truce-shared's [`BundleWriter`] (DESIGN §4),
//! streaming one report at a time from SQLite, into a temporary file beside
//! the target that is synced and then renamed: a stick pulled out mid-write
//! leaves the old file or none, never half a bundle under the final name.
//! Exporting changes nothing in the queue: reports stay pending until a
//! server acknowledges them (over sync, once the bundle has been imported).

use std::io::BufWriter;
use std::path::Path;

use truce_shared::bundle::BundleWriter;

use crate::error::{AgentError, Result};
use crate::queue::Queue;

/// Writes pending (or all) reports, oldest first, to `path`. Returns how
/// many were written (pruned reports, whose bodies are gone, are not).
pub fn export(queue: &Queue, path: &Path, all: bool) -> Result<u64> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let temp = tempfile::Builder::new()
        .prefix(".truce-bundle-")
        .tempfile_in(parent)
        .map_err(|e| AgentError::io("cannot create a file in", parent, e))?;
    let write_err = |e| AgentError::io("cannot write", path, e);
    let mut writer = BundleWriter::new(BufWriter::new(temp)).map_err(write_err)?;
    // A pruned report has no body to carry: the server already holds it.
    queue.for_each_signed(!all, |_, _, report| match report {
        Some(report) => writer.write(&report).map_err(write_err),
        None => Ok(()),
    })?;
    let count = writer.count();
    let temp = writer.finish().map_err(write_err)?.into_inner().map_err(|e| write_err(e.into_error()))?;
    temp.as_file().sync_all().map_err(write_err)?;
    temp.persist(path).map_err(|e| write_err(e.error))?;
    // The rename itself must reach the stick before anyone pulls it out.
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(count)
}
