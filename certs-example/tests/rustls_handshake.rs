//! rustls, configured as Truce's server and agent are (TLS 1.3, client
//! certificate required, CRL checked), completes a handshake with our
//! certificates and refuses a revoked, an expired and a foreign client.

use std::path::Path;

use truce_certs::ClientOptions;

use crate::util::*;

/// The server side of the PKI in `dir`.
fn server(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (dir.join("server.pem"), dir.join("server.key"))
}

/// Handshake of client `name` (files in `client_dir`) with the server of
/// the PKI in `dir`, at `server_name`.
fn connect(dir: &Path, client_dir: &Path, name: &str, server_name: &str) -> Result<(), rustls::Error> {
    let (cert, key) = server(dir);
    let (ccert, ckey) = (client_dir.join(format!("{name}.pem")), client_dir.join(format!("{name}.key")));
    handshake(
        &dir.join("ca.pem"),
        &dir.join("crl.pem"),
        Side { cert: &cert, key: &key },
        Side { cert: &ccert, key: &ckey },
        server_name,
    )
}

#[test]
fn a_client_of_the_mission_connects_by_name_and_by_ip() {
    let tmp = tempdir();
    truce_certs::init(tmp.path(), &[]).expect("init");
    truce_certs::client(tmp.path(), "laptop", ClientOptions::default()).expect("client");
    connect(tmp.path(), tmp.path(), "laptop", "localhost").expect("handshake at localhost");
    connect(tmp.path(), tmp.path(), "laptop", "127.0.0.1").expect("handshake at 127.0.0.1");
    let err = connect(tmp.path(), tmp.path(), "laptop", "elsewhere.example").expect_err("wrong name");
    assert!(refused_because(&err, "NotValidForName"), "{err:?}");
}

#[test]
fn a_revoked_client_is_refused() {
    let tmp = tempdir();
    truce_certs::init(tmp.path(), &[]).expect("init");
    truce_certs::client(tmp.path(), "laptop", ClientOptions::default()).expect("client");
    truce_certs::client(tmp.path(), "other", ClientOptions::default()).expect("client");
    truce_certs::revoke(tmp.path(), "laptop").expect("revoke");
    let err = connect(tmp.path(), tmp.path(), "laptop", "localhost").expect_err("revoked");
    assert!(refused_because(&err, "Revoked"), "{err:?}");
    connect(tmp.path(), tmp.path(), "other", "localhost").expect("the other laptop still connects");
}

#[test]
fn an_expired_client_is_refused() {
    let tmp = tempdir();
    truce_certs::init(tmp.path(), &[]).expect("init");
    truce_certs::client(tmp.path(), "old", ClientOptions::expired()).expect("client");
    let err = connect(tmp.path(), tmp.path(), "old", "localhost").expect_err("expired");
    assert!(refused_because(&err, "Expired"), "{err:?}");
}

#[test]
fn a_client_of_another_ca_is_refused() {
    let (ours, theirs) = (tempdir(), tempdir());
    truce_certs::init(ours.path(), &[]).expect("init ours");
    truce_certs::init(theirs.path(), &[]).expect("init theirs");
    truce_certs::client(theirs.path(), "stranger", ClientOptions::default()).expect("client");
    let err = connect(ours.path(), theirs.path(), "stranger", "localhost").expect_err("foreign");
    assert!(refused_because(&err, "UnknownIssuer"), "{err:?}");
}
