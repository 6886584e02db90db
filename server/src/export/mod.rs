//! `export`: stored reports out, for the people who investigate, streamed
//! row by row so a store of any size exports in bounded memory.
//!
//! Four formats (field names and samples in `server/INVESTIGATORS.md`):
//! - CSV: one header row, RFC 4180 quoting, times in RFC 3339 UTC;
//! - JSON Lines: one object a line, the same fields;
//! - GeoJSON: an RFC 7946 FeatureCollection, one Point feature per report
//!   at the monitor's position, [lon, lat], the same fields as properties
//!   (the estimated event position rides along as `est_lon`/`est_lat`);
//! - bundle: the exact signed bytes (DESIGN §4) in a version-2 bundle
//!   with the log's signed checkpoint and, per report, its log entry and
//!   inclusion proof (DESIGN §9), which anyone can check offline with
//!   `truce-server verify`; and beside it the device list.
//!
//! Every row is decoded from the exact bytes the device signed, so an
//! export shows what the monitor signed, never a copy that could drift.

use std::io::Write;

use serde::Serialize;
use truce_shared::bundle::{Item, ItemWriter};
use truce_shared::time::format_ms;

use crate::store::{ReportOrder, ReportQuery, ReportStatus, Store, StoreError};

mod columns;
mod csv;
mod json;

pub use columns::{AttachmentOut, Cell, ExportRow, CSV_HEADER};
pub use csv::neutralise_formula;

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

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row (RFC 4180).
    Csv,
    /// JSON Lines: one JSON object a line.
    Jsonl,
    /// A GeoJSON FeatureCollection (RFC 7946).
    Geojson,
    /// A Truce bundle: the exact signed reports, verifiable offline.
    Bundle,
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
    /// Writing CSV failed.
    #[error("cannot write CSV: {0}")]
    Csv(#[from] ::csv::Error),
}

/// Writes every selected report to `out` in `format` and returns how many.
/// Rows come in observation order (arrival order for bundles, so a chain
/// imports in the order it was stored).
pub fn export(
    store: &Store,
    query: &ReportQuery,
    format: Format,
    out: &mut (impl Write + Send + ?Sized),
) -> Result<u64, ExportError> {
    let mut query = query.clone();
    query.order = if format == Format::Bundle { ReportOrder::Arrival } else { ReportOrder::Observed };
    match format {
        Format::Jsonl => json::export_jsonl(store, &query, out),
        Format::Csv => csv::export_csv(store, &query, out),
        Format::Geojson => {
            out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
            let mut first = true;
            let mut feature_json = Vec::with_capacity(2048);
            let n = store.for_each_report(&query, |row| {
                let r = ExportRow::from_row_with(row, query.evidence.as_deref())?;
                feature_json.clear();
                if !first {
                    feature_json.extend_from_slice(b",\n");
                }
                first = false;
                let (lat, lon) = r.position();
                let feature = Feature {
                    kind: "Feature",
                    id: r.id(),
                    geometry: Point { kind: "Point", coordinates: [lon, lat] },
                    properties: &r,
                };
                serde_json::to_writer(&mut feature_json, &feature)?;
                out.write_all(&feature_json)?;
                Ok::<_, ExportError>(())
            })?;
            out.write_all(b"\n]}\n")?;
            Ok(n)
        }
        Format::Bundle => {
            // Version 2: the checkpoint, then each report with its entry
            // and audit path, all from one snapshot of the store.
            let w = std::cell::RefCell::new(ItemWriter::new(&mut *out)?);
            let n = store.for_each_report_proved(
                &query,
                |head| {
                    if let Some((head, key)) = head {
                        w.borrow_mut().write(&Item::Checkpoint { log_key: *key, note: head.checkpoint.clone() })?;
                    }
                    Ok::<_, ExportError>(())
                },
                |row, proved| {
                    let mut w = w.borrow_mut();
                    w.write(&Item::Report(row.signed()))?;
                    if let Some(p) = proved {
                        w.write(&Item::Entry { index: p.index, entry: p.entry })?;
                        w.write(&Item::Inclusion { index: p.index, size: p.size, proof: p.proof })?;
                    }
                    Ok(())
                },
            )?;
            w.into_inner().finish()?;
            Ok(n)
        }
    }
}

