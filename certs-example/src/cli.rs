//! The command line of `truce-certs`: arguments and their help texts only.
//!
//! Parsing lives here so that `main.rs` reads as "parse, call the library,
//! print"; no PKI logic is here.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Make a Truce mission's PKI: the CA, the server's certificate, one client
/// certificate per laptop, and the CRL.
#[derive(Debug, Parser)]
#[command(
    name = "truce-certs",
    version,
    after_help = "Typical use:\n  \
        truce-certs init --out pki --server-name truce.example.org\n  \
        truce-certs client laptop-07 --out pki\n  \
        truce-certs revoke laptop-07 --out pki\n  \
        truce-certs crl --out pki          (before the CRL's nextUpdate, every 30 days)\n\n\
        A mission with its own CA can do the same with openssl: see certs-example/README.md."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a new CA, the server's certificate and an empty CRL in DIR.
    ///
    /// Writes DIR/ca.pem, DIR/ca.key, DIR/server.pem, DIR/server.key and
    /// DIR/crl.pem (keys mode 0600). Refuses if DIR already holds any of them.
    Init {
        /// Directory to write the PKI into (created, mode 0700, if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A name the server is reached by: a DNS name or an IP address.
        /// Repeat the flag or separate with commas for several.
        /// [default: localhost, 127.0.0.1]
        #[arg(long = "server-name", value_name = "NAME", value_delimiter = ',')]
        server_names: Vec<String>,
    },

    /// Make a client certificate for one laptop, signed by the CA in DIR.
    ///
    /// Writes DIR/NAME.pem and DIR/NAME.key (mode 0600): give both, with
    /// DIR/ca.pem, to `truce-agent link`. Refuses if either exists.
    Client {
        /// The laptop's name: 1 to 64 letters, digits, '.', '_' or '-',
        /// starting with a letter or digit. Becomes the certificate's CN.
        #[arg(value_name = "NAME")]
        name: String,
        /// Directory holding the CA (made by `truce-certs init`).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// How many days the certificate is valid.
        #[arg(long, value_name = "N", default_value_t = truce_certs::DEFAULT_CLIENT_DAYS)]
        days: u32,
        /// Make a certificate that has already expired, for testing refusal
        /// of expired certificates.
        #[arg(long, conflicts_with = "days", hide_short_help = true)]
        expired: bool,
    },

    /// Revoke a laptop's certificate: add DIR/NAME.pem to DIR/crl.pem.
    ///
    /// Re-signs the CRL with the next CRL number, keeping every earlier
    /// entry. Copy the new crl.pem over the server's `--crl` file: the
    /// server reads it again within seconds (or at once on SIGHUP).
    Revoke {
        /// The laptop's name, as given to `truce-certs client`.
        #[arg(value_name = "NAME")]
        name: String,
        /// Directory holding the CA and the CRL.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },

    /// Reissue DIR/crl.pem: keep every entry, add --revoke ones, next CRL number, new nextUpdate.
    ///
    /// The server refuses a CRL whose nextUpdate has passed: run this before then (every
    /// --crl-days days, a cron job). Examples:
    ///   truce-certs crl --out pki
    ///   truce-certs crl --out pki --revoke 4A0B91C2 --revoke pki/laptop-07.pem
    Crl {
        /// Directory holding the CA and the CRL.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A certificate to revoke: its serial in hex (as `truce-certs client` and
        /// `openssl x509 -noout -serial` print it) or its certificate file. Repeatable.
        #[arg(long, value_name = "SERIAL|FILE")]
        revoke: Vec<String>,
        /// Days until the CRL's nextUpdate.
        #[arg(long, value_name = "N", default_value_t = truce_certs::DEFAULT_CRL_DAYS)]
        crl_days: u32,
        /// Make a CRL whose nextUpdate has already passed, for testing refusal of stale CRLs.
        #[arg(long, conflicts_with = "crl_days", hide_short_help = true)]
        stale: bool,
    },

    /// Print shell completions to stdout: `truce-certs completions bash > /etc/bash_completion.d/truce-certs`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) to stdout: `truce-certs man > truce-certs.1`.
    Man,
}
