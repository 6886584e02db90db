//! `import`: bundles from a USB stick, through the same pipeline as the wire.
//!
//! Reports are read one at a time ([`BundleReader`]), grouped into batches of
//! the wire's size, verified by the same [`Verifier`] and stored by the same
//! [`Writer`] and outcome rules a connection uses. So a report gets the same
//! answer whether it came over the network or on a stick, and a report
//! already delivered over the network is a Duplicate here.
//!
//! A few batches are in flight at once (one per core, and one more), so
//! import uses every core while its memory stays bounded by those batches.
//! A frame that cannot be read is reported with its file and index and
//! counted as rejected ("malformed"); a frame that is not a report is
//! skipped, and a broken length prefix ends that file (its position is
//! lost), with the reports before it imported. Other files carry on.
//!
//! A version-2 bundle's evidence files (DESIGN §10) follow its reports:
//! at the first piece of a file the reports before it are committed, then
//! the file is taken as an upload is, only if a stored report names it
//! with that size, within the size limit and the quota, and only if its
//! bytes hash to the signed SHA-256 (`crate::evidence::Incoming`). A file
//! already held is passed over; one refused or cut short is counted with
//! the reason, and the reports stay imported.
//!
//! The server may be running meanwhile: its writer and this one take turns
//! on SQLite's write lock.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::Serialize;
use truce_shared::bundle::{BundleError, Item, ItemReader};
use truce_shared::wire::Status;
use truce_shared::{limits, Bytes32, SignedReport};

use crate::evidence::{Evidence, EvidenceError, Imported, Incoming, NotTaken};
use crate::store::{Arrival, Store, StoreError};
use crate::verify::{Verifier, VerifyTaskFailed};
use crate::writer::{Committed, WriteError, Writer};

/// The reason counted for a frame in a bundle that is not a report.
pub const REASON_MALFORMED: &str = "malformed";

/// Most problems an import lists one by one (file, frame index, what was
/// wrong). Past it they are only counted in
/// [`ImportSummary::problems_not_listed`], so a bundle of millions of bad
/// frames costs the import a count, not a list entry each.
pub const MAX_PROBLEMS_LISTED: usize = 100;

/// Why an import stopped before the end. Reports committed before it stay.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A batch could not be stored.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Verification crashed.
    #[error(transparent)]
    Verify(#[from] VerifyTaskFailed),
    /// The evidence directory failed.
    #[error(transparent)]
    Evidence(#[from] EvidenceError),
    /// No runtime or writer thread.
    #[error("cannot start the import: {0}")]
    Start(std::io::Error),
}

/// A place in a bundle that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The bundle file.
    pub file: PathBuf,
    /// 1-based index of the frame in the file; 0 for the file itself.
    pub index: u64,
    /// What was wrong.
    pub error: String,
}

/// What an import did: counts by outcome, and what could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Verified and stored.
    pub accepted: u64,
    /// Already stored.
    pub duplicate: u64,
    /// Stored but not trusted yet, by reason.
    pub quarantined: BTreeMap<String, u64>,
    /// Not accepted, by reason (including unreadable frames: "malformed").
    pub rejected: BTreeMap<String, u64>,
    /// Files and frames that could not be read, the first
    /// [`MAX_PROBLEMS_LISTED`] of them.
    pub problems: Vec<Problem>,
    /// Problems past [`MAX_PROBLEMS_LISTED`], counted only.
    pub problems_not_listed: u64,
    /// Evidence files stored now (their hash matched).
    pub evidence_stored: u64,
    /// Their bytes.
    pub evidence_bytes: u64,
    /// Evidence files the server held already.
    pub evidence_already_held: u64,
    /// Evidence files not stored, by reason.
    pub evidence_refused: BTreeMap<String, u64>,
}

impl ImportSummary {
    /// Counts one outcome.
    pub fn add(&mut self, s: &Status) {
        match s {
            Status::Accepted => self.accepted += 1,
            Status::Duplicate => self.duplicate += 1,
            Status::Quarantined(r) => *self.quarantined.entry(r.clone()).or_default() += 1,
            Status::Rejected(r) => *self.rejected.entry(r.clone()).or_default() += 1,
        }
    }

