//! Reading and writing the PKI's files, with the right modes and no overwrites.
//!
//! Promises:
//! - a private key file is created with mode 0600 by `open(2)` itself, never
//!   chmod-ed afterwards, so it is not readable by others for even an instant;
//! - keys and certificates are created with `create_new`: an existing file is
//!   never overwritten, even by a race between two runs;
//! - the CRL, the one file that is replaced, is replaced atomically (write a
//!   temporary file, sync, rename), so a server reading it never sees half;
//! - everything written is synced to disk before the command reports success.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// Mode of private key files: owner read/write only.
const SECRET_MODE: u32 = 0o600;
/// Mode of certificates and the CRL: public by nature.
const PUBLIC_MODE: u32 = 0o644;
/// Mode of a PKI directory this crate creates: it holds the CA key.
const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and its parents) with mode 0700 if it does not exist yet.
/// An existing directory is used as it is.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(|e| Error::io("create directory", dir, e))
}

/// Fails with [`Error::AlreadyExists`] if any of `paths` exists (even as a
/// dangling symlink). Checked before anything is made, so a refused command
/// leaves the directory exactly as it was.
pub(crate) fn refuse_existing(paths: &[PathBuf], hint: &'static str) -> Result<(), Error> {
    for path in paths {
        match fs::symlink_metadata(path) {
            Ok(_) => return Err(Error::AlreadyExists { path: path.clone(), hint }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("inspect", path, e)),
        }
    }
    Ok(())
}

/// Creates a private key file with mode 0600; fails if it exists.
pub(crate) fn create_secret(path: &Path, contents: &str, hint: &'static str) -> Result<(), Error> {
    create_new(path, contents, SECRET_MODE, hint)
}

/// Creates a certificate file with mode 0644; fails if it exists.
pub(crate) fn create_public(path: &Path, contents: &str, hint: &'static str) -> Result<(), Error> {
    create_new(path, contents, PUBLIC_MODE, hint)
}

/// Creates `path` with `mode`, writes `contents` and syncs.
fn create_new(path: &Path, contents: &str, mode: u32, hint: &'static str) -> Result<(), Error> {
    let file = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => Error::AlreadyExists { path: path.to_owned(), hint },
        _ => Error::io("create", path, e),
    })?;
    write_and_sync(file, path, contents)
}

/// Replaces `path` (0644) atomically with `contents`: a reader sees the old
/// file or the new one, never a mix.
pub(crate) fn replace_public(path: &Path, contents: &str) -> Result<(), Error> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PUBLIC_MODE)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    write_and_sync(file, &tmp, contents)?;
    fs::rename(&tmp, path).map_err(|e| Error::io("replace", path, e))?;
    sync_parent(path)
}

/// Reads a text file; a missing file is `Err(NotFound)` for the caller to name.
pub(crate) fn read_text(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

/// Whether `path` exists (following symlinks); errors other than "not there"
/// count as existing so that the caller goes on to report them on reading.
pub(crate) fn exists(path: &Path) -> bool {
    !matches!(fs::metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
}

/// Writes everything and syncs the file, then its directory entry.
fn write_and_sync(mut file: File, path: &Path, contents: &str) -> Result<(), Error> {
    file.write_all(contents.as_bytes()).and_then(|()| file.sync_all()).map_err(|e| Error::io("write", path, e))?;
    sync_parent(path)
}

/// Syncs the directory holding `path`, so a new or renamed entry survives a
/// power cut.
fn sync_parent(path: &Path) -> Result<(), Error> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent).and_then(|dir| dir.sync_all()).map_err(|e| Error::io("sync directory", parent, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
    }

    #[test]
    fn secrets_are_0600_and_never_overwritten() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tmp", e))?;
        let key = dir.path().join("k.key");
        create_secret(&key, "secret", "test")?;
        assert_eq!(mode(&key), 0o600);
        let again = create_secret(&key, "other", "test");
        assert!(matches!(again, Err(Error::AlreadyExists { .. })));
        assert_eq!(read_text(&key)?, "secret");
        Ok(())
    }

    #[test]
    fn replace_swaps_the_whole_file() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tmp", e))?;
        let crl = dir.path().join("crl.pem");
        create_public(&crl, "one", "test")?;
        replace_public(&crl, "two")?;
        assert_eq!(read_text(&crl)?, "two");
        assert!(!dir.path().join("crl.pem.tmp").exists());
        Ok(())
    }
}
