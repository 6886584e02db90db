//! The investigator's side (DESIGN §5): `export` in every format, its
//! filters and amendment history, `verify` of an exported bundle, and a
//! 1,000,000-report export in bounded memory. Everything runs through the
//! real `truce-server` binary on a real data dir; reports arrive by `import`.

use std::path::{Path, PathBuf};

use truce_shared::bundle::BundleWriter;
use truce_shared::{Attachment, Category, Count, Effect, Observation, Qualifier, SignedReport};

use crate::common::*;

/// A server data dir with enrolled devices, fed by bundles.
pub struct Mission {
    pub data: tempfile::TempDir,
    db: TestDb,
    bundles: usize,
}

impl Mission {
    pub fn new() -> Mission {
        Mission::on(Db::Sqlite)
    }

    /// A mission whose server keeps its store in `db`.
    pub fn on(db: Db) -> Mission {
        let m = Mission { data: tempfile::tempdir().unwrap(), db: TestDb::new(db), bundles: 0 };
        ok(m.cli(&["init"]));
        m
    }

    pub fn cli(&self, args: &[&str]) -> Ran {
        let db = self.db.args();
        let mut all: Vec<&str> = db.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        cli(self.data.path(), &all)
    }

    pub fn enrol(&self, d: &Device, name: &str) {
        ok(self.cli(&["device", "add", &d.hex(), "--name", name]));
    }

    /// Imports reports as a bundle (the USB-stick path).
    pub fn import(&mut self, reports: &[SignedReport]) {
        self.bundles += 1;
        let path = self.data.path().join(format!("in-{}.truceb", self.bundles));
        write_bundle(&path, reports);
        ok(self.cli(&["import", &path.to_string_lossy()]));
    }

    /// Runs `export` with `args` and returns stdout.
    pub fn export(&self, args: &[&str]) -> String {
        let mut all = vec!["export"];
        all.extend_from_slice(args);
        ok(self.cli(&all))
    }

    /// `export --format jsonl` with `args`, parsed.
    pub fn rows(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let mut all = vec!["--format", "jsonl"];
        all.extend_from_slice(args);
        self.export(&all).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.data.path().join(name)
    }
}

pub fn write_bundle(path: &Path, reports: &[SignedReport]) {
    let mut w = BundleWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for r in reports {
        w.write(r).unwrap();
    }
    w.finish().unwrap();
}

/// Signs the device's next report with the observation `f` makes of the
/// plain one.
pub fn report(d: &mut Device, f: impl FnOnce(&mut Observation)) -> SignedReport {
    let mut env = d.envelope(d.seq + 1, d.head, "report");
    f(&mut env.observation);
    let r = truce_shared::sign(&d.key, &env).expect("sign");
    d.seq += 1;
    d.head = r.id();
    r
}

/// The next report, correcting `amends`.
fn amendment(d: &mut Device, amends: &SignedReport, f: impl FnOnce(&mut Observation)) -> SignedReport {
    let mut env = d.envelope(d.seq + 1, d.head, "corrected");
    env.amends = Some(amends.id());
    f(&mut env.observation);
    let r = truce_shared::sign(&d.key, &env).expect("sign");
    d.seq += 1;
    d.head = r.id();
    r
}

const AWKWARD: [&str; 6] = [
    "two impacts, then \"heavy\" fire; smoke to the north",
    "line one\nline two\r\nline three, with a comma",
    "обстріл з півночі, 3 розриви — «важкі»",
    "=HYPERLINK(\"x\") starts with an equals sign",
    "  leading and trailing spaces  ",
    "",
];

fn awkward_reports(d: &mut Device) -> Vec<SignedReport> {
    AWKWARD
        .iter()
        .enumerate()
        .map(|(i, text)| {
            report(d, |o| {
                o.description = (*text).into();
                o.observed_at += i as i64 * 60_000;
                o.category = Category::Explosion;
                o.effect = Some(Effect::Airburst);
                o.weapon = Some("152mm, assessed \"artillery\"".into());
                o.count = Some(Count { n: 30, qualifier: Qualifier::About });
                o.position.lat = -33.8568 + i as f64 * 0.1;
                o.position.lon = 151.2153;
                o.attachments = vec![Attachment {
                    name: "photo; north, \"1\".jpg".into(),
                    media_type: "image/jpeg".into(),
                    size: 1234,
                    sha256: [i as u8; 32],
                }];
                if i == 1 {
                    o.observed_until = Some(o.observed_at + 600_000);
                    o.bearing_deg = None;
                    o.distance_m = None;
                }
            })
        })
        .collect()
}

