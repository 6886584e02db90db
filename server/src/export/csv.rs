//! CSV: one header row, RFC 4180 quoting (by the `csv` crate), and free
//! text that a spreadsheet cannot run.

use std::io::Write;

use super::columns::{attachments_out, Cell, ExportRow, CSV_HEADER};
use super::ExportError;
use crate::store::{ReportQuery, Store};

/// Writes the header and every selected row; returns how many rows.
pub(super) fn export_csv(
    store: &Store,
    query: &ReportQuery,
    out: &mut (impl Write + ?Sized),
) -> Result<u64, ExportError> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(out);
    w.write_record(CSV_HEADER)?;
    let mut record = Vec::with_capacity(CSV_HEADER.len());
    let n = store.for_each_report(query, |row| {
        record.clear();
        for (_, cell) in ExportRow::from_row_with(row, query.evidence.as_deref())?.cells() {
            record.push(cell_text(cell)?);
        }
        w.write_record(&record)?;
        Ok::<_, ExportError>(())
    })?;
    w.flush()?;
    Ok(n)
}

/// One cell. Attachments are one cell holding their JSON array (names may
/// hold any character). Free text passes through [`neutralise_formula`];
/// every other cell is written by Truce from a number, a time, hex or a
/// fixed word, and cannot start a formula.
fn cell_text(cell: Cell<'_>) -> Result<String, ExportError> {
    fn opt<T: ToString>(v: Option<T>) -> String {
        v.as_ref().map(ToString::to_string).unwrap_or_default()
    }
    Ok(match cell {
        Cell::Word(v) => v.map(|v| v.into_owned()).unwrap_or_default(),
        Cell::Text(v) => v.map(neutralise_formula).unwrap_or_default(),
        Cell::Unsigned(v) => opt(v),
        Cell::Signed(v) => opt(v),
        Cell::Float(v) => opt(v),
        Cell::Bool(v) => v.to_string(),
        Cell::Attachments([], _) => String::new(),
        Cell::Attachments(v, h) => serde_json::to_string(&attachments_out(v, h))?,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_would_start_a_formula_is_shown_as_text() {
        for bad in ["=HYPERLINK(\"http://x\",\"click\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise_formula(bad), format!("'{bad}"));
        }
        for fine in ["shelling NNW", "", "'quoted", "1+1", "a=b", "Серпневе"] {
            assert_eq!(neutralise_formula(fine), fine);
        }
    }
}
