//! The command line of DESIGN §3: argument parsing (clap) and one function
//! per command that calls the library and prints the result.
//!
//! Values are taken as text and parsed by [`crate::record`]'s parsers, not
//! by clap, so a bad value gives the same one-line message, naming the flag
//! and the fix, whether it came from a flag or a prompt.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use truce_shared::time::now_ms;
use truce_shared::{Count, Qualifier};

use crate::agent::{Agent, DirState};
use crate::error::{AgentError, Result};
use crate::link::LinkInput;
use crate::output::{self, KeyJson, Out, RecordedJson, ReportJson, StatusJson};
use crate::paths::DataDir;
use crate::queue::State;
use crate::record::{self, RecordInput};
use crate::vault::{Passphrase, Protection};

/// The environment variable that names a passphrase file.
pub const ENV_PASSPHRASE_FILE: &str = "TRUCE_PASSPHRASE_FILE";

/// truce-agent: signed field reports for ceasefire monitors.
#[derive(Debug, Parser)]
#[command(name = "truce-agent", version, about, max_term_width = 100)]
pub struct Cli {
    /// Where the key, queue and certificates live (default: the platform's
    /// data directory, e.g. ~/.local/share/truce-agent).
    #[arg(long, global = true, value_name = "DIR", env = crate::paths::ENV_DIR)]
    pub data_dir: Option<PathBuf>,

    /// Print one JSON document (JSON Lines for `list`) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Read the passphrase from this file (all of it, less one trailing
    /// newline) instead of asking on the terminal: for scripts and `sync --watch` services. Keep the
    /// file on an encrypted or removable disk, never beside the data dir.
    #[arg(long, global = true, value_name = "FILE", env = ENV_PASSPHRASE_FILE)]
    pub passphrase_file: Option<PathBuf>,

    /// With `init` (or converting an old data dir): protect nothing with a
    /// passphrase. For trials only: anyone with the disk can then read the
    /// reports and sign as this laptop, and every command says so.
    #[arg(long, global = true)]
    pub no_passphrase: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make the device key and the queue, sealed under a passphrase asked twice;
    /// print the public key and fingerprint.
    Init {
        /// How long delivered reports keep their bodies on this laptop: 0 (at
        /// once), 90m, 12h, 7d (the default).
        #[arg(long, value_name = "DURATION")]
        keep_delivered: Option<String>,
    },
    /// Store how to reach the server: address, mission CA, client certificate and key.
    Link(LinkArgs),
    /// Sign and store a report (asks for each field when run on a terminal with no flags).
    Record(Box<RecordArgs>),
    /// The queue, newest first.
    List {
        /// Only reports in this state: pending, delivered, quarantined or rejected.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
    },
    /// One report (a unique prefix of the id is enough), its state, the server's answer and receipt.
    Show {
        /// Report id or unique prefix.
        id: String,
    },
    /// Counts by state, chain head, server, last sync.
    Status,
    /// Deliver pending reports to the linked server.
    Sync(SyncArgs),
    /// Sneaker-net bundles.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// The device's public key and fingerprint.
    Key,
    /// Change the passphrase (the queue is not re-encrypted: only the keyring changes).
    Passphrase {
        /// Read the new passphrase from this file instead of asking twice.
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        /// Remove the passphrase (trials only: the keys are then not protected).
        #[arg(long, conflicts_with = "new_passphrase_file")]
        remove: bool,
    },
    /// Delete the bodies and evidence of reports the server holds, after the keep period.
    Prune {
        /// Change the keep period first (stored in the data dir): 0, 90m, 12h, 7d.
        #[arg(long, value_name = "DURATION")]
        keep_delivered: Option<String>,
    },
    /// Destroy this laptop's keys, then its queue and evidence copies, for good.
    Wipe {
        /// Do not ask for the typed confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Print shell completions to stdout: `truce-agent completions bash > /etc/bash_completion.d/truce-agent`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff) to stdout: `truce-agent man > truce-agent.1`.
    Man,
}

/// `link` flags.
#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The collection server, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    /// The mission CA certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// This laptop's client certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// This laptop's client private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
}

/// `sync` flags.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Keep running: deliver new records as they are made, retry while offline.
    #[arg(long)]
    pub watch: bool,
    /// Use this server instead of the linked one (same certificates).
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
}

