//! `run`'s settings, layered: built-in defaults, then the config file
//! (`truce-server.toml` in the data dir, or `--config FILE`), then the
//! environment (`TRUCE_SERVER_*`, `TRUCE_DATABASE_URL`), then flags. Each
//! value keeps where it came from, so `run --print-config` can say so.
//!
//! ```text
//! # truce-server.toml: every key is optional; flags and environment win.
//! database = "postgres://truce@/truce?host=/var/run/postgresql"
//! listen = "0.0.0.0:4433"
//! ca = "/etc/truce/ca.pem"
//! cert = "/etc/truce/server.pem"
//! key = "/etc/truce/server.key"
//! crl = ["/etc/truce/crl.pem"]       # or one string; or no_crl = true
//! max_frame = 4194304
//! handshake_timeout = 3              # seconds
//! metrics = "127.0.0.1:9464"
//! ```
//!
//! The keys are `run`'s flags with `_` for `-`. An unknown key, or a value
//! of the wrong kind, is an error naming the key, the file and the line.
//! Only `database` is read by the other commands. The file names files
//! (the server's key among them) but never holds key material, and
//! `--print-config` masks the database password.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::ArgMatches;
use serde::Deserialize;
use truce_shared::limits;

use super::args::RunArgs;
use crate::config::Limits;

/// The config file's name in the data dir.
pub const FILE_NAME: &str = "truce-server.toml";

/// What the config file may say. Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    database: Option<String>,
    listen: Option<SocketAddr>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    crl: Option<OneOrMany>,
    no_crl: Option<bool>,
    max_frame: Option<u32>,
    max_batch: Option<u32>,
    max_connections: Option<usize>,
    max_unauthenticated: Option<usize>,
    max_unauthenticated_per_ip: Option<usize>,
    max_connections_per_cert: Option<usize>,
    max_frame_bytes_in_flight: Option<u64>,
    handshake_timeout: Option<f64>,
    idle_timeout: Option<f64>,
    verify_threads: Option<usize>,
    metrics: Option<SocketAddr>,
}

/// `crl = "FILE"` or `crl = ["FILE", …]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<PathBuf> {
        match self {
            OneOrMany::One(p) => vec![p],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The config file that was read, and what it said.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// The file, if one was read.
    pub path: Option<PathBuf>,
    settings: FileSettings,
}

impl ConfigFile {
    /// Reads `--config FILE` (which must exist), else `truce-server.toml`
    /// in `data_dir` if it is there.
    pub fn load(flag: Option<&Path>, data_dir: &Path) -> Result<ConfigFile> {
        let (path, required) = match flag {
            Some(p) => (p.to_path_buf(), true),
            None => (data_dir.join(FILE_NAME), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(ConfigFile::default()),
            Err(e) => bail!("cannot read the config file {}: {e}", path.display()),
        };
        let settings = parse(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        Ok(ConfigFile { path: Some(path), settings })
    }

    /// The `database` key, for commands other than `run`.
    pub fn database(&self) -> Option<&str> {
        self.settings.database.as_deref()
    }

    fn source(&self) -> Source {
        Source::File(self.path.clone().unwrap_or_default())
    }
}

/// Parses a config file's text; the error is one line naming the line
/// and the key.
fn parse(text: &str) -> Result<FileSettings, String> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().replace('\n', " ");
        let Some(span) = e.span() else { return message };
        let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
        let line = text.lines().nth(line_no - 1).unwrap_or_default();
        // The key is what stands before `=` on the line at fault; serde's
        // message for an unknown key names it already.
        match line.split_once('=').map(|(k, _)| k.trim()).filter(|k| !k.is_empty() && !message.contains(k)) {
            Some(key) => format!("line {line_no}: {key}: {message}"),
            None => format!("line {line_no}: {message}"),
        }
    })
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

impl Source {
    fn is_flag(&self) -> bool {
        matches!(self, Source::Flag(_))
    }

