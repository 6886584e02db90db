//! Export: JSON Lines rows a second, beside writing the same bytes.

use super::*;

/// Export rate to JSON Lines from a store of `export_rows` reports, as the
/// `truce-server export` process runs it, and beside it the reference: the
/// same number of bytes written to a file in the same directory and
/// fsynced, as the export does, but with nothing to read or format.
/// Returns the medians over runs of (rows/s, bytes written, reference
/// rows/s). Dirty pages are flushed (`sync`) and the last output deleted
/// before each timed step, so one step's writeback or freeing does not
/// land on the next.
pub(super) fn export_rate(plan: &Plan) -> Result<(f64, f64, f64)> {
    let server = TestServer::init();
    let mut chain = Chain::new();
    server.enrol(&chain.public_hex(), "export");
    let r = chain.next()?;
    // Copies of one signed body under distinct ids and sequence numbers:
    // export reads rows and does not re-verify them, and signing a million
    // reports would only slow the harness down.
    let db = rusqlite::Connection::open(server.dir().join("truce.sqlite"))?;
    db.execute(
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1)
         INSERT INTO reports (id, device, seq, prev, recorded_at, observed_at, category, lat, lon, body,
                              signature, status, received_at, ev_lat, ev_lon)
         SELECT randomblob(32), ?2, i, zeroblob(32), 0, i, 'shelling', 48.0, 37.8, ?3, ?4, 'verified', 0, 48.0, 37.8
         FROM k",
        rusqlite::params![plan.export_rows, &chain.key.verifying_key().to_bytes()[..], &r.body, &r.signature.0[..]],
    )?;
    drop(db);
    let out = server.dir().join("export.jsonl");
    let copy = server.dir().join("reference.out");
    let (mut rates, mut sizes, mut refs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.runs.min(3) {
        // The last run's gigabyte is deleted outside the clock: freeing it
        // is not the export's work (renaming over it showed in profiles).
        if out.exists() {
            std::fs::remove_file(&out)?;
        }
        sync()?;
        let t = Instant::now();
        let out_s = out.to_str().context("utf-8 temp path")?;
        server.cmd(&["export", "--format", "jsonl", "--out", out_s]).expect_ok();
        let secs = t.elapsed().as_secs_f64();
        let lines = std::io::BufRead::lines(std::io::BufReader::new(std::fs::File::open(&out)?)).count();
        ensure!(lines as i64 == plan.export_rows, "export wrote {lines} of {} rows", plan.export_rows);
        rates.push(plan.export_rows as f64 / secs);
        let size = std::fs::metadata(&out)?.len();
        sizes.push(size as f64);
        // The reference writes the export's own first bytes over and over.
        let mut chunk = vec![0u8; 256 * 1024];
        let got = std::io::Read::read(&mut std::fs::File::open(&out)?, &mut chunk)?;
        chunk.truncate(got.max(1));
        sync()?;
        let t = Instant::now();
        let mut f = std::fs::File::create(&copy)?;
        let mut left = size as usize;
        while left > 0 {
            let n = left.min(chunk.len());
            std::io::Write::write_all(&mut f, &chunk[..n])?;
            left -= n;
        }
        f.sync_all()?;
        refs.push(plan.export_rows as f64 / t.elapsed().as_secs_f64());
        std::fs::remove_file(&copy)?;
    }
    Ok((median(rates), median(sizes), median(refs)))
}
