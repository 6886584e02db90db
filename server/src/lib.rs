//! The Truce collection server (DESIGN §5): accepts the mission's laptops
//! over mutual TLS, verifies every signed report, stores each exactly once
//! in SQLite, and acknowledges a batch only once it is durable.
//!
//! # Layout
//!
//! - [`admission`]: who may hold a connection: the budget of unauthenticated
//!   connections (oldest dropped first), sessions per certificate.
//! - [`cli`]: the command line (`init`, `run`, `device`, `import`, `export`,
//!   `verify`, `incidents`, `stats`): parsing in `cli/args.rs`, then one
//!   file per command with what it prints; the only place errors become
//!   text for a person.
//! - [`audit`]: replaying the transparency log against the store and checkpoints.
//! - [`paths`]: the data directory and the receipt key.
//! - [`config`]: what a running server is given: limits, TLS, receipt key,
//!   database ([`Config`]; the `settings` table of the store is unrelated).
//! - [`tls`]: all rustls configuration (TLS 1.3, client certificates from
//!   the mission CA, CRLs, ALPN `truce/1`); PEM files are read by
//!   `truce_shared::pem`.
//! - [`revocation`]: the CRLs in force, reloaded on SIGHUP and when a file
//!   changes (nextUpdate and CRL number checked), and the open sessions a
//!   newly revoked certificate loses.
//! - [`server`]: the listener: admission, handshake deadline, shutdown;
//!   [`run`] takes a bound listener and a shutdown future, [`spawn`] runs
//!   it in the background for tests and benchmarks.
//! - [`shutdown`]: the shutdown signal: SIGTERM/SIGINT ([`shutdown::signal`])
//!   and what each connection listens to.
//! - [`session`]: one client session, Hello to Bye, generic over the
//!   stream.
//! - [`verify`]: the verification pool (the one verification function, off
//!   the async threads, in parallel).
//! - [`writer`]: the one writer thread and its group commit.
//! - [`store`]: the SQLite store: the outcome rules of DESIGN §5, devices,
//!   contacts (who was last heard from), reports and their queries,
//!   incidents as they are kept, the schema and its migrations (a folder,
//!   one file per concept).
//! - [`incidents`]: the rule that groups reports of one event (window,
//!   event positions, distances).
//! - [`metrics`]: what `run --metrics` serves: counters, gauges and
//!   histograms as plain atomics in one struct, the Prometheus text format,
//!   and its small bounded HTTP listener.
//! - [`stats`]: counts, devices, gaps and forks, incidents.
//! - [`import`]: bundles in, through the same verifier and writer.
//! - [`export`]: reports out (CSV, JSON Lines, GeoJSON, bundles), streamed;
//!   the columns listed once (`export/columns.rs`), one file per format.
//! - [`offline`]: `verify`: a bundle re-verified with no database.
//! - [`fuzzing`]: the property the session fuzz target and its regression
//!   corpus check.
//!
//! # Starting a server in-process
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path, pki: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
//! use truce_server::{paths::DataDir, config::{Limits, Config}, tls};
//! let data = DataDir::new(dir);
//! data.init("smm-east")?;
//! let tls = tls::server_config(&pki.join("ca.pem"), &pki.join("server.pem"), &pki.join("server.key"), &[pki.join("crl.pem")])?;
//! let config = Config::new(&data, tls, Limits::default())?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let server = truce_server::spawn(listener, config)?;
//! // … connect agents to server.addr() …
//! server.shutdown().await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admission;
pub mod audit;
pub mod cli;
pub mod config;
pub mod evidence;
pub mod export;
pub mod fuzzing;
pub mod import;
pub mod incidents;
pub mod metrics;
pub mod offline;
pub mod paths;
pub mod progress;
pub mod revocation;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod verify;
pub mod writer;

pub use config::{Config, Limits};
pub use server::{run, run_with_metrics, spawn, Handle, ServeError};
pub use store::{ReportQuery, ReportRow, ReportStatus, Store, StoreError};
pub use verify::Checked;
