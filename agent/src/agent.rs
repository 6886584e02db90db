//! [`Agent`]: one device's key and queue, and the operations every front
//! end (the CLI, tests, the benchmark, the demo) calls in process.
//!
//! `Agent::open` does the least it can (unseal the keyring, open the queue,
//! check the schema version) because `truce-agent record` runs it on every
//! keystroke-to-id path; the one slow step is Argon2id, which is the point.
//! `Agent::open_locked` needs no passphrase and reads what `status` shows.

use std::path::{Path, PathBuf};

use truce_shared::limits;
use truce_shared::time::now_ms;
use truce_shared::wire::{Receipt, Status};
use truce_shared::{Attachment, Bytes32, Envelope, ValidationError, ENVELOPE_VERSION};

use crate::error::{AgentError, Result};
use crate::keys::DeviceKey;
use crate::paths::{self, DataDir};
use crate::queue::{AckOutcome, ChainHead, Pruned, Queue, State};
use crate::record::{self, RecordInput};
use crate::vault::{DataKey, Keyring, Passphrase, Protection, Secrets};

/// How long a delivered report's body is kept by default: 7 days.
pub const DEFAULT_KEEP_DELIVERED_MS: i64 = 7 * 24 * 3600 * 1000;

/// A device: its key, its data directory and its queue.
pub struct Agent {
    /// Where everything lives.
    dir: DataDir,
    /// The device's public key.
    device: Bytes32,
    /// Whether the keyring is sealed under a passphrase.
    protected: bool,
    /// The signing key and the data key; `None` when opened without the
    /// passphrase. They never leave this struct except to sign and seal.
    unlocked: Option<(DeviceKey, DataKey)>,
    /// The durable queue.
    queue: Queue,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("dir", &self.dir.root())
            .field("device", &hex::encode(self.device))
            .field("unlocked", &self.unlocked.is_some())
            .finish_non_exhaustive()
    }
}

/// What [`Agent::open_any`] found in a data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// No keys: `init` has not run (or `wipe` has).
    Empty,
    /// Made before sealing (a clear `device.key`), or its conversion was
    /// interrupted: [`Agent::upgrade`] converts it.
    NeedsUpgrade,
    /// Sealed under a passphrase.
    Sealed,
    /// Made with `--no-passphrase`.
    Unprotected,
}

/// What `record` made.
#[derive(Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The report id.
    pub id: Bytes32,
    /// Its position in the chain.
    pub seq: u64,
    /// The attachments as signed (their copies are in the data dir).
    pub attachments: Vec<Attachment>,
}

impl std::fmt::Debug for Recorded {
    // Attachment names are report content: logs get the count only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("id", &hex::encode(self.id))
            .field("seq", &self.seq)
            .field("attachments", &self.attachments.len())
            .finish()
    }
}

/// The last sync attempt, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSync {
    /// When it ended, unix ms.
    pub at: i64,
    /// Whether it reached the server and delivered everything it could.
    pub ok: bool,
    /// One line: what happened.
    pub outcome: String,
}

/// Everything `status` shows.
#[derive(Debug, Clone)]
pub struct AgentStatus {
    /// The device key.
    pub device: Bytes32,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Reports in each state.
    pub counts: [(State, u64); 4],
    /// The newest report.
    pub head: Option<ChainHead>,
    /// Whether the keys are sealed under a passphrase.
    pub protected: bool,
    /// How long delivered reports keep their bodies, ms.
    pub keep_delivered_ms: i64,
    /// Reports whose bodies have been pruned after delivery.
    pub pruned: u64,
    /// The linked server, `HOST:PORT`.
    pub server: Option<String>,
    /// The last sync attempt.
    pub last_sync: Option<LastSync>,
}

/// The result of walking the whole chain: see [`Agent::check_chain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainCheck {
    /// Reports checked.
    pub reports: u64,
    /// The newest report.
    pub head: Option<ChainHead>,
}

