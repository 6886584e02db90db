//! `openssl-steps.sh`, the steps the README gives a mission with its own CA,
//! makes a PKI that Truce uses exactly like truce-certs' own: PKCS#8 keys
//! 0600, v3 certificates with the right SANs and EKUs, a v2 CRL in PEM; a
//! revoked client is refused by openssl and by rustls, the others connect.

use crate::util::*;

#[test]
fn the_openssl_steps_make_a_pki_that_truce_accepts() {
    let tmp = tempdir();
    let dir = tmp.path().join("mission-pki");
    let out = dir.to_str().expect("utf-8 path");
    openssl_steps(&[out, "init"]);
    openssl_steps(&[out, "client", "laptop-01"]);
    openssl_steps(&[out, "client", "laptop-02"]);

    for key in ["ca.key", "server.key", "laptop-01.key", "laptop-02.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
        load_key(&dir.join(key));
    }
    with_cert(&dir.join("ca.pem"), |ca| {
        assert_eq!(ca.version(), x509_parser::x509::X509Version::V3);
        assert!(ca.is_ca());
        let usage = ca.key_usage().expect("parses").expect("has keyUsage").value;
        assert!(usage.key_cert_sign() && usage.crl_sign());
    });
    with_cert(&dir.join("server.pem"), |cert| {
        assert_eq!(cert.version(), x509_parser::x509::X509Version::V3);
        let eku = cert.extended_key_usage().expect("parses").expect("has EKU").value;
        assert!(eku.server_auth);
        let sans = cert.subject_alternative_name().expect("parses").expect("has SANs").value;
        assert_eq!(sans.general_names.len(), 2, "localhost and 127.0.0.1");
    });
    with_cert(&dir.join("laptop-01.pem"), |cert| {
        let eku = cert.extended_key_usage().expect("parses").expect("has EKU").value;
        assert!(eku.client_auth && !eku.server_auth);
    });
    with_crl(&dir.join("crl.pem"), |crl| {
        assert_eq!(crl.version(), Some(x509_parser::x509::X509Version::V2));
        assert_eq!(crl.iter_revoked_certificates().count(), 0);
    });
    for cert in ["server.pem", "laptop-01.pem", "laptop-02.pem"] {
        let (ok, said) = openssl_verify(&dir, cert, true);
        assert!(ok, "{cert}: {said}");
    }
    let connect = |name: &str| {
        handshake(
            &dir.join("ca.pem"),
            &dir.join("crl.pem"),
            Side { cert: &dir.join("server.pem"), key: &dir.join("server.key") },
            Side { cert: &dir.join(format!("{name}.pem")), key: &dir.join(format!("{name}.key")) },
            "localhost",
        )
    };
    connect("laptop-02").expect("laptop-02 connects before it is revoked");

    openssl_steps(&[out, "revoke", "laptop-02"]);
    let revoked = serial_of(&dir.join("laptop-02.pem"));
    assert_eq!(revoked_serials(&dir.join("crl.pem")), vec![revoked]);
    let (ok, said) = openssl_verify(&dir, "laptop-02.pem", true);
    assert!(!ok && said.contains("certificate revoked"), "{said}");
    let (ok, said) = openssl_verify(&dir, "laptop-01.pem", true);
    assert!(ok, "{said}");

    connect("laptop-01").expect("laptop-01 still connects");
    let err = connect("laptop-02").expect_err("laptop-02 is revoked");
    assert!(refused_because(&err, "Revoked"), "{err:?}");
}

#[test]
fn the_openssl_steps_never_overwrite_a_ca() {
    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    openssl_steps(&[out, "init"]);
    let key = read(&tmp.path().join("ca.key"));
    let script = openssl_steps_script();
    let again = run(std::process::Command::new("bash").arg(&script).args([out, "init"]));
    assert!(!again.ok(), "{again}");
    assert!(again.stderr().contains("already exists"), "{again}");
    assert_eq!(read(&tmp.path().join("ca.key")), key);
}

#[test]
fn truce_certs_and_the_openssl_steps_agree_on_the_file_names() {
    let (ours, theirs) = (tempdir(), tempdir());
    truce_certs::init(ours.path(), &[]).expect("init");
    truce_certs::client(ours.path(), "laptop-01", truce_certs::ClientOptions::default()).expect("client");
    let out = theirs.path().to_str().expect("utf-8 path");
    openssl_steps(&[out, "init"]);
    openssl_steps(&[out, "client", "laptop-01"]);
    for file in ["ca.pem", "ca.key", "server.pem", "server.key", "crl.pem", "laptop-01.pem", "laptop-01.key"] {
        assert!(ours.path().join(file).is_file() && theirs.path().join(file).is_file(), "{file}");
    }
}

#[test]
fn the_readme_quotes_the_configuration_the_script_writes() {
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let quoted = readme
        .split("```ini\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md has the ca.cnf block");

    let tmp = tempdir();
    let out = tmp.path().to_str().expect("utf-8 path");
    openssl_steps(&[out, "init", "DNS:truce.example.org,IP:203.0.113.10"]);
    let written = std::fs::read_to_string(tmp.path().join("ca.cnf")).expect("read ca.cnf");
    assert_eq!(quoted, written, "README.md's ca.cnf differs from what openssl-steps.sh writes");

    with_cert(&tmp.path().join("server.pem"), |cert| {
        use x509_parser::extensions::GeneralName;
        let sans = cert.subject_alternative_name().expect("parses").expect("has SANs").value;
        assert_eq!(
            sans.general_names,
            vec![GeneralName::DNSName("truce.example.org"), GeneralName::IPAddress(&[203, 0, 113, 10])]
        );
    });
}
