//! Ingest: reports a second through the real server, on SQLite and on PostgreSQL, beside verification alone and
//! bare SQLite INSERTs.

use super::*;

/// The reference: raw `verify_strict` of single signatures over messages
/// the size of a typical report, one thread per core.
pub(super) fn verify_rate(per_core: usize) -> f64 {
    let mut chain = Chain::new();
    let key = chain.key.verifying_key();
    let items: Vec<(Vec<u8>, ed25519_dalek::Signature)> = (0..64)
        .map(|_| {
            let r = chain.next().expect("a typical report signs");
            let mut msg = REPORT_SIG_DOMAIN.to_vec();
            msg.extend_from_slice(&r.body);
            let sig = chain.key.sign(&msg);
            (msg, sig)
        })
        .collect();
    let items = Arc::new(items);
    let n = cores();
    let t = Instant::now();
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let items = items.clone();
            std::thread::spawn(move || {
                for i in 0..per_core {
                    let (msg, sig) = &items[i % items.len()];
                    assert!(key.verify_strict(msg, sig).is_ok());
                }
            })
        })
        .collect();
    for th in threads {
        th.join().expect("verify thread");
    }
    (n * per_core) as f64 / t.elapsed().as_secs_f64()
}

/// What ingest measured: the rate, and the CPU each report cost the
/// server, the load generator and the database (medians over runs).
pub(super) struct IngestCost {
    pub(super) per_s: f64,
    pub(super) server_cpu_us: f64,
    /// Of the server's: the thread that stores, its one writer (on
    /// PostgreSQL with the client runtime it waits on).
    pub(super) writer_cpu_us: f64,
    pub(super) loadgen_cpu_us: f64,
    /// PostgreSQL's processes (the postmaster and all its children); 0 on
    /// SQLite, whose work is the writer's.
    pub(super) db_cpu_us: f64,
}

/// Server ingest: `connections` sessions, one enrolled device each, submit
/// pre-signed batches of `max_batch` reports with up to 4 in flight; the
/// clock runs from the first Submit to the last Ack (every report must
/// come back Accepted). Median rate over `runs`, and the median CPU each
/// report cost the server process (the load generator shares the same
/// cores, so this shows the server's own cost per report), the load
/// generator and, on PostgreSQL, the database's processes.
///
/// `pg`: the server stores into a new database of this PostgreSQL server
/// (`--database`) instead of its data dir's SQLite file.
pub(super) fn ingest(
    rt: &tokio::runtime::Runtime,
    pki: &Pki,
    plan: &Plan,
    pg: Option<&TestPostgres>,
) -> Result<IngestCost> {
    const IN_FLIGHT: usize = 4;
    let max_batch = limits::MAX_BATCH as usize;
    let url = pg.map(TestPostgres::fresh_database);
    let mut server = TestServer::init_on(url.as_deref());
    let db_cpu_s = || pg.map_or(0.0, |pg| pg.cpu_time().as_secs_f64());
    let mut chains: Vec<Chain> = (0..plan.connections).map(|_| Chain::new()).collect();
    for (i, c) in chains.iter().enumerate() {
        server.enrol(&c.public_hex(), &format!("laptop-{i}"));
    }
    // Every simulated laptop connects with the one bench certificate.
    let per_cert = plan.connections.to_string();
    server.start(pki, &["--max-connections-per-cert", &per_cert]);
    let connector = tls_connector(pki)?;
    let addr = server.addr();
    let pid = server.pid().context("server pid")?;
    let mut rates = Vec::new();
    let (mut server_us, mut writer_us, mut loadgen_us, mut db_us) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..plan.runs {
        // Sign this run's reports up front: the clock measures the server.
        let mut work = Vec::new();
        for c in chains.iter_mut() {
            let reports = (0..plan.per_connection).map(|_| c.next()).collect::<Result<Vec<_>>>()?;
            let frames: Vec<Vec<u8>> = reports
                .chunks(max_batch)
                .enumerate()
                .map(|(b, chunk)| encoding::encode(&Message::Submit { batch: b as u64, reports: chunk.to_vec() }))
                .collect();
            work.push((c.key.verifying_key().to_bytes(), frames));
        }
        let (mut cpu_before, mut writer_before, mut own_before, mut db_before) = (0.0, 0.0, 0.0, 0.0);
        let elapsed = rt.block_on(async {
            let mut sessions = Vec::new();
            for (device, frames) in work {
                sessions.push((open_session(&connector, addr, device).await?, frames));
            }
            cpu_before = proc_cpu_s(pid)?;
            writer_before = writer_cpu_s(pid)?;
            // Before our own, so scanning /proc for PostgreSQL's
            // processes is not counted as the load generator's.
            db_before = db_cpu_s();
            own_before = proc_cpu_s(std::process::id())?;
            let t = Instant::now();
            let tasks: Vec<_> =
                sessions.into_iter().map(|(tls, frames)| tokio::spawn(submit_all(tls, frames, IN_FLIGHT))).collect();
            let mut accepted = 0;
            for task in tasks {
                accepted += task.await??;
            }
            let elapsed = t.elapsed();
            ensure!(
                accepted == plan.connections * plan.per_connection,
                "{accepted} of {} reports accepted",
                plan.connections * plan.per_connection
            );
            Ok::<_, anyhow::Error>(elapsed)
        })?;
        let cpu = proc_cpu_s(pid)? - cpu_before;
        let own = proc_cpu_s(std::process::id())? - own_before;
        let writer = writer_cpu_s(pid)? - writer_before;
        let db = db_cpu_s() - db_before;
        let reports = (plan.connections * plan.per_connection) as f64;
        rates.push(reports / elapsed.as_secs_f64());
        server_us.push(cpu * 1e6 / reports);
        writer_us.push(writer * 1e6 / reports);
        loadgen_us.push(own * 1e6 / reports);
        db_us.push(db * 1e6 / reports);
    }
    Ok(IngestCost {
        per_s: median(rates),
        server_cpu_us: median(server_us),
        writer_cpu_us: median(writer_us),
        loadgen_cpu_us: median(loadgen_us),
        db_cpu_us: median(db_us),
    })
}

