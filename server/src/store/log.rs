//! The transparency log in the store (DESIGN §9): every change to the
//! record appends an entry in the same transaction as the change, so after
//! any crash the log and the store agree.
//!
//! A write transaction that appends loads the tree's right edge once (the
//! stored hashes of the perfect subtrees that make up the tree, at most 64),
//! computes each new entry's stored hashes in memory (`tlog_tiles`'s
//! layout: the leaf and every subtree it completes, about two per entry),
//! and writes them with the entries in a few multi-row INSERTs. Before the
//! commit it signs a checkpoint of the new tree with the log key and keeps
//! it in `log_head`: one signature per group commit. A write that appends
//! nothing reads the head as it stands (another server on the same
//! PostgreSQL may have advanced it), so every write returns a checkpoint
//! that includes every entry its results name.

use std::collections::HashMap;

use truce_shared::log::{self as tlog, Entry, Event, Hash, HashReader, LogKey, Stored, Via};
use truce_shared::Bytes32;

use super::reports::ReportStatus;
use super::sql::{args, Arg};
use super::{Store, StoreError, Tx};

/// Entries a transaction keeps in memory before writing them out (and
/// forgetting every hash but the right edge): bounds an upgrade's or a
/// migration's memory however many rows it logs.
const FLUSH_EVERY: usize = 4096;

/// Rows per multi-row INSERT.
const ROWS_PER_INSERT: usize = 200;

/// The log as a commit left it.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// Entries in the log.
    pub size: u64,
    /// The tree's root.
    pub root: Hash,
    /// The signed checkpoint of that tree.
    pub checkpoint: String,
}

/// What a write transaction has appended so far (nothing until its first
/// append).
#[derive(Default)]
pub(crate) struct Tail {
    open: Option<Open>,
}

struct Open {
    size: u64,
    /// Stored hashes this transaction may need: the right edge it started
    /// from and everything it computed since the last flush.
    hashes: HashMap<u64, Hash>,
    new_hashes: Vec<(u64, Hash)>,
    new_entries: Vec<(u64, Vec<u8>)>,
}

impl HashReader for Open {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::TreeError> {
        indexes.iter().map(|i| self.hashes.get(i).copied().ok_or(tlog::TreeError::IndexesNotInTree)).collect()
    }
}

fn tree_err(e: tlog::TreeError) -> StoreError {
    StoreError::Log(format!("the log's tree: {e}"))
}

fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Log(format!("log index {v} is out of range")))
}

/// The stored hashes that make up the tree of `size` entries, read from the
/// database.
fn right_edge(tx: &Tx<'_>, size: u64) -> Result<HashMap<u64, Hash>, StoreError> {
    let need = tlog::sub_tree_index(0, size, Vec::new());
    let mut out = HashMap::with_capacity(need.len());
    for chunk in need.chunks(ROWS_PER_INSERT) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
        let sql = format!("SELECT idx, hash FROM log_hashes WHERE idx IN ({})", marks.join(", "));
        let values: Vec<i64> = chunk.iter().map(|&i| int(i)).collect::<Result<_, _>>()?;
        let bound: Vec<Arg<'_>> = values.iter().map(|&v| Arg::Int(v)).collect();
        tx.each(&sql, &bound, &mut |r| {
            out.insert(r.i64(0)? as u64, Hash(r.b32(1)?));
            Ok(())
        })?;
    }
    if out.len() != need.len() {
        return Err(StoreError::Log(format!(
            "the log's tree of {size} entries is missing {} of its stored hashes",
            need.len() - out.len()
        )));
    }
    Ok(out)
}

/// The head row, if the log has been set up.
fn read_head(tx: &Tx<'_>) -> Result<Option<(Bytes32, String, Head)>, StoreError> {
    tx.one("SELECT log_key, mission, size, root, checkpoint FROM log_head WHERE one = 1", &[], |r| {
        Ok((
            r.b32(0)?,
            r.str(1)?.to_string(),
            Head { size: r.i64(2)? as u64, root: Hash(r.b32(3)?), checkpoint: r.str(4)?.to_string() },
        ))
    })
}

