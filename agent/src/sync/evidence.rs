//! Evidence upload (DESIGN §10), after the session's reports.
//!
//! ```text
//! → Offer  { sha256, size }          ← Upload { Held | From(offset) | Refused(reason) }
//! → Chunk  { sha256, offset, data }  × as many as the link holds
//! ← Upload { From(durable offset) }  one per chunk, after the server's fsync; the last: Held | Mismatch
//! ```
//!
//! - Each file the server does not hold yet is offered by the hash and
//!   size its report signed, learned by opening the sealed copy (its
//!   chunks are authenticated as they are read, and its hash must give
//!   its keyed name, so a damaged or swapped copy is never sent).
//! - Reports go first: between chunk answers the queue is looked at every
//!   [`LOOK_FOR_REPORTS`], and a report recorded meanwhile is sent at once.
//!   It waits only behind the chunk bytes in flight, so those follow the
//!   link's bandwidth-delay product ([`Pace`]) rather than a fixed window:
//!   on a 256 kbit/s satellite link with 600 ms round trips a new report
//!   is answered within about 2 s, and on a fast link chunks grow to
//!   [`MAX_EVIDENCE_CHUNK`].
//! - The server's answer is the truth about what it holds: an upload cut
//!   by a broken link or a killed process resumes next time at the offset
//!   the server gives for the Offer.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use truce_shared::limits::MAX_EVIDENCE_CHUNK;
use truce_shared::wire::{Message, UploadState};
use truce_shared::Bytes32;
use zeroize::Zeroizing;

use super::error::message_name;
use super::progress::{warn, Ui};
use super::{receive, send, Delivery, Progress, SyncError, SyncSummary, ACK_TIMEOUT};
use crate::agent::Agent;
use crate::error::{AgentError, Result};
use crate::vault::FileReader;

/// How often the queue is looked at for new reports while evidence flows.
pub const LOOK_FOR_REPORTS: Duration = Duration::from_millis(200);

/// Smallest chunk sent (the first ones, and on slow links).
pub const MIN_CHUNK: usize = 8 * 1024;

/// What is in flight, as a multiple of the measured bandwidth-delay
/// product: enough to keep the link busy, little enough that a report
/// sent behind it waits about one round trip more.
const PACING_GAIN: f64 = 1.5;

/// Delivery-rate samples older than this are forgotten.
const RATE_WINDOW: Duration = Duration::from_secs(3);

/// How often the bytes the server holds are written to the queue (for
/// `show` and `status`; the server's answer is what a resume uses).
const NOTE_EVERY: Duration = Duration::from_secs(1);

/// The pace of an upload: chunk size and bytes in flight from the delivery
/// rate and the shortest round trip seen (after BBR, in miniature).
#[derive(Debug)]
pub(super) struct Pace {
    min_rtt: Option<Duration>,
    /// (when, bytes acknowledged in total) of recent answers.
    samples: VecDeque<(Instant, u64)>,
    acked: u64,
    /// Highest delivery rate seen recently, bytes a second.
    rate: f64,
    max_chunk: usize,
}

impl Pace {
    pub(super) fn new(max_chunk: usize) -> Pace {
        Pace {
            min_rtt: None,
            samples: VecDeque::new(),
            acked: 0,
            rate: 0.0,
            max_chunk: max_chunk.clamp(1, MAX_EVIDENCE_CHUNK),
        }
    }

    /// Notes an answer for `bytes` sent `rtt` ago.
    pub(super) fn answered(&mut self, now: Instant, bytes: u64, rtt: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        self.acked += bytes;
        self.samples.push_back((now, self.acked));
        while self.samples.len() > 2 && self.samples.front().is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        if let (Some((t0, a0)), Some((t1, a1))) = (self.samples.front(), self.samples.back()) {
            let dt = t1.duration_since(*t0).as_secs_f64();
            if dt > 0.05 {
                let r = (a1 - a0) as f64 / dt;
                // The newest estimate, or the recent highest: a rate that
                // fell shows up once the older samples age out.
                self.rate = if self.samples.len() > 2 { r.max(self.rate * 0.9) } else { r };
            }
        }
    }

