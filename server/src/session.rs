//! One client session: the protocol of DESIGN §4 after TLS is up.
//!
//! ```text
//! client: Hello  → server: Welcome | Refuse
//! client: Submit → server: Ack   (after the durable commit; in order)
//! client: Bye
//! ```
//!
//! [`serve`] is generic over the stream, so the same state machine runs over
//! TLS in the server and over an in-memory pipe in tests and fuzzing.
//!
//! Each Submit is handled in turn: verify off the async threads, commit
//! through the writer, sign the receipt, send the Ack. Agents may pipeline
//! several Submits; the later ones wait in TCP's buffers, and their Acks
//! come back in order. Every read and write has a deadline; a frame over the
//! limit, an undecodable frame, a Submit over the batch limit or any
//! message out of place ends the session with an error for the log. Nothing
//! here panics on input.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout, timeout_at, Instant};
use truce_shared::frame::{self, HEADER_LEN};
use truce_shared::log::{LogKey, ReceiptBody};
use truce_shared::text::printable;
use truce_shared::wire::{self, Message, Status, UploadState, WireError, PROTOCOL_VERSION};
use truce_shared::{encoding, limits, signing};

use crate::config::Limits;
use crate::evidence::{Evidence, Uploads};
use crate::metrics::{Limit, Metrics};
use crate::shutdown::Shutdown;
use crate::store::{Arrival, CertId, Contact, Store};
use crate::verify::{Verifier, VerifyTaskFailed};
use crate::writer::{WriteError, Writer};

/// Largest `Hello` frame read: the protocol number, a 64-byte version
/// string and a key need far less, and nothing bigger is buffered before
/// the client has said who it is.
const MAX_HELLO_FRAME: u32 = 1024;

/// What every session shares.
#[derive(Debug, Clone)]
pub struct Context {
    /// The one writer.
    pub writer: Writer,
    /// The verification pool.
    pub verifier: Verifier,
    /// Signs receipts (and, in the writer, checkpoints).
    pub log_key: Arc<LogKey>,
    /// A read connection for the proofs agents ask for.
    pub prover: Arc<std::sync::Mutex<Store>>,
    /// The limits in force.
    pub limits: Limits,
    /// One permit per byte of frame that sessions may hold in memory at
    /// once ([`Limits::max_frame_bytes_in_flight`]).
    pub frame_bytes: Arc<Semaphore>,
    /// Where uploaded evidence goes (`None`: this server takes none).
    pub evidence: Option<Arc<Evidence>>,
    /// What the server counts ([`crate::metrics`]).
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// The context for these parts, with the frame-byte budget of `limits`.
    pub fn new(writer: Writer, verifier: Verifier, log_key: Arc<LogKey>, prover: Store, limits: Limits) -> Context {
        // tokio's semaphores hold at most MAX_PERMITS (2^61) and panic
        // above it.
        let budget =
            usize::try_from(limits.max_frame_bytes_in_flight).unwrap_or(usize::MAX).min(Semaphore::MAX_PERMITS);
        Context {
            writer,
            verifier,
            log_key,
            prover: Arc::new(std::sync::Mutex::new(prover)),
            limits,
            frame_bytes: Arc::new(Semaphore::new(budget)),
            evidence: None,
            metrics: Arc::default(),
        }
    }

    /// The same context, taking evidence uploads into `evidence`.
    pub fn with_evidence(mut self, evidence: Arc<Evidence>) -> Context {
        self.evidence = Some(evidence);
        self
    }

    /// The same context, counting into `metrics`.
    pub fn with_metrics(self, metrics: Arc<Metrics>) -> Context {
        Context { metrics, ..self }
    }
}

