//! What a sync writes back into the agent: the server's answers and
//! receipts, the last sync's outcome for `status`, and a blocking session
//! for callers that are not async. The session itself is `crate::sync`.

use truce_shared::time::now_ms;
use truce_shared::wire::{Receipt, Status};
use truce_shared::Bytes32;

use super::Agent;
use crate::error::Result;
use crate::queue::AckOutcome;
use crate::sync::{runtime, sync_once, SyncOptions, SyncSummary};

impl Agent {
    /// One sync session on a private single-threaded runtime, for callers
    /// that are not async (tests, the demo).
    pub fn sync_blocking(&mut self, opts: &SyncOptions) -> Result<SyncSummary> {
        let rt = runtime()?;
        rt.block_on(sync_once(self, opts))
    }

    /// Records the server's answers for one Ack (see [`Queue::record_ack`]).
    pub fn record_ack(
        &mut self,
        results: &[(Bytes32, Status)],
        receipt: &Receipt,
        server_key: &Bytes32,
    ) -> Result<AckOutcome> {
        self.queue.record_ack(results, receipt, server_key, now_ms())
    }

    /// Marks one report's answer (a convenience over [`Agent::record_ack`]).
    pub fn mark_answer(
        &mut self,
        id: &Bytes32,
        status: &Status,
        receipt: &Receipt,
        server_key: &Bytes32,
    ) -> Result<AckOutcome> {
        self.record_ack(&[(*id, status.clone())], receipt, server_key)
    }

    /// The linked server address, if `link` has run.
    pub fn server(&self) -> Result<Option<String>> {
        self.queue.meta("server")
    }

    /// Notes how the last sync ended, for `status`.
    pub fn set_last_sync(&mut self, ok: bool, outcome: &str) -> Result<()> {
        let at = now_ms().to_string();
        self.queue.set_meta(&[
            ("last_sync_at", &at),
            ("last_sync_ok", if ok { "1" } else { "0" }),
            ("last_sync_outcome", outcome),
        ])
    }
}