/// `bundle` subcommands.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Write pending (or all) reports to a bundle file for a USB stick.
    Export {
        /// The bundle file to write.
        file: PathBuf,
        /// Every report, not only pending ones.
        #[arg(long)]
        all: bool,
    },
}

/// `record` flags. All optional: with none, on a terminal, record asks.
#[derive(Debug, Default, Args)]
pub struct RecordArgs {
    /// What happened: explosion, shelling, small-arms-fire, heavy-weapons, airstrike, drone,
    /// mine, casualty, damage, movement-restriction, projectile-in-flight, muzzle-flash,
    /// illumination-flare, nothing-observed, other.
    #[arg(long, value_name = "C")]
    pub category: Option<String>,
    /// Latitude of the monitor, decimal degrees (WGS84).
    #[arg(long, value_name = "X", allow_hyphen_values = true)]
    pub lat: Option<String>,
    /// Longitude of the monitor, decimal degrees (WGS84).
    #[arg(long, value_name = "Y", allow_hyphen_values = true)]
    pub lon: Option<String>,
    /// Position accuracy in metres.
    #[arg(long, value_name = "M", allow_hyphen_values = true)]
    pub accuracy: Option<String>,
    /// When it happened: now (default), -15m, -2h, or RFC 3339 (2026-11-22T09:15:00Z).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub at: Option<String>,
    /// End of a continuous event or of a nothing-observed watch (same forms as --at).
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Direction of the event from the monitor: degrees 0-359 or a compass point (NNW).
    #[arg(long, value_name = "D", allow_hyphen_values = true)]
    pub bearing: Option<String>,
    /// Distance to the event: metres MIN or MIN-MAX (3000-5000), or km (3-5km, 2.5km).
    #[arg(long, value_name = "MIN[-MAX]", allow_hyphen_values = true)]
    pub distance: Option<String>,
    /// impact, outgoing, airburst or undetermined.
    #[arg(long, value_name = "E")]
    pub effect: Option<String>,
    /// Assessed weapon ("152mm artillery"), at most 128 bytes.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub weapon: Option<String>,
    /// How many (explosions, bursts, vehicles); exact unless --about or --at-least.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub count: Option<String>,
    /// The count is approximate.
    #[arg(long, requires = "count", conflicts_with = "at_least")]
    pub about: bool,
    /// The count is a lower bound.
    #[arg(long, requires = "count")]
    pub at_least: bool,
    /// How you know: seen (default), heard or reported.
    #[arg(long, value_name = "B")]
    pub basis: Option<String>,
    /// Free text, at most 8 KiB.
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub description: Option<String>,
    /// Evidence files: hashed and copied into the data dir.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub attach: Vec<PathBuf>,
    /// Id (or unique prefix) of an earlier report of this device that this one corrects.
    #[arg(long, value_name = "ID")]
    pub amends: Option<String>,
}

impl RecordArgs {
    /// Whether no field was given at all (the interactive case).
    fn is_empty(&self) -> bool {
        let RecordArgs {
            category,
            lat,
            lon,
            accuracy,
            at,
            until,
            bearing,
            distance,
            effect,
            weapon,
            count,
            about,
            at_least,
            basis,
            description,
            attach,
            amends,
        } = self;
        [category, lat, lon, accuracy, at, until, bearing, distance, effect, weapon, count, basis, description, amends]
            .iter()
            .all(|o| o.is_none())
            && !about
            && !at_least
            && attach.is_empty()
    }

