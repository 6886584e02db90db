//! What a running server needs: its limits, its TLS policy, its receipt key
//! and where its database is.
//!
//! Every limit is named once in [`truce_shared::limits`] with its default;
//! `run` flags override the runtime ones. [`Limits::check`] refuses
//! combinations the protocol cannot honour (a frame too small for one
//! report, or for the Ack of a full batch).

use crate::store::{Database, Quotas};
use std::sync::Arc;
use std::time::Duration;

use truce_shared::limits;

use crate::paths::{DataDir, DataDirError};

/// The smallest frame a server may be configured with: one report of the
/// largest valid size, with room for framing.
pub const MIN_FRAME: u32 = limits::MAX_REPORT_BODY as u32 + 1024;

/// The most bytes one report's result can take in an Ack: id, status tag,
/// reason length and the longest reason.
const ACK_BYTES_PER_REPORT: u64 = 32 + 1 + 2 + limits::MAX_REASON as u64;

/// An Ack's fixed part: tag, batch number, vector length, receipt.
const ACK_BYTES_FIXED: u64 = 1 + 10 + 5 + 10 + 64;

/// The limits a running server enforces on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame, in bytes; a longer one ends the connection.
    pub max_frame: u32,
    /// Most reports in one Submit (advertised in Welcome); more ends the
    /// connection.
    pub max_batch: u32,
    /// Most authenticated sessions at once; a laptop that authenticates
    /// while all are taken waits, within its handshake timeout, for one.
    pub max_connections: usize,
    /// Most connections not yet authenticated; at the budget the oldest is
    /// dropped for each new one ([`crate::admission::Gate`]).
    pub max_unauthenticated: usize,
    /// Most connections not yet authenticated from one IP address.
    pub max_unauthenticated_per_ip: usize,
    /// Most sessions one client certificate may hold; more are refused.
    pub max_connections_per_cert: usize,
    /// Most frame bytes all sessions may hold in memory at once.
    pub max_frame_bytes_in_flight: u64,
    /// Time from TCP accept to a complete TLS handshake and `Hello`.
    pub handshake_timeout: Duration,
    /// Longest silence between frames, and the longest one frame (in or
    /// out) may take.
    pub idle_timeout: Duration,
    /// How much one device key, one certificate and the quarantine may
    /// store, and how much of a refused body is kept.
    pub quotas: Quotas,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: limits::MAX_FRAME,
            max_batch: limits::MAX_BATCH,
            max_connections: limits::MAX_CONNECTIONS,
            max_unauthenticated: limits::MAX_UNAUTHENTICATED,
            max_unauthenticated_per_ip: limits::MAX_UNAUTHENTICATED_PER_IP,
            max_connections_per_cert: limits::MAX_CONNECTIONS_PER_CERT,
            max_frame_bytes_in_flight: limits::MAX_FRAME_BYTES_IN_FLIGHT,
            handshake_timeout: limits::SERVER_HANDSHAKE_TIMEOUT,
            idle_timeout: limits::IDLE_TIMEOUT,
            quotas: Quotas::default(),
        }
    }
}

/// A limit that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// Frame limit below one report.
    #[error("--max-frame {0} is too small: a frame must hold one report of the largest size ({MIN_FRAME} bytes)")]
    FrameTooSmall(u32),
    /// Batch limit zero.
    #[error("--max-batch must be at least 1")]
    BatchZero,
    /// The Ack of a full batch would not fit a frame.
    #[error("--max-batch {batch} is too large for --max-frame {frame}: the Ack of a full batch needs {needed} bytes")]
    AckTooLarge {
        /// The batch limit.
        batch: u32,
        /// The frame limit.
        frame: u32,
        /// Bytes a full batch's Ack may take.
        needed: u64,
    },
    /// No connections allowed (of some kind).
    #[error("{0} must be at least 1")]
    ConnectionsZero(&'static str),
    /// The frame bytes in flight cannot hold one frame.
    #[error("--max-frame-bytes-in-flight {budget} cannot hold one frame of --max-frame {frame} bytes")]
    FramesInFlightTooSmall {
        /// The budget.
        budget: u64,
        /// The frame limit.
        frame: u32,
    },
    /// A zero timeout.
    #[error("timeouts must be longer than zero")]
    ZeroTimeout,
    /// A quota of nothing.
    #[error("{0} must be at least 1")]
    QuotaZero(&'static str),
    /// A refused body's prefix longer than any body.
    #[error("--rejected-prefix {0} is larger than the largest report body ({max} bytes)", max = limits::MAX_REPORT_BODY)]
    PrefixTooLarge(usize),
}

impl Limits {
    /// Checks the limits can work together.
    pub fn check(&self) -> Result<(), LimitsError> {
        if self.max_frame < MIN_FRAME {
            return Err(LimitsError::FrameTooSmall(self.max_frame));
        }
        if self.max_batch == 0 {
            return Err(LimitsError::BatchZero);
        }
        let needed = ACK_BYTES_FIXED + u64::from(self.max_batch) * ACK_BYTES_PER_REPORT;
        if needed > u64::from(self.max_frame) {
            return Err(LimitsError::AckTooLarge { batch: self.max_batch, frame: self.max_frame, needed });
        }
        for (n, flag) in [
            (self.max_connections, "--max-connections"),
            (self.max_unauthenticated, "--max-unauthenticated"),
            (self.max_unauthenticated_per_ip, "--max-unauthenticated-per-ip"),
            (self.max_connections_per_cert, "--max-connections-per-cert"),
        ] {
            if n == 0 {
                return Err(LimitsError::ConnectionsZero(flag));
            }
        }
        // A frame is its body and the 4-byte length before it.
        let frame = u64::from(self.max_frame) + truce_shared::frame::HEADER_LEN as u64;
        if self.max_frame_bytes_in_flight < frame {
            return Err(LimitsError::FramesInFlightTooSmall {
                budget: self.max_frame_bytes_in_flight,
                frame: self.max_frame,
            });
        }
        if self.handshake_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err(LimitsError::ZeroTimeout);
        }
        let q = &self.quotas;
        for (n, flag) in [
            (q.max_reports_per_key, "--max-reports-per-key"),
            (q.max_bytes_per_key, "--max-bytes-per-key"),
            (q.max_reports_per_cert, "--max-reports-per-cert"),
            (q.max_bytes_per_cert, "--max-bytes-per-cert"),
            (q.max_quarantined, "--max-quarantined"),
            (q.max_quarantined_per_key, "--max-quarantined-per-key"),
        ] {
            if n == 0 {
                return Err(LimitsError::QuotaZero(flag));
            }
        }
        if q.rejected_prefix > limits::MAX_REPORT_BODY {
            return Err(LimitsError::PrefixTooLarge(q.rejected_prefix));
        }
        Ok(())
    }
}

