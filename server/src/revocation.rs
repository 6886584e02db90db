//! Revocation that works while the server runs: the CRLs in force, read
//! again on SIGHUP and when a `--crl` file changes, and the live sessions
//! of each client certificate, so a newly revoked laptop is cut off.
//!
//! What a CRL must be to be put in force (at start, or at a reload):
//! - every CRL in the file parses and is signed by a CA of `--ca`;
//! - its nextUpdate is in the future (a CRL without one is refused: its
//!   freshness could not be judged);
//! - its CRL number is not lower than the one in force from that file (an
//!   older CRL put back by mistake, or by someone who wants a laptop let in
//!   again, is refused).
//!
//! At start a CRL that fails is an error: the server does not start. At a
//! reload it is refused with one log line and the CRLs in force are kept.
//! Once in force, a CRL stays in force after its nextUpdate passes (until a
//! good one replaces it): refusing every laptop because the coordinator is
//! late would stop the mission's reporting, and a revoked laptop stays
//! revoked either way.
//!
//! New handshakes see a new CRL at once: the server's rustls config holds
//! a [`LiveVerifier`], which hands each handshake to the webpki verifier of
//! the CRLs in force, swapped at each good reload. Sessions already open
//! were let in by the old CRLs: every authenticated session registers its
//! certificate's serial ([`Revocation::register`]) and a reload ends those
//! whose serial the new CRLs revoke. Sessions in good standing are not
//! touched.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use tokio::sync::watch;
use truce_shared::pem::PemError;

/// Why a CRL was not put in force.
#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    /// The file could not be read, or holds no CRL.
    #[error(transparent)]
    Pem(#[from] PemError),
    /// The file holds something that is not an X.509 CRL.
    #[error("{}: not an X.509 CRL", .0.display())]
    NotCrl(PathBuf),
    /// No CA of `--ca` signed it.
    #[error("{}: the CRL is not signed by the mission CA (--ca)", .0.display())]
    NotFromCa(PathBuf),
    /// Its nextUpdate has passed.
    #[error("{}: the CRL is stale: its nextUpdate ({next_update}) has passed; issue a fresh one (truce-certs crl --out DIR)", path.display())]
    Stale {
        /// The file.
        path: PathBuf,
        /// When it said it would be replaced, RFC 3339.
        next_update: String,
    },
    /// It has no nextUpdate.
    #[error("{}: the CRL has no nextUpdate, so its freshness cannot be judged", .0.display())]
    NoNextUpdate(PathBuf),
    /// Its number is lower than the one in force.
    #[error("{}: CRL number {number} is lower than the CRL number {in_force} in force; an older CRL is never put back", path.display())]
    Older {
        /// The file.
        path: PathBuf,
        /// The CRL number of the file now.
        number: String,
        /// The CRL number in force from that file.
        in_force: String,
    },
    /// webpki would not take the CRLs.
    #[error("cannot check client certificates with these CRLs: {0}")]
    Verifier(String),
}

/// One `--crl` file as last put in force.
#[derive(Debug, Clone)]
struct CrlFile {
    /// The highest CRL number in the file, big-endian, minimal (empty: 0).
    number: Vec<u8>,
    /// The CRLs, for webpki.
    ders: Vec<CertificateRevocationListDer<'static>>,
    /// The serials they revoke, big-endian, minimal.
    revoked: HashSet<Vec<u8>>,
}

/// Reads one `--crl` file and checks it against the CAs, the clock and the
/// CRL number in force (`in_force`, big-endian minimal).
fn read_file(
    path: &Path,
    cas: &[CertificateDer<'static>],
    now: i64,
    in_force: Option<&[u8]>,
) -> Result<CrlFile, CrlError> {
    let ders = truce_shared::pem::load_crls(&[path.to_path_buf()])?;
    let mut number: Vec<u8> = Vec::new();
    let mut revoked = HashSet::new();
    for der in &ders {
        let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).map_err(|_| CrlError::NotCrl(path.to_path_buf()))?;
        let signed = cas.iter().any(|ca| {
            x509_parser::parse_x509_certificate(ca.as_ref()).is_ok_and(|(_, ca)| {
                crl.issuer().as_raw() == ca.subject().as_raw() && crl.verify_signature(ca.public_key()).is_ok()
            })
        });
        if !signed {
            return Err(CrlError::NotFromCa(path.to_path_buf()));
        }
        let next = crl.next_update().ok_or_else(|| CrlError::NoNextUpdate(path.to_path_buf()))?;
        if next.timestamp() <= now {
            return Err(CrlError::Stale { path: path.to_path_buf(), next_update: rfc3339(next.timestamp()) });
        }
        let n = crl.crl_number().map(|n| minimal(&n.to_bytes_be())).unwrap_or_default();
        if compare(&n, &number).is_gt() {
            number = n;
        }
        revoked.extend(crl.iter_revoked_certificates().map(|r| minimal(r.raw_serial())));
    }
    if let Some(in_force) = in_force {
        if compare(&number, in_force).is_lt() {
            return Err(CrlError::Older {
                path: path.to_path_buf(),
                number: hex::encode(&number),
                in_force: hex::encode(in_force),
            });
        }
    }
    Ok(CrlFile { number, ders, revoked })
}

