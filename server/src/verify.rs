//! Signature checks off the async threads: the verification pool.
//!
//! Every report goes through [`truce_shared::verify`], the one verification
//! function (`verify_strict`, decode, canonical re-encoding, field rules), so
//! the server, `truce-server verify` and an investigator's tool agree on every
//! report. There is no faster path here that could accept more.
//!
//! Verification is CPU work: running it on the tokio worker threads would
//! stall every other connection's I/O. [`Verifier::check`] runs a batch on
//! tokio's blocking pool, and a semaphore lets at most one batch per core
//! verify at a time, so batches from many connections verify in parallel
//! without oversubscribing the machine.

use std::sync::Arc;

use tokio::sync::Semaphore;
use truce_shared::{Bytes32, KeyCache, SignedReport, VerifiedReport, VerifyError};

/// A report after verification, ready for the writer.
#[derive(Debug)]
pub enum Checked {
    /// The signature, encoding and fields are valid.
    Valid(Box<VerifiedReport>),
    /// Verification failed.
    Invalid {
        /// The id of the body as it arrived.
        id: Bytes32,
        /// The report as it arrived (kept as evidence).
        report: SignedReport,
        /// What failed.
        error: VerifyError,
    },
}

impl Checked {
    /// Verifies one report with the one verification function.
    pub fn check(report: SignedReport) -> Checked {
        Checked::check_with(report, &mut KeyCache::default())
    }

    /// [`Checked::check`] for one of many reports: `keys` keeps the last
    /// device key parsed.
    pub fn check_with(report: SignedReport, keys: &mut KeyCache) -> Checked {
        match truce_shared::verify_with(&report, keys) {
            Ok(v) => Checked::Valid(Box::new(v)),
            Err(error) => Checked::Invalid { id: report.id(), report, error },
        }
    }

    /// The report id.
    pub fn id(&self) -> Bytes32 {
        match self {
            Checked::Valid(v) => v.id,
            Checked::Invalid { id, .. } => *id,
        }
    }
}

/// Verification crashed (a bug): the batch is not acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("verification task failed: {0}")]
pub struct VerifyTaskFailed(String);

impl VerifyTaskFailed {
    /// From a task that panicked or was cancelled.
    pub(crate) fn from_join(e: tokio::task::JoinError) -> Self {
        VerifyTaskFailed(e.to_string())
    }
}

/// The verification pool: a handle that is cheap to clone.
#[derive(Debug, Clone)]
pub struct Verifier {
    /// One permit per batch allowed to verify at once.
    permits: Arc<Semaphore>,
}

impl Verifier {
    /// A pool that verifies at most `threads` batches at once (at least 1).
    pub fn new(threads: usize) -> Verifier {
        Verifier { permits: Arc::new(Semaphore::new(threads.max(1))) }
    }

    /// A pool with one slot per available core.
    pub fn per_core() -> Verifier {
        Verifier::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
    }

    /// Verifies a batch off the async threads; results are in input order.
    pub async fn check(&self, reports: Vec<SignedReport>) -> Result<Vec<Checked>, VerifyTaskFailed> {
        let permit = self.permits.clone().acquire_owned().await.map_err(|e| VerifyTaskFailed(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut keys = KeyCache::default();
            reports.into_iter().map(|r| Checked::check_with(r, &mut keys)).collect()
        })
        .await
        .map_err(VerifyTaskFailed::from_join)
    }
}