#[test]
fn no_csv_cell_of_free_text_can_start_a_formula_and_json_keeps_the_text() {
    let mut m = Mission::new();
    let mut d = Device::fixed(42);
    m.enrol(&d, "@laptop =1+1");
    let texts = ["=HYPERLINK(\"http://evil.example\",\"open\")", "+1+1", "-2+3", "@SUM(A1:A9)", "\tcmd", "\rcmd"];
    let reports: Vec<SignedReport> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            report(&mut d, |o| {
                o.description = (*t).into();
                o.weapon = Some((*t).into());
                o.observed_at += i as i64 * 60_000;
                o.position.lon = -58.38;
            })
        })
        .collect();
    m.import(&reports);
    let out = m.file("reports.csv");
    m.export(&["--format", "csv", "--out", &out.to_string_lossy()]);
    let mut r = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let mut seen = Vec::new();
    for rec in r.records().map(|r| r.unwrap()) {
        for c in ["device_name", "weapon", "description"] {
            assert!(rec[col(c)].starts_with('\''), "{c}: {:?}", &rec[col(c)]);
        }
        for (i, cell) in rec.iter().enumerate() {
            let number = cell.parse::<f64>().is_ok();
            assert!(number || !cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "{}: {cell:?}", header[i]);
        }
        assert_eq!(rec[col("lon")].parse::<f64>().unwrap(), -58.38, "a negative number stays a number");
        seen.push(rec[col("description")][1..].to_string());
    }
    seen.sort();
    let mut want: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
    want.sort();
    assert_eq!(seen, want, "behind the quote, the text as signed");
    // JSON Lines keep the text exactly as the device signed it.
    let jsonl = m.export(&["--format", "jsonl"]);
    assert!(jsonl.contains(r#""description":"=HYPERLINK(\"http://evil.example\",\"open\")""#), "{jsonl}");
}

#[test]
fn csv_parses_back_to_what_the_device_signed() {
    let mut m = Mission::new();
    let mut d = Device::fixed(41);
    m.enrol(&d, "laptop, \"north\"");
    let reports = awkward_reports(&mut d);
    m.import(&reports);
    let out = m.file("reports.csv");
    m.export(&["--format", "csv", "--out", &out.to_string_lossy()]);

    let mut r = csv::Reader::from_path(&out).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, truce_server::export::CSV_HEADER);
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let records: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    assert_eq!(records.len(), reports.len());
    for (rec, signed) in records.iter().zip(&reports) {
        let env = truce_shared::encoding::decode_canonical(&signed.body).unwrap();
        let o = &env.observation;
        assert_eq!(&rec[col("id")], hex::encode(signed.id()));
        assert_eq!(&rec[col("device")], d.hex());
        assert_eq!(&rec[col("device_name")], "laptop, \"north\"");
        // Descriptions survive quoting unchanged, except that one a
        // spreadsheet would run as a formula is shown as text.
        if o.description.starts_with('=') {
            assert_eq!(rec[col("description")], format!("'{}", o.description), "a formula is neutralised");
        } else {
            assert_eq!(&rec[col("description")], o.description, "descriptions survive quoting unchanged");
        }
        assert_eq!(&rec[col("weapon")], o.weapon.as_deref().unwrap());
        assert_eq!(rec[col("lat")].parse::<f64>().unwrap(), o.position.lat);
        assert_eq!(rec[col("lon")].parse::<f64>().unwrap(), o.position.lon);
        assert_eq!(&rec[col("observed_at")], truce_shared::time::format_ms(o.observed_at));
        assert_eq!(&rec[col("category")], "explosion");
        assert_eq!(&rec[col("effect")], "airburst");
        assert_eq!((&rec[col("count")], &rec[col("count_qualifier")]), ("30", "about"));
        assert_eq!(&rec[col("status")], "verified");
        assert_eq!(&rec[col("seq")], env.seq.to_string());
        let att: Vec<truce_server::export::AttachmentOut> = serde_json::from_str(&rec[col("attachments")]).unwrap();
        assert_eq!(att[0].name, o.attachments[0].name);
        assert_eq!(att[0].sha256, hex::encode(o.attachments[0].sha256));
        // Times are RFC 3339 UTC with milliseconds.
        let t = &rec[col("received_at")];
        assert!(t.len() == 24 && t.ends_with('Z') && &t[10..11] == "T", "{t}");
        match o.observed_until {
            Some(u) => assert_eq!(&rec[col("observed_until")], truce_shared::time::format_ms(u)),
            None => assert_eq!(&rec[col("observed_until")], ""),
        }
        // Bearing and distance give an estimated event position.
        assert_eq!(rec[col("est_lat")].is_empty(), o.bearing_deg.is_none());
    }
    // RFC 4180: CRLF between records; the raw file keeps the newline
    // inside the quoted description.
    let raw = std::fs::read_to_string(&out).unwrap();
    assert!(raw.starts_with("id,device,device_name,seq,"));
    assert!(raw.contains("\"line one\nline two\r\nline three, with a comma\""));
    assert!(raw.split('\n').next().unwrap().ends_with('\r'), "records end in CRLF");
}

