//! The one error type of `truce-certs`.
//!
//! Every variant reads as one line a person can act on: what went wrong, on
//! which file, and what to do. No variant ever carries key material or the
//! contents of a file; a bad file is named by its path only.

use std::io;
use std::path::PathBuf;

/// What can go wrong while making or changing a mission's PKI.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file this command would create is already there. Nothing was
    /// written: keys and certificates are never overwritten.
    #[error("{} already exists: refusing to overwrite it ({hint})", path.display())]
    AlreadyExists {
        /// The file that is already there.
        path: PathBuf,
        /// What to do instead.
        hint: &'static str,
    },

    /// A client name must be 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with
    /// a letter or digit, because it becomes a file name and a CN.
    #[error(
        "invalid client name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-', \
         starting with a letter or digit"
    )]
    InvalidClientName {
        /// The name as given.
        name: String,
    },

    /// The client name is one of the PKI's own files (`ca`, `server`, `crl`).
    #[error("client name {name:?} is reserved for the PKI's own files: choose another")]
    ReservedClientName {
        /// The name as given.
        name: String,
    },

    /// A server name is neither an IP address nor a DNS name.
    #[error("invalid server name {name:?}: give a DNS name (like truce.example.org) or an IP address")]
    InvalidServerName {
        /// The name as given.
        name: String,
    },

    /// The asked validity is zero days, or would outlive the CA.
    #[error("invalid validity of {days} days: give at least 1 and at most {max} (the CA's remaining life)")]
    InvalidDays {
        /// The number of days asked for.
        days: u32,
        /// The most days the CA can still back.
        max: i64,
    },

    /// The directory holds no CA (no `ca.pem` or no `ca.key`).
    #[error("no CA in {}: run `truce-certs init --out {}` first", dir.display(), dir.display())]
    NoCa {
        /// The directory that was searched.
        dir: PathBuf,
    },

    /// The CA's validity has ended: it can no longer issue anything useful.
    #[error("the CA in {} has expired: make a new PKI with `truce-certs init` in another directory", dir.display())]
    CaExpired {
        /// The directory holding the expired CA.
        dir: PathBuf,
    },

    /// `revoke` was asked for a client that has no certificate in the directory.
    #[error("no certificate for client {name:?} in {}: nothing to revoke", dir.display())]
    NoClient {
        /// The client name as given.
        name: String,
        /// The directory that was searched.
        dir: PathBuf,
    },

    /// The CRL is gone. It is never silently recreated: an empty one would
    /// quietly un-revoke every certificate revoked so far.
    #[error(
        "{} is missing: restore it from a backup (it lists every revoked certificate)",
        path.display()
    )]
    NoCrl {
        /// Where the CRL should be.
        path: PathBuf,
    },

    /// A serial number to revoke is not hexadecimal.
    #[error(
        "invalid serial number {serial:?}: give it in hex, as truce-certs and `openssl x509 -noout -serial` print it"
    )]
    InvalidSerial {
        /// The serial as given.
        serial: String,
    },

    /// A file could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done: "read", "write", "create directory", …
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },

    /// A file is there but is not what it should be (not PEM, not a
    /// certificate, a key that does not match, another CA's certificate).
    #[error("{} is not a valid {what}: {reason}", path.display())]
    BadFile {
        /// The file concerned.
        path: PathBuf,
        /// What it should have been ("CA certificate", "CRL", …).
        what: &'static str,
        /// Why it is not; never the file's contents.
        reason: String,
    },

    /// The operating system gave no random numbers for a serial number.
    #[error("could not get random numbers from the operating system")]
    NoRandomness,

    /// Making a key, a certificate or a CRL failed inside rcgen.
    #[error("could not make the {what}")]
    Crypto {
        /// What was being made.
        what: &'static str,
        /// rcgen's reason.
        #[source]
        source: rcgen::Error,
    },
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }

    /// An [`Error::BadFile`] for `path`.
    pub(crate) fn bad_file(path: impl Into<PathBuf>, what: &'static str, reason: impl Into<String>) -> Self {
        Error::BadFile { path: path.into(), what, reason: reason.into() }
    }

    /// A closure turning an rcgen error into [`Error::Crypto`], for `map_err`.
    pub(crate) fn crypto(what: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |source| Error::Crypto { what, source }
    }
}
