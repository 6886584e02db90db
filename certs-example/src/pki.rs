//! What a mission does with its PKI: make it, add a laptop, revoke a
//! laptop, reissue the CRL before its nextUpdate.
//!
//! Each operation checks everything it can (names, days, existing files,
//! the CA) before it writes anything, so a refused command leaves the
//! directory as it was. None overwrites a key or a certificate; only
//! `crl.pem` is ever replaced, atomically.

use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use crate::ca::{parse_cert_der, parse_pem, Ca, CLOCK_SKEW};
use crate::crl::{self, CrlState, RevokedEntry};
use crate::error::Error;
use crate::files;
use crate::layout::{check_client_name, Layout, ServerName};

/// The names the server certificate is valid for when none are given.
pub const DEFAULT_SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// How many days a client certificate is valid unless told otherwise.
pub const DEFAULT_CLIENT_DAYS: u32 = 730;

/// How many days until a CRL's nextUpdate unless told otherwise: the
/// server refuses a CRL past it, so the mission reissues it
/// (`truce-certs crl`) at least this often.
pub const DEFAULT_CRL_DAYS: u32 = 30;

/// How long a CRL is to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlValidity {
    /// nextUpdate this many days from now (at least 1, and not past the
    /// CA's own expiry).
    Days(u32),
    /// thisUpdate two days ago, nextUpdate yesterday: for testing that a
    /// stale CRL is refused.
    Stale,
}

impl Default for CrlValidity {
    /// [`DEFAULT_CRL_DAYS`] days.
    fn default() -> Self {
        CrlValidity::Days(DEFAULT_CRL_DAYS)
    }
}

/// A certificate to put on the CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revokee {
    /// By serial number, in hex (`4A0B…`, colons allowed).
    Serial(String),
    /// By its certificate file (PEM), which the CA must have issued.
    CertFile(PathBuf),
}

/// Options for [`crl`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrlOptions {
    /// How long the new CRL is to be trusted.
    pub validity: CrlValidity,
    /// Certificates to add to it (those already on it stay).
    pub revoke: Vec<Revokee>,
}

/// What [`crl`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reissued {
    /// The CRL, `crl.pem`.
    pub crl: PathBuf,
    /// Its CRL number now.
    pub crl_number: u64,
    /// The serials added, upper-case hex (not those already on it).
    pub added: Vec<String>,
    /// How many certificates it revokes in all.
    pub revoked: usize,
    /// Its nextUpdate.
    pub next_update: OffsetDateTime,
}

/// The files [`init`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFiles {
    /// `ca.pem`: give it to the server (`--ca`) and to every agent.
    pub ca_cert: PathBuf,
    /// `ca.key` (0600): signs everything; keep it offline when you can.
    pub ca_key: PathBuf,
    /// `server.pem`: the server's `--cert`.
    pub server_cert: PathBuf,
    /// `server.key` (0600): the server's `--key`.
    pub server_key: PathBuf,
    /// `crl.pem`: the server's `--crl`; empty until the first revocation.
    pub crl: PathBuf,
}

/// How long a client certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientValidity {
    /// From an hour ago until this many days from now (at least 1, and
    /// not past the CA's own expiry).
    Days(u32),
    /// Already expired (valid from two days ago until yesterday): for
    /// testing that expired certificates are refused.
    Expired,
}

/// Options for [`client`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientOptions {
    /// How long the certificate is valid.
    pub validity: ClientValidity,
}

impl Default for ClientOptions {
    /// Valid for [`DEFAULT_CLIENT_DAYS`] days.
    fn default() -> Self {
        ClientOptions::days(DEFAULT_CLIENT_DAYS)
    }
}

impl ClientOptions {
    /// Valid for `days` days from now.
    pub fn days(days: u32) -> Self {
        ClientOptions { validity: ClientValidity::Days(days) }
    }

    /// Already expired, for testing refusal of expired certificates.
    pub fn expired() -> Self {
        ClientOptions { validity: ClientValidity::Expired }
    }
}

/// The files [`client`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFiles {
    /// `NAME.pem`: the agent's `--cert`.
    pub cert: PathBuf,
    /// `NAME.key` (0600): the agent's `--key`.
    pub key: PathBuf,
    /// The certificate's serial number in upper-case hex, as
    /// `openssl x509 -noout -serial` prints it.
    pub serial: String,
}

/// What [`revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked certificate's serial number in upper-case hex.
    pub serial: String,
    /// The CRL, `crl.pem`.
    pub crl: PathBuf,
    /// The CRL number of `crl.pem` now.
    pub crl_number: u64,
    /// True if the certificate was already on the CRL; `crl.pem` was then
    /// left unchanged.
    pub already_revoked: bool,
}