#[test]
fn geojson_is_an_rfc_7946_feature_collection() {
    let mut m = Mission::new();
    let mut d = Device::fixed(42);
    m.enrol(&d, "laptop-1");
    let mut reports = awkward_reports(&mut d);
    reports.push(report(&mut d, |o| {
        // Near the antimeridian: the estimated position wraps.
        o.position.lat = -16.5;
        o.position.lon = 179.99;
        o.bearing_deg = Some(90);
        o.distance_m = Some((3000, 5000));
    }));
    m.import(&reports);
    let text = m.export(&["--format", "geojson"]);
    let v: serde_json::Value = serde_json::from_str(&text).expect("one JSON document");
    let obj = v.as_object().unwrap();
    assert_eq!(obj["type"], "FeatureCollection");
    assert!(!obj.contains_key("crs"), "RFC 7946 §4: no crs member, WGS84 only");
    let features = obj["features"].as_array().unwrap();
    assert_eq!(features.len(), reports.len());
    let jsonl = m.rows(&[]);
    for (f, row) in features.iter().zip(&jsonl) {
        assert_eq!(f["type"], "Feature");
        let g = &f["geometry"];
        assert_eq!(g["type"], "Point");
        let c = g["coordinates"].as_array().unwrap();
        assert_eq!(c.len(), 2, "a position is [lon, lat]");
        let (lon, lat) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
        assert!((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat), "[{lon}, {lat}]");
        assert_eq!((lon, lat), (row["lon"].as_f64().unwrap(), row["lat"].as_f64().unwrap()), "lon first");
        assert_eq!(&f["properties"], row, "properties are the JSON Lines object");
        assert_eq!(f["id"], row["id"]);
        if let (Some(elon), Some(elat)) = (row["est_lon"].as_f64(), row["est_lat"].as_f64()) {
            assert!((-180.0..=180.0).contains(&elon) && (-90.0..=90.0).contains(&elat));
        }
    }
    let east = features.iter().map(|f| &f["properties"]).find(|p| p["lon"] == 179.99).unwrap();
    assert!(east["est_lon"].as_f64().unwrap() < -179.9, "wrapped past the antimeridian: {east}");
}

