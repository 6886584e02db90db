//! `export`: stored reports out, for the people who investigate, streamed
//! row by row so a store of any size exports in bounded memory.
//!
//! Four formats (field names and samples in `server/INVESTIGATORS.md`):
//! - CSV: one header row, RFC 4180 quoting, times in RFC 3339 UTC;
//! - JSON Lines: one object a line, the same fields;
//! - GeoJSON: an RFC 7946 FeatureCollection, one Point feature per report
//!   at the monitor's position, [lon, lat], the same fields as properties
//!   (the estimated event position rides along as `est_lon`/`est_lat`);
//! - bundle: the exact signed bytes (DESIGN §4), which anyone can check
//!   with `truce-server verify`, and beside it the device list.
//!
//! Every row is decoded from the exact bytes the device signed, so an
//! export shows what the monitor signed, never a copy that could drift.

use std::io::Write;
use std::sync::mpsc;

use serde::Serialize;
use truce_shared::bundle::BundleWriter;
use truce_shared::time::format_ms;
use truce_shared::{Basis, Category, Effect, Qualifier};

use crate::incidents::estimated_position;
use crate::store::{ReportOrder, ReportQuery, ReportRow, ReportStatus, Store, StoreError};

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
    Csv(#[from] csv::Error),
}

/// One evidence file, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AttachmentOut {
    /// File name as the monitor knew it.
    pub name: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
}

/// One exported report: the columns of CSV, the objects of JSON Lines, the
/// properties of GeoJSON. Field order is the CSV column order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportRow {
    /// Report id, 64 hex.
    pub id: String,
    /// Device public key, 64 hex.
    pub device: String,
    /// The device's enrolled name.
    pub device_name: Option<String>,
    /// Position in the device's chain.
    pub seq: u64,
    /// Id of the device's previous report.
    pub prev: String,
    /// verified, quarantined or rejected.
    pub status: ReportStatus,
    /// Why quarantined or rejected.
    pub reason: Option<String>,
    /// When the server first stored it (RFC 3339 UTC).
    pub received_at: String,
    /// The laptop's clock when it signed.
    pub recorded_at: String,
    /// When it happened.
    pub observed_at: String,
    /// End of a continuous event.
    pub observed_until: Option<String>,
    /// Monitor latitude (WGS84).
    pub lat: f64,
    /// Monitor longitude (WGS84).
    pub lon: f64,
    /// Position accuracy in metres.
    pub accuracy_m: Option<u32>,
    /// Bearing to the event, degrees from true north.
    pub bearing_deg: Option<u16>,
    /// Nearest estimate of the distance to the event, metres.
    pub distance_min_m: Option<u32>,
    /// Farthest estimate of the distance to the event, metres.
    pub distance_max_m: Option<u32>,
    /// Estimated event latitude (midpoint of the distance range along the bearing).
    pub est_lat: Option<f64>,
    /// Estimated event longitude.
    pub est_lon: Option<f64>,
    /// What was observed.
    pub category: Category,
    /// Impact, outgoing, airburst, undetermined.
    pub effect: Option<Effect>,
    /// Assessed weapon.
    pub weapon: Option<String>,
    /// How many (explosions, bursts, vehicles).
    pub count: Option<u32>,
    /// exact, about, at-least.
    pub count_qualifier: Option<Qualifier>,
    /// seen, heard, reported.
    pub basis: Basis,
    /// The monitor's words.
    pub description: String,
    /// Evidence files.
    pub attachments: Vec<AttachmentOut>,
    /// The report this one corrects.
    pub amends: Option<String>,
    /// The latest report of the same device that corrects this one.
    pub amended_by: Option<String>,
    /// The incident it belongs to.
    pub incident: Option<i64>,
    /// Distinct devices reporting that incident.
    pub corroboration: Option<u64>,
}

/// The CSV header: [`ExportRow`]'s fields in order.
pub const CSV_HEADER: [&str; 31] = [
    "id",
    "device",
    "device_name",
    "seq",
    "prev",
    "status",
    "reason",
    "received_at",
    "recorded_at",
    "observed_at",
    "observed_until",
    "lat",
    "lon",
    "accuracy_m",
    "bearing_deg",
    "distance_min_m",
    "distance_max_m",
    "est_lat",
    "est_lon",
    "category",
    "effect",
    "weapon",
    "count",
    "count_qualifier",
    "basis",
    "description",
    "attachments",
    "amends",
    "amended_by",
    "incident",
    "corroboration",
];

