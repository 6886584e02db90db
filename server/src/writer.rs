//! The one writer: a thread that owns the store's write connection and
//! commits the batches of every connection together (group commit).
//!
//! A connection sends its verified batch with a oneshot and waits. The
//! writer takes the first batch queued and everything queued behind it,
//! applies them all in one transaction ([`Store::apply`]), commits (one
//! fsync for all of them), and only then answers each waiter. An answer
//! therefore always means "durable": the connection may sign a receipt and
//! send the Ack.
//!
//! With one writer, two connections submitting the same report at the same
//! moment cannot both store it: the second sees the first's row, inside the
//! same transaction or a later one. A failed commit answers every waiter
//! with an error, so nothing is acknowledged that was not stored.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};
use truce_shared::log::Outcome;

use crate::metrics::Metrics;
use crate::store::{Applied, Arrival, Contact, Head, Quotas, Store, StoreError};
use crate::verify::Checked;

/// Most batches folded into one transaction, so one commit's latency stays
/// bounded however many connections are waiting.
const MAX_GROUP_BATCHES: usize = 256;

/// Most reports folded into one transaction.
const MAX_GROUP_REPORTS: usize = 16 * 1024;

/// Batches that may wait for the writer before connections have to wait to
/// queue (backpressure on the network instead of memory).
const QUEUE: usize = 1024;

/// Why a batch was not stored. The connection sends no Ack; the agent
/// keeps the reports and sends them again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The transaction failed (disk full, database locked for too long…).
    #[error("the store failed: {0}")]
    Store(String),
    /// The writer thread has stopped.
    #[error("the writer has stopped")]
    Stopped,
    /// A disk quota has no room for a report of the batch: the reports
    /// before it are stored, it and the rest are not (the reason says
    /// which quota, for the client).
    #[error("{0}")]
    Quota(String),
}

/// A stored batch: each report's outcome in submit order, the
/// `received_at` of those stored, and the log's head after the commit (its
/// checkpoint includes every entry the outcomes name).
#[derive(Debug, Clone)]
pub struct Committed {
    /// Per report, in submit order.
    pub outcomes: Vec<Outcome>,
    /// When the reports stored were received, unix ms.
    pub received_at: i64,
    /// The log after the commit.
    pub head: Arc<Head>,
}

struct Job {
    batch: Vec<Checked>,
    /// How it came (`None` for a session's contact alone).
    arrival: Option<Arrival>,
    /// A session opened (recorded for `device list`), with an empty batch.
    contact: Option<Contact>,
    reply: oneshot::Sender<Result<Committed, WriteError>>,
}

/// A handle to the writer thread. Clones share the one writer; the thread
/// commits what is queued and exits once every handle is dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("reports", &self.batch.len()).finish()
    }
}

/// The writer thread, to join after every [`Writer`] handle is dropped.
#[derive(Debug)]
pub struct WriterThread(JoinHandle<()>, Option<oneshot::Receiver<()>>);

impl WriterThread {
    /// A future that resolves when the writer thread has ended, however it
    /// ended: after its handles are gone (a normal stop), or by a panic
    /// while the server still needs it, which the server must not outlive
    /// (it would accept batches it can never acknowledge). Taken once; a
    /// second call gives a future that never resolves.
    pub fn ended(&mut self) -> impl std::future::Future<Output = ()> + Unpin {
        let rx = self.1.take();
        Box::pin(async move {
            match rx {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending().await,
            }
        })
    }

    /// Waits for the writer to commit what is queued and exit.
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("the writer thread panicked");
        }
    }
}

impl Writer {
    /// Starts the writer thread, which takes ownership of `store` and
    /// stores within `quotas`.
    pub fn spawn(store: Store, quotas: Quotas) -> std::io::Result<(Writer, WriterThread)> {
        Writer::spawn_measured(store, quotas, Arc::default())
    }

