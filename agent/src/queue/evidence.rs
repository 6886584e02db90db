//! Where each evidence file's upload stands (DESIGN §10): held by the
//! server, partly sent, refused for a reason, or still to send.
//!
//! Files are known here by their keyed names (what `attachments/` calls
//! them), never by their hashes: the hash of a file is found by opening its
//! sealed copy, so a captor without the passphrase cannot match the queue
//! against known photos.

use rusqlite::params;
use serde::Serialize;

use super::Queue;
use crate::error::Result;

/// One evidence file a report names, as the upload sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileUpload {
    /// Its keyed name under `attachments/`.
    pub name: String,
    /// Bytes the server said it holds.
    pub sent: u64,
}

/// Where one report's evidence file stands, for `show`, `list` and `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum FileState {
    /// The server holds it, checked against its hash.
    Held,
    /// Part of it is on the server.
    Partial {
        /// Bytes the server holds.
        sent: u64,
    },
    /// Nothing sent yet (the report is not delivered, or no sync since).
    Pending {
        /// Why the server last refused it, if it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
}

impl FileState {
    /// A few words for people.
    pub fn text(&self) -> String {
        match self {
            FileState::Held => "held by the server".into(),
            FileState::Partial { sent } => format!("partly sent ({sent} bytes held by the server)"),
            FileState::Pending { refused: None } => "not yet sent".into(),
            FileState::Pending { refused: Some(r) } => format!("not yet sent (the server said: {r})"),
        }
    }
}

impl Queue {
    /// The files of delivered reports (or quarantined: stored all the same)
    /// that the server does not hold yet, oldest report first.
    pub fn files_to_upload(&self) -> Result<Vec<FileUpload>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT a.name, MAX(a.sent) FROM attachments a JOIN reports r ON r.seq = a.seq
                 WHERE a.held = 0 AND r.state IN ('delivered', 'quarantined')
                 GROUP BY a.name ORDER BY MIN(a.seq)",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok(FileUpload { name: r.get(0)?, sent: r.get::<_, i64>(1)?.max(0) as u64 }))
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// The keyed names of the files a bundle carries, oldest report first:
    /// with `all`, every file a report names; otherwise those of reports
    /// not rejected that the server does not hold yet.
    pub fn files_for_bundle(&self, all: bool) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT a.name FROM attachments a JOIN reports r ON r.seq = a.seq
                 WHERE ?1 OR (r.state != 'rejected' AND a.held = 0)
                 GROUP BY a.name ORDER BY MIN(a.seq)",
            )
            .map_err(|e| self.err(e))?;
        let rows = st.query_map([all], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| self.err(e))
    }

    /// Notes the bytes the server holds of a file, or why it refused it
    /// (`note`: `None` clears an earlier reason).
    pub fn note_upload(&mut self, name: &str, sent: u64, note: Option<&str>) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE attachments SET sent = ?2, note = ?3 WHERE name = ?1")
            .and_then(|mut s| s.execute(params![name, sent.min(i64::MAX as u64) as i64, note]))
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Where the file with this keyed name stands.
    pub fn file_state(&self, name: &str) -> Result<FileState> {
        let row: Option<(bool, i64, Option<String>)> = self
            .conn
            .prepare_cached("SELECT MAX(held), MAX(sent), MAX(note) FROM attachments WHERE name = ?1 GROUP BY name")
            .and_then(|mut s| {
                use rusqlite::OptionalExtension;
                s.query_row([name], |r| Ok((r.get::<_, i64>(0)? != 0, r.get(1)?, r.get(2)?))).optional()
            })
            .map_err(|e| self.err(e))?;
        Ok(match row {
            Some((true, _, _)) => FileState::Held,
            Some((false, sent, _)) if sent > 0 => FileState::Partial { sent: sent as u64 },
            Some((false, _, refused)) => FileState::Pending { refused },
            None => FileState::Pending { refused: None },
        })
    }

    /// Evidence files by where they stand: held, partly sent, not yet sent.
    pub fn file_counts(&self) -> Result<(u64, u64, u64)> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(h), 0), COALESCE(SUM(p), 0), COALESCE(SUM(n), 0) FROM (
                   SELECT MAX(held) AS h, MAX(held) = 0 AND MAX(sent) > 0 AS p, MAX(held) = 0 AND MAX(sent) = 0 AS n
                   FROM attachments GROUP BY name)",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64)),
            )
            .map_err(|e| self.err(e))
    }
}
