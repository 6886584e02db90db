//! Where each file of a PKI directory lives, and which names are allowed.
//!
//! A PKI directory is flat:
//!
//! ```text
//! ca.pem  ca.key          the mission CA (keep ca.key offline when you can)
//! server.pem server.key   the collection server's certificate
//! crl.pem                 the certificates revoked so far, signed by the CA
//! NAME.pem NAME.key       one client certificate per laptop
//! ```
//!
//! Client names become file names and certificate CNs, so they are checked
//! here once, before anything is made.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The longest client name, in bytes.
const MAX_CLIENT_NAME: usize = 64;

/// Names that would collide with the PKI's own files.
const RESERVED_NAMES: [&str; 3] = ["ca", "server", "crl"];

/// The paths of the files in one PKI directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The PKI directory itself.
    dir: PathBuf,
}

impl Layout {
    /// The layout of the PKI in `dir` (nothing is read or checked).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Layout { dir: dir.into() }
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, `ca.pem`: what servers and agents trust.
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA private key, `ca.key`.
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// The server certificate, `server.pem`.
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    /// The server private key, `server.key`.
    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The certificate revocation list, `crl.pem`.
    pub fn crl(&self) -> PathBuf {
        self.dir.join("crl.pem")
    }

    /// The certificate of client `name`, `NAME.pem` (`name` must be valid).
    pub fn client_cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// The private key of client `name`, `NAME.key` (`name` must be valid).
    pub fn client_key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }
}

/// Checks a client name: 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit (so it is never a hidden file nor looks like a flag), and
/// not one of the PKI's own file names.
pub fn check_client_name(name: &str) -> Result<(), Error> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let starts_well = name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if name.len() > MAX_CLIENT_NAME || !starts_well || !name.chars().all(allowed) {
        return Err(Error::InvalidClientName { name: name.to_owned() });
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Error::ReservedClientName { name: name.to_owned() });
    }
    Ok(())
}

/// A name the server certificate is valid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerName {
    /// An IP literal: becomes an IP address SAN.
    Ip(IpAddr),
    /// Anything else: becomes a DNS name SAN.
    Dns(String),
}

impl ServerName {
    /// Parses one `--server-name`: an IP literal, or a DNS name of labels of
    /// letters, digits, `-` and `_`, each 1 to 63 long, 253 in all.
    pub(crate) fn parse(name: &str) -> Result<Self, Error> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(ServerName::Ip(ip));
        }
        let label_ok = |label: &str| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        };
        if name.len() <= 253 && name.split('.').all(label_ok) {
            Ok(ServerName::Dns(name.to_ascii_lowercase()))
        } else {
            Err(Error::InvalidServerName { name: name.to_owned() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_that_are_allowed() {
        for name in ["a", "laptop-07", "team.north_2", "L", &"x".repeat(64)] {
            assert!(check_client_name(name).is_ok(), "{name:?} should be allowed");
        }
    }

    #[test]
    fn client_names_that_are_refused() {
        let long = "x".repeat(65);
        for name in ["", ".hidden", "-flag", "_x", "a/b", "a b", "ü", "..", "a\\b", &long] {
            assert!(
                matches!(check_client_name(name), Err(Error::InvalidClientName { .. })),
                "{name:?} should be refused"
            );
        }
        for name in ["ca", "server", "crl"] {
            assert!(matches!(check_client_name(name), Err(Error::ReservedClientName { .. })));
        }
    }

    #[test]
    fn server_names_become_ip_or_dns() {
        assert_eq!(ServerName::parse("127.0.0.1").ok(), Some(ServerName::Ip([127, 0, 0, 1].into())));
        assert!(matches!(ServerName::parse("::1"), Ok(ServerName::Ip(_))));
        assert_eq!(ServerName::parse("Truce.Example.org").ok(), Some(ServerName::Dns("truce.example.org".into())));
        for bad in ["", "a..b", "-a.b", "a b", "*.example.org", "a.b."] {
            assert!(ServerName::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
