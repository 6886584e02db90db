//! Files that survive a crash and secrets no one else can read: the one
//! atomic replace, the one private directory, the one secret file.
//!
//! Promises, on every platform:
//! - [`AtomicFile`] (and [`write_atomic`]) writes a temporary file created
//!   with `O_EXCL` in the destination's own directory (never through a
//!   planted file or link), fsyncs it, renames it over the destination and
//!   fsyncs the directory: a crash or a pulled USB stick leaves the old
//!   file or the new one, never a mix, and never a half file under the
//!   final name. Dropped before [`AtomicFile::commit`], it leaves nothing.
//! - [`Access::Private`] files are readable by their owner only from the
//!   first byte (0600 given to `open(2)` on unix, never chmod-ed after);
//!   [`Access::Public`] files are 0644 (certificates, CRLs).
//! - [`create_private_dir`] makes directories 0700 at creation.
//!
//! What differs between platforms lives only here, behind `cfg(unix)`:
//! Windows has no modes (a data dir under the user's profile inherits an
//! access list that admits only that user, the system and administrators)
//! and cannot open a directory to fsync it (NTFS journals the rename
//! itself), so there those steps do nothing.
//!
//! Errors name the step and the path ([`FsError`]), never the content.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Who may read a file this module creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The owner only (0600 on unix): keys, queues, reports.
    Private,
    /// Everyone may read, the owner writes (0644 on unix): certificates, CRLs.
    Public,
}

/// What to do with a directory [`create_private_dir`] finds already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingDir {
    /// Take read and write away from group and others: the directory will
    /// hold secrets (a data directory).
    Tighten,
    /// Use it as it is: the caller was given it (a `--out` that may be the
    /// current directory) and has no business changing its mode.
    Leave,
}

/// The step of a file operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsStep {
    /// Creating a directory.
    CreateDir,
    /// Reading a directory's mode.
    InspectDir,
    /// Taking permissions away from a directory.
    RestrictDir,
    /// Creating a new file.
    Create,
    /// Creating the temporary file in the destination's directory.
    CreateTemp,
    /// Writing, syncing or renaming into place.
    Write,
    /// Syncing a directory.
    SyncDir,
}

impl FsStep {
    /// What was being done, as "cannot …" wants it ("create directory").
    pub fn verb(self) -> &'static str {
        match self {
            FsStep::CreateDir => "create directory",
            FsStep::InspectDir => "read",
            FsStep::RestrictDir => "restrict permissions of",
            FsStep::Create => "create",
            FsStep::CreateTemp => "create a file in",
            FsStep::Write => "write",
            FsStep::SyncDir => "sync directory",
        }
    }

    /// The whole phrase, for error types that keep it as `&'static str`
    /// ("cannot create directory").
    pub fn cannot(self) -> &'static str {
        match self {
            FsStep::CreateDir => "cannot create directory",
            FsStep::InspectDir => "cannot read",
            FsStep::RestrictDir => "cannot restrict permissions of",
            FsStep::Create => "cannot create",
            FsStep::CreateTemp => "cannot create a file in",
            FsStep::Write => "cannot write",
            FsStep::SyncDir => "cannot sync directory",
        }
    }
}

/// A file operation failed: which step, on which path, and what the OS said.
#[derive(Debug, thiserror::Error)]
#[error("{} {}: {source}", step.cannot(), path.display())]
pub struct FsError {
    /// What was being done.
    pub step: FsStep,
    /// The file or directory.
    pub path: PathBuf,
    /// What the OS said (`AlreadyExists` for a file that must be new).
    #[source]
    pub source: io::Error,
}

impl FsError {
    fn new(step: FsStep, path: &Path, source: io::Error) -> FsError {
        FsError { step, path: path.to_path_buf(), source }
    }

