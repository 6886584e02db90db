//! The exported fields, listed once.
//!
//! [`COLUMNS`] names every field of an export, in CSV column order, beside
//! the one function that reads its value from a stored report. CSV, JSON
//! Lines and GeoJSON all walk this table, so adding a field is one line
//! here (and a line in `server/INVESTIGATORS.md`). The formats differ only
//! in how they write each kind of [`Cell`].

use crate::evidence::Evidence;
use std::borrow::Cow;

use serde::ser::SerializeMap;
use serde::Serialize;
use truce_shared::time::format_ms;
use truce_shared::{Attachment, Envelope};

use super::ExportError;
use crate::incidents::estimated_position;
use crate::store::ReportRow;

/// One stored report, decoded from the exact bytes its device signed: what
/// every column reads from.
pub struct ExportRow {
    row: ReportRow,
    env: Envelope,
    /// Per attachment, whether the server holds the file (empty when the
    /// export was not told where evidence is).
    held: Vec<bool>,
    /// The estimated event position (lat, lon), worked out once a row.
    est: Option<(f64, f64)>,
}

impl ExportRow {
    /// Decodes a stored row's signed body.
    pub fn from_row(row: ReportRow) -> Result<ExportRow, ExportError> {
        ExportRow::from_row_with(row, None)
    }

    /// [`ExportRow::from_row`], saying per attachment whether `evidence`
    /// holds the file.
    pub fn from_row_with(row: ReportRow, evidence: Option<&Evidence>) -> Result<ExportRow, ExportError> {
        let env = row.envelope().map_err(|e| ExportError::Corrupt { id: hex(&row.id), detail: e.to_string() })?;
        let est = estimated_position(&env.observation);
        let held = match evidence {
            Some(ev) => env.observation.attachments.iter().map(|a| ev.holds(&a.sha256)).collect(),
            None => Vec::new(),
        };
        Ok(ExportRow { row, env, held, est })
    }

    /// The report id, hex.
    pub fn id(&self) -> String {
        hex(&self.row.id)
    }

    /// The monitor's position: (lat, lon).
    pub fn position(&self) -> (f64, f64) {
        let p = &self.env.observation.position;
        (p.lat, p.lon)
    }

    /// Every column's name and value, in order.
    pub fn cells(&self) -> impl Iterator<Item = (&'static str, Cell<'_>)> {
        COLUMNS.iter().map(move |c| (c.name, (c.value)(self)))
    }
}

impl Serialize for ExportRow {
    /// One object, the columns as keys in order (GeoJSON's properties, and
    /// what the direct JSON Lines writer must equal).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(COLUMNS.len()))?;
        for (name, cell) in self.cells() {
            match cell {
                Cell::Word(v) => map.serialize_entry(name, &v)?,
                Cell::Text(v) => map.serialize_entry(name, &v)?,
                Cell::Unsigned(v) => map.serialize_entry(name, &v)?,
                Cell::Float(v) => map.serialize_entry(name, &v)?,
                Cell::Bool(v) => map.serialize_entry(name, &v)?,
                Cell::Signed(v) => map.serialize_entry(name, &v)?,
                Cell::Attachments(v, h) => map.serialize_entry(name, &attachments_out(v, h))?,
            }
        }
        map.end()
    }
}

/// One field's value, by how the formats must write it. `None` is JSON's
/// `null` and an empty CSV cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    /// Written by Truce itself: hex, an RFC 3339 time, or a fixed word of
    /// the vocabulary. Never needs escaping, cannot start a spreadsheet
    /// formula.
    Word(Option<Cow<'a, str>>),
    /// Free text a person wrote (a monitor, or whoever enrolled the device):
    /// escaped in JSON, neutralised in CSV.
    Text(Option<&'a str>),
    /// A count, a sequence number, a size.
    Unsigned(Option<u64>),
    /// A store number (incident).
    Signed(Option<i64>),
    /// Degrees of latitude or longitude.
    Float(Option<f64>),
    /// Yes or no: `true`/`false` in CSV and JSON.
    Bool(bool),
    /// The evidence files: a JSON array (in CSV one cell holding it, empty
    /// when there are none).
    Attachments(&'a [Attachment], &'a [bool]),
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
    /// Whether the server holds the file (checked against this hash);
    /// absent when the export was not given the evidence directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<bool>,
}

/// The attachments as exported.
pub(super) fn attachments_out(list: &[Attachment], held: &[bool]) -> Vec<AttachmentOut> {
    list.iter()
        .enumerate()
        .map(|(i, a)| AttachmentOut {
            name: a.name.clone(),
            media_type: a.media_type.clone(),
            size: a.size,
            sha256: hex(&a.sha256),
            held: held.get(i).copied(),
        })
        .collect()
}

/// A column: its name and how its value is read.
struct Column {
    name: &'static str,
    value: for<'a> fn(&'a ExportRow) -> Cell<'a>,
}

