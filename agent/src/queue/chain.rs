//! The device's chain: its head, and appending the next report.

use super::*;

impl Queue {
    /// The newest report, if any.
    pub fn head(&self) -> Result<Option<ChainHead>> {
        head_of(&self.conn).map_err(|e| self.err(e))
    }

    /// Appends one report to the chain in one durable transaction.
    ///
    /// `build` gets the next seq and prev (from the head read inside the
    /// transaction, under the write lock) and returns the signed report and
    /// the keyed names of the evidence files it names; if it fails nothing
    /// is written. It runs under the write lock, so files it moves into
    /// place cannot be pruned before the row that names them commits.
    /// Returns the new head.
    pub fn append<F>(&mut self, build: F) -> Result<ChainHead>
    where
        F: FnOnce(u64, Bytes32) -> Result<(SignedReport, Vec<String>)>,
    {
        let path = self.path.clone();
        let key = self.key.clone().ok_or(AgentError::PassphraseNeeded)?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| db_err(&path, e))?;
        let head = head_of(&tx).map_err(|e| db_err(&path, e))?;
        let (seq, prev) = match head {
            Some(h) => (h.seq + 1, h.id),
            None => (1, [0; 32]),
        };
        // On error the transaction is dropped, which rolls it back.
        let (signed, files) = build(seq, prev)?;
        let id = signed.id();
        let seq_i = i64::try_from(seq).map_err(|_| AgentError::Corrupt("seq overflow".into()))?;
        let sealed = key.seal_report(seq, &id, &signed.body, &signed.signature.0);
        let size = (signed.body.len() + 64) as i64;
        tx.prepare_cached("INSERT INTO reports(seq, id, sealed, size) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut st| st.execute(params![seq_i, &id[..], sealed, size]))
            .map_err(|e| db_err(&path, e))?;
        for name in &files {
            tx.prepare_cached("INSERT OR IGNORE INTO attachments(seq, name) VALUES (?1, ?2)")
                .and_then(|mut st| st.execute(params![seq_i, name]))
                .map_err(|e| db_err(&path, e))?;
        }
        tx.commit().map_err(|e| db_err(&path, e))?;
        Ok(ChainHead { seq, id })
    }

    /// The position of the newest report still holding its body, for the
    /// interactive default.
    pub fn last_position(&self) -> Result<Option<Position>> {
        let key = self.key()?;
        let row: Option<(i64, Vec<u8>, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT seq, id, sealed FROM reports WHERE sealed IS NOT NULL ORDER BY seq DESC LIMIT 1")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
            .map_err(|e| self.err(e))?;
        let Some((seq, id, sealed)) = row else { return Ok(None) };
        let signed = open_row(key, seq, &id, &sealed)?;
        Ok(truce_shared::encoding::decode_canonical(&signed.body).ok().map(|e: Envelope| e.observation.position))
    }
}

fn head_of(conn: &Connection) -> rusqlite::Result<Option<ChainHead>> {
    conn.prepare_cached("SELECT seq, id FROM reports ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| {
            let seq: i64 = r.get(0)?;
            let id: Vec<u8> = r.get(1)?;
            Ok((seq, id))
        })
        .optional()
        .map(|o| o.and_then(|(seq, id)| Some(ChainHead { seq: u64::try_from(seq).ok()?, id: id.try_into().ok()? })))
}
