//! The shutdown signal: where it comes from ([`signal`]: SIGTERM or SIGINT)
//! and how each connection sees it ([`Shutdown`]).
//!
//! The listener holds the sending side; every connection holds a
//! [`Shutdown`]. When it fires, connections stop reading new frames but
//! finish the batch they are verifying or committing and send its Ack, so
//! SIGTERM never leaves an agent with a stored batch and no answer.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// Listens for the server's shutdown.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// For [`Shutdown::never`]: the sender, kept alive so `recv` waits.
    _hold: Option<Arc<watch::Sender<bool>>>,
}

impl Shutdown {
    /// A new signal and the sender that fires it (send `true`).
    pub fn channel() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown { rx, _hold: None })
    }

    /// A signal that never fires (for driving one session on its own).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown { rx, _hold: Some(Arc::new(tx)) }
    }

    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown has begun (or the sender is gone).
    pub async fn recv(&mut self) {
        // An error means the sender was dropped: the server is going away.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// Installs the SIGTERM and SIGINT handlers now (`truce_shared::signal`) and
/// returns the future [`crate::run`] takes: it resolves on the first of
/// them, logging which. Install before opening the port, so that from then
/// on SIGTERM means "finish and exit 0", never the default "die".
pub fn signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let stop = truce_shared::signal::shutdown_signal()?;
    Ok(async move {
        let signal = stop.await;
        tracing::info!(signal = signal.name(), "shutdown requested");
    })
}