    /// [`Writer::spawn`], counting each commit (its time and size) and the
    /// outcomes it stored in `metrics`.
    pub fn spawn_measured(
        store: Store,
        quotas: Quotas,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Writer, WriterThread)> {
        store.tune_for_writer();
        let (queue, rx) = mpsc::channel(QUEUE);
        let (ended_tx, ended_rx) = oneshot::channel();
        let handle = std::thread::Builder::new().name("truce-writer".into()).spawn(move || {
            // Dropped when the thread ends, by return or by unwinding: the
            // receiver then resolves.
            let _ended = ended_tx;
            writer_loop(store, rx, &quotas, &metrics)
        })?;
        Ok((Writer { queue }, WriterThread(handle, Some(ended_rx))))
    }

    /// Stores a verified batch that came as `arrival`; returns once it is
    /// durably committed, with each report's outcome.
    pub async fn commit(&self, batch: Vec<Checked>, arrival: Arrival) -> Result<Committed, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { batch, arrival: Some(arrival), contact: None, reply };
        self.queue.send(job).await.map_err(|_| WriteError::Stopped)?;
        answer.await.map_err(|_| WriteError::Stopped)?
    }

    /// Records that a session opened (the device its Hello named, its
    /// certificate and address), in the next group commit. Nothing waits
    /// for it: a session is served whether or not this is stored.
    pub fn note_contact(&self, contact: Contact) {
        let (reply, _) = oneshot::channel();
        let job = Job { batch: Vec::new(), arrival: None, contact: Some(contact), reply };
        if self.queue.try_send(job).is_err() {
            tracing::debug!("the writer's queue is full: this session's contact is not recorded");
        }
    }

    /// [`Writer::commit`] for threads outside the async runtime (it panics
    /// on a runtime thread, as every blocking tokio call does).
    pub fn commit_blocking(&self, batch: Vec<Checked>, arrival: Arrival) -> Result<Committed, WriteError> {
        let (reply, answer) = oneshot::channel();
        let job = Job { batch, arrival: Some(arrival), contact: None, reply };
        self.queue.blocking_send(job).map_err(|_| WriteError::Stopped)?;
        answer.blocking_recv().map_err(|_| WriteError::Stopped)?
    }
}

