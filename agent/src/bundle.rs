//! `bundle export`: the queue onto a USB stick when there is no link at all.
//!
//! The file is a version-2 bundle (`TRUCEB02`, DESIGN §4, §10; the layout
//! is truce-shared's `bundle` module): the reports first, one at a time
//! from SQLite, then the evidence files they name, each opened from its
//! sealed copy and written as pieces in order (the copy is authenticated
//! as it is read, so a damaged copy is left out with a warning, never
//! written). Memory stays that of one report or one piece.
//!
//! Which files go: with pending reports only (the default), every file of
//! a report not rejected that the server does not hold yet, so a photo
//! whose report went over a link too thin for it still reaches the server
//! by stick; with `--all`, every file still on the laptop. `--no-evidence`
//! writes reports only.
//!
//! The file is written through `truce_shared::fs`'s [`AtomicFile`] (a
//! temporary file beside the target, synced, renamed, the directory
//! synced), readable by its owner only: a stick pulled out mid-write leaves
//! the old file or none, never half a bundle under the final name. The
//! bundle is in clear (a server must read it): keep the stick as you keep
//! the laptop. Exporting changes nothing in the queue: reports stay pending
//! until a server acknowledges them, and files stay "not yet sent" until a
//! sync hears the server holds them.

use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use truce_shared::bundle::{Item, ItemWriter};
use truce_shared::fs::{Access, AtomicFile};
use truce_shared::limits::MAX_EVIDENCE_CHUNK;
use zeroize::{Zeroize, Zeroizing};

use crate::error::{AgentError, Result};
use crate::paths::DataDir;
use crate::queue::Queue;
use crate::vault::DataKey;

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Exported {
    /// Reports written.
    pub reports: u64,
    /// Evidence files written.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files left out, and why (a copy missing or damaged).
    pub left_out: Vec<String>,
}

/// Writes pending (or all) reports, oldest first, and (with `evidence`)
/// the files they name to `path`. Pruned reports, whose bodies are gone,
/// are not written.
pub fn export(queue: &Queue, dir: &DataDir, key: &DataKey, path: &Path, all: bool, evidence: bool) -> Result<Exported> {
    let file = AtomicFile::create(path, Access::Private)?;
    let write_err = |e| AgentError::io("cannot write", path, e);
    let mut writer = ItemWriter::new(BufWriter::new(file)).map_err(write_err)?;
    // A pruned report has no body to carry: the server already holds it.
    queue.for_each_signed(!all, |_, _, report| match report {
        Some(report) => writer.write(&Item::Report(report)).map_err(write_err),
        None => Ok(()),
    })?;
    let mut done = Exported { reports: writer.reports(), ..Exported::default() };
    if evidence {
        for name in queue.files_for_bundle(all)? {
            let source = dir.attachment(&name);
            match write_file(&mut writer, key, &source) {
                Ok(Some(bytes)) => {
                    done.files += 1;
                    done.bytes += bytes;
                }
                Ok(None) => done.left_out.push(format!("{}: not on this laptop any more", source.display())),
                Err(Written::Copy(e)) => done.left_out.push(e.to_string()),
                Err(Written::Bundle(e)) => return Err(write_err(e)),
            }
        }
    }
    let file = writer.finish().map_err(write_err)?.into_inner().map_err(|e| write_err(e.into_error()))?;
    // Synced, renamed, and the rename synced before anyone pulls the stick out.
    file.commit()?;
    Ok(done)
}

/// Why a file was not written whole.
enum Written {
    /// The laptop's copy could not be read or is damaged: leave it out.
    Copy(AgentError),
    /// The bundle could not be written: stop.
    Bundle(std::io::Error),
}

/// Writes one sealed file as evidence items: its hash and length first
/// (one authenticated pass), then its pieces (a second). `None` if the
/// copy is gone. A copy that breaks during the second pass leaves the
/// pieces already written, which a reader refuses as a file cut short.
fn write_file<W: Write>(
    writer: &mut ItemWriter<W>,
    key: &DataKey,
    source: &Path,
) -> std::result::Result<Option<u64>, Written> {
    let open = || match std::fs::File::open(source) {
        Ok(f) => Ok(Some(BufReader::new(f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Written::Copy(AgentError::io("cannot read", source, e))),
    };
    let Some(mut src) = open()? else { return Ok(None) };
    let (sha256, size) = key.open_file(&mut src, &mut std::io::sink(), source).map_err(Written::Copy)?;
    let Some(mut src) = open()? else { return Ok(None) };
    let mut reader = key.file_reader(&mut src, source).map_err(Written::Copy)?;
    let mut offset = 0u64;
    let mut piece = Zeroizing::new(Vec::with_capacity(MAX_EVIDENCE_CHUNK));
    // Clear bytes are wiped once written, as everywhere on this laptop.
    let mut put = |piece: &mut Zeroizing<Vec<u8>>, offset: &mut u64| {
        let n = piece.len() as u64;
        let item = Item::Evidence { sha256, size, offset: *offset, data: std::mem::take(&mut **piece) };
        let written = writer.write(&item);
        if let Item::Evidence { mut data, .. } = item {
            data.zeroize();
            data.clear();
            *piece = Zeroizing::new(data);
        }
        written.map_err(Written::Bundle)?;
        *offset += n;
        Ok(())
    };
    while let Some(data) = reader.next_chunk().map_err(Written::Copy)? {
        let mut data = data;
        while !data.is_empty() {
            let take = data.len().min(MAX_EVIDENCE_CHUNK - piece.len());
            piece.extend_from_slice(&data[..take]);
            data = &data[take..];
            if piece.len() == MAX_EVIDENCE_CHUNK {
                put(&mut piece, &mut offset)?;
            }
        }
    }
    // The last piece, or the only one of an empty file.
    if !piece.is_empty() || size == 0 {
        put(&mut piece, &mut offset)?;
    }
    Ok(Some(size))
}