    /// The next chunk's size: about a quarter second of the link.
    pub(super) fn chunk(&self) -> usize {
        ((self.rate * 0.25) as usize).clamp(MIN_CHUNK.min(self.max_chunk), self.max_chunk)
    }

    /// Bytes that may be in flight.
    pub(super) fn window(&self) -> u64 {
        let floor = 2 * self.chunk() as u64;
        match self.min_rtt {
            Some(rtt) if self.rate > 0.0 => ((self.rate * rtt.as_secs_f64() * PACING_GAIN) as u64).max(floor),
            _ => floor,
        }
    }
}

/// A chunk sent and not yet answered.
struct Sent {
    end: u64,
    len: u64,
    at: Instant,
}

/// Uploads every evidence file the server lacks, sending reports recorded
/// meanwhile first.
pub(super) async fn upload<R, W>(
    agent: &mut Agent,
    delivery: &mut Delivery,
    summary: &mut SyncSummary,
    ui: &mut Ui,
    rd: &mut R,
    wr: &mut W,
    progress: Progress,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let files = agent.queue().files_to_upload()?;
    if files.is_empty() {
        return Ok(());
    }
    let max_chunk = (delivery.frame_limit as usize).saturating_sub(truce_shared::wire::CHUNK_OVERHEAD + 64);
    let mut up = Uploader { pace: Pace::new(max_chunk), last_look: Instant::now() };
    for file in files {
        let path = agent.dir().attachment(&file.name);
        // One pass over the sealed copy: its hash and length, as signed.
        let opened = std::fs::File::open(&path)
            .map_err(|e| AgentError::io("cannot read", &path, e))
            .and_then(|f| agent.data_key()?.open_file(&mut std::io::BufReader::new(f), &mut std::io::sink(), &path));
        // The name is keyed by the signed hash: a sealed copy that opens
        // but hashes to another name is another of this laptop's files put
        // in its place (each chunk authenticates, the file as a whole is
        // bound only by its name). Offering it would offer the other
        // file's hash, and a Held for that would mark this one held.
        let opened = opened.and_then(|(sha256, size)| {
            if agent.data_key()?.file_name(&sha256) == file.name {
                Ok((sha256, size))
            } else {
                Err(AgentError::Corrupt(format!(
                    "the sealed file {} is not the file its report signed (replaced on disk?)",
                    path.display()
                )))
            }
        });
        let (sha256, size) = match opened {
            Ok(x) => x,
            Err(e) => {
                warn(progress, &format!("an evidence file cannot be sent: {e}"));
                agent.queue_mut().note_upload(&file.name, file.sent, Some(&format!("this laptop's copy: {e}")))?;
                summary.evidence_refused += 1;
                continue;
            }
        };
        send(wr, &Message::Offer { sha256, size }, delivery.frame_limit, &delivery.addr, &delivery.host).await?;
        let state = loop {
            match up.next(agent, delivery, summary, ui, rd, wr).await? {
                Some((sha, state)) if sha == sha256 => break state,
                Some(_) => return Err(protocol(delivery, "an answer for another file than the one offered")),
                None => continue,
            }
        };
        let from = match state {
            UploadState::Held => {
                note_held(agent, summary, &file.name, size)?;
                continue;
            }
            UploadState::From(from) if from <= size => from,
            UploadState::From(from) => {
                return Err(protocol(delivery, &format!("the server holds {from} bytes of a file of {size}")))
            }
            UploadState::Refused(reason) => {
                let reason = truce_shared::text::printable(&reason).to_string();
                warn(progress, &format!("the server refused an evidence file: {reason}"));
                agent.queue_mut().note_upload(&file.name, file.sent, Some(&reason))?;
                summary.evidence_refused += 1;
                continue;
            }
            UploadState::Mismatch => return Err(protocol(delivery, "a Mismatch before any chunk")),
        };
        let ui_file = super::progress::Bytes::new(progress, size, from);
        let done = up.send_file(agent, delivery, summary, ui, rd, wr, &file.name, sha256, size, from, &ui_file).await;
        ui_file.finish();
        match done? {
            Finished::Held => note_held(agent, summary, &file.name, size)?,
            Finished::Refused(reason) => {
                warn(progress, &format!("the server refused an evidence file: {reason}"));
                summary.evidence_refused += 1;
            }
        }
    }
    Ok(())
}

