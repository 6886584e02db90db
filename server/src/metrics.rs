//! Numbers for the people who run the server, in the Prometheus text
//! exposition format (version 0.0.4), served by `run --metrics ADDR`.
//!
//! [`Metrics`] is plain atomics in one struct, shared by `Arc` between the
//! listener, the sessions and the writer: counting costs one atomic add,
//! and nothing is registered globally. [`Metrics::render`] writes them out;
//! [`serve`] answers `GET /metrics` on a listener of its own, over plain
//! HTTP/1.1 (no TLS: bind it to a private address), and is bounded so it
//! cannot be used against the server: at most
//! [`limits::MAX_METRICS_CONNECTIONS`] at once (more are closed at once),
//! [`limits::METRICS_TIMEOUT`] for a whole exchange, and a request of at
//! most [`limits::MAX_METRICS_REQUEST`] bytes.
//!
//! The names (all `truce_server_*`) are documented with their types in
//! server/README.md; a counter ends in `_total`, a duration is in seconds.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use truce_shared::limits;
use truce_shared::wire::Status;

/// Why a connection was closed before or instead of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The TLS handshake failed (no certificate, another CA, revoked…).
    HandshakeFailed,
    /// No finished handshake and Hello before the deadline.
    HandshakeTimeout,
    /// Dropped, unauthenticated, to make room for a newer connection.
    Evicted,
    /// The client did not negotiate ALPN `truce/1`.
    NoAlpn,
    /// Every session slot was taken.
    SessionsFull,
    /// Its certificate already held its cap of sessions.
    CertCap,
}

impl Refusal {
    const ALL: [Refusal; 6] = [
        Refusal::HandshakeFailed,
        Refusal::HandshakeTimeout,
        Refusal::Evicted,
        Refusal::NoAlpn,
        Refusal::SessionsFull,
        Refusal::CertCap,
    ];

    fn label(self) -> &'static str {
        match self {
            Refusal::HandshakeFailed => "handshake_failed",
            Refusal::HandshakeTimeout => "handshake_timeout",
            Refusal::Evicted => "evicted",
            Refusal::NoAlpn => "no_alpn",
            Refusal::SessionsFull => "sessions_full",
            Refusal::CertCap => "cert_cap",
        }
    }
}

/// A limit that made the server refuse, drop, cut off or hold back a
/// client. Labels are the limits' config keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_connections`: a laptop found every session slot taken.
    MaxConnections,
    /// `max_connections_per_cert`: a certificate's next session refused.
    MaxConnectionsPerCert,
    /// `max_unauthenticated`: the oldest unauthenticated connection dropped.
    MaxUnauthenticated,
    /// `max_unauthenticated_per_ip`: an address's oldest dropped.
    MaxUnauthenticatedPerIp,
    /// `max_frame_bytes_in_flight`: a frame had to wait for room.
    MaxFrameBytesInFlight,
    /// `max_frame`: a frame over the limit ended a session.
    MaxFrame,
    /// `max_batch`: a Submit over the limit ended a session.
    MaxBatch,
    /// `handshake_timeout`: no handshake and Hello in time.
    HandshakeTimeout,
    /// `idle_timeout`: a silent or slow session cut off.
    IdleTimeout,
    /// A disk quota (per key, per certificate, quarantine) refused a batch.
    DiskQuota,
    /// The evidence size limit or quota refused a file.
    EvidenceQuota,
}

impl Limit {
    const ALL: [Limit; 11] = [
        Limit::MaxConnections,
        Limit::MaxConnectionsPerCert,
        Limit::MaxUnauthenticated,
        Limit::MaxUnauthenticatedPerIp,
        Limit::MaxFrameBytesInFlight,
        Limit::MaxFrame,
        Limit::MaxBatch,
        Limit::HandshakeTimeout,
        Limit::IdleTimeout,
        Limit::DiskQuota,
        Limit::EvidenceQuota,
    ];

    fn label(self) -> &'static str {
        match self {
            Limit::MaxConnections => "max_connections",
            Limit::MaxConnectionsPerCert => "max_connections_per_cert",
            Limit::MaxUnauthenticated => "max_unauthenticated",
            Limit::MaxUnauthenticatedPerIp => "max_unauthenticated_per_ip",
            Limit::MaxFrameBytesInFlight => "max_frame_bytes_in_flight",
            Limit::MaxFrame => "max_frame",
            Limit::MaxBatch => "max_batch",
            Limit::HandshakeTimeout => "handshake_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::DiskQuota => "disk_quota",
            Limit::EvidenceQuota => "evidence_quota",
        }
    }
}

