//! The device registry: enrolment (which promotes quarantined reports),
//! revocation, and the list.

use rusqlite::{params, OptionalExtension, TransactionBehavior};
use truce_shared::Bytes32;

use super::reports::blob32;
use super::{incidents, DeviceError, Store, StoreError, REASON_EQUIVOCATION, REASON_UNKNOWN_DEVICE};

/// One enrolled (or revoked) device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The Ed25519 public key.
    pub key: Bytes32,
    /// A name for people ("laptop-07").
    pub name: Option<String>,
    /// When it was enrolled, unix ms.
    pub added_at: i64,
    /// When it was revoked, unix ms.
    pub revoked_at: Option<i64>,
    /// Why it was revoked.
    pub revoke_reason: Option<String>,
}

/// What `device add` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrolled {
    /// False if the key was already enrolled (the name may have changed).
    pub new: bool,
    /// Quarantined ("unknown device") reports now verified.
    pub promoted: u64,
    /// Quarantined reports left quarantined because their seq is forked.
    pub held_back: u64,
}

/// What `device revoke` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// When the revocation took effect, unix ms (the first revocation's).
    pub revoked_at: i64,
    /// False if the key was already revoked.
    pub new: bool,
}

impl Store {
    /// Enrols a device (or renames it) and promotes its reports quarantined
    /// as "unknown device" to verified, except those at a forked seq, which
    /// stay quarantined with the reason "equivocation".
    pub fn add_device(&mut self, key: &Bytes32, name: Option<&str>, now: i64) -> Result<Enrolled, DeviceError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<Option<i64>> =
            tx.query_row("SELECT revoked_at FROM devices WHERE key = ?1", [&key[..]], |r| r.get(0)).optional()?;
        let new = match existing {
            Some(Some(revoked_at)) => return Err(DeviceError::Revoked { revoked_at }),
            Some(None) => {
                tx.execute("UPDATE devices SET name = COALESCE(?2, name) WHERE key = ?1", params![&key[..], name])?;
                false
            }
            None => {
                tx.execute(
                    "INSERT INTO devices (key, name, added_at) VALUES (?1, ?2, ?3)",
                    params![&key[..], name, now],
                )?;
                true
            }
        };
        let held_back = tx.execute(
            "UPDATE reports SET reason = ?2
             WHERE device = ?1 AND status = 'quarantined' AND reason = ?3
               AND seq IN (SELECT seq FROM forks WHERE device = ?1)",
            params![&key[..], REASON_EQUIVOCATION, REASON_UNKNOWN_DEVICE],
        )?;
        let promoted: Vec<i64> = tx
            .prepare(
                "UPDATE reports SET status = 'verified', reason = NULL
                 WHERE device = ?1 AND status = 'quarantined' AND reason = ?2 RETURNING n",
            )?
            .query_map(params![&key[..], REASON_UNKNOWN_DEVICE], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        // The promoted reports join their incidents, oldest observation
        // first (the order does not change the groups, only their ids).
        let window = incidents::load_window(&tx)?;
        let ordered: Vec<i64> = {
            let mut q = tx.prepare_cached("SELECT observed_at FROM reports WHERE n = ?1")?;
            let mut with_time = promoted
                .iter()
                .map(|&n| Ok((q.query_row([n], |r| r.get::<_, i64>(0))?, n)))
                .collect::<Result<Vec<_>, rusqlite::Error>>()?;
            with_time.sort_unstable();
            with_time.into_iter().map(|(_, n)| n).collect()
        };
        for n in ordered {
            incidents::on_verified(&tx, n, window)?;
        }
        let promoted = promoted.len();
        tx.commit()?;
        Ok(Enrolled { new, promoted: promoted as u64, held_back: held_back as u64 })
    }

    /// Revokes an enrolled device: reports of its key received from now on
    /// are quarantined ("revoked"). Reports already verified stay verified:
    /// they arrived while the key was trusted.
    pub fn revoke_device(&mut self, key: &Bytes32, reason: Option<&str>, now: i64) -> Result<Revoked, DeviceError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<Option<i64>> =
            tx.query_row("SELECT revoked_at FROM devices WHERE key = ?1", [&key[..]], |r| r.get(0)).optional()?;
        let revoked = match existing {
            None => return Err(DeviceError::NotEnrolled),
            Some(Some(revoked_at)) => {
                if reason.is_some() {
                    tx.execute("UPDATE devices SET revoke_reason = ?2 WHERE key = ?1", params![&key[..], reason])?;
                }
                Revoked { revoked_at, new: false }
            }
            Some(None) => {
                tx.execute(
                    "UPDATE devices SET revoked_at = ?2, revoke_reason = ?3 WHERE key = ?1",
                    params![&key[..], now, reason],
                )?;
                Revoked { revoked_at: now, new: true }
            }
        };
        tx.commit()?;
        Ok(revoked)
    }

    /// Every device, in enrolment order.
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        let mut q = self
            .conn
            .prepare("SELECT key, name, added_at, revoked_at, revoke_reason FROM devices ORDER BY added_at, key")?;
        let rows = q.query_map([], |r| {
            Ok(Device {
                key: blob32(r, 0)?,
                name: r.get(1)?,
                added_at: r.get(2)?,
                revoked_at: r.get(3)?,
                revoke_reason: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
