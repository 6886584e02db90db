//! The integration tests of `truce-server`, one module per promise. They
//! start a real server (in-process on 127.0.0.1:0, or the real binary where
//! signals matter) and connect real rustls clients. One test binary, so the
//! crate links once.

// PKI from truce-certs, servers, TLS clients, signing devices; all clean up in Drop.
mod common;

// The first lock: no cert, another CA, expired, revoked, TLS 1.2, wrong or no ALPN all fail; a good client works.
mod handshake_refusals;
// The second lock: every outcome of DESIGN §5 over the wire, with receipts, enrolment and revocation.
mod outcomes;
// 32 connections submitting overlapping batches: every distinct report stored and accepted exactly once.
mod duplicates_count_once;
// Ack only after commit (SIGKILL right after an Ack loses nothing); SIGTERM finishes in-flight batches, exits 0.
mod no_report_lost;
// Oversized, garbage, slow and rude clients are cut off at the limit while a good client is served.
mod bad_clients;
// `import` of bundles gives the same outcomes as the wire; broken bundles are reported by index.
mod import;
// The command line: init, device add/list/revoke, stats, and one-line errors.
mod cli;