/// Makes a new PKI in `out` (created, mode 0700, if missing): the CA, the
/// server certificate for `server_names` (IP literals become IP SANs, the
/// rest DNS SANs; [`DEFAULT_SERVER_NAMES`] if empty) and an empty CRL.
///
/// Refuses, before writing anything, if any of the files is already there.
pub fn init(out: &Path, server_names: &[String]) -> Result<InitFiles, Error> {
    let names = server_names_or_default(server_names)?;
    let layout = Layout::new(out);
    let made = InitFiles {
        ca_cert: layout.ca_cert(),
        ca_key: layout.ca_key(),
        server_cert: layout.server_cert(),
        server_key: layout.server_key(),
        crl: layout.crl(),
    };
    const HINT: &str = "this directory already holds a PKI: choose another --out";
    // ca.key first, so the usual mistake gets the plainest message.
    files::refuse_existing(
        &[
            made.ca_key.clone(),
            made.ca_cert.clone(),
            made.server_key.clone(),
            made.server_cert.clone(),
            made.crl.clone(),
        ],
        HINT,
    )?;
    files::create_private_dir(out)?;

    let now = OffsetDateTime::now_utc();
    let ca = Ca::generate(now)?;
    let server = ca.issue_server(&names, now)?;
    let (this_update, next_update) = crl_window(&ca, now, CrlValidity::default())?;
    let empty_crl = crl::sign(&ca, &CrlState { number: 1, revoked: Vec::new() }, this_update, next_update)?;

    files::create_secret(&made.ca_key, &ca.key_pem(), HINT)?;
    files::create_public(&made.ca_cert, ca.cert_pem(), HINT)?;
    files::create_secret(&made.server_key, &server.key_pem, HINT)?;
    files::create_public(&made.server_cert, &server.cert_pem, HINT)?;
    files::create_public(&made.crl, &empty_crl, HINT)?;
    Ok(made)
}

/// Makes `out/NAME.pem` and `out/NAME.key` for client `name`, signed by the
/// CA in `out`: EKU clientAuth, CN = `name`.
///
/// `name` is 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a letter or
/// digit. Refuses if `NAME.key` or `NAME.pem` exists: a name stands for one
/// certificate, the one `revoke NAME` finds.
pub fn client(out: &Path, name: &str, opts: ClientOptions) -> Result<ClientFiles, Error> {
    check_client_name(name)?;
    let layout = Layout::new(out);
    let now = OffsetDateTime::now_utc();
    let ca = Ca::load(&layout, now)?;
    let made_key = layout.client_key(name);
    let made_cert = layout.client_cert(name);
    const HINT: &str = "a client of that name exists: choose another name";
    files::refuse_existing(&[made_key.clone(), made_cert.clone()], HINT)?;

    let (not_before, not_after) = match opts.validity {
        ClientValidity::Expired => (now - Duration::days(2), now - Duration::days(1)),
        ClientValidity::Days(days) => {
            let not_after = now + Duration::days(i64::from(days));
            if days == 0 || not_after > ca.not_after() {
                return Err(Error::InvalidDays { days, max: (ca.not_after() - now).whole_days() });
            }
            (now - CLOCK_SKEW, not_after)
        }
    };
    let issued = ca.issue_client(name, not_before, not_after)?;

    files::create_secret(&made_key, &issued.key_pem, HINT)?;
    files::create_public(&made_cert, &issued.cert_pem, HINT)?;
    Ok(ClientFiles { cert: made_cert, key: made_key, serial: hex_upper(&issued.serial) })
}

/// Adds the serial of `out/NAME.pem` to `out/crl.pem`: the CRL keeps every
/// earlier entry, gets the next CRL number and is re-signed by the CA.
///
/// Revoking a certificate already on the CRL changes nothing and says so.
/// Not safe to run twice at once on one directory (the later write wins).
pub fn revoke(out: &Path, name: &str) -> Result<Revocation, Error> {
    check_client_name(name)?;
    let layout = Layout::new(out);
    let now = OffsetDateTime::now_utc();
    let ca = Ca::load(&layout, now)?;

    let cert_path = layout.client_cert(name);
    if !files::exists(&cert_path) {
        return Err(Error::NoClient { name: name.to_owned(), dir: out.to_owned() });
    }
    let text = files::read_text(&cert_path)?;
    let pem = parse_pem(&text, &cert_path, "client certificate")?;
    let cert = parse_cert_der(&pem.contents, &cert_path, "client certificate")?;
    if !ca.issued(&cert) {
        return Err(Error::bad_file(&cert_path, "client certificate", "it was not issued by the CA in this directory"));
    }
    let serial = crl::strip_leading_zeros(&cert.serial.to_bytes_be());

    let crl_path = layout.crl();
    let mut state = crl::read(&crl_path, &ca)?;
    if state.contains(&serial) {
        return Ok(Revocation {
            serial: hex_upper(&serial),
            crl: crl_path,
            crl_number: state.number,
            already_revoked: true,
        });
    }
    state.number =
        state.number.checked_add(1).ok_or_else(|| Error::bad_file(&crl_path, "CRL", "its CRL number is too large"))?;
    state.revoked.push(RevokedEntry { serial: serial.clone(), revoked_at: now, reason: None });
    let (this_update, next_update) = crl_window(&ca, now, CrlValidity::default())?;
    files::replace_public(&crl_path, &crl::sign(&ca, &state, this_update, next_update)?)?;
    Ok(Revocation { serial: hex_upper(&serial), crl: crl_path, crl_number: state.number, already_revoked: false })
}

