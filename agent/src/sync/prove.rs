//! Checking the server's log after a session's Acks (DESIGN §9): the
//! entries of the reports just answered are in the tree of the largest
//! checkpoint the Acks carried, and that tree extends the one this laptop
//! kept from its last verified sync.
//!
//! ```text
//! → Prove  { size, from, ranges, entries }   (≤ MAX_PROVE_ITEMS ranges each; several if needed)
//! ← Proofs { consistency, ranges, entries }  (same order)
//! ```
//!
//! An Accepted or Quarantined report's entry is rebuilt here, byte for
//! byte, from what this laptop knows (id, device, seq, status, the Ack's
//! `received_at`, the certificate serial from Welcome), so the proof shows
//! the log says what the receipt said. A Duplicate or Rejected report's
//! entry is asked for and must name the same report. Any failed check is
//! an [alarm](SyncError::Alarm): both checkpoints and what failed are
//! written under the data dir, and the reports stay delivered, not proven.
//! The kept checkpoint is replaced only by one that verified.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::io::{AsyncRead, AsyncWrite};
use truce_shared::fs::{self, Access, ExistingDir};
use truce_shared::limits::MAX_PROVE_ITEMS;
use truce_shared::log::{check_range, check_tree, Checkpoint, Entry, Event, Hash, Outcome, Stored, Via};
use truce_shared::time::now_ms;
use truce_shared::wire::{Message, Status};
use truce_shared::Bytes32;

use super::error::message_name;
use super::{receive, send, SyncError, ACK_TIMEOUT};
use crate::agent::Agent;
use crate::error::{AgentError, Result};

/// A report this session marked, as its Ack named it.
struct Marked {
    id: Bytes32,
    seq: u64,
    entry: u64,
    status: Status,
    received_at: i64,
}

/// What the session's Acks left to prove.
pub(super) struct Prover {
    device: Bytes32,
    serial: String,
    target: Option<Checkpoint>,
    marked: Vec<Marked>,
}

/// One range asked in a Prove: a run of rebuilt entries, or one entry
/// whose bytes are asked too.
enum Item {
    Run { lo: u64, leaves: Vec<Hash>, ids: Vec<Bytes32> },
    Fetch { entry: u64, id: Bytes32 },
}

impl Prover {
    pub(super) fn new(device: Bytes32, serial: String) -> Prover {
        Prover { device, serial, target: None, marked: Vec::new() }
    }

    /// A prover for the same device and certificate with nothing marked:
    /// for what Acks mark after this one is proven.
    pub(super) fn fresh(&self) -> Prover {
        Prover::new(self.device, self.serial.clone())
    }

    /// A report an Ack marked: `seq` is its place in this laptop's chain.
    pub(super) fn add(&mut self, o: &Outcome, seq: u64, received_at: i64) {
        self.marked.push(Marked { id: o.id, seq, entry: o.entry, status: o.status.clone(), received_at });
    }

    /// A report an earlier session marked but did not prove (cut between
    /// its Acks and its proofs): its entry is asked for and must name it,
    /// then proven with this session's.
    pub(super) fn add_earlier(&mut self, id: Bytes32, entry: u64) {
        self.marked.push(Marked { id, seq: 0, entry, status: Status::Duplicate, received_at: 0 });
    }

    /// A verified checkpoint from an Ack: the largest becomes the target.
    /// Two of one size with different roots are two histories.
    pub(super) fn offer(&mut self, cp: Checkpoint) -> std::result::Result<(), Box<(Checkpoint, Checkpoint)>> {
        match &self.target {
            Some(t) if t.size == cp.size && t.root != cp.root => Err(Box::new((t.clone(), cp))),
            Some(t) if t.size >= cp.size => Ok(()),
            _ => {
                self.target = Some(cp);
                Ok(())
            }
        }
    }

    /// The entry this laptop expects the log to hold for a report it can
    /// rebuild (stored as Accepted or Quarantined), `None` otherwise.
    fn rebuild(&self, m: &Marked) -> Option<Entry> {
        let status = match &m.status {
            Status::Accepted => Stored::Verified,
            Status::Quarantined(r) => Stored::Quarantined(r.clone()),
            Status::Duplicate | Status::Rejected(_) => return None,
        };
        Some(Entry::new(
            m.received_at,
            Event::Report {
                id: m.id,
                device: self.device,
                seq: m.seq,
                status,
                via: Via::Tls { serial: self.serial.clone() },
            },
        ))
    }

