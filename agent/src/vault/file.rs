//! Sealed evidence files: STREAM in chunks under the file subkey, padded
//! so a sealed copy's size does not name a known photo.

use super::*;

/// Plaintext bytes per chunk of a sealed file.
pub const FILE_CHUNK: usize = 64 * 1024;
/// The first bytes of a sealed file.
pub const FILE_MAGIC: &[u8; 8] = b"TRUCEF01";

impl DataKey {
    /// The name under `attachments/` of the sealed copy of a file with
    /// this SHA-256.
    pub fn file_name(&self, sha256: &Bytes32) -> String {
        let h: [u8; 32] = Sha256::new()
            .chain_update(b"truce-agent file name v1")
            .chain_update(self.name)
            .chain_update(sha256)
            .finalize()
            .into();
        hex::encode(h)
    }

    /// Encrypts `src`, which holds `len` bytes, into `dst` (see the module
    /// docs) and returns the plaintext's SHA-256. A source that turns out
    /// longer or shorter than `len` (changed while read) is refused.
    pub fn seal_file(
        &self,
        src: &mut dyn Read,
        len: u64,
        dst: &mut dyn Write,
        on_read: &dyn Fn(std::io::Error) -> AgentError,
        on_write: &dyn Fn(std::io::Error) -> AgentError,
    ) -> Result<Bytes32> {
        let changed = || on_read(std::io::Error::other("the file changed while it was being read: try again"));
        let failed = || AgentError::Corrupt("sealing a file failed".into());
        let mut prefix = [0u8; STREAM_NONCE];
        rand::rngs::OsRng.fill_bytes(&mut prefix);
        dst.write_all(FILE_MAGIC).and_then(|()| dst.write_all(&prefix)).map_err(on_write)?;
        // `encrypt_last` consumes the encryptor: it is taken out for the last chunk.
        let mut enc = Some(EncryptorBE32::from_aead(XChaCha20Poly1305::new((&self.file).into()), (&prefix).into()));
        let total = padded_len(len);
        let mut hasher = Sha256::new();
        let mut buf = Zeroizing::new(vec![0u8; FILE_CHUNK]);
        let (mut emitted, mut read) = (0u64, 0u64);
        while emitted < total {
            // Fill one chunk: the length header first, then file bytes, then zeros.
            let mut at = 0;
            if emitted == 0 {
                buf[..8].copy_from_slice(&len.to_le_bytes());
                at = 8;
            }
            let want = (len - read).min((FILE_CHUNK - at) as u64) as usize;
            let got = read_full(src, &mut buf[at..at + want]).map_err(on_read)?;
            if got != want {
                return Err(changed());
            }
            hasher.update(&buf[at..at + got]);
            read += got as u64;
            buf[at + got..].fill(0);
            emitted += FILE_CHUNK as u64;
            let ct = if emitted >= total {
                enc.take().ok_or_else(failed)?.encrypt_last(&buf[..])
            } else {
                enc.as_mut().ok_or_else(failed)?.encrypt_next(&buf[..])
            };
            dst.write_all(&ct.map_err(|_| failed())?).map_err(on_write)?;
            if emitted >= total {
                break;
            }
        }
        // Nothing may follow what was measured.
        if read_full(src, &mut [0u8; 1]).map_err(on_read)? != 0 {
            return Err(changed());
        }
        Ok(hasher.finalize().into())
    }

    /// Decrypts a sealed file into `dst`, returning the plaintext's SHA-256
    /// and length. A damaged, truncated or foreign file is an error.
    pub fn open_file(&self, src: &mut dyn Read, dst: &mut dyn Write, path: &Path) -> Result<(Bytes32, u64)> {
        let mut reader = self.file_reader(src, path)?;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(data) = reader.next_chunk()? {
            hasher.update(data);
            dst.write_all(data).map_err(|e| AgentError::io("cannot write what was read from", path, e))?;
            written += data.len() as u64;
        }
        Ok((hasher.finalize().into(), written))
    }

    /// Opens a sealed file for reading in order, a chunk at a time
    /// ([`FileReader`]): how evidence is uploaded without its clear bytes
    /// ever touching the disk.
    pub fn file_reader<'a>(&self, src: &'a mut dyn Read, path: &Path) -> Result<FileReader<'a>> {
        let damaged = damaged(path);
        let mut head = [0u8; 8 + STREAM_NONCE];
        src.read_exact(&mut head).map_err(|_| damaged())?;
        if &head[..8] != FILE_MAGIC {
            return Err(damaged());
        }
        let prefix: [u8; STREAM_NONCE] = head[8..].try_into().map_err(|_| damaged())?;
        let dec = DecryptorBE32::from_aead(XChaCha20Poly1305::new((&self.file).into()), (&prefix).into());
        let mut next = vec![0u8; FILE_CHUNK + TAG];
        let next_filled = read_full(src, &mut next).map_err(|e| AgentError::io("cannot read", path, e))?;
        Ok(FileReader {
            src,
            path: path.to_path_buf(),
            dec: Some(dec),
            next,
            next_filled,
            plain: Zeroizing::new(Vec::new()),
            out: Zeroizing::new(Vec::new()),
            len: None,
            given: 0,
        })
    }
}