fn writer_loop(mut store: Store, mut rx: mpsc::Receiver<Job>, quotas: &Quotas, metrics: &Metrics) {
    // Fault injection for the test that the server exits when its writer
    // dies (debug builds only; a release build has no such switch).
    #[cfg(debug_assertions)]
    let mut panic_after: Option<u64> = std::env::var("TRUCE_TEST_WRITER_PANIC_AFTER").ok().and_then(|v| v.parse().ok());
    while let Some(first) = rx.blocking_recv() {
        let mut reports = first.batch.len();
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP_BATCHES && reports < MAX_GROUP_REPORTS {
            match rx.try_recv() {
                Ok(job) => {
                    reports += job.batch.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        // Counts groups that hold reports (a session's contact alone is
        // not one), so a test knows which batches were stored.
        #[cfg(debug_assertions)]
        if let Some(n) = panic_after.as_mut().filter(|_| reports > 0) {
            if *n == 0 {
                panic!("TRUCE_TEST_WRITER_PANIC_AFTER: the writer dies, as a test asked");
            }
            *n -= 1;
        }
        let now = truce_shared::time::now_ms();
        let batches: Vec<Work<'_>> = jobs.iter().map(Work::of).collect();
        let started = std::time::Instant::now();
        let committed = commit(&mut store, &batches, now, quotas);
        // A session's contact alone is no group of reports.
        if reports > 0 {
            metrics.commit(started.elapsed(), reports, jobs.iter().filter(|j| j.arrival.is_some()).count());
        }
        match committed {
            Ok(results) => {
                tracing::debug!(batches = jobs.len(), reports, "committed");
                for c in results.iter().flatten() {
                    metrics.outcomes(c.outcomes.iter().map(|o| &o.status));
                }
                for (job, outcomes) in jobs.into_iter().zip(results) {
                    // A waiter that went away (its client hung up) just
                    // misses its answer; the reports are stored.
                    let _ = job.reply.send(outcomes);
                }
            }
            Err(e) if jobs.len() > 1 => {
                // Don't let one bad batch fail its neighbours: retry each in
                // its own transaction.
                tracing::warn!(error = %e, batches = jobs.len(), "group commit failed; retrying batch by batch");
                for job in jobs {
                    let r = commit(&mut store, &[Work::of(&job)], now, quotas).map(|mut v| v.remove(0));
                    if let Ok(Ok(c)) = &r {
                        metrics.outcomes(c.outcomes.iter().map(|o| &o.status));
                    }
                    let _ = job.reply.send(r.unwrap_or_else(|e| Err(failed(&e))));
                }
            }
            Err(e) => {
                let _ = jobs.remove(0).reply.send(Err(failed(&e)));
            }
        }
    }
}

/// Applies each batch in ONE transaction and commits it; the results are
/// durable when this returns `Ok`.
/// One job's part of a group commit.
struct Work<'a> {
    batch: &'a [Checked],
    arrival: Option<&'a Arrival>,
    contact: Option<&'a Contact>,
}

impl<'a> Work<'a> {
    fn of(job: &'a Job) -> Work<'a> {
        Work { batch: &job.batch, arrival: job.arrival.as_ref(), contact: job.contact.as_ref() }
    }
}

/// Each job's answer: its outcomes, or the quota that ended its batch
/// (what came before the report it had no room for is committed all the
/// same, unacknowledged: the agent sends it again and hears Duplicate).
fn commit(
    store: &mut Store,
    work: &[Work<'_>],
    now: i64,
    quotas: &Quotas,
) -> Result<Vec<Result<Committed, WriteError>>, StoreError> {
    let (applied, head) = store.write_logged(|tx| {
        work.iter()
            .map(|w| {
                if let Some(c) = w.contact {
                    Store::record_contact(tx, c, now)?;
                }
                match w.arrival {
                    Some(arrival) => Store::apply_within(tx, w.batch, now, arrival, quotas),
                    None => Ok(Applied { outcomes: Vec::new(), refused: None }),
                }
            })
            .collect::<Result<Vec<_>, StoreError>>()
    })?;
    let head = Arc::new(head.ok_or_else(|| StoreError::Config("the store's log is not set up".into()))?);
    Ok(work
        .iter()
        .zip(applied)
        .map(|(w, a)| match a.refused {
            None => Ok(Committed { outcomes: a.outcomes, received_at: now, head: head.clone() }),
            Some(hit) => {
                let (serial, subject) = match w.arrival {
                    Some(crate::store::Arrival::Tls(c)) => (c.serial.as_str(), c.subject.as_str()),
                    _ => ("-", "-"),
                };
                let device = match w.batch.get(a.outcomes.len()) {
                    Some(crate::verify::Checked::Valid(v)) => truce_shared::signing::fingerprint(&v.envelope.device),
                    _ => "-".to_string(),
                };
                tracing::warn!(
                    quota = hit.limit,
                    cert_serial = serial,
                    cert_subject = %truce_shared::text::printable(subject),
                    device = %device,
                    stored = a.outcomes.len(),
                    refused = w.batch.len() - a.outcomes.len(),
                    "quota reached: the batch is refused from this report on (raise the quota with its flag, or \
                     revoke the laptop)"
                );
                Err(WriteError::Quota(hit.reason))
            }
        })
        .collect())
}

fn failed(e: &StoreError) -> WriteError {
    tracing::error!(error = %e, "commit failed: the batch is not acknowledged");
    WriteError::Store(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_answer_comes_after_commit_and_the_thread_ends_with_its_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sqlite");
        let mut store = Store::open_sqlite(&path).unwrap();
        store.open_log(&[7; 32], truce_shared::log::DEFAULT_MISSION).unwrap();
        let (w, thread) = Writer::spawn(store, Quotas::default()).unwrap();
        let bad = truce_shared::SignedReport { body: vec![1, 2, 3], signature: truce_shared::Signature64([0; 64]) };
        let out = w.commit(vec![Checked::check(bad)], Arrival::Import([0; 32])).await.unwrap();
        assert!(matches!(out.outcomes[0].status, truce_shared::wire::Status::Rejected(_)));
        assert_eq!((out.outcomes[0].entry, out.head.size), (0, 1));
        // Another connection sees the row as soon as the answer arrived.
        let n = Store::open_sqlite(&path).unwrap().stats().unwrap().rejections.distinct;
        assert_eq!(n, 1);
        drop(w);
        tokio::task::spawn_blocking(move || thread.join()).await.unwrap();
    }
}
