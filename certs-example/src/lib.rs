//! `truce-certs`: makes a Truce mission's PKI with rcgen.
//!
//! Truce's transport lock is mutual TLS: the server accepts only clients
//! holding a certificate from the mission CA that is not on the CRL. This
//! crate makes that PKI: the CA, the server's certificate, one client
//! certificate per laptop, and the CRL. It is for trying Truce out, for
//! tests and for small missions; a mission with its own CA does the same
//! with openssl (see the crate's README.md and `openssl-steps.sh`).
//!
//! Tests in other crates call [`init`], [`client`] and [`revoke`] directly;
//! the `truce-certs` binary is a thin CLI over the same functions.
//!
//! # Layout
//!
//! - `pki.rs`: the operations, [`init`], [`client`], [`revoke`] and
//!   [`crl`] (reissue the CRL, adding serials), with their options and
//!   results;
//! - `ca.rs`: the CA, loading it back, and the certificate profiles it issues;
//! - `crl.rs`: reading, extending and signing the CRL;
//! - `layout.rs`: where each file lives ([`Layout`]), which names are allowed;
//! - `files.rs`: writing keys 0600 without ever overwriting, replacing the
//!   CRL atomically;
//! - `error.rs`: the one [`Error`] type.
//!
//! # Files
//!
//! ```text
//! DIR/ca.pem  DIR/ca.key           the CA (init)
//! DIR/server.pem  DIR/server.key   the server certificate (init)
//! DIR/crl.pem                      the CRL (init makes it empty; revoke and
//!                                  crl add; its nextUpdate is 30 days on)
//! DIR/NAME.pem  DIR/NAME.key       one client (client NAME)
//! ```
//!
//! Keys are PKCS#8 PEM, mode 0600; all keys are ECDSA P-256.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod ca;
mod crl;
mod error;
mod files;
mod layout;
mod pki;

pub use error::Error;
pub use layout::{check_client_name, Layout};
pub use pki::{
    client, crl, init, revoke, ClientFiles, ClientOptions, ClientValidity, CrlOptions, CrlValidity, InitFiles,
    Reissued, Revocation, Revokee, DEFAULT_CLIENT_DAYS, DEFAULT_CRL_DAYS, DEFAULT_SERVER_NAMES,
};
