//! The device key: made once by `init`, read by every command that signs.
//!
//! The file holds the 32-byte Ed25519 seed and nothing else. It is created
//! with mode 0600 inside a 0700 directory, by `create_new`, so an existing key
//! is never overwritten and the secret is never on disk with looser
//! permissions, not even for a moment. [`DeviceKey`]'s `Debug` shows only the
//! public key.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use ed25519_dalek::SigningKey;
use truce_shared::Bytes32;

use crate::error::{AgentError, Result};

/// This laptop's Ed25519 signing key.
pub struct DeviceKey {
    key: SigningKey,
}

impl std::fmt::Debug for DeviceKey {
    // The secret never reaches a log: show the public half only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey").field("public", &hex::encode(self.public())).finish_non_exhaustive()
    }
}

impl DeviceKey {
    /// A new key from the operating system's random generator.
    pub fn generate() -> Self {
        Self { key: truce_shared::signing::generate_key() }
    }

    /// The public key: the device id of every report this laptop signs.
    pub fn public(&self) -> Bytes32 {
        self.key.verifying_key().to_bytes()
    }

    /// The short fingerprint to read out to the coordinator.
    pub fn fingerprint(&self) -> String {
        truce_shared::signing::fingerprint(&self.public())
    }

    /// The signing key, for `truce_shared::sign`.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Writes the key to a new file at `path`, mode 0600. Fails with
    /// [`AgentError::AlreadyInitialised`] if the file exists; the existing
    /// file is not touched.
    pub fn write_new(&self, path: &Path, dir_for_message: &Path) -> Result<()> {
        let mut f = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(AgentError::AlreadyInitialised(dir_for_message.to_path_buf()))
            }
            Err(e) => return Err(AgentError::io("cannot create", path, e)),
        };
        f.write_all(self.key.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| AgentError::io("cannot write", path, e))
    }

    /// Reads the key file. A missing file means `init` has not run.
    pub fn read(path: &Path, dir_for_message: &Path) -> Result<Self> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AgentError::NotInitialised(dir_for_message.to_path_buf()))
            }
            Err(e) => return Err(AgentError::io("cannot read", path, e)),
        };
        // Read straight into a fixed buffer (no growable copies of the secret
        // left behind), then make sure nothing follows.
        let mut seed = [0u8; 32];
        let mut extra = [0u8; 1];
        let exact = f.read_exact(&mut seed).is_ok() && matches!(f.read(&mut extra), Ok(0));
        let key = SigningKey::from_bytes(&seed);
        seed.fill(0);
        if !exact {
            return Err(AgentError::BadKeyFile(path.to_path_buf()));
        }
        Ok(Self { key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_then_read_gives_the_same_key_and_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        let k = DeviceKey::generate();
        k.write_new(&path, dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(DeviceKey::read(&path, dir.path()).unwrap().public(), k.public());
    }

    #[test]
    fn never_overwrites_and_rejects_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        DeviceKey::generate().write_new(&path, dir.path()).unwrap();
        let before = std::fs::read(&path).unwrap();
        let e = DeviceKey::generate().write_new(&path, dir.path()).unwrap_err();
        assert!(matches!(e, AgentError::AlreadyInitialised(_)));
        assert_eq!(std::fs::read(&path).unwrap(), before);
        std::fs::write(dir.path().join("short"), [1u8; 31]).unwrap();
        assert!(matches!(DeviceKey::read(&dir.path().join("short"), dir.path()), Err(AgentError::BadKeyFile(_))));
        std::fs::write(dir.path().join("long"), [1u8; 33]).unwrap();
        assert!(matches!(DeviceKey::read(&dir.path().join("long"), dir.path()), Err(AgentError::BadKeyFile(_))));
        assert!(matches!(DeviceKey::read(&dir.path().join("none"), dir.path()), Err(AgentError::NotInitialised(_))));
    }

    #[test]
    fn debug_shows_no_secret() {
        let k = DeviceKey::generate();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex::encode(k.signing_key().as_bytes())));
        assert!(dbg.contains(&hex::encode(k.public())));
    }
}