impl Agent {
    /// Makes the device key and the data key, seals them in the keyring
    /// (0600, in a 0700 directory) under `protection`, and makes the queue.
    /// Refuses, leaving everything untouched, if the directory has keys.
    pub fn init(dir: impl Into<PathBuf>, protection: &Protection) -> Result<Agent> {
        let dir = DataDir::new(dir);
        paths::create_private_dir(dir.root())?;
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

    /// What is in `dir`: nothing, an old clear layout, or a keyring.
    pub fn dir_state(dir: &DataDir) -> Result<DirState> {
        if dir.legacy_key_file().exists() {
            return Ok(DirState::NeedsUpgrade);
        }
        Ok(match Keyring::load(&dir.keyring())? {
            None => DirState::Empty,
            Some(r) if r.is_protected() => DirState::Sealed,
            Some(_) => DirState::Unprotected,
        })
    }

    /// Opens the device in `dir`, unsealing its keys with `passphrase`
    /// (ignored for a keyring made with `--no-passphrase`). "Run init
    /// first" if there is no keyring; a wrong passphrase changes nothing.
    /// Call [`Agent::prune`] after, to apply the keep period.
    pub fn open(dir: impl Into<PathBuf>, passphrase: Option<&Passphrase>) -> Result<Agent> {
        let dir = DataDir::new(dir);
        let ring = load_keyring(&dir)?;
        let secrets = ring.unseal(passphrase)?;
        let key = DeviceKey::from_seed(&secrets.seed);
        let data_key = secrets.data_key();
        drop(secrets);
        let queue = Queue::open(&dir.queue_file(), &key.public(), Some(data_key.clone()))?;
        Ok(Agent { device: key.public(), protected: ring.is_protected(), unlocked: Some((key, data_key)), dir, queue })
    }

    /// Opens the device without its keys: counts, states and the chain
    /// head (what `status` and `key` show), nothing sealed.
    pub fn open_locked(dir: impl Into<PathBuf>) -> Result<Agent> {
        let dir = DataDir::new(dir);
        let ring = load_keyring(&dir)?;
        let queue = Queue::open(&dir.queue_file(), &ring.device, None)?;
        Ok(Agent { device: ring.device, protected: ring.is_protected(), unlocked: None, dir, queue })
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
                    paths::write_atomic(&dir.keyring(), &Keyring::seal(legacy.public(), &s, protection)?.to_bytes())?;
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
        paths::sync_dir(dir.root())?;
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
        paths::write_atomic(&dir.keyring(), &sealed.to_bytes())?;
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
        paths::sync_dir(dir.root())?;
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
        paths::sync_dir(dir.root())?;
        Ok(gone)
    }

    /// The signing key and data key, or "give the passphrase".
    fn keys(&self) -> Result<&(DeviceKey, DataKey)> {
        self.unlocked.as_ref().ok_or(AgentError::PassphraseNeeded)
    }

    /// The data key, for sealing and opening files (`link`, evidence).
    pub fn data_key(&self) -> Result<&DataKey> {
        self.keys().map(|(_, d)| d)
    }

    /// Writes the clear bytes of this laptop's copy of an evidence file to
    /// `dst`, checking them against `sha256` (the hash its report signed).
    /// Returns the length.
    pub fn read_attachment(&self, sha256: &Bytes32, dst: &mut dyn std::io::Write) -> Result<u64> {
        let key = self.data_key()?;
        let path = self.dir.attachment(&key.file_name(sha256));
        let mut src = std::fs::File::open(&path).map_err(|e| AgentError::io("cannot read", &path, e))?;
        let (got, len) = key.open_file(&mut std::io::BufReader::new(&mut src), dst, &path)?;
        if &got != sha256 {
            return Err(AgentError::Corrupt(format!("{} does not match the hash its report signed", path.display())));
        }
        Ok(len)
    }

    /// Whether the keys are sealed under a passphrase.
    pub fn is_protected(&self) -> bool {
        self.protected
    }

    /// How long delivered reports keep their bodies (the data dir's
    /// setting, 7 days unless changed), ms.
    pub fn keep_delivered_ms(&self) -> Result<i64> {
        Ok(self.queue.meta("keep_delivered_ms")?.and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_KEEP_DELIVERED_MS))
    }

    /// Sets how long delivered reports keep their bodies.
    pub fn set_keep_delivered_ms(&mut self, ms: i64) -> Result<()> {
        self.queue.set_meta(&[("keep_delivered_ms", &ms.max(0).to_string())])
    }