/// Appends `entry` to the log inside `tx`; returns its index.
pub(super) fn append(tx: &Tx<'_>, entry: &Entry) -> Result<u64, StoreError> {
    let mut tail = tx.1.borrow_mut();
    let open = match &mut tail.open {
        Some(open) => open,
        slot => {
            let Some((_, _, head)) = read_head(tx)? else {
                return Err(StoreError::Config(
                    "this store's log is not set up: open it with the server's log key".into(),
                ));
            };
            let hashes = right_edge(tx, head.size)?;
            slot.insert(Open { size: head.size, hashes, new_hashes: Vec::new(), new_entries: Vec::new() })
        }
    };
    let bytes = entry.encode();
    let n = open.size;
    let new = tlog::stored_hashes_for_record_hash(n, tlog::record_hash(&bytes), &*open).map_err(tree_err)?;
    let base = tlog::stored_hash_index(0, n);
    for (i, h) in new.into_iter().enumerate() {
        open.hashes.insert(base + i as u64, h);
        open.new_hashes.push((base + i as u64, h));
    }
    open.new_entries.push((n, bytes));
    open.size += 1;
    if open.new_entries.len() >= FLUSH_EVERY {
        flush(tx, open)?;
    }
    Ok(n)
}

/// Writes what `open` holds and forgets every hash but the right edge.
fn flush(tx: &Tx<'_>, open: &mut Open) -> Result<(), StoreError> {
    for chunk in open.new_entries.chunks(ROWS_PER_INSERT) {
        insert_pairs(tx, "log_entries", "entry", chunk.iter().map(|(i, b)| (*i, b.as_slice())))?;
    }
    for chunk in open.new_hashes.chunks(ROWS_PER_INSERT) {
        insert_pairs(tx, "log_hashes", "hash", chunk.iter().map(|(i, h)| (*i, &h.0[..])))?;
    }
    open.new_entries.clear();
    open.new_hashes.clear();
    let keep = tlog::sub_tree_index(0, open.size, Vec::new());
    open.hashes.retain(|k, _| keep.contains(k));
    Ok(())
}

fn insert_pairs<'a>(
    tx: &Tx<'_>,
    table: &str,
    column: &str,
    rows: impl Iterator<Item = (u64, &'a [u8])>,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, &[u8])> = rows.map(|(i, b)| Ok((int(i)?, b))).collect::<Result<_, StoreError>>()?;
    if rows.is_empty() {
        return Ok(());
    }
    let marks: Vec<String> = (0..rows.len()).map(|k| format!("(?{}, ?{})", 2 * k + 1, 2 * k + 2)).collect();
    let sql = format!("INSERT INTO {table} (idx, {column}) VALUES {}", marks.join(", "));
    let mut bound = Vec::with_capacity(rows.len() * 2);
    for (i, b) in &rows {
        bound.push(Arg::Int(*i));
        bound.push(Arg::Blob(b));
    }
    tx.execute(&sql, &bound)?;
    Ok(())
}

/// Ends the log's part of a write transaction before its commit: writes
/// what was appended, signs a checkpoint of the new tree with `key` and
/// keeps it in `log_head`. Returns the head the commit leaves (read as it
/// stands if nothing was appended), or `None` where the log is not set up.
pub(super) fn finish(tx: &Tx<'_>, key: Option<&LogKey>) -> Result<Option<Head>, StoreError> {
    let open = tx.1.borrow_mut().open.take();
    let Some(mut open) = open else {
        return Ok(read_head(tx)?.map(|(_, _, head)| head));
    };
    let Some(key) = key else {
        return Err(StoreError::Config("this write changes the log, but the log key is not loaded".into()));
    };
    flush(tx, &mut open)?;
    let root = tlog::tree_hash(open.size, &open).map_err(tree_err)?;
    let checkpoint = key.checkpoint(open.size, &root);
    tx.execute(
        "UPDATE log_head SET size = ?1, root = ?2, checkpoint = ?3 WHERE one = 1",
        args![int(open.size)?, &root.0[..], &checkpoint],
    )?;
    Ok(Some(Head { size: open.size, root, checkpoint }))
}

