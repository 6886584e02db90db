//! `import`: bundles in through the same rules as the wire.
//!
//! Reports are read one at a time, verified in parallel chunks with the one
//! verification function, and applied with [`Store::apply`] — the same
//! outcomes as over the network, in transactions of [`CHUNK`] reports.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};
use truce_shared::bundle::{BundleError, BundleReader};
use truce_shared::wire::Status;

use crate::store::{Checked, Store};

/// Reports per transaction.
const CHUNK: usize = 1024;

/// Counts by outcome.
#[derive(Debug, Default, serde::Serialize)]
pub struct ImportCounts {
    /// Verified and stored.
    pub accepted: u64,
    /// Already stored.
    pub duplicate: u64,
    /// Stored, not trusted yet, by reason.
    pub quarantined: BTreeMap<String, u64>,
    /// Not accepted, by reason.
    pub rejected: BTreeMap<String, u64>,
}

impl ImportCounts {
    fn add(&mut self, s: &Status) {
        match s {
            Status::Accepted => self.accepted += 1,
            Status::Duplicate => self.duplicate += 1,
            Status::Quarantined(r) => *self.quarantined.entry(r.clone()).or_default() += 1,
            Status::Rejected(r) => *self.rejected.entry(r.clone()).or_default() += 1,
        }
    }
}

/// Imports one bundle file into the store.
pub fn import_file(store: &mut Store, path: &Path, counts: &mut ImportCounts) -> Result<()> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = BundleReader::new(BufReader::new(f)).with_context(|| format!("{}", path.display()))?;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut broken: Option<BundleError> = None;
    for item in reader {
        match item {
            Ok(r) => chunk.push(r),
            Err(e @ BundleError::Decode { .. }) => {
                tracing::warn!(file = %path.display(), error = %e, "undecodable report in bundle");
                *counts.rejected.entry("malformed".into()).or_default() += 1;
            }
            Err(e) => {
                broken = Some(e);
                break;
            }
        }
        if chunk.len() == CHUNK {
            apply(store, std::mem::take(&mut chunk), counts)?;
        }
    }
    apply(store, chunk, counts)?;
    if let Some(e) = broken {
        *counts.rejected.entry("malformed".into()).or_default() += 1;
        return Err(anyhow::anyhow!("{}: {e} (the reports before it were imported)", path.display()));
    }
    Ok(())
}

fn apply(store: &mut Store, reports: Vec<truce_shared::SignedReport>, counts: &mut ImportCounts) -> Result<()> {
    if reports.is_empty() {
        return Ok(());
    }
    let checked = verify_parallel(reports);
    let tx = store.begin()?;
    let results = Store::apply(&tx, &checked, truce_shared::time::now_ms())?;
    tx.commit()?;
    for (_, s) in &results {
        counts.add(s);
    }
    Ok(())
}

/// Verifies reports on every core.
pub fn verify_parallel(reports: Vec<truce_shared::SignedReport>) -> Vec<Checked> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let per = reports.len().div_ceil(threads).max(1);
    let mut chunks: Vec<Vec<truce_shared::SignedReport>> = Vec::new();
    let mut it = reports.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per).collect());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| s.spawn(move || c.into_iter().map(Checked::check).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    })
}