/// Everything [`crate::run`] needs.
#[derive(Clone)]
pub struct Config {
    /// The TLS policy ([`crate::tls::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// The seed of the log key, which signs checkpoints and receipts
    /// ([`DataDir::load_log_seed`]).
    pub log_seed: [u8; 32],
    /// The store ([`DataDir::database`]).
    pub db: Database,
    /// The limits in force.
    pub limits: Limits,
    /// Batches verified at once (one per core by default).
    pub verify_threads: usize,
    /// Where evidence files go (`DIR/evidence`).
    pub evidence_dir: std::path::PathBuf,
    /// The limits on evidence.
    pub evidence: crate::evidence::EvidenceLimits,
    /// What the server counts, for `run --metrics` (a fresh set by default).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The CRLs behind `tls`, to reload while serving
    /// ([`crate::tls::server_tls`]); none: they are never read again.
    pub revocation: Option<Arc<crate::revocation::Revocation>>,
    /// How often the `--crl` files are looked at for a change.
    pub crl_check_interval: Duration,
}

impl std::fmt::Debug for Config {
    // The receipt key never appears in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("log_seed", &"<redacted>")
            .field("db", &self.db)
            .field("limits", &self.limits)
            .field("evidence_dir", &self.evidence_dir)
            .field("evidence", &self.evidence)
            .field("verify_threads", &self.verify_threads)
            .field("crl_check_interval", &self.crl_check_interval)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Config for the initialised server in `dir`: its receipt key and
    /// database, with this TLS policy and these limits.
    pub fn new(dir: &DataDir, tls: Arc<rustls::ServerConfig>, limits: Limits) -> Result<Config, DataDirError> {
        Ok(Config {
            tls,
            log_seed: dir.load_log_seed()?,
            db: dir.database(),
            limits,
            verify_threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            evidence_dir: dir.evidence_dir(),
            evidence: crate::evidence::EvidenceLimits::default(),
            metrics: Arc::default(),
            revocation: None,
            crl_check_interval: limits::CRL_CHECK_INTERVAL,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_work_and_impossible_limits_are_refused() {
        assert_eq!(Limits::default().check(), Ok(()));
        fn l2(f: impl Fn(&mut Limits)) -> Result<(), LimitsError> {
            let mut l = Limits::default();
            f(&mut l);
            l.check()
        }
        let l = |f: fn(&mut Limits)| l2(f);
        assert!(matches!(l(|l| l.max_frame = 1000), Err(LimitsError::FrameTooSmall(1000))));
        assert!(matches!(l(|l| l.max_batch = 0), Err(LimitsError::BatchZero)));
        assert!(matches!(
            l(|l| {
                l.max_frame = MIN_FRAME;
                l.max_batch = 10_000
            }),
            Err(LimitsError::AckTooLarge { .. })
        ));
        assert!(matches!(l(|l| l.idle_timeout = Duration::ZERO), Err(LimitsError::ZeroTimeout)));
        assert!(matches!(l(|l| l.max_connections_per_cert = 0), Err(LimitsError::ConnectionsZero(_))));
        assert!(matches!(l(|l| l.max_unauthenticated = 0), Err(LimitsError::ConnectionsZero(_))));
        assert!(matches!(l(|l| l.quotas.max_quarantined = 0), Err(LimitsError::QuotaZero("--max-quarantined"))));
        assert_eq!(l(|l| l.quotas.rejected_prefix = limits::MAX_REPORT_BODY), Ok(()));
        assert!(matches!(
            l(|l| l.quotas.rejected_prefix = limits::MAX_REPORT_BODY + 1),
            Err(LimitsError::PrefixTooLarge(_))
        ));
        // The frame budget must hold one whole frame, and may hold exactly one.
        let one = u64::from(MIN_FRAME) + 4;
        let at = |budget: u64| {
            l2(move |l| {
                l.max_frame = MIN_FRAME;
                l.max_batch = 1;
                l.max_frame_bytes_in_flight = budget;
            })
        };
        assert_eq!(at(one), Ok(()));
        assert!(matches!(at(one - 1), Err(LimitsError::FramesInFlightTooSmall { .. })));
    }
}
