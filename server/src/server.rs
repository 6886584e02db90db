//! The listener: accepts TCP, runs the TLS handshake under a deadline, lets
//! each connection in through [`crate::admission`], and hands each session
//! to [`crate::session`].
//!
//! Accepting never pauses: a connection that has not shown a certificate
//! takes a place at the [`Gate`] (the oldest is dropped when it is full);
//! one that has takes a session slot (waiting, within its handshake
//! deadline, if all are taken) and a slot of its certificate (refused with
//! a reason when that certificate holds its cap).
//!
//! [`run`] takes a bound listener and a shutdown future, so tests and
//! benchmarks start a real server on `127.0.0.1:0` in-process ([`spawn`]).
//! It owns the server's moving parts for their whole life: the writer
//! thread, the verification pool, the connection semaphore and the shutdown
//! signal. When `shutdown` resolves it stops accepting, lets every session
//! finish the batch it is on (and send its Ack), waits for the writer to
//! commit what is queued, and returns.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Duration, Instant};
use tokio_rustls::TlsAcceptor;

use crate::admission::{CertSlots, ClientCert, Eviction, Gate};
use crate::config::{Config, LimitsError};
use crate::metrics::{Limit, Metrics, Refusal};
use crate::revocation::Revocation;
use crate::session::{self, Context, End, SessionError, Summary};
use crate::shutdown::Shutdown;
use crate::store::{Store, StoreError};
use crate::verify::Verifier;
use crate::writer::Writer;

/// How long a closing session waits to deliver TLS close_notify.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The limits cannot work together.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The writer thread could not be started.
    #[error("cannot start the writer thread: {0}")]
    Writer(std::io::Error),
    /// The writer thread died while the server ran: nothing could be
    /// acknowledged any more, so the server stopped (a service manager
    /// restarts it; every unacknowledged report is sent again).
    #[error("the writer thread died; stopped so that nothing is accepted that cannot be acknowledged")]
    WriterDied,
    /// The SIGHUP handler could not be installed.
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
    /// The store's log could not be set up.
    #[error("the store's log is not set up")]
    NoLog,
    /// The evidence directory could not be opened.
    #[error("{0}")]
    Evidence(String),
}

/// Everything the accept loop shares with the connection tasks.
struct Listener {
    /// TLS with the mission's policy.
    acceptor: TlsAcceptor,
    /// What sessions share: writer, verifier, receipt key, limits.
    ctx: Context,
    /// Connections that have not finished the TLS handshake.
    gate: Arc<Gate>,
    /// One permit per authenticated session ([`crate::Limits::max_connections`]).
    sessions: Arc<Semaphore>,
    /// Sessions per client certificate.
    certs: Arc<CertSlots>,
    /// What is counted for `run --metrics`.
    metrics: Arc<Metrics>,
    /// The CRLs in force and the sessions a reload may end.
    revocation: Option<Arc<Revocation>>,
}

/// Aborts a background task when dropped (the metrics listener, which
/// lives as long as [`run_with_metrics`]).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serves on `listener` until `shutdown` resolves, then finishes in-flight
/// batches and returns. Errors if it cannot start, or if the writer thread
/// dies while it runs ([`ServeError::WriterDied`]: it stops accepting, ends
/// every session without an Ack for what was not stored, and returns).
pub async fn run(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    run_with_metrics(listener, None, config, shutdown).await
}

