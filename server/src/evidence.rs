//! Evidence files (DESIGN §10): the photos and videos reports name by
//! SHA-256, uploaded in chunks over the agents' sessions (or imported from
//! a bundle), kept content-addressed in the data directory.
//!
//! ```text
//! DIR/evidence/<sha256 hex>           a held file: its SHA-256 matched; written once
//! DIR/evidence/partial/<sha256 hex>   an upload in progress: the bytes held durably so far
//! DIR/evidence/refused.log            one line per file discarded because its hash did not match
//! ```
//!
//! Promises:
//! - A file is held only once its whole content hashed to the SHA-256 a
//!   stored report signed; it is moved into place atomically (rename, then
//!   the directory synced), so a held file is never partial.
//! - A chunk is written only at the end of what is held, and synced to
//!   disk before it is acknowledged: the offset the server gives is
//!   durable, so an upload cut by a broken link or a killed process on
//!   either side resumes there.
//! - Only files a stored report names, with the size it signed, are taken
//!   (any device's report: the hash is what is trusted); each within
//!   [`EvidenceLimits::max_size`], all within [`EvidenceLimits::quota`].
//! - One session uploads a file at a time; another session offering the
//!   same file is told to come back later.
//! - Partial files left by uploads that never finish are removed after
//!   [`EvidenceLimits::partial_ttl`].
//!
//! Every operation here does blocking file i/o: sessions call it through
//! `spawn_blocking`.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use truce_shared::bundle::{EvidenceFile, PieceError};
use truce_shared::wire::UploadState;
use truce_shared::Bytes32;

/// Largest evidence file taken, by default: 2 GiB.
pub const MAX_EVIDENCE_SIZE: u64 = 2 * 1024 * 1024 * 1024;

/// All evidence held and partial, by default: 64 GiB.
pub const EVIDENCE_QUOTA: u64 = 64 * 1024 * 1024 * 1024;

/// How long a partial upload nobody continues is kept, by default: 7 days.
pub const PARTIAL_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Largest chunk of data in one `Chunk` message: 1 MiB.
pub const MAX_CHUNK: usize = truce_shared::limits::MAX_EVIDENCE_CHUNK;

/// The limits on evidence, each with its default above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceLimits {
    /// Largest file taken.
    pub max_size: u64,
    /// All files held and partial together.
    pub quota: u64,
    /// Age (since its last write) after which a partial file is removed.
    pub partial_ttl: Duration,
}

impl Default for EvidenceLimits {
    fn default() -> Self {
        EvidenceLimits { max_size: MAX_EVIDENCE_SIZE, quota: EVIDENCE_QUOTA, partial_ttl: PARTIAL_TTL }
    }
}

/// Why an evidence operation failed on the server's side (never the
/// client's fault: those are [`UploadState::Refused`] answers).
#[derive(Debug, thiserror::Error)]
#[error("evidence: cannot {what} {path}: {source}")]
pub struct EvidenceError {
    what: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> EvidenceError + 'a {
    move |source| EvidenceError { what, path: path.to_path_buf(), source }
}

/// The evidence directory of one server, with the uploads in progress.
#[derive(Debug)]
pub struct Evidence {
    dir: PathBuf,
    partial: PathBuf,
    limits: EvidenceLimits,
    /// Bytes held and partial, counted at start and kept up to date.
    used: AtomicU64,
    /// Files some session is uploading now.
    uploading: Mutex<HashSet<Bytes32>>,
}

/// What `stats` says of the evidence directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EvidenceCounts {
    /// Files held.
    pub held: u64,
    /// Their bytes.
    pub held_bytes: u64,
    /// Uploads in progress (or abandoned, until removed).
    pub partial: u64,
    /// Their bytes.
    pub partial_bytes: u64,
    /// Files discarded because their bytes did not match the signed hash.
    pub refused: u64,
}

