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

//!
//! # Layout
//!
//! - `passphrase.rs`: the passphrase, how a keyring is protected, the
//!   secrets it holds.
//! - `keyring.rs`: the keyring file and Argon2id.
//! - `data_key.rs`: the data key's subkeys; sealed queue rows and secrets.
//! - `file.rs`: sealed evidence files (STREAM, padded).

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

mod data_key;
mod file;
mod keyring;
mod passphrase;
#[cfg(test)]
mod tests;

pub use data_key::DataKey;
pub use file::{padded_len, FileReader, FILE_CHUNK, FILE_MAGIC};
pub use keyring::{
    Keyring, KDF_LANES, KDF_LANES_MAX, KDF_MEMORY_KIB, KDF_MEMORY_KIB_MAX, KDF_PASSES, KDF_PASSES_MAX, KEYRING_FORMAT,
};
pub use passphrase::{Passphrase, Protection, Secrets, MIN_PASSPHRASE_CHARS};

const TAG: usize = 16;
const NONCE: usize = 24;
const STREAM_NONCE: usize = 19;
const QUEUE_AD: &[u8] = b"truce-agent queue v1";

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
