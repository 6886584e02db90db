//! Reading the queue: by id prefix, by state, signed reports for a bundle
//! or a sync, in bounded chunks.

use super::*;

impl Queue {
    /// Finds one report by full id or unique hex prefix, with its receipt's ids.
    pub fn find(&self, prefix: &str) -> Result<QueuedReport> {
        let (lo, hi) = prefix_range(prefix)?;
        let sql = format!(
            "SELECT {REPORT_COLUMNS}, c.ids, g.results FROM {REPORT_FROM}
             WHERE r.id >= ?1 AND r.id <= ?2 LIMIT 2"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let mut rows = st.query(params![&lo[..], &hi[..]]).map_err(|e| self.err(e))?;
        let mut found = None;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            if found.is_some() {
                return Err(AgentError::Ambiguous(prefix.to_string()));
            }
            let mut rep = report_from_row(self.key()?, row)?;
            if let Some(r) = rep.receipt.as_mut() {
                match r.log.as_mut() {
                    None => {
                        let ids: Vec<u8> = row.get(FIND_IDS).map_err(|e| self.err(e))?;
                        r.ids = split_ids(&ids)?;
                    }
                    Some(l) => {
                        let bytes: Vec<u8> = row.get(FIND_RESULTS).map_err(|e| self.err(e))?;
                        l.results = truce_shared::encoding::decode(&bytes)
                            .map_err(|e| AgentError::Corrupt(format!("a stored receipt's results: {e}")))?;
                        r.ids = l.results.iter().map(|o| o.id).collect();
                    }
                }
            }
            found = Some(rep);
        }
        found.ok_or_else(|| AgentError::NotFound(prefix.to_string()))
    }

    /// Calls `f` on each report, newest first, optionally only those in
    /// `state`. Rows stream from SQLite one at a time. `f` returning `false`
    /// stops the walk (a closed pipe, say).
    pub fn for_each(&self, state: Option<State>, mut f: impl FnMut(QueuedReport) -> Result<bool>) -> Result<()> {
        let key = self.key()?;
        let filter = if state.is_some() { "WHERE r.state = ?1" } else { "WHERE ?1 IS NULL" };
        let sql = format!(
            "SELECT {REPORT_COLUMNS} FROM {REPORT_FROM}
             {filter} ORDER BY r.seq DESC"
        );
        let mut st = self.conn.prepare(&sql).map_err(|e| self.err(e))?;
        let mut rows = st.query([state.map(State::as_str)]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            if !f(report_from_row(key, row)?)? {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f` on each report in chain order (oldest first), all reports
    /// or pending only: its seq, id and signed bytes (`None` once pruned).
    /// For bundles and chain checks.
    pub fn for_each_signed(
        &self,
        pending_only: bool,
        mut f: impl FnMut(u64, Bytes32, Option<SignedReport>) -> Result<()>,
    ) -> Result<()> {
        let key = self.key()?;
        let sql = if pending_only {
            "SELECT seq, id, sealed FROM reports WHERE state = 'pending' ORDER BY seq"
        } else {
            "SELECT seq, id, sealed FROM reports ORDER BY seq"
        };
        let mut st = self.conn.prepare(sql).map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let seq: i64 = row.get(0).map_err(|e| self.err(e))?;
            let id: Vec<u8> = row.get(1).map_err(|e| self.err(e))?;
            let sealed: Option<Vec<u8>> = row.get(2).map_err(|e| self.err(e))?;
            let id32 = id32(&id, seq)?;
            let signed = sealed.map(|s| open_row(key, seq, &id, &s)).transpose()?;
            f(seq as u64, id32, signed)?;
        }
        Ok(())
    }

    /// Up to `limit` pending reports with seq > `after`, oldest first.
    pub fn pending_chunk(&self, after: u64, limit: usize) -> Result<Vec<(u64, SignedReport)>> {
        let key = self.key()?;
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT seq, id, sealed FROM reports WHERE state = 'pending' AND seq > ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(|e| self.err(e))?;
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = st.query(params![after, limit]).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let seq: i64 = row.get(0).map_err(|e| self.err(e))?;
            let id: Vec<u8> = row.get(1).map_err(|e| self.err(e))?;
            // A pending report is never pruned: no body is a damaged queue.
            let sealed: Option<Vec<u8>> = row.get(2).map_err(|e| self.err(e))?;
            let sealed = sealed.ok_or_else(|| AgentError::Corrupt(format!("pending report seq {seq} has no body")))?;
            out.push((seq as u64, open_row(key, seq, &id, &sealed)?));
        }
        Ok(out)
    }

    /// Iterates over pending reports oldest first, reading
    /// [`PENDING_CHUNK`] at a time.
    pub fn pending(&self) -> PendingIter<'_> {
        PendingIter { queue: self, after: 0, buf: Vec::new().into_iter(), done: false }
    }

    /// Count of reports in each state, in [`State::ALL`] order.
    pub fn counts(&self) -> Result<[(State, u64); 4]> {
        let mut out = State::ALL.map(|s| (s, 0u64));
        let mut st =
            self.conn.prepare("SELECT state, COUNT(*) FROM reports GROUP BY state").map_err(|e| self.err(e))?;
        let mut rows = st.query([]).map_err(|e| self.err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let name: String = row.get(0).map_err(|e| self.err(e))?;
            let n: i64 = row.get(1).map_err(|e| self.err(e))?;
            if let Some(slot) = out.iter_mut().find(|(s, _)| s.as_str() == name) {
                slot.1 = n as u64;
            }
        }
        Ok(out)
    }
}

/// Iterator over pending reports, oldest first, in bounded chunks.
pub struct PendingIter<'q> {
    queue: &'q Queue,
    after: u64,
    buf: std::vec::IntoIter<(u64, SignedReport)>,
    done: bool,
}

impl Iterator for PendingIter<'_> {
    type Item = Result<(u64, SignedReport)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(item) = self.buf.next() {
            self.after = item.0;
            return Some(Ok(item));
        }
        if self.done {
            return None;
        }
        match self.queue.pending_chunk(self.after, PENDING_CHUNK) {
            Ok(chunk) => {
                if chunk.len() < PENDING_CHUNK {
                    self.done = true;
                }
                self.buf = chunk.into_iter();
                let item = self.buf.next()?;
                self.after = item.0;
                Some(Ok(item))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