#[test]
fn an_exported_bundle_verifies_offline_and_a_flipped_byte_names_its_report() {
    let mut m = Mission::new();
    let (mut a, mut b) = (Device::fixed(43), Device::fixed(44));
    m.enrol(&a, "laptop-a");
    m.enrol(&b, "laptop-b");
    let reports = vec![report(&mut a, |_| {}), report(&mut b, |_| {}), report(&mut a, |_| {})];
    m.import(&reports);
    let (bundle, devices) = (m.file("evidence.truceb"), m.file("evidence.devices.jsonl"));
    let err = m.cli(&[
        "export",
        "--format",
        "bundle",
        "--out",
        &bundle.to_string_lossy(),
        "--devices-out",
        &devices.to_string_lossy(),
    ]);
    let said = String::from_utf8_lossy(&err.stderr).to_string();
    assert!(err.status.success() && said.contains("exported 3 report(s)"), "{said}");

    // No data dir: verify runs anywhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let verify = |file: &Path, extra: &[&str]| {
        let mut args = vec!["verify", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        cli(elsewhere.path(), &args)
    };
    let out = ok(verify(&bundle, &["--devices", devices.to_str().unwrap()]));
    assert!(out.contains("3 report(s): 3 verified, 0 failed"), "{out}");
    assert!(out.contains("laptop-a") && out.contains("laptop-b"), "{out}");

    // The bundle holds exactly the signed bytes that were imported.
    let read: Vec<SignedReport> = truce_shared::bundle::BundleReader::new(std::fs::File::open(&bundle).unwrap())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(read, reports);

    // Every report is proven in the log the server signed.
    assert!(out.contains("log: 3 proven in the log, 0 not proven"), "{out}");

    // Flip one byte inside the second report's body (a version-2 bundle:
    // the checkpoint, then report, entry and proof items; a report item
    // starts with its kind, 0).
    let bytes = std::fs::read(&bundle).unwrap();
    assert_eq!(&bytes[..8], b"TRUCEB02");
    let mut reports_at = Vec::new();
    let mut at = 8;
    while at < bytes.len() {
        let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if bytes[at + 4] == 0 {
            reports_at.push(at);
        }
        at += 4 + len;
    }
    let second = reports_at[1];
    let mut bad = bytes.clone();
    bad[second + 4 + 40] ^= 0x04;
    let tampered = m.file("tampered.truceb");
    std::fs::write(&tampered, &bad).unwrap();
    let out = verify(&tampered, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("FAIL  #2      at byte {second}")), "{text}");
    assert!(text.contains("3 report(s): 2 verified, 1 failed"), "{text}");
    assert!(text.contains("2 proven in the log, 1 not proven"), "{text}");

    // A device missing from the list fails as unknown.
    let only_a = m.file("only-a.jsonl");
    std::fs::write(&only_a, format!("{{\"device\":\"{}\",\"name\":\"laptop-a\"}}\n", a.hex())).unwrap();
    let out = verify(&bundle, &["--devices", only_a.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("#2") && text.contains("unknown device") && !text.contains("#1 "), "{text}");

    // JSON: the checkpoint, one line per report, then the totals.
    let out = verify(&tampered, &["--json"]);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["checkpoint"]["ok"], true);
    assert_eq!((lines[2]["index"].as_u64(), lines[2]["ok"].as_bool()), (Some(2), Some(false)));
    assert_eq!((lines[1]["proven"].as_bool(), lines[2]["proven"].as_bool()), (Some(true), Some(false)));
    assert_eq!(lines[4]["totals"]["failed"], 1);
    assert_eq!(lines[4]["totals"]["not_proven"], 1);

    // Not a bundle at all.
    let err = fails(verify(&devices, &[]));
    assert!(err.contains("not a Truce bundle"), "{err}");
}

