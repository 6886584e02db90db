//! Sealing (DESIGN §11): the passphrase, the keyring, and the data key that
//! encrypts everything on this laptop that describes an observation.
//!
//! # Keys
//!
//! ```text
//! passphrase ──Argon2id(salt, m ≥ 64 MiB, t ≥ 3)──▶ key-encryption key (KEK)
//! KEK ──XChaCha20-Poly1305──▶ keyring: the data key (32 random bytes)
//!                                     + the device seed (32 bytes)
//! data key ──SHA-256 with a label──▶ one subkey per use:
//!     queue   report bodies and signatures in the queue (one AEAD per row)
//!     file    evidence files (STREAM: XChaCha20-Poly1305 in 64 KiB chunks)
//!     secret  the TLS client key stored by `link`
//!     name    the file names of evidence copies (a keyed hash of the SHA-256)
//! ```
//!
//! Changing the passphrase re-seals the keyring alone: the data key, and so
//! the queue and the files, do not change. `wipe` destroys the keyring and
//! the sealed TLS key; without the data key what is left cannot be read,
//! with or without the passphrase.
//!
//! With `init --no-passphrase` the KEK is 32 zero bytes: the same code runs,
//! but anyone with the disk can unseal it, which every command says.
//!
//! # The keyring file (`DIR/keyring`, 0600)
//!
//! One JSON object; every field but `nonce` and `sealed` is bound into the
//! AEAD as associated data, so weakened parameters or another device's key
//! do not unseal:
//!
//! ```json
//! {"format":"truce-agent keyring v1","device":"<64 hex: public key>",
//!  "kdf":"argon2id","m_kib":65536,"t":3,"p":1,"salt":"<32 hex>",
//!  "nonce":"<48 hex>","sealed":"<160 hex: AEAD(data key ‖ seed)>"}
//! ```
//!
//! `kdf` is `"none"` (and `m_kib`, `t`, `p` are 0) for `--no-passphrase`.
//!
//! # Sealed rows, blobs and files
//!
//! - A queue row: `nonce(24) ‖ AEAD(body ‖ signature(64))`, associated
//!   data `"truce-agent queue v1" ‖ seq (8, big-endian) ‖ id (32)`, so a row
//!   cannot be moved to another seq or id.
//! - A blob (the TLS key): `nonce(24) ‖ AEAD(bytes)`, associated data the
//!   blob's label.
//! - A file: `"TRUCEF01" ‖ nonce prefix(19) ‖ chunks`, each chunk 64 KiB of
//!   plaintext + 16 bytes of tag, the last one flagged (RustCrypto's STREAM,
//!   big-endian 32-bit counter), so a truncated or reordered file does not
//!   decrypt. The plaintext is `length (u64, little-endian) ‖ the file ‖
//!   zeros`, padded to [`padded_len`] (Padmé, then whole chunks), so the
//!   sealed size says little about the file's: a captor holding a copy of
//!   a photo cannot match it by size. Its name is `hex(SHA-256("truce-agent
//!   file name v1" ‖ name key ‖ sha256 of the content))`: the name says
//!   nothing about it either.
//!
//! Every failure to unseal is the same error: a wrong passphrase, a damaged
//! keyring and a keyring of another laptop are indistinguishable by design.

use std::fmt;
use std::io::{Read, Write};
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use truce_shared::Bytes32;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{AgentError, Result};

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

/// The shortest passphrase `init` and `passphrase` take.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// Plaintext bytes per chunk of a sealed file.
pub const FILE_CHUNK: usize = 64 * 1024;
/// The first bytes of a sealed file.
pub const FILE_MAGIC: &[u8; 8] = b"TRUCEF01";

const TAG: usize = 16;
const NONCE: usize = 24;
const STREAM_NONCE: usize = 19;
const QUEUE_AD: &[u8] = b"truce-agent queue v1";

/// A passphrase, wiped from memory when dropped and never printed.
pub struct Passphrase(Zeroizing<String>);

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(…)")
    }
}

impl Passphrase {
    /// A passphrase as typed. Only emptiness is refused here; the length
    /// rule for new passphrases is [`Passphrase::check_new`]'s.
    pub fn new(text: String) -> Result<Passphrase> {
        let text = Zeroizing::new(text);
        if text.is_empty() {
            return Err(AgentError::input("passphrase", "the passphrase is empty"));
        }
        Ok(Passphrase(text))
    }