    /// Parses the flags into a [`RecordInput`], naming the flag of the
    /// first bad value.
    pub fn to_input(&self, now: i64) -> Result<RecordInput> {
        let missing: Vec<&str> = [("--category", &self.category), ("--lat", &self.lat), ("--lon", &self.lon)]
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        let (Some(c), Some(lat), Some(lon)) = (&self.category, &self.lat, &self.lon) else {
            return Err(AgentError::input(
                "record",
                format!(
                    "{} missing: give at least --category, --lat and --lon (or run `truce-agent record` with no flags on a terminal to be asked)",
                    missing.join(", ")
                ),
            ));
        };
        let mut input = RecordInput::new(
            record::parse_category("--category", c)?,
            record::parse_degrees("--lat", lat)?,
            record::parse_degrees("--lon", lon)?,
        );
        input.position.accuracy_m =
            self.accuracy.as_deref().map(|a| record::parse_metres("--accuracy", a)).transpose()?;
        input.observed_at = Some(match &self.at {
            Some(t) => record::parse_when("--at", t, now)?,
            None => now,
        });
        input.observed_until = self.until.as_deref().map(|t| record::parse_when("--until", t, now)).transpose()?;
        input.bearing_deg = self.bearing.as_deref().map(|b| record::parse_bearing("--bearing", b)).transpose()?;
        input.distance_m = self.distance.as_deref().map(|d| record::parse_distance("--distance", d)).transpose()?;
        input.effect = self.effect.as_deref().map(|e| record::parse_effect("--effect", e)).transpose()?;
        input.weapon = self.weapon.clone();
        input.count = match &self.count {
            Some(n) => {
                let n = n.trim().parse::<u32>().map_err(|_| {
                    AgentError::input("--count", format!("{n:?} is not a whole number: use --count 30 --about"))
                })?;
                let qualifier = if self.about {
                    Qualifier::About
                } else if self.at_least {
                    Qualifier::AtLeast
                } else {
                    Qualifier::Exact
                };
                Some(Count { n, qualifier })
            }
            None => None,
        };
        if let Some(b) = &self.basis {
            input.basis = record::parse_basis("--basis", b)?;
        }
        input.description = self.description.clone().unwrap_or_default();
        input.attachments = self.attach.clone();
        input.amends = self.amends.clone();
        Ok(input)
    }
}

/// Parses the process arguments and runs the command. Errors come back
/// as [`AgentError`] for `main` to print as one line; help and version
/// print and succeed.
pub fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<ExitCode> {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
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
    let keys = Unlock { file: cli.passphrase_file.clone(), no_passphrase: cli.no_passphrase };
    let mut out = Out::new(cli.json);
    let code = dispatch(cli.command, &dir, &keys, &mut out)?;
    out.flush()?;
    Ok(code)
}

/// Where the passphrase comes from: a file, or the terminal.
#[derive(Debug)]
struct Unlock {
    file: Option<PathBuf>,
    no_passphrase: bool,
}

/// Whether there is a person at a terminal to ask.
fn on_terminal() -> bool {
    std::io::stdin().is_terminal()
}

fn ask(prompt: &str) -> Result<Passphrase> {
    let text = rpassword::prompt_password(prompt).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => AgentError::Cancelled,
        _ => AgentError::Terminal(e),
    })?;
    Passphrase::new(text)
}

impl Unlock {
    /// The current passphrase.
    fn current(&self) -> Result<Passphrase> {
        if let Some(f) = &self.file {
            return Passphrase::from_file(f);
        }
        if !on_terminal() {
            return Err(AgentError::PassphraseNeeded);
        }
        ask("passphrase: ")
    }

    /// A new passphrase: from `file`, or asked twice; or none with
    /// `--no-passphrase`.
    fn choose(&self, file: Option<&PathBuf>, no_passphrase: bool) -> Result<Protection> {
        if no_passphrase {
            return Ok(Protection::None);
        }
        let pass = if let Some(f) = file {
            Passphrase::from_file(f)?
        } else if on_terminal() {
            eprintln!(
                "Choose a passphrase for this laptop's keys and reports. Several unrelated words are easy to remember \
                 and hard to guess; it cannot be recovered if forgotten."
            );
            let first = ask("new passphrase: ")?;
            first.check_new()?;
            let again = ask("the same again: ")?;
            if !first.same_as(&again) {
                return Err(AgentError::input("passphrase", "the two passphrases differ: nothing was changed"));
            }
            first
        } else {
            return Err(AgentError::input(
                "passphrase",
                "no terminal to ask on: give --passphrase-file FILE (or TRUCE_PASSPHRASE_FILE), or --no-passphrase for a trial",
            ));
        };
        pass.check_new()?;
        Ok(Protection::Passphrase(pass))
    }

    /// Converts an old data dir, telling the monitor what is happening.
    fn upgrade(&self, dir: &DataDir) -> Result<Agent> {
        if self.file.is_none() && !self.no_passphrase && !on_terminal() {
            return Err(AgentError::NeedsUpgrade(dir.root().to_path_buf()));
        }
        let protection = self.choose(self.file.as_ref(), self.no_passphrase)?;
        eprintln!(
            "converting {}: sealing the keys, queued reports and evidence of an older truce-agent",
            dir.root().display()
        );
        let agent = Agent::upgrade(dir.root(), &protection)?;
        eprintln!("converted: nothing is kept in clear any more");
        Ok(agent)
    }

