//! Disk quotas: how much one device key, one client certificate and the
//! quarantine may hold, and the running counters that tell.
//!
//! The counters live in the `usage` table and change in the transaction
//! that stores what they count, so they are never ahead of or behind the
//! rows. The writer reads each counter a batch touches once (a batch is
//! usually one device's, through one certificate), counts in memory, and
//! writes the changed counters back before the batch's outcomes are
//! returned: a few statements a batch, never a COUNT over the reports.
//! Every write transaction holds the database's write lock (SQLite's, or
//! PostgreSQL's advisory lock), so two servers on one PostgreSQL read and
//! update the counters in turn and the quotas hold exactly for both.
//!
//! What counts:
//! - `key`: every report stored under a device key (verified, quarantined,
//!   or kept as equivocation evidence), and its body bytes;
//! - `cert`: every report and every refused body stored from a
//!   connection through one client certificate (the bytes kept);
//! - `quarantined`: reports quarantined now, per key and in total (the
//!   empty owner); a report verified at enrolment leaves the count;
//! - `refused`: how many batches each quota refused, for `stats`.
//!
//! Quotas are enforced on what arrives over the network; `import` (the
//! operator's own act, with a bundle in hand) is counted but not refused.

use std::collections::HashMap;

use truce_shared::limits;

use super::sql::{args, Arg};
use super::{StoreError, Tx};

/// The scope of a counter: the `usage.scope` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Scope {
    /// Stored reports per device key.
    Key,
    /// Stored reports and refused bodies per client certificate serial.
    Cert,
    /// Quarantined reports, per key and in total (empty owner).
    Quarantined,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Cert => "cert",
            Scope::Quarantined => "quarantined",
        }
    }
}

/// The `usage.scope` of quota refusals, counted by limit name.
const REFUSED: &str = "refused";

/// How much each owner may store. Every field is a named limit with its
/// default in [`truce_shared::limits`] and a `run` flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Most reports stored under one device key.
    pub max_reports_per_key: u64,
    /// Most body bytes stored under one device key.
    pub max_bytes_per_key: u64,
    /// Most reports and refused bodies stored through one certificate.
    pub max_reports_per_cert: u64,
    /// Most bytes stored through one certificate.
    pub max_bytes_per_cert: u64,
    /// Most reports quarantined at once, all keys together.
    pub max_quarantined: u64,
    /// Most reports of one key quarantined at once.
    pub max_quarantined_per_key: u64,
    /// The bytes of a refused body that are kept (its id, the hash of the
    /// whole body, is kept beside them).
    pub rejected_prefix: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            max_reports_per_key: limits::MAX_REPORTS_PER_KEY,
            max_bytes_per_key: limits::MAX_BYTES_PER_KEY,
            max_reports_per_cert: limits::MAX_REPORTS_PER_CERT,
            max_bytes_per_cert: limits::MAX_BYTES_PER_CERT,
            max_quarantined: limits::MAX_QUARANTINED,
            max_quarantined_per_key: limits::MAX_QUARANTINED_PER_KEY,
            rejected_prefix: limits::REJECTED_PREFIX,
        }
    }
}

/// A quota that refused a batch: which, and the words for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaHit {
    /// The limit's flag name without dashes (`max-reports-per-key`).
    pub limit: &'static str,
    /// The sentence the client is sent in `Refuse`.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    reports: i64,
    bytes: i64,
    changed: bool,
}

/// The counters one batch touches, read once and written back once.
#[derive(Debug, Default)]
pub(super) struct Usage {
    counters: HashMap<(Scope, Vec<u8>), Counter>,
}

/// One addition to check and make: `(scope, owner, bytes)`.
pub(super) type Charge<'a> = (Scope, &'a [u8], u64);

impl Usage {
    fn counter(&mut self, tx: &Tx<'_>, scope: Scope, owner: &[u8]) -> Result<&mut Counter, StoreError> {
        let k = (scope, owner.to_vec());
        if !self.counters.contains_key(&k) {
            let found = tx.one(
                "SELECT reports, bytes FROM usage WHERE scope = ?1 AND owner = ?2",
                args![scope.as_str(), owner],
                |r| Ok((r.i64(0)?, r.i64(1)?)),
            )?;
            let (reports, bytes) = found.unwrap_or((0, 0));
            self.counters.insert(k.clone(), Counter { reports, bytes, changed: false });
        }
        self.counters.get_mut(&k).ok_or(StoreError::Stopped)
    }