/// How a report came, as its entry says: the certificate's serial, the
/// bundle's hash, or unrecorded.
pub(super) fn via(serial: Option<&str>, bundle: Option<&Bytes32>) -> Via {
    match (serial, bundle) {
        (Some(serial), _) => Via::Tls { serial: serial.to_string() },
        (None, Some(b)) => Via::Import { bundle: *b },
        (None, None) => Via::Unrecorded,
    }
}

/// The entry status of a stored report.
pub(super) fn stored(status: ReportStatus, reason: Option<&str>) -> Stored {
    let reason = reason.unwrap_or_default().to_string();
    match status {
        ReportStatus::Verified => Stored::Verified,
        ReportStatus::Quarantined => Stored::Quarantined(reason),
        ReportStatus::Rejected => Stored::Rejected(reason),
    }
}

impl Store {
    /// Sets up the log with the server's log key: on a new log, writes its
    /// head (for `mission`) and logs what the store already holds (a store
    /// upgraded from before the log); on an existing one, checks the key is
    /// the one its checkpoints are signed with. From then on every write
    /// that changes the record appends to the log and signs a checkpoint.
    pub fn open_log(&mut self, seed: &[u8; 32], mission: &str) -> Result<Head, StoreError> {
        let public = LogKey::new(seed, mission).public();
        let check = |found: Option<(Bytes32, String, Head)>| match found {
            Some((key, mission, head)) if key == public => Ok(Some((mission, head))),
            Some((key, _, _)) => Err(StoreError::Config(format!(
                "this database's log is signed by log key {}, but this server's log.key is {}: every server \
                 on one database must hold the same log.key (copy it from the first server's data dir)",
                truce_shared::signing::fingerprint(&key),
                truce_shared::signing::fingerprint(&public)
            ))),
            None => Ok(None),
        };
        // Usually the log is there: a read, so a command opening the store
        // beside a running server does not queue for the write lock.
        if let Some((mission, head)) = check(self.read(read_head)?)? {
            self.log_key = Some(std::sync::Arc::new(LogKey::new(seed, &mission)));
            return Ok(head);
        }
        let head = self.write(|tx| match check(read_head(tx)?)? {
            Some(found) => Ok(found),
            None => {
                let key = LogKey::new(seed, mission);
                let empty = key.checkpoint(0, &tlog::EMPTY_HASH);
                tx.execute(
                    "INSERT INTO log_head (one, log_key, mission, size, root, checkpoint)
                         VALUES (1, ?1, ?2, 0, ?3, ?4)",
                    args![&public[..], mission, &tlog::EMPTY_HASH.0[..], &empty],
                )?;
                backfill(tx)?;
                let head =
                    finish(tx, Some(&key))?.unwrap_or(Head { size: 0, root: tlog::EMPTY_HASH, checkpoint: empty });
                Ok((mission.to_string(), head))
            }
        })?;
        self.log_key = Some(std::sync::Arc::new(LogKey::new(seed, &head.0)));
        Ok(head.1)
    }

    /// The log key this store signs with, once [`Store::open_log`] ran.
    pub fn log_key(&self) -> Option<std::sync::Arc<LogKey>> {
        self.log_key.clone()
    }

    /// The log's head as stored now (`None` before the log is set up).
    pub fn log_head(&self) -> Result<Option<Head>, StoreError> {
        Ok(self.read(read_head)?.map(|(_, _, h)| h))
    }
}

