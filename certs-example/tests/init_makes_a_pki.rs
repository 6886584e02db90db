//! `init` makes ca.pem, ca.key, server.pem, server.key and an empty crl.pem;
//! keys are 0600; the certificates verify; a second `init` changes nothing.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;

use crate::util::*;

#[test]
fn init_writes_the_ca_the_server_certificate_and_an_empty_crl() {
    let tmp = tempdir();
    let pki = tmp.path().join("pki");
    let out = pki.to_str().expect("utf-8 path");
    let stdout = truce_certs_ok(&["init", "--out", out]);
    assert!(stdout.contains("ca.pem"), "init should say what it made: {stdout}");

    for file in ["ca.pem", "ca.key", "server.pem", "server.key", "crl.pem"] {
        assert!(pki.join(file).is_file(), "{file} missing");
    }
    assert_eq!(mode(&pki.join("ca.key")), 0o600);
    assert_eq!(mode(&pki.join("server.key")), 0o600);
    assert_eq!(mode(&pki), 0o700, "the directory holding the CA key is private");
    load_key(&pki.join("ca.key"));
    load_key(&pki.join("server.key"));

    openssl_ok(&pki, &["verify", "-CAfile", "ca.pem", "server.pem"]);
    let (ok, said) = openssl_verify(&pki, "server.pem", true);
    assert!(ok, "the server certificate passes a CRL check: {said}");
    let crl_text = openssl_ok(&pki, &["crl", "-in", "crl.pem", "-noout", "-text"]);
    assert!(crl_text.contains("No Revoked Certificates"), "{crl_text}");
    assert!(revoked_serials(&pki.join("crl.pem")).is_empty());
}

#[test]
fn the_ca_can_sign_certificates_and_crls_only() {
    let tmp = tempdir();
    truce_certs::init(tmp.path(), &[]).expect("init");
    with_cert(&tmp.path().join("ca.pem"), |ca| {
        assert_eq!(ca.version(), x509_parser::x509::X509Version::V3);
        assert!(ca.is_ca());
        let usage = ca.key_usage().expect("parses").expect("has keyUsage").value;
        assert!(usage.key_cert_sign() && usage.crl_sign());
        assert!(!usage.digital_signature());
        let days = (ca.validity().not_after.to_datetime() - ca.validity().not_before.to_datetime()).whole_days();
        assert_eq!(days, 3650, "CA lives 10 years (plus the hour of clock skew)");
        let serial = ca.raw_serial();
        assert!(serial.len() <= 20 && serial[0] & 0x80 == 0, "serial positive, ≤ 20 bytes");
    });
}

#[test]
fn the_server_certificate_names_localhost_and_127_0_0_1_by_default() {
    let tmp = tempdir();
    let made = truce_certs::init(tmp.path(), &[]).expect("init");
    with_cert(&made.server_cert, |cert| {
        assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);
        assert!(!cert.is_ca());
        let eku = cert.extended_key_usage().expect("parses").expect("has EKU").value;
        assert!(eku.server_auth && !eku.client_auth);
        let sans = cert.subject_alternative_name().expect("parses").expect("has SANs").value;
        assert_eq!(
            sans.general_names,
            vec![GeneralName::DNSName("localhost"), GeneralName::IPAddress(&[127, 0, 0, 1])]
        );
        let lifetime = cert.validity().not_after.to_datetime() - cert.validity().not_before.to_datetime();
        assert_eq!(lifetime.whole_hours(), 730 * 24 + 1, "2 years from an hour ago");
    });
    // The serials are random: CA and server differ.
    assert_ne!(serial_of(&made.ca_cert), serial_of(&made.server_cert));
}

#[test]
fn given_server_names_become_dns_and_ip_sans() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    truce_certs_ok(&["init", "--out", out, "--server-name", "truce.example.org", "--server-name", "10.0.0.5,::1"]);
    with_cert(&tmp.path().join("server.pem"), |cert| {
        let sans = cert.subject_alternative_name().expect("parses").expect("has SANs").value;
        let v6: IpAddr = "::1".parse().expect("an IP");
        let IpAddr::V6(v6) = v6 else { unreachable!() };
        assert_eq!(
            sans.general_names,
            vec![
                GeneralName::DNSName("truce.example.org"),
                GeneralName::IPAddress(&[10, 0, 0, 5]),
                GeneralName::IPAddress(&v6.octets()),
            ]
        );
    });
}

#[test]
fn a_second_init_refuses_and_changes_nothing() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    truce_certs_ok(&["init", "--out", out]);
    let before: Vec<_> =
        ["ca.key", "ca.pem", "server.key", "crl.pem"].iter().map(|f| read(&tmp.path().join(f))).collect();
    let err = truce_certs_fails(&["init", "--out", out]);
    assert!(err.contains("ca.key already exists"), "{err}");
    let after: Vec<_> =
        ["ca.key", "ca.pem", "server.key", "crl.pem"].iter().map(|f| read(&tmp.path().join(f))).collect();
    assert_eq!(before, after);
    assert!(matches!(truce_certs::init(tmp.path(), &[]), Err(truce_certs::Error::AlreadyExists { .. })));
}

#[test]
fn a_bad_server_name_is_refused_before_anything_is_written() {
    let tmp = tempdir();
    let pki = tmp.path().join("pki");
    let out = pki.to_str().expect("utf-8 path");
    let err = truce_certs_fails(&["init", "--out", out, "--server-name", "not a name"]);
    assert!(err.contains("invalid server name"), "{err}");
    assert!(!pki.exists());
}