impl Evidence {
    /// Opens (creating, 0700) the evidence directory `dir` and counts what
    /// it holds.
    pub fn open(dir: &Path, limits: EvidenceLimits) -> Result<Evidence, EvidenceError> {
        let partial = dir.join("partial");
        for d in [dir, &partial] {
            truce_shared::fs::create_private_dir(d, truce_shared::fs::ExistingDir::Tighten).map_err(|e| {
                EvidenceError { what: "create", path: d.to_path_buf(), source: std::io::Error::other(e.to_string()) }
            })?;
        }
        let e = Evidence {
            dir: dir.to_path_buf(),
            partial,
            limits,
            used: AtomicU64::new(0),
            uploading: Mutex::new(HashSet::new()),
        };
        let c = e.counts()?;
        e.used.store(c.held_bytes + c.partial_bytes, Ordering::Relaxed);
        Ok(e)
    }

    /// The limits in force.
    pub fn limits(&self) -> &EvidenceLimits {
        &self.limits
    }

    /// Where a held file is (it may not exist).
    pub fn held_path(&self, sha256: &Bytes32) -> PathBuf {
        self.dir.join(hex::encode(sha256))
    }

    fn partial_path(&self, sha256: &Bytes32) -> PathBuf {
        self.partial.join(hex::encode(sha256))
    }

    /// Whether the server holds this file.
    pub fn holds(&self, sha256: &Bytes32) -> bool {
        self.held_path(sha256).is_file()
    }

