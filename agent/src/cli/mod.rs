//! The command line of DESIGN §3: [`run`] parses the arguments (the shape
//! of every command and flag is in `args.rs`) and hands each command to its
//! own file, which calls the library and prints the result, as text or
//! `--json` (the JSON shapes live beside their command).
//!
//! - `args.rs`: every command and flag (clap).
//! - `unlock.rs`: where the passphrase comes from; opening the device.
//! - `out.rs`: stdout, text or JSON, quiet on a closed pipe.
//! - `device.rs`: `init`, `key`, `passphrase`.
//! - `link.rs`: `link`.
//! - `record.rs`: `record`, from flags or prompts.
//! - `reports.rs`: `list` and `show`.
//! - `status.rs`: `status`.
//! - `sync.rs`: `sync` and `sync --watch`.
//! - `bundle.rs`: `bundle export`.
//! - `prune.rs`: `prune` and the keep period.
//! - `wipe.rs`: `wipe`.
//! - `help.rs`: `completions` and `man`.
//! - `config_file.rs`: the settings layered from defaults, `truce-agent.toml`,
//!   the environment and flags.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::error::{AgentError, Result};
use crate::paths::DataDir;

mod args;
mod bundle;
mod config_file;
mod device;
mod help;
mod link;
mod out;
mod prune;
mod record;
mod reports;
mod status;
mod sync;
mod unlock;
mod wipe;

pub use args::{BundleCommand, Cli, Command, LinkArgs, RecordArgs, SyncArgs, ENV_PASSPHRASE_FILE};
pub use out::Out;
pub use prune::parse_keep;

use unlock::Unlock;

/// Parses the process arguments and runs the command. Errors come back
/// as [`AgentError`] for `main` to print as one line; help and version
/// print and succeed.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<ExitCode> {
    // The matches are kept beside the parsed values: they say whether a
    // value came from a flag or the environment (`sync --print-config`).
    let parsed = Cli::command().try_get_matches_from(args).and_then(|m| Ok((Cli::from_arg_matches(&m)?, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            use clap::error::ErrorKind;
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                // `truce-agent` or `truce-agent bundle` alone: show what can follow.
                let _ = e.print();
                return Ok(ExitCode::from(2));
            }
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) || !e.use_stderr() {
                // Help and version are not failures.
                let _ = e.print();
                return Ok(ExitCode::SUCCESS);
            }
            // clap's first line is the problem; the rest is usage we replace
            // with a pointer to --help, keeping errors to one line.
            return Err(AgentError::input("usage", truce_shared::text::usage_error(&e.to_string(), "truce-agent")));
        }
    };
    // The unsealed keys must never reach a core file.
    crate::platform::disable_core_dumps();
    let dir = DataDir::resolve(cli.data_dir.clone())?;
    let sync = match &cli.command {
        Command::Sync(a) => matches.subcommand_matches("sync").map(|m| (m, a.server.clone(), a.connect_timeout)),
        _ => None,
    };
    let settings =
        config_file::Settings::resolve(cli.config.as_deref(), dir.root(), &matches, cli.passphrase_file.clone(), sync)?;
    if matches!(&cli.command, Command::Sync(a) if a.print_config) {
        let mut out = Out::new(false);
        out.line(settings.to_toml(dir.root()).trim_end())?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let keys = Unlock { file: settings.passphrase_file.value.clone(), no_passphrase: cli.no_passphrase };
    let mut out = Out::new(cli.json);
    let code = dispatch(cli.command, &dir, &keys, &settings, &mut out)?;
    out.flush()?;
    Ok(code)
}

/// Runs one parsed command.
fn dispatch(
    command: Command,
    dir: &DataDir,
    keys: &Unlock,
    settings: &config_file::Settings,
    out: &mut Out,
) -> Result<ExitCode> {
    match command {
        Command::Init { keep_delivered } => device::init(keep_delivered, dir, keys, out)?,
        Command::Key => device::key(dir, keys, out)?,
        Command::Passphrase { new_passphrase_file, remove } => {
            device::passphrase(new_passphrase_file, remove, dir, keys, out)?
        }
        Command::Prune { keep_delivered } => prune::run(keep_delivered, dir, keys, out)?,
        Command::Wipe { yes } => return wipe::run(dir, yes, out),
        Command::Completions { shell } => help::completions(shell, out)?,
        Command::Man => help::man(out)?,
        Command::Link(a) => link::run(a, dir, keys, out)?,
        Command::Record(a) => record::run(&a, dir, keys, out)?,
        Command::List { state } => reports::list(state, dir, keys, out)?,
        Command::Show { id } => reports::show(&id, dir, keys, out)?,
        Command::Status => status::run(dir, keys, out)?,
        Command::Checkpoint => status::checkpoint(dir, keys, out)?,
        Command::Sync(a) => return sync::run(&a, settings, dir, keys, out),
        Command::Bundle(BundleCommand::Export { file, all, no_evidence }) => {
            bundle::export(&file, all, !no_evidence, dir, keys, out)?
        }
    }
    Ok(ExitCode::SUCCESS)
}