    /// Deletes the bodies and files of reports the server holds, once
    /// their answer is older than the keep period.
    pub fn prune(&mut self) -> Result<Pruned> {
        let now = now_ms();
        let cutoff = now.saturating_sub(self.keep_delivered_ms()?);
        self.queue.prune(&self.dir, cutoff, now)
    }

    /// The data directory.
    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// The device's public key.
    pub fn device(&self) -> Bytes32 {
        self.device
    }

    /// The device key's fingerprint.
    pub fn fingerprint(&self) -> String {
        truce_shared::signing::fingerprint(&self.device)
    }

    /// The queue, to read.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The queue, to write answers and meta.
    pub fn queue_mut(&mut self) -> &mut Queue {
        &mut self.queue
    }

    /// The id of the report that a full id or unique prefix names.
    pub fn resolve(&self, prefix: &str) -> Result<Bytes32> {
        self.queue.find(prefix).map(|r| r.id)
    }

    /// Validates, signs, chains and durably stores one report; returns
    /// once it is committed. Bad input is refused before anything is
    /// written; attachments are copied (content-addressed) before the
    /// report that names them is committed.
    pub fn record(&mut self, input: &RecordInput) -> Result<Recorded> {
        let now = now_ms();
        let amends = match input.amends.as_deref() {
            Some(p) => Some(self.resolve(p).map_err(|e| match e {
                AgentError::NotFound(p) => AgentError::input(
                    "--amends",
                    format!("no report {p} in this queue: a correction must name one of this device's reports (see `truce-agent list`)"),
                ),
                AgentError::BadId(p) => AgentError::input(
                    "--amends",
                    format!("{p:?} is not a report id: give 1 to 64 hex digits of an id shown by `truce-agent list`"),
                ),
                AgentError::Ambiguous(p) => {
                    AgentError::input("--amends", format!("{p} matches more than one report: give more hex digits"))
                }
                other => other,
            })?),
            None => None,
        };
        let mut observation = input.observation(now);
        // Everything but the attachments' hashes is checked first, so a typo
        // costs no copying.
        if input.attachments.len() > limits::MAX_ATTACHMENTS {
            return Err(ValidationError::TooManyAttachments(input.attachments.len()).into());
        }
        observation.validate()?;
        for p in &input.attachments {
            record::check_attachment(p)?;
        }
        let (key, data_key) = self.unlocked.as_ref().ok_or(AgentError::PassphraseNeeded)?;
        let staged = input
            .attachments
            .iter()
            .map(|p| record::stage_attachment(&self.dir, data_key, p))
            .collect::<Result<Vec<_>>>()?;
        observation.attachments = staged.iter().map(|s| s.attachment.clone()).collect();
        observation.validate()?;
        let attachments = observation.attachments.clone();
        let device = self.device;
        let dir = &self.dir;
        let head = self.queue.append(|seq, prev| {
            // Under the queue's write lock: the sealed copies take their
            // names, then the row that names them commits.
            let mut names = Vec::with_capacity(staged.len());
            for s in staged {
                names.push(s.persist(dir)?);
            }
            if !names.is_empty() {
                paths::sync_dir(&dir.attachments_dir())?;
            }
            let envelope =
                Envelope { version: ENVELOPE_VERSION, device, seq, prev, recorded_at: now_ms(), amends, observation };
            let signed = truce_shared::sign(key.signing_key(), &envelope).map_err(|e| match e {
                truce_shared::signing::SignError::Invalid(v) => AgentError::Invalid(v),
                truce_shared::signing::SignError::WrongKey => {
                    AgentError::Corrupt("the device key does not match the queue".into())
                }
            })?;
            Ok((signed, names))
        })?;
        Ok(Recorded { id: head.id, seq: head.seq, attachments })
    }

    /// Records the server's answers for one Ack (see [`Queue::record_ack`]).
    pub fn record_ack(
        &mut self,
        results: &[(Bytes32, Status)],
        receipt: &Receipt,
        server_key: &Bytes32,
    ) -> Result<AckOutcome> {
        self.queue.record_ack(results, receipt, server_key, now_ms())
    }

    /// Marks one report's answer (a convenience over [`Agent::record_ack`]).
    pub fn mark_answer(
        &mut self,
        id: &Bytes32,
        status: &Status,
        receipt: &Receipt,
        server_key: &Bytes32,
    ) -> Result<AckOutcome> {
        self.record_ack(&[(*id, status.clone())], receipt, server_key)
    }

