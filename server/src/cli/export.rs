//! `export`: reports out for investigators, to a file written whole or to stdout.

use std::io::Write;

use anyhow::Result;
use serde_json::json;
use truce_shared::fs::{Access, AtomicFile};

use super::args::{parse_bbox, parse_category, parse_key, parse_time, ExportArgs};
use crate::paths::DataDir;
use crate::store::ReportQuery;

pub(super) fn run(dir: &DataDir, args: &ExportArgs, json: bool) -> Result<()> {
    use crate::export::Format;
    let query = ReportQuery {
        status: args.status.status(),
        device: args.device.as_deref().map(parse_key).transpose()?,
        category: args.category.as_deref().map(parse_category).transpose()?,
        observed_since: args.since.as_deref().map(|t| parse_time(t, "since")).transpose()?,
        observed_until: args.until.as_deref().map(|t| parse_time(t, "until")).transpose()?,
        bbox: args.bbox.as_deref().map(parse_bbox).transpose()?,
        min_corroboration: args.min_corroboration,
        latest_only: !args.history,
        exclude_disputed: args.status == crate::export::StatusFilter::Verified && !args.include_disputed,
        ..Default::default()
    };
    if args.devices_out.is_some() && args.format != Format::Bundle {
        anyhow::bail!("--devices-out goes with --format bundle (other formats carry device names in every row)");
    }
    let store = dir.open_store()?;
    let evidence = std::sync::Arc::new(crate::evidence::Evidence::open(
        &dir.evidence_dir(),
        crate::evidence::EvidenceLimits::default(),
    )?);
    let query = ReportQuery { evidence: Some(evidence.clone()), ..query };
    let n = match &args.out {
        Some(p) => write_file(p, |w| Ok(crate::export::export(&store, &query, args.format, w)?))?,
        None => {
            let stdout = std::io::stdout();
            if args.format == Format::Bundle && std::io::IsTerminal::is_terminal(&stdout) {
                anyhow::bail!("a bundle is binary: give --out FILE (or redirect stdout to a file)");
            }
            // Not locked: JSON Lines are written from a thread of their own.
            let mut w = std::io::BufWriter::with_capacity(1 << 16, stdout);
            let n = crate::export::export(&store, &query, args.format, &mut w)?;
            w.flush()?;
            n
        }
    };
    let devices = match &args.devices_out {
        Some(p) => Some(write_file(p, |w| Ok(crate::export::devices(&store, w)?))?),
        None => None,
    };
    let files = match &args.evidence {
        Some(to) => Some(copy_evidence(&store, &query, &evidence, to, json)?),
        None => None,
    };
    // The count goes to stderr: stdout may be the export itself.
    if json {
        eprintln!(
            "{}",
            json!({"exported": n, "out": args.out, "devices": devices, "devices_out": args.devices_out,
                   "evidence_files": files.map(|f| f.0), "evidence_missing": files.map(|f| f.1)})
        );
    } else if let Some(p) = &args.out {
        eprint!("exported {n} report(s) to {}", p.display());
        if let (Some(d), Some(dp)) = (devices, &args.devices_out) {
            eprint!("; {d} device(s) to {}", dp.display());
        }
        eprintln!();
    }
    Ok(())
}

/// Copies every held evidence file the exported reports name to
/// `to/<sha256 hex>`, hashing each as it is copied (a file altered on the
/// server's disk is refused, never written). Returns (files written,
/// files named but not held).
fn copy_evidence(
    store: &crate::store::Store,
    query: &ReportQuery,
    evidence: &crate::evidence::Evidence,
    to: &std::path::Path,
    json: bool,
) -> Result<(u64, u64)> {
    use sha2::Digest;
    use std::collections::BTreeMap;
    let mut named: BTreeMap<truce_shared::Bytes32, u64> = BTreeMap::new();
    store.for_each_report(query, |row| {
        if let Ok(env) = row.envelope() {
            for a in env.observation.attachments {
                named.insert(a.sha256, a.size);
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    truce_shared::fs::create_private_dir(to, truce_shared::fs::ExistingDir::Leave)?;
    let total: u64 = named.iter().filter(|(h, _)| evidence.holds(h)).map(|(_, s)| *s).sum();
    let progress = crate::progress::Progress::new("evidence", total, json);
    let (mut written, mut missing) = (0u64, 0u64);
    for sha in named.keys() {
        let src = evidence.held_path(sha);
        let mut f = match std::fs::File::open(&src) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing += 1;
                continue;
            }
            Err(e) => return Err(anyhow::anyhow!("cannot read {}: {e}", src.display())),
        };
        let dest = to.join(hex::encode(sha));
        let mut out = AtomicFile::create(&dest, Access::Private)?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            progress.add(n as u64);
        }
        if <[u8; 32]>::from(hasher.finalize()) != *sha {
            anyhow::bail!(
                "{} does not hash to its name: the server's copy was altered on disk; not exported",
                src.display()
            );
        }
        out.commit()?;
        written += 1;
    }
    progress.finish();
    if !json {
        eprintln!(
            "evidence: {written} file(s) written to {}; {missing} named but not held by this server",
            to.display()
        );
    }
    Ok((written, missing))
}

/// Writes `f`'s output to `path` through a temporary file beside it, renamed
/// into place only when complete: a failed export never leaves a file that
/// looks whole. The temporary file gets a random name and is created
/// exclusively (never through a symlink someone left at a guessable name)
/// and readable by its owner only (0600 on unix), which the export keeps:
/// it holds reports. File and directory are synced ([`AtomicFile`]).
fn write_file<T>(path: &std::path::Path, f: impl FnOnce(&mut (dyn Write + Send)) -> Result<T>) -> Result<T> {
    let file = AtomicFile::create(path, Access::Private)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
    // On error the temporary file is dropped, which removes it.
    let v = f(&mut w)?;
    w.into_inner().map_err(|e| e.into_error())?.commit()?;
    Ok(v)
}