/// Reissues `out/crl.pem`: every certificate on it stays, those in
/// `opts.revoke` are added, the CRL number goes up by one and the
/// nextUpdate is set anew. Run it before the nextUpdate of the CRL in
/// force: the server refuses a stale CRL. Checks every certificate and
/// serial before writing anything.
pub fn crl(out: &Path, opts: &CrlOptions) -> Result<Reissued, Error> {
    let layout = Layout::new(out);
    let now = OffsetDateTime::now_utc();
    let ca = Ca::load(&layout, now)?;
    let (this_update, next_update) = crl_window(&ca, now, opts.validity)?;
    let mut serials = Vec::new();
    for who in &opts.revoke {
        serials.push(match who {
            Revokee::Serial(hex) => parse_serial(hex)?,
            Revokee::CertFile(path) => {
                if !files::exists(path) {
                    return Err(Error::io(
                        "read",
                        path,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                    ));
                }
                let text = files::read_text(path)?;
                let pem = parse_pem(&text, path, "client certificate")?;
                let cert = parse_cert_der(&pem.contents, path, "client certificate")?;
                if !ca.issued(&cert) {
                    return Err(Error::bad_file(
                        path,
                        "client certificate",
                        "it was not issued by the CA in this directory",
                    ));
                }
                crl::strip_leading_zeros(&cert.serial.to_bytes_be())
            }
        });
    }
    let crl_path = layout.crl();
    let mut state = crl::read(&crl_path, &ca)?;
    let mut added = Vec::new();
    for serial in serials {
        if !state.contains(&serial) {
            added.push(hex_upper(&serial));
            state.revoked.push(RevokedEntry { serial, revoked_at: now, reason: None });
        }
    }
    state.number =
        state.number.checked_add(1).ok_or_else(|| Error::bad_file(&crl_path, "CRL", "its CRL number is too large"))?;
    files::replace_public(&crl_path, &crl::sign(&ca, &state, this_update, next_update)?)?;
    Ok(Reissued { crl: crl_path, crl_number: state.number, added, revoked: state.revoked.len(), next_update })
}

/// thisUpdate and nextUpdate of a CRL made at `now`.
fn crl_window(ca: &Ca, now: OffsetDateTime, validity: CrlValidity) -> Result<(OffsetDateTime, OffsetDateTime), Error> {
    match validity {
        CrlValidity::Stale => Ok((now - Duration::days(2), now - Duration::days(1))),
        CrlValidity::Days(days) => {
            let next = now + Duration::days(i64::from(days));
            if days == 0 || next > ca.not_after() {
                return Err(Error::InvalidDays { days, max: (ca.not_after() - now).whole_days() });
            }
            Ok((now, next))
        }
    }
}

/// A serial number given in hex (colons and a `0x` allowed), big-endian,
/// minimal.
fn parse_serial(given: &str) -> Result<Vec<u8>, Error> {
    let bad = || Error::InvalidSerial { serial: given.to_owned() };
    let digits: String = given.trim().trim_start_matches("0x").chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || digits.len() > 64 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let padded = if digits.len() % 2 == 1 { format!("0{digits}") } else { digits };
    let bytes: Vec<u8> = (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    Ok(crl::strip_leading_zeros(&bytes))
}

/// Parses the server names, or the defaults when there are none; drops
/// repeats, keeping the first spelling's place.
fn server_names_or_default(given: &[String]) -> Result<Vec<ServerName>, Error> {
    let mut names = Vec::new();
    let given: Vec<&str> =
        if given.is_empty() { DEFAULT_SERVER_NAMES.to_vec() } else { given.iter().map(String::as_str).collect() };
    for name in given {
        let name = ServerName::parse(name)?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Upper-case hex, as openssl prints serial numbers ("00" for zero).
fn hex_upper(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "00".to_owned();
    }
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_read_in_hex() {
        assert_eq!(parse_serial("4A0B").ok(), Some(vec![0x4a, 0x0b]));
        assert_eq!(parse_serial("00:4a:0b").ok(), Some(vec![0x4a, 0x0b]));
        assert_eq!(parse_serial("0x1").ok(), Some(vec![1]));
        for bad in ["", "xyz", "4A 0B", &"1".repeat(65)] {
            assert!(matches!(parse_serial(bad), Err(Error::InvalidSerial { .. })), "{bad:?}");
        }
    }

    #[test]
    fn hex_is_upper_case_like_openssl() {
        assert_eq!(hex_upper(&[0x4a, 0x0b]), "4A0B");
        assert_eq!(hex_upper(&[]), "00");
    }

    #[test]
    fn default_and_repeated_server_names() -> Result<(), Error> {
        assert_eq!(server_names_or_default(&[])?.len(), 2);
        let given = ["a.example".to_owned(), "A.example".to_owned(), "::1".to_owned()];
        assert_eq!(server_names_or_default(&given)?.len(), 2);
        Ok(())
    }
}
