//! Support for Truce's end-to-end tests, the demo and the benchmark: they all
//! run the real binaries against each other over mTLS on loopback.
//!
//! # Layout
//!
//! - [`harness`]: runs `truce-agent` in sealed temporary data dirs
//!   ([`harness::Agent`]) and sets up a mission of one laptop; the PKI, the
//!   `truce-server` process and the binary runner come from
//!   `truce-testkit`.
//! - [`relay`]: a TCP relay that cuts the link at a chosen byte offset.

#![forbid(unsafe_code)]

pub mod harness;
pub mod relay;
