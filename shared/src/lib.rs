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
//! - [`bundle`]: streaming writers and readers for bundle files (`TRUCEB01` reports, `TRUCEB02` items with log proofs).
//! - [`limits`]: every limit, named once, with its default.
//! - [`log`]: the transparency log of DESIGN §9: entries, the Merkle tree,
//!   range proofs, signed checkpoints and protocol-2 receipts.
//! - [`time`]: RFC 3339 and relative times.
//! - [`vocabulary`]: the report's vocabulary (category, effect, count
//!   qualifier, basis): every value, in wire order, with its kebab-case name.
//! - [`text`]: text from outside made safe to print on a terminal.
//! - [`console`]: an error as one line on stderr; output a closed pipe ends
//!   quietly.
//! - [`fs`]: the atomic replace (temporary file, fsync, rename, fsync of the
//!   directory), private directories and secret files, per platform.
//! - [`pem`]: certificates, private keys and CRLs read from PEM files.
//! - `tls` (feature `tls`): the one crypto provider of every TLS config
//!   (AWS-LC, key exchange X25519MLKEM768 then X25519).
//! - [`signal`]: the request to stop (SIGTERM, SIGINT; Ctrl-C on Windows).
//! - [`fuzzing`]: the properties the fuzz targets and their regression
//!   corpus check.
//!
//! Agent and server use these and never re-implement them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bundle;
pub mod console;
pub mod encoding;
pub mod frame;
pub mod fs;
pub mod fuzzing;
pub mod limits;
pub mod log;
pub mod pem;
pub mod report;
pub mod signal;
pub mod signing;
pub mod text;
pub mod time;
#[cfg(feature = "tls")]
pub mod tls;
pub mod vocabulary;
pub mod wire;

pub use report::{
    Attachment, Basis, Bytes32, Category, Count, Effect, Envelope, Observation, Position, Qualifier, Signature64,
    SignedReport, ValidationError, ENVELOPE_VERSION,
};
pub use signing::{sign, verify, verify_with, KeyCache, VerifiedReport, VerifyError};
pub use vocabulary::UnknownWord;
