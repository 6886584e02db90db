//! Shared helpers for the tests: run the real `truce-certs` binary, openssl
//! and bash (with `truce-testkit`'s runner, which prints the command line,
//! cwd, status, stdout and stderr on failure), read PEM files the way the
//! server and agent do, and run an in-memory mutual-TLS handshake with
//! rustls configured as Truce configures it (TLS 1.3, ALPN `truce/1`,
//! client certificate required, CRLs checked).
//!
//! openssl missing is a test failure, not a skip: CI machines have it.

use std::fs;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::client::ClientConnection;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{ClientConfig, Connection, RootCertStore, ServerConfig};
use x509_parser::certificate::X509Certificate;
use x509_parser::revocation_list::CertificateRevocationList;

/// `truce-testkit`'s binary runner, included by path: `truce-testkit`
/// depends on `truce-certs`, so a dev-dependency back would make a cycle
/// (see that crate's docs).
#[allow(dead_code)] // `bin` finds the other crates' binaries
#[path = "../../testkit/src/run.rs"]
mod run;
pub use run::{run, Ran};

/// A temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// Runs `truce-certs ARGS`.
pub fn truce_certs(args: &[&str]) -> Ran {
    run(Command::new(env!("CARGO_BIN_EXE_truce-certs")).args(args))
}

/// Runs `truce-certs ARGS`, which must succeed; returns stdout.
pub fn truce_certs_ok(args: &[&str]) -> String {
    truce_certs(args).expect_ok()
}

/// Runs `truce-certs ARGS`, which must fail with one line on stderr;
/// returns that line.
pub fn truce_certs_fails(args: &[&str]) -> String {
    truce_certs(args).expect_one_line_error()
}

/// Runs `openssl ARGS` in `dir`. Panics if openssl cannot be started (it
/// must be installed for these tests).
pub fn openssl(dir: &Path, args: &[&str]) -> Ran {
    run(Command::new("openssl").args(args).current_dir(dir))
}

/// Runs `openssl ARGS` in `dir`, which must succeed; returns stdout.
pub fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    openssl(dir, args).expect_ok()
}

/// Runs `openssl ARGS` in `dir`, which must fail; returns stdout and stderr.
pub fn openssl_fails(dir: &Path, args: &[&str]) -> String {
    let out = openssl(dir, args);
    let said = format!("{}{}", out.stdout(), out.stderr());
    out.expect_fail();
    said
}

/// `openssl verify -CAfile ca.pem [-crl_check -CRLfile crl.pem] CERT` in
/// `dir`: whether it passed, and what openssl said.
pub fn openssl_verify(dir: &Path, cert: &str, crl_check: bool) -> (bool, String) {
    let mut args = vec!["verify", "-CAfile", "ca.pem"];
    if crl_check {
        args.extend(["-crl_check", "-CRLfile", "crl.pem"]);
    }
    args.push(cert);
    let out = openssl(dir, &args);
    (out.ok(), format!("{}{}", out.stdout(), out.stderr()))
}

/// The path of `certs-example/openssl-steps.sh`.
pub fn openssl_steps_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("openssl-steps.sh")
}

/// Runs `bash openssl-steps.sh ARGS`, which must succeed.
pub fn openssl_steps(args: &[&str]) {
    run(Command::new("bash").arg(openssl_steps_script()).args(args)).expect_ok();
}

/// A path's permission bits.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display())).permissions().mode() & 0o777
}

/// A file's bytes.
pub fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The certificates in a PEM file, as rustls-pemfile reads them.
pub fn load_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(read(path).as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: bad PEM: {e}", path.display()));
    assert!(!certs.is_empty(), "{}: no certificate in it", path.display());
    certs
}

/// The private key in a PEM file, which must be PKCS#8.
pub fn load_key(path: &Path) -> PrivateKeyDer<'static> {
    let key = rustls_pemfile::private_key(&mut BufReader::new(read(path).as_slice()))
        .unwrap_or_else(|e| panic!("{}: bad PEM: {e}", path.display()))
        .unwrap_or_else(|| panic!("{}: no private key in it", path.display()));
    assert!(matches!(key, PrivateKeyDer::Pkcs8(_)), "{}: key is not PKCS#8", path.display());
    key
}

