//! `sync`: deliver the pending queue to the collection server (DESIGN §3, §4).
//!
//! One session:
//!
//! ```text
//! TCP connect (timeout) → TLS 1.3, ALPN truce/1, mission CA, client cert
//! → Hello (protocol 2) → Welcome | Refuse
//!   the Welcome's log key must be the pinned one (or is pinned now)
//! → Submit × up to WINDOW in flight, each ≤ max_batch reports and ≤ max_frame bytes
//! ← Ack per batch: results in submit order, each with its log entry, a
//!   checkpoint, all signed by the log key
//! → Prove ← Proofs (see `prove`): the entries are in the log, and the log
//!   extends the checkpoint kept from the last verified sync
//! → Bye
//! ```
//!
//! Promises:
//! - A report changes state only when its Ack arrives, the Ack's receipt
//!   verifies under the pinned log key, its checkpoint opens under it and
//!   includes every entry the Ack names; answers and the receipt are
//!   committed in one transaction. Anything unanswered stays pending and is
//!   sent again next time (the server answers Duplicate).
//! - A report is "proven" only once the log proves its entry; a failed
//!   proof is an alarm ([`SyncError::Alarm`]) and leaves evidence.
//! - The queue is read in chunks ([`crate::queue::PENDING_CHUNK`]) as
//!   batches are needed, so memory is bounded whatever the queue's size.
//! - Every failure is one line saying why (connection refused, timeout,
//!   certificate refused, handshake refused with the server's reason) and
//!   that the reports are still pending.
//!
//! `watch` repeats sessions: it polls the queue every
//! [`WATCH_POLL`], syncs when something is pending, and backs off
//! exponentially with jitter (up to [`BACKOFF_CAP`]) while the server cannot
//! be reached, until the shutdown future resolves (SIGINT/SIGTERM in the CLI)
//! or an error needs a person ([`SyncError::needs_person`]).
//!
//! # Layout
//!
//! - this file: options, the session, its summary;
//! - [`error`]: [`SyncError`], what went wrong and whether retrying helps;
//! - `batch`: the queue cut into batches within the server's limits;
//! - `prove`: the log's proofs asked and checked, the alarm and its evidence;
//! - `progress`: the bar or log lines;
//! - `watch`: repeated sessions and backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use truce_shared::log::{open_checkpoint, verify_receipt, ReceiptBody};
use truce_shared::time::now_ms;
use truce_shared::wire::{self, Message, PROTOCOL_VERSION};
use truce_shared::{limits, Bytes32, SignedReport};

use crate::agent::log::Pinning;
use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::queue::{LogAck, State};
use crate::tls;

mod batch;
pub mod error;
mod evidence;
mod progress;
mod prove;
mod watch;

use batch::Batcher;
use error::message_name;
pub use error::SyncError;
use progress::{warn, Ui};
pub use watch::{watch, Backoff};

/// Time allowed for the TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for the TLS handshake, and then for the Welcome.
pub const HANDSHAKE_TIMEOUT: Duration = limits::HANDSHAKE_TIMEOUT;

/// Time allowed for each Ack, or for a frame to be written, before the
/// link is declared dead.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Batches sent before waiting for their Acks.
pub const WINDOW: usize = 4;

/// How often `--watch` looks for new pending reports.
pub const WATCH_POLL: Duration = Duration::from_secs(1);

/// First retry delay while the server cannot be reached.
pub const BACKOFF_START: Duration = Duration::from_millis(500);

/// Longest retry delay: a server that comes back is reached within this.
pub const BACKOFF_CAP: Duration = Duration::from_secs(15);

/// Clock difference with the server above which sync warns.
pub const CLOCK_SKEW_WARN_MS: i64 = 60_000;

/// Largest batch this agent sends, whatever the server offers: bounds the
/// memory of the reports in flight.
const MAX_BATCH_CAP: usize = 1024;

/// How sync shows progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// An indicatif bar on stderr (a terminal).
    Bar,
    /// Plain log lines on stderr.
    Log,
    /// Nothing.
    Quiet,
}

