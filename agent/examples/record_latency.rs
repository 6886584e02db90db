//! Record latency in process against its reference, on this disk:
//! p50/p99 of `Agent::record` (validate, sign, chain, durable commit) beside
//! p50/p99 of a bare SQLite `synchronous=FULL` one-row commit (DESIGN §7).
//! The workspace benchmark harness reports the official figure; this is a
//! quick local check: `cargo run --release -p truce-agent --example record_latency [N]`.

use std::time::Instant;

use truce_agent::{Agent, RecordInput};
use truce_shared::Category;

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(500);
    let tmp = tempfile::tempdir()?;

    let bare = rusqlite::Connection::open(tmp.path().join("bare.sqlite"))?;
    let _: String = bare.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    bare.execute_batch("PRAGMA synchronous = FULL; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);")?;
    let payload = vec![7u8; 300];
    let mut bare_ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        bare.execute("INSERT INTO t(v) VALUES (?1)", [&payload])?;
        bare_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }

    // Sealed, as a monitor's is: every row is sealed under the data key.
    let pass = truce_agent::vault::Passphrase::new("record latency example".into())?;
    let mut agent = Agent::init(tmp.path().join("agent"), &truce_agent::vault::Protection::Passphrase(pass))?;
    let mut input = RecordInput::new(Category::Shelling, 48.5, 37.9);
    input.description = "two explosions assessed as outgoing 152mm artillery".into();
    let mut rec_ms = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        agent.record(&input)?;
        rec_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let (b50, b99) = percentiles(bare_ms);
    let (r50, r99) = percentiles(rec_ms);
    println!("bare commit   p50 {b50:.3} ms  p99 {b99:.3} ms");
    println!("agent record  p50 {r50:.3} ms  p99 {r99:.3} ms  (p99 ratio {:.2}, target <= 2)", r99 / b99);
    Ok(())
}
