//! `sync --watch`: sessions repeated while the program runs, with
//! exponential backoff and jitter while the server is away, stopping on an
//! error that needs a person.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use super::{sync_once, Progress, SyncOptions, SyncSummary, BACKOFF_CAP, BACKOFF_START, WATCH_POLL};
use crate::agent::Agent;
use crate::error::{AgentError, Result};

/// Exponential backoff with jitter: each delay is drawn from the upper
/// half of base·2ⁿ (capped), so many laptops coming back at once spread out.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    /// A fresh backoff.
    pub fn new() -> Self {
        Backoff { attempt: 0 }
    }

    /// After a success: start again from the shortest delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let exp = BACKOFF_START.saturating_mul(1u32 << self.attempt.min(16));
        let d = exp.min(BACKOFF_CAP);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        half + half.mul_f64(rand::thread_rng().gen::<f64>())
    }
}

/// Whether a sync error is worth retrying (the link or the server away, the
/// queue busy), as opposed to one that needs a person.
fn retryable(e: &AgentError) -> bool {
    match e {
        AgentError::Sync(s) => !s.needs_person(),
        AgentError::Busy(_) | AgentError::StillPending(_) => true,
        _ => false,
    }
}

/// Keeps syncing until `shutdown` resolves: sync whenever something is
/// pending (polling every [`WATCH_POLL`]), back off with jitter while the
/// server cannot be reached. `on_session` sees each session's result.
/// Returns on shutdown, or on an error that retrying cannot fix (a
/// [`SyncError`](super::SyncError) that
/// [`needs_person`](super::SyncError::needs_person), or a local one), after
/// saying on stderr that it stopped and why.
pub async fn watch(
    agent: &mut Agent,
    opts: &SyncOptions,
    shutdown: impl Future<Output = ()>,
    mut on_session: impl FnMut(&Result<SyncSummary>),
) -> Result<()> {
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new();
    loop {
        if !agent.queue().pending_chunk(0, 1)?.is_empty() {
            let r = tokio::select! {
                r = sync_once(agent, opts) => r,
                () = &mut shutdown => return Ok(()),
            };
            on_session(&r);
            match r {
                Ok(_) => backoff.reset(),
                Err(e) if retryable(&e) => {
                    let d = backoff.next_delay();
                    if opts.progress != Progress::Quiet {
                        eprintln!("sync: {e} (retrying in {:.1} s)", d.as_secs_f64());
                    }
                    tokio::select! {
                        () = tokio::time::sleep(d) => continue,
                        () = &mut shutdown => return Ok(()),
                    }
                }
                Err(e) => {
                    if opts.progress != Progress::Quiet {
                        eprintln!(
                            "sync --watch stopped: retrying cannot fix this, a person must act on the error below"
                        );
                    }
                    return Err(e);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(WATCH_POLL) => {}
            () = &mut shutdown => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::SyncError;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new();
        let first = b.next_delay();
        assert!(first >= BACKOFF_START / 2 && first <= BACKOFF_START, "{first:?}");
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= BACKOFF_CAP, "{d:?}");
        }
        assert!(b.next_delay() >= BACKOFF_CAP / 2);
        b.reset();
        assert!(b.next_delay() <= BACKOFF_START);
    }

    #[test]
    fn only_errors_a_retry_can_fix_are_retried() {
        let away = SyncError::Unreachable { addr: "h:1".into(), why: "refused".into() };
        assert!(retryable(&AgentError::Sync(away)));
        assert!(retryable(&AgentError::StillPending(3)));
        assert!(!retryable(&AgentError::Sync(SyncError::BadReceipt { batch: 1, why: "x".into() })));
        assert!(!retryable(&AgentError::Sync(SyncError::TooLarge { seq: 1, len: 2, max_frame: 1 })));
        assert!(!retryable(&AgentError::NotLinked));
    }
}