/// How to sync.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// `HOST:PORT` to use instead of the linked server.
    pub server: Option<String>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Batches in flight.
    pub window: usize,
    /// Progress display.
    pub progress: Progress,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions { server: None, connect_timeout: CONNECT_TIMEOUT, window: WINDOW, progress: Progress::Quiet }
    }
}

/// What one session did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncSummary {
    /// The server, `HOST:PORT`.
    pub server: String,
    /// The server's log key (from Welcome): signs receipts and checkpoints.
    pub server_key: Bytes32,
    /// How the log key related to the pin (pinned now on first sight, …).
    pub pinning: Option<Pinning>,
    /// Reports now delivered (Accepted or Duplicate).
    pub delivered: u64,
    /// Reports now quarantined.
    pub quarantined: u64,
    /// Reports now rejected.
    pub rejected: u64,
    /// Batches sent and acknowledged.
    pub batches: u64,
    /// Reports still pending when the session ended.
    pub pending: u64,
    /// Reports whose log entries this session proved.
    pub proven: u64,
    /// Server clock minus this laptop's, ms, when Welcome arrived.
    pub clock_skew_ms: i64,
    /// Evidence files the server now holds (sent or already there).
    pub evidence_held: u64,
    /// Evidence bytes the server acknowledged this session.
    pub evidence_bytes: u64,
    /// Evidence files the server would not take (each with its reason in
    /// `show`).
    pub evidence_refused: u64,
}

impl SyncSummary {
    /// One line for people and for `status`.
    pub fn line(&self) -> String {
        let mut s = format!("delivered {}", self.delivered);
        if self.proven > 0 {
            s.push_str(&format!(", proven in the log {}", self.proven));
        }
        if self.quarantined > 0 {
            s.push_str(&format!(", quarantined {}", self.quarantined));
        }
        if self.rejected > 0 {
            s.push_str(&format!(", rejected {}", self.rejected));
        }
        if self.pending > 0 {
            s.push_str(&format!(", {} still pending", self.pending));
        }
        if self.evidence_held > 0 {
            s.push_str(&format!(
                ", evidence held by the server {} ({} bytes sent)",
                self.evidence_held, self.evidence_bytes
            ));
        }
        if self.evidence_refused > 0 {
            s.push_str(&format!(", evidence refused {} (see `show`)", self.evidence_refused));
        }
        s
    }
}

/// A batch sent and not yet answered.
struct InFlight {
    batch: u64,
    /// Each report's id and seq.
    ids: Vec<(Bytes32, u64)>,
}

/// Reports on their way: the pending queue cut into Submits, those not
/// yet answered, and what their Acks left to prove.
struct Delivery {
    batcher: Batcher,
    in_flight: VecDeque<InFlight>,
    next_batch_no: u64,
    /// Most Submits in flight.
    window: usize,
    max_batch: usize,
    frame_limit: u32,
    /// The log key (from Welcome, checked against the pin).
    server_key: Bytes32,
    prover: prove::Prover,
    addr: String,
    host: String,
}

impl Delivery {
    /// Sends Submits while the window has room and reports are pending
    /// (including any recorded since the last look).
    async fn fill<W: AsyncWrite + Unpin>(&mut self, agent: &Agent, wr: &mut W) -> Result<()> {
        while self.in_flight.len() < self.window {
            let reports = self.batcher.next_batch(agent.queue(), self.max_batch, self.frame_limit as usize)?;
            if reports.is_empty() {
                break;
            }
            let ids = reports.iter().map(|(seq, r)| (r.id(), *seq)).collect();
            let reports: Vec<SignedReport> = reports.into_iter().map(|(_, r)| r).collect();
            let batch = self.next_batch_no;
            self.next_batch_no += 1;
            send(wr, &Message::Submit { batch, reports }, self.frame_limit, &self.addr, &self.host).await?;
            self.in_flight.push_back(InFlight { batch, ids });
        }
        Ok(())
    }

