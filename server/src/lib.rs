//! The Truce collection server.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`init`, `run`, `device`, `import`, `export`,
//!   `stats`).
//! - [`paths`]: the data directory and the receipt key.
//! - [`tls`]: all rustls configuration (TLS 1.3, client certs, CRLs, ALPN).
//! - [`server`]: the listener, connection limit, timeouts and per-connection
//!   protocol; takes a bound listener and a shutdown future.
//! - [`writer`]: the one writer thread and its group commit.
//! - [`store`]: SQLite schema, the outcome rules of DESIGN §5, devices, stats.
//! - [`import`]: bundles in, through the same rules.
//! - [`export`]: reports out, streamed.

#![forbid(unsafe_code)]

pub mod cli;
pub mod export;
pub mod import;
pub mod paths;
pub mod server;
pub mod store;
pub mod tls;
pub mod writer;

pub use server::{run, Limits};
pub use store::{Checked, Store, StoreError};
pub use writer::Writer;