    /// Quarantined, all reasons.
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }

    /// Rejected, all reasons.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Evidence files not stored, all reasons.
    pub fn evidence_refused_total(&self) -> u64 {
        self.evidence_refused.values().sum()
    }

    fn evidence_refused(&mut self, why: impl Into<String>) {
        *self.evidence_refused.entry(why.into()).or_default() += 1;
    }

    fn problem(&mut self, file: &Path, index: u64, error: impl ToString, malformed: bool) {
        // Not logged here: the caller prints each listed problem once.
        if malformed {
            *self.rejected.entry(REASON_MALFORMED.into()).or_default() += 1;
        }
        if self.problems.len() < MAX_PROBLEMS_LISTED {
            self.problems.push(Problem { file: file.to_path_buf(), index, error: error.to_string() });
        } else {
            self.problems_not_listed += 1;
        }
    }
}

/// The pipeline a batch goes through: verify, then commit.
struct Pipeline {
    rt: tokio::runtime::Runtime,
    verifier: Verifier,
    writer: Writer,
    in_flight: VecDeque<tokio::task::JoinHandle<Result<Committed, ImportError>>>,
    max_in_flight: usize,
}

impl Pipeline {
    fn submit(
        &mut self,
        batch: Vec<SignedReport>,
        bundle: Bytes32,
        summary: &mut ImportSummary,
    ) -> Result<(), ImportError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (verifier, writer) = (self.verifier.clone(), self.writer.clone());
        self.in_flight.push_back(self.rt.spawn(async move {
            let checked = verifier.check(batch).await?;
            Ok(writer.commit(checked, Arrival::Import(bundle)).await?)
        }));
        while self.in_flight.len() > self.max_in_flight {
            self.finish_one(summary)?;
        }
        Ok(())
    }

    /// Waits for every batch in flight: their reports are committed.
    fn drain(&mut self, summary: &mut ImportSummary) -> Result<(), ImportError> {
        while !self.in_flight.is_empty() {
            self.finish_one(summary)?;
        }
        Ok(())
    }

    fn finish_one(&mut self, summary: &mut ImportSummary) -> Result<(), ImportError> {
        if let Some(task) = self.in_flight.pop_front() {
            let outcomes =
                self.rt.block_on(task).map_err(|e| ImportError::Verify(VerifyTaskFailed::from_join(e)))??;
            for o in &outcomes.outcomes {
                summary.add(&o.status);
            }
        }
        Ok(())
    }
}

/// Where imported evidence goes: the evidence directory, and a handle on
/// the store to ask which files its reports name.
pub struct EvidenceSink {
    /// The server's evidence directory.
    pub evidence: Evidence,
    /// A second handle on the store (the first is the writer's).
    pub store: Store,
}

/// Imports bundle files into `store` (opened with its log key), in order,
/// and reports the outcomes; their evidence files go to `evidence`.
/// Each report's log entry names the SHA-256 of the file it came in.
/// Unreadable files and frames are listed in [`ImportSummary::problems`];
/// an error means the store or the evidence directory failed.
/// `progress` follows the bundles' bytes as they are read.
pub fn import_files(
    store: Store,
    evidence: &EvidenceSink,
    files: &[PathBuf],
    progress: &crate::progress::Progress,
) -> Result<ImportSummary, ImportError> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.min(4))
        .enable_all()
        .build()
        .map_err(ImportError::Start)?;
    let (writer, writer_thread) = Writer::spawn(store, crate::store::Quotas::default()).map_err(ImportError::Start)?;
    let mut p =
        Pipeline { rt, verifier: Verifier::new(cores), writer, in_flight: VecDeque::new(), max_in_flight: cores + 1 };
    let mut summary = ImportSummary::default();
    let result = files.iter().try_for_each(|f| import_one(&mut p, evidence, f, &mut summary, progress));
    progress.finish();
    let drained = (0..p.in_flight.len()).try_for_each(|_| p.finish_one(&mut summary));
    drop(p);
    writer_thread.join();
    result.and(drained)?;
    Ok(summary)
}

/// The SHA-256 of a file, read in bounded memory.
fn file_hash(file: &Path) -> std::io::Result<Bytes32> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut File::open(file)?, &mut hasher)?;
    Ok(hasher.finalize().into())
}