/// The CRLs in a PEM file.
pub fn load_crls(path: &Path) -> Vec<CertificateRevocationListDer<'static>> {
    let crls = rustls_pemfile::crls(&mut BufReader::new(read(path).as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: bad PEM: {e}", path.display()));
    assert!(!crls.is_empty(), "{}: no CRL in it", path.display());
    crls
}

/// Parses the one certificate in a PEM file with x509-parser and hands it
/// to `check`.
pub fn with_cert<T>(path: &Path, check: impl FnOnce(&X509Certificate<'_>) -> T) -> T {
    let der = load_certs(path).remove(0);
    let (_, cert) =
        x509_parser::parse_x509_certificate(&der).unwrap_or_else(|e| panic!("{}: not X.509: {e}", path.display()));
    check(&cert)
}

/// Parses the CRL in a PEM file with x509-parser and hands it to `check`.
pub fn with_crl<T>(path: &Path, check: impl FnOnce(&CertificateRevocationList<'_>) -> T) -> T {
    let der = load_crls(path).remove(0);
    let (_, crl) =
        x509_parser::parse_x509_crl(&der).unwrap_or_else(|e| panic!("{}: not an X.509 CRL: {e}", path.display()));
    check(&crl)
}

/// The serial numbers a CRL revokes, as upper-case hex.
pub fn revoked_serials(crl: &Path) -> Vec<String> {
    with_crl(crl, |crl| crl.iter_revoked_certificates().map(|r| hex_upper(&r.serial().to_bytes_be())).collect())
}

/// A certificate's serial number, as upper-case hex.
pub fn serial_of(cert: &Path) -> String {
    with_cert(cert, |c| hex_upper(&c.serial.to_bytes_be()))
}

/// Upper-case hex.
pub fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The files of one side of a handshake.
pub struct Side<'a> {
    /// Certificate PEM.
    pub cert: &'a Path,
    /// Private key PEM.
    pub key: &'a Path,
}

/// Runs a full TLS 1.3 handshake in memory between a server that trusts
/// `ca` and checks `crl`, presenting `server`, and a client that trusts
/// `ca`, presenting `client`, connecting to `server_name`. Returns the
/// first error either side raised.
pub fn handshake(
    ca: &Path,
    crl: &Path,
    server: Side<'_>,
    client: Side<'_>,
    server_name: &str,
) -> Result<(), rustls::Error> {
    let provider = Arc::new(truce_shared::tls::provider());
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca) {
        roots.add(cert).expect("rustls accepts the CA certificate");
    }
    let roots = Arc::new(roots);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(load_crls(crl))
        .build()
        .expect("rustls accepts the CA and the CRL");

    let mut server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 with ring")
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(server.cert), load_key(server.key))
        .expect("rustls accepts the server certificate and key");
    server_config.alpn_protocols = vec![b"truce/1".to_vec()];

    let mut client_config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 with ring")
        .with_root_certificates(roots)
        .with_client_auth_cert(load_certs(client.cert), load_key(client.key))
        .expect("rustls accepts the client certificate and key");
    client_config.alpn_protocols = vec![b"truce/1".to_vec()];

    let name = ServerName::try_from(server_name.to_owned()).expect("a valid server name");
    let mut client = Connection::from(ClientConnection::new(Arc::new(client_config), name)?);
    let mut server = Connection::from(ServerConnection::new(Arc::new(server_config))?);
    for _ in 0..10 {
        transfer(&mut client, &mut server)?;
        transfer(&mut server, &mut client)?;
        if !client.is_handshaking() && !server.is_handshaking() {
            assert_eq!(server.alpn_protocol(), Some(&b"truce/1"[..]));
            return Ok(());
        }
    }
    panic!("the handshake did not finish in 10 round trips");
}

/// Moves every pending TLS record from `from` to `to`, and has `to` process
/// them.
fn transfer(from: &mut Connection, to: &mut Connection) -> Result<(), rustls::Error> {
    let mut records = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut records).expect("write to a Vec");
    }
    let mut rest = records.as_slice();
    while !rest.is_empty() {
        to.read_tls(&mut rest).expect("read from a slice");
        to.process_new_packets()?;
    }
    Ok(())
}

/// Whether `err` is rustls refusing a certificate for the reason named
/// (`"Revoked"`, `"Expired"`, `"UnknownIssuer"`, `"NotValidForName"`…).
pub fn refused_because(err: &rustls::Error, reason: &str) -> bool {
    matches!(err, rustls::Error::InvalidCertificate(_)) && format!("{err:?}").contains(reason)
}