    /// How to name the setting `key` from this source in an error: the
    /// flag, the variable, or the key and the file.
    fn naming(&self, key: &str) -> String {
        match self {
            Source::Flag(f) => f.to_string(),
            Source::Env(v) => v.to_string(),
            Source::File(p) => format!("{key} in {}", p.display()),
            Source::Default => key.to_string(),
        }
    }
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

/// Every `run` setting after layering.
#[derive(Debug)]
pub struct RunSettings {
    /// The config file read, if any.
    pub file: Option<PathBuf>,
    /// `--database`: a PostgreSQL URL or an SQLite file; none for the
    /// data dir's own file.
    pub database: Setting<Option<String>>,
    /// `--listen`.
    pub listen: Setting<Option<SocketAddr>>,
    /// `--ca`.
    pub ca: Setting<Option<PathBuf>>,
    /// `--cert`.
    pub cert: Setting<Option<PathBuf>>,
    /// `--key`.
    pub key: Setting<Option<PathBuf>>,
    /// `--crl`.
    pub crl: Setting<Vec<PathBuf>>,
    /// `--no-crl`.
    pub no_crl: Setting<bool>,
    /// `--max-frame`.
    pub max_frame: Setting<u32>,
    /// `--max-batch`.
    pub max_batch: Setting<u32>,
    /// `--max-connections`.
    pub max_connections: Setting<usize>,
    /// `--max-unauthenticated`.
    pub max_unauthenticated: Setting<usize>,
    /// `--max-unauthenticated-per-ip`.
    pub max_unauthenticated_per_ip: Setting<usize>,
    /// `--max-connections-per-cert`.
    pub max_connections_per_cert: Setting<usize>,
    /// `--max-frame-bytes-in-flight`.
    pub max_frame_bytes_in_flight: Setting<u64>,
    /// `--handshake-timeout`, seconds.
    pub handshake_timeout: Setting<f64>,
    /// `--idle-timeout`, seconds.
    pub idle_timeout: Setting<f64>,
    /// `--verify-threads`; none for one per core.
    pub verify_threads: Setting<Option<usize>>,
    /// `--metrics`: where to serve Prometheus metrics, if anywhere.
    pub metrics: Setting<Option<SocketAddr>>,
    /// The disk quotas (`--max-reports-per-key` and the rest): flags only.
    pub quotas: crate::store::Quotas,
    /// `--crl-check-interval`, seconds: a flag only.
    pub crl_check_interval: f64,
    /// `--max-evidence-size`, `--evidence-quota`, `--evidence-partial-ttl`: flags only.
    pub evidence: crate::evidence::EvidenceLimits,
}

/// Where clap found argument `id` of `m`: a flag, the environment, or
/// neither (its default, or absent).
fn clap_source(m: Option<&ArgMatches>, id: &str, flag: &'static str, env: &'static str) -> Option<Source> {
    match m.and_then(|m| m.value_source(id)) {
        Some(ValueSource::CommandLine) => Some(Source::Flag(flag)),
        Some(ValueSource::EnvVariable) => Some(Source::Env(env)),
        _ => None,
    }
}

impl RunSettings {
    /// Layers `args` (flags and environment, as clap read them: `run`'s
    /// matches tell which was which), `database` (the global flag, with its
    /// matches `top`) over `file` over the defaults.
    pub fn resolve(
        args: &RunArgs,
        run: Option<&ArgMatches>,
        database: Option<&str>,
        top: Option<&ArgMatches>,
        file: ConfigFile,
    ) -> Result<RunSettings> {
        let from_file = file.source();
        let f = &file.settings;
        // One key: the value from the highest layer that has it.
        macro_rules! layer {
            ($id:ident, $flag:literal, $env:literal, $default:expr) => {{
                match (args.$id.clone(), clap_source(run, stringify!($id), $flag, $env)) {
                    (Some(v), Some(source)) => Setting { value: Some(v), source },
                    _ => match f.$id.clone() {
                        Some(v) => Setting { value: Some(v), source: from_file.clone() },
                        None => Setting { value: $default, source: Source::Default },
                    },
                }
            }};
        }
        macro_rules! with_default {
            ($id:ident, $flag:literal, $env:literal, $default:expr) => {{
                let s = layer!($id, $flag, $env, None);
                Setting { value: s.value.unwrap_or($default), source: s.source }
            }};
        }
        let database = match (database, clap_source(top, "database", "--database", "TRUCE_DATABASE_URL")) {
            (Some(v), Some(source)) => Setting { value: Some(v.to_string()), source },
            _ => match &f.database {
                Some(v) => Setting { value: Some(v.clone()), source: from_file.clone() },
                None => Setting { value: None, source: Source::Default },
            },
        };
        // Revocation is one choice, `crl` or `no_crl`: the highest layer
        // that makes it decides.
        let crl_flag = clap_source(run, "crl", "--crl", "TRUCE_SERVER_CRL").filter(|_| !args.crl.is_empty());
        let no_crl_flag =
            clap_source(run, "no_crl", "--no-crl", "TRUCE_SERVER_NO_CRL").map(|source| (args.no_crl, source));
        let (crl, no_crl) = match (crl_flag, no_crl_flag) {
            // A flag beats the environment; two of one layer disagree.
            (Some(c), Some((true, n))) if c.is_flag() == n.is_flag() => {
                bail!("{c} and {n} disagree: give a CRL, or say there is none, not both")
            }
            (Some(_), Some((true, n))) if n.is_flag() => (None, Some((true, n))),
            (Some(c), _) => (Some(Setting { value: args.crl.clone(), source: c }), None),
            (None, Some(n)) => (None, Some(n)),
            (None, None) => {
                if f.crl.is_some() && f.no_crl == Some(true) {
                    bail!(
                        "config file {}: crl and no_crl = true disagree: give a CRL, or say there is none, not both",
                        file.path.as_deref().unwrap_or(Path::new("")).display()
                    );
                }
                match f.crl.clone() {
                    Some(c) => (Some(Setting { value: c.into_vec(), source: from_file.clone() }), None),
                    None => (None, f.no_crl.map(|b| (b, from_file.clone()))),
                }
            }
        };
        let crl = crl.unwrap_or(Setting { value: Vec::new(), source: Source::Default });
        let no_crl = match no_crl {
            Some((value, source)) => Setting { value, source },
            None => Setting { value: false, source: Source::Default },
        };
        let s = RunSettings {
            file: file.path.clone(),
            database,
            listen: layer!(listen, "--listen", "TRUCE_SERVER_LISTEN", None),
            ca: layer!(ca, "--ca", "TRUCE_SERVER_CA", None),
            cert: layer!(cert, "--cert", "TRUCE_SERVER_CERT", None),
            key: layer!(key, "--key", "TRUCE_SERVER_KEY", None),
            crl,
            no_crl,
            max_frame: with_default!(max_frame, "--max-frame", "TRUCE_SERVER_MAX_FRAME", limits::MAX_FRAME),
            max_batch: with_default!(max_batch, "--max-batch", "TRUCE_SERVER_MAX_BATCH", limits::MAX_BATCH),
            max_connections: with_default!(
                max_connections,
                "--max-connections",
                "TRUCE_SERVER_MAX_CONNECTIONS",
                limits::MAX_CONNECTIONS
            ),
            max_unauthenticated: with_default!(
                max_unauthenticated,
                "--max-unauthenticated",
                "TRUCE_SERVER_MAX_UNAUTHENTICATED",
                limits::MAX_UNAUTHENTICATED
            ),
            max_unauthenticated_per_ip: with_default!(
                max_unauthenticated_per_ip,
                "--max-unauthenticated-per-ip",
                "TRUCE_SERVER_MAX_UNAUTHENTICATED_PER_IP",
                limits::MAX_UNAUTHENTICATED_PER_IP
            ),
            max_connections_per_cert: with_default!(
                max_connections_per_cert,
                "--max-connections-per-cert",
                "TRUCE_SERVER_MAX_CONNECTIONS_PER_CERT",
                limits::MAX_CONNECTIONS_PER_CERT
            ),
            max_frame_bytes_in_flight: with_default!(
                max_frame_bytes_in_flight,
                "--max-frame-bytes-in-flight",
                "TRUCE_SERVER_MAX_FRAME_BYTES_IN_FLIGHT",
                limits::MAX_FRAME_BYTES_IN_FLIGHT
            ),
            handshake_timeout: with_default!(
                handshake_timeout,
                "--handshake-timeout",
                "TRUCE_SERVER_HANDSHAKE_TIMEOUT",
                limits::SERVER_HANDSHAKE_TIMEOUT.as_secs_f64()
            ),
            idle_timeout: with_default!(
                idle_timeout,
                "--idle-timeout",
                "TRUCE_SERVER_IDLE_TIMEOUT",
                limits::IDLE_TIMEOUT.as_secs_f64()
            ),
            verify_threads: layer!(verify_threads, "--verify-threads", "TRUCE_SERVER_VERIFY_THREADS", None),
            metrics: layer!(metrics, "--metrics", "TRUCE_SERVER_METRICS", None),
            quotas: crate::store::Quotas {
                max_reports_per_key: args.max_reports_per_key,
                max_bytes_per_key: args.max_bytes_per_key,
                max_reports_per_cert: args.max_reports_per_cert,
                max_bytes_per_cert: args.max_bytes_per_cert,
                max_quarantined: args.max_quarantined,
                max_quarantined_per_key: args.max_quarantined_per_key,
                rejected_prefix: args.rejected_prefix,
            },
            crl_check_interval: args.crl_check_interval,
            evidence: crate::evidence::EvidenceLimits {
                max_size: args.max_evidence_size,
                quota: args.evidence_quota,
                partial_ttl: std::time::Duration::from_secs(args.evidence_partial_ttl),
            },
        };
        seconds("handshake_timeout", &s.handshake_timeout)?;
        seconds("idle_timeout", &s.idle_timeout)?;
        if let Setting { value: Some(0), source } = &s.verify_threads {
            bail!("{} must be at least 1 (leave it out for one per core)", source.naming("verify_threads"));
        }
        Ok(s)
    }