#[derive(Serialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: String,
    geometry: Point,
    properties: &'a ExportRow,
}

#[derive(Serialize)]
struct Point {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: [f64; 2],
}

/// One device in a devices file, beside a bundle: what `verify --devices`
/// reads to check enrolment. The same fields as `device list --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct DeviceEntry {
    /// The public key, 64 hex.
    pub device: String,
    /// The enrolled name.
    pub name: Option<String>,
    /// When it was enrolled (RFC 3339).
    pub added_at: Option<String>,
    /// When it was revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
}

/// Writes the device registry as JSON Lines (one [`DeviceEntry`] a line).
pub fn devices(store: &Store, out: &mut (impl Write + ?Sized)) -> Result<u64, ExportError> {
    let mut n = 0;
    for d in store.devices()? {
        let e = DeviceEntry {
            device: hex::encode(d.key),
            name: d.name,
            added_at: Some(format_ms(d.added_at)),
            revoked_at: d.revoked_at.map(format_ms),
        };
        serde_json::to_writer(&mut *out, &e)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Checked;
    use ed25519_dalek::SigningKey;
    use truce_shared::{Observation, SignedReport};

    /// A store with one enrolled device's chain of `n` reports, observed in
    /// seq order.
    fn store_with(n: u64) -> (Store, Vec<SignedReport>) {
        let mut store = Store::open_in_memory().unwrap();
        let key = SigningKey::from_bytes(&[9; 32]);
        store.add_device(&key.verifying_key().to_bytes(), Some("laptop"), 0).unwrap();
        let mut prev = [0; 32];
        let reports: Vec<SignedReport> = (1..=n)
            .map(|seq| {
                let t = 1_795_338_900_000 + seq as i64 * 1000;
                let observation = Observation {
                    observed_at: t,
                    ..truce_testkit::observation(&format!("bursts to the north, report {seq}"))
                };
                let env = truce_testkit::envelope(key.verifying_key().to_bytes(), seq, prev, observation);
                let r = truce_shared::sign(&key, &env).unwrap();
                prev = r.id();
                r
            })
            .collect();
        let checked: Vec<Checked> = reports.iter().cloned().map(Checked::check).collect();
        store.write(|tx| Store::apply(tx, &checked, 1, &crate::store::Arrival::Import([0; 32]))).unwrap();
        (store, reports)
    }

    #[test]
    fn json_lines_keep_every_row_in_order_through_the_three_threads() {
        // Many more rows than the channels hold, and a last partial batch.
        let n = (json::PIPE_ROWS * json::PIPE_DEPTH * 3 + 17) as u64;
        let (store, reports) = store_with(n);
        let mut out = Vec::new();
        assert_eq!(export(&store, &ReportQuery::default(), Format::Jsonl, &mut out).unwrap(), n);
        let lines: Vec<serde_json::Value> =
            out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert_eq!(lines.len() as u64, n);
        for (line, r) in lines.iter().zip(&reports) {
            assert_eq!(line["id"], hex::encode(r.id()));
        }
    }

    #[test]
    fn the_direct_json_is_what_serde_json_writes() {
        // Every optional field both ways, and text that needs escaping.
        let store = golden::full_store();
        let mut rows = Vec::new();
        store
            .for_each_report(&ReportQuery::default(), |row| {
                rows.push(ExportRow::from_row(row)?);
                Ok::<_, ExportError>(())
            })
            .unwrap();
        assert_eq!(rows.len(), 4);
        for row in rows {
            let mut direct = Vec::new();
            json::write_row(&row, &mut direct).unwrap();
            assert_eq!(String::from_utf8(direct).unwrap(), serde_json::to_string(&row).unwrap());
        }
    }

    #[test]
    fn a_bundle_proves_every_report_against_its_checkpoint() {
        // Enough reports for audit paths of several lengths, in a tree
        // (an enrolment and 300 reports) that is not a power of two.
        let (store, reports) = store_with(300);
        let mut out = Vec::new();
        assert_eq!(export(&store, &ReportQuery::default(), Format::Bundle, &mut out).unwrap(), 300);
        let key = store.log_key().unwrap().public();
        let pin = crate::offline::LogPin::Key(key);
        let mut ids = Vec::new();
        let totals = crate::offline::verify_bundle(&out[..], None, Some(&pin), |s| {
            if let crate::offline::Seen::Report(c) = s {
                assert_eq!(c.proven, Some(true), "{c:?}");
                ids.push(c.id.clone().unwrap());
            }
            Ok(())
        })
        .unwrap();
        assert!(totals.clean() && totals.proven == 300 && totals.checkpoint_ok, "{totals:?}");
        assert_eq!(ids, reports.iter().map(|r| hex::encode(r.id())).collect::<Vec<_>>());
        // A filtered export proves what it holds, against the same head.
        let one = ReportQuery { after: Some(290), ..ReportQuery::default() };
        let mut out = Vec::new();
        assert_eq!(export(&store, &one, Format::Bundle, &mut out).unwrap(), 10);
        let totals = crate::offline::verify_bundle(&out[..], None, Some(&pin), |_| Ok(())).unwrap();
        assert_eq!((totals.proven, totals.not_proven), (10, 0));
    }

    /// Takes `left` bytes, then fails like a full disk.
    struct FullAfter {
        left: usize,
    }

    impl Write for FullAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_output_stops_every_stage_with_its_error() {
        let n = (json::PIPE_ROWS * json::PIPE_DEPTH * 3) as u64;
        let (store, _) = store_with(n);
        let err = export(&store, &ReportQuery::default(), Format::Jsonl, &mut FullAfter { left: 100_000 }).unwrap_err();
        match err {
            ExportError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}"),
            other => panic!("expected the write error, got {other}"),
        }
    }

    #[test]
    fn a_corrupt_row_stops_the_export_with_its_id() {
        let n = (json::PIPE_ROWS * json::PIPE_DEPTH * 2) as u64;
        let (store, reports) = store_with(n);
        let bad = &reports[json::PIPE_ROWS * 5 + 3];
        let mut store = store;
        store
            .write(|tx| {
                tx.execute("UPDATE reports SET body = ?2 WHERE id = ?1", crate::store::args![&bad.id(), &[0u8][..]])
            })
            .unwrap();
        let err = export(&store, &ReportQuery::default(), Format::Jsonl, &mut Vec::new()).unwrap_err();
        match err {
            ExportError::Corrupt { id, .. } => assert_eq!(id, hex::encode(bad.id())),
            other => panic!("expected Corrupt, got {other}"),
        }
    }
}

