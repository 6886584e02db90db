//! Several servers on one PostgreSQL database (DESIGN §12): each test
//! opens two stores on one real database, as two `truce-server run`
//! processes would, and has them write at the same moment from two
//! threads. Whatever the interleaving, a report is stored once, a device's
//! fork is found across them, incidents count devices across them, and
//! enrolment through one promotes what the other quarantined.

use std::sync::{Arc, Barrier};

use truce_server::store::Database;
use truce_server::{Checked, Store};
use truce_shared::wire::Status;
use truce_shared::SignedReport;

use crate::common::*;

/// Two stores on one fresh database: two servers' worth of connections.
fn two_stores(pg: &TestPostgres) -> (Store, Store) {
    let db = Database::Postgres(pg.fresh_database());
    let open = |which: &str| {
        let mut s = Store::open(&db).unwrap_or_else(|e| panic!("{which} server's store: {e}"));
        // Both servers hold the one log key, as every server on one database must.
        s.open_log(&[9; 32], truce_shared::log::DEFAULT_MISSION).expect("the log");
        s
    };
    (open("first"), open("second"))
}

/// Applies `a` through one store and `b` through the other, both released
/// by one barrier, each in its own transaction as each server's writer
/// would; returns both answers.
fn at_once(s1: &mut Store, s2: &mut Store, a: &[SignedReport], b: &[SignedReport]) -> (Vec<Status>, Vec<Status>) {
    let barrier = Arc::new(Barrier::new(2));
    let check = |r: &[SignedReport]| r.iter().cloned().map(Checked::check).collect::<Vec<_>>();
    let (ca, cb) = (check(a), check(b));
    fn apply(store: &mut Store, batch: &[Checked], barrier: Arc<Barrier>) -> Vec<Status> {
        barrier.wait();
        let import = truce_server::store::Arrival::Import([0; 32]);
        let out = store.write(|tx| Store::apply(tx, batch, truce_shared::time::now_ms(), &import)).expect("commit");
        out.into_iter().map(|o| o.status).collect()
    }
    std::thread::scope(|s| {
        let (b1, b2) = (barrier.clone(), barrier);
        let t1 = s.spawn(|| apply(s1, &ca, b1));
        let t2 = s.spawn(|| apply(s2, &cb, b2));
        (t1.join().expect("first writer"), t2.join().expect("second writer"))
    })
}

#[test]
fn a_report_sent_to_two_servers_at_once_is_stored_once() {
    let pg = TestPostgres::start();
    let (mut s1, mut s2) = two_stores(&pg);
    let mut d = Device::fixed(1);
    s1.add_device(&d.public(), Some("laptop"), 0).unwrap();
    for round in 0..20 {
        let batch = d.batch(25, &format!("round {round}"));
        let (one, two) = at_once(&mut s1, &mut s2, &batch, &batch);
        for (i, (x, y)) in one.iter().zip(&two).enumerate() {
            let answers = [x, y];
            assert_eq!(
                answers.iter().filter(|s| ***s == Status::Accepted).count(),
                1,
                "round {round}, report {i}: {x:?} and {y:?}"
            );
            assert!(answers.contains(&&Status::Duplicate), "round {round}, report {i}: {x:?} and {y:?}");
        }
    }
    let stats = s1.stats().unwrap();
    assert_eq!(stats.reports.verified, 20 * 25, "every report once");
    assert_eq!((stats.chains[0].missing, stats.forks), (0, 0));
}

#[test]
fn a_fork_sent_to_two_servers_at_once_is_found() {
    let pg = TestPostgres::start();
    let (mut s1, mut s2) = two_stores(&pg);
    let d = Device::fixed(2);
    s1.add_device(&d.public(), Some("laptop"), 0).unwrap();
    // Two versions of each seq, one to each server, at the same moment:
    // the key was copied onto a second laptop.
    let mut prev = [0; 32];
    for seq in 1..=30u64 {
        let a = d.at(seq, prev, &format!("seq {seq} as sent"));
        let b = d.at(seq, prev, &format!("seq {seq} altered"));
        let (one, two) = at_once(&mut s1, &mut s2, std::slice::from_ref(&a), std::slice::from_ref(&b));
        let answers = [&one[0], &two[0]];
        assert_eq!(answers.iter().filter(|s| ***s == Status::Accepted).count(), 1, "seq {seq}: {answers:?}");
        assert!(answers.contains(&&Status::Rejected("equivocation".into())), "seq {seq}: {answers:?}");
        prev = if one[0] == Status::Accepted { a.id() } else { b.id() };
    }
    let stats = s2.stats().unwrap();
    assert_eq!((stats.forks, stats.reports.verified, stats.reports.rejected), (30, 30, 30));
}

#[test]
fn incidents_and_enrolment_reach_across_servers() {
    let pg = TestPostgres::start();
    let (mut s1, mut s2) = two_stores(&pg);
    let mut devices: Vec<Device> = (10..16).map(Device::fixed).collect();
    for d in &devices[..4] {
        s1.add_device(&d.public(), None, 0).unwrap();
    }
    // Six monitors hear one barrage; three report through each server,
    // all at once. Two are not enrolled yet: quarantined by the second.
    let reports: Vec<SignedReport> = devices.iter_mut().map(|d| d.next("one barrage")).collect();
    let (one, two) = at_once(
        &mut s1,
        &mut s2,
        &[reports[0].clone(), reports[1].clone(), reports[4].clone()],
        &[reports[2].clone(), reports[3].clone(), reports[5].clone()],
    );
    assert_eq!(one[..2], [Status::Accepted, Status::Accepted]);
    assert_eq!(two[..2], [Status::Accepted, Status::Accepted]);
    assert!(matches!(&one[2], Status::Quarantined(r) if r == "unknown device"), "{one:?}");
    assert!(matches!(&two[2], Status::Quarantined(r) if r == "unknown device"), "{two:?}");
    let incidents = s2.incidents(1).unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(incidents[0].devices, 4, "one incident, corroborated by the devices of both servers");
    // Enrolment through the first server promotes what the second
    // quarantined, into the same incident.
    for d in &devices[4..] {
        assert_eq!(s1.add_device(&d.public(), None, 1).unwrap().promoted, 1);
    }
    let incidents = s2.incidents(1).unwrap();
    assert_eq!((incidents.len(), incidents[0].devices), (1, 6), "{incidents:?}");
}

