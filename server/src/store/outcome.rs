//! DESIGN §5's outcome rules: what becomes of each report of a batch.

use std::collections::HashMap;

use truce_shared::log::{Entry, Event, Outcome};
use truce_shared::wire::Status;
use truce_shared::Bytes32;

use super::incidents;
use super::log;
use super::quota::{self, Charge, QuotaHit, Quotas, Scope, Usage};
use super::sql::{args, fixed};
use super::{CertId, ReportStatus, Store, StoreError, Tx};
use crate::incidents::Window;
use crate::verify::Checked;

/// The reason a report of a key that is not enrolled is quarantined.
pub const REASON_UNKNOWN_DEVICE: &str = "unknown device";
/// The reason a report of a revoked key is quarantined.
pub const REASON_REVOKED: &str = "revoked";
/// The reason a second, different report at a device's seq is rejected
/// (and the reason a quarantined fork is held back at enrolment).
pub const REASON_EQUIVOCATION: &str = "equivocation";

/// How a batch reached the server: what its log entries say.
#[derive(Debug, Clone)]
pub enum Arrival {
    /// Through this client certificate.
    Tls(std::sync::Arc<CertId>),
    /// From a bundle file with this SHA-256.
    Import(Bytes32),
}

impl Arrival {
    fn cert(&self) -> Option<&CertId> {
        match self {
            Arrival::Tls(c) => Some(c),
            Arrival::Import(_) => None,
        }
    }

    fn via(&self) -> truce_shared::log::Via {
        match self {
            Arrival::Tls(c) => log::via(Some(&c.serial), None),
            Arrival::Import(b) => log::via(None, Some(b)),
        }
    }
}

impl Store {
    /// Applies DESIGN §5's outcome rules to one batch inside `tx` and
    /// returns each report's status, in order. The writer calls it for every
    /// batch queued from every connection, then commits once (group
    /// commit); nothing is durable, or may be acknowledged, before that
    /// commit returns.
    ///
    /// `now` is the `received_at` of every report stored, `arrival` how the
    /// batch came. Every report stored and every refused body appends its
    /// log entry in `tx`; each result names the entry that records it (a
    /// duplicate, the earlier one).
    pub fn apply(tx: &Tx<'_>, batch: &[Checked], now: i64, arrival: &Arrival) -> Result<Vec<Outcome>, StoreError> {
        let applied = Store::apply_within(tx, batch, now, arrival, &Quotas::default())?;
        match applied.refused {
            None => Ok(applied.outcomes),
            Some(hit) => Err(StoreError::Config(hit.reason)),
        }
    }

    /// [`Store::apply`] within `quotas` (enforced on batches that came
    /// over the network; an import is only counted). The first report
    /// that a quota has no room for ends the batch: the reports before it
    /// are stored (their outcomes returned), it and those after it are
    /// not, and [`Applied::refused`] names the quota. Its counters change
    /// in `tx`, with the rows they count.
    pub fn apply_within(
        tx: &Tx<'_>,
        batch: &[Checked],
        now: i64,
        arrival: &Arrival,
        quotas: &Quotas,
    ) -> Result<Applied, StoreError> {
        if batch.is_empty() {
            return Ok(Applied { outcomes: Vec::new(), refused: None });
        }
        let window = incidents::load_window(tx)?;
        // A batch is usually one device's: its enrolment is read once.
        let mut devices = HashMap::new();
        let mut usage = Usage::default();
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut refused = None;
        let mut ctx = Ctx { tx, now, window, devices: &mut devices, arrival, quotas, usage: &mut usage };
        for item in batch {
            match apply_one(&mut ctx, item)? {
                Step::Done(status, entry) => outcomes.push(Outcome { id: item.id(), status, entry }),
                Step::Refused(hit) => {
                    quota::count_refusal(tx, hit.limit)?;
                    refused = Some(hit);
                    break;
                }
            }
        }
        usage.flush(tx)?;
        Ok(Applied { outcomes, refused })
    }
}

/// What [`Store::apply_within`] did with a batch.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The outcome of each report stored, in order: all of them, unless a
    /// quota ended the batch.
    pub outcomes: Vec<Outcome>,
    /// The quota that ended the batch, if one did.
    pub refused: Option<QuotaHit>,
}

/// What became of one report.
enum Step {
    /// Its status, and the log entry that records it.
    Done(Status, u64),
    /// A quota has no room for it: nothing written.
    Refused(QuotaHit),
}

/// What every report of a batch is applied with.
struct Ctx<'a, 'b> {
    tx: &'a Tx<'b>,
    now: i64,
    window: Window,
    devices: &'a mut HashMap<Bytes32, Enrolment>,
    arrival: &'a Arrival,
    quotas: &'a Quotas,
    usage: &'a mut Usage,
}

