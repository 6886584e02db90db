//! Every limit Truce enforces, named once, with its default.
//!
//! Agent, server and tests read these constants; the server lets an operator
//! lower or raise the runtime ones (frame, batch, connections, timeouts) with
//! flags, but never beyond what the report format itself allows.

use std::time::Duration;

/// Largest frame (wire or bundle) accepted, in bytes, not counting the
/// 4-byte length prefix. A longer frame ends the connection.
pub const MAX_FRAME: u32 = 4 * 1024 * 1024;

/// Most reports in one `Submit`. A batch of this many reports of the largest
/// valid size still fits in one [`MAX_FRAME`].
pub const MAX_BATCH: u32 = 128;

/// Most authenticated sessions a server serves at once; a laptop that
/// finishes its handshake while all are taken waits (within the handshake
/// timeout) for one to end.
pub const MAX_CONNECTIONS: usize = 4096;

/// Time an agent waits for the TLS handshake and the server's `Welcome`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time the server gives a client, from TCP accept, to finish the TLS
/// handshake and send `Hello`. Short, because until then anyone can hold
/// the connection; an operator whose laptops sit behind very slow links
/// (a few kbit/s) raises it with `--handshake-timeout`.
pub const SERVER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// Most connections a server holds that have not finished the TLS
/// handshake (shown no certificate yet). At the budget, the oldest is
/// dropped for each new one: accepting never pauses.
pub const MAX_UNAUTHENTICATED: usize = 256;

/// Most unauthenticated connections from one IP address (several laptops
/// may share one address behind a satellite terminal's NAT).
pub const MAX_UNAUTHENTICATED_PER_IP: usize = 32;

/// Most sessions one client certificate may hold at once.
pub const MAX_CONNECTIONS_PER_CERT: usize = 8;

/// Most frame bytes all sessions together may hold in memory at once
/// (frames being read, verified or committed). A session whose frame does
/// not fit waits for others to finish before its body is read.
pub const MAX_FRAME_BYTES_IN_FLIGHT: u64 = 256 * 1024 * 1024;

/// Most reports a server stores under one device key. A monitor files tens
/// of reports on a busy day, a few thousand in a year-long mission: a
/// million is hundreds of years of honest use, and still bounds what a
/// stolen key can make the server store.
pub const MAX_REPORTS_PER_KEY: u64 = 1_000_000;

/// Most body bytes a server stores under one device key: 2 GiB, the
/// million reports of [`MAX_REPORTS_PER_KEY`] at about 2 KiB each (a report
/// with a long description and a few attachment records), and a bound a
/// collector on a monitor's laptop can hold for every laptop of a mission.
pub const MAX_BYTES_PER_KEY: u64 = 2 * 1024 * 1024 * 1024;

/// Most reports (and refused bodies) a server stores from one client
/// certificate: one laptop, one key, so the same as a key's.
pub const MAX_REPORTS_PER_CERT: u64 = 1_000_000;

/// Most bytes a server stores from one client certificate.
pub const MAX_BYTES_PER_CERT: u64 = 2 * 1024 * 1024 * 1024;

/// Most reports quarantined at once (keys not enrolled, or revoked), all
/// keys together: quarantine holds a late enrolment's reports, which are
/// few; anyone with a certificate can sign with keys of their own making.
pub const MAX_QUARANTINED: u64 = 100_000;

/// Most reports of one key quarantined at once: months of one monitor's
/// reports waiting for the enrolment someone forgot.
pub const MAX_QUARANTINED_PER_KEY: u64 = 10_000;

/// Bytes of a refused report body the server keeps, beside its id (the
/// SHA-256 of the whole body): enough to read what was sent, a
/// twenty-fourth of the largest body.
pub const REJECTED_PREFIX: usize = 1024;

/// Time a connection may stay silent between frames, and the time a single
/// frame may take to arrive, before the server closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the server looks at its `--crl` files for a change (their
/// modification time and length); a changed file is read again, as on
/// SIGHUP.
pub const CRL_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Longest description, in bytes of UTF-8.
pub const MAX_DESCRIPTION: usize = 8 * 1024;

/// Longest assessed-weapon text, in bytes of UTF-8.
pub const MAX_WEAPON: usize = 128;

/// Most attachments on one report.
pub const MAX_ATTACHMENTS: usize = 32;

/// Longest attachment file name, in bytes of UTF-8.
pub const MAX_ATTACHMENT_NAME: usize = 255;

/// Longest attachment media type ("image/jpeg"), in bytes.
pub const MAX_MEDIA_TYPE: usize = 127;

/// Longest agent version string in `Hello`.
pub const MAX_AGENT_VERSION: usize = 64;

/// Longest reason text in `Refuse`, `Quarantined` or `Rejected`.
pub const MAX_REASON: usize = 256;

/// Most ranges, and most entries, in one `Prove` (protocol 2): an agent
/// with more to prove sends several. Bounds the server's work and the
/// `Proofs` frame per request.
pub const MAX_PROVE_ITEMS: usize = 4096;

/// Most bytes of evidence in one `Chunk` message (DESIGN §10): a server
/// refuses more; an agent sends smaller chunks on slow links.
pub const MAX_EVIDENCE_CHUNK: usize = 1024 * 1024;

/// Largest body of one signed report. The largest valid observation
/// (description, weapon and 32 attachments at their limits) is well under
/// this; anything bigger is rejected before it is decoded.
pub const MAX_REPORT_BODY: usize = 24 * 1024;

/// Most connections the server's metrics listener (`run --metrics`)
/// serves at once; more are closed at once, so scrapers cannot pile up.
pub const MAX_METRICS_CONNECTIONS: usize = 4;

/// Longest one metrics request and its answer may take, end to end.
pub const METRICS_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest metrics request read, up to its blank line, in bytes; a longer
/// one is answered 431 and closed.
pub const MAX_METRICS_REQUEST: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_batch_of_the_largest_reports_fits_in_one_frame() {
        // Body, 64-byte signature, and a few bytes of varint framing each.
        let per_report = MAX_REPORT_BODY + 64 + 8;
        let batch = MAX_BATCH as usize * per_report + 32;
        assert!(batch <= MAX_FRAME as usize, "{batch} > {MAX_FRAME}");
    }

    #[test]
    fn the_largest_valid_observation_fits_the_body_limit() {
        let attachments = MAX_ATTACHMENTS * (MAX_ATTACHMENT_NAME + MAX_MEDIA_TYPE + 8 + 32 + 10);
        let rest = MAX_DESCRIPTION + MAX_WEAPON + 200;
        assert!(attachments + rest <= MAX_REPORT_BODY);
    }
}
