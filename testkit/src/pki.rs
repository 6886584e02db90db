//! A throwaway mission PKI in a temporary directory, made by the
//! `truce-certs` library: the same code as the `truce-certs` binary, so the
//! files are what a mission would have. Removed when dropped.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A mission PKI: `ca.pem`/`ca.key`, `server.pem`/`server.key` (for
/// `localhost` and `127.0.0.1` unless told otherwise), `crl.pem`, and
/// `NAME.pem`/`NAME.key` per client.
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    /// A new CA, server certificate and empty CRL, and one valid client
    /// certificate per name.
    pub fn new(clients: &[&str]) -> Pki {
        Pki::with_server_names(&[], clients)
    }

    /// [`Pki::new`] with a server certificate for these names (IP
    /// addresses become IP SANs, the rest DNS SANs).
    pub fn with_server_names(server_names: &[&str], clients: &[&str]) -> Pki {
        let dir = tempfile::tempdir().expect("a temporary directory for the PKI");
        let names: Vec<String> = server_names.iter().map(|n| n.to_string()).collect();
        truce_certs::init(dir.path(), &names)
            .unwrap_or_else(|e| panic!("truce-certs init in {}: {e}", dir.path().display()));
        let pki = Pki { dir };
        for name in clients {
            pki.client(name);
        }
        pki
    }

    /// Issues a client certificate valid for the default time.
    pub fn client(&self, name: &str) {
        self.client_with(name, truce_certs::ClientOptions::default());
    }

    /// Issues a client certificate with these options (expired, short-lived…).
    pub fn client_with(&self, name: &str, opts: truce_certs::ClientOptions) {
        truce_certs::client(self.dir(), name, opts).unwrap_or_else(|e| panic!("truce-certs client {name}: {e}"));
    }

    /// Puts a client on the CRL (a server started afterwards refuses it).
    pub fn revoke(&self, name: &str) {
        truce_certs::revoke(self.dir(), name).unwrap_or_else(|e| panic!("truce-certs revoke {name}: {e}"));
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The directory as a string, for command lines.
    pub fn dir_str(&self) -> &str {
        self.dir.path().to_str().expect("a UTF-8 temporary path")
    }

    /// A file in it (`ca.pem`, `laptop.key`…).
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A file in it, as a string for command lines.
    pub fn file_str(&self, name: &str) -> String {
        self.file(name).to_str().expect("a UTF-8 temporary path").to_owned()
    }
}
