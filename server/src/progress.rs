//! Progress of long byte copies (evidence export, import): a bar with bytes, rate
//! and time left when stderr is a terminal, a plain line every tenth and at
//! the end otherwise, nothing under `--json`.

use std::cell::Cell;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// One copy's progress.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    done: Cell<u64>,
    next_line: Cell<u64>,
    quiet: bool,
}

impl Progress {
    /// Progress of `total` bytes of `what`; `quiet` shows nothing.
    pub fn new(what: &'static str, total: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) =
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta} left")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what);
            bar
        });
        Progress { bar, what, total, done: Cell::new(0), next_line: Cell::new(total / 10), quiet }
    }

    /// `n` more bytes done.
    pub fn add(&self, n: u64) {
        let done = self.done.get() + n;
        self.done.set(done);
        match &self.bar {
            Some(b) => b.set_position(done),
            // Every tenth, and the last byte.
            None if !self.quiet && n > 0 && self.total > 0 && (done >= self.next_line.get() || done == self.total) => {
                eprintln!("{}: {done}/{} bytes ({}%)", self.what, self.total, done * 100 / self.total);
                self.next_line.set((done + self.total / 10).max(done + 1));
            }
            None => {}
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
