//! Where the passphrase comes from (`--passphrase-file`, the terminal, or
//! none with `--no-passphrase`), and opening the device with it: sealed,
//! unprotected, or an old data dir to convert first.

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::agent::{Agent, DirState};
use crate::error::{AgentError, Result};
use crate::paths::DataDir;
use crate::vault::{Passphrase, Protection};

/// Where the passphrase comes from: a file, or the terminal.
#[derive(Debug)]
pub(super) struct Unlock {
    /// `--passphrase-file`.
    pub(super) file: Option<PathBuf>,
    /// `--no-passphrase`.
    pub(super) no_passphrase: bool,
}

/// Whether there is a person at a terminal to ask.
pub(super) fn on_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks for a passphrase on the terminal, without echo.
fn ask(prompt: &str) -> Result<Passphrase> {
    let text = rpassword::prompt_password(prompt).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => AgentError::Cancelled,
        _ => AgentError::Terminal(e),
    })?;
    Passphrase::new(text)
}

impl Unlock {
    /// The current passphrase.
    pub(super) fn current(&self) -> Result<Passphrase> {
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
    pub(super) fn choose(&self, file: Option<&PathBuf>, no_passphrase: bool) -> Result<Protection> {
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
    pub(super) fn upgrade(&self, dir: &DataDir) -> Result<Agent> {
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
    pub(super) fn open(&self, dir: &DataDir) -> Result<Agent> {
        let mut agent = self.open_unpruned(dir)?;
        if let Err(e) = agent.prune() {
            eprintln!("warning: pruning delivered reports failed: {e}");
        }
        Ok(agent)
    }

    /// As [`Unlock::open`], without pruning (for `prune` itself).
    pub(super) fn open_unpruned(&self, dir: &DataDir) -> Result<Agent> {
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
    pub(super) fn open_locked(&self, dir: &DataDir) -> Result<Agent> {
        match Agent::dir_state(dir)? {
            DirState::NeedsUpgrade => return self.upgrade(dir),
            DirState::Unprotected => warn_unprotected(),
            DirState::Empty | DirState::Sealed => {}
        }
        Agent::open_locked(dir.root())
    }
}

/// Says, on stderr, that the keys are not protected.
pub(super) fn warn_unprotected() {
    eprintln!(
        "warning: this laptop's keys are not protected by a passphrase (made with --no-passphrase): anyone with this disk can read its reports and sign as it; set one with `truce-agent passphrase`"
    );
}