    /// Reads a passphrase file: its content less one trailing newline.
    pub fn from_file(path: &Path) -> Result<Passphrase> {
        // Sized up front so reading never reallocates and leaves a copy.
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0).min(1 << 16) as usize;
        let mut text = Zeroizing::new(String::with_capacity(len + 1));
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| AgentError::io("cannot read the passphrase file", path, e))?;
        let trimmed = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
        if trimmed.is_empty() {
            return Err(AgentError::input(
                "--passphrase-file",
                format!("{} is empty: write the passphrase in it", path.display()),
            ));
        }
        Passphrase::new(trimmed.to_string())
    }

    /// Refuses a new passphrase that is too short to protect anything.
    pub fn check_new(&self) -> Result<()> {
        if self.0.chars().count() < MIN_PASSPHRASE_CHARS {
            return Err(AgentError::input(
                "passphrase",
                format!(
                    "too short: use at least {MIN_PASSPHRASE_CHARS} characters (several unrelated words are easy to remember and hard to guess)"
                ),
            ));
        }
        Ok(())
    }

    /// Whether two passphrases are the same (the "type it again" check).
    pub fn same_as(&self, other: &Passphrase) -> bool {
        *self.0 == *other.0
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// How a keyring is protected.
#[derive(Debug)]
pub enum Protection {
    /// Sealed under a key derived from this passphrase.
    Passphrase(Passphrase),
    /// Not protected (`--no-passphrase`, for trials).
    None,
}

/// The secrets a keyring holds, wiped when dropped.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Secrets {
    /// The Ed25519 seed of the device key.
    pub seed: [u8; 32],
    /// The root of the data key.
    pub data_key: [u8; 32],
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(…)")
    }
}

impl Secrets {
    /// A new data key around an existing (or new) seed.
    pub fn new(seed: &[u8; 32]) -> Secrets {
        let mut s = Secrets { seed: *seed, data_key: [0u8; 32] };
        rand::rngs::OsRng.fill_bytes(&mut s.data_key);
        s
    }

    /// The subkeys of the data key.
    pub fn data_key(&self) -> DataKey {
        DataKey::derive(&self.data_key)
    }
}

/// The keyring file as stored (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Keyring {
    format: String,
    /// The device's public key, readable without the passphrase.
    #[serde(with = "hex32")]
    pub device: Bytes32,
    kdf: String,
    m_kib: u32,
    t: u32,
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

/// The subkeys of the data key (see the module docs), wiped when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey {
    queue: [u8; 32],
    file: [u8; 32],
    secret: [u8; 32],
    name: [u8; 32],
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(…)")
    }
}

fn subkey(label: &str, root: &[u8; 32]) -> [u8; 32] {
    Sha256::new().chain_update(label.as_bytes()).chain_update([0u8]).chain_update(root).finalize().into()
}

fn random_nonce() -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

impl DataKey {
    /// The subkeys of a data key root.
    pub fn derive(root: &[u8; 32]) -> DataKey {
        DataKey {
            queue: subkey("truce-agent subkey queue v1", root),
            file: subkey("truce-agent subkey file v1", root),
            secret: subkey("truce-agent subkey secret v1", root),
            name: subkey("truce-agent subkey name v1", root),
        }
    }

    fn queue_ad(seq: u64, id: &Bytes32) -> Vec<u8> {
        let mut ad = Vec::with_capacity(QUEUE_AD.len() + 40);
        ad.extend_from_slice(QUEUE_AD);
        ad.extend_from_slice(&seq.to_be_bytes());
        ad.extend_from_slice(id);
        ad
    }

    /// Seals a report's signed bytes for the queue row `(seq, id)`.
    pub fn seal_report(&self, seq: u64, id: &Bytes32, body: &[u8], signature: &[u8; 64]) -> Vec<u8> {
        let mut plain = Vec::with_capacity(body.len() + 64);
        plain.extend_from_slice(body);
        plain.extend_from_slice(signature);
        seal(&self.queue, &Self::queue_ad(seq, id), &plain)
    }

    /// Opens a queue row: the body and signature, or `None` if the row was
    /// not sealed by this key for this `(seq, id)`.
    pub fn open_report(&self, seq: u64, id: &Bytes32, sealed: &[u8]) -> Option<(Vec<u8>, [u8; 64])> {
        let mut plain = open(&self.queue, &Self::queue_ad(seq, id), sealed)?;
        let split = plain.len().checked_sub(64)?;
        let sig: [u8; 64] = plain[split..].try_into().ok()?;
        plain.truncate(split);
        Some((plain, sig))
    }

