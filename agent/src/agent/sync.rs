//! What a sync writes back into the agent: the server's answers and
//! receipts, the last sync's outcome for `status`, and a blocking session
//! for callers that are not async. The session itself is `crate::sync`.

use truce_shared::time::now_ms;
use truce_shared::Bytes32;

use super::Agent;
use crate::error::Result;
use crate::queue::{AckOutcome, LogAck};
use crate::sync::{runtime, sync_once, SyncOptions, SyncSummary};

impl Agent {
    /// One sync session on a private single-threaded runtime, for callers
    /// that are not async (tests, the demo).
    pub fn sync_blocking(&mut self, opts: &SyncOptions) -> Result<SyncSummary> {
        let rt = runtime()?;
        rt.block_on(sync_once(self, opts))
    }

    /// Records the server's answers for one verified Ack (see
    /// [`crate::queue::Queue::record_ack`]).
    pub fn record_ack(&mut self, ack: &LogAck<'_>) -> Result<AckOutcome> {
        self.queue.record_ack(ack, now_ms())
    }

    /// Marks reports proven included in the log and keeps the checkpoint
    /// they were proven against as the verified one.
    pub fn record_proven(&mut self, proven: &[(Bytes32, u64)], checkpoint: &str) -> Result<u64> {
        self.queue.record_proven(proven, checkpoint, now_ms())
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
