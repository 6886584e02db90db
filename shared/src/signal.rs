//! The request to stop, as both binaries hear it: SIGTERM and SIGINT on
//! unix; Ctrl-C, Ctrl-Break and the console window closing on Windows.
//!
//! [`shutdown_signal`] installs the handlers when it is called, not when the
//! future is first polled, so a caller can install them before it starts
//! work that a signal must not cut short (the server does so before it
//! opens its port: from then on SIGTERM means "finish and exit 0", never
//! the default "die"). What to do on the signal is the caller's.
//! Needs a tokio runtime with I/O enabled.

use std::future::Future;
use std::io;

/// Which request to stop arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM (unix): a service manager stopping the process.
    Terminate,
    /// SIGINT (unix) or Ctrl-C (Windows): a person at the terminal.
    Interrupt,
    /// Ctrl-Break (Windows).
    Break,
    /// The console window closing (Windows).
    Close,
}

impl Signal {
    /// The name a log line gives it ("SIGTERM").
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(unix)]
            Signal::Terminate => "SIGTERM",
            #[cfg(unix)]
            Signal::Interrupt => "SIGINT",
            #[cfg(not(unix))]
            Signal::Terminate => "terminate",
            #[cfg(not(unix))]
            Signal::Interrupt => "Ctrl-C",
            Signal::Break => "Ctrl-Break",
            Signal::Close => "console closed",
        }
    }
}

/// Installs the handlers now and returns a future that resolves, with the
/// signal, when the process is asked to stop. Fails only if a handler
/// cannot be installed.
pub fn shutdown_signal() -> io::Result<impl Future<Output = Signal> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => Signal::Terminate,
                _ = int.recv() => Signal::Interrupt,
            }
        })
    }
    #[cfg(windows)]
    {
        use tokio::signal::windows::{ctrl_break, ctrl_c, ctrl_close};
        let mut c = ctrl_c()?;
        let mut brk = ctrl_break()?;
        let mut close = ctrl_close()?;
        Ok(async move {
            tokio::select! {
                _ = c.recv() => Signal::Interrupt,
                _ = brk.recv() => Signal::Break,
                _ = close.recv() => Signal::Close,
            }
        })
    }
    #[cfg(not(any(unix, windows)))]
    {
        Ok(async move {
            // No handler to install ahead: wait for Ctrl-C; if even that
            // cannot be had, never resolve rather than stop at once.
            match tokio::signal::ctrl_c().await {
                Ok(()) => Signal::Interrupt,
                Err(_) => std::future::pending().await,
            }
        })
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sigterm_resolves_the_future_with_its_name() {
        let stop = shutdown_signal().unwrap();
        // SIGTERM to ourselves: with the handler installed it is only noted.
        let me = std::process::id().to_string();
        let status = std::process::Command::new("kill").args(["-TERM", &me]).status().unwrap();
        assert!(status.success());
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), stop).await.unwrap();
        assert_eq!(got, Signal::Terminate);
        assert_eq!(got.name(), "SIGTERM");
    }
}
