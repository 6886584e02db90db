//! The `truce-server` command line: parse arguments, run one command, print
//! for people or, with `--json`, one JSON document (JSON Lines for lists).
//!
//! This is the binary's edge: library errors get their context here and
//! reach the person as one line saying what went wrong and what to do.
//! [`args`] holds what is accepted; each command, with its output, has a
//! file of its own.

use std::process::ExitCode;

use anyhow::Result;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::paths::DataDir;
use crate::store::Database;
use args::LogCmd;

mod args;
mod config_file;
mod device;
mod export;
mod import;
mod incidents;
mod init;
mod log;
mod migrate;
mod run;
mod stats;
mod verify;

pub use args::{Cli, Command, DeviceCmd, ExportArgs, IncidentsArgs, RunArgs};

/// Parses arguments, runs the command, prints an error as one line.
pub fn main() -> ExitCode {
    // The matches are kept beside the parsed values: they say whether a
    // value came from a flag or the environment (`run --print-config`).
    let parsed = Cli::command().try_get_matches().and_then(|m| Ok((Cli::from_arg_matches(&m)?, m)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            use clap::error::ErrorKind;
            // Help, version, and a bare `truce-server` or `truce-server
            // device` showing what can follow, print as clap writes them.
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) || !e.use_stderr()
            {
                let _ = e.print();
                return ExitCode::from(if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                });
            }
            eprintln!("error: {}", truce_shared::text::usage_error(&e.to_string(), "truce-server"));
            return ExitCode::from(2);
        }
    };
    // `run` logs its connections; the other commands only warnings.
    let default_level = if matches!(cli.command, Command::Run(_)) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour only on a terminal: logs that go to journald or a file stay
    // plain text, one line per event.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
    match dispatch(cli, &matches) {
        Ok(code) => code,
        Err(e) => {
            truce_shared::console::print_error("error: ", format_args!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli, matches: &ArgMatches) -> Result<ExitCode> {
    let json = cli.json;
    // Completions and the manual page come from the argument definitions.
    match &cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "truce-server", &mut script);
            // `truce-server completions bash | head` is not an error.
            truce_shared::console::write_stdout(&script)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            truce_shared::console::write_stdout(&page)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    // `verify` needs no data directory: anyone can run it anywhere.
    if let Command::Verify { bundle, devices, log_key, quiet } = &cli.command {
        return verify::run(
            bundle,
            devices.as_deref(),
            log_key.as_deref(),
            *quiet,
            json,
            &mut std::io::stdout().lock(),
        );
    }
    if let Command::Migrate { from, to } = &cli.command {
        migrate::run(from, to, json, &mut std::io::stdout().lock())?;
        return Ok(ExitCode::SUCCESS);
    }
    let root = DataDir::resolve(cli.data_dir)?;
    let file = config_file::ConfigFile::load(cli.config.as_deref(), root.root())?;
    if let Command::Run(args) = &cli.command {
        let settings = config_file::RunSettings::resolve(
            args,
            matches.subcommand_matches("run"),
            cli.database.as_deref(),
            Some(matches),
            file,
        )?;
        let dir = root.with_database(settings.database.value.as_deref().map(Database::parse));
        if args.print_config {
            truce_shared::console::write_stdout(settings.to_toml(dir.root()).as_bytes())?;
            return Ok(ExitCode::SUCCESS);
        }
        run::run(&dir, &settings)?;
        return Ok(ExitCode::SUCCESS);
    }
    // The other commands read only `database` from the config file.
    let database = cli.database.as_deref().or(file.database());
    let dir = root.with_database(database.map(Database::parse));
    // An export may write stdout from a thread of its own: stdout is not
    // locked here for it.
    if let Command::Export(args) = &cli.command {
        export::run(&dir, args, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Init { mission } => init::run(&dir, &mission, json, &mut out)?,
        Command::Key => log::key(&dir, json, &mut out)?,
        Command::Log(cmd) => log::run(&dir, cmd, json, &mut out)?,
        Command::Audit { checkpoints } => return log::audit(&dir, &checkpoints, json, &mut out),
        Command::Run(_) => unreachable!("handled above"),
        Command::Device(cmd) => device::run(&dir, cmd, json, &mut out)?,
        Command::Import { files, max_evidence_size, evidence_quota } => {
            let limits = crate::evidence::EvidenceLimits {
                max_size: max_evidence_size,
                quota: evidence_quota,
                ..Default::default()
            };
            return import::run(&dir, &files, limits, json, &mut out);
        }
        Command::Export(_) | Command::Migrate { .. } => unreachable!("handled above"),
        Command::Verify { .. } | Command::Completions { .. } | Command::Man => unreachable!("handled above"),
        Command::Incidents(args) => incidents::run(&dir, &args, json, &mut out)?,
        Command::Stats => stats::run(&dir, json, &mut out)?,
    }
    Ok(ExitCode::SUCCESS)
}
