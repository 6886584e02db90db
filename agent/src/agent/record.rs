//! `Agent::record`: one report validated, signed, chained to the last and
//! stored in one transaction, its attachments sealed and copied first.
//! What the monitor typed becomes a [`RecordInput`] in `crate::input`.

use truce_shared::fs;
use truce_shared::limits;
use truce_shared::time::now_ms;
use truce_shared::{Attachment, Bytes32, Envelope, ValidationError, ENVELOPE_VERSION};

use super::Agent;
use crate::attachments;
use crate::error::{AgentError, Result};
use crate::input::RecordInput;

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

impl Agent {
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
            attachments::check_attachment(p)?;
        }
        let (key, data_key) = self.unlocked.as_ref().ok_or(AgentError::PassphraseNeeded)?;
        let staged = input
            .attachments
            .iter()
            .map(|p| attachments::stage_attachment(&self.dir, data_key, p))
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
                fs::sync_dir(&dir.attachments_dir())?;
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
}