    /// The limits these settings give, checked.
    pub fn limits(&self) -> Result<Limits> {
        let limits = Limits {
            max_frame: self.max_frame.value,
            max_batch: self.max_batch.value,
            max_connections: self.max_connections.value,
            max_unauthenticated: self.max_unauthenticated.value,
            max_unauthenticated_per_ip: self.max_unauthenticated_per_ip.value,
            max_connections_per_cert: self.max_connections_per_cert.value,
            max_frame_bytes_in_flight: self.max_frame_bytes_in_flight.value,
            handshake_timeout: seconds("handshake_timeout", &self.handshake_timeout)?,
            idle_timeout: seconds("idle_timeout", &self.idle_timeout)?,
            quotas: self.quotas.clone(),
        };
        if let Err(e) = limits.check() {
            // Say where the limits that were not left at their default came from.
            let set: Vec<String> = self
                .limit_lines()
                .into_iter()
                .filter(|(_, _, source)| *source != Source::Default)
                .map(|(key, value, source)| format!("{key} = {value} from {source}"))
                .collect();
            if set.is_empty() {
                bail!("{e}");
            }
            bail!("{e} (set: {})", set.join(", "));
        }
        Ok(limits)
    }

    /// The limits as `(key, value, source)`, in the order they are printed.
    fn limit_lines(&self) -> Vec<(&'static str, String, Source)> {
        fn l<T: std::fmt::Display>(k: &'static str, s: &Setting<T>) -> (&'static str, String, Source) {
            (k, s.value.to_string(), s.source.clone())
        }
        fn secs(k: &'static str, s: &Setting<f64>) -> (&'static str, String, Source) {
            (k, format!("{:?}", s.value), s.source.clone())
        }
        vec![
            l("max_frame", &self.max_frame),
            l("max_batch", &self.max_batch),
            l("max_connections", &self.max_connections),
            l("max_unauthenticated", &self.max_unauthenticated),
            l("max_unauthenticated_per_ip", &self.max_unauthenticated_per_ip),
            l("max_connections_per_cert", &self.max_connections_per_cert),
            l("max_frame_bytes_in_flight", &self.max_frame_bytes_in_flight),
            secs("handshake_timeout", &self.handshake_timeout),
            secs("idle_timeout", &self.idle_timeout),
        ]
    }