    /// Answers an `Offer`. `named` is the sizes stored reports give this
    /// hash (empty: no report names it). On `From`, the file is claimed
    /// by `uploads` until it is held or the session ends.
    pub fn offer(
        self: &Arc<Self>,
        uploads: &mut Uploads,
        sha256: &Bytes32,
        size: u64,
        named: &[u64],
    ) -> Result<UploadState, EvidenceError> {
        if let Some(answer) = self.admit(sha256, size, named) {
            return Ok(answer.into());
        }
        if size == 0 && *sha256 != <Bytes32>::from(Sha256::digest([])) {
            return Ok(UploadState::Refused("no file of 0 bytes has this SHA-256".into()));
        }
        if !self.claim(uploads, sha256, size) {
            return Ok(UploadState::Refused("another session is uploading this file: try again later".into()));
        }
        let partial = self.partial_path(sha256);
        let mut held = match std::fs::metadata(&partial) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err("read", &partial)(e)),
        };
        if held > size {
            // Not bytes of this file: start again.
            self.discard(&partial, held)?;
            return Ok(UploadState::From(0));
        }
        if held == size {
            // Every byte arrived but the check did not happen (a crash
            // between the last write and the rename): check now.
            match self.complete(uploads, sha256, size)? {
                // Discarded and counted. An Offer is answered Held, From
                // or Refused, never Mismatch: the upload starts over.
                UploadState::Mismatch => {
                    if !self.claim(uploads, sha256, size) {
                        return Ok(UploadState::Refused(
                            "another session is uploading this file: try again later".into(),
                        ));
                    }
                    held = 0;
                }
                done => return Ok(done),
            }
        }
        let remaining = size - held;
        if self.used.load(Ordering::Relaxed).saturating_add(remaining) > self.limits.quota {
            uploads.release(self, sha256);
            return Ok(self.quota_full());
        }
        Ok(UploadState::From(held))
    }

    /// Claims the file for this session, unless another session has it.
    fn claim(&self, uploads: &mut Uploads, sha256: &Bytes32, size: u64) -> bool {
        if !uploads.claims.contains_key(sha256) {
            let mut busy = self.uploading.lock().unwrap_or_else(|p| p.into_inner());
            if !busy.insert(*sha256) {
                return false;
            }
            uploads.claims.insert(*sha256, size);
        }
        true
    }

    /// Counts `bytes` against the quota, or `None` if they would overshoot
    /// it. They are given back when the reservation drops unless kept.
    fn reserve(&self, bytes: u64) -> Option<Reserved<'_>> {
        let quota = self.limits.quota;
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| u.checked_add(bytes).filter(|&t| t <= quota))
            .ok()?;
        Some(Reserved { used: &self.used, bytes })
    }

    fn quota_full(&self) -> UploadState {
        UploadState::Refused(self.quota_full_reason())
    }

    fn quota_full_reason(&self) -> String {
        format!(
            "this server's evidence quota of {} bytes is full (--evidence-quota): reports still go through",
            self.limits.quota
        )
    }

    /// Answers a `Chunk`: writes `data` at `offset` if that is where the
    /// held bytes end, syncs it, and says where the upload now stands.
    pub fn chunk(
        &self,
        uploads: &mut Uploads,
        sha256: &Bytes32,
        offset: u64,
        data: &[u8],
    ) -> Result<UploadState, EvidenceError> {
        let Some(&size) = uploads.claims.get(sha256) else {
            if self.holds(sha256) {
                return Ok(UploadState::Held);
            }
            return Ok(UploadState::Refused("offer the file before sending its chunks".into()));
        };
        if data.len() > MAX_CHUNK {
            return Ok(UploadState::Refused(format!("a chunk carries at most {MAX_CHUNK} bytes")));
        }
        let end = offset.checked_add(data.len() as u64);
        if end.is_none_or(|end| end > size) {
            return Ok(UploadState::Refused(format!("a chunk beyond the file's signed length of {size} bytes")));
        }
        let partial = self.partial_path(sha256);
        let n = data.len() as u64;
        // Counted against the quota before they are written, in one step,
        // so sessions racing at the edge cannot overshoot it (and a refused
        // chunk leaves no empty file behind).
        let Some(reserved) = self.reserve(n) else {
            return Ok(self.quota_full());
        };
        let mut f = OpenOptions::new().create(true).append(true).open(&partial).map_err(io_err("open", &partial))?;
        let held = f.metadata().map_err(io_err("read", &partial))?.len();
        if offset != held {
            return Ok(UploadState::From(held));
        }
        // On an error the upload resumes from what the file holds; a
        // restart counts those bytes again.
        f.write_all(data).map_err(io_err("write", &partial))?;
        f.sync_data().map_err(io_err("sync", &partial))?;
        reserved.keep();
        let now = held + n;
        if now < size {
            return Ok(UploadState::From(now));
        }
        drop(f);
        self.complete(uploads, sha256, size)
    }

    /// Every byte is there: hash the partial file and keep it only if it
    /// matches.
    fn complete(&self, uploads: &mut Uploads, sha256: &Bytes32, size: u64) -> Result<UploadState, EvidenceError> {
        let partial = self.partial_path(sha256);
        if size == 0 {
            File::create(&partial).map_err(io_err("create", &partial))?;
        }
        let got = hash_file(&partial)?;
        uploads.release(self, sha256);
        if &got != sha256 {
            self.discard(&partial, size)?;
            self.note_refused(sha256, "its bytes hash to another SHA-256 than the one signed")?;
            tracing::warn!(sha256 = %hex::encode(sha256), size, "evidence discarded: its bytes do not match the signed hash");
            return Ok(UploadState::Mismatch);
        }
        self.place(&partial, sha256)?;
        tracing::info!(sha256 = %hex::encode(sha256), size, "evidence held");
        Ok(UploadState::Held)
    }

    /// Moves a checked file into place (atomically) and syncs the directory.
    fn place(&self, from: &Path, sha256: &Bytes32) -> Result<(), EvidenceError> {
        let to = self.held_path(sha256);
        File::open(from).and_then(|f| f.sync_all()).map_err(io_err("sync", from))?;
        std::fs::rename(from, &to).map_err(io_err("move into place", &to))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io_err("sync", &self.dir))?;
        Ok(())
    }

    fn discard(&self, path: &Path, len: u64) -> Result<(), EvidenceError> {
        match std::fs::remove_file(path) {
            Ok(()) => {
                self.used.fetch_sub(len.min(self.used.load(Ordering::Relaxed)), Ordering::Relaxed);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("remove", path)(e)),
        }
    }

    fn note_refused(&self, sha256: &Bytes32, why: &str) -> Result<(), EvidenceError> {
        let path = self.refused_log();
        let line =
            format!("{} {} {why}\n", truce_shared::time::format_ms(truce_shared::time::now_ms()), hex::encode(sha256));
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(io_err("write", &path))
    }

    fn refused_log(&self) -> PathBuf {
        self.dir.join("refused.log")
    }

    /// Whether a file may be taken at all, for an upload or an import:
    /// `Some` answer if not (held already, or refused with the reason).
    /// `named` is the sizes stored reports give this hash.
    fn admit(&self, sha256: &Bytes32, size: u64, named: &[u64]) -> Option<NotTaken> {
        if self.holds(sha256) {
            return Some(NotTaken::Held);
        }
        if named.is_empty() {
            return Some(NotTaken::Refused("no report stored here names this file".into()));
        }
        if !named.contains(&size) {
            return Some(NotTaken::Refused(format!(
                "the reports stored here give this file another size ({} bytes)",
                named[0]
            )));
        }
        if size > self.limits.max_size {
            return Some(NotTaken::Refused(format!(
                "the file is {size} bytes, over this server's limit of {} bytes (--max-evidence-size)",
                self.limits.max_size
            )));
        }
        None
    }

    /// Starts importing a file from a bundle's pieces (`named` as for
    /// [`Evidence::offer`]): `Err` with the answer if it is not to be
    /// taken. Import may run beside a live server: it writes a file of its
    /// own and renames it into place, so it never meets an upload's
    /// partial file.
    pub fn import(
        &self,
        sha256: &Bytes32,
        size: u64,
        named: &[u64],
    ) -> Result<Result<Incoming<'_>, NotTaken>, EvidenceError> {
        if let Some(answer) = self.admit(sha256, size, named) {
            return Ok(Err(answer));
        }
        if self.used.load(Ordering::Relaxed).saturating_add(size) > self.limits.quota {
            return Ok(Err(NotTaken::Refused(self.quota_full_reason())));
        }
        let tmp = tempfile::Builder::new()
            .prefix(".import-")
            .tempfile_in(&self.partial)
            .map_err(io_err("create a file in", &self.partial))?;
        Ok(Ok(Incoming { evidence: self, file: EvidenceFile::new(*sha256, size), tmp }))
    }

    /// Removes partial files not written for longer than the TTL (except
    /// those being uploaded now). Returns how many.
    pub fn sweep(&self) -> Result<u64, EvidenceError> {
        let now = SystemTime::now();
        let mut removed = 0;
        let rd = std::fs::read_dir(&self.partial).map_err(io_err("read", &self.partial))?;
        for ent in rd.flatten() {
            let path = ent.path();
            let Ok(meta) = ent.metadata() else { continue };
            let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
            if age < self.limits.partial_ttl {
                continue;
            }
            let busy =
                hex_name(&path).is_some_and(|h| self.uploading.lock().unwrap_or_else(|p| p.into_inner()).contains(&h));
            if !busy {
                self.discard(&path, meta.len())?;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                ttl_s = self.limits.partial_ttl.as_secs(),
                "partial evidence files abandoned too long removed"
            );
        }
        Ok(removed)
    }

    /// Counts held, partial and refused files.
    pub fn counts(&self) -> Result<EvidenceCounts, EvidenceError> {
        let mut c = EvidenceCounts::default();
        for (dir, partial) in [(&self.dir, false), (&self.partial, true)] {
            let rd = std::fs::read_dir(dir).map_err(io_err("read", dir))?;
            for ent in rd.flatten() {
                let path = ent.path();
                if hex_name(&path).is_none() && !(partial && file_name(&path).starts_with(".import-")) {
                    continue;
                }
                let Ok(meta) = ent.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                if partial {
                    c.partial += 1;
                    c.partial_bytes += meta.len();
                } else {
                    c.held += 1;
                    c.held_bytes += meta.len();
                }
            }
        }
        c.refused = match std::fs::read_to_string(self.refused_log()) {
            Ok(s) => s.lines().count() as u64,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err("read", &self.refused_log())(e)),
        };
        Ok(c)
    }
}

