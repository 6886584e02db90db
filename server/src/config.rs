//! What a running server needs: its limits, its TLS policy, its receipt key
//! and where its database is.
//!
//! Every limit is named once in [`truce_shared::limits`] with its default;
//! `run` flags override the runtime ones. [`Limits::check`] refuses
//! combinations the protocol cannot honour (a frame too small for one
//! report, or for the Ack of a full batch).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
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
    /// Most concurrent connections; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Time from TCP accept to a complete TLS handshake and `Hello`.
    pub handshake_timeout: Duration,
    /// Longest silence between frames, and the longest one frame (in or
    /// out) may take.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: limits::MAX_FRAME,
            max_batch: limits::MAX_BATCH,
            max_connections: limits::MAX_CONNECTIONS,
            handshake_timeout: limits::HANDSHAKE_TIMEOUT,
            idle_timeout: limits::IDLE_TIMEOUT,
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
    /// No connections allowed.
    #[error("--max-connections must be at least 1")]
    ConnectionsZero,
    /// A zero timeout.
    #[error("timeouts must be longer than zero")]
    ZeroTimeout,
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
        if self.max_connections == 0 {
            return Err(LimitsError::ConnectionsZero);
        }
        if self.handshake_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err(LimitsError::ZeroTimeout);
        }
        Ok(())
    }
}

/// Everything [`crate::run`] needs.
#[derive(Clone)]
pub struct Config {
    /// The TLS policy ([`crate::tls::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// Signs receipts ([`DataDir::load_key`]).
    pub server_key: SigningKey,
    /// The SQLite file ([`DataDir::db_file`]).
    pub db: PathBuf,
    /// The limits in force.
    pub limits: Limits,
    /// Batches verified at once (one per core by default).
    pub verify_threads: usize,
}

impl std::fmt::Debug for Config {
    // The receipt key never appears in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server_key", &"<redacted>")
            .field("db", &self.db)
            .field("limits", &self.limits)
            .field("verify_threads", &self.verify_threads)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Config for the initialised server in `dir`: its receipt key and
    /// database, with this TLS policy and these limits.
    pub fn new(dir: &DataDir, tls: Arc<rustls::ServerConfig>, limits: Limits) -> Result<Config, DataDirError> {
        Ok(Config {
            tls,
            server_key: dir.load_key()?,
            db: dir.db_file(),
            limits,
            verify_threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_work_and_impossible_limits_are_refused() {
        assert_eq!(Limits::default().check(), Ok(()));
        let l = |f: fn(&mut Limits)| {
            let mut l = Limits::default();
            f(&mut l);
            l.check()
        };
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
    }
}
