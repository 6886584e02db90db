//! `audit`: replay the transparency log and check the store, and
//! checkpoints collected elsewhere, against it (DESIGN §9).
//!
//! The replay reads every entry in index order, rebuilds the tree (its
//! root must be the head's, and the head's checkpoint must be signed by the
//! log key) and the record the entries describe: each report's status,
//! refused bytes, enrolled and revoked devices, forks. Then it reads the
//! store and names every difference: a report row without an entry (added),
//! an entry whose report is missing (deleted), a status that differs
//! (changed), signed bytes that no longer verify. Each checkpoint given
//! must be signed by the log key and match the log's root at its size; two
//! that disagree prove the server showed different histories.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use truce_shared::log::{self as tlog, Entry, Event, MemoryTree, Stored};
use truce_shared::{signing, Bytes32};

use crate::store::{ReportStatus, Store, StoreError};

/// What an audit found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Audit {
    /// Entries replayed.
    pub entries: u64,
    /// The recomputed root, hex.
    pub root: String,
    /// Reports in the store.
    pub reports: u64,
    /// Refused bodies in the store.
    pub refused: u64,
    /// Devices enrolled.
    pub devices: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Every discrepancy, one sentence each.
    pub discrepancies: Vec<String>,
}

struct Replayed {
    status: ReportStatus,
    entry: u64,
}

fn short(id: &[u8]) -> String {
    hex::encode(&id[..id.len().min(8)])
}

fn status_of(s: &Stored) -> ReportStatus {
    match s {
        Stored::Verified => ReportStatus::Verified,
        Stored::Quarantined(_) => ReportStatus::Quarantined,
        Stored::Rejected(_) => ReportStatus::Rejected,
    }
}