/// Why a session ended early. Logged as one line; never sent to the peer.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No Hello before the handshake deadline.
    #[error("no Hello within the handshake timeout")]
    HelloTimeout,
    /// Silence, or a frame that took too long, between frames.
    #[error("idle timeout: no complete frame for {0:?}")]
    Idle(Duration),
    /// The client did not take our answer in time.
    #[error("write timeout: the client did not read for {0:?}")]
    WriteTimeout(Duration),
    /// Oversized, truncated or undecodable frame.
    #[error("bad frame: {0}")]
    Frame(#[from] WireError),
    /// A message out of place.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// A Submit over the batch limit advertised in Welcome.
    #[error("Submit of {n} reports is over the batch limit of {max}")]
    BatchTooLarge {
        /// Reports in the Submit.
        n: usize,
        /// `max_batch`.
        max: u32,
    },
    /// A Prove the log cannot answer (the agent was told why).
    #[error("Prove refused: {0}")]
    Prove(String),
    /// The store failed reading proofs.
    #[error("cannot read proofs: {0}")]
    Proofs(String),
    /// The server could not write evidence (its disk, not the client).
    #[error("{0}")]
    Evidence(String),
    /// Writing to the client failed.
    #[error("write failed: {0}")]
    Io(#[from] std::io::Error),
    /// Verification crashed; the batch is not acknowledged.
    #[error(transparent)]
    Verify(#[from] VerifyTaskFailed),
    /// The batch was not stored; it is not acknowledged.
    #[error("batch not acknowledged: {0}")]
    Store(#[from] WriteError),
}

/// How a session ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client said Bye.
    Bye,
    /// The client closed the stream between frames.
    Closed,
    /// The server is shutting down (after the batch in progress).
    Shutdown,
    /// The client speaks another protocol version: Refuse sent.
    Refused,
}

/// What a session did, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Batches acknowledged.
    pub batches: u64,
    /// Reports in them.
    pub reports: u64,
    /// Evidence bytes written.
    pub evidence_bytes: u64,
}

/// Runs one session on `io` until Bye, end of stream, shutdown or error.
/// The Hello must arrive before `hello_deadline`. `cert` is the client
/// certificate the session came through, recorded with every report.
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    ctx: &Context,
    hello_deadline: Instant,
    shutdown: &mut Shutdown,
    peer: &str,
    cert: Option<Arc<CertId>>,
    summary: &mut Summary,
) -> Result<End, SessionError> {
    let limits = &ctx.limits;
    let first = tokio::select! {
        _ = shutdown.recv() => return Ok(End::Shutdown),
        r = timeout_at(hello_deadline, wire::read_message(io, MAX_HELLO_FRAME)) => r,
    };
    let (protocol, agent_version, device) = match first.map_err(|_| SessionError::HelloTimeout)?? {
        None => return Ok(End::Closed),
        Some(Message::Hello { protocol, agent_version, device }) => (protocol, agent_version, device),
        Some(_) => return Err(SessionError::Protocol("the first message must be Hello")),
    };
    let agent: String = agent_version.chars().filter(|c| !c.is_control()).take(limits::MAX_AGENT_VERSION).collect();
    if protocol != PROTOCOL_VERSION {
        tracing::info!(%peer, protocol, agent = %agent, "refused: unsupported protocol version");
        let reason = if protocol < PROTOCOL_VERSION {
            format!(
                "protocol {protocol} is not supported: this server speaks protocol {PROTOCOL_VERSION} (receipts \
                 and proofs from the transparency log); upgrade truce-agent"
            )
        } else {
            format!("protocol {protocol} is not supported: this server speaks protocol {PROTOCOL_VERSION}")
        };
        send(io, &Message::Refuse { reason }, limits).await?;
        return Ok(End::Refused);
    }
    let welcome = Message::Welcome {
        log_key: ctx.log_key.public(),
        server_time: truce_shared::time::now_ms(),
        max_batch: limits.max_batch,
        max_frame: limits.max_frame,
        certificate: cert.as_deref().map(|c| c.serial.clone()).unwrap_or_default(),
    };
    // A session without a certificate exists only in tests and fuzzing.
    let arrival = Arrival::Tls(cert.clone().unwrap_or_default());
    send(io, &welcome, limits).await?;
    ctx.writer.note_contact(Contact { device, cert: cert.as_deref().cloned(), peer: peer.to_string() });
    tracing::info!(%peer, device = %signing::fingerprint(&device), agent = %agent, "session open");
    let mut uploads = ctx.evidence.clone().map(Uploads::new);

    loop {
        let next = tokio::select! {
            // Shutdown is checked first: between frames, it wins.
            biased;
            _ = shutdown.recv() => return Ok(End::Shutdown),
            r = timeout(limits.idle_timeout, frame::read_frame_len(io, limits.max_frame)) => r,
        };
        let len = match next.map_err(|_| SessionError::Idle(limits.idle_timeout))?.map_err(WireError::from)? {
            None => return Ok(End::Closed),
            Some(len) => len,
        };
        // The frame's bytes are reserved before its body is read and held
        // until its answer is sent: all sessions together never hold more
        // than the budget, however many send large frames at once.
        let _bytes: OwnedSemaphorePermit = tokio::select! {
            _ = shutdown.recv() => return Ok(End::Shutdown),
            p = reserve(&ctx.frame_bytes, len, &ctx.metrics) => p,
        };
        let body = timeout(limits.idle_timeout, frame::read_frame_body(io, len))
            .await
            .map_err(|_| SessionError::Idle(limits.idle_timeout))?
            .map_err(WireError::from)?;
        let msg: Message = encoding::decode(&body).map_err(WireError::from)?;
        drop(body);
        match msg {
            Message::Submit { batch, reports } => {
                if reports.len() > limits.max_batch as usize {
                    return Err(SessionError::BatchTooLarge { n: reports.len(), max: limits.max_batch });
                }
                let n = reports.len();
                // From here the batch runs to its Ack even if shutdown
                // begins: the agent gets its answer.
                let checked = ctx.verifier.check(reports).await?;
                let done = match ctx.writer.commit(checked, arrival.clone()).await {
                    Ok(done) => done,
                    Err(WriteError::Quota(reason)) => {
                        // No Ack: the agent keeps the batch and says why.
                        // (The writer logged which quota, for the operator.)
                        ctx.metrics.limit(Limit::DiskQuota);
                        send(io, &Message::Refuse { reason: reason.clone() }, limits).await?;
                        return Err(SessionError::Store(WriteError::Quota(reason)));
                    }
                    Err(e) => return Err(e.into()),
                };
                let refused = done.outcomes.iter().filter(|o| matches!(o.status, Status::Rejected(_))).count();
                if refused > 0 {
                    // Who sent what was refused, by their TLS identity: the
                    // device key in a forged report proves nothing.
                    let (serial, subject) =
                        cert.as_deref().map(|c| (c.serial.as_str(), c.subject.as_str())).unwrap_or(("-", "-"));
                    tracing::warn!(%peer, cert_serial = serial, cert_subject = %printable(subject), batch, refused, "reports refused");
                }
                // Committed: only now may the receipt say "held". It
                // covers every result and a checkpoint that includes them.
                let signature = ctx.log_key.sign_receipt(&ReceiptBody {
                    batch,
                    received_at: done.received_at,
                    results: done.outcomes.as_slice().into(),
                    checkpoint: done.head.checkpoint.as_str().into(),
                });
                let ack = Message::Ack {
                    batch,
                    received_at: done.received_at,
                    results: done.outcomes,
                    checkpoint: done.head.checkpoint.clone(),
                    signature,
                };
                send(io, &ack, limits).await?;
                summary.batches += 1;
                summary.reports += n as u64;
                tracing::debug!(%peer, batch, reports = n, "acked");
            }
            Message::Prove { size, from, ranges, entries } => {
                if ranges.len() > limits::MAX_PROVE_ITEMS || entries.len() > limits::MAX_PROVE_ITEMS {
                    let reason = format!("a Prove asks at most {} ranges and entries", limits::MAX_PROVE_ITEMS);
                    send(io, &Message::Refuse { reason: reason.clone() }, limits).await?;
                    return Err(SessionError::Prove(reason));
                }
                let prover = ctx.prover.clone();
                let answer = tokio::task::spawn_blocking(move || {
                    let store = prover.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    store.prove(size, from, &ranges, &entries)
                })
                .await
                .map_err(|e| SessionError::Proofs(e.to_string()))?
                .map_err(|e| SessionError::Proofs(e.to_string()))?;
                match answer {
                    Ok(p) => {
                        let entries = p.entries.into_iter().map(serde_bytes::ByteBuf::from).collect();
                        send(io, &Message::Proofs { consistency: p.consistency, ranges: p.ranges, entries }, limits)
                            .await?;
                    }
                    Err(reason) => {
                        send(io, &Message::Refuse { reason: reason.clone() }, limits).await?;
                        return Err(SessionError::Prove(reason));
                    }
                }
            }
            Message::Offer { sha256, size } => {
                let state = upload(ctx, &mut uploads, move |ev, ups, store| {
                    let named = store
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .attachment_sizes(&sha256)
                        .map_err(|e| SessionError::Evidence(e.to_string()))?;
                    ev.offer(ups, &sha256, size, &named).map_err(|e| SessionError::Evidence(e.to_string()))
                })
                .await?;
                if matches!(&state, UploadState::Refused(r) if r.contains("--max-evidence-size") || r.contains("quota"))
                {
                    ctx.metrics.limit(Limit::EvidenceQuota);
                }
                send(io, &Message::Upload { sha256, state }, limits).await?;
            }
            Message::Chunk { sha256, offset, data } => {
                let n = data.len() as u64;
                let state = upload(ctx, &mut uploads, move |ev, ups, _| {
                    ev.chunk(ups, &sha256, offset, &data).map_err(|e| SessionError::Evidence(e.to_string()))
                })
                .await?;
                if matches!(state, UploadState::Held | UploadState::From(_)) {
                    summary.evidence_bytes += n;
                    ctx.metrics.evidence_written(n);
                }
                match &state {
                    UploadState::Held => ctx.metrics.evidence_held(),
                    UploadState::Refused(r) if r.contains("quota") => ctx.metrics.limit(Limit::EvidenceQuota),
                    _ => {}
                }
                send(io, &Message::Upload { sha256, state }, limits).await?;
            }
            Message::Bye => return Ok(End::Bye),
            Message::Hello { .. } => return Err(SessionError::Protocol("a second Hello")),
            Message::Welcome { .. }
            | Message::Refuse { .. }
            | Message::Ack { .. }
            | Message::Proofs { .. }
            | Message::Upload { .. } => return Err(SessionError::Protocol("a server message from the client")),
        }
    }
}

