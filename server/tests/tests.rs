//! The integration tests of `truce-server`, one module per promise. They
//! start a real server (in-process on 127.0.0.1:0, or the real binary where
//! signals matter) and connect real rustls clients. One test binary, so the
//! crate links once.

// truce-testkit (PKI, server process, devices) plus an in-process server and TLS clients; all clean up in Drop.
mod common;

// The first lock: no cert, another CA, expired, revoked, TLS 1.2, wrong or no ALPN all fail beside a good client; a CRL takes effect on restart.
mod handshake_refusals;
// The second lock: every outcome of DESIGN §5 over the wire, with receipts, enrolment and revocation.
mod outcomes;
// 32 connections submitting overlapping batches: every distinct report stored and accepted exactly once.
mod duplicates_count_once;
// Ack only after commit (20 SIGKILLs right after an Ack lose nothing); SIGTERM acks the batches in flight, exits 0.
mod acked_means_stored;
// Oversized, garbage, slow and rude clients are cut off while a good client is served; every limit at its edge.
mod bad_clients;
// Connections that never authenticate, one certificate's many sessions, frames past the bytes-in-flight budget.
mod admission;
// Disk quotas per key, certificate and quarantine at their edges; refused bodies kept as hash and prefix.
mod quotas;
// `import` of bundles gives the same outcomes as the wire; broken bundles are reported by index.
mod import;
// Evidence over the wire from a hand-made client: mismatched bytes refused, counted, never exported; every upload limit at its edge; one uploader per file.
mod evidence_uploads;
// The command line: init, device add/list/revoke, stats, and one-line errors.
mod cli;
// Export in CSV, JSON Lines, GeoJSON and bundles; filters; amendments; offline verify; 1,000,000 rows in bounded memory.
mod investigators;
// Incidents: same category within 10 min and 2 km; corroboration by distinct devices; late arrivals; window changes.
mod incidents;
// The session fuzz target's seeds and every past crash input replayed without the fuzzer.
mod fuzz_corpus;
// Two servers' stores on one real PostgreSQL at the same moment: stored once, forks found, incidents and enrolment across them; migrate from SQLite.
mod shared_database;
// `run`'s settings layered: defaults, truce-server.toml (or --config), TRUCE_SERVER_* variables, flags; --print-config.
mod config_file;
// `run --metrics`: the Prometheus text format on its own bounded listener, counters matching what was sent.
mod metrics;
