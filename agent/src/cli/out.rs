//! Where the commands write: stdout, plain text for people or with
//! `--json` one JSON document per command (JSON Lines for `list`).
//!
//! The JSON shapes, beside each command, are a documented interface
//! (agent/README.md): add fields, never rename or remove them. Times are
//! RFC 3339 UTC strings, ids and keys 64 lowercase hex digits.

use std::io::{self, Write};

use serde::Serialize;
use truce_shared::console::PipeWriter;

use crate::error::{AgentError, Result};

/// Writes to stdout; a closed pipe (`| head`) ends output quietly
/// (`truce_shared::console::PipeWriter`).
pub struct Out {
    out: io::BufWriter<PipeWriter<io::StdoutLock<'static>>>,
    /// `--json` was given.
    pub json: bool,
}

impl Out {
    /// Output to stdout, JSON or text.
    pub fn new(json: bool) -> Self {
        Out { out: io::BufWriter::new(PipeWriter::new(io::stdout().lock())), json }
    }

    /// Whether the reader has gone away.
    pub fn closed(&self) -> bool {
        self.out.get_ref().closed()
    }

    /// Writes one line; after a broken pipe, writes nothing and says so.
    pub fn line(&mut self, s: &str) -> Result<bool> {
        if self.closed() {
            return Ok(false);
        }
        writeln!(self.out, "{s}").map_err(AgentError::Terminal)?;
        Ok(!self.closed())
    }

    /// Writes bytes as they are (a manual page); a closed pipe ends quietly.
    pub fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(AgentError::Terminal)
    }

    /// Writes a value as one line of JSON.
    pub fn json_line<T: Serialize>(&mut self, v: &T) -> Result<bool> {
        let s = serde_json::to_string(v).map_err(|e| AgentError::Terminal(io::Error::other(e)))?;
        self.line(&s)
    }

    /// Flushes (ignoring a reader that has gone).
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(AgentError::Terminal)
    }
}
