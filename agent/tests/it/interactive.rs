//! Interactive `record` through a real pseudo-terminal (rexpect): the
//! binary sees a terminal on stdin, asks each field with its defaults,
//! re-asks after a bad answer, takes an attachment, and prints the id.

use std::process::Command;

use rexpect::process::WaitStatus;
use rexpect::session::spawn_command;
use sha2::{Digest, Sha256};
use truce_shared::{Basis, Category, Qualifier};

use crate::support::{parse_id, TestDir, BIN};

/// `record` on a terminal with no passphrase file: it asks for the
/// passphrase first (no echo), then for each field.
fn spawn(t: &TestDir) -> rexpect::session::PtySession {
    let mut c = Command::new(BIN);
    c.arg("--data-dir").arg(&t.dir).arg("record").env_remove("TRUCE_AGENT_DIR").env_remove("TRUCE_PASSPHRASE_FILE");
    let mut p = spawn_command(c, Some(20_000)).unwrap();
    p.exp_string("passphrase: ").unwrap();
    p.send_line(crate::support::PASSPHRASE).unwrap();
    p
}

#[test]
fn interactive_entry_works_through_a_pty() {
    let t = TestDir::initialised();
    let photo = t.path("crater.jpg");
    std::fs::write(&photo, b"original pixels").unwrap();

    let mut p = spawn(&t);
    p.exp_string("Category (name or number): ").unwrap();
    p.send_line("artillery").unwrap();
    p.exp_string("unknown value \"artillery\"").unwrap();
    p.exp_string("Category (name or number): ").unwrap();
    p.send_line("shelling").unwrap();
    p.exp_string("When (now, -15m, 2026-11-22T09:15:00Z) [now]: ").unwrap();
    p.send_line("-15m").unwrap();
    p.exp_string("Until (blank if it was a moment): ").unwrap();
    p.send_line("").unwrap();
    p.exp_string("Latitude (decimal degrees): ").unwrap();
    p.send_line("91").unwrap();
    p.exp_string("latitude 91 is out of range").unwrap();
    p.exp_string("Latitude (decimal degrees): ").unwrap();
    p.send_line("48.5").unwrap();
    p.exp_string("Longitude (decimal degrees): ").unwrap();
    p.send_line("37.9").unwrap();
    p.exp_string("Accuracy in metres").unwrap();
    p.send_line("25").unwrap();
    p.exp_string("Bearing").unwrap();
    p.send_line("NNW").unwrap();
    p.exp_string("Distance").unwrap();
    p.send_line("5-7km").unwrap();
    p.exp_string("Effect").unwrap();
    p.send_line("outgoing").unwrap();
    p.exp_string("Assessed weapon").unwrap();
    p.send_line("152mm artillery").unwrap();
    p.exp_string("Count").unwrap();
    p.send_line("about 30").unwrap();
    p.exp_string("Basis (seen, heard, reported) [seen]: ").unwrap();
    p.send_line("heard").unwrap();
    p.exp_string("Description (one line): ").unwrap();
    p.send_line("salvos towards the north").unwrap();
    p.exp_string("Attach a file").unwrap();
    p.send_line(photo.to_str().unwrap()).unwrap();
    p.exp_string("Attach a file").unwrap();
    p.send_line("").unwrap();
    p.exp_string("Sign and record it? (y/n) [y]: ").unwrap();
    p.send_line("").unwrap();
    let (_, id) = p.exp_regex("[0-9a-f]{64}").unwrap();
    p.exp_eof().unwrap();
    assert!(matches!(p.process().wait().unwrap(), WaitStatus::Exited(_, 0)));

    // The original changes after recording; the signed hash is of the copy kept.
    std::fs::write(&photo, b"edited later").unwrap();
    let agent = t.open();
    let r = agent.queue().find(&id).unwrap();
    assert_eq!(r.id, parse_id(&id));
    let o = r.envelope().unwrap().expect("a body").observation;
    assert_eq!(o.category, Category::Shelling);
    assert_eq!((o.position.lat, o.position.lon, o.position.accuracy_m), (48.5, 37.9, Some(25)));
    assert_eq!(o.bearing_deg, Some(338));
    assert_eq!(o.distance_m, Some((5000, 7000)));
    assert_eq!(o.count.map(|c| (c.n, c.qualifier)), Some((30, Qualifier::About)));
    assert_eq!(o.basis, Basis::Heard);
    assert_eq!(o.weapon.as_deref(), Some("152mm artillery"));
    let now = truce_shared::time::now_ms();
    assert!((now - 16 * 60_000..now - 14 * 60_000).contains(&o.observed_at), "-15m");
    assert_eq!(o.attachments.len(), 1);
    let a = &o.attachments[0];
    assert_eq!((a.name.as_str(), a.media_type.as_str(), a.size), ("crater.jpg", "image/jpeg", 15));
    let want: [u8; 32] = Sha256::digest(b"original pixels").into();
    assert_eq!(a.sha256, want);
    let mut copy = Vec::new();
    agent.read_attachment(&a.sha256, &mut copy).unwrap();
    assert_eq!(copy, b"original pixels");
}

