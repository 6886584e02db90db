//! What sync shows while it runs: a bar on a terminal, a line per thousand
//! reports in a log, or nothing.

use indicatif::{ProgressBar, ProgressStyle};

use super::Progress;

/// Progress reporting, as chosen by [`Progress`].
pub(super) enum Ui {
    Bar(ProgressBar),
    Log { answered: u64, total: u64, next_log: u64 },
    Quiet,
}

impl Ui {
    pub(super) fn new(progress: Progress, total: u64, server: &str) -> Ui {
        match progress {
            Progress::Bar => {
                let bar = ProgressBar::new(total);
                if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} reports ({elapsed})") {
                    bar.set_style(style.progress_chars("=> "));
                }
                bar.set_message(format!("syncing with {server}"));
                Ui::Bar(bar)
            }
            Progress::Log => {
                eprintln!("sync: connected to {server}, {total} report(s) pending");
                Ui::Log { answered: 0, total, next_log: 1000 }
            }
            Progress::Quiet => Ui::Quiet,
        }
    }

    pub(super) fn answered(&mut self, n: u64) {
        match self {
            Ui::Bar(b) => b.inc(n),
            Ui::Log { answered, total, next_log } => {
                *answered += n;
                if *answered >= *next_log {
                    eprintln!("sync: {answered}/{total} answered");
                    *next_log = *answered + 1000;
                }
            }
            Ui::Quiet => {}
        }
    }

    pub(super) fn finish(&self) {
        if let Ui::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

/// One evidence file's upload: a bar with bytes, rate and time left on a
/// terminal, a line when it ends in a log.
pub(super) struct Bytes {
    bar: Option<ProgressBar>,
    log: bool,
    size: u64,
    start: std::time::Instant,
    from: u64,
    at: std::cell::Cell<u64>,
    /// Chunk bytes written to the link this session, answered or not: what
    /// a cut loses is `sent` less what the server then holds.
    sent: std::cell::Cell<u64>,
    /// The largest chunk sent.
    chunk: std::cell::Cell<u64>,
    /// The bytes allowed in flight when the last chunk was sent.
    window: std::cell::Cell<u64>,
}

impl Bytes {
    pub(super) fn new(progress: Progress, size: u64, from: u64) -> Bytes {
        let bar = (progress == Progress::Bar).then(|| {
            let bar = ProgressBar::new(size);
            if let Ok(style) = ProgressStyle::with_template(
                "evidence [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {eta} left",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_position(from);
            bar
        });
        if progress == Progress::Log {
            eprintln!("sync: uploading an evidence file of {size} bytes from byte {from}");
        }
        Bytes {
            bar,
            log: progress == Progress::Log,
            size,
            start: std::time::Instant::now(),
            from,
            at: std::cell::Cell::new(from),
            sent: std::cell::Cell::new(0),
            chunk: std::cell::Cell::new(0),
            window: std::cell::Cell::new(0),
        }
    }

    /// A chunk of `n` bytes went onto the link, `window` bytes being
    /// allowed in flight.
    pub(super) fn sent(&self, n: u64, window: u64) {
        self.sent.set(self.sent.get() + n);
        self.chunk.set(self.chunk.get().max(n));
        self.window.set(window);
    }

    /// The server holds `at` bytes.
    pub(super) fn set(&self, at: u64) {
        self.at.set(at);
        if let Some(b) = &self.bar {
            b.set_position(at);
        }
    }

    pub(super) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if self.log {
            let secs = self.start.elapsed().as_secs_f64().max(0.001);
            let sent = self.at.get().saturating_sub(self.from);
            eprintln!(
                "sync: evidence {}/{} bytes held by the server, {:.0} bytes/s; {} bytes sent in chunks of up to {}, \
                 at most {} in flight",
                self.at.get(),
                self.size,
                sent as f64 / secs,
                self.sent.get(),
                self.chunk.get(),
                self.window.get()
            );
        }
    }
}

/// Warns on stderr (one line), unless quiet.
pub(super) fn warn(progress: Progress, msg: &str) {
    if progress != Progress::Quiet {
        eprintln!("warning: {msg}");
    }
}