    /// The ranges to ask: runs of consecutive rebuilt entries, and each
    /// entry to fetch on its own. Two reports at one entry is an alarm.
    fn items(&self) -> std::result::Result<Vec<Item>, String> {
        let mut leaves: BTreeMap<u64, (Hash, Bytes32)> = BTreeMap::new();
        let mut fetch: BTreeMap<u64, Bytes32> = BTreeMap::new();
        for m in &self.marked {
            let clash = match self.rebuild(m) {
                Some(e) => leaves.insert(m.entry, (e.leaf_hash(), m.id)).is_some() || fetch.contains_key(&m.entry),
                None => fetch.insert(m.entry, m.id).is_some() || leaves.contains_key(&m.entry),
            };
            if clash {
                return Err(format!("the receipts name entry {} for two different reports", m.entry));
            }
        }
        let mut items = Vec::new();
        let mut run: Option<(u64, Vec<Hash>, Vec<Bytes32>)> = None;
        for (entry, (leaf, id)) in leaves {
            match run.as_mut() {
                Some((lo, l, ids)) if *lo + l.len() as u64 == entry => {
                    l.push(leaf);
                    ids.push(id);
                }
                _ => {
                    if let Some((lo, leaves, ids)) = run.take() {
                        items.push(Item::Run { lo, leaves, ids });
                    }
                    run = Some((entry, vec![leaf], vec![id]));
                }
            }
        }
        if let Some((lo, leaves, ids)) = run {
            items.push(Item::Run { lo, leaves, ids });
        }
        items.extend(fetch.into_iter().map(|(entry, id)| Item::Fetch { entry, id }));
        Ok(items)
    }
}

/// Writes the evidence of a failed check (both checkpoints and what
/// failed) into a new `evidence/log-<unix ms>/` of the data dir, and
/// returns the alarm.
pub(super) fn alarm(agent: &Agent, kept: Option<&Checkpoint>, new: &Checkpoint, what: &str) -> AgentError {
    let evidence = match write_evidence(agent, kept, new, what) {
        Ok(dir) => format!("written to {}", dir.display()),
        Err(e) => format!("could not be written: {e}"),
    };
    SyncError::Alarm { what: what.to_string(), evidence }.into()
}

