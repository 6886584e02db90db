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

/// Warns on stderr (one line), unless quiet.
pub(super) fn warn(progress: Progress, msg: &str) {
    if progress != Progress::Quiet {
        eprintln!("warning: {msg}");
    }
}