    /// Looks for reports recorded since the queue was last found empty.
    fn look_again(&mut self) {
        self.batcher.look_again();
    }

    /// Handles a message that should answer a Submit: an Ack is checked
    /// (receipt, checkpoint, entries) and recorded; anything else ends
    /// the session.
    fn answer(&mut self, agent: &mut Agent, msg: Message, summary: &mut SyncSummary, ui: &mut Ui) -> Result<()> {
        let addr = &self.addr;
        let server_key = self.server_key;
        match msg {
            Message::Ack { batch, received_at, results, checkpoint, signature } => {
                let Some(pos) = self.in_flight.iter().position(|f| f.batch == batch) else {
                    return Err(
                        SyncError::protocol(addr, format!("an Ack for batch {batch}, which is not in flight")).into()
                    );
                };
                let sent = self.in_flight.remove(pos).map(|f| f.ids).unwrap_or_default();
                if results.len() != sent.len() || results.iter().zip(&sent).any(|(o, (id, _))| o.id != *id) {
                    return Err(SyncError::protocol(
                        addr,
                        format!("the Ack for batch {batch} does not list the reports sent"),
                    )
                    .into());
                }
                let body = ReceiptBody {
                    batch,
                    received_at,
                    results: results.as_slice().into(),
                    checkpoint: checkpoint.as_str().into(),
                };
                if !verify_receipt(&server_key, &body, &signature) {
                    return Err(SyncError::BadReceipt { batch, why: "bad signature".into() }.into());
                }
                let cp = open_checkpoint(&checkpoint, &server_key)
                    .map_err(|e| SyncError::BadReceipt { batch, why: format!("its checkpoint: {e}") })?;
                if let Some(o) = results.iter().find(|o| o.entry >= cp.size) {
                    return Err(SyncError::BadReceipt {
                        batch,
                        why: format!("it names entry {} of a checkpoint of {} entries", o.entry, cp.size),
                    }
                    .into());
                }
                let ack = LogAck {
                    log_key: server_key,
                    batch,
                    received_at,
                    results: &results,
                    checkpoint: &checkpoint,
                    signature,
                };
                let o = agent.record_ack(&ack)?;
                for &i in &o.marked {
                    if let (Some(r), Some((_, seq))) = (results.get(i), sent.get(i)) {
                        self.prover.add(r, *seq, received_at);
                    }
                }
                if let Err(pair) = self.prover.offer(cp) {
                    let (a, b) = *pair;
                    return Err(prove::alarm(
                        agent,
                        Some(&a),
                        &b,
                        &format!("two checkpoints of {} entries with different roots in one session", a.size),
                    ));
                }
                summary.delivered += o.delivered;
                summary.quarantined += o.quarantined;
                summary.rejected += o.rejected;
                summary.batches += 1;
                ui.answered(results.len() as u64);
                Ok(())
            }
            Message::Refuse { reason } => Err(SyncError::Ended { addr: addr.clone(), reason }.into()),
            other => Err(SyncError::protocol(addr, format!("expected Ack, got {}", message_name(&other))).into()),
        }
    }
}

/// Connects, handshakes TLS and checks ALPN.
async fn connect(
    addr: &str,
    host: &str,
    port: u16,
    config: rustls::ClientConfig,
    connect_timeout: Duration,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = tls::server_name(host)?;
    let tcp = match tokio::time::timeout(connect_timeout, TcpStream::connect((host, port))).await {
        Err(_) => {
            return Err(SyncError::unreachable(
                addr,
                format!("timed out after {} s (check the network link)", connect_timeout.as_secs()),
            )
            .into())
        }
        Ok(Err(e)) => return Err(SyncError::from_io(addr, host, &e).into()),
        Ok(Ok(s)) => s,
    };
    // Frames are written whole; waiting to coalesce them only adds latency.
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(Arc::new(config));
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connector.connect(name, tcp)).await {
        Err(_) => return Err(SyncError::unreachable(addr, "the TLS handshake timed out").into()),
        Ok(Err(e)) => return Err(SyncError::from_io(addr, host, &e).into()),
        Ok(Ok(s)) => s,
    };
    if stream.get_ref().1.alpn_protocol() != Some(wire::ALPN) {
        return Err(SyncError::NotTruce {
            addr: addr.to_string(),
            why: "the server did not agree to the truce/1 protocol (is it a truce-server?)".into(),
        }
        .into());
    }
    Ok(stream)
}