/// Logs what a store held before it had a log, in an order whose replay
/// gives the same record: enrolments, reports by arrival (with the status
/// they have now), refused bytes, forks, revocations.
fn backfill(tx: &Tx<'_>) -> Result<(), StoreError> {
    let devices = tx.all(
        "SELECT key, name, added_at, revoked_at, compromised_since FROM devices ORDER BY added_at, key",
        &[],
        |r| Ok((r.b32(0)?, r.opt_string(1)?.unwrap_or_default(), r.i64(2)?, r.opt_i64(3)?, r.opt_i64(4)?)),
    )?;
    for (device, name, at, _, _) in &devices {
        append(tx, &Entry::new(*at, Event::Enrolled { device: *device, name: name.clone() }))?;
    }
    let reports = tx.all(
        "SELECT n, id, device, seq, status, reason, received_at, cert_serial FROM reports ORDER BY n",
        &[],
        |r| {
            let status = ReportStatus::parse(r.str(4)?)
                .ok_or_else(|| StoreError::Log(format!("unknown report status {:?}", r.str(4).unwrap_or(""))))?;
            Ok((
                r.i64(0)?,
                Event::Report {
                    id: r.b32(1)?,
                    device: r.b32(2)?,
                    seq: r.i64(3)? as u64,
                    status: stored(status, r.opt_string(5)?.as_deref()),
                    via: via(r.opt_string(7)?.as_deref(), None),
                },
                r.i64(6)?,
            ))
        },
    )?;
    for (n, event, at) in reports {
        let entry = append(tx, &Entry::new(at, event))?;
        tx.execute("UPDATE reports SET entry = ?1 WHERE n = ?2", args![int(entry)?, n])?;
    }
    let refused = tx.all("SELECT n, id, device, reason, first_received_at FROM rejections ORDER BY n", &[], |r| {
        let device = match r.opt_bytes(2)? {
            Some(b) => Some(super::sql::fixed::<32>(b, 2)?),
            None => None,
        };
        Ok((r.i64(0)?, r.b32(1)?, device, r.str(3)?.to_string(), r.i64(4)?))
    })?;
    for (n, id, device, reason, at) in refused {
        let entry = append(tx, &Entry::new(at, Event::Refused { id, device, reason, via: Via::Unrecorded }))?;
        tx.execute("UPDATE rejections SET entry = ?1 WHERE n = ?2", args![int(entry)?, n])?;
    }
    let forks =
        tx.all("SELECT device, seq, kept, rejected, detected_at FROM forks ORDER BY detected_at", &[], |r| {
            Ok((r.b32(0)?, r.i64(1)? as u64, r.b32(2)?, r.b32(3)?, r.i64(4)?))
        })?;
    for (device, seq, kept, rejected, at) in forks {
        append(tx, &Entry::new(at, Event::Fork { device, seq, kept, rejected }))?;
    }
    for (device, _, _, revoked, since) in devices {
        if let Some(at) = revoked {
            append(tx, &Entry::new(at, Event::Revoked { device, since }))?;
        }
    }
    Ok(())
}

/// The proofs a `Prove` asks for (protocol 2).
#[derive(Debug, Clone, PartialEq)]
pub struct Proofs {
    /// From `from` to `size`; empty when none is needed.
    pub consistency: Vec<Bytes32>,
    /// One per range, in order.
    pub ranges: Vec<tlog::RangeProof>,
    /// The bytes of each entry asked, in order.
    pub entries: Vec<Vec<u8>>,
}

/// Reads stored hashes inside a read transaction.
struct TxHashes<'a, 'b> {
    tx: &'a Tx<'b>,
    failed: std::cell::RefCell<Option<StoreError>>,
}