    /// Whether it failed because something is already at the path.
    pub fn already_exists(&self) -> bool {
        self.source.kind() == io::ErrorKind::AlreadyExists
    }
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A file being written under a temporary name beside its destination;
/// [`AtomicFile::commit`] gives it the destination's name.
///
/// Write to it (wrap it in a `BufWriter` for many small writes), then
/// commit. Dropping it without committing removes the temporary file.
#[derive(Debug)]
pub struct AtomicFile {
    /// The temporary file; tempfile removes it when dropped uncommitted.
    temp: tempfile::NamedTempFile,
    /// The name it gets on commit.
    dest: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file (`.truce-XXXXXX.partial`, new, `O_EXCL`)
    /// in `dest`'s directory, with `access`.
    pub fn create(dest: &Path, access: Access) -> Result<AtomicFile, FsError> {
        let dir = parent_dir(dest);
        let mut builder = tempfile::Builder::new();
        builder.prefix(".truce-").suffix(".partial");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(mode(access)));
        }
        #[cfg(not(unix))]
        {
            let _ = access;
        }
        let temp = builder.tempfile_in(dir).map_err(|e| FsError::new(FsStep::CreateTemp, dir, e))?;
        Ok(AtomicFile { temp, dest: dest.to_path_buf() })
    }

    /// Syncs the file, renames it over the destination (replacing any file
    /// there) and syncs the directory.
    pub fn commit(self) -> Result<(), FsError> {
        self.finish(false)
    }

    /// As [`AtomicFile::commit`], but fails (with [`FsError::already_exists`])
    /// if the destination exists, leaving it alone: for files that must
    /// never be replaced, such as a keyring.
    pub fn commit_new(self) -> Result<(), FsError> {
        self.finish(true)
    }

    fn finish(self, new: bool) -> Result<(), FsError> {
        let AtomicFile { temp, dest } = self;
        let write_err = |e| FsError::new(FsStep::Write, &dest, e);
        temp.as_file().sync_all().map_err(write_err)?;
        if new {
            temp.persist_noclobber(&dest).map_err(|e| write_err(e.error))?;
        } else {
            temp.persist(&dest).map_err(|e| write_err(e.error))?;
        }
        sync_dir(parent_dir(&dest))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.temp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

/// Replaces `dest` with `data` all at once (see [`AtomicFile`]).
pub fn write_atomic(dest: &Path, data: &[u8], access: Access) -> Result<(), FsError> {
    let mut file = AtomicFile::create(dest, access)?;
    file.write_all(data).map_err(|e| FsError::new(FsStep::Write, dest, e))?;
    file.commit()
}

/// Opens a new file for writing with `access`; fails with
/// [`FsError::already_exists`] if anything is at `path`, so two runs racing
/// cannot both write it.
pub fn create_new(path: &Path, access: Access) -> Result<File, FsError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode(access));
    }
    #[cfg(not(unix))]
    {
        let _ = access;
    }
    options.open(path).map_err(|e| FsError::new(FsStep::Create, path, e))
}

/// Creates `path` with `access`, writes `data`, syncs it and its directory;
/// never overwrites (see [`create_new`]).
pub fn write_new(path: &Path, data: &[u8], access: Access) -> Result<(), FsError> {
    let mut file = create_new(path, access)?;
    file.write_all(data).and_then(|()| file.sync_all()).map_err(|e| FsError::new(FsStep::Write, path, e))?;
    sync_dir(parent_dir(path))
}

/// Creates `dir` (and missing parents) readable by its owner only (0700 on
/// unix, given at creation so the directory is never open to others), and
/// does with an existing one what `existing` says.
pub fn create_private_dir(dir: &Path, existing: ExistingDir) -> Result<(), FsError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| FsError::new(FsStep::CreateDir, dir, e))?;
        // `recursive` leaves an existing directory's mode alone.
        if existing == ExistingDir::Tighten {
            let meta = fs::metadata(dir).map_err(|e| FsError::new(FsStep::InspectDir, dir, e))?;
            if meta.permissions().mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| FsError::new(FsStep::RestrictDir, dir, e))?;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = existing;
        fs::create_dir_all(dir).map_err(|e| FsError::new(FsStep::CreateDir, dir, e))?;
    }
    Ok(())
}