/// [`run`], also serving `config.metrics` in the Prometheus text format on
/// `metrics` (`GET /metrics`, see [`crate::metrics::serve`]) while it runs.
pub async fn run_with_metrics(
    listener: TcpListener,
    metrics: Option<TcpListener>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    config.limits.check()?;
    let mut store = Store::open(&config.db)?;
    let head = store.open_log(&config.log_seed, truce_shared::log::DEFAULT_MISSION)?;
    let log_key = store.log_key().ok_or(ServeError::NoLog)?;
    tracing::info!(origin = log_key.origin(), size = head.size, "the log");
    // Proofs are read on a connection of their own, beside the writer's.
    let prover = Store::open(&config.db)?;
    let evidence = Arc::new(
        crate::evidence::Evidence::open(&config.evidence_dir, config.evidence.clone())
            .map_err(|e| ServeError::Evidence(e.to_string()))?,
    );
    if let Err(e) = evidence.sweep() {
        tracing::warn!(error = %e, "cannot remove abandoned partial evidence files");
    }
    let (writer, mut writer_thread) =
        Writer::spawn_measured(store, config.limits.quotas.clone(), config.metrics.clone())
            .map_err(ServeError::Writer)?;
    let limits = config.limits.clone();
    let me = Arc::new(Listener {
        acceptor: TlsAcceptor::from(config.tls),
        // tokio's semaphores hold at most MAX_PERMITS (2^61) and panic
        // above it; more threads or connections than that is "no cap".
        ctx: Context::new(
            writer,
            Verifier::new(config.verify_threads.min(Semaphore::MAX_PERMITS)),
            log_key,
            prover,
            config.limits,
        )
        .with_evidence(evidence.clone())
        .with_metrics(config.metrics.clone()),
        gate: Gate::new(limits.max_unauthenticated, limits.max_unauthenticated_per_ip),
        sessions: Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS))),
        certs: CertSlots::new(limits.max_connections_per_cert),
        metrics: config.metrics.clone(),
        revocation: config.revocation.clone(),
    });
    // The metrics address is on the same line as the main one, after it.
    let metrics_addr = metrics.as_ref().and_then(|m| m.local_addr().ok());
    let _metrics_task = metrics.map(|m| AbortOnDrop(tokio::spawn(crate::metrics::serve(m, config.metrics.clone()))));
    // SIGHUP is caught from here on; the CRLs are looked at while serving.
    if let Some(r) = &me.revocation {
        r.report_to(config.metrics.clone());
    }
    let crl_watch = match &me.revocation {
        Some(r) => Some(tokio::spawn(
            crate::revocation::watch(r.clone(), config.crl_check_interval).map_err(ServeError::Signal)?,
        )),
        None => None,
    };
    if let Ok(addr) = listener.local_addr() {
        match metrics_addr {
            Some(metrics) => tracing::info!(%addr, %metrics, "listening"),
            None => tracing::info!(%addr, "listening"),
        }
    }
    let (stop, stop_rx) = Shutdown::channel();
    let mut tasks = JoinSet::new();
    let mut writer_died = false;
    let mut writer_ended = writer_thread.ended();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            () = &mut writer_ended => {
                tracing::error!("the writer thread died: no batch can be acknowledged; stopping");
                writer_died = true;
                break;
            }
            (stream, peer) = accept(&listener) => {
                let me = me.clone();
                let stop_rx = stop_rx.clone();
                tasks.spawn(async move { connection(stream, peer, &me, stop_rx).await });
            }
        }
        while let Some(done) = tasks.try_join_next() {
            reap(done);
        }
    }
    while let Some(done) = tasks.try_join_next() {
        reap(done);
    }
    tracing::info!(connections = tasks.len(), "shutting down: no new connections; finishing batches in progress");
    drop(listener);
    if let Some(w) = crl_watch {
        w.abort();
    }
    let _ = stop.send(true);
    while let Some(done) = tasks.join_next().await {
        reap(done);
    }
    // The last Writer handle goes with the context; the writer commits what
    // is queued and exits.
    drop(me);
    if tokio::task::spawn_blocking(move || writer_thread.join()).await.is_err() {
        tracing::error!("could not wait for the writer thread");
    }
    if writer_died {
        return Err(ServeError::WriterDied);
    }
    tracing::info!("stopped");
    Ok(())
}

fn reap(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "a connection task panicked; the server carries on");
        }
    }
}

