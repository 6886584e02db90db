//! Runs a program and keeps what it printed, so a failing assertion can
//! say exactly what ran: the command line, the working directory, the exit
//! status, stdout and stderr (ripgrep's `tests/util.rs` does the same).
//!
//! [`bin`] finds the workspace binaries (`truce-agent`, `truce-server`,
//! `truce-certs`) beside the running test.
//!
//! This file uses only the standard library: `truce-certs`' own tests
//! include it by path (see the crate docs on dependency cycles).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// A finished command: what ran, where, and what it printed. `Display`
/// gives the full account for an assertion message; `Deref` gives the
/// [`Output`] (`ran.status`, `ran.stdout`).
pub struct Ran {
    /// The command line, for messages.
    pub line: String,
    /// The directory it ran in.
    pub cwd: PathBuf,
    /// Its exit status and output.
    pub out: Output,
}

/// Runs `cmd` to the end (stdin closed, stdout and stderr captured).
/// Panics, naming the command, only if it could not be started.
pub fn run(cmd: &mut Command) -> Ran {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        line.push(' ');
        line.push_str(&a.to_string_lossy());
    }
    let cwd = match cmd.get_current_dir() {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir().unwrap_or_default(),
    };
    let out = cmd.output().unwrap_or_else(|e| panic!("could not run {line} (in {}): {e}", cwd.display()));
    Ran { line, cwd, out }
}

/// Runs `program args…` (see [`run`]).
pub fn run_args<S: AsRef<std::ffi::OsStr>>(program: impl AsRef<Path>, args: &[S]) -> Ran {
    run(Command::new(program.as_ref()).args(args))
}

impl Ran {
    /// Stdout as text.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    /// Stderr as text.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }

    /// Whether it exited 0.
    pub fn ok(&self) -> bool {
        self.out.status.success()
    }

    /// Panics with the full account unless it exited 0; returns stdout.
    pub fn expect_ok(self) -> String {
        assert!(self.ok(), "{}", self.describe("expected success"));
        self.stdout()
    }

    /// Panics with the full account unless it failed; returns stderr.
    pub fn expect_fail(self) -> String {
        assert!(!self.ok(), "{}", self.describe("expected failure"));
        self.stderr()
    }

    /// Panics unless it failed with exactly one line on stderr; returns
    /// that line (trimmed). The binaries promise one-line errors.
    pub fn expect_one_line_error(self) -> String {
        assert!(!self.ok(), "{}", self.describe("expected failure"));
        let err = self.stderr();
        assert_eq!(err.trim_end().lines().count(), 1, "{}", self.describe("expected one line of error"));
        err.trim_end().to_owned()
    }

    /// `what`, then the full account: for a failing assertion.
    pub fn describe(&self, what: &str) -> String {
        format!("{what}\n{self}")
    }
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command: {}\ncwd: {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.line,
            self.cwd.display(),
            self.out.status,
            self.stdout(),
            self.stderr()
        )
    }
}

impl std::ops::Deref for Ran {
    type Target = Output;

    fn deref(&self) -> &Output {
        &self.out
    }
}

/// Path of a workspace binary (`truce-agent`, `truce-server`,
/// `truce-certs`) built in the same profile as the running executable.
/// If they are missing (say `cargo run -p truce-tests --bin demo` on a
/// fresh clone) they are built once with the same cargo.
pub fn bin(name: &str) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the path of the running test");
        let mut dir = exe.parent().expect("the test's directory").to_path_buf();
        if dir.ends_with("deps") {
            dir.pop();
        }
        let all_there = ["truce-agent", "truce-server", "truce-certs"].iter().all(|b| dir.join(b).exists());
        if !all_there {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-p", "truce-agent", "-p", "truce-server", "-p", "truce-certs"]);
            if dir.ends_with("release") {
                cmd.arg("--release");
            }
            run(&mut cmd).expect_ok();
        }
        dir
    });
    dir.join(name)
}