/// The columns, in CSV order. Field names and meanings are public
/// (`server/INVESTIGATORS.md`); the known answers in `known_answers/` pin
/// what each format writes.
const COLUMNS: [Column; 34] = [
    // Report id, 64 hex.
    Column { name: "id", value: |r| word(hex(&r.row.id)) },
    // Device public key, 64 hex.
    Column { name: "device", value: |r| word(hex(&r.row.device)) },
    // The device's enrolled name.
    Column { name: "device_name", value: |r| Cell::Text(r.row.device_name.as_deref()) },
    // Position in the device's chain.
    Column { name: "seq", value: |r| Cell::Unsigned(Some(r.row.seq)) },
    // Id of the device's previous report.
    Column { name: "prev", value: |r| word(hex(&r.row.prev)) },
    // verified, quarantined or rejected.
    Column { name: "status", value: |r| word(r.row.status.as_str()) },
    // Why quarantined or rejected.
    Column { name: "reason", value: |r| Cell::Text(r.row.reason.as_deref()) },
    // When the server first stored it.
    Column { name: "received_at", value: |r| word(format_ms(r.row.received_at)) },
    // The laptop's clock when it signed.
    Column { name: "recorded_at", value: |r| word(format_ms(r.env.recorded_at)) },
    // When it happened.
    Column { name: "observed_at", value: |r| word(format_ms(r.env.observation.observed_at)) },
    // End of a continuous event.
    Column { name: "observed_until", value: |r| maybe_word(r.env.observation.observed_until.map(format_ms)) },
    // Monitor latitude and longitude (WGS84).
    Column { name: "lat", value: |r| Cell::Float(Some(r.env.observation.position.lat)) },
    Column { name: "lon", value: |r| Cell::Float(Some(r.env.observation.position.lon)) },
    // Position accuracy in metres.
    Column { name: "accuracy_m", value: |r| Cell::Unsigned(r.env.observation.position.accuracy_m.map(u64::from)) },
    // Bearing to the event, degrees from true north.
    Column { name: "bearing_deg", value: |r| Cell::Unsigned(r.env.observation.bearing_deg.map(u64::from)) },
    // Nearest and farthest estimate of the distance to the event, metres.
    Column { name: "distance_min_m", value: |r| Cell::Unsigned(r.env.observation.distance_m.map(|d| u64::from(d.0))) },
    Column { name: "distance_max_m", value: |r| Cell::Unsigned(r.env.observation.distance_m.map(|d| u64::from(d.1))) },
    // Estimated event position: the midpoint of the distance range along
    // the bearing.
    Column { name: "est_lat", value: |r| Cell::Float(r.est.map(|p| p.0)) },
    Column { name: "est_lon", value: |r| Cell::Float(r.est.map(|p| p.1)) },
    // What was observed.
    Column { name: "category", value: |r| word(r.env.observation.category.name()) },
    // Impact, outgoing, airburst, undetermined.
    Column { name: "effect", value: |r| maybe_word(r.env.observation.effect.map(|e| e.name())) },
    // Assessed weapon.
    Column { name: "weapon", value: |r| Cell::Text(r.env.observation.weapon.as_deref()) },
    // How many (explosions, bursts, vehicles), and how exact that is.
    Column { name: "count", value: |r| Cell::Unsigned(r.env.observation.count.map(|c| u64::from(c.n))) },
    Column { name: "count_qualifier", value: |r| maybe_word(r.env.observation.count.map(|c| c.qualifier.name())) },
    // seen, heard, reported.
    Column { name: "basis", value: |r| word(r.env.observation.basis.name()) },
    // The monitor's words.
    Column { name: "description", value: |r| Cell::Text(Some(&r.env.observation.description)) },
    // Evidence files.
    Column { name: "attachments", value: |r| Cell::Attachments(&r.env.observation.attachments, &r.held) },
    // The report this one corrects.
    Column { name: "amends", value: |r| maybe_word(r.env.amends.map(|h| hex(&h))) },
    // The latest report of the same device that corrects this one.
    Column { name: "amended_by", value: |r| maybe_word(r.row.amended_by.map(|h| hex(&h))) },
    // The incident it belongs to, and how many devices report it.
    Column { name: "incident", value: |r| Cell::Signed(r.row.incident) },
    Column { name: "corroboration", value: |r| Cell::Unsigned(r.row.corroboration) },
    // The client certificate it came through (serial, hex; subject); empty
    // when it was imported from a bundle.
    Column { name: "cert_serial", value: |r| maybe_word(r.row.cert.as_ref().map(|c| c.serial.as_str())) },
    Column { name: "cert_subject", value: |r| Cell::Text(r.row.cert.as_ref().map(|c| c.subject.as_str())) },
    // Its device forked its chain at or before this report's seq (two
    // different reports at one seq): which branch is the monitor's cannot
    // be told from the reports alone, so neither wins silently.
    Column { name: "disputed", value: |r| Cell::Bool(r.row.disputed) },
];

/// The CSV header: the columns' names in order.
pub const CSV_HEADER: [&str; COLUMNS.len()] = {
    let mut names = [""; COLUMNS.len()];
    let mut i = 0;
    while i < COLUMNS.len() {
        names[i] = COLUMNS[i].name;
        i += 1;
    }
    names
};

fn word<'a>(s: impl Into<Cow<'a, str>>) -> Cell<'a> {
    Cell::Word(Some(s.into()))
}

fn maybe_word<'a>(s: Option<impl Into<Cow<'a, str>>>) -> Cell<'a> {
    Cell::Word(s.map(Into::into))
}

/// Lower-case hex. `hex::encode` collects char by char, and pushing chars
/// one at a time was no better: both showed in profiles of million-row
/// exports (three or four ids a row). This fills the bytes in one pass.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut buf = vec![0u8; bytes.len() * 2];
    // The buffer is exactly twice the input, the one size encode_to_slice
    // accepts; hex digits are ASCII, so valid UTF-8.
    match hex::encode_to_slice(bytes, &mut buf).map(|()| String::from_utf8(buf)) {
        Ok(Ok(s)) => s,
        _ => hex::encode(bytes),
    }
}