/// Bytes counted against the quota ahead of a write ([`Evidence::reserve`]):
/// given back on drop, unless kept because they were written.
struct Reserved<'a> {
    used: &'a AtomicU64,
    bytes: u64,
}

impl Reserved<'_> {
    /// The bytes are on disk: they stay counted.
    fn keep(mut self) {
        self.bytes = 0;
    }
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::SeqCst);
    }
}

/// A file being imported: its pieces so far, in a file of its own.
/// Dropped unfinished, the file is removed.
pub struct Incoming<'a> {
    evidence: &'a Evidence,
    file: EvidenceFile,
    tmp: tempfile::NamedTempFile,
}

/// Why a file is not to be taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotTaken {
    /// The server holds it already.
    Held,
    /// Refused, with the reason.
    Refused(String),
}

impl From<NotTaken> for UploadState {
    fn from(n: NotTaken) -> UploadState {
        match n {
            NotTaken::Held => UploadState::Held,
            NotTaken::Refused(why) => UploadState::Refused(why),
        }
    }
}

/// What became of an imported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// Its bytes hashed to the signed SHA-256: held now.
    Held,
    /// Every byte came but they hash to something else: discarded and noted.
    Mismatch,
    /// The bundle ended (or the file's pieces did) short of its size.
    CutShort,
}