    /// Checks that each charge fits its quota; if all do, counts them all
    /// and returns `None`, else counts nothing and names the first quota
    /// that does not fit.
    pub(super) fn charge(
        &mut self,
        tx: &Tx<'_>,
        quotas: &Quotas,
        charges: &[Charge<'_>],
    ) -> Result<Option<QuotaHit>, StoreError> {
        for &(scope, owner, bytes) in charges {
            let c = *self.counter(tx, scope, owner)?;
            let (reports, total) = (c.reports.max(0) as u64, c.bytes.max(0) as u64);
            let hit = match scope {
                Scope::Key if reports >= quotas.max_reports_per_key => {
                    Some(("max-reports-per-key", format!("this device key has {reports} reports stored")))
                }
                Scope::Key if total.saturating_add(bytes) > quotas.max_bytes_per_key => {
                    Some(("max-bytes-per-key", format!("this device key has {total} bytes of reports stored")))
                }
                Scope::Cert if reports >= quotas.max_reports_per_cert => Some((
                    "max-reports-per-cert",
                    format!("this laptop's certificate has sent {reports} reports that are stored"),
                )),
                Scope::Cert if total.saturating_add(bytes) > quotas.max_bytes_per_cert => Some((
                    "max-bytes-per-cert",
                    format!("this laptop's certificate has sent {total} bytes that are stored"),
                )),
                Scope::Quarantined if owner.is_empty() && reports >= quotas.max_quarantined => Some((
                    "max-quarantined",
                    format!("the server holds {reports} quarantined reports of keys it does not trust"),
                )),
                Scope::Quarantined if !owner.is_empty() && reports >= quotas.max_quarantined_per_key => Some((
                    "max-quarantined-per-key",
                    format!("this device key, which the server does not trust, has {reports} reports quarantined"),
                )),
                _ => None,
            };
            if let Some((limit, what)) = hit {
                let reason = format!(
                    "quota reached ({limit}): {what}; nothing more is stored until the server's operator acts, \
                     and the reports stay on the laptop"
                );
                return Ok(Some(QuotaHit { limit, reason }));
            }
        }
        for &(scope, owner, bytes) in charges {
            let c = self.counter(tx, scope, owner)?;
            c.reports += 1;
            c.bytes = c.bytes.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
            c.changed = true;
        }
        Ok(None)
    }

    /// Counts without checking (an import, or a refused body's certificate
    /// when quotas are not enforced).
    pub(super) fn add(&mut self, tx: &Tx<'_>, charges: &[Charge<'_>]) -> Result<(), StoreError> {
        for &(scope, owner, bytes) in charges {
            let c = self.counter(tx, scope, owner)?;
            c.reports += 1;
            c.bytes = c.bytes.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
            c.changed = true;
        }
        Ok(())
    }

    /// Writes the changed counters back, inside `tx`.
    pub(super) fn flush(self, tx: &Tx<'_>) -> Result<(), StoreError> {
        for ((scope, owner), c) in self.counters {
            if c.changed {
                set(tx, scope.as_str(), &owner, c.reports, c.bytes)?;
            }
        }
        Ok(())
    }
}

fn set(tx: &Tx<'_>, scope: &str, owner: &[u8], reports: i64, bytes: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO usage (scope, owner, reports, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (scope, owner) DO UPDATE SET reports = excluded.reports, bytes = excluded.bytes",
        &[Arg::Text(scope), Arg::Blob(owner), Arg::Int(reports), Arg::Int(bytes)],
    )?;
    Ok(())
}

/// Counts one refusal by `limit`, for `stats`.
pub(super) fn count_refusal(tx: &Tx<'_>, limit: &str) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO usage (scope, owner, reports, bytes) VALUES (?1, ?2, 1, 0)
         ON CONFLICT (scope, owner) DO UPDATE SET reports = usage.reports + 1",
        &[Arg::Text(REFUSED), Arg::Blob(limit.as_bytes())],
    )?;
    Ok(())
}

/// Takes reports verified at enrolment out of the quarantine counters:
/// `n` reports of `bytes` body bytes of `key`.
pub(super) fn unquarantine(tx: &Tx<'_>, key: &[u8], n: u64, bytes: u64) -> Result<(), StoreError> {
    if n == 0 {
        return Ok(());
    }
    let (n, bytes) = (i64::try_from(n).unwrap_or(i64::MAX), i64::try_from(bytes).unwrap_or(i64::MAX));
    for owner in [key, &[][..]] {
        tx.execute(
            "UPDATE usage SET reports = CASE WHEN reports > ?3 THEN reports - ?3 ELSE 0 END,
                              bytes = CASE WHEN bytes > ?4 THEN bytes - ?4 ELSE 0 END
             WHERE scope = ?1 AND owner = ?2",
            &[Arg::Text(Scope::Quarantined.as_str()), Arg::Blob(owner), Arg::Int(n), Arg::Int(bytes)],
        )?;
    }
    Ok(())
}

/// Quota refusals so far, by limit name.
pub(super) fn refusals(tx: &Tx<'_>) -> Result<std::collections::BTreeMap<String, u64>, StoreError> {
    let rows = tx.all("SELECT owner, reports FROM usage WHERE scope = ?1", args![REFUSED], |r| {
        Ok((String::from_utf8_lossy(r.bytes(0)?).into_owned(), r.i64(1)?.max(0) as u64))
    })?;
    Ok(rows.into_iter().collect())
}

/// Counts again what the store holds (after `migrate` added rows): the
/// counters of keys, certificates (stored reports; refused bodies do not
/// record theirs) and quarantine. Quota refusals are kept.
pub(super) fn recount(tx: &Tx<'_>) -> Result<(), StoreError> {
    let (cert, empty, sum) = match tx.backend() {
        super::Backend::Sqlite => ("CAST(cert_serial AS BLOB)", "x''", "sum(length(body))"),
        super::Backend::Postgres => ("convert_to(cert_serial, 'UTF8')", "''::BYTEA", "sum(length(body))::BIGINT"),
    };
    tx.execute("DELETE FROM usage WHERE scope IN ('key', 'cert', 'quarantined')", &[])?;
    for sql in [
        format!("INSERT INTO usage (scope, owner, reports, bytes) SELECT 'key', device, count(*), {sum} FROM reports GROUP BY device"),
        format!(
            "INSERT INTO usage (scope, owner, reports, bytes) SELECT 'cert', {cert}, count(*), {sum} FROM reports
             WHERE cert_serial IS NOT NULL GROUP BY cert_serial"
        ),
        format!(
            "INSERT INTO usage (scope, owner, reports, bytes) SELECT 'quarantined', device, count(*), {sum} FROM reports
             WHERE status = 'quarantined' GROUP BY device"
        ),
        format!(
            "INSERT INTO usage (scope, owner, reports, bytes) SELECT 'quarantined', {empty}, count(*), coalesce({sum}, 0)
             FROM reports WHERE status = 'quarantined'"
        ),
    ] {
        tx.execute(&sql, &[])?;
    }
    Ok(())
}
