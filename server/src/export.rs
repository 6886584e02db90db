//! `export`: verified reports out, streamed row by row.
//!
//! This first version writes JSON Lines with the report's identity, chain
//! position, status and full observation; the investigator's formats (CSV,
//! GeoJSON, bundles), filters and incidents build on the same row reader.

use std::io::Write;

use anyhow::Result;
use rusqlite::params;
use serde_json::json;

use crate::store::Store;

/// Which statuses to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFilter {
    /// Verified only (the default).
    Verified,
    /// Quarantined only.
    Quarantined,
    /// Rejected evidence only.
    Rejected,
    /// Everything stored.
    All,
}

/// Writes one JSON object per stored report matching `status`.
pub fn jsonl(store: &Store, status: StatusFilter, out: &mut impl Write) -> Result<u64> {
    let filter = match status {
        StatusFilter::Verified => "verified",
        StatusFilter::Quarantined => "quarantined",
        StatusFilter::Rejected => "rejected",
        StatusFilter::All => "%",
    };
    let mut q = store.conn().prepare(
        "SELECT r.id, r.body, r.status, r.reason, r.received_at, d.name FROM reports r
         LEFT JOIN devices d ON d.key = r.device WHERE r.status LIKE ?1 ORDER BY r.observed_at, r.id",
    )?;
    let mut rows = q.query(params![filter])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let id: Vec<u8> = row.get(0)?;
        let body: Vec<u8> = row.get(1)?;
        let env = truce_shared::encoding::decode_canonical(&body)?;
        let o = &env.observation;
        let v = json!({
            "id": hex::encode(&id),
            "device": hex::encode(env.device),
            "device_name": row.get::<_, Option<String>>(5)?,
            "seq": env.seq,
            "status": row.get::<_, String>(2)?,
            "reason": row.get::<_, Option<String>>(3)?,
            "received_at": truce_shared::time::format_ms(row.get(4)?),
            "observed_at": truce_shared::time::format_ms(o.observed_at),
            "observed_until": o.observed_until.map(truce_shared::time::format_ms),
            "lat": o.position.lat,
            "lon": o.position.lon,
            "category": o.category,
            "basis": o.basis,
            "description": o.description,
            "amends": env.amends.map(hex::encode),
        });
        serde_json::to_writer(&mut *out, &v)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}