impl Incoming<'_> {
    /// The file's size, as its pieces claim it.
    pub fn size(&self) -> u64 {
        self.file.size()
    }

    /// Writes the next piece, if it continues the file.
    pub fn take(&mut self, size: u64, offset: u64, data: &[u8]) -> Result<Result<(), PieceError>, EvidenceError> {
        if let Err(e) = self.file.take(size, offset, data) {
            return Ok(Err(e));
        }
        self.tmp.write_all(data).map_err(io_err("write", &self.evidence.partial))?;
        Ok(Ok(()))
    }

    /// Ends the file: held if whole and matching, else discarded.
    pub fn finish(self) -> Result<Imported, EvidenceError> {
        let Incoming { evidence, file, tmp } = self;
        let sha256 = *file.sha256();
        let size = file.size();
        if !file.is_complete() {
            return Ok(Imported::CutShort);
        }
        if !file.matches() {
            evidence.note_refused(&sha256, "imported bytes hash to another SHA-256 than the one signed")?;
            tracing::warn!(sha256 = %hex::encode(sha256), size, "imported evidence discarded: its bytes do not match the signed hash");
            return Ok(Imported::Mismatch);
        }
        let (_, path) = tmp.keep().map_err(|e| io_err("keep", &evidence.partial)(e.error))?;
        if evidence.holds(&sha256) {
            // Held meanwhile (an upload finished first): the same bytes.
            let _ = std::fs::remove_file(&path);
            return Ok(Imported::Held);
        }
        evidence.place(&path, &sha256)?;
        evidence.used.fetch_add(size, Ordering::Relaxed);
        tracing::info!(sha256 = %hex::encode(sha256), size, "evidence held (imported)");
        Ok(Imported::Held)
    }
}

/// The files one session has claimed; dropping it releases them.
#[derive(Debug, Default)]
pub struct Uploads {
    claims: std::collections::HashMap<Bytes32, u64>,
    evidence: Option<Arc<Evidence>>,
}

impl Uploads {
    /// No claims yet, on `evidence`.
    pub fn new(evidence: Arc<Evidence>) -> Uploads {
        Uploads { claims: Default::default(), evidence: Some(evidence) }
    }

