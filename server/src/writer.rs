//! The one writer: a thread that owns the write connection and commits the
//! batches of every connection together (group commit).
//!
//! A connection sends its checked batch and waits on a oneshot; the writer
//! takes everything queued, applies it in one transaction, commits, and only
//! then answers each waiter. An answer therefore always means "durable".

use std::path::Path;

use tokio::sync::{mpsc, oneshot};
use truce_shared::wire::Status;
use truce_shared::Bytes32;

use crate::store::{Checked, Store, StoreError};

/// Most batches folded into one transaction.
const MAX_GROUP: usize = 512;

type Reply = Result<Vec<(Bytes32, Status)>, String>;

struct Job {
    items: Vec<Checked>,
    reply: oneshot::Sender<Reply>,
}

/// A handle to the writer thread. Cloning shares the writer; the thread
/// exits when every handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Opens the store and starts the writer thread.
    pub fn start(db: &Path) -> Result<(Writer, std::thread::JoinHandle<()>), StoreError> {
        let mut store = Store::open(db)?;
        let (tx, mut rx) = mpsc::channel::<Job>(1024);
        let handle = std::thread::Builder::new()
            .name("truce-writer".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(j) => jobs.push(j),
                            Err(_) => break,
                        }
                    }
                    match commit(&mut store, &jobs) {
                        Ok(results) => {
                            for (job, r) in jobs.into_iter().zip(results) {
                                let _ = job.reply.send(Ok(r));
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, batches = jobs.len(), "commit failed: nothing acked");
                            for job in jobs {
                                let _ = job.reply.send(Err(e.to_string()));
                            }
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Sqlite(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))?;
        Ok((Writer { tx }, handle))
    }

    /// Stores a checked batch; returns once it is durably committed.
    pub async fn submit(&self, items: Vec<Checked>) -> Reply {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Job { items, reply }).await.map_err(|_| "the writer has stopped".to_string())?;
        rx.await.map_err(|_| "the writer has stopped".to_string())?
    }
}

fn commit(store: &mut Store, jobs: &[Job]) -> Result<Vec<Vec<(Bytes32, Status)>>, StoreError> {
    let now = truce_shared::time::now_ms();
    let tx = store.begin()?;
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(Store::apply(&tx, &job.items, now)?);
    }
    tx.commit()?;
    Ok(results)
}