impl ExportRow {
    /// Decodes a stored row's signed body into the exported fields.
    pub fn from_row(row: ReportRow) -> Result<ExportRow, ExportError> {
        let env = row.envelope().map_err(|e| ExportError::Corrupt { id: hex(&row.id), detail: e.to_string() })?;
        let o = env.observation;
        let est = estimated_position(&o);
        Ok(ExportRow {
            id: hex(&row.id),
            device: hex(&row.device),
            device_name: row.device_name,
            seq: row.seq,
            prev: hex(&row.prev),
            status: row.status,
            reason: row.reason,
            received_at: format_ms(row.received_at),
            recorded_at: format_ms(env.recorded_at),
            observed_at: format_ms(o.observed_at),
            observed_until: o.observed_until.map(format_ms),
            lat: o.position.lat,
            lon: o.position.lon,
            accuracy_m: o.position.accuracy_m,
            bearing_deg: o.bearing_deg,
            distance_min_m: o.distance_m.map(|d| d.0),
            distance_max_m: o.distance_m.map(|d| d.1),
            est_lat: est.map(|p| p.0),
            est_lon: est.map(|p| p.1),
            category: o.category,
            effect: o.effect,
            weapon: o.weapon,
            count: o.count.map(|c| c.n),
            count_qualifier: o.count.map(|c| c.qualifier),
            basis: o.basis,
            description: o.description,
            attachments: o
                .attachments
                .into_iter()
                .map(|a| AttachmentOut { name: a.name, media_type: a.media_type, size: a.size, sha256: hex(&a.sha256) })
                .collect(),
            amends: env.amends.map(|h| hex(&h)),
            amended_by: row.amended_by.map(|h| hex(&h)),
            incident: row.incident,
            corroboration: row.corroboration,
        })
    }

    /// The row as one JSON object: exactly the bytes `serde_json` writes
    /// for it (a test holds the two equal), but the ids and times, which
    /// are hex and RFC 3339 and never need escaping, are copied as they
    /// are. serde_json's escaping scan over them was the largest single
    /// cost in profiles of a million-row export.
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        let mut o = JsonObject { out, first: true };
        o.raw("id", &self.id);
        o.raw("device", &self.device);
        o.value("device_name", &self.device_name)?;
        o.value("seq", &self.seq)?;
        o.raw("prev", &self.prev);
        o.value("status", &self.status)?;
        o.value("reason", &self.reason)?;
        o.raw("received_at", &self.received_at);
        o.raw("recorded_at", &self.recorded_at);
        o.raw("observed_at", &self.observed_at);
        o.raw_opt("observed_until", self.observed_until.as_deref());
        o.value("lat", &self.lat)?;
        o.value("lon", &self.lon)?;
        o.value("accuracy_m", &self.accuracy_m)?;
        o.value("bearing_deg", &self.bearing_deg)?;
        o.value("distance_min_m", &self.distance_min_m)?;
        o.value("distance_max_m", &self.distance_max_m)?;
        o.value("est_lat", &self.est_lat)?;
        o.value("est_lon", &self.est_lon)?;
        o.value("category", &self.category)?;
        o.value("effect", &self.effect)?;
        o.value("weapon", &self.weapon)?;
        o.value("count", &self.count)?;
        o.value("count_qualifier", &self.count_qualifier)?;
        o.value("basis", &self.basis)?;
        o.value("description", &self.description)?;
        o.value("attachments", &self.attachments)?;
        o.raw_opt("amends", self.amends.as_deref());
        o.raw_opt("amended_by", self.amended_by.as_deref());
        o.value("incident", &self.incident)?;
        o.value("corroboration", &self.corroboration)?;
        o.out.push(b'}');
        Ok(())
    }

    /// The CSV record, in [`CSV_HEADER`] order. Attachments are one cell
    /// holding their JSON array (names may hold any character). Cells of
    /// free text (device name, reason, weapon, description) pass through
    /// [`neutralise_formula`]; every other cell is written by Truce from a
    /// number, a time, hex or a fixed word, and cannot start a formula.
    fn csv_record(&self) -> Result<[String; 31], ExportError> {
        fn opt<T: ToString>(v: &Option<T>) -> String {
            v.as_ref().map(ToString::to_string).unwrap_or_default()
        }
        fn text(v: &Option<String>) -> String {
            v.as_deref().map(neutralise_formula).unwrap_or_default()
        }
        fn name<T: Serialize>(v: &T) -> String {
            match serde_json::to_value(v) {
                Ok(serde_json::Value::String(s)) => s,
                _ => String::new(),
            }
        }
        let attachments =
            if self.attachments.is_empty() { String::new() } else { serde_json::to_string(&self.attachments)? };
        Ok([
            self.id.clone(),
            self.device.clone(),
            text(&self.device_name),
            self.seq.to_string(),
            self.prev.clone(),
            self.status.as_str().to_string(),
            text(&self.reason),
            self.received_at.clone(),
            self.recorded_at.clone(),
            self.observed_at.clone(),
            opt(&self.observed_until),
            self.lat.to_string(),
            self.lon.to_string(),
            opt(&self.accuracy_m),
            opt(&self.bearing_deg),
            opt(&self.distance_min_m),
            opt(&self.distance_max_m),
            opt(&self.est_lat),
            opt(&self.est_lon),
            name(&self.category),
            self.effect.as_ref().map(name).unwrap_or_default(),
            text(&self.weapon),
            opt(&self.count),
            self.count_qualifier.as_ref().map(name).unwrap_or_default(),
            name(&self.basis),
            neutralise_formula(&self.description),
            attachments,
            opt(&self.amends),
            opt(&self.amended_by),
            opt(&self.incident),
            opt(&self.corroboration),
        ])
    }
}