    /// Seals a small secret (the TLS key) under its label.
    pub fn seal_secret(&self, label: &str, plain: &[u8]) -> Vec<u8> {
        seal(&self.secret, label.as_bytes(), plain)
    }

    /// Opens a sealed secret.
    pub fn open_secret(&self, label: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        open(&self.secret, label.as_bytes(), sealed).map(Zeroizing::new)
    }

    /// The name under `attachments/` of the sealed copy of a file with
    /// this SHA-256.
    pub fn file_name(&self, sha256: &Bytes32) -> String {
        let h: [u8; 32] = Sha256::new()
            .chain_update(b"truce-agent file name v1")
            .chain_update(self.name)
            .chain_update(sha256)
            .finalize()
            .into();
        hex::encode(h)
    }

    /// Encrypts `src`, which holds `len` bytes, into `dst` (see the module
    /// docs) and returns the plaintext's SHA-256. A source that turns out
    /// longer or shorter than `len` (changed while read) is refused.
    pub fn seal_file(
        &self,
        src: &mut dyn Read,
        len: u64,
        dst: &mut dyn Write,
        on_read: &dyn Fn(std::io::Error) -> AgentError,
        on_write: &dyn Fn(std::io::Error) -> AgentError,
    ) -> Result<Bytes32> {
        let changed = || on_read(std::io::Error::other("the file changed while it was being read: try again"));
        let failed = || AgentError::Corrupt("sealing a file failed".into());
        let mut prefix = [0u8; STREAM_NONCE];
        rand::rngs::OsRng.fill_bytes(&mut prefix);
        dst.write_all(FILE_MAGIC).and_then(|()| dst.write_all(&prefix)).map_err(on_write)?;
        // `encrypt_last` consumes the encryptor: it is taken out for the last chunk.
        let mut enc = Some(EncryptorBE32::from_aead(XChaCha20Poly1305::new((&self.file).into()), (&prefix).into()));
        let total = padded_len(len);
        let mut hasher = Sha256::new();
        let mut buf = Zeroizing::new(vec![0u8; FILE_CHUNK]);
        let (mut emitted, mut read) = (0u64, 0u64);
        while emitted < total {
            // Fill one chunk: the length header first, then file bytes, then zeros.
            let mut at = 0;
            if emitted == 0 {
                buf[..8].copy_from_slice(&len.to_le_bytes());
                at = 8;
            }
            let want = (len - read).min((FILE_CHUNK - at) as u64) as usize;
            let got = read_full(src, &mut buf[at..at + want]).map_err(on_read)?;
            if got != want {
                return Err(changed());
            }
            hasher.update(&buf[at..at + got]);
            read += got as u64;
            buf[at + got..].fill(0);
            emitted += FILE_CHUNK as u64;
            let ct = if emitted >= total {
                enc.take().ok_or_else(failed)?.encrypt_last(&buf[..])
            } else {
                enc.as_mut().ok_or_else(failed)?.encrypt_next(&buf[..])
            };
            dst.write_all(&ct.map_err(|_| failed())?).map_err(on_write)?;
            if emitted >= total {
                break;
            }
        }
        // Nothing may follow what was measured.
        if read_full(src, &mut [0u8; 1]).map_err(on_read)? != 0 {
            return Err(changed());
        }
        Ok(hasher.finalize().into())
    }

