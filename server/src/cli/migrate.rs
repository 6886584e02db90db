//! `migrate`: a server's SQLite store into a PostgreSQL database.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::paths::DataDir;
use crate::store::{Database, Store};

pub(super) fn run(from: &Path, to: &str, json: bool, out: &mut impl Write) -> Result<()> {
    let to = match Database::parse(to) {
        Database::Postgres(url) => url,
        Database::Sqlite(_) => bail!("--to takes a PostgreSQL URL (postgres://user@host/database)"),
    };
    let file = DataDir::new(from).db_file();
    if !file.is_file() {
        bail!("no store at {}: --from takes a truce-server data directory", file.display());
    }
    // Opened as its server would, with its log key (an older store is
    // logged first): the log moves with the store.
    let source = DataDir::new(from).open_store().with_context(|| format!("cannot open {}", file.display()))?;
    let mut dest = Store::open(&Database::Postgres(to.clone()))?;
    let moved = dest.copy_from(&source)?;
    if json {
        writeln!(out, "{}", serde_json::to_string(&moved)?)?;
        return Ok(());
    }
    writeln!(out, "moved from {} to {}:", file.display(), crate::store::redact(&to))?;
    writeln!(
        out,
        "  the log moved too: copy {} into the data dir of every server that will use this database",
        DataDir::new(from).log_key_file().display()
    )?;
    writeln!(
        out,
        "  {} device(s), {} report(s), {} rejection(s), {} fork(s), {} last session(s)",
        moved.devices, moved.reports, moved.rejections, moved.forks, moved.contacts
    )?;
    if moved.reports > 0 {
        writeln!(out, "  incidents grouped again: {}", moved.incidents)?;
    } else {
        writeln!(out, "  nothing new to group: the database already held every report")?;
    }
    Ok(())
}