    fn release(&mut self, evidence: &Evidence, sha256: &Bytes32) {
        if self.claims.remove(sha256).is_some() {
            evidence.uploading.lock().unwrap_or_else(|p| p.into_inner()).remove(sha256);
        }
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        if let Some(e) = &self.evidence {
            let mut busy = e.uploading.lock().unwrap_or_else(|p| p.into_inner());
            for sha in self.claims.keys() {
                busy.remove(sha);
            }
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The hash a file under `evidence/` is named by, if its name is one.
fn hex_name(path: &Path) -> Option<Bytes32> {
    let name = file_name(path);
    let mut out = [0u8; 32];
    hex::decode_to_slice(name.as_bytes(), &mut out).ok()?;
    Some(out)
}

/// The SHA-256 of a file's content.
pub fn hash_file(path: &Path) -> Result<Bytes32, EvidenceError> {
    let mut f = File::open(path).map_err(io_err("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", path)(e)),
        }
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> Bytes32 {
        Sha256::digest(data).into()
    }

    fn open(d: &Path, limits: EvidenceLimits) -> Arc<Evidence> {
        Arc::new(Evidence::open(&d.join("evidence"), limits).unwrap())
    }

    #[test]
    fn an_upload_resumes_at_the_durable_offset_and_only_a_matching_file_is_held() {
        let d = tempfile::tempdir().unwrap();
        let ev = open(d.path(), EvidenceLimits::default());
        let data = vec![7u8; 10_000];
        let h = sha(&data);
        let mut s1 = Uploads::new(ev.clone());
        assert_eq!(
            ev.offer(&mut s1, &h, 10_000, &[]).unwrap(),
            UploadState::Refused("no report stored here names this file".into())
        );
        assert_eq!(ev.offer(&mut s1, &h, 10_000, &[10_000]).unwrap(), UploadState::From(0));
        // A second session is turned away while the first holds the file.
        let mut s2 = Uploads::new(ev.clone());
        assert!(
            matches!(ev.offer(&mut s2, &h, 10_000, &[10_000]).unwrap(), UploadState::Refused(r) if r.contains("another session"))
        );
        assert_eq!(ev.chunk(&mut s1, &h, 0, &data[..4000]).unwrap(), UploadState::From(4000));
        // A chunk at the wrong offset is not written.
        assert_eq!(ev.chunk(&mut s1, &h, 8000, &data[8000..]).unwrap(), UploadState::From(4000));
        assert!(
            matches!(ev.chunk(&mut s1, &h, 4000, &[0; 6001]).unwrap(), UploadState::Refused(r) if r.contains("beyond"))
        );
        drop(s1); // the link is cut
        assert_eq!(ev.offer(&mut s2, &h, 10_000, &[10_000]).unwrap(), UploadState::From(4000));
        assert_eq!(ev.chunk(&mut s2, &h, 4000, &data[4000..]).unwrap(), UploadState::Held);
        assert_eq!(std::fs::read(ev.held_path(&h)).unwrap(), data);
        let mut s3 = Uploads::new(ev.clone());
        assert_eq!(ev.offer(&mut s3, &h, 10_000, &[10_000]).unwrap(), UploadState::Held);
        let c = ev.counts().unwrap();
        assert_eq!((c.held, c.held_bytes, c.partial, c.refused), (1, 10_000, 0, 0));
    }

    #[test]
    fn bytes_that_do_not_match_are_discarded_and_counted() {
        let d = tempfile::tempdir().unwrap();
        let ev = open(d.path(), EvidenceLimits::default());
        let h = sha(b"the real photo");
        let mut s = Uploads::new(ev.clone());
        assert_eq!(ev.offer(&mut s, &h, 14, &[14]).unwrap(), UploadState::From(0));
        assert_eq!(ev.chunk(&mut s, &h, 0, b"a forged photo").unwrap(), UploadState::Mismatch);
        assert!(!ev.holds(&h));
        assert_eq!(ev.offer(&mut s, &h, 14, &[14]).unwrap(), UploadState::From(0));
        let c = ev.counts().unwrap();
        assert_eq!((c.held, c.partial, c.refused), (0, 0, 1));
        // An empty file is held at once if it is the empty file.
        let empty = sha(b"");
        assert_eq!(ev.offer(&mut s, &empty, 0, &[0]).unwrap(), UploadState::Held);
    }

    #[test]
    fn size_limit_and_quota_are_refused_at_their_edge() {
        let d = tempfile::tempdir().unwrap();
        let limits = EvidenceLimits { max_size: 100, quota: 150, ..Default::default() };
        let ev = open(d.path(), limits);
        let a = vec![1u8; 100];
        let mut s = Uploads::new(ev.clone());
        assert!(
            matches!(ev.offer(&mut s, &sha(&[1u8; 101]), 101, &[101]).unwrap(), UploadState::Refused(r) if r.contains("--max-evidence-size"))
        );
        assert_eq!(ev.offer(&mut s, &sha(&a), 100, &[100]).unwrap(), UploadState::From(0));
        assert_eq!(ev.chunk(&mut s, &sha(&a), 0, &a).unwrap(), UploadState::Held);
        let b = vec![2u8; 50];
        assert_eq!(ev.offer(&mut s, &sha(&b), 50, &[50]).unwrap(), UploadState::From(0));
        let c = vec![3u8; 51];
        assert!(
            matches!(ev.offer(&mut s, &sha(&c), 51, &[51]).unwrap(), UploadState::Refused(r) if r.contains("quota"))
        );
        // Two uploads that each fit when offered: partial bytes count, so
        // the chunk that would pass the quota is refused, and the one that
        // reaches it exactly is taken.
        let e = vec![4u8; 30];
        assert_eq!(ev.offer(&mut s, &sha(&e), 30, &[30]).unwrap(), UploadState::From(0));
        assert_eq!(ev.chunk(&mut s, &sha(&b), 0, &b[..30]).unwrap(), UploadState::From(30));
        assert!(
            matches!(ev.chunk(&mut s, &sha(&e), 0, &e).unwrap(), UploadState::Refused(r) if r.contains("quota")),
            "130 + 30 is over 150"
        );
        assert_eq!(ev.chunk(&mut s, &sha(&b), 30, &b[30..]).unwrap(), UploadState::Held);
        let counts = ev.counts().unwrap();
        // The refused chunk left no empty partial file behind.
        assert_eq!((counts.held, counts.held_bytes, counts.partial, counts.partial_bytes), (2, 150, 0, 0));
        assert!(
            matches!(ev.offer(&mut s, &sha(&[9]), 1, &[1]).unwrap(), UploadState::Refused(r) if r.contains("quota")),
            "full at exactly the quota"
        );
    }

    #[test]
    fn a_whole_partial_file_that_does_not_match_is_discarded_at_the_offer_and_the_upload_starts_over() {
        // A server killed after the last chunk of forged bytes was written,
        // before their hash was checked: the next Offer checks them.
        let d = tempfile::tempdir().unwrap();
        let data = b"the real photo".to_vec();
        let h = sha(&data);
        std::fs::create_dir_all(d.path().join("evidence").join("partial")).unwrap();
        std::fs::write(d.path().join("evidence").join("partial").join(hex::encode(h)), b"a forged photo").unwrap();
        let ev = open(d.path(), EvidenceLimits::default());
        let mut s = Uploads::new(ev.clone());
        assert_eq!(ev.offer(&mut s, &h, 14, &[14]).unwrap(), UploadState::From(0), "an Offer is never Mismatch");
        let c = ev.counts().unwrap();
        assert_eq!((c.held, c.partial, c.refused), (0, 0, 1));
        // Still claimed by this session.
        let mut other = Uploads::new(ev.clone());
        assert!(
            matches!(ev.offer(&mut other, &h, 14, &[14]).unwrap(), UploadState::Refused(r) if r.contains("another session"))
        );
        assert_eq!(ev.chunk(&mut s, &h, 0, &data).unwrap(), UploadState::Held);
        // A report may sign 0 bytes with another file's hash; no upload can match it.
        let other = sha(b"not empty");
        assert!(matches!(ev.offer(&mut s, &other, 0, &[0]).unwrap(), UploadState::Refused(r) if r.contains("0 bytes")));
        assert_eq!(ev.counts().unwrap().refused, 1);
    }

    #[test]
    fn abandoned_partial_files_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let limits = EvidenceLimits { partial_ttl: Duration::ZERO, ..Default::default() };
        let ev = open(d.path(), limits);
        let data = [5u8; 10];
        let mut s = Uploads::new(ev.clone());
        ev.offer(&mut s, &sha(&data), 10, &[10]).unwrap();
        ev.chunk(&mut s, &sha(&data), 0, &data[..5]).unwrap();
        assert_eq!(ev.sweep().unwrap(), 0, "a file being uploaded stays");
        drop(s);
        assert_eq!(ev.sweep().unwrap(), 1);
        assert_eq!(ev.counts().unwrap().partial, 0);
    }
}
