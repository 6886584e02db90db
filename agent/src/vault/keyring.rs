//! The keyring file (`DIR/keyring`, 0600) and the key Argon2id derives
//! from the passphrase to seal it.

use super::*;

/// The keyring's format name (also the start of its associated data).
pub const KEYRING_FORMAT: &str = "truce-agent keyring v1";

/// Argon2id memory, KiB: 64 MiB, the floor DESIGN §11 sets.
pub const KDF_MEMORY_KIB: u32 = 64 * 1024;
/// Argon2id passes.
pub const KDF_PASSES: u32 = 3;
/// Argon2id lanes.
pub const KDF_LANES: u32 = 1;

/// The most Argon2id memory a keyring may ask for, KiB (1 GiB): a damaged
/// or hostile keyring cannot make the agent exhaust the laptop.
pub const KDF_MEMORY_KIB_MAX: u32 = 1024 * 1024;
/// The most Argon2id passes a keyring may ask for.
pub const KDF_PASSES_MAX: u32 = 16;
/// The most Argon2id lanes a keyring may ask for.
pub const KDF_LANES_MAX: u32 = 8;

/// The keyring file as stored (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Keyring {
    format: String,
    /// The device's public key, readable without the passphrase.
    #[serde(with = "hex32")]
    pub device: Bytes32,
    kdf: String,
    m_kib: u32,
    pub(super) t: u32,
    p: u32,
    salt: String,
    nonce: String,
    sealed: String,
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

impl Keyring {
    /// Seals `secrets` for `device` under `protection`.
    pub fn seal(device: Bytes32, secrets: &Secrets, protection: &Protection) -> Result<Keyring> {
        let mut salt = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        let (kdf, m_kib, t, p) = match protection {
            Protection::Passphrase(_) => ("argon2id", KDF_MEMORY_KIB, KDF_PASSES, KDF_LANES),
            Protection::None => ("none", 0, 0, 0),
        };
        let mut ring = Keyring {
            format: KEYRING_FORMAT.to_string(),
            device,
            kdf: kdf.to_string(),
            m_kib,
            t,
            p,
            salt: hex::encode(salt),
            nonce: String::new(),
            sealed: String::new(),
        };
        let kek = ring.kek(match protection {
            Protection::Passphrase(p) => Some(p),
            Protection::None => None,
        })?;
        let mut plain = Zeroizing::new([0u8; 64]);
        plain[..32].copy_from_slice(&secrets.data_key);
        plain[32..].copy_from_slice(&secrets.seed);
        let nonce = random_nonce();
        let sealed = XChaCha20Poly1305::new((&*kek).into())
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain[..], aad: ring.associated_data().as_bytes() })
            .map_err(|_| AgentError::Corrupt("sealing the keyring failed".into()))?;
        ring.nonce = hex::encode(nonce);
        ring.sealed = hex::encode(sealed);
        Ok(ring)
    }

    /// Whether a passphrase is needed to unseal.
    pub fn is_protected(&self) -> bool {
        self.kdf != "none"
    }

    /// Unseals the secrets. Every failure past parsing is
    /// [`AgentError::WrongPassphrase`], whichever step it was.
    pub fn unseal(&self, passphrase: Option<&Passphrase>) -> Result<Secrets> {
        if self.is_protected() && passphrase.is_none() {
            return Err(AgentError::PassphraseNeeded);
        }
        let kek = self.kek(passphrase)?;
        let nonce = hex_array::<NONCE>(&self.nonce).ok_or(AgentError::WrongPassphrase)?;
        let sealed = hex::decode(&self.sealed).map_err(|_| AgentError::WrongPassphrase)?;
        let plain = Zeroizing::new(
            XChaCha20Poly1305::new((&*kek).into())
                .decrypt(XNonce::from_slice(&nonce), Payload { msg: &sealed, aad: self.associated_data().as_bytes() })
                .map_err(|_| AgentError::WrongPassphrase)?,
        );
        if plain.len() != 64 {
            return Err(AgentError::WrongPassphrase);
        }
        let mut secrets = Secrets { seed: [0; 32], data_key: [0; 32] };
        secrets.data_key.copy_from_slice(&plain[..32]);
        secrets.seed.copy_from_slice(&plain[32..]);
        let public = ed25519_dalek::SigningKey::from_bytes(&secrets.seed).verifying_key().to_bytes();
        if public != self.device {
            return Err(AgentError::WrongPassphrase);
        }
        Ok(secrets)
    }

    /// Reads the keyring at `path`; `None` if there is none.
    pub fn load(path: &Path) -> Result<Option<Keyring>> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AgentError::io("cannot read", path, e)),
        };
        let ring: Keyring = serde_json::from_slice(&text).map_err(|_| AgentError::BadKeyFile(path.to_path_buf()))?;
        if ring.format != KEYRING_FORMAT || !matches!(ring.kdf.as_str(), "argon2id" | "none") {
            return Err(AgentError::BadKeyFile(path.to_path_buf()));
        }
        Ok(Some(ring))
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("a struct of strings and integers always serializes to JSON");
        v.push(b'\n');
        v
    }

    fn associated_data(&self) -> String {
        format!(
            "{KEYRING_FORMAT}\n{}\n{}\n{}\n{}\n{}\n{}",
            hex::encode(self.device),
            self.kdf,
            self.m_kib,
            self.t,
            self.p,
            self.salt
        )
    }

    /// The key-encryption key.
    fn kek(&self, passphrase: Option<&Passphrase>) -> Result<Zeroizing<[u8; 32]>> {
        let mut kek = Zeroizing::new([0u8; 32]);
        if !self.is_protected() {
            return Ok(kek);
        }
        let Some(passphrase) = passphrase else { return Err(AgentError::PassphraseNeeded) };
        // Parameters outside these bounds are not something this agent wrote.
        if !(KDF_MEMORY_KIB..=KDF_MEMORY_KIB_MAX).contains(&self.m_kib)
            || !(KDF_PASSES..=KDF_PASSES_MAX).contains(&self.t)
            || !(1..=KDF_LANES_MAX).contains(&self.p)
        {
            return Err(AgentError::WrongPassphrase);
        }
        let salt = hex::decode(&self.salt).map_err(|_| AgentError::WrongPassphrase)?;
        let params = Params::new(self.m_kib, self.t, self.p, Some(32)).map_err(|_| AgentError::WrongPassphrase)?;
        // Argon2's working memory holds enough to recompute the KEK: it is
        // ours, and wiped when dropped.
        let mut memory = Zeroizing::new(vec![argon2::Block::default(); params.block_count()]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into_with_memory(passphrase.bytes(), &salt, &mut kek[..], &mut memory[..])
            .map_err(|_| AgentError::WrongPassphrase)?;
        Ok(kek)
    }
}
