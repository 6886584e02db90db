//! truce-agent: the monitor's laptop. It holds the device key, signs each
//! report the monitor records, keeps it in a durable local queue that forms
//! a hash chain, and delivers the queue to the collection server (or onto
//! a USB stick as a bundle).
//!
//! The binary is a thin shell over this library; tests, the benchmark and
//! the demo call the same code in process:
//!
//! ```no_run
//! use truce_agent::{Agent, RecordInput};
//! use truce_shared::Category;
//!
//! use truce_agent::vault::{Passphrase, Protection};
//!
//! let pass = Passphrase::new("several unrelated words".into())?;
//! let mut agent = Agent::init("/tmp/laptop-1", &Protection::Passphrase(pass))?; // or Agent::open
//! let rec = agent.record(&RecordInput::new(Category::Shelling, 48.5, 37.9))?;
//! for item in agent.queue().pending() {
//!     let (seq, signed) = item?;                               // chunked, never the whole queue
//!     # let _ = (seq, signed);
//! }
//! # let _ = rec;
//! # Ok::<(), truce_agent::AgentError>(())
//! ```
//!
//! # Layout
//!
//! - [`agent`]: [`Agent`], one device (key + queue), its methods one file
//!   per concept: open and read (`mod.rs`), the keyring's life (`init`,
//!   `upgrade`, passphrase, `wipe`), `record`, what sync writes back, and
//!   [`link`] (the server address and certificates).
//! - [`queue`]: the SQLite queue: opening it (`mod.rs`), row types
//!   (`rows.rs`), the one-transaction append (`chain.rs`), streaming reads
//!   (`reads.rs`), answers and receipts (`acks.rs`), pruning, the schema.
//! - [`input`]: [`RecordInput`] and the field parsers shared by flags and
//!   prompts.
//! - [`attachments`]: evidence files checked, hashed and sealed into the
//!   data dir.
//! - [`interactive`]: the prompts of `record` on a terminal.
//! - [`keys`]: the device key, in memory only.
//! - [`vault`]: sealing, one file per concept: the passphrase, the
//!   keyring and Argon2id, the data key that encrypts queued reports and
//!   the TLS key, sealed evidence files.
//! - [`upgrade`]: converting a data dir made before sealing.
//! - [`platform`]: the agent's own unix-only call (core dumps off), behind
//!   `cfg(unix)`; private files, atomic writes and shutdown signals are
//!   `truce_shared::fs` and `truce_shared::signal`.
//! - [`paths`]: the data directory and what is in it; shredding a file.
//! - [`sync`]: delivering the queue to the server (one session, or
//!   `--watch` with backoff), progress, receipts; [`sync::SyncError`] says
//!   what failed and whether a retry can fix it.
//! - [`tls`]: the rustls client configuration (PEM files are read by
//!   `truce_shared::pem`).
//! - [`bundle`]: `bundle export`.
//! - [`cli`]: the command line: parsing (`cli/args.rs`), then one file per
//!   command with its text and JSON output.
//! - [`error`]: [`AgentError`], one line a person can act on.
//!
//! Report types, encoding, signing, verification, framing and bundles are
//! `truce_shared`'s; this crate never re-implements them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod attachments;
pub mod bundle;
pub mod cli;
pub mod error;
pub mod input;
pub mod interactive;
pub mod keys;
pub mod paths;
pub mod platform;
pub mod queue;
pub mod sync;
pub mod tls;
pub mod upgrade;
pub mod vault;

pub use agent::link::{self, LinkInput};
pub use agent::{Agent, AgentStatus, ChainCheck, DirState, LastSync, Recorded};
pub use error::AgentError;
pub use input::RecordInput;
pub use paths::DataDir;
pub use queue::{AckOutcome, ChainHead, LogAck, LogReceipt, Pruned, Queue, QueuedReport, State, StoredReceipt};
pub use sync::{SyncOptions, SyncSummary};
