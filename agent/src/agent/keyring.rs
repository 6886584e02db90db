//! The keyring's life: made by `init`, converted from a data dir made
//! before sealing (`upgrade`), re-sealed under a new passphrase, destroyed
//! by `wipe`. The keyring is always written whole, never over another
//! unless replacing it is the point (a new passphrase).

use std::path::PathBuf;

use truce_shared::fs::{self, Access, AtomicFile, ExistingDir};

use super::{load_keyring, Agent};
use crate::error::{AgentError, Result};
use crate::keys::DeviceKey;
use crate::paths::{self, DataDir};
use crate::queue::Queue;
use crate::vault::{Keyring, Passphrase, Protection, Secrets};

impl Agent {
    /// Makes the device key and the data key, seals them in the keyring
    /// (0600, in a 0700 directory) under `protection`, and makes the queue.
    /// Refuses, leaving everything untouched, if the directory has keys.
    pub fn init(dir: impl Into<PathBuf>, protection: &Protection) -> Result<Agent> {
        let dir = DataDir::new(dir);
        fs::create_private_dir(dir.root(), ExistingDir::Tighten)?;
        if dir.legacy_key_file().exists() || dir.keyring().exists() {
            return Err(AgentError::AlreadyInitialised(dir.root().to_path_buf()));
        }
        let key = DeviceKey::generate();
        let secrets = Secrets::new(&key.seed());
        let ring = Keyring::seal(key.public(), &secrets, protection)?;
        let data_key = secrets.data_key();
        // The queue first: one left by another device is refused before a
        // keyring exists to be confused with it.
        let queue = Queue::open(&dir.queue_file(), &key.public(), Some(data_key.clone()))?;
        write_new_keyring(&dir, &ring)?;
        Ok(Agent { device: key.public(), protected: ring.is_protected(), unlocked: Some((key, data_key)), dir, queue })
    }

    /// Converts a data dir made before sealing: seals the clear device key
    /// and a new data key under `protection`, seals every queued report,
    /// evidence file and the TLS key, then destroys the clear copies.
    /// Each step can be repeated, so an interrupted conversion finishes on
    /// the next run; the clear `device.key` goes last and marks the end.
    pub fn upgrade(dir: impl Into<PathBuf>, protection: &Protection) -> Result<Agent> {
        let dir = DataDir::new(dir);
        let legacy = DeviceKey::read_legacy(&dir.legacy_key_file())?;
        let pass = match protection {
            Protection::Passphrase(p) => Some(p),
            Protection::None => None,
        };
        let secrets = match Keyring::load(&dir.keyring())? {
            // A conversion was interrupted: its keyring holds the data key
            // that may already seal some of the queue, so it is kept, and
            // re-sealed if it was begun with other protection.
            Some(ring) => {
                if ring.device != legacy.public() {
                    return Err(AgentError::BadKeyFile(dir.keyring()));
                }
                let s = ring.unseal(pass).map_err(|e| match e {
                    AgentError::WrongPassphrase | AgentError::PassphraseNeeded => AgentError::input(
                        "passphrase",
                        "a conversion of this data dir was begun with another passphrase: give the one chosen then",
                    ),
                    other => other,
                })?;
                if ring.is_protected() != pass.is_some() {
                    fs::write_atomic(
                        &dir.keyring(),
                        &Keyring::seal(legacy.public(), &s, protection)?.to_bytes(),
                        Access::Private,
                    )?;
                }
                s
            }
            None => {
                let s = Secrets::new(&legacy.seed());
                write_new_keyring(&dir, &Keyring::seal(legacy.public(), &s, protection)?)?;
                s
            }
        };
        let data_key = secrets.data_key();
        let queue = Queue::open(&dir.queue_file(), &legacy.public(), Some(data_key.clone()))?;
        crate::upgrade::seal_files(&dir, &queue, &data_key)?;
        crate::upgrade::seal_tls_key(&dir, &data_key)?;
        paths::shred(&dir.legacy_key_file())?;
        fs::sync_dir(dir.root())?;
        Ok(Agent { device: legacy.public(), protected: pass.is_some(), unlocked: Some((legacy, data_key)), dir, queue })
    }

