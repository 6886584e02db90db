//! `stats`: what the store holds, by outcome, by device, and the health of
//! each device's chain (gaps and forks).
//!
//! A gap is a seq the server has not seen between 1 and the highest it has:
//! a report still on its way, lost, or withheld. A fork is two different
//! reports at one seq: the device key was used twice (equivocation). A
//! broken link is a report whose `prev` is not the id of the report the
//! server holds at the seq before it: a fork whose other branch the server
//! has not seen.

use std::collections::BTreeMap;

use serde::Serialize;

use super::sql::args;
use super::{incidents, Store, StoreError, Tx};

/// Gap ranges listed per device; the total is always counted.
const MAX_LISTED_GAPS: usize = 100;

/// Everything `stats` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Stored reports by status.
    pub reports: StatusCounts,
    /// Quarantined reports by reason ("unknown device", "revoked", …).
    pub quarantined_by_reason: BTreeMap<String, u64>,
    /// Rejected reports by reason: equivocations kept as evidence, and
    /// every arrival of bytes that failed verification.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Bytes that failed verification.
    pub rejections: RejectionCounts,
    /// The device registry.
    pub devices: DeviceCounts,
    /// Forks (two reports at one device seq) recorded.
    pub forks: u64,
    /// Each device that has reports stored, in key order.
    pub chains: Vec<Chain>,
    /// Incidents: reports of one event grouped.
    pub incidents: IncidentCounts,
    /// Batches a disk quota refused, by the limit's flag name
    /// (`max-reports-per-key`, …): each also logged when it happened.
    pub quota_refusals: BTreeMap<String, u64>,
}

/// Incidents and how they are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IncidentCounts {
    /// All incidents.
    pub total: u64,
    /// Incidents reported by two or more devices.
    pub corroborated: u64,
    /// The largest corroboration count.
    pub max_corroboration: u64,
    /// The window reports are grouped by.
    pub window: crate::incidents::Window,
}

/// Reports by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct StatusCounts {
    /// Verified.
    pub verified: u64,
    /// Quarantined.
    pub quarantined: u64,
    /// Rejected but kept as evidence (equivocations).
    pub rejected: u64,
}

/// Verification failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RejectionCounts {
    /// Different byte strings refused.
    pub distinct: u64,
    /// Arrivals, counting repeats.
    pub arrivals: u64,
}

/// The device registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DeviceCounts {
    /// Enrolled and not revoked.
    pub enrolled: u64,
    /// Revoked.
    pub revoked: u64,
}

/// One device's chain as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// The device key, hex.
    pub device: String,
    /// Its enrolled name.
    pub name: Option<String>,
    /// "enrolled", "revoked" or "unknown".
    pub registry: &'static str,
    /// Distinct seqs held.
    pub seqs: u64,
    /// The highest seq held.
    pub head_seq: u64,
    /// The first missing seq ranges (inclusive), at most 100.
    pub gaps: Vec<(u64, u64)>,
    /// How many seqs are missing in all.
    pub missing: u64,
    /// Seqs with two or more different reports.
    pub forks: u64,
    /// Reports at or after its first fork (both branches, and everything
    /// the device sent after it), and reports recorded after the time its
    /// key was revoked as compromised since: disputed.
    pub disputed: u64,
    /// Reports whose `prev` is not the id held at the seq before.
    pub broken_links: u64,
}

fn by_reason(tx: &Tx<'_>, sql: &str, into: &mut BTreeMap<String, u64>) -> Result<(), StoreError> {
    tx.each(sql, &[], &mut |r| {
        *into.entry(r.opt_string(0)?.unwrap_or_default()).or_default() += r.opt_i64(1)?.unwrap_or(0).max(0) as u64;
        Ok(())
    })
}

impl Store {
    /// Counts and chain health, read in one consistent snapshot: the
    /// counts agree with each other even while servers commit.
    pub fn stats(&self) -> Result<Stats, StoreError> {
        self.read(|tx| {
            let count = |sql: &str| tx.count(sql, &[]);
            let mut quarantined_by_reason = BTreeMap::new();
            by_reason(
                tx,
                "SELECT reason, COUNT(*) FROM reports WHERE status = 'quarantined' GROUP BY reason",
                &mut quarantined_by_reason,
            )?;
            let mut rejected_by_reason = BTreeMap::new();
            by_reason(
                tx,
                "SELECT reason, COUNT(*) FROM reports WHERE status = 'rejected' GROUP BY reason",
                &mut rejected_by_reason,
            )?;
            by_reason(
                tx,
                "SELECT reason, CAST(SUM(times) AS BIGINT) FROM rejections GROUP BY reason",
                &mut rejected_by_reason,
            )?;
            Ok(Stats {
                reports: StatusCounts {
                    verified: count("SELECT COUNT(*) FROM reports WHERE status = 'verified'")?,
                    quarantined: count("SELECT COUNT(*) FROM reports WHERE status = 'quarantined'")?,
                    rejected: count("SELECT COUNT(*) FROM reports WHERE status = 'rejected'")?,
                },
                quarantined_by_reason,
                rejected_by_reason,
                rejections: RejectionCounts {
                    distinct: count("SELECT COUNT(*) FROM rejections")?,
                    arrivals: count("SELECT CAST(SUM(times) AS BIGINT) FROM rejections")?,
                },
                devices: DeviceCounts {
                    enrolled: count("SELECT COUNT(*) FROM devices WHERE revoked_at IS NULL")?,
                    revoked: count("SELECT COUNT(*) FROM devices WHERE revoked_at IS NOT NULL")?,
                },
                forks: count("SELECT COUNT(*) FROM forks")?,
                chains: chains(tx)?,
                incidents: IncidentCounts {
                    total: count("SELECT COUNT(*) FROM incidents")?,
                    corroborated: count("SELECT COUNT(*) FROM incidents WHERE devices >= 2")?,
                    max_corroboration: count("SELECT MAX(devices) FROM incidents")?,
                    window: incidents::load_window(tx)?,
                },
                quota_refusals: super::quota::refusals(tx)?,
            })
        })
    }
}