fn damaged(path: &Path) -> impl Fn() -> AgentError + '_ {
    move || AgentError::Corrupt(format!("the sealed file {} is damaged or not this laptop's", path.display()))
}

/// A sealed file being read in order: each chunk is authenticated before
/// any of its bytes are given out, and the end is checked (a truncated or
/// extended file is an error, never a shorter file).
pub struct FileReader<'a> {
    src: &'a mut dyn Read,
    path: std::path::PathBuf,
    dec: Option<DecryptorBE32<XChaCha20Poly1305>>,
    /// The next ciphertext chunk, read ahead to know which is the last.
    next: Vec<u8>,
    next_filled: usize,
    plain: Zeroizing<Vec<u8>>,
    /// The bytes last handed out.
    out: Zeroizing<Vec<u8>>,
    /// The file's length, from the first chunk's header.
    len: Option<u64>,
    given: u64,
}

impl FileReader<'_> {
    /// The clear file's length.
    pub fn file_len(&mut self) -> Result<u64> {
        if self.len.is_none() && self.dec.is_some() {
            // The first chunk carries the length: decrypt it now and keep
            // its bytes for the first `next_chunk`.
            self.decrypt_next()?;
        }
        self.len.ok_or_else(damaged(&self.path))
    }

    /// Skips the first `n` bytes (an upload resuming at an offset).
    pub fn skip(&mut self, mut n: u64) -> Result<()> {
        while n > 0 {
            let Some(data) = self.next_chunk()? else { return Err(damaged(&self.path)()) };
            let take = (data.len() as u64).min(n) as usize;
            n -= take as u64;
            if take < data.len() {
                self.plain = Zeroizing::new(data[take..].to_vec());
                return Ok(());
            }
        }
        Ok(())
    }

    /// The next bytes of the file (at most [`FILE_CHUNK`]), `None` at its
    /// end.
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>> {
        // Chunks of padding alone give nothing: read on to the next bytes.
        while self.plain.is_empty() && self.dec.is_some() {
            self.decrypt_next()?;
        }
        // Handed out from a buffer kept here, so it is wiped on drop.
        self.out = std::mem::replace(&mut self.plain, Zeroizing::new(Vec::new()));
        Ok(if self.out.is_empty() { None } else { Some(&self.out[..]) })
    }

    fn decrypt_next(&mut self) -> Result<()> {
        let damaged = damaged(&self.path);
        let filled = self.next_filled;
        let mut cur = std::mem::replace(&mut self.next, vec![0u8; FILE_CHUNK + TAG]);
        self.next_filled = if filled == FILE_CHUNK + TAG {
            read_full(self.src, &mut self.next).map_err(|e| AgentError::io("cannot read", &self.path, e))?
        } else {
            0
        };
        let last = self.next_filled == 0;
        let plain = Zeroizing::new(
            if last {
                self.dec.take().ok_or_else(&damaged)?.decrypt_last(&cur[..filled])
            } else {
                self.dec.as_mut().ok_or_else(&damaged)?.decrypt_next(&cur[..filled])
            }
            .map_err(|_| damaged())?,
        );
        cur.zeroize();
        let mut data = &plain[..];
        let total = match self.len {
            Some(l) => l,
            None => {
                let l = u64::from_le_bytes(data.get(..8).ok_or_else(&damaged)?.try_into().map_err(|_| damaged())?);
                data = &data[8..];
                self.len = Some(l);
                l
            }
        };
        let take = (total - self.given).min(data.len() as u64) as usize;
        if data[take..].iter().any(|&b| b != 0) {
            return Err(damaged());
        }
        self.given += take as u64;
        if last && self.given != total {
            return Err(damaged());
        }
        self.plain = Zeroizing::new(data[..take].to_vec());
        Ok(())
    }
}

/// The plaintext length a sealed file of `len` bytes is padded to: the
/// 8-byte length header and the file, rounded up by Padmé (which leaks at
/// most O(log log n) bits of the size) and then to whole chunks.
pub fn padded_len(len: u64) -> u64 {
    let l = len.saturating_add(8);
    let e = 63 - l.leading_zeros() as u64; // floor(log2 l)
    let s = if e == 0 { 0 } else { 64 - e.leading_zeros() as u64 }; // floor(log2 e) + 1
    let mask = (1u64 << e.saturating_sub(s)) - 1;
    let padme = l.saturating_add(mask) & !mask;
    let chunk = FILE_CHUNK as u64;
    padme.div_ceil(chunk).max(1).saturating_mul(chunk)
}

fn read_full(src: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