    /// Opens the device with its keys, asking for the passphrase if sealed,
    /// and prunes what is past the keep period (a failure to prune is a
    /// warning: it must not stop a monitor recording).
    fn open(&self, dir: &DataDir) -> Result<Agent> {
        let mut agent = self.open_unpruned(dir)?;
        if let Err(e) = agent.prune() {
            eprintln!("warning: pruning delivered reports failed: {e}");
        }
        Ok(agent)
    }

    fn open_unpruned(&self, dir: &DataDir) -> Result<Agent> {
        match Agent::dir_state(dir)? {
            DirState::NeedsUpgrade => self.upgrade(dir),
            DirState::Empty => Err(AgentError::NotInitialised(dir.root().to_path_buf())),
            DirState::Unprotected => {
                warn_unprotected();
                Agent::open(dir.root(), None)
            }
            DirState::Sealed => Agent::open(dir.root(), Some(&self.current()?)),
        }
    }

    /// Opens the device without its keys (counts, states, public key).
    fn open_locked(&self, dir: &DataDir) -> Result<Agent> {
        match Agent::dir_state(dir)? {
            DirState::NeedsUpgrade => return self.upgrade(dir),
            DirState::Unprotected => warn_unprotected(),
            DirState::Empty | DirState::Sealed => {}
        }
        Agent::open_locked(dir.root())
    }
}

fn warn_unprotected() {
    eprintln!(
        "warning: this laptop's keys are not protected by a passphrase (made with --no-passphrase): anyone with this disk can read its reports and sign as it; set one with `truce-agent passphrase`"
    );
}

/// Reads a keep period: `0`, or a number and a unit (s, m, h, d, w).
pub fn parse_keep(field: &'static str, s: &str) -> Result<i64> {
    let t = s.trim();
    let bad = || AgentError::input(field, format!("{s:?} is not a duration: write 0, 90m, 12h or 7d"));
    if t == "0" {
        return Ok(0);
    }
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms).filter(|v| *v <= 3650 * 86_400_000).ok_or_else(bad)
}

