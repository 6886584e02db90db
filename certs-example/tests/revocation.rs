//! `revoke NAME` adds NAME's serial to crl.pem, re-signed by the CA with the
//! next CRL number and every earlier entry kept; openssl's CRL check then
//! refuses the certificate, and accepted it before.

use truce_certs::{ClientOptions, Error};

use crate::util::*;

#[test]
fn a_revoked_client_fails_the_crl_check_and_passed_it_before() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    truce_certs_ok(&["init", "--out", out]);
    truce_certs_ok(&["client", "laptop-07", "--out", out]);
    truce_certs_ok(&["client", "laptop-08", "--out", out]);
    let (ok, said) = openssl_verify(tmp.path(), "laptop-07.pem", true);
    assert!(ok, "before revoke: {said}");

    let stdout = truce_certs_ok(&["revoke", "laptop-07", "--out", out]);
    let serial = serial_of(&tmp.path().join("laptop-07.pem"));
    assert!(stdout.contains(&serial), "{stdout}");

    let (ok, said) = openssl_verify(tmp.path(), "laptop-07.pem", true);
    assert!(!ok && said.contains("certificate revoked"), "after revoke: {said}");
    let (ok, said) = openssl_verify(tmp.path(), "laptop-08.pem", true);
    assert!(ok, "another client is untouched: {said}");

    assert_eq!(revoked_serials(&tmp.path().join("crl.pem")), vec![serial.clone()]);
    let text = openssl_ok(tmp.path(), &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(text.contains(&format!("Serial Number: {serial}")), "{text}");
    // The CRL is the CA's: openssl checks its signature against ca.pem.
    openssl_ok(tmp.path(), &["crl", "-in", "crl.pem", "-noout", "-CAfile", "ca.pem"]);
}

#[test]
fn revoking_keeps_earlier_entries_and_counts_up() {
    let tmp = tempdir();
    let dir = tmp.path();
    truce_certs::init(dir, &[]).expect("init");
    let crl_number =
        || with_crl(&dir.join("crl.pem"), |crl| crl.crl_number().map(|n| n.to_string()).unwrap_or_default());
    assert_eq!(crl_number(), "1");
    let a = truce_certs::client(dir, "a", ClientOptions::default()).expect("client a");
    let b = truce_certs::client(dir, "b", ClientOptions::default()).expect("client b");

    let first = truce_certs::revoke(dir, "a").expect("revoke a");
    assert_eq!((first.crl_number, first.already_revoked), (2, false));
    assert_eq!(first.serial, a.serial);
    let second = truce_certs::revoke(dir, "b").expect("revoke b");
    assert_eq!(second.crl_number, 3);
    assert_eq!(crl_number(), "3");
    assert_eq!(revoked_serials(&dir.join("crl.pem")), vec![a.serial.clone(), b.serial.clone()]);

    let before = read(&dir.join("crl.pem"));
    let again = truce_certs::revoke(dir, "a").expect("revoke a again");
    assert!(again.already_revoked);
    assert_eq!(read(&dir.join("crl.pem")), before, "nothing changes");
    let stdout = truce_certs_ok(&["revoke", "a", "--out", dir.to_str().expect("utf-8 path")]);
    assert!(stdout.contains("already revoked"), "{stdout}");
}

#[test]
fn an_expired_client_can_still_be_revoked() {
    let tmp = tempdir();
    truce_certs::init(tmp.path(), &[]).expect("init");
    let old = truce_certs::client(tmp.path(), "old", ClientOptions::expired()).expect("client");
    truce_certs::revoke(tmp.path(), "old").expect("revoke");
    assert_eq!(revoked_serials(&tmp.path().join("crl.pem")), vec![old.serial]);
}

#[test]
fn revoking_an_unknown_client_says_so() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    truce_certs_ok(&["init", "--out", out]);
    let err = truce_certs_fails(&["revoke", "nobody", "--out", out]);
    assert!(err.contains("no certificate for client \"nobody\""), "{err}");
}

