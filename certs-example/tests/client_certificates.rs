//! `client NAME` makes NAME.pem (clientAuth, CN=NAME, signed by the CA) and
//! NAME.key (0600); it checks the name, needs a CA, never overwrites, and
//! can make short-lived or already-expired certificates for tests.

use time::OffsetDateTime;
use truce_certs::{ClientOptions, Error};

use crate::util::*;

#[test]
fn a_client_certificate_is_signed_by_the_ca() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    truce_certs_ok(&["init", "--out", out]);
    let stdout = truce_certs_ok(&["client", "laptop-07", "--out", out]);
    let cert = tmp.path().join("laptop-07.pem");
    let key = tmp.path().join("laptop-07.key");
    assert!(stdout.contains(&serial_of(&cert)), "prints the serial: {stdout}");
    assert_eq!(mode(&key), 0o600);
    load_key(&key);

    openssl_ok(tmp.path(), &["verify", "-CAfile", "ca.pem", "laptop-07.pem"]);
    with_cert(&cert, |c| {
        assert_eq!(c.version(), x509_parser::x509::X509Version::V3);
        assert!(!c.is_ca());
        let eku = c.extended_key_usage().expect("parses").expect("has EKU").value;
        assert!(eku.client_auth && !eku.server_auth);
        let cn: Vec<_> = c.subject().iter_common_name().map(|cn| cn.as_str().ok()).collect();
        assert_eq!(cn, vec![Some("laptop-07")]);
        let lifetime = c.validity().not_after.to_datetime() - c.validity().not_before.to_datetime();
        assert_eq!(lifetime.whole_hours(), 730 * 24 + 1, "2 years from an hour ago");
    });
}

#[test]
fn a_client_is_never_overwritten() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    truce_certs_ok(&["init", "--out", out]);
    truce_certs_ok(&["client", "laptop-07", "--out", out]);
    let key = read(&tmp.path().join("laptop-07.key"));
    let err = truce_certs_fails(&["client", "laptop-07", "--out", out]);
    assert!(err.contains("laptop-07.key already exists"), "{err}");
    assert_eq!(read(&tmp.path().join("laptop-07.key")), key);

    // With the key handed over and deleted, the certificate still holds the
    // name: it is what `revoke laptop-07` must find.
    std::fs::remove_file(tmp.path().join("laptop-07.key")).expect("remove");
    let err = truce_certs_fails(&["client", "laptop-07", "--out", out]);
    assert!(err.contains("laptop-07.pem already exists"), "{err}");
}

#[test]
fn client_names_are_checked() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    truce_certs_ok(&["init", "--out", out]);
    for bad in ["../evil", ".hidden", "a b", &"x".repeat(65)] {
        let err = truce_certs_fails(&["client", bad, "--out", out]);
        assert!(err.contains("invalid client name"), "{bad}: {err}");
    }
    let err = truce_certs_fails(&["client", "ca", "--out", out]);
    assert!(err.contains("reserved"), "{err}");
    truce_certs_ok(&["client", &"x".repeat(64), "--out", out]);
    truce_certs_ok(&["client", "Team_North.2", "--out", out]);
}

#[test]
fn a_client_needs_a_ca() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    let err = truce_certs_fails(&["client", "laptop-07", "--out", out]);
    assert!(err.contains("no CA in") && err.contains("truce-certs init"), "{err}");
    assert!(!tmp.path().join("laptop-07.key").exists());
}

#[test]
fn days_sets_how_long_a_client_is_valid() {
    let tmp = tempdir();
    truce_certs::init(tmp.path(), &[]).expect("init");
    let made = truce_certs::client(tmp.path(), "short", ClientOptions::days(1)).expect("client");
    let now = OffsetDateTime::now_utc();
    with_cert(&made.cert, |c| {
        let left = c.validity().not_after.to_datetime() - now;
        assert!(left.whole_hours() >= 23 && left.whole_hours() <= 24, "{left}");
    });
    assert!(matches!(truce_certs::client(tmp.path(), "never", ClientOptions::days(0)), Err(Error::InvalidDays { .. })));
    let err = truce_certs_fails(&[
        "client",
        "too-long",
        "--out",
        tmp.path().to_str().expect("utf-8 path"),
        "--days",
        "40000",
    ]);
    assert!(err.contains("invalid validity"), "{err}");
}

#[test]
fn expired_makes_a_certificate_that_openssl_refuses_as_expired() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    truce_certs_ok(&["init", "--out", out]);
    truce_certs_ok(&["client", "old", "--out", out, "--expired"]);
    let said = openssl_fails(tmp.path(), &["verify", "-CAfile", "ca.pem", "old.pem"]);
    assert!(said.contains("certificate has expired"), "{said}");
    with_cert(&tmp.path().join("old.pem"), |c| {
        assert!(c.validity().not_after.to_datetime() < OffsetDateTime::now_utc());
    });
}

#[test]
fn help_explains_expired() {
    let help = truce_certs_ok(&["client", "--help"]);
    assert!(help.contains("for testing refusal of expired certificates"), "{help}");
    assert!(help.contains("--days"), "{help}");
    let top = truce_certs_ok(&["--help"]);
    for command in ["init", "client", "revoke"] {
        assert!(top.contains(command), "{top}");
    }
}
