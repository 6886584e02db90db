//! JSON Lines: one object a line, written directly and in a pipeline of
//! three threads, because at a million rows the formatting is the export.

use std::io::Write;
use std::sync::mpsc;

use super::columns::{attachments_out, Cell, ExportRow};
use super::ExportError;
use crate::store::{ReportQuery, ReportRow, Store};

/// The row as one JSON object: exactly the bytes `serde_json` writes for
/// it (a test holds the two equal), but the words (ids, times, fixed
/// vocabulary), which never need escaping, are copied as they are.
/// serde_json's escaping scan over them was the largest single cost in
/// profiles of a million-row export.
pub(super) fn write_row(row: &ExportRow, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let mut first = true;
    for (name, cell) in row.cells() {
        out.extend_from_slice(if first { b"{\"" } else { b",\"" });
        first = false;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match cell {
            Cell::Word(Some(v)) => {
                debug_assert!(
                    v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-:.".contains(&b)),
                    "{v:?} needs escaping"
                );
                out.push(b'"');
                out.extend_from_slice(v.as_bytes());
                out.push(b'"');
            }
            Cell::Word(None) => out.extend_from_slice(b"null"),
            Cell::Text(v) => serde_json::to_writer(&mut *out, &v)?,
            Cell::Unsigned(v) => serde_json::to_writer(&mut *out, &v)?,
            Cell::Signed(v) => serde_json::to_writer(&mut *out, &v)?,
            Cell::Float(v) => serde_json::to_writer(&mut *out, &v)?,
            Cell::Bool(v) => serde_json::to_writer(&mut *out, &v)?,
            Cell::Attachments(v, h) => serde_json::to_writer(&mut *out, &attachments_out(v, h))?,
        }
    }
    out.push(b'}');
    Ok(())
}

/// Rows per batch handed from the reading thread to the formatting thread.
pub(super) const PIPE_ROWS: usize = 256;
/// Batches in flight between each two stages. With [`PIPE_ROWS`] this
/// bounds an export's memory to a few megabytes whatever its size.
pub(super) const PIPE_DEPTH: usize = 4;

/// JSON Lines as a pipeline of three threads: this one steps SQLite, a
/// second decodes each signed body and builds its JSON, a third writes
/// the text out. Profiles of a million-row export (about 1 GB of JSON)
/// showed the three about equal once the file is real: writing it into
/// the page cache cost the kernel as much CPU as formatting it. Three
/// stages let a two-core server keep both cores busy.
///
/// Rows keep their order: batches go through FIFO channels. The first
/// error stops the pipeline: a stage whose neighbour hung up stops too,
/// and the error returned is the one that started it.
pub(super) fn export_jsonl<W: Write + Send + ?Sized>(
    store: &Store,
    query: &ReportQuery,
    out: &mut W,
) -> Result<u64, ExportError> {
    std::thread::scope(|scope| {
        let (rows_tx, rows_rx) = mpsc::sync_channel::<Vec<ReportRow>>(PIPE_DEPTH);
        let (text_tx, text_rx) = mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
        let formatter = scope.spawn(move || -> Result<(), ExportError> {
            for rows in rows_rx {
                let mut text = Vec::with_capacity(rows.len() * 1024);
                for row in rows {
                    write_row(&ExportRow::from_row_with(row, query.evidence.as_deref())?, &mut text)?;
                    text.push(b'\n');
                }
                if text_tx.send(text).is_err() {
                    break; // the writer stopped on an error; it reports it
                }
            }
            Ok(())
        });
        let writer = scope.spawn(move || -> Result<(), ExportError> {
            for text in text_rx {
                out.write_all(&text)?;
            }
            Ok(())
        });
        let mut batch = Vec::with_capacity(PIPE_ROWS);
        let read = store.for_each_report(query, |row| {
            batch.push(row);
            if batch.len() == PIPE_ROWS {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(PIPE_ROWS));
                // A closed channel: a later stage failed; its error is the one to report.
                rows_tx.send(full).map_err(|_| ExportError::Io(std::io::Error::other("the export stopped")))?;
            }
            Ok::<_, ExportError>(())
        });
        let read = read.and_then(|n| {
            if !batch.is_empty() {
                rows_tx.send(batch).map_err(|_| ExportError::Io(std::io::Error::other("the export stopped")))?;
            }
            Ok(n)
        });
        drop(rows_tx);
        let formatted = formatter.join().unwrap_or_else(|_| Err(stage_panicked("formatting")));
        let written = writer.join().unwrap_or_else(|_| Err(stage_panicked("writing")));
        // The stage that failed first is the latest in the pipeline that
        // failed: the ones before it only saw it hang up.
        written?;
        formatted?;
        read
    })
}

fn stage_panicked(stage: &str) -> ExportError {
    ExportError::Io(std::io::Error::other(format!("the export's {stage} thread stopped")))
}
