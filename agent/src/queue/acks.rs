//! A server's answers: one Ack recorded in one transaction; later, the
//! proof that the log includes them.

use super::*;

/// A protocol-2 Ack whose receipt and checkpoint the caller has verified.
#[derive(Debug, Clone, Copy)]
pub struct LogAck<'a> {
    /// The log key that signed it.
    pub log_key: Bytes32,
    /// The Submit's batch number.
    pub batch: u64,
    /// When the server stored the batch, unix ms.
    pub received_at: i64,
    /// Every result, in submit order.
    pub results: &'a [Outcome],
    /// The signed checkpoint it carried.
    pub checkpoint: &'a str,
    /// The log key's signature over all of it.
    pub signature: Signature64,
}

impl Queue {
    /// Records the server's answers for one Ack in one transaction: each
    /// pending report named in `ack.results` takes the state its status
    /// gives, with the status, reason, `answered_at`, its log entry and the
    /// receipt (kept once, whole). Answers for reports that are not pending
    /// here are ignored, so an earlier answer and receipt are never replaced.
    pub fn record_ack(&mut self, ack: &LogAck<'_>, answered_at: i64) -> Result<AckOutcome> {
        let path = self.path.clone();
        let run = |conn: &mut Connection| -> rusqlite::Result<AckOutcome> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO log_receipts(log_key, batch, received_at, signature, checkpoint, results)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                &ack.log_key[..],
                ack.batch as i64,
                ack.received_at,
                &ack.signature.0[..],
                ack.checkpoint,
                truce_shared::encoding::encode(&ack.results),
            ])?;
            let receipt_row = tx.last_insert_rowid();
            let mut out = AckOutcome::default();
            {
                let mut st = tx.prepare_cached(
                    "UPDATE reports SET state = ?2, answer = ?3, reason = ?4, answered_at = ?5, log_receipt = ?6,
                            entry = ?7
                     WHERE id = ?1 AND state = 'pending'",
                )?;
                for (i, o) in ack.results.iter().enumerate() {
                    let state = State::from_status(&o.status);
                    let (answer, reason) = status_parts(&o.status);
                    let entry = i64::try_from(o.entry).unwrap_or(i64::MAX);
                    let n = st.execute(params![
                        &o.id[..],
                        state.as_str(),
                        answer,
                        reason,
                        answered_at,
                        receipt_row,
                        entry
                    ])?;
                    match (n, state) {
                        (0, _) => out.ignored += 1,
                        (_, State::Delivered) => out.delivered += 1,
                        (_, State::Quarantined) => out.quarantined += 1,
                        (_, State::Rejected) => out.rejected += 1,
                        (_, State::Pending) => {}
                    }
                    if n > 0 {
                        out.marked.push(i);
                    }
                }
            }
            tx.commit()?;
            Ok(out)
        };
        run(&mut self.conn).map_err(|e| db_err(&path, e))
    }

    /// Marks reports proven included in the log (each by id and the entry
    /// its receipt named) and keeps `checkpoint` as the last verified one,
    /// in one transaction. Returns how many reports changed.
    pub fn record_proven(&mut self, proven: &[(Bytes32, u64)], checkpoint: &str, at: i64) -> Result<u64> {
        let path = self.path.clone();
        let run = |conn: &mut Connection| -> rusqlite::Result<u64> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut n = 0u64;
            {
                let mut st = tx.prepare_cached(
                    "UPDATE reports SET proven_at = ?3 WHERE id = ?1 AND entry = ?2 AND proven_at IS NULL",
                )?;
                for (id, entry) in proven {
                    let entry = i64::try_from(*entry).unwrap_or(i64::MAX);
                    n += st.execute(params![&id[..], entry, at])? as u64;
                }
            }
            tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES ('log_checkpoint', ?1)")?
                .execute([checkpoint])?;
            tx.commit()?;
            Ok(n)
        };
        run(&mut self.conn).map_err(|e| db_err(&path, e))
    }

    /// Up to `limit` reports answered under protocol 2 whose inclusion is
    /// not proven yet (a sync cut between its Acks and its proofs), oldest
    /// entry first: id and the entry its receipt named.
    pub fn unproven(&self, limit: usize) -> Result<Vec<(Bytes32, u64)>> {
        let run = || -> rusqlite::Result<Vec<(Bytes32, u64)>> {
            let mut st = self.conn.prepare_cached(
                "SELECT id, entry FROM reports WHERE entry IS NOT NULL AND proven_at IS NULL ORDER BY entry LIMIT ?1",
            )?;
            let rows = st.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                let id: Vec<u8> = r.get(0)?;
                let entry: i64 = r.get(1)?;
                Ok((id, entry))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, entry) = row?;
                // A row whose id is not 32 bytes is not a report this
                // queue wrote; it is left out rather than proven.
                if let (Ok(id), Ok(entry)) = (<[u8; 32]>::try_from(id.as_slice()), u64::try_from(entry)) {
                    out.push((id, entry));
                }
            }
            Ok(out)
        };
        run().map_err(|e| self.err(e))
    }

    /// Reports answered under protocol 2 whose inclusion is not proven yet.
    pub fn unproven_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM reports WHERE entry IS NOT NULL AND proven_at IS NULL", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.err(e))
    }
}
