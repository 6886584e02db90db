//! [`Agent`]: one device's key and queue, and the operations every front
//! end (the CLI, tests, the benchmark, the demo) calls in process.
//!
//! `Agent::open` does the least it can (read the key, open the queue, check
//! the schema version) because `truce-agent record` runs it on every
//! keystroke-to-id path and must feel instant.

use std::path::{Path, PathBuf};

use truce_shared::limits;
use truce_shared::time::now_ms;
use truce_shared::wire::{Receipt, Status};
use truce_shared::{Attachment, Bytes32, Envelope, ValidationError, ENVELOPE_VERSION};

use crate::error::{AgentError, Result};
use crate::keys::DeviceKey;
use crate::paths::{self, DataDir};
use crate::queue::{AckOutcome, ChainHead, Queue, State};
use crate::record::{self, RecordInput};

/// A device: its key, its data directory and its queue.
pub struct Agent {
    /// Where everything lives.
    dir: DataDir,
    /// The signing key; never leaves this struct except to sign.
    key: DeviceKey,
    /// The durable queue.
    queue: Queue,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("dir", &self.dir.root()).field("key", &self.key).finish_non_exhaustive()
    }
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
    /// Makes the device key (0600, in a 0700 directory) and the queue in
    /// `dir`. Refuses, leaving the existing key untouched, if a key exists.
    pub fn init(dir: impl Into<PathBuf>) -> Result<Agent> {
        let dir = DataDir::new(dir);
        paths::create_private_dir(dir.root())?;
        let key = DeviceKey::generate();
        key.write_new(&dir.key_file(), dir.root())?;
        paths::sync_dir(dir.root())?;
        let queue = Queue::open(&dir.queue_file(), &key.public())?;
        Ok(Agent { dir, key, queue })
    }

    /// Opens the device in `dir`: "run init first" if there is no key.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Agent> {
        let dir = DataDir::new(dir);
        let key = DeviceKey::read(&dir.key_file(), dir.root())?;
        let queue = Queue::open(&dir.queue_file(), &key.public())?;
        Ok(Agent { dir, key, queue })
    }

    /// The data directory.
    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// The device's public key.
    pub fn device(&self) -> Bytes32 {
        self.key.public()
    }

    /// The device key's fingerprint.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint()
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
        let staged =
            input.attachments.iter().map(|p| record::stage_attachment(&self.dir, p)).collect::<Result<Vec<_>>>()?;
        observation.attachments = staged.iter().map(|s| s.attachment.clone()).collect();
        observation.validate()?;
        let attachments = observation.attachments.clone();
        if !staged.is_empty() {
            for s in staged {
                s.persist(&self.dir)?;
            }
            paths::sync_dir(&self.dir.attachments_dir())?;
        }
        let key = &self.key;
        let device = key.public();
        let head = self.queue.append(|seq, prev| {
            let envelope =
                Envelope { version: ENVELOPE_VERSION, device, seq, prev, recorded_at: now_ms(), amends, observation };
            truce_shared::sign(key.signing_key(), &envelope).map_err(|e| match e {
                truce_shared::signing::SignError::Invalid(v) => AgentError::Invalid(v),
                truce_shared::signing::SignError::WrongKey => {
                    AgentError::Corrupt("the device key does not match the queue".into())
                }
            })
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
    /// and prev links. An error names the first broken link.
    pub fn check_chain(&self) -> Result<ChainCheck> {
        let device = self.device();
        let mut expect_seq = 1u64;
        let mut prev = [0u8; 32];
        let mut head = None;
        self.queue.for_each_signed(false, |seq, signed| {
            let v = truce_shared::verify(&signed)
                .map_err(|e| AgentError::Corrupt(format!("report seq {seq} does not verify: {e}")))?;
            let env = &v.envelope;
            if env.device != device || env.seq != seq || seq != expect_seq || env.prev != prev {
                return Err(AgentError::Corrupt(format!("the chain is broken at seq {seq}")));
            }
            prev = v.id;
            expect_seq += 1;
            head = Some(ChainHead { seq, id: v.id });
            Ok(())
        })?;
        Ok(ChainCheck { reports: expect_seq - 1, head })
    }
}