/// Characters that make a spreadsheet read a cell as a formula (or, for
/// tab and CR, that some spreadsheets strip before looking for one).
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell of free text as a spreadsheet must see it: text that starts with
/// `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, which
/// LibreOffice and Excel read as "this is text" and do not show, so a
/// description such as `=HYPERLINK("http://…","click")` written on a
/// captured laptop is shown, never run. JSON Lines, GeoJSON and bundles
/// keep the text exactly as signed.
pub fn neutralise_formula(text: &str) -> String {
    if text.starts_with(FORMULA_STARTS) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// Lower-case hex. `hex::encode` collects char by char, and pushing chars
/// one at a time was no better: both showed in profiles of million-row
/// exports (three or four ids a row). This fills the bytes in one pass.
fn hex(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len() * 2];
    // The buffer is exactly twice the input, the one size encode_to_slice
    // accepts; hex digits are ASCII, so valid UTF-8.
    match hex::encode_to_slice(bytes, &mut buf).map(|()| String::from_utf8(buf)) {
        Ok(Ok(s)) => s,
        _ => hex::encode(bytes),
    }
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
        Format::Jsonl => export_jsonl(store, &query, out),
        Format::Csv => {
            let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(&mut *out);
            w.write_record(CSV_HEADER)?;
            let n = store.for_each_report(&query, |row| {
                w.write_record(ExportRow::from_row(row)?.csv_record()?)?;
                Ok::<_, ExportError>(())
            })?;
            w.flush()?;
            Ok(n)
        }
        Format::Geojson => {
            out.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[\n")?;
            let mut first = true;
            let mut feature_json = Vec::with_capacity(2048);
            let n = store.for_each_report(&query, |row| {
                let r = ExportRow::from_row(row)?;
                feature_json.clear();
                if !first {
                    feature_json.extend_from_slice(b",\n");
                }
                first = false;
                let feature = Feature {
                    kind: "Feature",
                    id: &r.id,
                    geometry: Point { kind: "Point", coordinates: [r.lon, r.lat] },
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
            let mut w = BundleWriter::new(&mut *out)?;
            let n = store.for_each_report(&query, |row| {
                w.write(&row.signed())?;
                Ok::<_, ExportError>(())
            })?;
            w.finish()?;
            Ok(n)
        }
    }
}

/// A JSON object being written field by field (see `ExportRow::write_json`).
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl JsonObject<'_> {
    fn key(&mut self, key: &str) {
        self.out.extend_from_slice(if self.first { b"{\"" } else { b",\"" });
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A string that needs no escaping (hex, RFC 3339), copied as it is.
    fn raw(&mut self, key: &str, v: &str) {
        debug_assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-:.".contains(&b)), "{v:?} needs escaping");
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(v.as_bytes());
        self.out.push(b'"');
    }

    fn raw_opt(&mut self, key: &str, v: Option<&str>) {
        match v {
            Some(v) => self.raw(key, v),
            None => {
                self.key(key);
                self.out.extend_from_slice(b"null");
            }
        }
    }

    fn value<T: Serialize + ?Sized>(&mut self, key: &str, v: &T) -> Result<(), serde_json::Error> {
        self.key(key);
        serde_json::to_writer(&mut *self.out, v)
    }
}

/// Rows per batch handed from the reading thread to the formatting thread.
const PIPE_ROWS: usize = 256;
/// Batches in flight between each two stages. With [`PIPE_ROWS`] this
/// bounds an export's memory to a few megabytes whatever its size.
const PIPE_DEPTH: usize = 4;

/// JSON Lines as a pipeline of three threads: this one steps SQLite, a
/// second decodes each signed body and builds its JSON, a third writes
/// the text out. Profiles of a million-row export (about 1 GB of JSON)
/// showed the three about equal once the file is real: writing it into
/// the page cache cost the kernel as much CPU as formatting it. Three
/// stages let a two-core server keep both cores busy.
///
/// Rows keep their order: batches go through FIFO channels. The first
/// error stops the pipeline: a stage whose neighbour hung up stops too,
/// and the error returned is the one that started it.
fn export_jsonl<W: Write + Send + ?Sized>(store: &Store, query: &ReportQuery, out: &mut W) -> Result<u64, ExportError> {
    std::thread::scope(|scope| {
        let (rows_tx, rows_rx) = mpsc::sync_channel::<Vec<ReportRow>>(PIPE_DEPTH);
        let (text_tx, text_rx) = mpsc::sync_channel::<Vec<u8>>(PIPE_DEPTH);
        let formatter = scope.spawn(move || -> Result<(), ExportError> {
            for rows in rows_rx {
                let mut text = Vec::with_capacity(rows.len() * 1024);
                for row in rows {
                    ExportRow::from_row(row)?.write_json(&mut text)?;
                    text.push(b'\n');
                }
                if text_tx.send(text).is_err() {
                    break; // the writer stopped on an error; it reports it
                }
            }
            Ok(())
        });
        let writer = scope.spawn(move || -> Result<(), ExportError> {
            for text in text_rx {
                out.write_all(&text)?;
            }
            Ok(())
        });
        let mut batch = Vec::with_capacity(PIPE_ROWS);
        let read = store.for_each_report(query, |row| {
            batch.push(row);
            if batch.len() == PIPE_ROWS {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(PIPE_ROWS));
                // A closed channel: a later stage failed; its error is the one to report.
                rows_tx.send(full).map_err(|_| ExportError::Io(std::io::Error::other("the export stopped")))?;
            }
            Ok::<_, ExportError>(())
        });
        let read = read.and_then(|n| {
            if !batch.is_empty() {
                rows_tx.send(batch).map_err(|_| ExportError::Io(std::io::Error::other("the export stopped")))?;
            }
            Ok(n)
        });
        drop(rows_tx);
        let formatted = formatter.join().unwrap_or_else(|_| Err(stage_panicked("formatting")));
        let written = writer.join().unwrap_or_else(|_| Err(stage_panicked("writing")));
        // The stage that failed first is the latest in the pipeline that
        // failed: the ones before it only saw it hang up.
        written?;
        formatted?;
        read
    })
}

fn stage_panicked(stage: &str) -> ExportError {
    ExportError::Io(std::io::Error::other(format!("the export's {stage} thread stopped")))
}

#[derive(Serialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
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
    use truce_shared::{Envelope, Observation, Position, SignedReport, ENVELOPE_VERSION};

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
                let env = Envelope {
                    version: ENVELOPE_VERSION,
                    device: key.verifying_key().to_bytes(),
                    seq,
                    prev,
                    recorded_at: t,
                    amends: None,
                    observation: Observation {
                        observed_at: t,
                        observed_until: None,
                        position: Position { lat: 48.0, lon: 37.8, accuracy_m: None },
                        bearing_deg: None,
                        distance_m: None,
                        category: Category::SmallArmsFire,
                        effect: None,
                        weapon: None,
                        count: None,
                        basis: Basis::Heard,
                        description: format!("bursts to the north, report {seq}"),
                        attachments: vec![],
                    },
                };
                let r = truce_shared::sign(&key, &env).unwrap();
                prev = r.id();
                r
            })
            .collect();
        let checked: Vec<Checked> = reports.iter().cloned().map(Checked::check).collect();
        let tx = store.begin().unwrap();
        Store::apply(&tx, &checked, 1).unwrap();
        tx.commit().unwrap();
        (store, reports)
    }

    #[test]
    fn json_lines_keep_every_row_in_order_through_the_three_threads() {
        // Many more rows than the channels hold, and a last partial batch.
        let n = (PIPE_ROWS * PIPE_DEPTH * 3 + 17) as u64;
        let (store, reports) = store_with(n);
        let mut out = Vec::new();
        assert_eq!(export(&store, &ReportQuery::default(), Format::Jsonl, &mut out).unwrap(), n);
        let lines: Vec<serde_json::Value> =
            out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        assert_eq!(lines.len() as u64, n);
        for (line, r) in lines.iter().zip(&reports) {
            assert_eq!(line["id"], hex(&r.id()));
        }
    }

    #[test]
    fn the_direct_json_is_what_serde_json_writes() {
        let (store, _) = store_with(3);
        let mut rows = Vec::new();
        store
            .for_each_report(&ReportQuery::default(), |row| {
                rows.push(ExportRow::from_row(row)?);
                Ok::<_, ExportError>(())
            })
            .unwrap();
        // Every optional field both ways, and text that needs escaping.
        let mut full = rows[0].clone();
        full.device_name = Some("laptop \"7\"\n\u{1}ü".into());
        full.reason = Some("unknown device".into());
        full.observed_until = Some(format_ms(1_795_339_000_000));
        (full.accuracy_m, full.bearing_deg, full.distance_min_m, full.distance_max_m) =
            (Some(5), Some(359), Some(1), Some(2));
        (full.est_lat, full.est_lon) = (Some(-89.999_999), Some(179.5));
        full.effect = Some(Effect::Airburst);
        full.weapon = Some("82mm \\ mortar".into());
        (full.count, full.count_qualifier) = (Some(4), Some(Qualifier::AtLeast));
        full.description = "line one\r\nline two\t\"quoted\" \u{7f} \u{2028}".into();
        full.attachments = vec![AttachmentOut {
            name: "photo \"1\".jpg".into(),
            media_type: "image/jpeg".into(),
            size: 12,
            sha256: hex(&[3; 32]),
        }];
        full.amends = Some(hex(&[1; 32]));
        full.amended_by = Some(hex(&[2; 32]));
        (full.incident, full.corroboration) = (Some(12), Some(3));
        rows.push(full);
        for row in rows {
            let mut direct = Vec::new();
            row.write_json(&mut direct).unwrap();
            assert_eq!(String::from_utf8(direct).unwrap(), serde_json::to_string(&row).unwrap());
        }
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
        let n = (PIPE_ROWS * PIPE_DEPTH * 3) as u64;
        let (store, _) = store_with(n);
        let err = export(&store, &ReportQuery::default(), Format::Jsonl, &mut FullAfter { left: 100_000 }).unwrap_err();
        match err {
            ExportError::Io(e) => assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}"),
            other => panic!("expected the write error, got {other}"),
        }
    }

    #[test]
    fn text_that_would_start_a_formula_is_shown_as_text() {
        for bad in ["=HYPERLINK(\"http://x\",\"click\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise_formula(bad), format!("'{bad}"));
        }
        for fine in ["shelling NNW", "", "'quoted", "1+1", "a=b", "Серпневе"] {
            assert_eq!(neutralise_formula(fine), fine);
        }
    }

    #[test]
    fn a_corrupt_row_stops_the_export_with_its_id() {
        let n = (PIPE_ROWS * PIPE_DEPTH * 2) as u64;
        let (store, reports) = store_with(n);
        let bad = &reports[PIPE_ROWS * 5 + 3];
        store.conn().execute("UPDATE reports SET body = x'00' WHERE id = ?1", [&bad.id()[..]]).unwrap();
        let err = export(&store, &ReportQuery::default(), Format::Jsonl, &mut Vec::new()).unwrap_err();
        match err {
            ExportError::Corrupt { id, .. } => assert_eq!(id, hex(&bad.id())),
            other => panic!("expected Corrupt, got {other}"),
        }
    }
}