/// The outcomes a report can have, in the order they are printed.
const OUTCOMES: [&str; 4] = ["accepted", "duplicate", "quarantined", "rejected"];

fn outcome_index(s: &Status) -> usize {
    match s {
        Status::Accepted => 0,
        Status::Duplicate => 1,
        Status::Quarantined(_) => 2,
        Status::Rejected(_) => 3,
    }
}

/// A histogram of fixed buckets; observations are whole units (ns, or
/// reports) and printed times `unit`.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, in printed units, ascending.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is +Inf.
    counts: Vec<AtomicU64>,
    /// Sum of observations, in whole units.
    sum: AtomicU64,
    /// What one whole unit is in printed units.
    unit: f64,
}

impl Histogram {
    fn new(bounds: &'static [f64], unit: f64) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            unit,
        }
    }

    /// Records one observation of `units` whole units.
    pub fn observe(&self, units: u64) {
        let v = units as f64 * self.unit;
        let i = self.bounds.iter().position(|b| v <= *b).unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(units, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        header(out, name, "histogram", help);
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Relaxed);
            let le = self.bounds.get(i).map_or_else(|| "+Inf".to_string(), |b| format!("{b}"));
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}", self.sum.load(Relaxed) as f64 * self.unit);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// Bucket bounds of commit latency, seconds.
const COMMIT_SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Bucket bounds of group sizes (reports, or batches, in one commit).
const GROUP_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0, 16384.0];

/// Every metric of one server.
#[derive(Debug)]
pub struct Metrics {
    accepted: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    unauthenticated: AtomicI64,
    authenticated: AtomicI64,
    reports: [AtomicU64; OUTCOMES.len()],
    limits: [AtomicU64; Limit::ALL.len()],
    /// Time of each group commit.
    pub commit_seconds: Histogram,
    /// Reports in each group commit.
    pub group_reports: Histogram,
    /// Batches (from sessions or imports) in each group commit.
    pub group_batches: Histogram,
    /// The loaded CRL's thisUpdate (the oldest, with several), unix
    /// seconds; `i64::MIN` when none is loaded.
    crl_this_update: AtomicI64,
    /// Evidence bytes written durably from uploads.
    evidence_bytes: AtomicU64,
    /// Evidence files now held after an upload's hash check.
    evidence_files: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            accepted: AtomicU64::new(0),
            refused: Default::default(),
            unauthenticated: AtomicI64::new(0),
            authenticated: AtomicI64::new(0),
            reports: Default::default(),
            limits: Default::default(),
            commit_seconds: Histogram::new(COMMIT_SECONDS, 1e-9),
            group_reports: Histogram::new(GROUP_SIZES, 1.0),
            group_batches: Histogram::new(GROUP_SIZES, 1.0),
            crl_this_update: AtomicI64::new(i64::MIN),
            evidence_bytes: AtomicU64::new(0),
            evidence_files: AtomicU64::new(0),
        }
    }
}

/// A connection counted in a state while this lives.
#[derive(Debug)]
pub struct InState<'a>(&'a AtomicI64);