/// Compares two big-endian minimal unsigned integers.
fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// `bytes` without leading zero bytes.
fn minimal(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

/// Seconds since the epoch as RFC 3339, for messages.
fn rfc3339(secs: i64) -> String {
    truce_shared::time::format_ms(secs.saturating_mul(1000))
}

/// Now, in seconds since the epoch.
fn now_secs() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A client certificate verifier whose CRLs can be replaced while the
/// server runs: each handshake is handed to the verifier in force.
#[derive(Debug)]
pub struct LiveVerifier {
    /// The webpki verifier of the CRLs in force.
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    /// The CA names offered to clients; they do not change with the CRLs.
    hints: Vec<DistinguishedName>,
}

impl LiveVerifier {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn set(&self, verifier: Arc<dyn ClientCertVerifier>) {
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = verifier;
    }
}

impl ClientCertVerifier for LiveVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// A file's modification time and length: what the poll compares.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())))
}

/// The CRLs in force, the verifier that applies them, and the sessions
/// they may have to end.
#[derive(Debug)]
pub struct Revocation {
    /// `--crl`, in order.
    paths: Vec<PathBuf>,
    /// The CA certificates of `--ca`.
    cas: Vec<CertificateDer<'static>>,
    /// The same, as webpki's roots.
    roots: Arc<RootCertStore>,
    /// The crypto provider of the server's config.
    provider: Arc<CryptoProvider>,
    /// What the rustls config checks client certificates with.
    verifier: Arc<LiveVerifier>,
    /// The files in force, by path, and the stamps seen at the last look.
    state: Mutex<State>,
    /// Open sessions by their certificate's serial.
    sessions: Mutex<Sessions>,
    /// Told the new CRLs' age after each good reload (`run --metrics`).
    metrics: Mutex<Option<Arc<crate::metrics::Metrics>>>,
}

#[derive(Debug)]
struct State {
    files: Vec<CrlFile>,
    stamps: Vec<Stamp>,
}

#[derive(Debug, Default)]
struct Sessions {
    next: u64,
    /// id → the session's certificate and the sender that ends it.
    open: BTreeMap<u64, OpenSession>,
}

#[derive(Debug)]
struct OpenSession {
    /// The certificate's serial, big-endian, minimal: what CRLs list.
    serial: Vec<u8>,
    /// The same as the other log lines name it (hex of the DER integer).
    shown: String,
    /// Fires to end the session.
    end: watch::Sender<bool>,
}

/// What a reload did, for the log and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The new CRLs are in force; `closed` sessions were ended.
    InForce {
        /// Serials revoked in all.
        revoked: usize,
        /// Open sessions ended because their certificate is now revoked.
        closed: usize,
    },
    /// The files were refused; the CRLs in force were kept.
    Refused,
}

impl Revocation {
    /// Reads `paths` (each must pass the checks in the module docs) and
    /// builds the verifier the server's rustls config will use.
    pub fn load(
        cas: Vec<CertificateDer<'static>>,
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
        paths: &[PathBuf],
    ) -> Result<Arc<Revocation>, CrlError> {
        let now = now_secs();
        let stamps = paths.iter().map(|p| stamp(p)).collect();
        let files = paths.iter().map(|p| read_file(p, &cas, now, None)).collect::<Result<Vec<_>, _>>()?;
        let inner = build(&roots, &provider, &files)?;
        let hints = inner.root_hint_subjects().to_vec();
        Ok(Arc::new(Revocation {
            paths: paths.to_vec(),
            cas,
            roots,
            provider,
            verifier: Arc::new(LiveVerifier { current: RwLock::new(inner), hints }),
            state: Mutex::new(State { files, stamps }),
            sessions: Mutex::default(),
            metrics: Mutex::default(),
        }))
    }

    /// Counts the age of the CRLs in force into `metrics` from now on.
    pub fn report_to(&self, metrics: Arc<crate::metrics::Metrics>) {
        *self.metrics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(metrics);
    }

    /// The verifier for the server's rustls config.
    pub fn verifier(&self) -> Arc<LiveVerifier> {
        self.verifier.clone()
    }

    /// Whether a `--crl` file changed (its modification time or length)
    /// since the last look.
    pub fn changed(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.paths.iter().zip(&state.stamps).any(|(p, seen)| stamp(p) != *seen)
    }

