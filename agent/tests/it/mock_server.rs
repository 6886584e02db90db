//! A small stand-in for truce-server, enough to test sync without it: a
//! real mTLS listener on 127.0.0.1:0 (rustls, WebPki client verification,
//! TLS 1.3, ALPN truce/1) speaking protocol 2 (DESIGN §4, §9): a real
//! Merkle tree of log entries (appended as the real server documents them),
//! a log key signing receipts and checkpoints, real proofs; with knobs to
//! misbehave.
//! Its certificates come from `truce-testkit`'s [`Pki`]. The real server's
//! end-to-end tests live in the workspace `tests/` crate.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use truce_shared::log::{prove_range, prove_tree, Entry, Event, LogKey, MemoryTree, Outcome, ReceiptBody, Stored, Via};
use truce_shared::wire::{self, Message, Status};
use truce_shared::{limits, Bytes32};
use truce_testkit::Pki;

/// How the mock server behaves.
#[derive(Clone, Default)]
pub struct Behaviour {
    /// Answer Hello with Refuse(reason).
    pub refuse: Option<String>,
    /// Sign receipts with a key other than the one in Welcome.
    pub bad_receipts: bool,
    /// The log key's seed (default: random).
    pub log_seed: Option<[u8; 32]>,
    /// Answer Prove with Refuse.
    pub refuse_proofs: bool,
    /// Add this to server_time in Welcome.
    pub clock_offset_ms: i64,
    /// Welcome.max_batch (default 7).
    pub max_batch: Option<u32>,
    /// Do not answer until this many Submits have arrived (pipelining check).
    pub hold_acks_until: usize,
    /// On the first connection only, store the batch after this many Acks
    /// and cut the link before acknowledging it (an Ack lost in transit).
    pub cut_after_acks: Option<usize>,
}

/// What the mock server saw.
#[derive(Default)]
pub struct Seen {
    /// Every report id stored, once.
    pub stored: HashSet<Bytes32>,
    /// Submits received, and the most reports in one.
    pub submits: usize,
    pub largest_batch: usize,
    /// Most Submits received before the first Ack was sent.
    pub submits_before_first_ack: usize,
    pub hellos: usize,
    pub byes: usize,
    /// Prove messages received.
    pub proves: usize,
}

/// The serial the mock says it records for every client certificate.
pub const SERIAL: &str = "01c0ffee";

/// The mock's log: entries, the tree over them, and where each report is.
pub struct Log {
    pub key: LogKey,
    pub entries: Vec<Vec<u8>>,
    pub tree: MemoryTree,
    pub index: std::collections::HashMap<Bytes32, u64>,
}

impl Log {
    fn append(&mut self, e: &Entry) -> u64 {
        self.entries.push(e.encode());
        self.tree.push(e.leaf_hash()).unwrap()
    }

    /// The signed checkpoint of the whole tree.
    pub fn checkpoint(&self) -> String {
        self.key.checkpoint(self.tree.size(), &self.tree.root().unwrap())
    }

    /// Rewrites history: the first entry changes (its time), the tree is
    /// rebuilt at the same size. Any checkpoint of before no longer extends.
    pub fn rewrite_first_entry(&mut self) {
        let mut first = Entry::decode(&self.entries[0]).unwrap();
        first.at += 1;
        self.entries[0] = first.encode();
        let mut tree = MemoryTree::new();
        for e in &self.entries {
            tree.push(Entry::decode(e).unwrap().leaf_hash()).unwrap();
        }
        self.tree = tree;
    }
}

pub struct MockServer {
    pub addr: String,
    /// The log key's public half.
    pub server_key: Bytes32,
    pub seen: Arc<Mutex<Seen>>,
    pub log: Arc<Mutex<Log>>,
    _thread: std::thread::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn read_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    rustls_pemfile::certs(&mut pem.as_slice()).map(|c| c.expect("a PEM certificate")).collect()
}

fn read_key(path: &Path) -> PrivateKeyDer<'static> {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    rustls_pemfile::private_key(&mut pem.as_slice()).expect("a PEM key").expect("a private key in the PEM")
}

impl MockServer {
    /// Starts a server on 127.0.0.1 (any port) with `server`'s server
    /// certificate, trusting client certificates from the CA in `client_ca`.
    pub fn start(server: &Pki, client_ca: &Path, behaviour: Behaviour) -> MockServer {
        Self::start_on("127.0.0.1:0", server, client_ca, behaviour)
    }

    /// The same, on a given address.
    pub fn start_on(bind: &str, server: &Pki, client_ca: &Path, behaviour: Behaviour) -> MockServer {
        let (certs, key) = (read_certs(&server.file("server.pem")), read_key(&server.file("server.key")));
        let mut roots = rustls::RootCertStore::empty();
        for c in read_certs(client_ca) {
            roots.add(c).unwrap();
        }
        let provider = Arc::new(truce_shared::tls::provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![wire::ALPN.to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let seed = behaviour.log_seed.unwrap_or_else(|| truce_shared::signing::generate_key().to_bytes());
        let key = LogKey::new(&seed, truce_shared::log::DEFAULT_MISSION);
        let server_key = key.public();
        let log =
            Arc::new(Mutex::new(Log { key, entries: Vec::new(), tree: MemoryTree::new(), index: Default::default() }));
        let log2 = log.clone();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let std_listener = std::net::TcpListener::bind(bind).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap().to_string();
        let seen2 = seen.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return,
                        a = listener.accept() => {
                            let Ok((tcp, _)) = a else { continue };
                            let acceptor = acceptor.clone();
                            let seen = seen2.clone();
                            let b = behaviour.clone();
                            let log = log2.clone();
                            tokio::spawn(async move {
                                if let Ok(tls) = acceptor.accept(tcp).await {
                                    let _ = serve(tls, &b, &log, &seen).await;
                                }
                            });
                        }
                    }
                }
            });
        });
        MockServer { addr, server_key, seen, log, _thread: thread, stop: Some(stop_tx) }
    }
}

