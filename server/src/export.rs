//! `export`: stored reports out, streamed row by row.
//!
//! This first version writes JSON Lines: each report's identity, chain
//! position, status and every observation field, decoded from the exact
//! signed bytes the store kept. The investigator's formats (CSV, GeoJSON,
//! bundles), filters and incidents build on the same streaming reader,
//! [`Store::for_each_report`].

use std::io::Write;

use serde_json::json;

use crate::store::{ReportOrder, ReportQuery, ReportStatus, Store, StoreError};

/// Which statuses to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    /// Verified only (the default).
    Verified,
    /// Quarantined only.
    Quarantined,
    /// Rejected evidence only (equivocations).
    Rejected,
    /// Everything stored.
    All,
}

impl StatusFilter {
    /// The status to select, `None` for all.
    pub fn status(self) -> Option<ReportStatus> {
        match self {
            StatusFilter::Verified => Some(ReportStatus::Verified),
            StatusFilter::Quarantined => Some(ReportStatus::Quarantined),
            StatusFilter::Rejected => Some(ReportStatus::Rejected),
            StatusFilter::All => None,
        }
    }
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored body no longer decodes: the database file was altered.
    #[error("stored report {id} does not decode ({detail}): the database file was altered")]
    Corrupt {
        /// The report id, hex.
        id: String,
        /// What failed.
        detail: String,
    },
    /// Writing the output failed.
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    /// Encoding a row failed.
    #[error("cannot encode a row: {0}")]
    Json(#[from] serde_json::Error),
}

/// Writes one JSON object per stored report with status `status`, in
/// observation order, and returns how many.
pub fn jsonl(store: &Store, status: StatusFilter, out: &mut impl Write) -> Result<u64, ExportError> {
    let query = ReportQuery { status: status.status(), order: ReportOrder::Observed, ..Default::default() };
    store.for_each_report(&query, |row| {
        let env =
            row.envelope().map_err(|e| ExportError::Corrupt { id: hex::encode(row.id), detail: e.to_string() })?;
        let o = &env.observation;
        let v = json!({
            "id": hex::encode(row.id),
            "device": hex::encode(row.device),
            "device_name": row.device_name,
            "seq": row.seq,
            "prev": hex::encode(row.prev),
            "status": row.status,
            "reason": row.reason,
            "received_at": truce_shared::time::format_ms(row.received_at),
            "recorded_at": truce_shared::time::format_ms(env.recorded_at),
            "observed_at": truce_shared::time::format_ms(o.observed_at),
            "observed_until": o.observed_until.map(truce_shared::time::format_ms),
            "lat": o.position.lat,
            "lon": o.position.lon,
            "accuracy_m": o.position.accuracy_m,
            "bearing_deg": o.bearing_deg,
            "distance_m": o.distance_m,
            "category": o.category,
            "effect": o.effect,
            "weapon": o.weapon,
            "count": o.count.map(|c| json!({"n": c.n, "qualifier": c.qualifier})),
            "basis": o.basis,
            "description": o.description,
            "attachments": o.attachments.iter().map(|a| json!({
                "name": a.name, "media_type": a.media_type, "size": a.size, "sha256": hex::encode(a.sha256),
            })).collect::<Vec<_>>(),
            "amends": env.amends.map(hex::encode),
            "incident": row.incident,
        });
        serde_json::to_writer(&mut *out, &v)?;
        out.write_all(b"\n")?;
        Ok(())
    })
}
