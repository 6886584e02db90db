//! The agent's few settings, layered: built-in defaults, then the config
//! file (`truce-agent.toml` in the data dir, or `--config FILE`), then the
//! environment, then flags. Each value keeps where it came from, for
//! `sync --print-config`.
//!
//! ```text
//! # truce-agent.toml: every key is optional; flags and environment win.
//! passphrase_file = "/media/key/truce-passphrase"   # --passphrase-file, TRUCE_PASSPHRASE_FILE
//! server = "truce-b.example.org:4433"               # sync --server, TRUCE_AGENT_SERVER
//! connect_timeout = 10                              # sync --connect-timeout (seconds), TRUCE_AGENT_CONNECT_TIMEOUT
//! ```
//!
//! An unknown key, or a value of the wrong kind, is an error naming the
//! key, the file and the line. The file names the passphrase file but
//! never holds a passphrase or a key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;

use crate::error::{AgentError, Result};

/// The config file's name in the data dir.
pub const FILE_NAME: &str = "truce-agent.toml";

/// What the config file may say.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    passphrase_file: Option<PathBuf>,
    server: Option<String>,
    connect_timeout: Option<f64>,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built in.
    Default,
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "environment {v}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One setting and where it came from.
#[derive(Debug, Clone)]
pub struct Setting<T> {
    /// The value in force.
    pub value: T,
    /// Its layer.
    pub source: Source,
}

/// The agent's settings after layering.
#[derive(Debug)]
pub struct Settings {
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// Where the passphrase is read from, instead of the terminal.
    pub passphrase_file: Setting<Option<PathBuf>>,
    /// The server `sync` uses instead of the linked one.
    pub server: Setting<Option<String>>,
    /// The TCP connect timeout of `sync`, seconds.
    pub connect_timeout: Setting<f64>,
}

/// Where clap found argument `id`: a flag or the environment, or neither.
fn clap_source(m: Option<&ArgMatches>, id: &str, flag: &'static str, env: &'static str) -> Option<Source> {
    match m.and_then(|m| m.value_source(id)) {
        Some(ValueSource::CommandLine) => Some(Source::Flag(flag)),
        Some(ValueSource::EnvVariable) => Some(Source::Env(env)),
        _ => None,
    }
}

/// The value from clap if a flag or the environment gave it, else the
/// file's, else `default`.
fn layer<T>(clap: Option<(T, Source)>, file: Option<T>, path: &Option<PathBuf>, default: T) -> Setting<T> {
    match (clap, file) {
        (Some((value, source)), _) => Setting { value, source },
        (None, Some(value)) => Setting { value, source: Source::File(path.clone().unwrap_or_default()) },
        (None, None) => Setting { value: default, source: Source::Default },
    }
}

impl Settings {
    /// Reads `--config FILE` (which must exist), else `truce-agent.toml` in
    /// `data_dir` if it is there, and layers the flags and environment of
    /// `top` (the whole command line) and `sync` (its `sync` part) over it.
    pub fn resolve(
        config: Option<&Path>,
        data_dir: &Path,
        top: &ArgMatches,
        passphrase_file: Option<PathBuf>,
        sync: Option<(&ArgMatches, Option<String>, Option<f64>)>,
    ) -> Result<Settings> {
        let (path, required) = match config {
            Some(p) => (p.to_path_buf(), true),
            None => (data_dir.join(FILE_NAME), false),
        };
        let (file, f) = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let f = parse(&text).map_err(|message| AgentError::Config { path: path.clone(), message })?;
                (Some(path), f)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => (None, FileSettings::default()),
            Err(e) => return Err(AgentError::Config { path, message: format!("cannot read it: {e}") }),
        };
        let pass_source = clap_source(Some(top), "passphrase_file", "--passphrase-file", super::ENV_PASSPHRASE_FILE);
        let m = sync.as_ref().map(|s| s.0);
        let server_source = clap_source(m, "server", "--server", "TRUCE_AGENT_SERVER");
        let timeout_source = clap_source(m, "connect_timeout", "--connect-timeout", "TRUCE_AGENT_CONNECT_TIMEOUT");
        let (server, timeout) = sync.map(|s| (s.1, s.2)).unwrap_or_default();
        let s = Settings {
            passphrase_file: layer(
                passphrase_file.zip(pass_source).map(|(v, s)| (Some(v), s)),
                f.passphrase_file.map(Some),
                &file,
                None,
            ),
            server: layer(server.zip(server_source).map(|(v, s)| (Some(v), s)), f.server.map(Some), &file, None),
            connect_timeout: layer(
                timeout.zip(timeout_source),
                f.connect_timeout,
                &file,
                crate::sync::CONNECT_TIMEOUT.as_secs_f64(),
            ),
            file,
        };
        s.connect_timeout()?;
        Ok(s)
    }

    /// The connect timeout, positive and finite.
    pub fn connect_timeout(&self) -> Result<Duration> {
        let t = &self.connect_timeout;
        Duration::try_from_secs_f64(t.value).ok().filter(|d| !d.is_zero()).ok_or_else(|| {
            let name = match &t.source {
                Source::Flag(f) => f.to_string(),
                Source::Env(v) => v.to_string(),
                Source::File(p) => format!("connect_timeout in {}", p.display()),
                Source::Default => "connect_timeout".to_string(),
            };
            AgentError::input(
                "--connect-timeout",
                format!("{name} must be a positive number of seconds, not {}", t.value),
            )
        })
    }

    /// The settings as a TOML config file, each value followed by a
    /// comment saying where it came from.
    pub fn to_toml(&self, data_dir: &Path) -> String {
        let mut out = String::new();
        out.push_str("# The settings `truce-agent sync` would use: defaults, then the config file, then the\n");
        out.push_str("# environment, then flags. No passphrase or key is ever in them.\n");
        out.push_str(&format!("# data dir: {}\n", data_dir.display()));
        match &self.file {
            Some(f) => out.push_str(&format!("# config file: {}\n", f.display())),
            None => out.push_str(&format!("# config file: none ({FILE_NAME} is not in the data dir)\n")),
        }
        let s = |v: &str| toml::Value::String(v.to_string()).to_string();
        match &self.passphrase_file.value {
            Some(p) => out.push_str(&format!(
                "passphrase_file = {}  # {}\n",
                s(&p.to_string_lossy()),
                self.passphrase_file.source
            )),
            None => out.push_str("# passphrase_file: not set: asked on the terminal\n"),
        }
        match &self.server.value {
            Some(v) => out.push_str(&format!("server = {}  # {}\n", s(v), self.server.source)),
            None => out.push_str("# server: not set: the linked server\n"),
        }
        out.push_str(&format!(
            "connect_timeout = {:?}  # {}\n",
            self.connect_timeout.value, self.connect_timeout.source
        ));
        out
    }
}

/// Parses a config file's text; the error is one line naming the line
/// and the key.
fn parse(text: &str) -> std::result::Result<FileSettings, String> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().replace('\n', " ");
        let Some(span) = e.span() else { return message };
        let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
        let line = text.lines().nth(line_no - 1).unwrap_or_default();
        match line.split_once('=').map(|(k, _)| k.trim()).filter(|k| !k.is_empty() && !message.contains(k)) {
            Some(key) => format!("line {line_no}: {key}: {message}"),
            None => format!("line {line_no}: {message}"),
        }
    })
}