/// Runs one evidence operation off the async threads, with this session's
/// claims and the read connection (for the reports that name files).
async fn upload(
    ctx: &Context,
    uploads: &mut Option<Uploads>,
    op: impl FnOnce(&Arc<Evidence>, &mut Uploads, &std::sync::Mutex<Store>) -> Result<UploadState, SessionError>
        + Send
        + 'static,
) -> Result<UploadState, SessionError> {
    let (Some(ev), Some(mut ups)) = (ctx.evidence.clone(), uploads.take()) else {
        return Ok(UploadState::Refused("this server takes no evidence files".into()));
    };
    let prover = ctx.prover.clone();
    let (ups, result) = tokio::task::spawn_blocking(move || {
        let result = op(&ev, &mut ups, &prover);
        (ups, result)
    })
    .await
    .map_err(|e| SessionError::Evidence(e.to_string()))?;
    *uploads = Some(ups);
    result
}

/// Waits until `len` bytes of frame (and its length prefix) fit the
/// budget shared by every session; a frame that has to wait is counted.
async fn reserve(budget: &Arc<Semaphore>, len: usize, metrics: &Metrics) -> OwnedSemaphorePermit {
    let n = u32::try_from(len.saturating_add(HEADER_LEN)).unwrap_or(u32::MAX);
    if let Ok(p) = budget.clone().try_acquire_many_owned(n) {
        return p;
    }
    metrics.limit(Limit::MaxFrameBytesInFlight);
    match budget.clone().acquire_many_owned(n).await {
        Ok(p) => p,
        // The budget is never closed; Limits::check made it hold one frame.
        Err(_) => std::future::pending().await,
    }
}

/// Answers a client that may not have a session with `Refuse { reason }`
/// after its Hello (before the deadline), so the laptop can say why.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    hello_deadline: Instant,
    reason: String,
    limits: &Limits,
) -> Result<(), SessionError> {
    match timeout_at(hello_deadline, wire::read_message(io, MAX_HELLO_FRAME)).await {
        Ok(Ok(Some(Message::Hello { .. }))) => send(io, &Message::Refuse { reason }, limits).await,
        Ok(Ok(_)) => Err(SessionError::Protocol("the first message must be Hello")),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(SessionError::HelloTimeout),
    }
}

/// Writes one message within the idle timeout, so a client that stops
/// reading cannot hold the session (or shutdown) forever.
async fn send<S: AsyncWrite + Unpin>(io: &mut S, msg: &Message, limits: &Limits) -> Result<(), SessionError> {
    timeout(limits.idle_timeout, async {
        wire::write_message(io, msg, limits.max_frame).await?;
        tokio::io::AsyncWriteExt::flush(io).await
    })
    .await
    .map_err(|_| SessionError::WriteTimeout(limits.idle_timeout))??;
    Ok(())
}