fn write_evidence(agent: &Agent, kept: Option<&Checkpoint>, new: &Checkpoint, what: &str) -> Result<PathBuf> {
    let base = agent.dir().evidence_dir();
    fs::create_private_dir(&base, ExistingDir::Tighten)?;
    let mut at = now_ms();
    let dir = loop {
        let dir = base.join(format!("log-{at}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => at += 1,
            Err(e) => return Err(AgentError::io("cannot create", &dir, e)),
        }
    };
    fs::create_private_dir(&dir, ExistingDir::Tighten)?;
    if let Some(k) = kept {
        fs::write_new(&dir.join("kept.checkpoint"), k.note.as_bytes(), Access::Private)?;
    }
    fs::write_new(&dir.join("new.checkpoint"), new.note.as_bytes(), Access::Private)?;
    let text = format!(
        "truce-agent: the server's log did not prove what it acknowledged\n\
         when: {}\nserver: {}\nlog key: {}\nwhat failed: {what}\n\
         kept checkpoint: {}\nnew checkpoint: size {}, root {}\n",
        truce_shared::time::format_ms(now_ms()),
        agent.server()?.unwrap_or_default(),
        agent.log_key()?.map(hex::encode).unwrap_or_default(),
        kept.map_or("none (first verified sync)".to_string(), |k| format!("size {}, root {}", k.size, k.root)),
        new.size,
        new.root,
    );
    fs::write_new(&dir.join("what.txt"), text.as_bytes(), Access::Private)?;
    Ok(dir)
}

/// Asks for and checks the proofs of what this session's Acks said;
/// marks the reports proven and keeps the target checkpoint when all
/// check. Returns how many reports were proven.
pub(super) async fn prove<R, W>(
    agent: &mut Agent,
    prover: Prover,
    rd: &mut R,
    wr: &mut W,
    max_frame: u32,
    addr: &str,
    host: &str,
) -> Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some(target) = prover.target.clone() else { return Ok(0) };
    let kept = agent.kept_checkpoint()?;
    let fail = |agent: &Agent, what: &str| alarm(agent, kept.as_ref(), &target, what);
    let from = kept.as_ref().map_or(0, |k| k.size);
    if let Some(k) = &kept {
        if k.size > target.size {
            return Err(fail(
                agent,
                &format!("its checkpoint of {} entries is older than the kept one of {}", target.size, k.size),
            ));
        }
        if k.size == target.size && k.root != target.root {
            return Err(fail(agent, &format!("two different trees of {} entries", k.size)));
        }
    }
    let items = prover.items().map_err(|what| fail(agent, &what))?;
    if items.is_empty() && from == target.size {
        return Ok(0);
    }
    let mut proven: Vec<(Bytes32, u64)> = Vec::new();
    let chunks: Vec<&[Item]> = if items.is_empty() { vec![&[]] } else { items.chunks(MAX_PROVE_ITEMS).collect() };
    for (n, chunk) in chunks.into_iter().enumerate() {
        // The consistency proof once, with the first request.
        let from = if n == 0 { from } else { target.size };
        let ranges = chunk
            .iter()
            .map(|i| match i {
                Item::Run { lo, leaves, .. } => (*lo, lo + leaves.len() as u64),
                Item::Fetch { entry, .. } => (*entry, entry + 1),
            })
            .collect();
        let entries = chunk
            .iter()
            .filter_map(|i| match i {
                Item::Fetch { entry, .. } => Some(*entry),
                Item::Run { .. } => None,
            })
            .collect::<Vec<u64>>();
        let asked_entries = entries.len();
        send(wr, &Message::Prove { size: target.size, from, ranges, entries }, max_frame, addr, host).await?;
        let (consistency, range_proofs, entry_bytes) = match receive(rd, ACK_TIMEOUT, addr, host, "Proofs").await? {
            Message::Proofs { consistency, ranges, entries } => (consistency, ranges, entries),
            Message::Refuse { reason } => {
                let reason = truce_shared::text::printable(&reason);
                return Err(fail(agent, &format!("it refused to give proofs: {reason}")));
            }
            other => {
                return Err(fail(agent, &format!("it answered Prove with {}", message_name(&other))));
            }
        };
        if range_proofs.len() != chunk.len() || entry_bytes.len() != asked_entries {
            return Err(fail(
                agent,
                &format!(
                    "it gave {} range proofs and {} entries for {} and {} asked",
                    range_proofs.len(),
                    entry_bytes.len(),
                    chunk.len(),
                    asked_entries
                ),
            ));
        }
        if let Some(k) = kept.as_ref().filter(|k| k.size > 0 && k.size < target.size && n == 0) {
            let proof: Vec<Hash> = consistency.iter().map(|h| Hash(*h)).collect();
            if let Err(e) = check_tree(&proof, target.size, target.root, k.size, k.root) {
                return Err(fail(
                    agent,
                    &format!(
                        "its tree of {} entries does not extend the kept tree of {} ({e}): the log was rewritten",
                        target.size, k.size
                    ),
                ));
            }
        }
        let mut bytes = entry_bytes.iter();
        for (item, proof) in chunk.iter().zip(&range_proofs) {
            match item {
                Item::Run { lo, leaves, ids } => {
                    check_range(proof, target.size, &target.root, *lo, leaves).map_err(|e| {
                        fail(
                            agent,
                            &format!(
                                "entries {lo}..{} are not the reports it acknowledged ({e})",
                                lo + leaves.len() as u64
                            ),
                        )
                    })?;
                    proven.extend(ids.iter().enumerate().map(|(i, id)| (*id, lo + i as u64)));
                }
                Item::Fetch { entry, id } => {
                    let Some(b) = bytes.next() else {
                        return Err(fail(agent, "it omitted an entry asked for"));
                    };
                    let e =
                        Entry::decode(b).map_err(|e| fail(agent, &format!("entry {entry} does not decode ({e})")))?;
                    let named = match &e.event {
                        Event::Report { id, .. } | Event::Refused { id, .. } => Some(*id),
                        _ => None,
                    };
                    if named != Some(*id) {
                        return Err(fail(
                            agent,
                            &format!("entry {entry} does not record report {}", &hex::encode(id)[..12]),
                        ));
                    }
                    check_range(proof, target.size, &target.root, *entry, &[e.leaf_hash()])
                        .map_err(|e| fail(agent, &format!("entry {entry} is not in its tree ({e})")))?;
                    proven.push((*id, *entry));
                }
            }
        }
    }
    agent.record_proven(&proven, &target.note)
}