    /// The settings as a TOML config file, each value followed by a comment
    /// saying where it came from. The database password is masked; nothing
    /// else here is secret (files are named, never read).
    pub fn to_toml(&self, data_dir: &Path) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line("# The settings `truce-server run` would use: defaults, then the config file, then the".into());
        line("# environment, then flags. The database password is masked.".into());
        line(format!("# data dir: {}", data_dir.display()));
        match &self.file {
            Some(f) => line(format!("# config file: {}", f.display())),
            None => line(format!("# config file: none ({} is not in the data dir)", FILE_NAME)),
        }
        let s = |v: &str| toml::Value::String(v.to_string()).to_string();
        let p = |v: &Path| s(&v.to_string_lossy());
        let mut set = |key: &str, value: Option<String>, source: &Source, unset: &str| match value {
            Some(v) => line(format!("{key} = {v}  # {source}")),
            None => line(format!("# {key}: {unset}")),
        };
        set(
            "database",
            self.database.value.as_deref().map(|u| s(&mask_database(u))),
            &self.database.source,
            "not set: the data dir's SQLite file (truce.sqlite)",
        );
        set("listen", self.listen.value.map(|a| s(&a.to_string())), &self.listen.source, "not set (required)");
        for (key, v) in [("ca", &self.ca), ("cert", &self.cert), ("key", &self.key)] {
            set(key, v.value.as_deref().map(p), &v.source, "not set (required)");
        }
        let crls: Vec<String> = self.crl.value.iter().map(|c| p(c)).collect();
        set(
            "crl",
            (!crls.is_empty()).then(|| format!("[{}]", crls.join(", "))),
            &self.crl.source,
            "not set (required unless no_crl = true)",
        );
        set("no_crl", Some(self.no_crl.value.to_string()), &self.no_crl.source, "");
        for (key, value, source) in self.limit_lines() {
            set(key, Some(value), &source, "");
        }
        set(
            "verify_threads",
            self.verify_threads.value.map(|n| n.to_string()),
            &self.verify_threads.source,
            "not set: one per core",
        );
        set(
            "metrics",
            self.metrics.value.map(|a| s(&a.to_string())),
            &self.metrics.source,
            "not set: no metrics served",
        );
        out
    }
}