fn chains(tx: &Tx<'_>) -> Result<Vec<Chain>, StoreError> {
    let keys = tx.all("SELECT DISTINCT device FROM reports ORDER BY device", &[], |r| Ok(r.bytes(0)?.to_vec()))?;
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let reg = tx.one("SELECT name, revoked_at FROM devices WHERE key = ?1", args![&key], |r| {
            Ok((r.opt_string(0)?, r.opt_i64(1)?))
        })?;
        let (name, registry) = match reg {
            None => (None, "unknown"),
            Some((name, None)) => (name, "enrolled"),
            Some((name, Some(_))) => (name, "revoked"),
        };
        let mut chain = Chain {
            device: hex::encode(&key),
            name,
            registry,
            seqs: 0,
            head_seq: 0,
            gaps: Vec::new(),
            missing: 0,
            forks: tx.count("SELECT COUNT(DISTINCT seq) FROM forks WHERE device = ?1", args![&key])?,
            disputed: tx.count(
                "SELECT COUNT(*) FROM reports WHERE device = ?1
                   AND (seq >= (SELECT MIN(seq) FROM forks WHERE device = ?1)
                        OR recorded_at > (SELECT compromised_since FROM devices WHERE key = ?1))",
                args![&key],
            )?,
            broken_links: tx.count(
                "SELECT COUNT(*) FROM reports r JOIN reports p
                   ON p.device = r.device AND p.seq = r.seq - 1 AND p.status != 'rejected'
                 WHERE r.device = ?1 AND r.status != 'rejected' AND r.seq > 1 AND r.prev != p.id",
                args![&key],
            )?,
        };
        let mut expect: u64 = 1;
        // seq holds the u64's bit pattern: non-negative values first, then
        // the "negative" ones, which are the seqs above i64::MAX, in order.
        for sql in [
            "SELECT DISTINCT seq FROM reports WHERE device = ?1 AND seq >= 0 ORDER BY seq",
            "SELECT DISTINCT seq FROM reports WHERE device = ?1 AND seq < 0 ORDER BY seq",
        ] {
            tx.stream(sql, args![&key], &mut |row| {
                let s = row.i64(0)? as u64;
                if s > expect {
                    chain.missing += s - expect;
                    if chain.gaps.len() < MAX_LISTED_GAPS {
                        chain.gaps.push((expect, s - 1));
                    }
                }
                chain.seqs += 1;
                chain.head_seq = s;
                expect = s.saturating_add(1);
                Ok(())
            })?;
        }
        out.push(chain);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_forks_and_counts() {
        let mut s = Store::open_in_memory().unwrap();
        let dev = [3u8; 32];
        s.write(|tx| {
            let ins = |id: u8, seq: i64, prev: u8, status: &str| {
                tx.execute(
                    "INSERT INTO reports (id, device, seq, prev, recorded_at, observed_at, category, lat, lon, body,
                                          signature, status, reason, received_at)
                     VALUES (?1, ?2, ?3, ?4, 0, 0, 'drone', 0, 0, ?6, ?6, ?5, NULL, 0)",
                    args![&[id; 32], &dev, seq, &[prev; 32], status, &[][..]],
                )
            };
            ins(1, 1, 0, "quarantined")?;
            ins(2, 2, 1, "quarantined")?;
            ins(5, 5, 9, "quarantined")?;
            ins(6, 6, 5, "quarantined")?;
            ins(7, 9, 8, "quarantined")?;
            ins(8, 2, 1, "rejected")?;
            tx.execute(
                "INSERT INTO forks (device, seq, kept, rejected, detected_at) VALUES (?1, 2, ?2, ?3, 0)",
                args![&dev, &[2u8; 32], &[8u8; 32]],
            )
        })
        .unwrap();
        let st = s.stats().unwrap();
        assert_eq!(st.reports, StatusCounts { verified: 0, quarantined: 5, rejected: 1 });
        let c = &st.chains[0];
        assert_eq!((c.seqs, c.head_seq, c.missing), (5, 9, 4));
        assert_eq!(c.gaps, vec![(3, 4), (7, 8)]);
        assert_eq!((c.forks, c.broken_links, c.registry), (1, 0, "unknown"));
        assert_eq!(st.forks, 1);
    }
}
