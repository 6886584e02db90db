//! The device key: the Ed25519 key every report of this laptop is signed
//! with. Its seed lives sealed in the keyring (see [`crate::vault`]); here
//! it is only ever in memory, wiped when dropped. [`DeviceKey`]'s `Debug`
//! shows only the public key.

use std::io::Read;
use std::path::Path;

use ed25519_dalek::SigningKey;
use truce_shared::Bytes32;
use zeroize::Zeroizing;

use crate::error::{AgentError, Result};

/// This laptop's Ed25519 signing key (ed25519-dalek wipes it on drop).
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

    /// The key of a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self { key: SigningKey::from_bytes(seed) }
    }

    /// The seed, for sealing into the keyring.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
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

    /// Reads the raw seed file of a data dir made before sealing, for the
    /// one-time conversion. Anything but exactly 32 bytes is refused.
    pub fn read_legacy(path: &Path) -> Result<Self> {
        let mut f = std::fs::File::open(path).map_err(|e| AgentError::io("cannot read", path, e))?;
        // Read straight into a fixed buffer (no growable copies of the secret
        // left behind), then make sure nothing follows.
        let mut seed = Zeroizing::new([0u8; 32]);
        let mut extra = [0u8; 1];
        let exact = f.read_exact(&mut seed[..]).is_ok() && matches!(f.read(&mut extra), Ok(0));
        if !exact {
            return Err(AgentError::BadKeyFile(path.to_path_buf()));
        }
        Ok(Self::from_seed(&seed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_files_of_the_wrong_length_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let k = DeviceKey::generate();
        std::fs::write(dir.path().join("ok"), &k.seed()[..]).unwrap();
        assert_eq!(DeviceKey::read_legacy(&dir.path().join("ok")).unwrap().public(), k.public());
        std::fs::write(dir.path().join("short"), [1u8; 31]).unwrap();
        assert!(matches!(DeviceKey::read_legacy(&dir.path().join("short")), Err(AgentError::BadKeyFile(_))));
        std::fs::write(dir.path().join("long"), [1u8; 33]).unwrap();
        assert!(matches!(DeviceKey::read_legacy(&dir.path().join("long")), Err(AgentError::BadKeyFile(_))));
    }

    #[test]
    fn debug_shows_no_secret() {
        let k = DeviceKey::generate();
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex::encode(k.signing_key().as_bytes())));
        assert!(dbg.contains(&hex::encode(k.public())));
    }
}
