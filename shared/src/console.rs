//! What a binary prints for a person: an error as one line on stderr, and
//! output that a reader closing the pipe (`truce-agent list | head`) ends
//! quietly instead of failing.
//!
//! Both binaries and `truce-certs` print errors through [`print_error`], so
//! a message with a newline in it (a chained error, a path) still takes one
//! line, and a closed stderr never turns an error into a panic. Making the
//! message say what to do next is the caller's.

use std::fmt::Display;
use std::io::{self, Write};

/// `text` on one line: line breaks become spaces.
pub fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

/// Prints `{prefix}{error}` on stderr as one line (`error: cannot read …`).
/// A stderr that cannot be written is ignored: there is no one to tell.
pub fn print_error(prefix: &str, error: impl Display) {
    let line = one_line(&error.to_string());
    let _ = writeln!(io::stderr().lock(), "{prefix}{line}");
}

/// Whether an error is the reader having gone away.
pub fn is_broken_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

/// Writes all of `bytes` to stdout (a manual page, completions) and
/// flushes; a reader that closed the pipe early is not an error.
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = PipeWriter::new(io::stdout().lock());
    out.write_all(bytes)?;
    out.flush()
}

/// A writer whose reader may go away: after the first broken pipe it
/// swallows everything written to it, and [`PipeWriter::closed`] says so.
/// Other errors pass through.
#[derive(Debug)]
pub struct PipeWriter<W> {
    /// Where the bytes go.
    inner: W,
    /// The reader has gone: nothing more is written.
    closed: bool,
}

impl<W: Write> PipeWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        PipeWriter { inner, closed: false }
    }

    /// Whether the reader has gone away.
    pub fn closed(&self) -> bool {
        self.closed
    }

    fn swallow(&mut self, r: io::Result<usize>, len: usize) -> io::Result<usize> {
        match r {
            Err(e) if is_broken_pipe(&e) => {
                self.closed = true;
                Ok(len)
            }
            r => r,
        }
    }
}

impl<W: Write> Write for PipeWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.swallow(r, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = self.inner.flush().map(|()| 0);
        self.swallow(r, 0).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts `room` bytes, then answers with `error`.
    struct Pipe {
        got: Vec<u8>,
        room: usize,
        error: io::ErrorKind,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.got.len() + buf.len() > self.room {
                return Err(self.error.into());
            }
            self.got.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_ends_output_quietly() {
        let mut w = PipeWriter::new(Pipe { got: Vec::new(), room: 4, error: io::ErrorKind::BrokenPipe });
        w.write_all(b"abc").unwrap();
        assert!(!w.closed());
        w.write_all(b"defg").unwrap();
        w.write_all(b"h").unwrap();
        w.flush().unwrap();
        assert!(w.closed());
        assert_eq!(w.inner.got, b"abc");
    }

    #[test]
    fn other_errors_pass_through() {
        let mut w = PipeWriter::new(Pipe { got: Vec::new(), room: 0, error: io::ErrorKind::StorageFull });
        assert_eq!(w.write_all(b"x").unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert!(!w.closed());
    }

    #[test]
    fn errors_take_one_line() {
        assert_eq!(one_line("cannot read\r\n/x: gone\n"), "cannot read  /x: gone ");
    }
}
