//! The report lock (DESIGN §5): every outcome over the wire, exactly as
//! specified, with what the store keeps for each, the receipts, and
//! enrolment and revocation through the real `device` commands.

use truce_server::store::ReportStatus;
use truce_shared::encoding;
use truce_shared::wire::Status;

use crate::common::*;

fn quarantined(r: &str) -> Status {
    Status::Quarantined(r.into())
}

fn rejected(r: &str) -> Status {
    Status::Rejected(r.into())
}

/// What the database holds, coarsely: report rows, the highest row number
/// ever used, the sum of their arrival times, refused arrivals and forks.
/// Equal before and after means nothing was written.
fn footprint(store: &truce_server::Store) -> (u64, u64, u64, u64, u64) {
    store
        .read(|tx| {
            Ok((
                tx.count("SELECT COUNT(*) FROM reports", &[])?,
                tx.count("SELECT MAX(n) FROM reports", &[])?,
                tx.count("SELECT CAST(SUM(received_at) AS BIGINT) FROM reports", &[])?,
                tx.count("SELECT CAST(SUM(times) AS BIGINT) FROM rejections", &[])?,
                tx.count("SELECT COUNT(*) FROM forks", &[])?,
            ))
        })
        .unwrap()
}

async fn accepted_duplicate_quarantined_promoted_revoked(db: Db) {
    let pki = Pki::new(&["laptop"]);
    let server = InProcessServer::start_on(&pki, quick_limits(), db).await;
    let mut enrolled = Device::fixed(1);
    let mut stranger = Device::fixed(2);
    let mut lost = Device::fixed(3);
    ok(server.cli(&["device", "add", &enrolled.hex(), "--name", "laptop-1"]));
    ok(server.cli(&["device", "add", &lost.hex(), "--name", "laptop-2"]));
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    assert_eq!(c.server_key, server.server_key());

    // Accepted, and the same report again (in the batch and later): Duplicate.
    let (a1, a2) = (enrolled.next("a1"), enrolled.next("a2"));
    let ack = c.submit(vec![a1.clone(), a2.clone(), a1.clone()]).await;
    assert_eq!(ack.statuses(), vec![Status::Accepted, Status::Accepted, Status::Duplicate]);
    assert_eq!(ack.results[0].0, a1.id());
    let store = server.store();
    let before = footprint(&store);
    let row_before = store.report(&a1.id()).unwrap().unwrap();
    let ack = c.submit(vec![a1.clone(), a2.clone()]).await;
    assert_eq!(ack.statuses(), vec![Status::Duplicate, Status::Duplicate]);
    // Still covered by the receipt: the server holds them.
    assert_eq!(held_ids(&ack.results), vec![a1.id(), a2.id()]);
    assert_eq!(footprint(&store), before, "a duplicate writes nothing");
    assert_eq!(store.report(&a1.id()).unwrap().unwrap(), row_before, "the first arrival's row is untouched");
    assert_eq!(rows_with_id(&store, &a1.id()), 1);
    let row = store.report(&a1.id()).unwrap().unwrap();
    assert_eq!((row.status, row.seq, row.signed()), (ReportStatus::Verified, 1, a1.clone()));
    assert!(row.received_at > 0);
    assert!(row.incident.is_some() && row.corroboration == Some(1), "a verified report joins an incident");

    // A key nobody enrolled: stored, quarantined; enrolment promotes it.
    let (s1, s2) = (stranger.next("s1"), stranger.next("s2"));
    let ack = c.submit(vec![s1.clone(), s2.clone()]).await;
    assert_eq!(ack.statuses(), vec![quarantined("unknown device"), quarantined("unknown device")]);
    assert_eq!(store.report(&s1.id()).unwrap().unwrap().status, ReportStatus::Quarantined);
    let out = ok(server.cli(&["--json", "device", "add", &stranger.hex(), "--name", "late-enrolled"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["promoted"], 2, "{out}");
    for id in [s1.id(), s2.id()] {
        let r = store.report(&id).unwrap().unwrap();
        assert_eq!(
            (r.status, r.reason, r.device_name.as_deref()),
            (ReportStatus::Verified, None, Some("late-enrolled"))
        );
    }
    assert_eq!(c.submit(vec![stranger.next("s3")]).await.statuses(), vec![Status::Accepted]);

    // Revocation: reports received after it are quarantined; earlier ones stay verified.
    let before = lost.next("before");
    assert_eq!(c.submit(vec![before.clone()]).await.statuses(), vec![Status::Accepted]);
    let out = ok(server.cli(&["device", "revoke", &lost.hex(), "--reason", "laptop lost at checkpoint 4"]));
    assert!(out.contains("revoked"), "{out}");
    let after = lost.next("after");
    assert_eq!(c.submit(vec![after.clone()]).await.statuses(), vec![quarantined("revoked")]);
    assert_eq!(store.report(&before.id()).unwrap().unwrap().status, ReportStatus::Verified);
    let r = store.report(&after.id()).unwrap().unwrap();
    assert_eq!((r.status, r.reason.as_deref()), (ReportStatus::Quarantined, Some("revoked")));
    // A revoked key is not re-enrolled by mistake.
    let err = fails(server.cli(&["device", "add", &lost.hex()]));
    assert!(err.contains("revoked") && err.trim().lines().count() == 1, "{err}");
    c.bye().await;
    server.stop().await;
}

async fn equivocation_is_rejected_and_both_versions_are_kept(db: Db) {
    let pki = Pki::new(&["laptop"]);
    let server = InProcessServer::start_on(&pki, quick_limits(), db).await;
    let mut d = Device::fixed(4);
    ok(server.cli(&["device", "add", &d.hex()]));
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;
    let first = d.next("first");
    let second = d.next("second");
    let other_second = d.at(2, first.id(), "a different report at seq 2");
    let ack = c.submit(vec![first.clone(), second.clone(), other_second.clone()]).await;
    assert_eq!(ack.statuses(), vec![Status::Accepted, Status::Accepted, rejected("equivocation")]);
    // Sent again (a lost Ack), it gets the same answer and no second row.
    assert_eq!(c.submit(vec![other_second.clone()]).await.statuses(), vec![rejected("equivocation")]);

    let store = server.store();
    let kept = store.report(&second.id()).unwrap().unwrap();
    let evidence = store.report(&other_second.id()).unwrap().unwrap();
    assert_eq!(kept.status, ReportStatus::Verified);
    assert_eq!(
        (evidence.status, evidence.reason.as_deref(), evidence.seq),
        (ReportStatus::Rejected, Some("equivocation"), 2)
    );
    assert_eq!(evidence.signed(), other_second, "the evidence is the exact signed bytes");
    assert_eq!(rows_with_id(&store, &other_second.id()), 1);
    let stats = store.stats().unwrap();
    assert_eq!(stats.forks, 1);
    assert_eq!(stats.chains[0].forks, 1);
    assert_eq!(stats.rejected_by_reason.get("equivocation"), Some(&1));
    // Neither version wins silently: from the fork on, every report of the
    // device is disputed in every export; the one before it is not.
    let third = d.at(3, second.id(), "after the fork");
    assert_eq!(c.submit(vec![third.clone()]).await.statuses(), vec![Status::Accepted]);
    let out = ok(server.cli(&["export", "--format", "jsonl", "--status", "all", "--history"]));
    let disputed: std::collections::BTreeMap<String, bool> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| (v["id"].as_str().unwrap().to_string(), v["disputed"].as_bool().unwrap()))
        .collect();
    let want = [(&first, false), (&second, true), (&other_second, true), (&third, true)];
    for (r, d) in want {
        assert_eq!(disputed.get(&hex::encode(r.id())), Some(&d), "{out}");
    }
    let csv = ok(server.cli(&["export", "--format", "csv"]));
    assert!(csv.lines().next().unwrap().ends_with(",disputed"), "{csv}");
    c.bye().await;
    server.stop().await;
}

async fn forged_non_canonical_out_of_range_and_malformed_reports_are_rejected_and_counted(db: Db) {
    let pki = Pki::new(&["laptop"]);
    let server = InProcessServer::start_on(&pki, quick_limits(), db).await;
    let mut d = Device::fixed(4);
    ok(server.cli(&["device", "add", &d.hex()]));
    let mut c = Client::open(server.addr, pki.client_tls("laptop")).await;

    let good = d.next("good");
    let forged = tampered(&d.at(2, good.id(), "tampered"));
    let mut altered = d.at(2, good.id(), "altered after signing");
    let last = altered.body.len() - 1;
    altered.body[last] ^= 1;
    // Version 1 written as a two-byte varint: decodes, but is not the one encoding.
    let canonical = encoding::encode(&d.envelope(2, good.id(), "aliased"));
    let mut alias = vec![0x81, 0x00];
    alias.extend_from_slice(&canonical[1..]);
    let non_canonical = d.sign_raw(alias);
    // `sign` refuses latitude 91, so the body is signed by hand.
    let mut env = d.envelope(2, good.id(), "latitude 91");
    env.observation.position.lat = 91.0;
    assert!(truce_shared::sign(&d.key, &env).is_err());
    let out_of_range = d.sign_raw(encoding::encode(&env));
    let mut malformed_body = encoding::encode(&d.envelope(2, good.id(), "cut short"));
    malformed_body.truncate(40);
    let malformed = d.sign_raw(malformed_body);

    let ack = c
        .submit(vec![
            good.clone(),
            forged.clone(),
            altered.clone(),
            non_canonical.clone(),
            out_of_range.clone(),
            malformed.clone(),
            forged.clone(),
        ])
        .await;
    let s = ack.statuses();
    assert_eq!(s[0], Status::Accepted);
    assert_eq!(s[1], rejected("bad signature"));
    assert_eq!(s[2], rejected("bad signature"));
    assert_eq!(s[3], rejected("non-canonical encoding"));
    assert!(matches!(&s[4], Status::Rejected(r) if r.starts_with("invalid field: latitude 91")), "{:?}", s[4]);
    assert_eq!(s[5], rejected("malformed"));
    assert_eq!(s[6], rejected("bad signature"));
    // The receipt covers only what the server holds.
    assert_eq!(held_ids(&ack.results), vec![good.id()]);

    let store = server.store();
    for r in [&forged, &altered, &non_canonical, &out_of_range, &malformed] {
        assert_eq!(rows_with_id(&store, &r.id()), 0, "nothing unverified is a report");
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.reports.verified, 1);
    assert_eq!((stats.rejections.distinct, stats.rejections.arrivals), (5, 6));
    assert_eq!(stats.rejected_by_reason.get("bad signature"), Some(&3));
    assert_eq!(stats.rejected_by_reason.get("non-canonical encoding"), Some(&1));
    assert_eq!(stats.rejected_by_reason.get("malformed"), Some(&1));
    // `truce-server stats`, as an operator runs it, counts every refusal.
    let cli_stats: serde_json::Value = serde_json::from_str(ok(server.cli(&["--json", "stats"])).trim()).unwrap();
    assert_eq!(cli_stats["rejections"]["arrivals"], 6, "{cli_stats}");
    assert_eq!(cli_stats["rejected_by_reason"]["bad signature"], 3, "{cli_stats}");
    assert_eq!(cli_stats["rejected_by_reason"]["non-canonical encoding"], 1, "{cli_stats}");
    assert_eq!(cli_stats["rejected_by_reason"]["malformed"], 1, "{cli_stats}");
    let by_reason = cli_stats["rejected_by_reason"].as_object().unwrap();
    let out_of_range_count: u64 = by_reason
        .iter()
        .filter(|(k, _)| k.starts_with("invalid field: latitude 91"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(out_of_range_count, 1, "{cli_stats}");
    let text = ok(server.cli(&["stats"]));
    assert!(text.contains("refused: 6 report(s) failed verification (5 distinct)"), "{text}");
    // The refused bytes are kept for whoever investigates.
    let mut kept = Vec::new();
    store
        .for_each_rejection(|r| {
            kept.push(r);
            Ok::<_, truce_server::StoreError>(())
        })
        .unwrap();
    assert!(kept.iter().any(|r| r.body == forged.body && r.times == 2 && r.device == Some(d.public())));
    c.bye().await;
    server.stop().await;
}

/// The serial (hex) and subject of the PEM certificate at `path`.
fn serial_and_subject(path: &std::path::Path) -> (String, String) {
    let pem = std::fs::read(path).unwrap();
    let der = rustls_pemfile::certs(&mut pem.as_slice()).next().unwrap().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    (hex::encode(cert.raw_serial()), cert.subject().to_string())
}

async fn each_report_keeps_the_certificate_it_came_through(db: Db) {
    let pki = Pki::new(&["laptop-07", "laptop-08"]);
    let server = InProcessServer::start_on(&pki, quick_limits(), db).await;
    let mut d = Device::fixed(71);
    server.store().add_device(&d.public(), None, truce_shared::time::now_ms()).unwrap();
    let mut c = Client::open(server.addr, pki.client_tls("laptop-07")).await;
    let first = d.next("through laptop-07's certificate");
    c.submit(vec![first.clone()]).await;
    c.bye().await;
    // The same key through another certificate (a laptop re-issued, or a
    // key copied): the record shows which credentials each report used.
    let mut c = Client::open(server.addr, pki.client_tls("laptop-08")).await;
    let second = d.next("through laptop-08's certificate");
    c.submit(vec![second.clone()]).await;
    c.bye().await;
    let rows: Vec<serde_json::Value> =
        ok(server.cli(&["export", "--format", "jsonl"])).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for (row, (report, name)) in rows.iter().zip([(&first, "laptop-07"), (&second, "laptop-08")]) {
        let (serial, subject) = serial_and_subject(&pki.file(&format!("{name}.pem")));
        assert_eq!(row["id"], hex::encode(report.id()));
        assert_eq!(row["cert_serial"], serial.as_str(), "{row}");
        assert_eq!(row["cert_subject"], subject.as_str(), "{row}");
        assert!(subject.contains(&format!("CN={name}")), "{subject}");
    }
    server.stop().await;
}

crate::on_both_databases_async!(
    accepted_duplicate_quarantined_promoted_revoked,
    equivocation_is_rejected_and_both_versions_are_kept,
    forged_non_canonical_out_of_range_and_malformed_reports_are_rejected_and_counted,
    each_report_keeps_the_certificate_it_came_through,
);
