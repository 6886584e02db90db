//! What differs between the laptops monitors carry: Linux, macOS, Windows.
//!
//! Every unix-only call of the agent is here, behind `cfg(unix)`, with its
//! counterpart for other platforms beside it (`.ci/check-portability`
//! refuses unix-only APIs anywhere else):
//!
//! - **Private directories and secret files.** On unix: directories 0700
//!   and secret files 0600 from the moment they exist. On Windows: the data
//!   directory is under the user's profile (`directories` puts it in
//!   `%LOCALAPPDATA%`, which roaming profiles do not copy to other
//!   machines), whose access list already admits only that user, the system
//!   and administrators; new files inherit it. Truce sets no access list of
//!   its own there, so a `--data-dir` elsewhere gets that folder's.
//! - **Durable renames.** fsync of the directory on unix; nothing on Windows.
//! - **Shutdown.** SIGTERM and SIGINT on unix; Ctrl-C, Ctrl-Break and the
//!   console window closing on Windows.
//! - **Core dumps.** Off on unix (`RLIMIT_CORE` 0, and on Linux the process
//!   is made non-dumpable, which also keeps other processes of the same user
//!   from reading its memory with ptrace). Windows writes no dump unless
//!   Windows Error Reporting is set up to collect them.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use crate::error::{AgentError, Result};

/// Creates `dir` (and missing parents) readable by its owner only, or
/// tightens an existing directory. On unix the mode is given at creation, so
/// there is no moment when the directory is open to others.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| AgentError::io("cannot create directory", dir, e))?;
        // `recursive` leaves an existing directory's mode alone; a directory
        // that will hold secrets must not be readable by others.
        let meta = fs::metadata(dir).map_err(|e| AgentError::io("cannot read", dir, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| AgentError::io("cannot restrict permissions of", dir, e))?;
        }
    }
    #[cfg(not(unix))]
    {
        fs::create_dir_all(dir).map_err(|e| AgentError::io("cannot create directory", dir, e))?;
    }
    Ok(())
}

/// Opens a new file for writing, readable by its owner only (0600 on
/// unix). Fails with `AlreadyExists` if there is a file at `path`.
pub fn create_secret_file(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes a rename or creation in `dir` durable: fsync of the directory on
/// unix. Windows cannot open a directory as a file without a flag std does
/// not set, and NTFS journals the rename itself, so there it does nothing.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| AgentError::io("cannot sync directory", dir, e))?;
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
    }
    Ok(())
}

/// Turns core dumps off for this process where the platform allows, so a
/// crash never writes the unsealed keys to disk. Best effort: a failure
/// leaves the system's setting, which is no worse than before.
pub fn disable_core_dumps() {
    #[cfg(unix)]
    {
        use rustix::process::{setrlimit, Resource, Rlimit};
        let _ = setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) });
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
        }
    }
}

/// Resolves when the process is asked to stop: SIGTERM or SIGINT on unix;
/// Ctrl-C, Ctrl-Break or the console closing on Windows.
pub async fn shutdown_signal() -> Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(AgentError::Terminal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(AgentError::Terminal)?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
        let mut c = ctrl_c().map_err(AgentError::Terminal)?;
        let mut brk = ctrl_break().map_err(AgentError::Terminal)?;
        let mut close = ctrl_close().map_err(AgentError::Terminal)?;
        tokio::select! {
            _ = c.recv() => {}
            _ = brk.recv() => {}
            _ = close.recv() => {}
        }
    }
    #[cfg(not(any(unix, windows)))]
    {
        tokio::signal::ctrl_c().await.map_err(AgentError::Terminal)?;
    }
    Ok(())
}
