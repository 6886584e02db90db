//! What differs between the laptops monitors carry: Linux, macOS, Windows.
//!
//! Every unix-only call of the agent's own is here, behind `cfg(unix)`, with
//! its counterpart for other platforms beside it (`.ci/check-portability`
//! refuses unix-only APIs anywhere else in `agent/src`). What the agent
//! shares with the server lives in `truce_shared`, checked the same way:
//!
//! - **Private directories and secret files, durable renames:**
//!   `truce_shared::fs`. On unix: directories 0700 and secret files 0600
//!   from the moment they exist, directories fsynced after a rename. On
//!   Windows: the data directory is under the user's profile (`directories`
//!   puts it in `%LOCALAPPDATA%`, which roaming profiles do not copy to
//!   other machines), whose access list already admits only that user, the
//!   system and administrators; new files inherit it. Truce sets no access
//!   list of its own there, so a `--data-dir` elsewhere gets that folder's.
//! - **Shutdown:** `truce_shared::signal`. SIGTERM and SIGINT on unix;
//!   Ctrl-C, Ctrl-Break and the console window closing on Windows.
//! - **Core dumps** (here). Off on unix (`RLIMIT_CORE` 0, and on Linux the process
//!   is made non-dumpable, which also keeps other processes of the same user
//!   from reading its memory with ptrace). Windows writes no dump unless
//!   Windows Error Reporting is set up to collect them.

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