#[test]
fn a_certificate_from_another_ca_is_not_revoked_here() {
    let (ours, theirs) = (tempdir(), tempdir());
    truce_certs::init(ours.path(), &[]).expect("init ours");
    truce_certs::init(theirs.path(), &[]).expect("init theirs");
    truce_certs::client(theirs.path(), "stray", ClientOptions::default()).expect("client");
    std::fs::copy(theirs.path().join("stray.pem"), ours.path().join("stray.pem")).expect("copy");
    assert!(matches!(truce_certs::revoke(ours.path(), "stray"), Err(Error::BadFile { .. })));
    assert!(revoked_serials(&ours.path().join("crl.pem")).is_empty());
}

#[test]
fn a_missing_crl_is_never_silently_recreated() {
    let tmp = tempdir();
    truce_certs::init(tmp.path(), &[]).expect("init");
    truce_certs::client(tmp.path(), "a", ClientOptions::default()).expect("client");
    std::fs::remove_file(tmp.path().join("crl.pem")).expect("remove");
    let err = truce_certs::revoke(tmp.path(), "a").expect_err("no CRL");
    assert!(matches!(err, Error::NoCrl { .. }), "{err}");
    assert!(!tmp.path().join("crl.pem").exists());
}

#[test]
fn the_crl_command_reissues_keeping_entries_adding_by_serial_or_file_with_a_short_next_update() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    truce_certs_ok(&["init", "--out", out]);
    let next_update_days = || {
        with_crl(&tmp.path().join("crl.pem"), |crl| {
            let next = crl.next_update().expect("a nextUpdate").timestamp();
            (next - crl.last_update().timestamp()) / 86_400
        })
    };
    assert_eq!(next_update_days(), i64::from(truce_certs::DEFAULT_CRL_DAYS), "init's CRL");
    for name in ["a", "b", "c"] {
        truce_certs_ok(&["client", name, "--out", out]);
    }
    truce_certs_ok(&["revoke", "a", "--out", out]);
    let (a, b, c) = (
        serial_of(&tmp.path().join("a.pem")),
        serial_of(&tmp.path().join("b.pem")),
        serial_of(&tmp.path().join("c.pem")),
    );

    // b by its serial (lower case, as some tools print it), c by its file.
    let stdout = truce_certs_ok(&[
        "crl",
        "--out",
        out,
        "--revoke",
        &b.to_lowercase(),
        "--revoke",
        tmp.path().join("c.pem").to_str().expect("utf-8 path"),
        "--crl-days",
        "7",
    ]);
    assert!(
        stdout.contains(&format!("revoked serial {b}")) && stdout.contains(&format!("revoked serial {c}")),
        "{stdout}"
    );
    assert!(stdout.contains("CRL number 3"), "{stdout}");
    let mut expected = vec![a.clone(), b.clone(), c.clone()];
    expected.sort();
    let mut revoked = revoked_serials(&tmp.path().join("crl.pem"));
    revoked.sort();
    assert_eq!(revoked, expected);
    assert_eq!(next_update_days(), 7);
    openssl_ok(tmp.path(), &["crl", "-in", "crl.pem", "-noout", "-CAfile", "ca.pem"]);

    // Reissued with nothing new: the same entries, the next number.
    let stdout = truce_certs_ok(&["crl", "--out", out]);
    assert!(stdout.contains("CRL number 4") && stdout.contains("3 certificates revoked"), "{stdout}");
    assert_eq!(next_update_days(), i64::from(truce_certs::DEFAULT_CRL_DAYS));

    let err = truce_certs_fails(&["crl", "--out", out, "--revoke", "not-hex"]);
    assert!(err.contains("invalid serial number"), "{err}");
    let err = truce_certs_fails(&["crl", "--out", out, "--crl-days", "0"]);
    assert!(err.contains("invalid validity of 0 days"), "{err}");
}