#[cfg(test)]
pub(super) mod golden {
    use super::*;
    use crate::store::CertId;
    use crate::verify::Checked;
    use ed25519_dalek::SigningKey;
    use truce_shared::{
        Attachment, Basis, Category, Count, Effect, Envelope, Observation, Position, Qualifier, SignedReport,
        ENVELOPE_VERSION,
    };

    /// Four reports: one with every optional field, its amendment with
    /// none, a second device's report of the same event, and one from an
    /// unknown device (quarantined).
    pub(in crate::export) fn full_store() -> Store {
        let mut store = Store::open_in_memory().unwrap();
        let a = SigningKey::from_bytes(&[9; 32]);
        let b = SigningKey::from_bytes(&[10; 32]);
        let stranger = SigningKey::from_bytes(&[11; 32]);
        store.add_device(&a.verifying_key().to_bytes(), Some("laptop \"7\"\n\u{1}ü"), 0).unwrap();
        store.add_device(&b.verifying_key().to_bytes(), Some("=cmd"), 0).unwrap();
        let t = 1_795_338_900_000i64;
        let full = Observation {
            observed_at: t,
            observed_until: Some(t + 60_000),
            position: Position { lat: 48.0, lon: 37.8, accuracy_m: Some(5) },
            bearing_deg: Some(359),
            distance_m: Some((1000, 2000)),
            category: Category::Shelling,
            effect: Some(Effect::Airburst),
            weapon: Some("82mm \\ mortar".into()),
            count: Some(Count { n: 4, qualifier: Qualifier::AtLeast }),
            basis: Basis::Heard,
            description: "line one\r\nline two\t\"quoted\" \u{7f} \u{2028}".into(),
            attachments: vec![Attachment {
                name: "photo \"1\".jpg".into(),
                media_type: "image/jpeg".into(),
                size: 12,
                sha256: [3; 32],
            }],
        };
        let sign = |key: &SigningKey, seq: u64, prev: [u8; 32], amends: Option<[u8; 32]>, o: Observation| {
            let env = Envelope {
                version: ENVELOPE_VERSION,
                device: key.verifying_key().to_bytes(),
                seq,
                prev,
                recorded_at: o.observed_at + 5000,
                amends,
                observation: o,
            };
            truce_shared::sign(key, &env).unwrap()
        };
        let a1 = sign(&a, 1, [0; 32], None, full.clone());
        let mut plain = full.clone();
        plain.observed_until = None;
        plain.position.accuracy_m = None;
        plain.bearing_deg = None;
        plain.distance_m = None;
        plain.effect = None;
        plain.weapon = None;
        plain.count = None;
        plain.attachments = vec![];
        plain.description = "-1 burst".into();
        let a2 = sign(&a, 2, a1.id(), Some(a1.id()), plain.clone());
        let mut near = full.clone();
        near.observed_at += 30_000;
        near.description = "@SUM(A1)".into();
        let b1 = sign(&b, 1, [0; 32], None, near);
        let s1 = sign(&stranger, 1, [0; 32], None, plain);
        let check = |reports: Vec<SignedReport>| -> Vec<Checked> { reports.into_iter().map(Checked::check).collect() };
        // Three came over TLS, one in a bundle.
        let cert = CertId { serial: "5f3a09c2".into(), subject: "CN=laptop-07, O=\"Mission\", OU==x".into() };
        store
            .write(|tx| {
                let tls = crate::store::Arrival::Tls(std::sync::Arc::new(cert.clone()));
                Store::apply(tx, &check(vec![a1, a2, b1]), t + 100_000, &tls)?;
                Store::apply(tx, &check(vec![s1]), t + 100_000, &crate::store::Arrival::Import([0; 32]))
            })
            .unwrap();
        store
    }

    /// The export formats are public: these are the exact bytes of each
    /// for a store that holds every optional field both ways, text that
    /// needs escaping and text that would start a spreadsheet formula.
    /// After a deliberate, announced change, `TRUCE_BLESS=1` rewrites the
    /// files (and the test still fails, so a bless is never silent).
    #[test]
    fn every_format_writes_its_known_answer() {
        let store = full_store();
        let mut blessed = false;
        for (format, known, file) in [
            (Format::Csv, include_str!("known_answers/reports.csv"), "reports.csv"),
            (Format::Jsonl, include_str!("known_answers/reports.jsonl"), "reports.jsonl"),
            (Format::Geojson, include_str!("known_answers/reports.geojson"), "reports.geojson"),
        ] {
            let mut out = Vec::new();
            export(&store, &ReportQuery::default(), format, &mut out).unwrap();
            let out = String::from_utf8(out).unwrap();
            if std::env::var_os("TRUCE_BLESS").is_some() && out != known {
                let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/export/known_answers").join(file);
                std::fs::write(path, &out).unwrap();
                blessed = true;
                continue;
            }
            assert_eq!(out, known, "{format:?}");
        }
        assert!(!blessed, "known answers rewritten (TRUCE_BLESS): review the diff and run again");
    }
}
