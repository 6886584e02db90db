//! [`SyncError`]: why a sync did not deliver everything, one variant per
//! thing a monitor does about it.
//!
//! [`SyncError::needs_person`] splits them in two. The link or the server
//! being away ([`SyncError::Unreachable`], [`SyncError::Ended`]) passes:
//! try again later, which `sync --watch` does with backoff. Everything else
//! (a certificate refused, a server that is not a truce-server or speaks
//! another protocol, a receipt that does not verify, a report too big to
//! send) stays the same however often it is retried, so `--watch` stops and
//! says what to do. Every message is one line and ends by saying that the
//! reports stay pending.

use truce_shared::wire::{Message, WireError};

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The server could not be reached, or the link was cut (refused,
    /// timed out, no route, reset): try again later.
    #[error("cannot reach the server at {addr}: {why}; reports stay pending")]
    Unreachable {
        /// `HOST:PORT`.
        addr: String,
        /// What happened, and what to check.
        why: String,
    },

    /// The server refused this laptop's certificate (revoked, expired, not
    /// from the mission CA): the coordinator must act.
    #[error(
        "cannot reach the server at {addr}: the server refused this laptop's certificate ({alert}): it may be revoked, expired or not from the mission CA; ask the coordinator; reports stay pending"
    )]
    CertificateRefused {
        /// `HOST:PORT`.
        addr: String,
        /// The TLS alert the server sent.
        alert: String,
    },

    /// The server's certificate was not accepted: the wrong address, or
    /// the wrong CA given to `link`.
    #[error(
        "cannot reach the server at {addr}: the server's certificate was not accepted ({why}): it must be issued by the mission CA for {host}; check --server and the CA given to `link`; reports stay pending"
    )]
    ServerCertificate {
        /// `HOST:PORT`.
        addr: String,
        /// The name the certificate must carry.
        host: String,
        /// What rustls found wrong with it.
        why: String,
    },

    /// The other end does not speak Truce's protocol over TLS 1.3: not a
    /// truce-server, or one of another version.
    #[error("cannot reach the server at {addr}: {why}; reports stay pending")]
    NotTruce {
        /// `HOST:PORT`.
        addr: String,
        /// What it does not speak.
        why: String,
    },

    /// The server refused the session before it began (its reason: today
    /// only a protocol version it does not speak).
    #[error("the server at {addr} refused this laptop: {reason}; reports stay pending")]
    Refused {
        /// `HOST:PORT`.
        addr: String,
        /// The server's words.
        reason: String,
    },

    /// The server ended the session part way (its reason): try again later.
    #[error("the server at {addr} ended the session: {reason}; unanswered reports stay pending")]
    Ended {
        /// `HOST:PORT`.
        addr: String,
        /// The server's words.
        reason: String,
    },

    /// The server broke the protocol or sent what this agent cannot read.
    #[error("the server at {addr} broke the protocol ({what}); unanswered reports stay pending")]
    Protocol {
        /// `HOST:PORT`.
        addr: String,
        /// What it did.
        what: String,
    },

    /// A receipt did not verify under the key the server gave (or its
    /// checkpoint did not, or it names entries beyond its checkpoint):
    /// those reports are not marked, and someone must find out why.
    #[error(
        "the server's receipt for batch {batch} does not verify under its log key ({why}): those reports stay pending; tell the coordinator"
    )]
    BadReceipt {
        /// The batch.
        batch: u64,
        /// What did not check.
        why: String,
    },

    /// The server speaks an older protocol and refused this agent's.
    #[error(
        "the server at {addr} speaks an older protocol than this truce-agent ({reason}): the server must be upgraded; reports stay pending"
    )]
    OldServer {
        /// `HOST:PORT`.
        addr: String,
        /// The server's words.
        reason: String,
    },

    /// The server showed a log key other than the pinned one.
    #[error(
        "the server at {addr} shows log key {shown}, not the pinned {pinned}: refusing to sync (someone may be impersonating the server, or it was rebuilt); nothing was sent, reports stay pending; ask the coordinator, and re-link with --server-key only if they confirm the new key"
    )]
    LogKeyChanged {
        /// `HOST:PORT`.
        addr: String,
        /// The pinned key's fingerprint.
        pinned: String,
        /// The key shown's fingerprint.
        shown: String,
    },

    /// The server showed a log key other than `link --server-key` gave.
    #[error(
        "the server at {addr} shows log key {shown}, not {expected} given to `link --server-key`: refusing to sync; nothing was sent, reports stay pending; check the fingerprint with the coordinator"
    )]
    LogKeyNotExpected {
        /// `HOST:PORT`.
        addr: String,
        /// What `link --server-key` gave.
        expected: String,
        /// The key shown's fingerprint.
        shown: String,
    },

    /// The server's log did not prove what it acknowledged: an alarm.
    #[error(
        "ALARM: the server's log does not prove what it acknowledged ({what}): keep this laptop's data dir as evidence ({evidence}); the reports concerned stay delivered, not proven; tell the coordinator"
    )]
    Alarm {
        /// What failed.
        what: String,
        /// Where the evidence was written (or why it could not be).
        evidence: String,
    },

    /// A report is larger than the server's frame limit: it can never be
    /// sent until the limit is raised.
    #[error(
        "report seq {seq} ({len} bytes) does not fit the server's frame limit of {max_frame} bytes: ask the coordinator to raise it; reports stay pending"
    )]
    TooLarge {
        /// The report's chain position.
        seq: u64,
        /// Its encoded size.
        len: usize,
        /// The server's limit.
        max_frame: usize,
    },
}

