//! `completions` and `man`: made from the same clap definitions as
//! `--help`, so they never drift from the real flags.

use clap::CommandFactory;

use super::args::Cli;
use super::out::Out;
use crate::error::{AgentError, Result};

/// Runs `completions`: the script for `shell` on stdout.
pub(super) fn completions(shell: clap_complete::Shell, out: &mut Out) -> Result<()> {
    // Rendered first, so a closed pipe ends it quietly like any other output.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "truce-agent", &mut script);
    out.raw(&script)
}

/// Runs `man`: the manual page (roff) on stdout.
pub(super) fn man(out: &mut Out) -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page).map_err(AgentError::Terminal)?;
    out.raw(&page)
}
