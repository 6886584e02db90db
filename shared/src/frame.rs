//! Framing: a 4-byte big-endian length, then that many bytes.
//!
//! The same framing carries wire messages (over tokio streams) and the
//! reports of a bundle file (over `std::io`). A frame longer than the limit
//! is refused before its body is read, and the body buffer grows only as
//! bytes actually arrive, so a peer that announces 4 GiB and sends nothing
//! costs nothing.

use std::io::{self, Read, Write};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// The most buffer reserved up front for a frame body; the rest grows as
/// bytes arrive.
const INITIAL_CAPACITY: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the limit.
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The limit in force.
        max: u32,
    },
    /// The stream ended inside a frame.
    #[error("truncated frame: expected {expected} bytes, got {got}")]
    Truncated {
        /// Bytes the frame needed (header or body).
        expected: u64,
        /// Bytes that arrived.
        got: u64,
    },
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Checks an announced length against the limit.
fn check_len(header: [u8; HEADER_LEN], max: u32) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header);
    if len > max {
        return Err(FrameError::TooLarge { len: len.into(), max });
    }
    Ok(len as usize)
}

/// The length prefix for a payload, or an error if it cannot be framed.
fn header_for(payload: &[u8], max: u32) -> io::Result<[u8; HEADER_LEN]> {
    match u32::try_from(payload.len()) {
        Ok(n) if n <= max => Ok(n.to_be_bytes()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("frame of {} bytes is over the limit of {max} bytes", payload.len()),
        )),
    }
}

/// A stream that ended after `got` bytes of a header: a clean end between
/// frames if none had come, else a truncated frame.
fn ended_in_header(got: usize) -> Result<Option<usize>, FrameError> {
    if got == 0 {
        Ok(None)
    } else {
        Err(FrameError::Truncated { expected: HEADER_LEN as u64, got: got as u64 })
    }
}

/// Whether all `len` bytes of a body arrived.
fn whole_body(got: usize, len: usize) -> Result<(), FrameError> {
    if got < len {
        return Err(FrameError::Truncated { expected: len as u64, got: got as u64 });
    }
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: u32) -> Result<Option<Vec<u8>>, FrameError> {
    match read_frame_len(r, max).await? {
        None => Ok(None),
        Some(len) => read_frame_body(r, len).await.map(Some),
    }
}

/// Reads a frame's length prefix and checks it against the limit, so a
/// caller can reserve room for the body before reading it. `Ok(None)` is a
/// clean end of stream between frames.
pub async fn read_frame_len<R: AsyncRead + Unpin>(r: &mut R, max: u32) -> Result<Option<usize>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = r.read(&mut header[got..]).await?;
        if n == 0 {
            return ended_in_header(got);
        }
        got += n;
    }
    check_len(header, max).map(Some)
}

/// Reads the `len` bytes of a frame's body (after [`read_frame_len`]).
pub async fn read_frame_body<R: AsyncRead + Unpin>(r: &mut R, len: usize) -> Result<Vec<u8>, FrameError> {
    let mut body = Vec::with_capacity(len.min(INITIAL_CAPACITY));
    let got = r.take(len as u64).read_to_end(&mut body).await?;
    whole_body(got, len)?;
    Ok(body)
}

/// Writes one frame (header and payload in one buffer, one write).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8], max: u32) -> io::Result<()> {
    let header = header_for(payload, max)?;
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(payload);
    w.write_all(&buf).await
}

/// Blocking twin of [`read_frame`], for bundle files.
pub fn read_frame_sync<R: Read>(r: &mut R, max: u32) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = match r.read(&mut header[got..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return ended_in_header(got).map(|_| None);
        }
        got += n;
    }
    let len = check_len(header, max)?;
    let mut body = Vec::with_capacity(len.min(INITIAL_CAPACITY));
    let got = r.take(len as u64).read_to_end(&mut body)?;
    whole_body(got, len)?;
    Ok(Some(body))
}

/// Blocking twin of [`write_frame`], for bundle files.
pub fn write_frame_sync<W: Write>(w: &mut W, payload: &[u8], max: u32) -> io::Result<()> {
    w.write_all(&header_for(payload, max)?)?;
    w.write_all(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u32 = 1024;

    async fn roundtrip(len: usize) -> Result<Option<Vec<u8>>, FrameError> {
        let mut wire = Vec::new();
        wire.extend_from_slice(&(len as u32).to_be_bytes());
        wire.extend(std::iter::repeat_n(0xAB, len));
        read_frame(&mut wire.as_slice(), MAX).await
    }

    #[tokio::test]
    async fn a_frame_at_the_limit_is_accepted() {
        assert_eq!(roundtrip(MAX as usize).await.unwrap().unwrap().len(), MAX as usize);
    }

    #[tokio::test]
    async fn a_frame_one_byte_over_the_limit_is_refused() {
        assert!(matches!(roundtrip(MAX as usize + 1).await, Err(FrameError::TooLarge { len: 1025, max: MAX })));
    }

    #[tokio::test]
    async fn a_4_gib_length_is_refused_without_reading_on() {
        let wire = u32::MAX.to_be_bytes();
        let r = read_frame(&mut wire.as_slice(), crate::limits::MAX_FRAME).await;
        assert!(matches!(r, Err(FrameError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn truncation_is_an_error_and_clean_eof_is_none() {
        assert!(read_frame(&mut &[][..], MAX).await.unwrap().is_none());
        assert!(matches!(read_frame(&mut &[0, 0][..], MAX).await, Err(FrameError::Truncated { expected: 4, got: 2 })));
        assert!(matches!(
            read_frame(&mut &[0, 0, 0, 5, 1, 2][..], MAX).await,
            Err(FrameError::Truncated { expected: 5, got: 2 })
        ));
    }

    #[tokio::test]
    async fn write_then_read_round_trips_and_writer_refuses_oversize() {
        let mut buf = Vec::new();
        write_frame(&mut buf, b"hello", MAX).await.unwrap();
        write_frame(&mut buf, b"", MAX).await.unwrap();
        let mut r = buf.as_slice();
        assert_eq!(read_frame(&mut r, MAX).await.unwrap().unwrap(), b"hello");
        assert_eq!(read_frame(&mut r, MAX).await.unwrap().unwrap(), b"");
        assert!(read_frame(&mut r, MAX).await.unwrap().is_none());
        assert!(write_frame(&mut buf, &vec![0; MAX as usize + 1], MAX).await.is_err());
    }

    #[test]
    fn sync_twins_agree_at_the_edge() {
        let mut buf = Vec::new();
        write_frame_sync(&mut buf, &vec![1; MAX as usize], MAX).unwrap();
        assert_eq!(read_frame_sync(&mut buf.as_slice(), MAX).unwrap().unwrap().len(), MAX as usize);
        let mut over = (MAX + 1).to_be_bytes().to_vec();
        over.extend(vec![0; MAX as usize + 1]);
        assert!(matches!(read_frame_sync(&mut over.as_slice(), MAX), Err(FrameError::TooLarge { .. })));
    }
}