async fn serve(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    b: &Behaviour,
    log: &Mutex<Log>,
    seen: &Mutex<Seen>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (mut rd, mut wr) = tokio::io::split(tls);
    let max = limits::MAX_FRAME;
    match wire::read_message(&mut rd, max).await? {
        Some(Message::Hello { .. }) => seen.lock().unwrap().hellos += 1,
        _ => return Ok(()),
    }
    if let Some(reason) = &b.refuse {
        wire::write_message(&mut wr, &Message::Refuse { reason: reason.clone() }, max).await?;
        wr.shutdown().await?;
        return Ok(());
    }
    let welcome = Message::Welcome {
        log_key: log.lock().unwrap().key.public(),
        server_time: truce_shared::time::now_ms() + b.clock_offset_ms,
        max_batch: b.max_batch.unwrap_or(7),
        max_frame: max,
        certificate: SERIAL.into(),
    };
    wire::write_message(&mut wr, &welcome, max).await?;
    let other_key = LogKey::new(&[0xEE; 32], truce_shared::log::DEFAULT_MISSION);
    let mut held_back: Vec<(u64, Vec<truce_shared::SignedReport>)> = Vec::new();
    let mut acks = 0usize;
    let mut first_ack_sent = false;
    loop {
        let msg = wire::read_message(&mut rd, max).await?;
        let (batch, reports) = match msg {
            Some(Message::Submit { batch, reports }) => (batch, reports),
            Some(Message::Prove { size, from, ranges, entries }) => {
                seen.lock().unwrap().proves += 1;
                if b.refuse_proofs {
                    wire::write_message(&mut wr, &Message::Refuse { reason: "no proofs today".into() }, max).await?;
                    continue;
                }
                let answer = {
                    let l = log.lock().unwrap();
                    let consistency = if from > 0 && from < size {
                        prove_tree(size, from, &l.tree).unwrap().into_iter().map(|h| h.0).collect()
                    } else {
                        Vec::new()
                    };
                    Message::Proofs {
                        consistency,
                        ranges: ranges.iter().map(|&(lo, hi)| prove_range(lo, hi, size, &l.tree).unwrap()).collect(),
                        entries: entries
                            .iter()
                            .map(|&i| serde_bytes::ByteBuf::from(l.entries[i as usize].clone()))
                            .collect(),
                    }
                };
                wire::write_message(&mut wr, &answer, max).await?;
                continue;
            }
            Some(Message::Bye) => {
                seen.lock().unwrap().byes += 1;
                return Ok(());
            }
            _ => return Ok(()),
        };
        {
            let mut s = seen.lock().unwrap();
            s.submits += 1;
            s.largest_batch = s.largest_batch.max(reports.len());
            if !first_ack_sent {
                s.submits_before_first_ack += 1;
            }
        }
        held_back.push((batch, reports));
        if !first_ack_sent && held_back.len() < b.hold_acks_until {
            continue;
        }
        for (batch, reports) in held_back.drain(..) {
            let received_at = truce_shared::time::now_ms();
            let via = || Via::Tls { serial: SERIAL.into() };
            let (results, checkpoint, signature) = {
                let mut s = seen.lock().unwrap();
                let mut l = log.lock().unwrap();
                let mut results = Vec::new();
                for r in &reports {
                    let id = r.id();
                    let (status, entry) = match truce_shared::verify(r) {
                        Ok(v) => match l.index.get(&v.id) {
                            Some(&at) => (Status::Duplicate, at),
                            None => {
                                let e = Entry::new(
                                    received_at,
                                    Event::Report {
                                        id,
                                        device: v.envelope.device,
                                        seq: v.envelope.seq,
                                        status: Stored::Verified,
                                        via: via(),
                                    },
                                );
                                let at = l.append(&e);
                                l.index.insert(id, at);
                                s.stored.insert(id);
                                (Status::Accepted, at)
                            }
                        },
                        Err(e) => {
                            let reason = e.reason();
                            let ev = Event::Refused { id, device: None, reason: reason.clone(), via: via() };
                            (Status::Rejected(reason), l.append(&Entry::new(received_at, ev)))
                        }
                    };
                    results.push(Outcome { id, status, entry });
                }
                let checkpoint = l.checkpoint();
                let body = ReceiptBody {
                    batch,
                    received_at,
                    results: results.as_slice().into(),
                    checkpoint: checkpoint.as_str().into(),
                };
                let signer = if b.bad_receipts { &other_key } else { &l.key };
                let signature = signer.sign_receipt(&body);
                (results, checkpoint, signature)
            };
            if b.cut_after_acks == Some(acks) && seen.lock().unwrap().hellos == 1 {
                // Stored, but the link is cut before the Ack goes out (no
                // TLS goodbye either): the agent must send it again. The cut
                // is a FIN, and what the agent still sends is read and
                // dropped: closing with unread data would send a RST, which
                // can destroy Acks already sent but not yet read by the
                // agent, and the test would not know which batches count.
                let mut tls = rd.unsplit(wr);
                let tcp = &mut tls.get_mut().0;
                tcp.shutdown().await?;
                let mut sink = [0u8; 4096];
                let drain = async {
                    while let Ok(n) = tcp.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
                return Ok(());
            }
            let ack = Message::Ack { batch, received_at, results, checkpoint, signature };
            wire::write_message(&mut wr, &ack, max).await?;
            first_ack_sent = true;
            acks += 1;
        }
    }
}