    /// Reads the `--crl` files again. Good ones are put in force and every
    /// open session of a certificate they revoke is ended; refused ones
    /// leave everything as it was. Logs one line either way (`why` says
    /// what asked: `SIGHUP`, `file changed`).
    pub fn reload(&self, why: &str) -> Reloaded {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.stamps = self.paths.iter().map(|p| stamp(p)).collect();
        let now = now_secs();
        let read = self
            .paths
            .iter()
            .zip(&state.files)
            .map(|(p, old)| read_file(p, &self.cas, now, Some(&old.number)))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|files| Ok((build(&self.roots, &self.provider, &files)?, files)));
        let (inner, files) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(reason = why, error = %e, "CRL refused; the CRLs in force are kept");
                return Reloaded::Refused;
            }
        };
        self.verifier.set(inner);
        let revoked: HashSet<Vec<u8>> = files.iter().flat_map(|f| f.revoked.iter().cloned()).collect();
        let numbers: Vec<String> = files.iter().map(|f| hex::encode(&f.number)).collect();
        state.files = files;
        drop(state);
        if let Some(m) = self.metrics.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref() {
            m.set_crl_this_update(crate::metrics::crl_this_update(&self.paths));
        }
        let closed = self.close_revoked(&revoked);
        tracing::info!(reason = why, crl_number = %numbers.join(","), revoked = revoked.len(), closed, "CRL reloaded");
        Reloaded::InForce { revoked: revoked.len(), closed }
    }

    /// Ends every open session whose serial is in `revoked`.
    fn close_revoked(&self, revoked: &HashSet<Vec<u8>>) -> usize {
        let sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut closed = 0;
        for open in sessions.open.values() {
            if revoked.contains(&open.serial) && !*open.end.borrow() {
                tracing::warn!(cert_serial = %open.shown, "closing a session: its certificate is now revoked");
                let _ = open.end.send(true);
                closed += 1;
            }
        }
        closed
    }

    /// Registers an authenticated session of the client certificate
    /// `cert_der`; it stays registered while the returned value lives, and
    /// [`SessionEntry::revoked`] resolves when a reload revokes it.
    pub fn register(self: &Arc<Self>, cert_der: &[u8]) -> SessionEntry {
        let raw =
            x509_parser::parse_x509_certificate(cert_der).map(|(_, c)| c.raw_serial().to_vec()).unwrap_or_default();
        let (serial, shown) = (minimal(&raw), hex::encode(&raw));
        let (tx, rx) = watch::channel(false);
        let mut sessions = self.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = sessions.next;
        sessions.next += 1;
        sessions.open.insert(id, OpenSession { serial, shown, end: tx });
        SessionEntry { owner: self.clone(), id, rx }
    }
}

/// The webpki verifier of `files` with `roots`: a client whose revocation
/// status cannot be determined (no CRL from its issuer) is refused,
/// rustls's default, kept on purpose; an expired CRL is not (see the
/// module docs).
fn build(
    roots: &Arc<RootCertStore>,
    provider: &Arc<CryptoProvider>,
    files: &[CrlFile],
) -> Result<Arc<dyn ClientCertVerifier>, CrlError> {
    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .with_crls(files.iter().flat_map(|f| f.ders.iter().cloned()))
        .build()
        .map_err(|e| CrlError::Verifier(e.to_string()))
}

/// One open session in the registry; leaves it when dropped.
#[derive(Debug)]
pub struct SessionEntry {
    owner: Arc<Revocation>,
    id: u64,
    rx: watch::Receiver<bool>,
}

impl SessionEntry {
    /// Resolves once a reload has revoked this session's certificate.
    pub async fn revoked(&mut self) {
        if self.rx.wait_for(|revoked| *revoked).await.is_err() {
            // The registry is gone only with the server: never "revoked".
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for SessionEntry {
    fn drop(&mut self) {
        let mut sessions = self.owner.sessions.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        sessions.open.remove(&self.id);
    }
}

/// Reloads `revocation` on each SIGHUP (unix; installed when this is
/// called) and whenever a `--crl` file changes, looked at every
/// `interval`. Runs until dropped.
pub fn watch(
    revocation: Arc<Revocation>,
    interval: Duration,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let why = tokio::select! {
                _ = hangup.recv() => "SIGHUP",
                _ = tick.tick() => "file changed",
            };
            #[cfg(not(unix))]
            let why = {
                tick.tick().await;
                "file changed"
            };
            if why == "SIGHUP" || revocation.changed() {
                let r = revocation.clone();
                // File reads and signature checks are blocking work.
                let _ = tokio::task::spawn_blocking(move || r.reload(why)).await;
            }
        }
    })
}