/// Writes one message within [`ACK_TIMEOUT`].
async fn send<W: AsyncWrite + Unpin>(w: &mut W, msg: &Message, max_frame: u32, addr: &str, host: &str) -> Result<()> {
    match tokio::time::timeout(ACK_TIMEOUT, wire::write_message(w, msg, max_frame)).await {
        Err(_) => Err(SyncError::unreachable(addr, "the server stopped reading (timed out)").into()),
        Ok(Err(e)) => Err(SyncError::from_io(addr, host, &e).into()),
        Ok(Ok(())) => Ok(()),
    }
}

/// Reads one message within `timeout`; end of stream is an error here.
async fn receive<R: AsyncRead + Unpin>(
    r: &mut R,
    timeout: Duration,
    addr: &str,
    host: &str,
    waiting_for: &str,
) -> Result<Message> {
    match tokio::time::timeout(timeout, wire::read_message(r, limits::MAX_FRAME)).await {
        Err(_) => {
            Err(SyncError::unreachable(addr, format!("no {waiting_for} within {} s (timed out)", timeout.as_secs())).into())
        }
        Ok(Err(e)) => Err(SyncError::from_wire(addr, host, e).into()),
        Ok(Ok(None)) => Err(SyncError::unreachable(
            addr,
            format!("the server closed the connection before its {waiting_for} (if this repeats, this laptop's certificate or key may have been refused)"),
        )
        .into()),
        Ok(Ok(Some(m))) => Ok(m),
    }
}

/// Runs one sync session and records its outcome for `status`.
pub async fn sync_once(agent: &mut Agent, opts: &SyncOptions) -> Result<SyncSummary> {
    let result = session(agent, opts).await;
    let noted = match &result {
        Ok(s) => agent.set_last_sync(true, &s.line()),
        Err(e) => agent.set_last_sync(false, &e.to_string()),
    };
    let summary = result?;
    noted?;
    Ok(summary)
}