    /// Decrypts a sealed file into `dst`, returning the plaintext's SHA-256
    /// and length. A damaged, truncated or foreign file is an error.
    pub fn open_file(&self, src: &mut dyn Read, dst: &mut dyn Write, path: &Path) -> Result<(Bytes32, u64)> {
        let damaged =
            || AgentError::Corrupt(format!("the sealed file {} is damaged or not this laptop's", path.display()));
        let mut head = [0u8; 8 + STREAM_NONCE];
        src.read_exact(&mut head).map_err(|_| damaged())?;
        if &head[..8] != FILE_MAGIC {
            return Err(damaged());
        }
        let prefix: [u8; STREAM_NONCE] = head[8..].try_into().map_err(|_| damaged())?;
        let mut dec = Some(DecryptorBE32::from_aead(XChaCha20Poly1305::new((&self.file).into()), (&prefix).into()));
        let mut hasher = Sha256::new();
        let (mut len, mut written) = (None::<u64>, 0u64);
        let mut buf = vec![0u8; FILE_CHUNK + TAG];
        let mut filled = read_full(src, &mut buf).map_err(|e| AgentError::io("cannot read", path, e))?;
        loop {
            let mut next = vec![0u8; FILE_CHUNK + TAG];
            let next_filled = if filled == FILE_CHUNK + TAG {
                read_full(src, &mut next).map_err(|e| AgentError::io("cannot read", path, e))?
            } else {
                0
            };
            let last = next_filled == 0;
            let plain = Zeroizing::new(
                if last {
                    dec.take().ok_or_else(damaged)?.decrypt_last(&buf[..filled])
                } else {
                    dec.as_mut().ok_or_else(damaged)?.decrypt_next(&buf[..filled])
                }
                .map_err(|_| damaged())?,
            );
            let mut data = &plain[..];
            let total = match len {
                Some(l) => l,
                None => {
                    let l = u64::from_le_bytes(data.get(..8).ok_or_else(damaged)?.try_into().map_err(|_| damaged())?);
                    data = &data[8..];
                    len = Some(l);
                    l
                }
            };
            let take = (total - written).min(data.len() as u64) as usize;
            hasher.update(&data[..take]);
            dst.write_all(&data[..take]).map_err(|e| AgentError::io("cannot write what was read from", path, e))?;
            written += take as u64;
            if data[take..].iter().any(|&b| b != 0) {
                return Err(damaged());
            }
            if last {
                break;
            }
            buf = next;
            filled = next_filled;
        }
        if len != Some(written) {
            return Err(damaged());
        }
        Ok((hasher.finalize().into(), written))
    }
}

/// The plaintext length a sealed file of `len` bytes is padded to: the
/// 8-byte length header and the file, rounded up by Padmé (which leaks at
/// most O(log log n) bits of the size) and then to whole chunks.
pub fn padded_len(len: u64) -> u64 {
    let l = len.saturating_add(8);
    let e = 63 - l.leading_zeros() as u64; // floor(log2 l)
    let s = if e == 0 { 0 } else { 64 - e.leading_zeros() as u64 }; // floor(log2 e) + 1
    let mask = (1u64 << e.saturating_sub(s)) - 1;
    let padme = l.saturating_add(mask) & !mask;
    let chunk = FILE_CHUNK as u64;
    padme.div_ceil(chunk).max(1).saturating_mul(chunk)
}

fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn seal(key: &[u8; 32], ad: &[u8], plain: &[u8]) -> Vec<u8> {
    let nonce = random_nonce();
    let mut out = Vec::with_capacity(NONCE + plain.len() + TAG);
    out.extend_from_slice(&nonce);
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: ad })
        .expect("XChaCha20-Poly1305 fails only on a message over 256 GiB; what is sealed here is a report or a key");
    out.extend_from_slice(&ct);
    out
}