impl Drop for InState<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// A TCP connection accepted.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    /// A connection closed before or instead of a session.
    pub fn refused(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Relaxed);
    }

    /// A limit hit.
    pub fn limit(&self, which: Limit) {
        self.limits[which as usize].fetch_add(1, Relaxed);
    }

    /// Counts a connection as unauthenticated until the guard drops.
    pub fn unauthenticated(&self) -> InState<'_> {
        self.unauthenticated.fetch_add(1, Relaxed);
        InState(&self.unauthenticated)
    }

    /// Counts a connection as an authenticated session until the guard drops.
    pub fn authenticated(&self) -> InState<'_> {
        self.authenticated.fetch_add(1, Relaxed);
        InState(&self.authenticated)
    }

    /// Counts the outcomes of stored batches.
    pub fn outcomes<'a>(&self, statuses: impl IntoIterator<Item = &'a Status>) {
        for s in statuses {
            self.reports[outcome_index(s)].fetch_add(1, Relaxed);
        }
    }

    /// Records one group commit: how long it took, its reports and batches.
    pub fn commit(&self, took: Duration, reports: usize, batches: usize) {
        self.commit_seconds.observe(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        self.group_reports.observe(reports as u64);
        self.group_batches.observe(batches as u64);
    }

    /// The CRL in force was issued at `this_update` (unix seconds; the
    /// oldest of several), or there is none. Called at start and whenever
    /// the CRL is loaded again.
    pub fn set_crl_this_update(&self, this_update: Option<i64>) {
        self.crl_this_update.store(this_update.unwrap_or(i64::MIN), Relaxed);
    }

    /// Evidence bytes written (and synced) from an upload's chunk.
    pub fn evidence_written(&self, bytes: u64) {
        self.evidence_bytes.fetch_add(bytes, Relaxed);
    }

    /// An uploaded evidence file matched its hash and is held.
    pub fn evidence_held(&self) {
        self.evidence_files.fetch_add(1, Relaxed);
    }

    /// The metrics in the Prometheus text format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        header(&mut out, "truce_server_connections", "gauge", "Connections now, by state: unauthenticated (TCP accepted, TLS handshake and Hello not finished) or authenticated (a session).");
        let _ = writeln!(
            out,
            "truce_server_connections{{state=\"unauthenticated\"}} {}",
            self.unauthenticated.load(Relaxed)
        );
        let _ =
            writeln!(out, "truce_server_connections{{state=\"authenticated\"}} {}", self.authenticated.load(Relaxed));
        counter(
            &mut out,
            "truce_server_connections_accepted_total",
            "TCP connections accepted.",
            &[("", self.accepted.load(Relaxed))],
        );
        let refused: Vec<(String, u64)> = Refusal::ALL
            .iter()
            .map(|r| (format!("reason=\"{}\"", r.label()), self.refused[*r as usize].load(Relaxed)))
            .collect();
        labelled(
            &mut out,
            "truce_server_connections_refused_total",
            "counter",
            "Connections closed before or instead of a session, by reason.",
            &refused,
        );
        let reports: Vec<(String, u64)> = OUTCOMES
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("outcome=\"{o}\""), self.reports[i].load(Relaxed)))
            .collect();
        labelled(
            &mut out,
            "truce_server_reports_total",
            "counter",
            "Reports answered after a durable commit, by outcome.",
            &reports,
        );
        self.commit_seconds.render(
            &mut out,
            "truce_server_commit_seconds",
            "Time of each group commit (one transaction, one fsync), seconds.",
        );
        self.group_reports.render(&mut out, "truce_server_commit_group_reports", "Reports in each group commit.");
        self.group_batches.render(&mut out, "truce_server_commit_group_batches", "Batches in each group commit.");
        let limits: Vec<(String, u64)> = Limit::ALL
            .iter()
            .map(|l| (format!("limit=\"{}\"", l.label()), self.limits[*l as usize].load(Relaxed)))
            .collect();
        labelled(
            &mut out,
            "truce_server_limit_hits_total",
            "counter",
            "Times a limit refused, dropped, cut off or held back a client, by limit.",
            &limits,
        );
        counter(
            &mut out,
            "truce_server_evidence_bytes_total",
            "Evidence bytes written to disk (and synced) from uploads.",
            &[("", self.evidence_bytes.load(Relaxed))],
        );
        counter(
            &mut out,
            "truce_server_evidence_files_total",
            "Evidence files uploaded whose SHA-256 matched the signed one, now held.",
            &[("", self.evidence_files.load(Relaxed))],
        );
        let this_update = self.crl_this_update.load(Relaxed);
        if this_update != i64::MIN {
            let now = truce_shared::time::now_ms() / 1000;
            header(
                &mut out,
                "truce_server_crl_age_seconds",
                "gauge",
                "Seconds since the thisUpdate of the CRL in force (the oldest, with several).",
            );
            let _ = writeln!(out, "truce_server_crl_age_seconds {}", now.saturating_sub(this_update));
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, values: &[(&str, u64)]) {
    header(out, name, "counter", help);
    for (_, v) in values {
        let _ = writeln!(out, "{name} {v}");
    }
}

