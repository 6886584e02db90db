//! Who has been heard from: each device's last session and last report,
//! so a coordinator sees who has gone quiet (a monitor silent for a day
//! may be detained, or a laptop lost).
//!
//! A session is recorded under the device key its Hello names, with the
//! client certificate it came through: the key is the laptop's claim, the
//! certificate what the mission CA vouches for.

use truce_shared::Bytes32;

use super::sql::args;
use super::{CertId, Store, StoreError, Tx};

/// One session opened, as the writer records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The device key the Hello named.
    pub device: Bytes32,
    /// The client certificate of the session.
    pub cert: Option<CertId>,
    /// The address it came from.
    pub peer: String,
}

/// What the server last heard from one enrolled (or revoked) device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The device key.
    pub device: Bytes32,
    /// Its last session, unix ms.
    pub last_session_at: Option<i64>,
    /// The certificate and address of that session.
    pub last_session_cert: Option<CertId>,
    /// Where it came from.
    pub last_session_peer: Option<String>,
    /// When the last of its reports arrived, unix ms.
    pub last_report_at: Option<i64>,
    /// Its reports that arrived since the time asked for.
    pub reports_since: u64,
}

impl Activity {
    /// The later of its last session and its last report: when it was last
    /// heard from.
    pub fn last_heard_at(&self) -> Option<i64> {
        self.last_session_at.max(self.last_report_at)
    }
}

impl Store {
    /// Records a session opened, inside the writer's transaction.
    pub fn record_contact(tx: &Tx<'_>, c: &Contact, now: i64) -> Result<(), StoreError> {
        tx.execute(
            "INSERT INTO contacts (device, last_session_at, cert_serial, cert_subject, peer) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (device) DO UPDATE SET last_session_at = excluded.last_session_at,
                 cert_serial = excluded.cert_serial, cert_subject = excluded.cert_subject, peer = excluded.peer",
            args![&c.device, now, c.cert.as_ref().map(|c| &c.serial), c.cert.as_ref().map(|c| &c.subject), &c.peer],
        )?;
        Ok(())
    }

    /// Every registered device's activity, in enrolment order, counting
    /// the reports that arrived at or after `since` (unix ms).
    pub fn activity(&self, since: i64) -> Result<Vec<Activity>, StoreError> {
        self.read(|tx| {
            tx.all(
                "SELECT d.key, c.last_session_at, c.cert_serial, c.cert_subject, c.peer,
                        (SELECT MAX(r.received_at) FROM reports r WHERE r.device = d.key),
                        (SELECT COUNT(*) FROM reports r WHERE r.device = d.key AND r.received_at >= ?1)
                 FROM devices d LEFT JOIN contacts c ON c.device = d.key
                 ORDER BY d.added_at, d.key",
                args![since],
                |r| {
                    Ok(Activity {
                        device: r.b32(0)?,
                        last_session_at: r.opt_i64(1)?,
                        last_session_cert: match (r.opt_string(2)?, r.opt_string(3)?) {
                            (Some(serial), Some(subject)) => Some(CertId { serial, subject }),
                            _ => None,
                        },
                        last_session_peer: r.opt_string(4)?,
                        last_report_at: r.opt_i64(5)?,
                        reports_since: r.i64(6)?.max(0) as u64,
                    })
                },
            )
        })
    }
}