    /// The linked server address, if `link` has run.
    pub fn server(&self) -> Result<Option<String>> {
        self.queue.meta("server")
    }

    /// Notes how the last sync ended, for `status`.
    pub fn set_last_sync(&mut self, ok: bool, outcome: &str) -> Result<()> {
        let at = now_ms().to_string();
        self.queue.set_meta(&[
            ("last_sync_at", &at),
            ("last_sync_ok", if ok { "1" } else { "0" }),
            ("last_sync_outcome", outcome),
        ])
    }

    /// Counts, chain head, server and last sync.
    pub fn status(&self) -> Result<AgentStatus> {
        let last_sync = match self.queue.meta("last_sync_at")? {
            Some(at) => Some(LastSync {
                at: at.parse().unwrap_or(0),
                ok: self.queue.meta("last_sync_ok")?.as_deref() == Some("1"),
                outcome: self.queue.meta("last_sync_outcome")?.unwrap_or_default(),
            }),
            None => None,
        };
        Ok(AgentStatus {
            device: self.device(),
            fingerprint: self.fingerprint(),
            counts: self.queue.counts()?,
            head: self.queue.head()?,
            protected: self.protected,
            keep_delivered_ms: self.keep_delivered_ms()?,
            pruned: self.queue.pruned_count()?,
            server: self.server()?,
            last_sync,
        })
    }

    /// Writes pending (or, with `all`, every) report to a bundle file.
    /// Returns the number of reports written. Reports stay pending.
    pub fn export_bundle(&self, path: &Path, all: bool) -> Result<u64> {
        crate::bundle::export(&self.queue, path, all)
    }

    /// Walks the whole chain oldest first, verifying every report with
    /// `truce_shared::verify` and checking device, seq (1, 2, 3… no gaps)
    /// and prev links. A pruned report is taken at its stored id (its
    /// receipt proved delivery); the next report's prev must name it. An
    /// error names the first broken link.
    pub fn check_chain(&self) -> Result<ChainCheck> {
        let device = self.device();
        let mut expect_seq = 1u64;
        let mut prev = [0u8; 32];
        let mut head = None;
        self.queue.for_each_signed(false, |seq, id, signed| {
            if seq != expect_seq {
                return Err(AgentError::Corrupt(format!("the chain is broken at seq {seq}")));
            }
            if let Some(signed) = signed {
                let v = truce_shared::verify(&signed)
                    .map_err(|e| AgentError::Corrupt(format!("report seq {seq} does not verify: {e}")))?;
                let env = &v.envelope;
                if env.device != device || env.seq != seq || env.prev != prev || v.id != id {
                    return Err(AgentError::Corrupt(format!("the chain is broken at seq {seq}")));
                }
            }
            prev = id;
            expect_seq += 1;
            head = Some(ChainHead { seq, id });
            Ok(())
        })?;
        Ok(ChainCheck { reports: expect_seq - 1, head })
    }
}

/// The keyring, or what to do when there is none or it is an old layout.
fn load_keyring(dir: &DataDir) -> Result<Keyring> {
    if dir.legacy_key_file().exists() {
        return Err(AgentError::NeedsUpgrade(dir.root().to_path_buf()));
    }
    Keyring::load(&dir.keyring())?.ok_or_else(|| AgentError::NotInitialised(dir.root().to_path_buf()))
}

/// Writes a new keyring, never over an existing one: written whole to a
/// temporary file, synced, then given its name only if none exists, so a
/// crash never leaves half a keyring.
fn write_new_keyring(dir: &DataDir, ring: &Keyring) -> Result<()> {
    use std::io::Write;
    let path = dir.keyring();
    let mut t = tempfile::Builder::new()
        .prefix(".truce-")
        .tempfile_in(dir.root())
        .map_err(|e| AgentError::io("cannot create a file in", dir.root(), e))?;
    t.write_all(&ring.to_bytes())
        .and_then(|()| t.as_file().sync_all())
        .map_err(|e| AgentError::io("cannot write", &path, e))?;
    match t.persist_noclobber(&path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(AgentError::AlreadyInitialised(dir.root().to_path_buf()))
        }
        Err(e) => return Err(AgentError::io("cannot write", &path, e.error)),
    }
    paths::sync_dir(dir.root())
}