    /// Whether `passphrase` unseals the keyring (changes nothing).
    pub fn check_passphrase(dir: &DataDir, passphrase: Option<&Passphrase>) -> Result<()> {
        load_keyring(dir)?.unseal(passphrase).map(drop)
    }

    /// Re-seals the keyring under a new passphrase (or none), once `old`
    /// has unsealed it. The data key does not change, so nothing else is
    /// rewritten; the old keyring's bytes are overwritten, not just
    /// unlinked.
    pub fn change_passphrase(dir: &DataDir, old: Option<&Passphrase>, new: &Protection) -> Result<()> {
        let ring = load_keyring(dir)?;
        let secrets = ring.unseal(old)?;
        let sealed = Keyring::seal(ring.device, &secrets, new)?;
        // Keep a name on the old keyring's blocks so they can be shredded
        // once the new one is in place.
        let old_copy = dir.root().join(".keyring.old");
        let _ = std::fs::remove_file(&old_copy);
        let linked = std::fs::hard_link(dir.keyring(), &old_copy).is_ok();
        fs::write_atomic(&dir.keyring(), &sealed.to_bytes(), Access::Private)?;
        if linked {
            paths::shred(&old_copy)?;
        }
        Ok(())
    }

    /// Destroys the keys (every file at the top of the data dir and in
    /// `link/`, keyring and sealed TLS key included, overwritten then
    /// removed), then the queue, the evidence copies and the link files.
    /// Works on a damaged data dir too; a dir never converted from clear
    /// has its queue and evidence overwritten as well. Returns the paths
    /// destroyed. Needs no passphrase.
    pub fn wipe(dir: &DataDir) -> Result<Vec<PathBuf>> {
        let clear = dir.legacy_key_file().exists();
        let mut gone = Vec::new();
        // The keys first: once they are gone nothing sealed can be read.
        for key in [dir.keyring(), dir.link_key(), dir.legacy_key_file(), dir.legacy_link_key()] {
            if key.exists() {
                paths::shred(&key)?;
                gone.push(key);
            }
        }
        fs::sync_dir(dir.root())?;
        // Then everything else: temporary copies (a keyring being
        // replaced), the queue, the link files, the evidence.
        for d in [dir.root().to_path_buf(), dir.link_dir(), dir.attachments_dir()] {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if !p.is_file() {
                    continue;
                }
                // Sealed evidence is unreadable without the keys; clear
                // evidence and every small file are overwritten first.
                let small = e.metadata().map(|m| m.len() <= 1 << 20).unwrap_or(true);
                if clear || small || d != dir.attachments_dir() {
                    paths::shred(&p)?;
                } else {
                    std::fs::remove_file(&p).map_err(|e| AgentError::io("cannot remove", &p, e))?;
                }
                gone.push(p);
            }
        }
        for d in [dir.attachments_dir(), dir.link_dir()] {
            match std::fs::remove_dir_all(&d) {
                Ok(()) => gone.push(d),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AgentError::io("cannot remove", &d, e)),
            }
        }
        fs::sync_dir(dir.root())?;
        Ok(gone)
    }
}

/// Writes a new keyring, never over an existing one: written whole to a
/// temporary file, synced, then given its name only if none exists, so a
/// crash never leaves half a keyring.
fn write_new_keyring(dir: &DataDir, ring: &Keyring) -> Result<()> {
    use std::io::Write;
    let path = dir.keyring();
    let mut file = AtomicFile::create(&path, Access::Private)?;
    file.write_all(&ring.to_bytes()).map_err(|e| AgentError::io("cannot write", &path, e))?;
    match file.commit_new() {
        Err(e) if e.already_exists() => Err(AgentError::AlreadyInitialised(dir.root().to_path_buf())),
        r => Ok(r?),
    }
}