/// Audits `store` and the checkpoints given as (name, text).
pub fn audit(store: &Store, checkpoints: &[(String, String)]) -> Result<Audit, StoreError> {
    let mut out = Audit::default();
    let mut disc: Vec<String> = Vec::new();
    let Some(head) = store.log_head()? else {
        out.discrepancies.push("the store has no log".into());
        return Ok(out);
    };
    let log_key: Bytes32 = store.read(|tx| {
        tx.one("SELECT log_key FROM log_head WHERE one = 1", &[], |r| r.b32(0)).map(|k| k.unwrap_or([0; 32]))
    })?;
    match tlog::open_checkpoint(&head.checkpoint, &log_key) {
        Ok(cp) if cp.size == head.size && cp.root == head.root => {}
        Ok(cp) => {
            disc.push(format!("the head's checkpoint (size {}) does not match the head (size {})", cp.size, head.size))
        }
        Err(e) => disc.push(format!("the head's checkpoint: {e}")),
    }
    // Checkpoints to compare with the log, by the size they name.
    let mut wanted: BTreeMap<u64, Vec<(String, tlog::Checkpoint)>> = BTreeMap::new();
    for (name, text) in checkpoints {
        match tlog::open_checkpoint(text, &log_key) {
            Ok(cp) => wanted.entry(cp.size).or_default().push((name.clone(), cp)),
            Err(e) => disc.push(format!("checkpoint {name} is not signed by this log's key: {e}")),
        }
    }

    let mut tree = MemoryTree::new();
    let mut reports: HashMap<Bytes32, Replayed> = HashMap::new();
    let mut refused: HashMap<Bytes32, u64> = HashMap::new();
    // Per device: revoked, and the earliest compromised-since logged.
    let mut devices: HashMap<Bytes32, (bool, Option<i64>)> = HashMap::new();
    let mut forks: HashMap<(Bytes32, u64, Bytes32), Bytes32> = HashMap::new();
    let mut problems = Vec::new();
    let mut roots: BTreeMap<u64, tlog::Hash> = BTreeMap::new();
    let sizes: Vec<u64> = wanted.keys().copied().collect();
    let mut next_size = sizes.iter().peekable();
    while next_size.peek() == Some(&&0) {
        roots.insert(0, tlog::EMPTY_HASH);
        next_size.next();
    }
    store
        .read(|tx| {
            tx.stream("SELECT idx, entry FROM log_entries ORDER BY idx", &[], &mut |r| {
                let idx = r.i64(0)? as u64;
                let bytes = r.bytes(1)?;
                if idx != tree.size() {
                    problems.push(format!("log entry {} is missing (the next one present is {idx})", tree.size()));
                    return Err(StoreError::Stopped);
                }
                tree.push(tlog::record_hash(bytes)).map_err(|e| StoreError::Log(e.to_string()))?;
                match Entry::decode(bytes) {
                    Ok(e) => match e.event {
                        Event::Report { id, status, .. } => {
                            reports.insert(id, Replayed { status: status_of(&status), entry: idx });
                        }
                        Event::Refused { id, .. } => {
                            refused.insert(id, idx);
                        }
                        Event::Enrolled { device, .. } => {
                            devices.entry(device).or_insert((false, None));
                        }
                        Event::Revoked { device, since } => {
                            let d = devices.entry(device).or_insert((false, None));
                            d.0 = true;
                            d.1 = match (d.1, since) {
                                (Some(a), Some(b)) => Some(a.min(b)),
                                (a, b) => a.or(b),
                            };
                        }
                        Event::Promoted { id } => match reports.get_mut(&id) {
                            Some(r) => r.status = ReportStatus::Verified,
                            None => {
                                problems.push(format!("log entry {idx} promotes report {} it never stored", short(&id)))
                            }
                        },
                        Event::Fork { device, seq, kept, rejected } => {
                            forks.insert((device, seq, rejected), kept);
                        }
                    },
                    Err(e) => problems.push(format!("log entry {idx}: {e}")),
                }
                while let Some(&&s) = next_size.peek() {
                    if s != tree.size() {
                        break;
                    }
                    roots.insert(s, tree.root().map_err(|e| StoreError::Log(e.to_string()))?);
                    next_size.next();
                }
                Ok(())
            })
        })
        .or_else(|e| if matches!(e, StoreError::Stopped) { Ok(()) } else { Err(e) })?;
    for p in problems {
        disc.push(p);
    }
    out.entries = tree.size();
    let root = tree.root().map_err(|e| StoreError::Log(e.to_string()))?;
    out.root = hex::encode(root.0);
    if tree.size() != head.size {
        disc.push(format!(
            "the log holds {} entries but its head says {} (the log was truncated or extended by hand)",
            tree.size(),
            head.size
        ));
    } else if root != head.root {
        disc.push("the entries do not hash to the head's root (an entry was changed)".into());
    }
    for (size, list) in &wanted {
        for (name, cp) in list {
            match roots.get(size) {
                None => disc.push(format!(
                    "checkpoint {name} names {size} entries but the log holds {}: the log was cut back",
                    tree.size()
                )),
                Some(r) if *r != cp.root => disc.push(format!(
                    "checkpoint {name} (size {size}) does not match the log: the server showed a different history"
                )),
                Some(_) => {}
            }
        }
        if let Some((first, rest)) = list.split_first() {
            for (name, cp) in rest {
                if cp.root != first.1.root {
                    disc.push(format!(
                        "checkpoints {} and {name} are inconsistent: both size {size}, different roots",
                        first.0
                    ));
                }
            }
        }
        out.checkpoints += list.len() as u64;
    }

    // The store against the replay.
    let mut store_problems = Vec::new();
    let mut n_reports = 0u64;
    store.read(|tx| {
        tx.stream("SELECT id, status, entry, body, signature FROM reports ORDER BY n", &[], &mut |r| {
            n_reports += 1;
            let id = r.b32(0)?;
            let status = ReportStatus::parse(r.str(1)?);
            match reports.remove(&id) {
                None => store_problems
                    .push(format!("report {} is in the store but no log entry records it (a row added)", short(&id))),
                Some(rep) => {
                    if Some(rep.status) != status {
                        store_problems.push(format!(
                            "report {}: the store says {} but the log says {} (a status changed)",
                            short(&id),
                            r.str(1)?,
                            rep.status.as_str()
                        ));
                    }
                    if r.opt_i64(2)? != Some(rep.entry as i64) {
                        store_problems.push(format!("report {}: its entry index is not {}", short(&id), rep.entry));
                    }
                }
            }
            let body = r.bytes(3)?;
            let sig: [u8; 64] = r.bytes(4)?.try_into().unwrap_or([0; 64]);
            let signed = truce_shared::SignedReport { body: body.to_vec(), signature: truce_shared::Signature64(sig) };
            if signing::report_id(body) != id || signing::verify(&signed).is_err() {
                store_problems.push(format!("report {}: its signed bytes do not verify (changed)", short(&id)));
            }
            Ok(())
        })?;
        // A refused body is kept as its id (the hash the log's entry names,
        // of the whole body) and a prefix: where the prefix is the whole
        // body, it must still hash to the id.
        tx.stream("SELECT id, entry, body, body_len FROM rejections ORDER BY n", &[], &mut |r| {
            let id = r.b32(0)?;
            if refused.remove(&id).is_none() {
                store_problems.push(format!("refused bytes {} are in the store but not in the log", short(&id)));
            }
            let body = r.bytes(2)?;
            if body.len() as i64 == r.i64(3)? && signing::report_id(body) != id {
                store_problems.push(format!("refused bytes {}: the body kept does not hash to its id", short(&id)));
            }
            Ok(())
        })?;
        tx.stream("SELECT key, revoked_at, compromised_since FROM devices", &[], &mut |r| {
            let key = r.b32(0)?;
            let revoked = r.opt_i64(1)?.is_some();
            let since = r.opt_i64(2)?;
            match devices.remove(&key) {
                None => store_problems
                    .push(format!("device {} is enrolled in the store but not in the log", signing::fingerprint(&key))),
                Some((_, logged)) if logged != since => store_problems.push(format!(
                    "device {}: the store says compromised since {} but the log says {} (which reports are \
                     disputed was changed)",
                    signing::fingerprint(&key),
                    since.map_or("never".into(), truce_shared::time::format_ms),
                    logged.map_or("never".into(), truce_shared::time::format_ms)
                )),
                Some((was, _)) if was != revoked => store_problems.push(format!(
                    "device {}: the store says {} but the log says {}",
                    signing::fingerprint(&key),
                    if revoked { "revoked" } else { "enrolled" },
                    if was { "revoked" } else { "enrolled" }
                )),
                Some(_) => {}
            }
            Ok(())
        })?;
        tx.stream("SELECT device, seq, rejected FROM forks", &[], &mut |r| {
            let k = (r.b32(0)?, r.i64(1)? as u64, r.b32(2)?);
            if forks.remove(&k).is_none() {
                store_problems.push(format!("a fork at seq {} is in the store but not in the log", k.1));
            }
            Ok(())
        })
    })?;
    out.reports = n_reports;
    for p in store_problems {
        disc.push(p);
    }
    let mut missing: Vec<_> = reports.iter().map(|(id, r)| (r.entry, *id)).collect();
    missing.sort();
    for (entry, id) in missing {
        disc.push(format!(
            "report {} is in the log (entry {entry}) but missing from the store (a row deleted)",
            short(&id)
        ));
    }
    for (id, entry) in refused {
        disc.push(format!("refused bytes {} are in the log (entry {entry}) but missing from the store", short(&id)));
    }
    for key in devices.keys() {
        disc.push(format!("device {} is in the log but missing from the store", signing::fingerprint(key)));
    }
    for (k, _) in forks {
        disc.push(format!("a fork at seq {} is in the log but missing from the store", k.1));
    }
    out.discrepancies = disc;
    out.refused = store.read(|tx| tx.count("SELECT count(*) FROM rejections", &[]))?;
    out.devices = store.read(|tx| tx.count("SELECT count(*) FROM devices WHERE revoked_at IS NULL", &[]))?;
    Ok(out)
}
