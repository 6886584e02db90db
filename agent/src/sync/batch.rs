//! Cutting the pending queue into batches: read in bounded chunks, each
//! batch within the server's `max_batch` reports and `max_frame` bytes.

use std::collections::VecDeque;

use truce_shared::SignedReport;

use super::SyncError;
use crate::error::Result;
use crate::queue::{Queue, PENDING_CHUNK};

/// Reads pending reports in chunks and cuts them into batches.
pub(super) struct Batcher {
    after: u64,
    buf: VecDeque<(u64, SignedReport)>,
    exhausted: bool,
}

/// Upper bound of a Submit's bytes besides its reports: variant index,
/// batch number and vector length varints.
const SUBMIT_OVERHEAD: usize = 1 + 10 + 5;

/// Bytes one report takes inside a Submit: body length varint, body, signature.
pub(super) fn encoded_len(r: &SignedReport) -> usize {
    let n = r.body.len();
    let varint = match n {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        _ => 5,
    };
    varint + n + 64
}

impl Batcher {
    pub(super) fn new() -> Self {
        Batcher { after: 0, buf: VecDeque::new(), exhausted: false }
    }

    /// Asks the queue again next time, though it was found empty: for
    /// reports recorded while evidence uploads.
    pub(super) fn look_again(&mut self) {
        self.exhausted = false;
    }

    /// The next batch, each report with its seq (empty when nothing is
    /// pending). Reports recorded
    /// while the session runs are picked up too: the cursor only moves
    /// forward through seq, and the queue is asked again when the buffer
    /// runs dry.
    pub(super) fn next_batch(
        &mut self,
        queue: &Queue,
        max_batch: usize,
        max_frame: usize,
    ) -> Result<Vec<(u64, SignedReport)>> {
        let mut out = Vec::new();
        let mut size = SUBMIT_OVERHEAD;
        loop {
            if self.buf.is_empty() && !self.exhausted {
                let chunk = queue.pending_chunk(self.after, PENDING_CHUNK)?;
                match chunk.last() {
                    Some(last) => self.after = last.0,
                    None => self.exhausted = true,
                }
                self.buf.extend(chunk);
            }
            let Some((seq, front)) = self.buf.front() else { break };
            let len = encoded_len(front);
            if out.len() >= max_batch || (!out.is_empty() && size + len > max_frame) {
                break;
            }
            if size + len > max_frame {
                return Err(SyncError::TooLarge { seq: *seq, len, max_frame }.into());
            }
            size += len;
            if let Some(item) = self.buf.pop_front() {
                out.push(item);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_len_matches_postcard() {
        for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, 32 * 1024] {
            let r = SignedReport { body: vec![1; n], signature: truce_shared::Signature64([2; 64]) };
            assert_eq!(encoded_len(&r), truce_shared::encoding::encode(&r).len(), "{n}");
        }
    }
}
