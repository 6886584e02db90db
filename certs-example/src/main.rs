//! The `truce-certs` binary: parses arguments, calls the library, prints
//! what was made. Errors are printed as one line on stderr, exit status 1.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use cli::{Cli, Command};
use truce_certs::{ClientOptions, ClientValidity, CrlOptions, CrlValidity, Revokee};

mod cli;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            truce_shared::console::print_error("truce-certs: ", format_args!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Runs one command.
fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init { out, server_names } => {
            let made = truce_certs::init(&out, &server_names)?;
            let names = if server_names.is_empty() {
                truce_certs::DEFAULT_SERVER_NAMES.join(", ")
            } else {
                server_names.join(", ")
            };
            println!("made a new PKI in {}:", out.display());
            println!("  {}  CA certificate: give it to the server (--ca) and to every agent", made.ca_cert.display());
            println!("  {}  CA key: keep it safe, it signs everything", made.ca_key.display());
            println!("  {}  server certificate for {names} (--cert)", made.server_cert.display());
            println!("  {}  server key (--key)", made.server_key.display());
            println!("  {}  CRL, empty for now (--crl)", made.crl.display());
            println!("next: truce-certs client NAME --out {}", out.display());
        }
        Command::Client { name, out, days, expired } => {
            let validity = if expired { ClientValidity::Expired } else { ClientValidity::Days(days) };
            let made = truce_certs::client(&out, &name, ClientOptions { validity })?;
            println!("made client certificate {name} (serial {}):", made.serial);
            println!("  {}  certificate (--cert)", made.cert.display());
            println!("  {}  key (--key)", made.key.display());
            if expired {
                println!("  it has already expired, as asked");
            }
        }
        Command::Revoke { name, out } => {
            let done = truce_certs::revoke(&out, &name)?;
            if done.already_revoked {
                println!("{name} (serial {}) was already revoked; {} is unchanged", done.serial, done.crl.display());
            } else {
                println!(
                    "revoked {name} (serial {}): {} is now CRL number {}; the server reads it again when the file changes or on SIGHUP",
                    done.serial,
                    done.crl.display(),
                    done.crl_number
                );
            }
        }
        Command::Crl { out, revoke, crl_days, stale } => {
            let validity = if stale { CrlValidity::Stale } else { CrlValidity::Days(crl_days) };
            let revoke = revoke
                .into_iter()
                .map(|r| {
                    // A path to a file is a certificate; anything else a serial.
                    if std::path::Path::new(&r).is_file() {
                        Revokee::CertFile(r.into())
                    } else {
                        Revokee::Serial(r)
                    }
                })
                .collect();
            let done = truce_certs::crl(&out, &CrlOptions { validity, revoke })?;
            for serial in &done.added {
                println!("revoked serial {serial}");
            }
            let next = done
                .next_update
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| done.next_update.to_string());
            println!(
                "{} is now CRL number {}: {} certificates revoked, next update by {next}; the server reads it again when the file changes or on SIGHUP",
                done.crl.display(),
                done.crl_number,
                done.revoked
            );
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "truce-certs", &mut script);
            // `truce-certs completions bash | head` is not an error.
            truce_shared::console::write_stdout(&script)?;
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            // `truce-certs man | head` is not an error.
            truce_shared::console::write_stdout(&page)?;
        }
    }
    Ok(())
}
