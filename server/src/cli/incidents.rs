//! `incidents`: the list, and the grouping window.

use std::io::Write;

use anyhow::Result;
use serde_json::json;
use truce_shared::time::format_ms;

use super::args::IncidentsArgs;
use crate::paths::DataDir;

pub(super) fn run(dir: &DataDir, args: &IncidentsArgs, json: bool, out: &mut impl Write) -> Result<()> {
    let mut store = dir.open_store()?;
    if args.window_minutes.is_some() || args.radius_m.is_some() {
        let old = store.incident_window()?;
        let w = crate::incidents::Window::new(
            args.window_minutes.unwrap_or(old.minutes),
            args.radius_m.unwrap_or(old.metres),
        )?;
        let n = store.set_incident_window(w)?;
        if !json {
            writeln!(
                out,
                "incident window now {} min, {} m; reports regrouped into {n} incident(s)",
                w.minutes, w.metres
            )?;
        }
    }
    let list = store.incidents(args.min_corroboration)?;
    if json {
        for i in &list {
            let mut v = serde_json::to_value(i)?;
            v["first_at"] = json!(format_ms(i.first_at));
            v["last_at"] = json!(format_ms(i.last_at));
            writeln!(out, "{v}")?;
        }
        return Ok(());
    }
    let w = store.incident_window()?;
    writeln!(out, "{} incident(s) (window {} min, {} m)", list.len(), w.minutes, w.metres)?;
    for i in &list {
        writeln!(
            out,
            "  #{:<6} {:<22} {} .. {}  {} report(s) from {} device(s)",
            i.id,
            i.category,
            format_ms(i.first_at),
            format_ms(i.last_at),
            i.reports,
            i.devices
        )?;
    }
    Ok(())
}
