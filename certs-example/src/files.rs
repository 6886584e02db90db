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
//!
//! The steps themselves are `truce_shared::fs`'s, the same the agent and the
//! server use; this file adds the PKI's rules (which files are secret, what
//! may be replaced) and its error wording.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use truce_shared::fs::{self as shared_fs, Access, ExistingDir, FsError};

use crate::error::Error;

/// A failed step of `truce_shared::fs`, as this crate words it.
fn fs_err(e: FsError) -> Error {
    Error::io(e.step.verb(), e.path, e.source)
}

/// Creates `dir` (and its parents) with mode 0700 if it does not exist yet.
/// An existing directory is used as it is (it may be the current directory).
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    shared_fs::create_private_dir(dir, ExistingDir::Leave).map_err(fs_err)
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
    create_new(path, contents, Access::Private, hint)
}

/// Creates a certificate file with mode 0644; fails if it exists.
pub(crate) fn create_public(path: &Path, contents: &str, hint: &'static str) -> Result<(), Error> {
    create_new(path, contents, Access::Public, hint)
}

/// Creates `path` with `access`, writes `contents`, syncs it and its directory.
fn create_new(path: &Path, contents: &str, access: Access, hint: &'static str) -> Result<(), Error> {
    shared_fs::write_new(path, contents.as_bytes(), access).map_err(|e| match e.already_exists() {
        true => Error::AlreadyExists { path: path.to_owned(), hint },
        false => fs_err(e),
    })
}

/// Replaces `path` (0644) atomically with `contents`: a reader sees the old
/// file or the new one, never a mix.
pub(crate) fn replace_public(path: &Path, contents: &str) -> Result<(), Error> {
    shared_fs::write_atomic(path, contents.as_bytes(), Access::Public).map_err(fs_err)
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