/// What a floor INSERT stores.
#[derive(Clone, Copy)]
pub(super) enum Floor {
    /// The row the writer stores, in the server's own schema, every index.
    Server,
    /// The least a store can keep and still drop an exact duplicate or find
    /// a report by its id: the signed bytes under a unique id, no other
    /// column or index.
    Minimal,
}

/// The floor under the writer: CPU a report costs in a bare SQLite INSERT
/// (WAL, synchronous=FULL, a new store's page size, the writer's cache and
/// checkpoint settings), 2,048 rows a transaction, with no checks, no
/// incidents and no other thread competing. Median over runs of this
/// thread's CPU per row.
pub(super) fn sqlite_insert_floor(plan: &Plan, floor: Floor) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("floor.sqlite");
    let (mut conn, sql) = match floor {
        Floor::Server => {
            drop(truce_server::Store::open_sqlite(&path)?);
            let sql = "INSERT INTO reports (id, device, seq, prev, recorded_at, observed_at, observed_until, category,
                                            lat, lon, amends, body, signature, status, reason, received_at, ev_lat,
                                            ev_lon, incident)
                       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'shelling', ?8, ?9, NULL, ?10, ?11, 'verified', NULL, ?12,
                               ?8, ?9, 1)";
            (rusqlite::Connection::open(&path)?, sql)
        }
        Floor::Minimal => {
            let c = rusqlite::Connection::open(&path)?;
            c.pragma_update(None, "page_size", truce_server::store::PAGE_SIZE)?;
            c.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))?;
            c.execute_batch(
                "CREATE TABLE reports (n INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, body BLOB NOT NULL,
                                       signature BLOB NOT NULL)",
            )?;
            (c, "INSERT INTO reports (id, body, signature) VALUES (?1, ?2, ?3)")
        }
    };
    conn.pragma_update(None, "synchronous", "FULL")?;
    truce_server::store::tune_sqlite(&conn)?;
    let mut chains: Vec<Chain> = (0..plan.connections).map(|_| Chain::new()).collect();
    let mut per_row = Vec::new();
    for _ in 0..plan.runs {
        let mut rows = Vec::new();
        for _ in 0..plan.per_connection {
            for c in chains.iter_mut() {
                let r = c.next()?;
                let env: Envelope = encoding::decode(&r.body)?;
                rows.push((r, env));
            }
        }
        let before = thread_cpu_s()?;
        for chunk in rows.chunks(2048) {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut insert = tx.prepare(sql)?;
                for (r, env) in chunk {
                    let o = &env.observation;
                    match floor {
                        Floor::Server => insert.execute(rusqlite::params![
                            &r.id()[..],
                            &env.device[..],
                            env.seq as i64,
                            &env.prev[..],
                            env.recorded_at,
                            o.observed_at,
                            o.observed_until,
                            o.position.lat,
                            o.position.lon,
                            &r.body,
                            &r.signature.0[..],
                            env.recorded_at,
                        ])?,
                        Floor::Minimal => {
                            insert.execute(rusqlite::params![&r.id()[..], &r.body, &r.signature.0[..]])?
                        }
                    };
                }
            }
            tx.commit()?;
        }
        per_row.push((thread_cpu_s()? - before) * 1e6 / rows.len() as f64);
    }
    Ok(median(per_row))
}
