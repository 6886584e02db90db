//! [`Agent`]: one device's key and queue, and the operations every front
//! end (the CLI, tests, the benchmark, the demo) calls in process.
//!
//! `Agent::open` does the least it can (unseal the keyring, open the queue,
//! check the schema version) because `truce-agent record` runs it on every
//! keystroke-to-id path; the one slow step is Argon2id, which is the point.
//! `Agent::open_locked` needs no passphrase and reads what `status` shows.
//!
//! Every `impl Agent` is in this folder, one file per concept:
//! - `mod.rs` (here): the type, opening it, and what it reads (status, the
//!   chain check, attachments, the keep period, bundle export);
//! - `keyring.rs`: the keyring's life: made (`init`), converted from an old
//!   layout (`upgrade`), re-sealed (`change_passphrase`), destroyed (`wipe`);
//! - `record.rs`: `record`, one report signed, chained and stored;
//! - `sync.rs`: what sync writes back: the server's answers and receipts,
//!   the last sync, and `sync_blocking`;
//! - `link.rs`: `link`, how to reach the server, and the TLS client config;
//! - `log.rs`: the server's log as this laptop knows it: the pinned log
//!   key and the last verified checkpoint.

use std::path::{Path, PathBuf};

use truce_shared::time::now_ms;
use truce_shared::{Attachment, Bytes32, Envelope};

use crate::error::{AgentError, Result};
use crate::keys::DeviceKey;
use crate::paths::DataDir;
use crate::queue::{ChainHead, Pruned, Queue, State};
use crate::vault::{DataKey, Keyring, Passphrase};

mod keyring;
pub mod link;
pub mod log;
mod record;
mod sync;

pub use record::Recorded;

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
    /// The pinned log key of the server.
    pub log_key: Option<Bytes32>,
    /// What `link --server-key` said to expect.
    pub log_key_expected: Option<String>,
    /// The last checkpoint whose proofs verified.
    pub checkpoint: Option<truce_shared::log::Checkpoint>,
    /// Reports answered under protocol 2 and not yet proven in the log.
    pub unproven: u64,
    /// Evidence files: held by the server, partly sent, not yet sent.
    pub evidence: (u64, u64, u64),
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

    /// The signing key and data key, or "give the passphrase".
    fn keys(&self) -> Result<&(DeviceKey, DataKey)> {
        self.unlocked.as_ref().ok_or(AgentError::PassphraseNeeded)
    }

    /// The data key, for sealing and opening files (`link`, evidence).
    pub fn data_key(&self) -> Result<&DataKey> {
        self.keys().map(|(_, d)| d)
    }

    /// Where the upload of each evidence file `env` names stands.
    pub fn evidence_states(&self, env: &Envelope) -> Result<Vec<(Attachment, crate::queue::FileState)>> {
        let key = self.data_key()?;
        env.observation
            .attachments
            .iter()
            .map(|a| Ok((a.clone(), self.queue.file_state(&key.file_name(&a.sha256))?)))
            .collect()
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
            log_key: self.log_key()?,
            log_key_expected: self.expected_log_key()?.map(|k| k.text()),
            checkpoint: self.kept_checkpoint()?,
            unproven: self.queue.unproven_count()?,
            evidence: self.queue.file_counts()?,
        })
    }

    /// Writes pending (or, with `all`, every) report to a bundle file,
    /// and with `evidence` the files they name (`crate::bundle`). Reports
    /// stay pending.
    pub fn export_bundle(&self, path: &Path, all: bool, evidence: bool) -> Result<crate::bundle::Exported> {
        crate::bundle::export(&self.queue, self.dir(), self.data_key()?, path, all, evidence)
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
