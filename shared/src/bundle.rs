//! Bundles: reports on a USB stick (DESIGN §4).
//!
//! ```text
//! bundle = "TRUCEB01" frame*
//! frame  = u32 big-endian length, postcard(SignedReport)
//! ```
//!
//! [`BundleWriter`] and [`BundleReader`] stream one report at a time; a
//! bundle of any size is written and read in the memory of one report.
//! Reading does not verify: pass each report to [`crate::signing::verify`].

use std::io::{self, Read, Write};

use crate::encoding::{self, EncodingError};
use crate::frame::{self, FrameError};
use crate::limits;
use crate::report::SignedReport;

/// The first eight bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"TRUCEB01";

/// The largest framed report a bundle may hold: a body at the report limit
/// plus signature and varints.
pub const MAX_BUNDLE_FRAME: u32 = (limits::MAX_REPORT_BODY + 128) as u32;

/// Why a bundle could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file does not start with `TRUCEB01`.
    #[error("not a Truce bundle (the file does not start with TRUCEB01)")]
    BadMagic,
    /// A frame is oversized or cut short.
    #[error("report #{index}: {source}")]
    Frame {
        /// 1-based position of the report in the bundle.
        index: u64,
        /// What went wrong.
        source: FrameError,
    },
    /// A frame is not a SignedReport.
    #[error("report #{index}: {source}")]
    Decode {
        /// 1-based position of the report in the bundle.
        index: u64,
        /// What went wrong.
        source: EncodingError,
    },
    /// The file could not be read.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Writes reports to a bundle, one at a time.
pub struct BundleWriter<W: Write> {
    out: W,
    count: u64,
}

impl<W: Write> BundleWriter<W> {
    /// Starts a bundle: writes the magic.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(MAGIC)?;
        Ok(Self { out, count: 0 })
    }

    /// Appends one report.
    pub fn write(&mut self, report: &SignedReport) -> io::Result<()> {
        frame::write_frame_sync(&mut self.out, &encoding::encode(report), MAX_BUNDLE_FRAME)?;
        self.count += 1;
        Ok(())
    }

    /// Reports written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Flushes and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Reads reports from a bundle, one at a time (an iterator).
pub struct BundleReader<R: Read> {
    input: R,
    index: u64,
    done: bool,
}

impl<R: Read> BundleReader<R> {
    /// Opens a bundle: reads and checks the magic.
    pub fn new(mut input: R) -> Result<Self, BundleError> {
        let mut magic = [0u8; 8];
        match input.read_exact(&mut magic) {
            Ok(()) if &magic == MAGIC => Ok(Self { input, index: 0, done: false }),
            Ok(()) => Err(BundleError::BadMagic),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(BundleError::BadMagic),
            Err(e) => Err(e.into()),
        }
    }

    /// 1-based index of the last report returned.
    pub fn index(&self) -> u64 {
        self.index
    }
}

impl<R: Read> Iterator for BundleReader<R> {
    type Item = Result<SignedReport, BundleError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let index = self.index + 1;
        let item = match frame::read_frame_sync(&mut self.input, MAX_BUNDLE_FRAME) {
            Ok(None) => {
                self.done = true;
                return None;
            }
            Ok(Some(bytes)) => {
                encoding::decode::<SignedReport>(&bytes).map_err(|source| BundleError::Decode { index, source })
            }
            Err(source) => {
                // After a framing error the stream position is unknown: stop.
                self.done = true;
                Err(BundleError::Frame { index, source })
            }
        };
        self.index = index;
        Some(item)
    }
}