/// Seconds as a duration: positive and finite, else an error naming the
/// key and where it came from.
fn seconds(key: &str, s: &Setting<f64>) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(s.value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{} must be a positive number of seconds, not {}", s.source.naming(key), s.value))
}

/// A database URL with its password masked, in the user part or in a
/// `password=` parameter.
pub fn mask_database(url: &str) -> String {
    let masked = crate::store::redact(url);
    let Some((base, query)) = masked.split_once('?') else { return masked };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_value_or_an_unknown_key_names_the_key_and_the_line() {
        let e = parse("listen = \"127.0.0.1:1\"\nmax_frame = \"big\"\n").unwrap_err();
        assert!(e.starts_with("line 2: max_frame: "), "{e}");
        let e = parse("max_frames = 3\n").unwrap_err();
        assert!(e.starts_with("line 1: ") && e.contains("unknown field `max_frames`"), "{e}");
        let f = parse("crl = \"a.pem\"\nhandshake_timeout = 3\n").unwrap();
        assert_eq!(f.crl.map(OneOrMany::into_vec), Some(vec![PathBuf::from("a.pem")]));
        assert_eq!(f.handshake_timeout, Some(3.0));
    }

    #[test]
    fn database_passwords_are_masked_wherever_they_are() {
        assert_eq!(mask_database("postgres://truce:s3cret@db/truce"), "postgres://truce:***@db/truce");
        assert_eq!(
            mask_database("postgres://truce@db/truce?sslmode=require&password=s3cret"),
            "postgres://truce@db/truce?sslmode=require&password=***"
        );
    }
}