impl SyncError {
    /// Whether retrying cannot help: a person has to act (the message says
    /// who and what). `false` means try again later.
    pub fn needs_person(&self) -> bool {
        !matches!(self, SyncError::Unreachable { .. } | SyncError::Ended { .. })
    }

    /// The link or the server is away.
    pub(super) fn unreachable(addr: &str, why: impl Into<String>) -> SyncError {
        SyncError::Unreachable { addr: addr.to_string(), why: why.into() }
    }

    /// The server broke the protocol.
    pub(super) fn protocol(addr: &str, what: impl Into<String>) -> SyncError {
        SyncError::Protocol { addr: addr.to_string(), what: what.into() }
    }

    /// Turns a TLS or I/O failure into what it means for the monitor.
    pub(super) fn from_io(addr: &str, host: &str, e: &std::io::Error) -> SyncError {
        use rustls::AlertDescription as A;
        let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
            return SyncError::unreachable(addr, describe_io(e));
        };
        let addr = addr.to_string();
        match tls {
            rustls::Error::InvalidCertificate(c) => {
                SyncError::ServerCertificate { addr, host: host.to_string(), why: format!("{c:?}") }
            }
            rustls::Error::AlertReceived(
                a @ (A::BadCertificate
                | A::UnknownCA
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::CertificateRequired
                | A::UnsupportedCertificate
                | A::AccessDenied),
            ) => SyncError::CertificateRefused { addr, alert: format!("{a:?}") },
            rustls::Error::NoApplicationProtocol | rustls::Error::AlertReceived(A::NoApplicationProtocol) => {
                SyncError::NotTruce {
                    addr,
                    why: "the server does not speak the truce/1 protocol (is it a truce-server?)".into(),
                }
            }
            rustls::Error::PeerIncompatible(_) | rustls::Error::AlertReceived(A::ProtocolVersion) => {
                SyncError::NotTruce { addr, why: "the server does not offer TLS 1.3".into() }
            }
            other => SyncError::Unreachable { addr, why: format!("TLS failed ({other})") },
        }
    }

    /// A failure reading a message.
    pub(super) fn from_wire(addr: &str, host: &str, e: WireError) -> SyncError {
        match e {
            WireError::Frame(truce_shared::frame::FrameError::Io(io)) => SyncError::from_io(addr, host, &io),
            other => SyncError::protocol(addr, format!("it sent something this agent cannot read: {other}")),
        }
    }
}

fn describe_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => {
            "connection refused (is truce-server running there? check the address given to `link` or --server)".into()
        }
        K::TimedOut => "timed out".into(),
        K::HostUnreachable | K::NetworkUnreachable => "no route to the server (check the network link)".into(),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            format!("the connection was cut ({e})")
        }
        _ => e.to_string(),
    }
}

/// A message's name, for protocol errors.
pub(super) fn message_name(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "Hello",
        Message::Welcome { .. } => "Welcome",
        Message::Refuse { .. } => "Refuse",
        Message::Submit { .. } => "Submit",
        Message::Ack { .. } => "Ack",
        Message::Bye => "Bye",
        Message::Prove { .. } => "Prove",
        Message::Proofs { .. } => "Proofs",
        Message::Offer { .. } => "Offer",
        Message::Upload { .. } => "Upload",
        Message::Chunk { .. } => "Chunk",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_absent_link_or_server_is_worth_retrying() {
        let addr = "h:1";
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!SyncError::from_io(addr, "h", &io).needs_person());
        assert!(!SyncError::Ended { addr: addr.into(), reason: "x".into() }.needs_person());
        let tls = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        for person in [
            SyncError::from_io(
                addr,
                "h",
                &tls(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRevoked)),
            ),
            SyncError::from_io(addr, "h", &tls(rustls::Error::NoApplicationProtocol)),
            SyncError::from_io(
                addr,
                "h",
                &tls(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
            ),
            SyncError::BadReceipt { batch: 1, why: "x".into() },
            SyncError::TooLarge { seq: 1, len: 2, max_frame: 1 },
            SyncError::OldServer { addr: addr.into(), reason: "protocol 1".into() },
            SyncError::LogKeyChanged { addr: addr.into(), pinned: "a".into(), shown: "b".into() },
            SyncError::LogKeyNotExpected { addr: addr.into(), expected: "a".into(), shown: "b".into() },
            SyncError::Refused { addr: addr.into(), reason: "protocol 9".into() },
            SyncError::protocol(addr, "x"),
        ] {
            assert!(person.needs_person(), "{person}");
            assert!(person.to_string().contains("stay pending"), "{person}");
        }
        let alarm = SyncError::Alarm { what: "x".into(), evidence: "y".into() };
        assert!(alarm.needs_person() && alarm.to_string().starts_with("ALARM: "));
    }
}