/// What an investigator would compare: each report's id, status, reason,
/// corroboration and certificate, in arrival order.
fn record_of(export_jsonl: &str) -> Vec<(String, String, String, String)> {
    export_jsonl
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            let s = |k: &str| v[k].to_string();
            (s("id"), s("status"), s("reason"), s("corroboration"))
        })
        .collect()
}

#[test]
fn migrate_moves_a_sqlite_store_once_and_the_record_reads_the_same() {
    use crate::investigators::{report, Mission};
    let mut m = Mission::new();
    let mut enrolled: Vec<Device> = (30..33).map(Device::fixed).collect();
    for (i, d) in enrolled.iter().enumerate() {
        m.enrol(d, &format!("laptop-{i}"));
    }
    let mut stranger = Device::fixed(40);
    let mut reports: Vec<SignedReport> = enrolled.iter_mut().flat_map(|d| d.batch(4, "barrage")).collect();
    reports.push(report(&mut stranger, |_| {}));
    let fork = enrolled[0].at(2, reports[0].id(), "a second version of seq 2");
    reports.push(fork);
    reports.push(truce_testkit::tampered(&reports[1]));
    m.import(&reports);
    let before = ok(m.cli(&["export", "--format", "jsonl", "--status", "all", "--history"]));

    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let dir = m.data.path().to_string_lossy().to_string();
    let migrate = |json: bool| {
        let mut args = vec!["migrate", "--from", &dir, "--to", &url];
        if json {
            args.insert(0, "--json");
        }
        ok(cli(std::path::Path::new("/nonexistent"), &args))
    };
    let first: serde_json::Value = serde_json::from_str(migrate(true).trim()).unwrap();
    assert_eq!(first["devices"], 3, "{first}");
    assert_eq!(first["reports"], 3 * 4 + 1 + 1, "every stored report, the fork's second version included: {first}");
    assert_eq!((first["rejections"].as_u64(), first["forks"].as_u64()), (Some(1), Some(1)), "{first}");
    assert_eq!(first["incidents"], 1, "{first}");
    let again = migrate(false);
    assert!(again.contains("0 device(s), 0 report(s), 0 rejection(s), 0 fork(s)"), "{again}");
    assert!(again.contains("nothing new to group"), "{again}");

    // The same record, read back through PostgreSQL.
    let after =
        ok(cli(m.data.path(), &["--database", &url, "export", "--format", "jsonl", "--status", "all", "--history"]));
    assert_eq!(record_of(&after), record_of(&before));
    let stats =
        |args: &[&str]| -> serde_json::Value { serde_json::from_str(ok(cli(m.data.path(), args)).trim()).unwrap() };
    assert_eq!(stats(&["--database", &url, "--json", "stats"]), stats(&["--json", "stats"]));

    // A laptop revoked on the old server after a first run stays revoked:
    // a second run carries the revocation, and only that.
    ok(m.cli(&["device", "revoke", &enrolled[2].hex(), "--reason", "seized"]));
    let third: serde_json::Value = serde_json::from_str(migrate(true).trim()).unwrap();
    assert_eq!((third["devices"].as_u64(), third["reports"].as_u64()), (Some(1), Some(0)), "{third}");
    let list = ok(cli(m.data.path(), &["--database", &url, "device", "list"]));
    assert!(list.contains("seized"), "{list}");

    let err = fails(cli(m.data.path(), &["migrate", "--from", &dir, "--to", "/tmp/elsewhere.sqlite"]));
    assert!(err.contains("--to takes a PostgreSQL URL"), "{err}");
}

#[test]
fn the_database_is_reached_over_tls_when_the_url_asks_and_another_ca_is_refused() {
    let pki = Pki::new(&[]);
    let pg = TestPostgres::start_with_tls(&pki.file("server.pem"), &pki.file("server.key"));
    pg.create_database("truce_tls");
    let url = pg.tls_url("truce_tls", &pki.file("ca.pem"));
    let mut store = Store::open(&Database::Postgres(url.clone())).expect("a store over TLS");
    store.open_log(&[9; 32], truce_shared::log::DEFAULT_MISSION).expect("the log");
    store.add_device(&Device::fixed(50).public(), Some("laptop"), 0).unwrap();
    let ssl = store.read(|tx| tx.count("SELECT CAST(ssl AS INT) FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[]));
    assert_eq!(ssl.unwrap(), 1, "the connection is encrypted");
    assert_eq!(store.devices().unwrap().len(), 1);

    // A server certificate from another CA is refused, and the message
    // says why without the password.
    let other = Pki::new(&[]);
    let err = Store::open(&Database::Postgres(pg.tls_url("truce_tls", &other.file("ca.pem")))).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");
    // TLS asked for with no CA to check against: a clear refusal.
    let no_ca = url.split("&sslrootcert").next().unwrap().to_string();
    let err = Store::open(&Database::Postgres(no_ca)).unwrap_err();
    assert!(err.to_string().contains("sslrootcert=FILE"), "{err}");
}
