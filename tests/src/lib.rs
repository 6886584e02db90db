//! Support for Truce's end-to-end tests, the demo and the benchmark: they all
//! run the real binaries against each other over mTLS on loopback.
//!
//! # Layout
//!
//! - [`harness`]: finds the binaries, makes a PKI with `truce-certs`, runs
//!   `truce-server` and `truce-agent` in temporary data dirs, kills them in
//!   `Drop`.
//! - [`relay`]: a TCP relay that cuts the link at a chosen byte offset.

#![forbid(unsafe_code)]

pub mod harness;
pub mod relay;