fn dispatch(command: Command, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<ExitCode> {
    let root = dir.root().display().to_string();
    match command {
        Command::Init { keep_delivered } => {
            let keep = keep_delivered.as_deref().map(|k| parse_keep("--keep-delivered", k)).transpose()?;
            if Agent::dir_state(dir)? != DirState::Empty {
                return Err(AgentError::AlreadyInitialised(dir.root().to_path_buf()));
            }
            let protection = keys.choose(keys.file.as_ref(), keys.no_passphrase)?;
            if matches!(protection, Protection::None) {
                warn_unprotected();
            }
            let mut agent = Agent::init(dir.root(), &protection)?;
            if let Some(ms) = keep {
                agent.set_keep_delivered_ms(ms)?;
            }
            key_out(&agent, &root, out, true)?;
        }
        Command::Key => {
            let agent = keys.open_locked(dir)?;
            key_out(&agent, &root, out, false)?;
        }
        Command::Passphrase { new_passphrase_file, remove } => {
            let state = Agent::dir_state(dir)?;
            match state {
                DirState::Empty => return Err(AgentError::NotInitialised(dir.root().to_path_buf())),
                DirState::NeedsUpgrade => {
                    // Converting asks for the new passphrase anyway.
                    keys.upgrade(dir)?;
                }
                DirState::Sealed | DirState::Unprotected => {
                    let old = if state == DirState::Sealed { Some(keys.current()?) } else { None };
                    // Check the old one before asking twice for a new one.
                    Agent::check_passphrase(dir, old.as_ref())?;
                    let new = keys.choose(new_passphrase_file.as_ref(), remove || keys.no_passphrase)?;
                    Agent::change_passphrase(dir, old.as_ref(), &new)?;
                }
            }
            let protected = Agent::dir_state(dir)? == DirState::Sealed;
            if out.json {
                out.json_line(&serde_json::json!({ "protected": protected, "data_dir": root }))?;
            } else if protected {
                out.line("passphrase changed: use the new one from now on")?;
            } else {
                warn_unprotected();
                out.line("passphrase removed")?;
            }
        }
        Command::Prune { keep_delivered } => {
            let mut agent = keys.open_unpruned(dir)?;
            if let Some(k) = keep_delivered {
                agent.set_keep_delivered_ms(parse_keep("--keep-delivered", &k)?)?;
            }
            let p = agent.prune()?;
            let keep = agent.keep_delivered_ms()?;
            if out.json {
                out.json_line(&serde_json::json!({
                    "pruned_reports": p.reports, "pruned_files": p.files, "keep_delivered_s": keep / 1000,
                }))?;
            } else {
                out.line(&format!(
                    "pruned {} report(s) and {} evidence file(s); {}",
                    p.reports,
                    p.files,
                    output::keep_text(keep)
                ))?;
            }
        }
        Command::Wipe { yes } => return wipe_cmd(dir, yes, out),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "truce-agent", &mut std::io::stdout());
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page).map_err(AgentError::Terminal)?;
            out.raw(&page)?;
        }
        Command::Link(a) => {
            let mut agent = keys.open(dir)?;
            agent.link(&LinkInput { server: a.server.clone(), ca: a.ca, cert: a.cert, key: a.key })?;
            if out.json {
                out.json_line(&serde_json::json!({ "server": a.server.trim(), "data_dir": root }))?;
            } else {
                out.line(&format!(
                    "linked to {} (certificates stored in {})",
                    a.server.trim(),
                    agent.dir().link_dir().display()
                ))?;
            }
        }
        Command::Record(a) => record_cmd(&a, dir, keys, out)?,
        Command::List { state } => {
            let state = state
                .map(|s| {
                    State::parse(s.trim()).ok_or_else(|| {
                        AgentError::input(
                            "--state",
                            format!("unknown state {s:?}: use pending, delivered, quarantined or rejected"),
                        )
                    })
                })
                .transpose()?;
            let agent = keys.open(dir)?;
            let device = agent.device();
            let mut any = false;
            agent.queue().for_each(state, |r| {
                any = true;
                let env = r.envelope()?;
                if out.json {
                    out.json_line(&ReportJson::new(&r, env.as_ref(), &device, false))
                } else {
                    out.line(&output::report_line(&r, env.as_ref()))
                }
            })?;
            if !any && !out.json {
                out.line("no reports")?;
            }
        }
        Command::Show { id } => {
            let agent = keys.open(dir)?;
            let r = agent.queue().find(&id)?;
            let env = r.envelope()?;
            if out.json {
                out.json_line(&ReportJson::new(&r, env.as_ref(), &agent.device(), true))?;
            } else {
                for l in output::report_text(&r, env.as_ref()) {
                    out.line(&l)?;
                }
            }
        }
        Command::Status => {
            let agent = keys.open_locked(dir)?;
            let s = agent.status()?;
            if out.json {
                out.json_line(&StatusJson::new(&s, &root))?;
            } else {
                for l in output::status_text(&s, &root) {
                    out.line(&l)?;
                }
            }
        }
        Command::Sync(a) => return sync_cmd(&a, dir, keys, out),
        Command::Bundle(BundleCommand::Export { file, all }) => {
            let agent = keys.open(dir)?;
            let n = agent.export_bundle(&file, all)?;
            if out.json {
                out.json_line(&serde_json::json!({ "file": file.display().to_string(), "reports": n, "all": all }))?;
            } else {
                let which = if all { "" } else { "pending " };
                out.line(&format!(
                    "wrote {n} {which}report(s) to {} (they stay pending until a server acknowledges them)",
                    file.display()
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn key_out(agent: &Agent, root: &str, out: &mut Out, new: bool) -> Result<()> {
    let device = hex::encode(agent.device());
    if out.json {
        out.json_line(&KeyJson { device, fingerprint: agent.fingerprint(), data_dir: root.to_string() })?;
    } else {
        if new {
            out.line(&format!("device key created in {root}"))?;
        }
        out.line(&format!("public key:  {device}"))?;
        out.line(&format!("fingerprint: {}", agent.fingerprint()))?;
        if new {
            out.line("read the fingerprint out to the coordinator so they can enrol this laptop")?;
        }
    }
    Ok(())
}

fn record_cmd(a: &RecordArgs, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let mut agent = keys.open(dir)?;
    let input = if a.is_empty() {
        if !std::io::stdin().is_terminal() {
            return Err(AgentError::input(
                "record",
                "no fields given and no terminal to ask on: give at least --category, --lat and --lon",
            ));
        }
        let last = agent.queue().last_position()?;
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        crate::interactive::ask_record(&mut lock, &mut std::io::stderr(), last, now_ms)?
    } else {
        a.to_input(now_ms())?
    };
    let rec = agent.record(&input)?;
    if out.json {
        out.json_line(&RecordedJson::from(&rec))?;
    } else {
        out.line(&hex::encode(rec.id))?;
    }
    Ok(())
}

fn sync_cmd(a: &SyncArgs, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<ExitCode> {
    use crate::sync::{self, Progress, SyncOptions, SyncSummary};
    // `--watch` unlocks once, here, and keeps the keys for its whole run.
    let mut agent = keys.open(dir)?;
    let progress = if std::io::stderr().is_terminal() { Progress::Bar } else { Progress::Log };
    let opts = SyncOptions { server: a.server.clone(), progress, ..SyncOptions::default() };
    let rt = sync::runtime()?;
    let summary_json = |s: &SyncSummary| {
        serde_json::json!({
            "server": s.server,
            "server_key": hex::encode(s.server_key),
            "delivered": s.delivered,
            "quarantined": s.quarantined,
            "rejected": s.rejected,
            "pending": s.pending,
            "batches": s.batches,
            "clock_skew_ms": s.clock_skew_ms,
        })
    };
    if a.watch {
        let result = rt.block_on(async {
            let shutdown = async {
                // A failure to install the handlers leaves the default
                // behaviour (the process ends), which loses nothing either.
                if sync::shutdown_signal().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            sync::watch(&mut agent, &opts, shutdown, |r| {
                // Failures are logged by watch with the retry delay.
                if let Ok(s) = r {
                    if out.json {
                        let _ = out.json_line(&summary_json(s)).and_then(|_| out.flush());
                    } else {
                        eprintln!("sync: {}: {}", s.server, s.line());
                    }
                }
            })
            .await
        });
        result?;
        return Ok(ExitCode::SUCCESS);
    }
    let s = rt.block_on(sync::sync_once(&mut agent, &opts))?;
    if out.json {
        out.json_line(&summary_json(&s))?;
    } else {
        out.line(&format!("{}: {}", s.server, s.line()))?;
    }
    if s.pending > 0 {
        // Records made while syncing; the next sync takes them.
        return Err(AgentError::StillPending(s.pending));
    }
    if s.rejected > 0 {
        eprintln!("warning: the server rejected {} report(s): see `truce-agent list --state rejected`", s.rejected);
    }
    Ok(ExitCode::SUCCESS)
}

fn wipe_cmd(dir: &DataDir, yes: bool, out: &mut Out) -> Result<ExitCode> {
    // Only what exists is looked at: a damaged keyring must not stop a wipe.
    if ![dir.keyring(), dir.legacy_key_file(), dir.queue_file(), dir.link_dir()].iter().any(|p| p.exists()) {
        return Err(AgentError::NotInitialised(dir.root().to_path_buf()));
    }
    if !yes {
        if !on_terminal() {
            return Err(AgentError::input("wipe", "no terminal to confirm on: add --yes to wipe without asking"));
        }
        eprintln!(
            "This destroys the keys of {} for good, then its queue and evidence copies. Reports not yet delivered are lost.",
            dir.root().display()
        );
        eprint!("Type WIPE to go on: ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(AgentError::Terminal)?;
        if line.trim() != "WIPE" {
            return Err(AgentError::input("wipe", "not confirmed: nothing was destroyed"));
        }
    }
    let gone = Agent::wipe(dir)?;
    const CANNOT: &str = "wipe cannot reach copies of this disk made earlier (backups, an image taken by anyone who \
        held the laptop), blocks an SSD or the file system kept elsewhere when the files were rewritten, or what the \
        server already holds";
    if out.json {
        let gone: Vec<String> = gone.iter().map(|p| p.display().to_string()).collect();
        out.json_line(&serde_json::json!({ "destroyed": gone, "cannot_promise": CANNOT }))?;
    } else {
        out.line(&format!(
            "wiped {}: the keys were overwritten and removed, so nothing sealed there can be read again, with or without the passphrase",
            dir.root().display()
        ))?;
        out.line(&format!("note: {CANNOT}"))?;
    }
    Ok(ExitCode::SUCCESS)
}
