//! The listener and the per-connection protocol (DESIGN §4).
//!
//! [`run`] takes a bound listener and a shutdown future, so tests start a
//! real server on `127.0.0.1:0`. A semaphore caps connections; the TLS
//! handshake and `Hello` must finish within the handshake timeout; every
//! frame must arrive within the idle timeout; a frame over the limit, an
//! undecodable frame or a protocol violation closes the connection. One
//! connection handles its Submits in order: verify off the async threads,
//! commit through the writer, sign the receipt, send the Ack.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use truce_shared::limits;
use truce_shared::wire::{self, Message, Receipt, PROTOCOL_VERSION};

use crate::store::Checked;
use crate::writer::Writer;

/// The limits a running server enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest frame, bytes.
    pub max_frame: u32,
    /// Most reports per Submit (advertised in Welcome).
    pub max_batch: u32,
    /// Most concurrent connections.
    pub max_connections: usize,
    /// Time to finish TLS and send Hello.
    pub handshake_timeout: Duration,
    /// Longest silence, or time for one frame to arrive.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: limits::MAX_FRAME,
            max_batch: limits::MAX_BATCH,
            max_connections: limits::MAX_CONNECTIONS,
            handshake_timeout: limits::HANDSHAKE_TIMEOUT,
            idle_timeout: limits::IDLE_TIMEOUT,
        }
    }
}

/// Everything a connection needs, shared.
struct Shared {
    /// Accepts TLS with the mission's policy.
    acceptor: TlsAcceptor,
    /// The one writer.
    writer: Writer,
    /// Signs receipts.
    server_key: SigningKey,
    /// Limits in force.
    limits: Limits,
}

/// Serves until `shutdown` resolves; then stops accepting, lets every
/// connection finish the batch it is on, and returns.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    writer: Writer,
    server_key: SigningKey,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let conns = Arc::new(Semaphore::new(limits.max_connections));
    let shared = Arc::new(Shared { acceptor: TlsAcceptor::from(tls), writer, server_key, limits });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = conns.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move {
            handle(stream, peer, &shared, stop).await;
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    tracing::info!(connections = tasks.len(), "shutting down: finishing in-flight batches");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
}

/// Why a connection ended early, for the log.
async fn handle(stream: TcpStream, peer: SocketAddr, shared: &Shared, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let limits = &shared.limits;
    let mut tls = match tokio::time::timeout(limits.handshake_timeout, shared.acceptor.accept(stream)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "handshake timed out");
            return;
        }
    };
    if tls.get_ref().1.alpn_protocol() != Some(wire::ALPN) {
        tracing::info!(%peer, "refused: client did not negotiate ALPN truce/1");
        return;
    }
    let hello =
        match tokio::time::timeout(limits.handshake_timeout, wire::read_message(&mut tls, limits.max_frame)).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "bad first frame");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "no Hello within the handshake timeout");
                return;
            }
        };
    let device = match hello {
        Message::Hello { protocol, device, .. } if protocol == PROTOCOL_VERSION => device,
        Message::Hello { protocol, .. } => {
            let reason = format!("protocol {protocol} not supported: this server speaks {PROTOCOL_VERSION}");
            let _ = wire::write_message(&mut tls, &Message::Refuse { reason }, limits.max_frame).await;
            let _ = tls.shutdown().await;
            return;
        }
        _ => {
            tracing::info!(%peer, "protocol violation: first message is not Hello");
            return;
        }
    };
    let welcome = Message::Welcome {
        server_key: shared.server_key.verifying_key().to_bytes(),
        server_time: truce_shared::time::now_ms(),
        max_batch: limits.max_batch,
        max_frame: limits.max_frame,
    };
    if wire::write_message(&mut tls, &welcome, limits.max_frame).await.is_err() {
        return;
    }
    let dev = hex::encode(&device[..8]);
    tracing::info!(%peer, device = %dev, "session open");
    loop {
        let msg = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            m = tokio::time::timeout(limits.idle_timeout, wire::read_message(&mut tls, limits.max_frame)) => m,
        };
        let msg = match msg {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                tracing::info!(%peer, device = %dev, error = %e, "closing: bad frame");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, device = %dev, "closing: idle timeout");
                return;
            }
        };
        match msg {
            Message::Submit { batch, reports } => {
                if reports.len() > limits.max_batch as usize {
                    tracing::info!(%peer, device = %dev, n = reports.len(), "closing: batch over max_batch");
                    return;
                }
                let n = reports.len();
                let checked = match tokio::task::spawn_blocking(move || {
                    reports.into_iter().map(Checked::check).collect::<Vec<_>>()
                })
                .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "verification task failed");
                        return;
                    }
                };
                let results = match shared.writer.submit(checked).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(%peer, error = %e, "not acked: store failed");
                        return;
                    }
                };
                let server_time = truce_shared::time::now_ms();
                let held = wire::held_ids(&results);
                let signature = truce_shared::signing::sign_receipt(&shared.server_key, server_time, &held);
                let ack = Message::Ack { batch, results, receipt: Receipt { server_time, signature } };
                if let Err(e) = wire::write_message(&mut tls, &ack, limits.max_frame).await {
                    tracing::info!(%peer, device = %dev, error = %e, "ack not delivered (the agent will resend)");
                    return;
                }
                tracing::debug!(%peer, device = %dev, batch, n, "acked");
            }
            Message::Bye => break,
            _ => {
                tracing::info!(%peer, device = %dev, "closing: protocol violation");
                return;
            }
        }
    }
    let _ = tls.shutdown().await;
    tracing::info!(%peer, device = %dev, "session closed");
}
