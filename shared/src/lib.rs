//! Truce's contract in code: everything that crosses a crate or a machine.
//!
//! # Layout
//!
//! - [`report`]: the Observation, Envelope and SignedReport types of DESIGN
//!   §2, and the field rules every report must meet.
//! - [`encoding`]: the one canonical postcard encoding; decoding refuses any
//!   other form of the same value.
//! - [`signing`]: report ids, signing and the one verification function
//!   (`verify_strict`, decode, re-encode, validate); server receipts.
//! - [`wire`]: the protocol messages of DESIGN §4.
//! - [`frame`]: 4-byte big-endian length framing, async and blocking.
//! - [`bundle`]: streaming writer and reader for `TRUCEB01` bundle files.
//! - [`limits`]: every limit, named once, with its default.
//! - [`time`]: RFC 3339 and relative times.
//! - [`text`]: text from outside made safe to print on a terminal.
//! - [`fuzzing`]: the properties the fuzz targets and their regression
//!   corpus check.
//!
//! Agent and server use these and never re-implement them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bundle;
pub mod encoding;
pub mod frame;
pub mod fuzzing;
pub mod limits;
pub mod report;
pub mod signing;
pub mod text;
pub mod time;
pub mod wire;

pub use report::{
    Attachment, Basis, Bytes32, Category, Count, Effect, Envelope, Observation, Position, Qualifier, Signature64,
    SignedReport, ValidationError, ENVELOPE_VERSION,
};
pub use signing::{sign, verify, verify_with, KeyCache, VerifiedReport, VerifyError};