fn labelled(out: &mut String, name: &str, kind: &str, help: &str, values: &[(String, u64)]) {
    header(out, name, kind, help);
    for (labels, v) in values {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// The thisUpdate of the oldest of these CRLs, unix seconds; `None` if
/// there are none or one cannot be read (the TLS setup reports that).
pub fn crl_this_update(paths: &[PathBuf]) -> Option<i64> {
    let crls = truce_shared::pem::load_crls(paths).ok()?;
    crls.iter()
        .map(|der| x509_parser::parse_x509_crl(der.as_ref()).ok().map(|(_, crl)| crl.last_update().timestamp()))
        .collect::<Option<Vec<i64>>>()?
        .into_iter()
        .min()
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(limits::MAX_METRICS_CONNECTIONS));
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Busy: closed at once, never queued.
        let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ = tokio::time::timeout(limits::METRICS_TIMEOUT, answer(&mut stream, &metrics)).await;
        });
    }
}

/// Reads one request (at most [`limits::MAX_METRICS_REQUEST`] bytes up to
/// its blank line) and answers it: the metrics for `GET /metrics`, 404 for
/// another path, 405 for another method, 431 for a request too large.
pub async fn answer<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, metrics: &Metrics) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if request.len() > limits::MAX_METRICS_REQUEST {
            return respond(io, "431 Request Header Fields Too Large", "request too large\n").await;
        }
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&chunk[..n]);
    };
    if end + 4 > limits::MAX_METRICS_REQUEST {
        return respond(io, "431 Request Header Fields Too Large", "request too large\n").await;
    }
    let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET", b"/metrics") => respond(io, "200 OK", &metrics.render()).await,
        (b"GET", _) => respond(io, "404 Not Found", "only /metrics is here\n").await,
        _ => respond(io, "405 Method Not Allowed", "only GET\n").await,
    }
}

async fn respond<S: AsyncWrite + Unpin>(io: &mut S, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    io.write_all(head.as_bytes()).await?;
    io.write_all(body.as_bytes()).await?;
    io.flush().await?;
    io.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ask(request: &[u8]) -> String {
        let metrics = Metrics::default();
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        client.write_all(request).await.unwrap();
        answer(&mut server, &metrics).await.unwrap();
        drop(server);
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_request_of_exactly_the_cap_is_answered_and_one_byte_more_is_refused() {
        let base = b"GET /metrics HTTP/1.1\r\nX: ";
        let at = |len: usize| {
            let mut r = base.to_vec();
            r.resize(len - 4, b'a');
            r.extend_from_slice(b"\r\n\r\n");
            r
        };
        let ok = ask(&at(limits::MAX_METRICS_REQUEST)).await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"), "{ok}");
        assert!(ok.contains("truce_server_reports_total{outcome=\"duplicate\"} 0"), "{ok}");
        let big = ask(&at(limits::MAX_METRICS_REQUEST + 1)).await;
        assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
        assert!(ask(b"GET / HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404 "));
        assert!(ask(b"POST /metrics HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 405 "));
    }

    #[test]
    fn histograms_are_cumulative_and_counters_carry_every_label() {
        let m = Metrics::default();
        m.commit(Duration::from_millis(3), 5, 2);
        m.commit(Duration::from_secs(20), 1, 1);
        m.outcomes(&[Status::Accepted, Status::Duplicate, Status::Accepted]);
        m.limit(Limit::MaxBatch);
        let text = m.render();
        for line in [
            "truce_server_commit_seconds_bucket{le=\"0.0025\"} 0",
            "truce_server_commit_seconds_bucket{le=\"0.005\"} 1",
            "truce_server_commit_seconds_bucket{le=\"10\"} 1",
            "truce_server_commit_seconds_bucket{le=\"+Inf\"} 2",
            "truce_server_commit_seconds_count 2",
            "truce_server_commit_group_reports_sum 6",
            "truce_server_commit_group_reports_bucket{le=\"4\"} 1",
            "truce_server_reports_total{outcome=\"accepted\"} 2",
            "truce_server_reports_total{outcome=\"rejected\"} 0",
            "truce_server_limit_hits_total{limit=\"max_batch\"} 1",
            "truce_server_connections_refused_total{reason=\"cert_cap\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(!text.contains("crl_age"), "no CRL, no age");
        m.set_crl_this_update(Some(truce_shared::time::now_ms() / 1000 - 100));
        let age: i64 = m
            .render()
            .lines()
            .find_map(|l| l.strip_prefix("truce_server_crl_age_seconds "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((100..200).contains(&age), "{age}");
    }
}