/// The server holds the whole file: it no longer keeps its reports' bodies
/// from being pruned, and is not offered again.
fn note_held(agent: &mut Agent, summary: &mut SyncSummary, name: &str, size: u64) -> Result<()> {
    agent.queue_mut().mark_file_held(name)?;
    agent.queue_mut().note_upload(name, size, None)?;
    summary.evidence_held += 1;
    Ok(())
}

fn protocol(delivery: &Delivery, what: &str) -> AgentError {
    SyncError::protocol(&delivery.addr, what.to_string()).into()
}

/// How one file's upload ended (a broken link is an error instead).
enum Finished {
    Held,
    Refused(String),
}

struct Uploader {
    pace: Pace,
    last_look: Instant,
}

impl Uploader {
    /// Reads the next message: an Ack is handled here (and `None`
    /// returned), an Upload is returned. Before reading, sends any report
    /// recorded since the last look.
    async fn next<R, W>(
        &mut self,
        agent: &mut Agent,
        delivery: &mut Delivery,
        summary: &mut SyncSummary,
        ui: &mut Ui,
        rd: &mut R,
        wr: &mut W,
    ) -> Result<Option<(Bytes32, UploadState)>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.last_look.elapsed() >= LOOK_FOR_REPORTS {
            self.last_look = Instant::now();
            delivery.look_again();
            delivery.fill(agent, wr).await?;
        }
        let msg = receive(rd, ACK_TIMEOUT, &delivery.addr, &delivery.host, "answer").await?;
        match msg {
            Message::Upload { sha256, state } => Ok(Some((sha256, state))),
            m @ Message::Ack { .. } => {
                delivery.answer(agent, m, summary, ui)?;
                Ok(None)
            }
            Message::Refuse { reason } => Err(SyncError::Ended { addr: delivery.addr.clone(), reason }.into()),
            other => Err(protocol(delivery, &format!("expected Upload or Ack, got {}", message_name(&other)))),
        }
    }

    /// Sends one file from `from`, keeping the bytes in flight at the pace
    /// the link allows, until the server holds it or refuses it.
    #[allow(clippy::too_many_arguments)]
    async fn send_file<R, W>(
        &mut self,
        agent: &mut Agent,
        delivery: &mut Delivery,
        summary: &mut SyncSummary,
        ui: &mut Ui,
        rd: &mut R,
        wr: &mut W,
        name: &str,
        sha256: Bytes32,
        size: u64,
        from: u64,
        bar: &super::progress::Bytes,
    ) -> Result<Finished>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let path = agent.dir().attachment(name);
        let mut file = std::fs::File::open(&path).map_err(|e| AgentError::io("cannot read", &path, e))?;
        let mut src = std::io::BufReader::new(&mut file);
        let key = agent.data_key()?.clone();
        let mut reader: FileReader<'_> = key.file_reader(&mut src, &path)?;
        reader.skip(from)?;
        // Clear bytes read but not yet sent.
        let mut buf: Zeroizing<Vec<u8>> = Zeroizing::new(Vec::new());
        let mut next = from;
        let mut in_flight: VecDeque<Sent> = VecDeque::new();
        let mut flight_bytes = 0u64;
        let mut noted = Instant::now();
        // Set when the server's answer is not the one expected (it holds
        // less, refused, or the file is done): the chunks still in flight
        // are answered first, then the upload goes on from `resume`.
        let mut ending: Option<Finished> = None;
        let mut resume: Option<u64> = None;
        loop {
            while ending.is_none() && resume.is_none() && next < size && flight_bytes < self.pace.window() {
                let want = self.pace.chunk();
                while buf.len() < want {
                    match reader.next_chunk()? {
                        Some(data) => buf.extend_from_slice(data),
                        None => break,
                    }
                }
                let n = want.min(buf.len());
                if n == 0 {
                    return Err(AgentError::Corrupt(format!("{} ended before its signed length", path.display())));
                }
                let data = serde_bytes::ByteBuf::from(buf[..n].to_vec());
                buf.drain(..n);
                let msg = Message::Chunk { sha256, offset: next, data };
                send(wr, &msg, delivery.frame_limit, &delivery.addr, &delivery.host).await?;
                bar.sent(n as u64, self.pace.window());
                next += n as u64;
                flight_bytes += n as u64;
                in_flight.push_back(Sent { end: next, len: n as u64, at: Instant::now() });
            }
            if in_flight.is_empty() {
                if let Some(end) = ending {
                    return Ok(end);
                }
                match resume.take() {
                    Some(at) => {
                        // The server holds less than was sent (its disk, a
                        // restart): go back to what it holds.
                        drop(reader);
                        return Box::pin(
                            self.send_file(agent, delivery, summary, ui, rd, wr, name, sha256, size, at, bar),
                        )
                        .await;
                    }
                    None => return Err(protocol(delivery, "the server did not say the whole file arrived")),
                }
            }
            let Some((sha, state)) = self.next(agent, delivery, summary, ui, rd, wr).await? else { continue };
            if sha != sha256 {
                return Err(protocol(delivery, "an answer for another file than the one being sent"));
            }
            let Some(sent) = in_flight.pop_front() else {
                return Err(protocol(delivery, "an answer for a chunk never sent"));
            };
            flight_bytes -= sent.len;
            if ending.is_some() {
                continue;
            }
            match state {
                UploadState::From(held) if held == sent.end => {
                    self.pace.answered(Instant::now(), sent.len, sent.at.elapsed());
                    summary.evidence_bytes += sent.len;
                    bar.set(held);
                    if noted.elapsed() >= NOTE_EVERY {
                        agent.queue_mut().note_upload(name, held, None)?;
                        noted = Instant::now();
                    }
                }
                UploadState::From(held) if held <= size => {
                    if resume.is_none() {
                        resume = Some(held);
                    }
                }
                UploadState::From(held) => {
                    return Err(protocol(delivery, &format!("the server holds {held} bytes of a file of {size}")))
                }
                UploadState::Held => {
                    summary.evidence_bytes += sent.len;
                    bar.set(size);
                    ending = Some(Finished::Held);
                }
                UploadState::Mismatch => {
                    // This laptop's copy authenticated as it was read: the
                    // bytes were changed on their way. Next sync tries again.
                    let why = "the server found the bytes did not match the signed hash (altered on their way?): \
                               sent again next sync";
                    agent.queue_mut().note_upload(name, 0, Some(why))?;
                    ending = Some(Finished::Refused(why.into()));
                }
                UploadState::Refused(reason) => {
                    let reason = truce_shared::text::printable(&reason).to_string();
                    let held = sent.end - sent.len;
                    agent.queue_mut().note_upload(name, held, Some(&reason))?;
                    ending = Some(Finished::Refused(reason));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_follows_the_bandwidth_delay_product() {
        // A 32 kB/s link with 0.85 s round trips.
        let mut p = Pace::new(MAX_EVIDENCE_CHUNK);
        assert_eq!(p.chunk(), MIN_CHUNK);
        assert_eq!(p.window(), 2 * MIN_CHUNK as u64);
        let t0 = Instant::now();
        for i in 1..=20u64 {
            p.answered(t0 + Duration::from_millis(250 * i), 8_000, Duration::from_millis(850));
        }
        let w = p.window();
        // rate 32 kB/s × 0.85 s × 1.5 ≈ 41 kB: a report behind it waits ~1.3 s.
        assert!((35_000..48_000).contains(&w), "{w}");
        assert_eq!(p.chunk(), MIN_CHUNK);
        // A fast link: chunks grow to the cap, the window with them.
        let mut p = Pace::new(MAX_EVIDENCE_CHUNK);
        for i in 1..=50u64 {
            p.answered(t0 + Duration::from_millis(10 * i), 1_000_000, Duration::from_millis(5));
        }
        assert_eq!(p.chunk(), MAX_EVIDENCE_CHUNK);
        assert!(p.window() >= 2 * MAX_EVIDENCE_CHUNK as u64);
    }
}