impl HashReader for TxHashes<'_, '_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::TreeError> {
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            let got =
                int(i).and_then(|i| self.tx.one("SELECT hash FROM log_hashes WHERE idx = ?1", args![i], |r| r.b32(0)));
            match got {
                Ok(Some(h)) => out.push(Hash(h)),
                Ok(None) => return Err(tlog::TreeError::IndexesNotInTree),
                Err(e) => {
                    *self.failed.borrow_mut() = Some(e);
                    return Err(tlog::TreeError::IndexesNotInTree);
                }
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Answers a `Prove`: the consistency proof from `from` to `size`, a
    /// range proof for each range, the bytes of each entry. `Ok(Err(why))`
    /// when the request names what the log does not hold (a size beyond
    /// it, an empty or reversed range, an index past `size`).
    pub fn prove(
        &self,
        size: u64,
        from: u64,
        ranges: &[(u64, u64)],
        entries: &[u64],
    ) -> Result<Result<Proofs, String>, StoreError> {
        self.read(|tx| {
            let Some((_, _, head)) = read_head(tx)? else { return Ok(Err("this server has no log".into())) };
            if size > head.size || from > size {
                return Ok(Err(format!("cannot prove {from} → {size}: the log holds {} entries", head.size)));
            }
            if let Some(&(lo, hi)) = ranges.iter().find(|&&(lo, hi)| !(lo < hi && hi <= size)) {
                return Ok(Err(format!("range {lo}..{hi} is not within the tree of {size}")));
            }
            if let Some(&i) = entries.iter().find(|&&i| i >= size) {
                return Ok(Err(format!("entry {i} is not within the tree of {size}")));
            }
            let reader = TxHashes { tx, failed: Default::default() };
            let fail = |e: String, reader: &TxHashes<'_, '_>| match reader.failed.borrow_mut().take() {
                Some(db) => Err(db),
                None => Err(StoreError::Log(e)),
            };
            let consistency = if from == 0 || from == size {
                Vec::new()
            } else {
                match tlog::prove_tree(size, from, &reader) {
                    Ok(p) => p.into_iter().map(|h| h.0).collect(),
                    Err(e) => return fail(e.to_string(), &reader),
                }
            };
            let mut proofs = Vec::with_capacity(ranges.len());
            for &(lo, hi) in ranges {
                match tlog::prove_range(lo, hi, size, &reader) {
                    Ok(p) => proofs.push(p),
                    Err(e) => return fail(e.to_string(), &reader),
                }
            }
            let mut bytes = Vec::with_capacity(entries.len());
            for &i in entries {
                let got = tx.one("SELECT entry FROM log_entries WHERE idx = ?1", args![int(i)?], |r| {
                    Ok(r.bytes(0)?.to_vec())
                })?;
                bytes.push(got.ok_or_else(|| StoreError::Log(format!("log entry {i} is missing")))?);
            }
            Ok(Ok(Proofs { consistency, ranges: proofs, entries: bytes }))
        })
    }
}

/// A report's place in the log, as a bundle carries it: its entry and the
/// audit path of that entry to the checkpoint the stream started with.
#[derive(Debug, Clone, PartialEq)]
pub struct Proved {
    /// The entry's index.
    pub index: u64,
    /// The entry's bytes.
    pub entry: Vec<u8>,
    /// The size of the tree the path leads to (the head's).
    pub size: u64,
    /// The RFC 9162 audit path to the head's tree.
    pub proof: Vec<Bytes32>,
}

/// Stored hashes most recently read, so consecutive audit paths (which
/// share their upper levels) read each hash once.
#[cfg(not(test))]
const PROOF_CACHE: usize = 1 << 14;
/// Small in tests, so a test export fills it and starts again.
#[cfg(test)]
const PROOF_CACHE: usize = 64;

/// Reads stored hashes inside a read transaction, those it lacks in one
/// query, keeping the most recent in memory (bounded).
struct CachedHashes<'a, 'b> {
    tx: &'a Tx<'b>,
    cache: std::cell::RefCell<HashMap<u64, Hash>>,
    failed: std::cell::RefCell<Option<StoreError>>,
}

impl CachedHashes<'_, '_> {
    fn fetch(&self, missing: &[u64]) -> Result<(), StoreError> {
        let mut cache = self.cache.borrow_mut();
        for chunk in missing.chunks(ROWS_PER_INSERT) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
            let sql = format!("SELECT idx, hash FROM log_hashes WHERE idx IN ({})", marks.join(", "));
            let values: Vec<i64> = chunk.iter().map(|&i| int(i)).collect::<Result<_, _>>()?;
            let bound: Vec<Arg<'_>> = values.iter().map(|&v| Arg::Int(v)).collect();
            self.tx.each(&sql, &bound, &mut |r| {
                cache.insert(r.i64(0)? as u64, Hash(r.b32(1)?));
                Ok(())
            })?;
        }
        Ok(())
    }
}