/// Waits for a client. Accept errors (out of file descriptors, a client
/// that reset before accept) are logged and retried with a short back-off,
/// never fatal.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    let mut backoff = Duration::from_millis(10);
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One connection: a place at the gate, the TLS handshake under the
/// deadline, ALPN check, a session slot and a slot of its certificate, the
/// session, and one log line for how it ended.
async fn connection(stream: TcpStream, peer: SocketAddr, me: &Listener, mut stop: Shutdown) {
    let ctx = &me.ctx;
    let metrics = &me.metrics;
    metrics.accepted();
    let unauthenticated = metrics.unauthenticated();
    let (ticket, mut evicted) = me.gate.admit(peer.ip());
    let peer = peer.to_string();
    let _ = stream.set_nodelay(true);
    // One deadline covers the TLS handshake and the Hello.
    let deadline = Instant::now() + ctx.limits.handshake_timeout;
    let handshake = tokio::select! {
        _ = stop.recv() => return,
        why = &mut evicted => {
            tracing::info!(%peer, "dropped before its handshake finished: too many unauthenticated connections");
            metrics.refused(Refusal::Evicted);
            metrics.limit(match why {
                Ok(Eviction::PerIp) => Limit::MaxUnauthenticatedPerIp,
                _ => Limit::MaxUnauthenticated,
            });
            return;
        }
        r = timeout_at(deadline, me.acceptor.accept(stream)) => r,
    };
    // Finished, one way or the other: its place at the gate is free.
    drop(ticket);
    drop(unauthenticated);
    let mut tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "handshake refused");
            metrics.refused(Refusal::HandshakeFailed);
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "handshake timed out");
            metrics.refused(Refusal::HandshakeTimeout);
            metrics.limit(Limit::HandshakeTimeout);
            return;
        }
    };
    if !crate::tls::alpn_ok(tls.get_ref().1) {
        // rustls lets a client that offers no ALPN at all through.
        tracing::info!(%peer, "refused: the client did not negotiate ALPN truce/1");
        metrics.refused(Refusal::NoAlpn);
        return;
    }
    let _session = tokio::select! {
        _ = stop.recv() => return,
        p = timeout_at(deadline, me.sessions.clone().acquire_owned()) => match p {
            Ok(Ok(p)) => p,
            _ => {
                tracing::warn!(%peer, max = ctx.limits.max_connections, "refused: every session slot is taken");
                metrics.refused(Refusal::SessionsFull);
                metrics.limit(Limit::MaxConnections);
                return;
            }
        }
    };
    // The client's certificate: the mission CA signed it (the handshake
    // checked), so its hash names one laptop's credentials.
    let cert = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(c) => ClientCert::from_der(c.as_ref()),
        None => {
            tracing::info!(%peer, "refused: no client certificate");
            return;
        }
    };
    let Some(_slot) = me.certs.take(cert.hash) else {
        let cap = me.certs.cap();
        tracing::warn!(%peer, cap, cert_serial = %cert.id.serial, "refused: this certificate already holds its cap of sessions");
        metrics.refused(Refusal::CertCap);
        metrics.limit(Limit::MaxConnectionsPerCert);
        let reason = format!(
            "this laptop's certificate already has {cap} connections open to the server; close the others and try again"
        );
        if let Err(e) = session::refuse(&mut tls, deadline, reason, &ctx.limits).await {
            tracing::info!(%peer, error = %e, "could not send the refusal");
        }
        let _ = timeout(CLOSE_TIMEOUT, tokio::io::AsyncWriteExt::shutdown(&mut tls)).await;
        return;
    };
    let _authenticated = metrics.authenticated();
    // Who and how, once per session: the key exchange shows an operator
    // that Truce agents get the post-quantum hybrid (`truce_shared::tls`).
    let key_exchange = truce_shared::tls::key_exchange_group(tls.get_ref().1);
    tracing::info!(%peer, cert_serial = %cert.id.serial, %key_exchange, "authenticated");
    // Registered until it ends: a reload that revokes its certificate ends
    // it (the batch in progress, if any, is not acknowledged; the laptop
    // keeps it).
    let der = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
    let mut entry = me.revocation.as_ref().zip(der).map(|(r, der)| r.register(der.as_ref()));
    let serial = cert.id.serial.clone();
    let mut summary = Summary::default();
    let end = tokio::select! {
        end = session::serve(&mut tls, ctx, deadline, &mut stop, &peer, Some(Arc::new(cert.id)), &mut summary) => end,
        () = revoked(&mut entry) => {
            tracing::warn!(%peer, cert_serial = %serial, batches = summary.batches, "session closed: its certificate was revoked");
            let _ = timeout(CLOSE_TIMEOUT, tokio::io::AsyncWriteExt::shutdown(&mut tls)).await;
            return;
        }
    };
    drop(entry);
    match end {
        Ok(end) => {
            tracing::info!(%peer, ?end, batches = summary.batches, reports = summary.reports, "session closed");
            if end != End::Shutdown || summary.batches > 0 {
                let _ = timeout(CLOSE_TIMEOUT, tokio::io::AsyncWriteExt::shutdown(&mut tls)).await;
            }
        }
        Err(e) => {
            tracing::info!(%peer, error = %e, batches = summary.batches, reports = summary.reports, "session cut off");
            if let Some(limit) = limit_of(&e) {
                metrics.limit(limit);
            }
        }
    }
}

/// The limit that ended a session, if a limit did.
fn limit_of(e: &SessionError) -> Option<Limit> {
    use truce_shared::frame::FrameError;
    use truce_shared::wire::WireError;
    match e {
        SessionError::HelloTimeout => Some(Limit::HandshakeTimeout),
        SessionError::Idle(_) | SessionError::WriteTimeout(_) => Some(Limit::IdleTimeout),
        SessionError::BatchTooLarge { .. } => Some(Limit::MaxBatch),
        SessionError::Frame(WireError::Frame(FrameError::TooLarge { .. })) => Some(Limit::MaxFrame),
        _ => None,
    }
}

/// Resolves when the session's certificate is revoked (never without a
/// registry).
async fn revoked(entry: &mut Option<crate::revocation::SessionEntry>) {
    match entry {
        Some(e) => e.revoked().await,
        None => std::future::pending().await,
    }
}

/// A server running in the background of the current tokio runtime: for
/// tests and benchmarks. Dropping the handle shuts the server down too,
/// without waiting for it.
#[derive(Debug)]
pub struct Handle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Handle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shuts it down as SIGTERM would and waits until it has stopped.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Cancelled: the runtime itself is shutting down.
            Err(_) => Ok(()),
        }
    }
}

/// Starts [`run`] on `listener` in the background of the current tokio
/// runtime (bind `127.0.0.1:0` for tests).
pub fn spawn(listener: TcpListener, config: Config) -> std::io::Result<Handle> {
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(listener, config, async {
        let _ = stopped.await;
    }));
    Ok(Handle { addr, stop: Some(stop), task })
}
