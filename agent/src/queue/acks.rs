//! A server's answers: one Ack recorded in one transaction.

use super::*;

impl Queue {
    /// Records the server's answers for one Ack in one transaction: each
    /// pending report named in `results` takes the state its status gives,
    /// with the status, reason, `answered_at` and the receipt (kept once,
    /// with every id it covers). Answers for reports that are not pending
    /// here are ignored, so an earlier answer and receipt are never replaced.
    pub fn record_ack(
        &mut self,
        results: &[(Bytes32, Status)],
        receipt: &Receipt,
        server_key: &Bytes32,
        answered_at: i64,
    ) -> Result<AckOutcome> {
        let path = self.path.clone();
        let held = truce_shared::wire::held_ids(results);
        let run = |conn: &mut Connection| -> rusqlite::Result<AckOutcome> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let receipt_row: Option<i64> = if held.is_empty() {
                None
            } else {
                let ids: Vec<u8> = held.iter().flat_map(|i| i.iter().copied()).collect();
                tx.prepare_cached(
                    "INSERT INTO receipts(server_key, server_time, signature, ids) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    &server_key[..],
                    receipt.server_time,
                    &receipt.signature.0[..],
                    ids
                ])?;
                Some(tx.last_insert_rowid())
            };
            let mut out = AckOutcome::default();
            {
                let mut st = tx.prepare_cached(
                    "UPDATE reports SET state = ?2, answer = ?3, reason = ?4, answered_at = ?5, receipt = ?6
                     WHERE id = ?1 AND state = 'pending'",
                )?;
                for (id, status) in results {
                    let state = State::from_status(status);
                    let (answer, reason) = status_parts(status);
                    let rc = if status.is_held() { receipt_row } else { None };
                    let n = st.execute(params![&id[..], state.as_str(), answer, reason, answered_at, rc])?;
                    match (n, state) {
                        (0, _) => out.ignored += 1,
                        (_, State::Delivered) => out.delivered += 1,
                        (_, State::Quarantined) => out.quarantined += 1,
                        (_, State::Rejected) => out.rejected += 1,
                        (_, State::Pending) => {}
                    }
                }
            }
            tx.commit()?;
            Ok(out)
        };
        run(&mut self.conn).map_err(|e| db_err(&path, e))
    }
}