fn open(key: &[u8; 32], ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE + TAG {
        return None;
    }
    let (nonce, ct) = sealed.split_at(NONCE);
    XChaCha20Poly1305::new(key.into()).decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: ad }).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Passphrase {
        Passphrase::new(s.to_string()).unwrap()
    }

    #[test]
    fn a_keyring_opens_with_its_passphrase_only() {
        let seed = [7u8; 32];
        let device = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let secrets = Secrets::new(&seed);
        let ring = Keyring::seal(device, &secrets, &Protection::Passphrase(pass("correct horse"))).unwrap();
        assert!(ring.is_protected());
        let back = Keyring::load_from_bytes(&ring.to_bytes());
        let opened = back.unseal(Some(&pass("correct horse"))).unwrap();
        assert_eq!(opened.seed, seed);
        assert_eq!(opened.data_key, secrets.data_key);
        assert!(matches!(back.unseal(Some(&pass("wrong horse"))), Err(AgentError::WrongPassphrase)));
        assert!(matches!(back.unseal(None), Err(AgentError::PassphraseNeeded)));
        // Weakening the parameters in the file breaks the seal.
        let mut weak = back.clone();
        weak.t = 4;
        assert!(matches!(weak.unseal(Some(&pass("correct horse"))), Err(AgentError::WrongPassphrase)));
        let text = String::from_utf8(ring.to_bytes()).unwrap();
        assert!(!text.contains(&hex::encode(seed)) && !text.contains(&hex::encode(secrets.data_key)));
    }

    #[test]
    fn an_unprotected_keyring_opens_without_a_passphrase() {
        let seed = [9u8; 32];
        let device = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let ring = Keyring::seal(device, &Secrets::new(&seed), &Protection::None).unwrap();
        assert!(!ring.is_protected());
        assert_eq!(ring.unseal(None).unwrap().seed, seed);
    }

    #[test]
    fn rows_are_bound_to_their_seq_and_id() {
        let k = DataKey::derive(&[1; 32]);
        let sealed = k.seal_report(3, &[4; 32], b"body", &[5; 64]);
        assert_eq!(k.open_report(3, &[4; 32], &sealed), Some((b"body".to_vec(), [5; 64])));
        assert_eq!(k.open_report(4, &[4; 32], &sealed), None);
        assert_eq!(k.open_report(3, &[6; 32], &sealed), None);
        assert_eq!(DataKey::derive(&[2; 32]).open_report(3, &[4; 32], &sealed), None);
        assert_eq!(k.open_report(3, &[4; 32], &sealed[..10]), None);
    }

    #[test]
    fn files_round_trip_at_chunk_edges_and_refuse_truncation() {
        let k = DataKey::derive(&[1; 32]);
        let p = Path::new("f");
        let io = |e| AgentError::io("io", Path::new("f"), e);
        for len in [0, 1, FILE_CHUNK - 9, FILE_CHUNK - 8, FILE_CHUNK, FILE_CHUNK + 1, 3 * FILE_CHUNK, 700_001] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut sealed = Vec::new();
            let sha = k.seal_file(&mut &data[..], len as u64, &mut sealed, &io, &io).unwrap();
            assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&data)));
            let chunks = padded_len(len as u64) / FILE_CHUNK as u64;
            assert_eq!(sealed.len() as u64, 27 + chunks * (FILE_CHUNK + TAG) as u64, "length {len}");
            let mut back = Vec::new();
            assert_eq!(k.open_file(&mut &sealed[..], &mut back, p).unwrap(), (sha, len as u64));
            assert_eq!(back, data, "length {len}");
            let cut = &sealed[..sealed.len() - 1];
            assert!(k.open_file(&mut &cut[..], &mut Vec::new(), p).is_err(), "truncated {len}");
            if chunks > 1 {
                let cut = &sealed[..sealed.len() - (FILE_CHUNK + TAG)];
                assert!(k.open_file(&mut &cut[..], &mut Vec::new(), p).is_err(), "a whole chunk short {len}");
            }
        }
        // A source that is not the length it was said to be is refused.
        let data = [7u8; 100];
        assert!(k.seal_file(&mut &data[..], 99, &mut Vec::new(), &io, &io).is_err());
        assert!(k.seal_file(&mut &data[..], 101, &mut Vec::new(), &io, &io).is_err());
    }

    #[test]
    fn sealed_sizes_hide_the_exact_length() {
        // Files of many nearby sizes seal to the same size.
        assert_eq!(padded_len(0), FILE_CHUNK as u64);
        assert_eq!(padded_len(3_000_000), padded_len(3_000_000 - 40_000));
        assert_eq!(padded_len(3_000_000), padded_len(2_990_001));
        for len in [0u64, 1, 1000, 65_528, 65_529, 1 << 20, 3_000_000, 1 << 30, 2 << 30] {
            let p = padded_len(len);
            assert!(p >= len + 8 && p.is_multiple_of(FILE_CHUNK as u64), "{len} -> {p}");
            assert!(p <= (len + 8) + (len + 8) / 8 + FILE_CHUNK as u64, "{len} -> {p}: at most about 12% more");
        }
    }

    #[test]
    fn names_and_debug_show_nothing_secret() {
        let k = DataKey::derive(&[1; 32]);
        let sha = [3u8; 32];
        assert_ne!(k.file_name(&sha), hex::encode(sha));
        assert_eq!(format!("{k:?}"), "DataKey(…)");
        assert_eq!(format!("{:?}", pass("secret words")), "Passphrase(…)");
    }

    impl Keyring {
        fn load_from_bytes(b: &[u8]) -> Keyring {
            serde_json::from_slice(b).unwrap()
        }
    }
}