#[test]
fn filters_select_by_time_device_category_box_and_status() {
    let mut m = Mission::new();
    let (mut a, mut b, mut stranger) = (Device::fixed(45), Device::fixed(46), Device::fixed(47));
    m.enrol(&a, "laptop-a");
    m.enrol(&b, "laptop-b");
    let t0 = 1_795_338_900_000;
    let a1 = report(&mut a, |o| o.category = Category::Drone);
    let a2 = report(&mut a, |o| {
        o.observed_at = t0 + 3_600_000;
        o.position.lon = -0.5;
    });
    let b1 = report(&mut b, |o| {
        o.observed_at = t0 + 7_200_000;
        o.position.lat = 10.0;
    });
    let s1 = report(&mut stranger, |_| {});
    m.import(&[a1.clone(), a2.clone(), b1.clone(), s1.clone()]);
    let ids = |rows: Vec<serde_json::Value>| -> Vec<String> {
        rows.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    let id = |r: &SignedReport| hex::encode(r.id());
    assert_eq!(ids(m.rows(&[])), [id(&a1), id(&a2), id(&b1)], "verified only, by observation time");
    assert_eq!(ids(m.rows(&["--status", "quarantined"])), [id(&s1)]);
    assert_eq!(m.rows(&["--status", "all"]).len(), 4);
    assert_eq!(ids(m.rows(&["--device", &b.hex()])), [id(&b1)]);
    assert_eq!(ids(m.rows(&["--category", "drone"])), [id(&a1)]);
    let at = |ms: i64| truce_shared::time::format_ms(ms);
    assert_eq!(ids(m.rows(&["--since", &at(t0 + 1), "--until", &at(t0 + 3_600_000)])), [id(&a2)]);
    // The plain position is 48.0159 N, 37.8029 E.
    assert_eq!(ids(m.rows(&["--bbox", "37,47,38,49"])), [id(&a1)]);
    assert_eq!(ids(m.rows(&["--bbox", "-1,47,38,49"])), [id(&a1), id(&a2)]);
    assert_eq!(ids(m.rows(&["--bbox", "37,47,-0.6,49"])), [id(&a1)], "west > east crosses the antimeridian");
    assert!(m.rows(&["--min-corroboration", "2"]).is_empty());

    for (args, says) in [
        (vec!["--bbox", "1,2,3"], "west,south,east,north"),
        (vec!["--bbox", "0,50,1,40"], "south ≤ north"),
        (vec!["--category", "shelling-ish"], "not a category"),
        (vec!["--device", "abc"], "not a device key"),
        (vec!["--since", "yesterday-ish"], "--since"),
        (vec!["--format", "xml"], "invalid value"),
        (vec!["--format", "csv", "--devices-out", "x"], "--devices-out goes with --format bundle"),
    ] {
        let mut all = vec!["export"];
        all.extend_from_slice(&args);
        let err = fails(m.cli(&all));
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn an_amended_report_shows_its_latest_version_and_keeps_its_history() {
    let mut m = Mission::new();
    let mut a = Device::fixed(48);
    m.enrol(&a, "laptop-a");
    let first = report(&mut a, |o| o.description = "two impacts".into());
    let second = amendment(&mut a, &first, |o| o.description = "three impacts".into());
    let third = amendment(&mut a, &second, |o| o.description = "three impacts, one airburst".into());
    // Out of order: the correction arrives before what it corrects.
    m.import(&[third.clone(), first.clone()]);
    m.import(std::slice::from_ref(&second));
    let latest = m.rows(&[]);
    assert_eq!(latest.len(), 1, "{latest:?}");
    assert_eq!(latest[0]["description"], "three impacts, one airburst");
    assert_eq!(latest[0]["amends"], hex::encode(second.id()));
    assert!(latest[0]["amended_by"].is_null());
    let all = m.rows(&["--history"]);
    assert_eq!(all.len(), 3);
    let by_id = |r: &SignedReport| all.iter().find(|v| v["id"] == hex::encode(r.id())).unwrap().clone();
    assert_eq!(by_id(&first)["amended_by"], hex::encode(second.id()));
    assert_eq!(by_id(&second)["amended_by"], hex::encode(third.id()));
    // Only the latest version takes part in an incident.
    assert!(by_id(&first)["incident"].is_null() && by_id(&second)["incident"].is_null());
    assert_eq!(by_id(&third)["corroboration"], 1);
}

#[test]
fn a_failed_export_leaves_no_file_and_a_bundle_is_not_printed_to_a_pipe_by_mistake() {
    let m = Mission::new();
    let missing = m.file("no/such/dir/out.csv");
    let err = fails(m.cli(&["export", "--format", "csv", "--out", &missing.to_string_lossy()]));
    assert!(err.contains("cannot create"), "{err}");
    assert!(!missing.exists());
    // Empty store: a header and nothing else; an empty FeatureCollection.
    assert_eq!(m.export(&["--format", "csv"]).lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&m.export(&["--format", "geojson"])).unwrap();
    assert_eq!(v["features"].as_array().unwrap().len(), 0);
}

/// Peak resident memory (VmHWM, kB) of a child, polled until it exits.
fn run_measuring_peak(mut cmd: std::process::Command) -> (std::process::ExitStatus, u64) {
    let mut child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_file) {
            if let Some(kb) = s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)) {
                peak = peak.max(kb.parse().unwrap_or(0));
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            return (st, peak);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// A store of 1,000,000 reports exports in every text format in the memory
/// of a store of 10,000: the rows stream.
#[test]
fn a_million_reports_export_in_bounded_memory() {
    let measure = |rows: i64| -> Vec<(String, u64)> {
        let m = Mission::new();
        let mut d = Device::fixed(49);
        m.enrol(&d, "laptop");
        let r = report(&mut d, |o| o.description = "x".repeat(300));
        // Fill the store directly with copies of one signed body under
        // distinct ids: export reads rows, it does not re-verify them, and
        // signing a million reports would only slow the test down.
        let c = rusqlite::Connection::open(m.data.path().join("truce.sqlite")).unwrap();
        c.execute(
            "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1)
             INSERT INTO reports (id, device, seq, prev, recorded_at, observed_at, category, lat, lon, body,
                                  signature, status, received_at, ev_lat, ev_lon)
             SELECT randomblob(32), ?2, i, zeroblob(32), 0, i, 'shelling', 48.0, 37.8, ?3, ?4, 'verified', 0, 48.0, 37.8
             FROM k",
            rusqlite::params![rows, &d.public()[..], &r.body, &r.signature.0[..]],
        )
        .unwrap();
        drop(c);
        ["jsonl", "csv", "geojson", "bundle"]
            .iter()
            .map(|format| {
                let out = m.file(&format!("out.{format}"));
                let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_truce-server"));
                cmd.arg("--data-dir").arg(m.data.path());
                cmd.args(["export", "--format", format, "--out"]).arg(&out);
                let (status, kb) = run_measuring_peak(cmd);
                assert!(status.success(), "{format} export failed");
                let size = std::fs::metadata(&out).unwrap().len();
                assert!(size > rows as u64 * 300, "{format}: {size} bytes for {rows} rows");
                std::fs::remove_file(&out).unwrap();
                (format.to_string(), kb)
            })
            .collect()
    };
    let small = measure(10_000);
    let large = measure(1_000_000);
    for ((format, s), (_, l)) in small.iter().zip(&large) {
        eprintln!("{format}: peak RSS {s} kB for 10,000 reports, {l} kB for 1,000,000");
        assert!(*s > 0, "could not read VmHWM");
        assert!(*l < s + 16 * 1024, "{format}: exporting 100x the reports took {l} kB against {s} kB");
    }
}

#[test]
fn an_export_never_writes_through_a_planted_symlink_and_is_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mut m = Mission::new();
    let mut d = Device::fixed(43);
    m.enrol(&d, "laptop-43");
    m.import(&[report(&mut d, |o| o.description = "one report".into())]);
    // Someone with write access to the folder plants links at the names a
    // temporary file could be given, pointing at a file of the operator's.
    let victim = m.file("victim.txt");
    std::fs::write(&victim, "do not touch").unwrap();
    for planted in [".reports.csv.partial", ".reports.csv.tmp"] {
        std::os::unix::fs::symlink(&victim, m.file(planted)).unwrap();
    }
    let out = m.file("reports.csv");
    m.export(&["--format", "csv", "--out", &out.to_string_lossy()]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
    assert!(std::fs::read_to_string(&out).unwrap().contains("one report"));
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600, "reports are not for others");
    let left: Vec<_> = std::fs::read_dir(m.file(""))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".partial") && n != ".reports.csv.partial")
        .collect();
    assert!(left.is_empty(), "no temporary file left: {left:?}");
}