#[test]
fn the_second_interactive_record_defaults_to_the_last_position() {
    let t = TestDir::initialised();
    t.ok(&["record", "--category", "drone", "--lat", "12.25", "--lon", "-3.5", "--accuracy", "8"]);
    let mut p = spawn(&t);
    p.exp_string("Category (name or number): ").unwrap();
    p.send_line("14").unwrap(); // nothing-observed, by number
    p.exp_string("[now]: ").unwrap();
    p.send_line("-6h").unwrap();
    p.exp_string("Watched until").unwrap();
    p.send_line("now").unwrap();
    p.exp_string("Latitude (decimal degrees) [12.25]: ").unwrap();
    p.send_line("").unwrap();
    p.exp_string("Longitude (decimal degrees) [-3.5]: ").unwrap();
    p.send_line("").unwrap();
    p.exp_string("[8]: ").unwrap();
    p.send_line("").unwrap();
    p.exp_string("[seen]: ").unwrap();
    p.send_line("").unwrap();
    p.exp_string("Description (one line): ").unwrap();
    p.send_line("positioned 6 km NW of the city, observed nothing").unwrap();
    p.exp_string("Attach a file").unwrap();
    p.send_line("").unwrap();
    p.exp_string("(y/n) [y]: ").unwrap();
    p.send_line("y").unwrap();
    let (_, id) = p.exp_regex("[0-9a-f]{64}").unwrap();
    p.exp_eof().unwrap();
    let o = t.open().queue().find(&id).unwrap().envelope().unwrap().expect("a body").observation;
    assert_eq!(o.category, Category::NothingObserved);
    assert_eq!((o.position.lat, o.position.lon, o.position.accuracy_m), (12.25, -3.5, Some(8)));
    let until = o.observed_until.unwrap();
    assert!(until - o.observed_at >= 6 * 3_600_000 - 5_000);
}

#[test]
fn ctrl_d_cancels_and_records_nothing() {
    let t = TestDir::initialised();
    let mut p = spawn(&t);
    p.exp_string("Category (name or number): ").unwrap();
    p.send_line("drone").unwrap();
    p.exp_string("[now]: ").unwrap();
    p.send_control('d').unwrap();
    p.exp_string("cancelled: nothing was recorded").unwrap();
    p.exp_eof().unwrap();
    assert!(matches!(p.process().wait().unwrap(), WaitStatus::Exited(_, 1)));
    assert!(t.open().queue().head().unwrap().is_none());
}

#[test]
fn no_flags_and_no_terminal_is_a_clear_error() {
    let t = TestDir::initialised();
    let err = t.fails(&["record"]);
    assert!(err.contains("no terminal to ask on") && err.contains("--category"), "{err}");
}
