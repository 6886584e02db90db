//! The device registry: enrolment (which promotes quarantined reports),
//! revocation, and the list.

use truce_shared::log::{Entry, Event};
use truce_shared::Bytes32;

use super::sql::args;
use super::{incidents, log, quota, DeviceError, Store, StoreError, REASON_EQUIVOCATION, REASON_UNKNOWN_DEVICE};

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
    /// Reports of its key recorded after this time (unix ms) are disputed.
    pub compromised_since: Option<i64>,
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
    /// The time from which its reports are disputed, as now in force.
    pub compromised_since: Option<i64>,
}

impl Store {
    /// Enrols a device (or renames it) and promotes its reports quarantined
    /// as "unknown device" to verified, except those at a forked seq, which
    /// stay quarantined with the reason "equivocation". Promotion is two
    /// statements whatever the number of reports (one UPDATE marks the
    /// forked ones, one promotes the rest); only incident grouping then
    /// goes report by report.
    pub fn add_device(&mut self, key: &Bytes32, name: Option<&str>, now: i64) -> Result<Enrolled, DeviceError> {
        self.write(|tx| {
            let existing = tx.one("SELECT revoked_at FROM devices WHERE key = ?1", args![key], |r| r.opt_i64(0))?;
            let new = match existing {
                Some(Some(revoked_at)) => return Ok(Err(DeviceError::Revoked { revoked_at })),
                Some(None) => {
                    tx.execute("UPDATE devices SET name = COALESCE(?2, name) WHERE key = ?1", args![key, name])?;
                    false
                }
                None => {
                    tx.execute("INSERT INTO devices (key, name, added_at) VALUES (?1, ?2, ?3)", args![key, name, now])?;
                    true
                }
            };
            if new || name.is_some() {
                let name = name.unwrap_or_default().to_string();
                log::append(tx, &Entry::new(now, Event::Enrolled { device: *key, name }))?;
            }
            let held_back = tx.execute(
                "UPDATE reports SET reason = ?2
                 WHERE device = ?1 AND status = 'quarantined' AND reason = ?3
                   AND seq IN (SELECT seq FROM forks WHERE device = ?1)",
                args![key, REASON_EQUIVOCATION, REASON_UNKNOWN_DEVICE],
            )?;
            // The promoted reports join their incidents, oldest observation
            // first (the order does not change the groups, only their ids).
            let promoted = tx.all(
                "UPDATE reports SET status = 'verified', reason = NULL
                 WHERE device = ?1 AND status = 'quarantined' AND reason = ?2 RETURNING observed_at, n, id, length(body)",
                args![key, REASON_UNKNOWN_DEVICE],
                |r| Ok((r.i64(0)?, r.i64(1)?, r.b32(2)?, r.i64(3)?.max(0) as u64)),
            )?;
            let bytes = promoted.iter().map(|p| p.3).sum();
            quota::unquarantine(tx, key, promoted.len() as u64, bytes)?;
            let mut promoted: Vec<(i64, i64, Bytes32)> = promoted.into_iter().map(|(o, n, id, _)| (o, n, id)).collect();
            promoted.sort_unstable();
            for (_, _, id) in &promoted {
                log::append(tx, &Entry::new(now, Event::Promoted { id: *id }))?;
            }
            let window = incidents::load_window(tx)?;
            for &(_, n, _) in &promoted {
                incidents::on_verified(tx, n, window)?;
            }
            Ok(Ok(Enrolled { new, promoted: promoted.len() as u64, held_back }))
        })?
    }

    /// Revokes an enrolled device: reports of its key received from now on
    /// are quarantined ("revoked"). Reports already verified stay verified:
    /// they arrived while the key was trusted; but with `compromised_since`
    /// (the key may have been in other hands from then on) those recorded
    /// after it are disputed. A device already revoked takes a
    /// `compromised_since` earlier than the one it has (the earliest
    /// suspicion stands; a later one never clears a dispute). Each change
    /// is a `Revoked` entry in the log, with its `since`.
    pub fn revoke_device(
        &mut self,
        key: &Bytes32,
        reason: Option<&str>,
        now: i64,
        compromised_since: Option<i64>,
    ) -> Result<Revoked, DeviceError> {
        self.write(|tx| {
            let existing =
                tx.one("SELECT revoked_at, compromised_since FROM devices WHERE key = ?1", args![key], |r| {
                    Ok((r.opt_i64(0)?, r.opt_i64(1)?))
                })?;
            Ok(match existing {
                None => Err(DeviceError::NotEnrolled),
                Some((Some(revoked_at), since)) => {
                    if reason.is_some() {
                        tx.execute("UPDATE devices SET revoke_reason = ?2 WHERE key = ?1", args![key, reason])?;
                    }
                    let mut in_force = since;
                    if let Some(t) = compromised_since.filter(|t| since.is_none_or(|s| *t < s)) {
                        tx.execute("UPDATE devices SET compromised_since = ?2 WHERE key = ?1", args![key, t])?;
                        log::append(tx, &Entry::new(now, Event::Revoked { device: *key, since: Some(t) }))?;
                        in_force = Some(t);
                    }
                    Ok(Revoked { revoked_at, new: false, compromised_since: in_force })
                }
                Some((None, _)) => {
                    tx.execute(
                        "UPDATE devices SET revoked_at = ?2, revoke_reason = ?3, compromised_since = ?4 WHERE key = ?1",
                        args![key, now, reason, compromised_since],
                    )?;
                    log::append(tx, &Entry::new(now, Event::Revoked { device: *key, since: compromised_since }))?;
                    Ok(Revoked { revoked_at: now, new: true, compromised_since })
                }
            })
        })?
    }

    /// Every device, in enrolment order.
    pub fn devices(&self) -> Result<Vec<Device>, StoreError> {
        self.read(|tx| {
            tx.all(
                "SELECT key, name, added_at, revoked_at, revoke_reason, compromised_since FROM devices
                 ORDER BY added_at, key",
                &[],
                |r| {
                    Ok(Device {
                        key: r.b32(0)?,
                        name: r.opt_string(1)?,
                        added_at: r.i64(2)?,
                        revoked_at: r.opt_i64(3)?,
                        revoke_reason: r.opt_string(4)?,
                        compromised_since: r.opt_i64(5)?,
                    })
                },
            )
        })
    }
}
