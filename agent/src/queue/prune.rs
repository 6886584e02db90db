//! Pruning delivered reports (DESIGN §11): once the server holds a report
//! (its verified protocol-1 receipt is stored, or under protocol 2 its log
//! entry was proven: a report delivered but not proven keeps its body, the
//! server may not hold what it signed), its body is deleted after the keep
//! period; its seq, id, state, answer and receipt stay, so the chain goes
//! on and the delivery stays provable; `secure_delete` zeroes the freed
//! pages. An evidence copy is deleted once every report that names it is
//! pruned and the server holds the file (`held`, set when evidence
//! upload, DESIGN §10, confirms it): until then it is the only copy, and
//! stays, sealed.

use rusqlite::{params, TransactionBehavior};

use super::{db_err, Queue};
use crate::error::{AgentError, Result};
use crate::paths::DataDir;

/// What one prune did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Reports whose bodies were deleted.
    pub reports: u64,
    /// Evidence files deleted.
    pub files: u64,
}

/// Reports the server holds, whose answer is older than the cutoff.
const PRUNABLE: &str = "sealed IS NOT NULL AND state IN ('delivered', 'quarantined')
     AND (receipt IS NOT NULL OR proven_at IS NOT NULL) AND answered_at <= ?1";

impl Queue {
    /// Deletes the bodies of reports answered at or before `cutoff` (unix
    /// ms) that the server holds, and the evidence copies no unpruned
    /// report names any more and the server holds. Files are removed under
    /// the queue's write lock, so a `record` that names the same file again
    /// cannot lose it in between; a crash before the commit leaves reports
    /// unpruned whose files the server already holds, which the next prune
    /// finishes.
    pub fn prune(&mut self, dir: &DataDir, cutoff: i64, now: i64) -> Result<Pruned> {
        let path = self.path.clone();
        // Most opens find nothing to prune: look before taking the write lock.
        let any = self
            .conn
            .prepare_cached(&format!("SELECT EXISTS (SELECT 1 FROM reports WHERE {PRUNABLE})"))
            .and_then(|mut s| s.query_row([cutoff], |r| r.get::<_, bool>(0)))
            .map_err(|e| db_err(&path, e))?;
        if !any {
            return Ok(Pruned::default());
        }
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, e))?;
        let run = || -> rusqlite::Result<(u64, Vec<String>)> {
            let names: Vec<String> = tx
                .prepare(&format!(
                    "SELECT DISTINCT name FROM attachments WHERE held = 1
                     AND seq IN (SELECT seq FROM reports WHERE {PRUNABLE})"
                ))?
                .query_map([cutoff], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let n = tx.execute(
                &format!("UPDATE reports SET sealed = NULL, pruned_at = ?2 WHERE {PRUNABLE}"),
                params![cutoff, now],
            )?;
            // A file another unpruned report still names stays.
            let mut still = tx.prepare_cached(
                "SELECT 1 FROM attachments a JOIN reports r ON r.seq = a.seq WHERE a.name = ?1 AND r.sealed IS NOT NULL",
            )?;
            let mut gone = Vec::new();
            for name in names {
                if !still.exists([&name])? {
                    gone.push(name);
                }
            }
            Ok((n as u64, gone))
        };
        let (reports, gone) = run().map_err(|e| db_err(&path, e))?;
        let mut files = 0;
        for name in &gone {
            let file = dir.attachment(name);
            match std::fs::remove_file(&file) {
                Ok(()) => files += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AgentError::io("cannot remove", &file, e)),
            }
        }
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(Pruned { reports, files })
    }

    /// How many reports have had their bodies pruned.
    pub fn pruned_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM reports WHERE pruned_at IS NOT NULL", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Notes that the server holds the evidence file with this keyed name
    /// (it then no longer keeps its reports from being pruned).
    pub fn mark_file_held(&mut self, name: &str) -> Result<()> {
        self.conn.execute("UPDATE attachments SET held = 1 WHERE name = ?1", [name]).map_err(|e| self.err(e))?;
        Ok(())
    }
}