impl Ctx<'_, '_> {
    /// Checks and counts `charges` against the quotas (only counts them
    /// for an import).
    fn charge(&mut self, charges: &[Charge<'_>]) -> Result<Option<QuotaHit>, StoreError> {
        match self.arrival {
            Arrival::Tls(_) => self.usage.charge(self.tx, self.quotas, charges),
            Arrival::Import(_) => self.usage.add(self.tx, charges).map(|()| None),
        }
    }
}

/// Enrolment as the batch found it: `None` unknown, `Some(None)` enrolled,
/// `Some(Some(t))` revoked at `t`. Nothing changes it within a transaction
/// (enrolment and revocation are commands, not the writer).
type Enrolment = Option<Option<i64>>;

/// The outcome rules of DESIGN §5 for one report, inside the writer's
/// transaction. The order of the checks is the rule:
/// 1. verification failed → Rejected(reason), the bytes kept in `rejections`;
/// 2. the same id is stored → Duplicate, nothing written (a report kept as
///    rejected evidence answers Rejected again, so a resend gets the answer
///    the first send got);
/// 3. the device has a different report at this seq → Rejected
///    ("equivocation"), stored as evidence, the fork recorded;
/// 4. the key is enrolled → Accepted (verified); unknown → Quarantined
///    ("unknown device"); revoked → Quarantined ("revoked");
/// 5. before anything of it is written (after 1's repeat and 2, which cost
///    nothing), the quotas ([`Quotas`]) must have room for it, else
///    [`Step::Refused`] ends the batch.
fn apply_one(ctx: &mut Ctx<'_, '_>, item: &Checked) -> Result<Step, StoreError> {
    let (tx, now, window, arrival) = (ctx.tx, ctx.now, ctx.window, ctx.arrival);
    let cert = arrival.cert();
    let v = match item {
        Checked::Invalid { id, report, error } => {
            let reason = error.reason();
            tracing::warn!(id = %hex::encode(&id[..8]), %reason, "report rejected");
            // Kept: the id (the hash of the whole body) and a prefix.
            let kept = &report.body[..report.body.len().min(ctx.quotas.rejected_prefix)];
            let device = truce_shared::signing::claimed_device(&report.body).ok();
            // The same bytes sent again bump a counter instead of adding a
            // row (or an entry): a replayed forgery costs one row, however
            // often it comes.
            let earlier = tx.one(
                "SELECT entry FROM rejections WHERE id = ?1 AND signature = ?2",
                args![&id[..], &report.signature.0[..]],
                |r| r.opt_i64(0),
            )?;
            if let Some(entry) = earlier {
                tx.execute(
                    "UPDATE rejections SET times = times + 1, last_received_at = ?3 WHERE id = ?1 AND signature = ?2",
                    args![&id[..], &report.signature.0[..], now],
                )?;
                let entry = entry.ok_or_else(|| StoreError::Log("a rejection without its log entry".into()))?;
                return Ok(Step::Done(Status::Rejected(reason), entry as u64));
            }
            if let Some(c) = cert {
                if let Some(hit) = ctx.charge(&[(Scope::Cert, c.serial.as_bytes(), kept.len() as u64)])? {
                    return Ok(Step::Refused(hit));
                }
            }
            let event = Event::Refused { id: *id, device, reason: reason.clone(), via: arrival.via() };
            let entry = log::append(tx, &Entry::new(now, event))?;
            tx.execute(
                "INSERT INTO rejections (id, signature, device, reason, body, body_len, first_received_at,
                                         last_received_at, entry)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
                args![
                    &id[..],
                    &report.signature.0[..],
                    device.as_ref(),
                    &reason,
                    kept,
                    report.body.len() as i64,
                    now,
                    entry as i64
                ],
            )?;
            return Ok(Step::Done(Status::Rejected(reason), entry));
        }
        Checked::Valid(v) => v,
    };
    let id = v.id;
    let env = &v.envelope;
    let seq = env.seq as i64;
    // One look at the reports stored at this device and seq settles rules
    // 2 and 3: an id is the hash of a body that names its device and seq,
    // so this very report, if stored, is among them; any other one not
    // rejected is the report this one forks from.
    let mut kept: Option<Vec<u8>> = None;
    let mut earlier: Option<(Status, Option<i64>)> = None;
    tx.each(
        "SELECT id, status, reason, entry FROM reports WHERE device = ?1 AND seq = ?2 ORDER BY n",
        args![&env.device, seq],
        &mut |r| {
            let stored_id = r.bytes(0)?;
            let status = ReportStatus::parse(r.str(1)?);
            if stored_id == id {
                let answer = if status == Some(ReportStatus::Rejected) {
                    Status::Rejected(r.opt_string(2)?.unwrap_or_else(|| REASON_EQUIVOCATION.into()))
                } else {
                    Status::Duplicate
                };
                earlier = Some((answer, r.opt_i64(3)?));
            } else if kept.is_none() && status != Some(ReportStatus::Rejected) {
                kept = Some(stored_id.to_vec());
            }
            Ok(())
        },
    )?;
    if let Some((answer, entry)) = earlier {
        let entry = entry.ok_or_else(|| StoreError::Log("a stored report without its log entry".into()))?;
        return Ok(Step::Done(answer, entry as u64));
    }
    let (status, reason) = if kept.is_some() {
        (ReportStatus::Rejected, Some(REASON_EQUIVOCATION))
    } else {
        let revoked_at = match ctx.devices.get(&env.device) {
            Some(&known) => known,
            None => {
                let found: Enrolment =
                    tx.one("SELECT revoked_at FROM devices WHERE key = ?1", args![&env.device], |r| r.opt_i64(0))?;
                ctx.devices.insert(env.device, found);
                found
            }
        };
        match revoked_at {
            None => (ReportStatus::Quarantined, Some(REASON_UNKNOWN_DEVICE)),
            Some(Some(_)) => (ReportStatus::Quarantined, Some(REASON_REVOKED)),
            Some(None) => (ReportStatus::Verified, None),
        }
    };
    // Room for it, before anything is written.
    let bytes = v.signed.body.len() as u64;
    let mut charges: Vec<Charge<'_>> = vec![(Scope::Key, &env.device[..], bytes)];
    if let Some(c) = cert {
        charges.push((Scope::Cert, c.serial.as_bytes(), bytes));
    }
    if status == ReportStatus::Quarantined {
        charges.push((Scope::Quarantined, &env.device[..], bytes));
        charges.push((Scope::Quarantined, &[], bytes));
    }
    if let Some(hit) = ctx.charge(&charges)? {
        return Ok(Step::Refused(hit));
    }
    let mut fork: Option<Bytes32> = None;
    if let Some(kept) = kept {
        tracing::warn!(
            device = %truce_shared::signing::fingerprint(&env.device),
            seq = env.seq,
            "equivocation: a second report at one seq; both kept as evidence"
        );
        let added = tx.execute(
            "INSERT INTO forks (device, seq, kept, rejected, detected_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO NOTHING",
            args![&env.device, seq, &kept, &id, now],
        )?;
        fork = (added > 0).then(|| fixed::<32>(&kept, 0)).transpose()?;
    }
    let obs = &env.observation;
    let (ev_lat, ev_lon) = crate::incidents::event_position(obs);
    let category = obs.category.name().to_string();
    // A verified report finds its incident before it is stored, so the one
    // INSERT writes it whole: no read back, no second write of the row.
    let member = incidents::Member {
        n: 0,
        device: env.device.to_vec(),
        category,
        observed_at: obs.observed_at,
        ev: (ev_lat, ev_lon),
    };
    let incident =
        if status == ReportStatus::Verified { incidents::place_new(tx, &id, &member, window)? } else { None };
    let event =
        Event::Report { id, device: env.device, seq: env.seq, status: log::stored(status, reason), via: arrival.via() };
    let entry = log::append(tx, &Entry::new(now, event))?;
    if let Some(kept) = fork {
        let event = Event::Fork { device: env.device, seq: env.seq, kept, rejected: id };
        log::append(tx, &Entry::new(now, event))?;
    }
    tx.execute(
        "INSERT INTO reports (id, device, seq, prev, recorded_at, observed_at, observed_until, category, lat, lon,
                              amends, body, signature, status, reason, received_at, ev_lat, ev_lon, incident,
                              cert_serial, cert_subject, entry)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
                 ?22)",
        args![
            &id,
            &env.device,
            seq,
            &env.prev,
            env.recorded_at,
            obs.observed_at,
            obs.observed_until,
            &member.category,
            obs.position.lat,
            obs.position.lon,
            env.amends.as_ref(),
            &v.signed.body,
            &v.signed.signature.0,
            status.as_str(),
            reason,
            now,
            ev_lat,
            ev_lon,
            incident,
            cert.map(|c| &c.serial),
            cert.map(|c| &c.subject),
            entry as i64,
        ],
    )?;
    super::evidence::index(tx, &id, &obs.attachments)?;
    if status == ReportStatus::Verified {
        incidents::stored_verified(tx, incident, &member, env.amends.as_ref().map(|a| &a[..]), window)?;
    }
    Ok(Step::Done(log::stored(status, reason).status(), entry))
}
