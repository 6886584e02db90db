//! Evidence files for a report: checked before anything is copied, then
//! hashed while they are sealed into the data directory, so the hash signed
//! is the hash of the copy kept, whatever happens to the original later.

use std::fs::File;
use std::path::Path;

use truce_shared::fs::{self, ExistingDir};
use truce_shared::Attachment;

use crate::error::{AgentError, Result};
use crate::paths::DataDir;
use crate::vault::DataKey;

/// The media type for a file name, from its extension.
pub fn media_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "tif" | "tiff" => "image/tiff",
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "wav" => "audio/wav",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "pdf" => "application/pdf",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "geojson" => "application/geo+json",
        "kml" => "application/vnd.google-earth.kml+xml",
        "gpx" => "application/gpx+xml",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// An attachment sealed into the data dir under a temporary name, hashed,
/// not yet given its final name. Dropping it removes the copy.
pub struct Staged {
    temp: tempfile::NamedTempFile,
    name: String,
    /// What the report will say about the file.
    pub attachment: Attachment,
}

/// Checks that an attachment path is a readable regular file; used before
/// anything is copied so a typo costs nothing.
pub fn check_attachment(path: &Path) -> Result<()> {
    let fail = |message: &str| AgentError::Attachment { path: path.to_path_buf(), message: message.to_string() };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(fail("not a regular file: attach files one by one")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(fail("no such file: check the path")),
        Err(e) => Err(fail(&format!("cannot read it ({e})"))),
    }
}

/// Hashes `path` while sealing a copy of it into the attachments directory
/// (see [`crate::vault`]): the clear bytes never reach the data dir.
pub fn stage_attachment(dir: &DataDir, key: &DataKey, path: &Path) -> Result<Staged> {
    let fail = |message: String| AgentError::Attachment { path: path.to_path_buf(), message };
    check_attachment(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut src = File::open(path).map_err(|e| fail(format!("cannot open it ({e})")))?;
    let size = src.metadata().map_err(|e| fail(format!("cannot read it ({e})")))?.len();
    let adir = dir.attachments_dir();
    fs::create_private_dir(&adir, ExistingDir::Tighten)?;
    let mut temp = tempfile::Builder::new()
        .prefix(".staging-")
        .tempfile_in(&adir)
        .map_err(|e| AgentError::io("cannot create a file in", &adir, e))?;
    let on_read = |e: std::io::Error| fail(format!("cannot read it ({e})"));
    let on_write = |e| AgentError::io("cannot write a copy in", &adir, e);
    let sha256 = {
        let mut w = std::io::BufWriter::new(temp.as_file_mut());
        let r = key.seal_file(&mut std::io::BufReader::new(&mut src), size, &mut w, &on_read, &on_write)?;
        w.into_inner().map_err(|e| on_write(e.into_error()))?;
        r
    };
    temp.as_file().sync_all().map_err(on_write)?;
    let attachment = Attachment { media_type: media_type(&name).to_string(), name, size, sha256 };
    Ok(Staged { temp, name: key.file_name(&sha256), attachment })
}

impl Staged {
    /// Gives the sealed copy its final, keyed name and returns it. An
    /// existing file of that name holds the same content (same hash), so
    /// it is kept.
    pub fn persist(self, dir: &DataDir) -> Result<String> {
        let dest = dir.attachment(&self.name);
        match self.temp.persist_noclobber(&dest) {
            Ok(_) => Ok(self.name),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(self.name),
            Err(e) => Err(AgentError::io("cannot store attachment", &dest, e.error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_by_extension() {
        assert_eq!(media_type("IMG_0001.JPG"), "image/jpeg");
        assert_eq!(media_type("note"), "application/octet-stream");
        assert_eq!(media_type("clip.mov"), "video/quicktime");
    }

    #[test]
    fn staging_hashes_the_copy_and_dropping_removes_it() {
        use sha2::{Digest, Sha256};
        let d = tempfile::tempdir().unwrap();
        let dir = DataDir::new(d.path());
        let key = DataKey::derive(&[1; 32]);
        let src = d.path().join("photo.jpg");
        std::fs::write(&src, b"evidence").unwrap();
        let staged = stage_attachment(&dir, &key, &src).unwrap();
        assert_eq!(staged.attachment.sha256, <[u8; 32]>::from(Sha256::digest(b"evidence")));
        assert_eq!(staged.attachment.size, 8);
        assert_eq!(staged.attachment.media_type, "image/jpeg");
        drop(staged);
        assert_eq!(std::fs::read_dir(dir.attachments_dir()).unwrap().count(), 0);
        let staged = stage_attachment(&dir, &key, &src).unwrap();
        let sha = staged.attachment.sha256;
        let name = staged.persist(&dir).unwrap();
        assert_eq!(name, key.file_name(&sha));
        std::fs::write(&src, b"edited later").unwrap();
        // The copy is sealed: not the clear bytes, but they come back out.
        let stored = std::fs::read(dir.attachment(&name)).unwrap();
        assert!(!stored.windows(8).any(|w| w == b"evidence"));
        let mut back = Vec::new();
        key.open_file(&mut &stored[..], &mut back, &dir.attachment(&name)).unwrap();
        assert_eq!(back, b"evidence");
        let e = stage_attachment(&dir, &key, &d.path().join("missing.jpg")).err().unwrap().to_string();
        assert!(e.contains("no such file"), "{e}");
    }
}