impl HashReader for CachedHashes<'_, '_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::TreeError> {
        let missing: Vec<u64> = {
            let mut cache = self.cache.borrow_mut();
            let missing: Vec<u64> = indexes.iter().copied().filter(|i| !cache.contains_key(i)).collect();
            if cache.len() + missing.len() > PROOF_CACHE {
                // Full: start again, with every hash this call needs.
                cache.clear();
                indexes.to_vec()
            } else {
                missing
            }
        };
        if !missing.is_empty() {
            if let Err(e) = self.fetch(&missing) {
                *self.failed.borrow_mut() = Some(e);
                return Err(tlog::TreeError::IndexesNotInTree);
            }
        }
        let cache = self.cache.borrow();
        indexes.iter().map(|i| cache.get(i).copied().ok_or(tlog::TreeError::IndexesNotInTree)).collect()
    }
}

impl Store {
    /// Streams the reports that match `query`, each with its entry and the
    /// entry's audit path to the log's head, all read in one read
    /// transaction (one snapshot: every report streamed is in the head's
    /// tree). `head` is called first, with the head and the log key; a
    /// report without an entry in that tree (a store whose log is not set
    /// up) comes with `None`. Returns how many reports it passed.
    pub fn for_each_report_proved<E: From<StoreError>>(
        &self,
        query: &super::ReportQuery,
        head: impl FnOnce(Option<(&Head, &Bytes32)>) -> Result<(), E>,
        mut f: impl FnMut(super::ReportRow, Option<Proved>) -> Result<(), E>,
    ) -> Result<u64, E> {
        use super::reports::{carried, finish, stream_reports};
        let mut failed: Option<E> = None;
        let mut n = 0;
        let r = self.read(|tx| {
            let found = read_head(tx)?;
            head(found.as_ref().map(|(key, _, h)| (h, key))).map_err(|e| carried(&mut failed, e))?;
            let size = found.as_ref().map_or(0, |(_, _, h)| h.size);
            let reader = CachedHashes { tx, cache: Default::default(), failed: Default::default() };
            stream_reports(tx, query, &mut |tx, row| {
                let proved = match row.entry {
                    Some(index) if index < size => {
                        let entry = tx
                            .one("SELECT entry FROM log_entries WHERE idx = ?1", args![int(index)?], |r| {
                                Ok(r.bytes(0)?.to_vec())
                            })?
                            .ok_or_else(|| StoreError::Log(format!("log entry {index} is missing")))?;
                        let proof = tlog::prove_record(size, index, &reader).map_err(|e| {
                            reader.failed.borrow_mut().take().unwrap_or_else(|| {
                                StoreError::Log(format!("cannot prove log entry {index} in the tree of {size}: {e}"))
                            })
                        })?;
                        Some(Proved { index, entry, size, proof: proof.into_iter().map(|h| h.0).collect() })
                    }
                    _ => None,
                };
                f(row, proved).map_err(|e| carried(&mut failed, e))?;
                n += 1;
                Ok(())
            })
        });
        finish(r, failed, n)
    }
}