/// Makes a rename or creation in `dir` durable: fsync of the directory on
/// unix. A filesystem that cannot sync a directory at all (`EINVAL`, as
/// some network and FUSE filesystems answer) has nothing more to offer and
/// is not an error. Windows cannot open a directory as a file without a
/// flag std does not set, and NTFS journals the rename, so there it does
/// nothing.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    #[cfg(unix)]
    {
        match File::open(dir).and_then(|d| d.sync_all()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidInput || e.kind() == io::ErrorKind::Unsupported => {}
            Err(e) => return Err(FsError::new(FsStep::SyncDir, dir, e)),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// The unix mode for `access`.
#[cfg(unix)]
fn mode(access: Access) -> u32 {
    match access {
        Access::Private => 0o600,
        Access::Public => 0o644,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[cfg(unix)]
    fn mode_of(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_atomic_replaces_the_whole_file_and_leaves_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        write_atomic(&p, b"one", Access::Private).unwrap();
        write_atomic(&p, b"two", Access::Private).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(t.path()), ["f"]);
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing_and_the_old_file_intact() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f");
        write_atomic(&p, b"old", Access::Private).unwrap();
        let mut f = AtomicFile::create(&p, Access::Private).unwrap();
        f.write_all(b"half").unwrap();
        drop(f);
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(names(t.path()), ["f"]);
    }

    #[test]
    fn commit_new_never_replaces() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("keyring");
        fs::write(&p, b"first").unwrap();
        let mut f = AtomicFile::create(&p, Access::Private).unwrap();
        f.write_all(b"second").unwrap();
        let e = f.commit_new().unwrap_err();
        assert!(e.already_exists(), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(names(t.path()), ["keyring"]);
    }

    #[test]
    fn write_new_refuses_an_existing_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("k");
        write_new(&p, b"secret", Access::Private).unwrap();
        let e = write_new(&p, b"other", Access::Private).unwrap_err();
        assert!(e.already_exists());
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        assert!(e.to_string().starts_with("cannot create "), "{e}");
    }

    #[test]
    fn errors_name_the_step_and_path_not_the_content() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("missing").join("f");
        let e = write_atomic(&p, b"secret content", Access::Private).unwrap_err();
        assert_eq!(e.step, FsStep::CreateTemp);
        let s = e.to_string();
        assert!(s.starts_with("cannot create a file in ") && !s.contains("secret"), "{s}");
    }

    #[cfg(unix)]
    #[test]
    fn modes_are_given_at_creation() {
        let t = tempfile::tempdir().unwrap();
        let private = t.path().join("p");
        let public = t.path().join("q");
        write_atomic(&private, b"x", Access::Private).unwrap();
        write_atomic(&public, b"x", Access::Public).unwrap();
        assert_eq!(mode_of(&private), 0o600);
        // 0644 less the umask, which never adds bits.
        assert_eq!(mode_of(&public) & !0o644, 0);
        assert_eq!(mode_of(&public) & 0o600, 0o600);
        let n = t.path().join("n");
        write_new(&n, b"x", Access::Private).unwrap();
        assert_eq!(mode_of(&n), 0o600);
    }

    #[cfg(unix)]
    #[test]
    fn private_dirs_are_0700_and_tightened_only_when_asked() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a").join("b");
        create_private_dir(&d, ExistingDir::Tighten).unwrap();
        assert_eq!(mode_of(&d), 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&d, ExistingDir::Leave).unwrap();
        assert_eq!(mode_of(&d), 0o755);
        create_private_dir(&d, ExistingDir::Tighten).unwrap();
        assert_eq!(mode_of(&d), 0o700);
    }
}
