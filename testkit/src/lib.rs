//! `truce-testkit`: the one test harness of Truce. Every crate's tests
//! build on it, so a PKI, a server, a run of a binary and a report fixture
//! are each made one way.
//!
//! # Layout
//!
//! - `run.rs`: [`run`] runs a command and keeps a [`Ran`], whose failure
//!   messages show the command line, cwd, status, stdout and stderr;
//!   [`bin`] finds the workspace binaries beside the running test.
//! - `pki.rs`: [`Pki`], a mission PKI in a temporary directory, made by the
//!   `truce-certs` library (CA, server certificate, client certificates,
//!   revocation in the CRL).
//! - `server.rs`: [`TestServer`], the real `truce-server` binary in a
//!   temporary data dir, listening on the address it reports after binding
//!   `127.0.0.1:0`; `Drop` kills it and removes the data dir. [`signal`]
//!   sends a Unix signal to a child; [`json_ids`] reads the ids of JSON
//!   Lines output.
//! - `postgres.rs`: [`TestPostgres`], a real PostgreSQL server from the
//!   distribution's binaries in a temporary directory, listening only on a
//!   Unix socket there (so instances never clash); `url()` for
//!   tokio-postgres, `fresh_database()`, `cpu_time()` of the postmaster and
//!   its processes for benchmarks; `Drop` stops it and removes the
//!   directory.
//! - `fixtures.rs`: [`observation`], [`envelope`], [`Device`] (a key that
//!   signs chained reports) and [`tampered`].
//!
//! What stays with one crate's tests: the server's in-process server and
//! raw TLS clients (`server/tests/common`, they use the server library),
//! the agent's stand-in server (`agent/tests/it/mock_server.rs`), the
//! end-to-end agent driver (`tests/src/harness.rs`, it uses the agent
//! library) and the certificate checks of `certs-example/tests/util.rs`.
//!
//! # Dependency cycles
//!
//! This crate depends on `truce-shared` and `truce-certs`. Those two
//! crates' tests do not depend on it back: the package graph stays acyclic,
//! and no test can meet two copies of a type (a crate's unit tests compile
//! it a second time). Instead they include the one file they need by path:
//! `shared/tests/support/mod.rs` includes `fixtures.rs` (which names only
//! `truce_shared`, `ed25519_dalek` and `hex`), `certs-example/tests/util.rs`
//! includes `run.rs` (standard library only). The code exists once; keep
//! those two files free of `crate::` paths.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod fixtures;
mod pki;
mod postgres;
mod run;
mod server;

pub use fixtures::{envelope, observation, tampered, Device, OBSERVED_AT};
pub use pki::Pki;
pub use postgres::TestPostgres;
pub use run::{bin, run, run_args, Ran};
pub use server::{json_ids, metric_sample, signal, TestServer};