async fn session(agent: &mut Agent, opts: &SyncOptions) -> Result<SyncSummary> {
    let addr = match &opts.server {
        Some(s) => s.trim().to_string(),
        None => agent.server()?.ok_or(AgentError::NotLinked)?,
    };
    let (host, port) = tls::split_host_port(&addr)?;
    let config = agent.client_config()?;
    let stream = connect(&addr, &host, port, config, opts.connect_timeout).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);

    let hello = Message::Hello {
        protocol: PROTOCOL_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        device: agent.device(),
    };
    send(&mut wr, &hello, limits::MAX_FRAME, &addr, &host).await?;
    let (server_key, server_time, max_batch, max_frame, certificate) =
        match receive(&mut rd, HANDSHAKE_TIMEOUT, &addr, &host, "Welcome").await? {
            Message::Welcome { log_key, server_time, max_batch, max_frame, certificate } => {
                (log_key, server_time, max_batch, max_frame, certificate)
            }
            Message::Refuse { reason } if reason.to_ascii_lowercase().contains("protocol") => {
                let reason = truce_shared::text::printable(&reason).to_string();
                return Err(SyncError::OldServer { addr, reason }.into());
            }
            Message::Refuse { reason } => return Err(SyncError::Refused { addr, reason }.into()),
            other => {
                return Err(SyncError::protocol(&addr, format!("expected Welcome, got {}", message_name(&other))).into())
            }
        };
    let pinning = agent.check_log_key(&addr, &server_key)?;
    if pinning == Pinning::FirstSeen && opts.progress != Progress::Quiet {
        eprintln!(
            "pinned the server's log key {}: first seen; compare it with the fingerprint your coordinator gave you",
            truce_shared::signing::fingerprint(&server_key)
        );
    }
    let mut summary = SyncSummary { server: addr.clone(), server_key, pinning: Some(pinning), ..Default::default() };
    summary.clock_skew_ms = server_time.saturating_sub(now_ms());
    if summary.clock_skew_ms.abs() > CLOCK_SKEW_WARN_MS {
        warn(
            opts.progress,
            &format!(
                "this laptop's clock is {} {} the server's: check the date and time (reports carry this laptop's clock)",
                human_duration(summary.clock_skew_ms.unsigned_abs()),
                if summary.clock_skew_ms > 0 { "behind" } else { "ahead of" }
            ),
        );
    }
    let max_batch = (max_batch as usize).min(MAX_BATCH_CAP);
    let frame_limit = max_frame.min(limits::MAX_FRAME);
    if max_batch == 0 {
        return Err(SyncError::protocol(&addr, "the server offered batches of 0 reports").into());
    }

    let total = agent.queue().counts()?.iter().find(|(s, _)| *s == State::Pending).map_or(0, |c| c.1);
    let mut ui = Ui::new(opts.progress, total, &addr);
    let mut prover = prove::Prover::new(agent.device(), certificate);
    // What an earlier session left unproven is proven with this one's.
    for (id, entry) in agent.queue().unproven(limits::MAX_PROVE_ITEMS)? {
        prover.add_earlier(id, entry);
    }
    let mut delivery = Delivery {
        batcher: Batcher::new(),
        in_flight: VecDeque::new(),
        next_batch_no: 1,
        window: opts.window.max(1),
        max_batch,
        frame_limit,
        server_key,
        prover,
        addr: addr.clone(),
        host: host.clone(),
    };
    let outcome: Result<()> = async {
        loop {
            delivery.fill(agent, &mut wr).await?;
            if delivery.in_flight.is_empty() {
                return Ok(());
            }
            let msg = receive(&mut rd, ACK_TIMEOUT, &addr, &host, "Ack").await?;
            delivery.answer(agent, msg, &mut summary, &mut ui)?;
        }
    }
    .await;
    // Reports first, and their proofs, then evidence: a cut during a long
    // upload leaves the reports before it proven, and a report recorded
    // meanwhile overtakes the rest of the upload (and is proven after it).
    let outcome = match outcome {
        Ok(()) => {
            let fresh = delivery.prover.fresh();
            let before = std::mem::replace(&mut delivery.prover, fresh);
            match prove::prove(agent, before, &mut rd, &mut wr, frame_limit, &addr, &host).await {
                Ok(n) => {
                    summary.proven = n;
                    evidence::upload(agent, &mut delivery, &mut summary, &mut ui, &mut rd, &mut wr, opts.progress).await
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    let prover = delivery.prover;
    ui.finish();
    outcome?;
    summary.proven += prove::prove(agent, prover, &mut rd, &mut wr, frame_limit, &addr, &host).await?;
    // A polite goodbye; the work is already committed if this fails.
    let _ = send(&mut wr, &Message::Bye, frame_limit, &addr, &host).await;
    let _ = wr.shutdown().await;
    // Reports just answered may already be past the keep period (0 = at
    // once). A failure to prune is not a failure to deliver.
    if let Err(e) = agent.prune() {
        warn(opts.progress, &format!("delivered, but pruning failed: {e}"));
    }
    summary.pending = agent.queue().counts()?.iter().find(|(s, _)| *s == State::Pending).map_or(0, |c| c.1);
    Ok(summary)
}

fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", (s + 30) / 60),
        _ => format!("{} h", (s + 1800) / 3600),
    }
}

/// The single-threaded runtime sync runs on: one connection needs no more.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(AgentError::Terminal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_mentions_only_what_happened() {
        let s = SyncSummary { delivered: 3, ..Default::default() };
        assert_eq!(s.line(), "delivered 3");
        let s = SyncSummary { delivered: 1, rejected: 2, pending: 4, ..Default::default() };
        assert_eq!(s.line(), "delivered 1, rejected 2, 4 still pending");
    }
}