fn import_one(
    p: &mut Pipeline,
    sink: &EvidenceSink,
    file: &Path,
    summary: &mut ImportSummary,
    progress: &crate::progress::Progress,
) -> Result<(), ImportError> {
    let bundle = match file_hash(file) {
        Ok(h) => h,
        Err(e) => {
            summary.problem(file, 0, BundleError::Io(e), false);
            return Ok(());
        }
    };
    let mut reader = match File::open(file).map_err(BundleError::Io).and_then(|f| ItemReader::new(BufReader::new(f))) {
        Ok(r) => r,
        Err(e) => {
            summary.problem(file, 0, e, false);
            return Ok(());
        }
    };
    let batch_size = limits::MAX_BATCH as usize;
    let mut batch = Vec::with_capacity(batch_size);
    // The evidence file whose pieces are coming in, if any: `None` inside
    // while the pieces of a file not taken are passed over.
    let mut current: Option<(Bytes32, Option<Incoming<'_>>)> = None;
    let mut read = 0;
    while let Some(item) = reader.next() {
        progress.add(reader.offset() - read);
        read = reader.offset();
        let index = reader.reports();
        match item {
            Ok(Item::Report(report)) => {
                end_file(current.take(), file, index, summary)?;
                batch.push(report);
                if batch.len() == batch_size {
                    p.submit(std::mem::replace(&mut batch, Vec::with_capacity(batch_size)), bundle, summary)?;
                }
            }
            Ok(Item::Evidence { sha256, size, offset, data }) => {
                if current.as_ref().is_none_or(|(sha, _)| *sha != sha256) {
                    end_file(current.take(), file, index, summary)?;
                    // The reports before it are committed before the
                    // store is asked whether one names it.
                    p.submit(std::mem::replace(&mut batch, Vec::with_capacity(batch_size)), bundle, summary)?;
                    p.drain(summary)?;
                    current = Some((sha256, begin_file(sink, &sha256, size, summary)?));
                }
                if let Some((_, Some(incoming))) = current.as_mut() {
                    if let Err(e) = incoming.take(size, offset, &data)? {
                        summary.problem(file, index, format!("evidence {}: {e}", short(&sha256)), false);
                        summary.evidence_refused("its pieces in the bundle are out of order or damaged");
                        // The rest of this file's pieces are passed over.
                        current = Some((sha256, None));
                    }
                }
            }
            // The log items of a server's bundle: this server logs each
            // report in its own log.
            Ok(Item::Checkpoint { .. } | Item::Entry { .. } | Item::Inclusion { .. }) => {}
            Err(BundleError::UnknownItem { kind, .. }) => {
                tracing::warn!(file = %file.display(), kind, "an item of a kind this build does not read: passed over");
            }
            Err(BundleError::Decode { index, source }) => summary.problem(file, index, source, true),
            // The reader stops after these: the rest of the file is unreadable.
            Err(BundleError::Frame { index, source }) => summary.problem(file, index, source, true),
            Err(e) => summary.problem(file, 0, e, false),
        }
    }
    end_file(current.take(), file, reader.reports(), summary)?;
    p.submit(batch, bundle, summary)
}

fn short(sha256: &Bytes32) -> String {
    hex::encode(&sha256[..8])
}

/// The first piece of a file: whether it is to be taken.
fn begin_file<'a>(
    sink: &'a EvidenceSink,
    sha256: &Bytes32,
    size: u64,
    summary: &mut ImportSummary,
) -> Result<Option<Incoming<'a>>, ImportError> {
    let named = sink.store.attachment_sizes(sha256)?;
    Ok(match sink.evidence.import(sha256, size, &named)? {
        Ok(incoming) => Some(incoming),
        Err(NotTaken::Held) => {
            summary.evidence_already_held += 1;
            None
        }
        Err(NotTaken::Refused(why)) => {
            tracing::warn!(sha256 = %hex::encode(sha256), size, reason = %why, "imported evidence refused");
            summary.evidence_refused(why);
            None
        }
    })
}

/// The pieces of a file ended: hold it if it is whole and matches.
fn end_file(
    current: Option<(Bytes32, Option<Incoming<'_>>)>,
    file: &Path,
    index: u64,
    summary: &mut ImportSummary,
) -> Result<(), ImportError> {
    let Some((sha256, Some(incoming))) = current else { return Ok(()) };
    let size = incoming.size();
    match incoming.finish()? {
        Imported::Held => {
            summary.evidence_stored += 1;
            summary.evidence_bytes += size;
        }
        Imported::Mismatch => summary.evidence_refused("its bytes hash to another SHA-256 than the one signed"),
        Imported::CutShort => {
            summary.problem(
                file,
                index,
                format!("evidence {}: the bundle holds only part of it", short(&sha256)),
                false,
            );
            summary.evidence_refused("the bundle holds only part of it");
        }
    }
    Ok(())
}
