//! Incidents as the store keeps them: each report placed in its group as
//! it is stored, promoted or superseded, and every group rebuilt when the
//! window changes. The rule itself (window, event positions, distances) is
//! [`crate::incidents`].

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{Store, StoreError};
use crate::incidents::{distance_m, Incident, Window};

impl Store {
    /// The incident window in force (stored in the database).
    pub fn incident_window(&self) -> Result<Window, StoreError> {
        load_window(&self.conn)
    }

    /// Changes the incident window and groups every report again under it.
    /// Returns the number of incidents.
    pub fn set_incident_window(&mut self, window: Window) -> Result<u64, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        save_window(window, &tx)?;
        let n = rebuild(&tx, window)?;
        tx.commit()?;
        Ok(n)
    }

    /// The incidents corroborated by at least `min_devices` devices, most
    /// corroborated first, then newest.
    pub fn incidents(&self, min_devices: u64) -> Result<Vec<Incident>, StoreError> {
        let mut q = self.conn.prepare(
            "SELECT id, category, first_at, last_at, reports, devices FROM incidents
             WHERE devices >= ?1 ORDER BY devices DESC, last_at DESC, id",
        )?;
        let rows = q.query_map([min_devices.min(i64::MAX as u64) as i64], |r| {
            Ok(Incident {
                id: r.get(0)?,
                category: r.get(1)?,
                first_at: r.get(2)?,
                last_at: r.get(3)?,
                reports: r.get::<_, i64>(4)? as u64,
                devices: r.get::<_, i64>(5)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Reads the window stored in the database (the defaults if none).
pub(super) fn load_window(tx: &Connection) -> Result<Window, StoreError> {
    let get = |name: &str| -> Result<Option<i64>, StoreError> {
        Ok(tx.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| r.get(0)).optional()?)
    };
    let d = Window::default();
    let minutes = get("incident_window_minutes")?.and_then(|v| u32::try_from(v).ok()).unwrap_or(d.minutes);
    let metres = get("incident_radius_m")?.and_then(|v| u32::try_from(v).ok()).unwrap_or(d.metres);
    Ok(Window::new(minutes, metres).unwrap_or(d))
}

/// Stores the window; the caller regroups.
pub(super) fn save_window(window: Window, tx: &Transaction<'_>) -> Result<(), StoreError> {
    let mut q = tx.prepare_cached("INSERT OR REPLACE INTO settings (name, value) VALUES (?1, ?2)")?;
    q.execute(params!["incident_window_minutes", window.minutes])?;
    q.execute(params!["incident_radius_m", window.metres])?;
    Ok(())
}

/// One report as grouping sees it.
pub(super) struct Member {
    /// Its arrival number; 0 for a report not stored yet (rowids start at 1).
    pub n: i64,
    pub device: Vec<u8>,
    pub category: String,
    pub observed_at: i64,
    /// The event position (see [`crate::incidents::event_position`]).
    pub ev: (f64, f64),
}

/// The category that is not an event, so never part of an incident.
const NOTHING_OBSERVED: &str = "nothing-observed";

fn member(tx: &Transaction<'_>, n: i64) -> Result<Option<Member>, StoreError> {
    Ok(tx
        .prepare_cached("SELECT device, category, observed_at, ev_lat, ev_lon FROM reports WHERE n = ?1")?
        .query_row([n], |r| {
            Ok(Member { n, device: r.get(0)?, category: r.get(1)?, observed_at: r.get(2)?, ev: (r.get(3)?, r.get(4)?) })
        })
        .optional()?)
}

/// Report `n`, already stored, has just become verified (promoted on
/// enrolment, or grouped again): a version it amends leaves its incident,
/// and it joins one unless it is itself superseded or says nothing was
/// observed.
pub(super) fn on_verified(tx: &Transaction<'_>, n: i64, window: Window) -> Result<(), StoreError> {
    let amended: Option<i64> = tx
        .prepare_cached(
            "SELECT a.n FROM reports r JOIN reports a ON a.id = r.amends AND a.device = r.device
             WHERE r.n = ?1 AND a.incident IS NOT NULL",
        )?
        .query_row([n], |r| r.get(0))
        .optional()?;
    if let Some(a) = amended {
        leave(tx, a, window)?;
    }
    let eligible: bool = tx
        .prepare_cached(
            "SELECT r.category != 'nothing-observed' AND NOT EXISTS (
                 SELECT 1 FROM reports x WHERE x.amends = r.id AND +x.device = r.device AND x.status = 'verified')
             FROM reports r WHERE r.n = ?1 AND r.status = 'verified' AND r.incident IS NULL",
        )?
        .query_row([n], |r| r.get(0))
        .optional()?
        .unwrap_or(false);
    if eligible {
        if let Some(m) = member(tx, n)? {
            join(tx, &m, window)?;
        }
    }
    Ok(())
}

/// A report about to be stored as verified, with `id`: the incident it
/// joins (created, or merged from the incidents it bridges), or `None`
/// when it takes no part (nothing observed, or a verified amendment of it
/// arrived first). The caller stores the report with that incident in the
/// same INSERT, then calls [`stored_verified`]. This is the ingest path: the
/// report's fields are in hand, so nothing is read back or updated twice.
pub(super) fn place_new(
    tx: &Transaction<'_>,
    id: &[u8],
    m: &Member,
    window: Window,
) -> Result<Option<i64>, StoreError> {
    if m.category == NOTHING_OBSERVED {
        return Ok(None);
    }
    let superseded = tx
        .prepare_cached("SELECT 1 FROM reports WHERE amends = ?1 AND +device = ?2 AND status = 'verified' LIMIT 1")?
        .exists(params![id, m.device])?;
    if superseded {
        return Ok(None);
    }
    target(tx, m, window).map(|p| Some(p.incident))
}

/// After [`place_new`]'s report is stored as number `n`: it is counted into
/// its incident, and the version it amends (same device) leaves its own.
pub(super) fn stored_verified(
    tx: &Transaction<'_>,
    incident: Option<i64>,
    m: &Member,
    amends: Option<&[u8]>,
    window: Window,
) -> Result<(), StoreError> {
    if let Some(t) = incident {
        count_in(tx, t, m)?;
    }
    if let Some(a) = amends {
        let amended: Option<i64> = tx
            .prepare_cached("SELECT n FROM reports WHERE id = ?1 AND device = ?2 AND incident IS NOT NULL")?
            .query_row(params![a, m.device], |r| r.get(0))
            .optional()?;
        if let Some(a) = amended {
            leave(tx, a, window)?;
        }
    }
    Ok(())
}

/// Puts stored report `m` into the incident of every report close to it.
fn join(tx: &Transaction<'_>, m: &Member, window: Window) -> Result<i64, StoreError> {
    let t = target(tx, m, window)?.incident;
    tx.prepare_cached("UPDATE reports SET incident = ?1 WHERE n = ?2")?.execute([t, m.n])?;
    count_in(tx, t, m)?;
    Ok(t)
}

/// The incident `m` belongs in: the incidents of every report close to it,
/// merged into the oldest, or a new incident of its own. `m` itself is not
/// counted in it yet ([`count_in`]).
/// Where grouping put a report, and the work it took.
struct Placement {
    /// The incident.
    incident: i64,
    /// Candidate incidents and stored reports looked at (at most
    /// [`MAX_GROUPING_ROWS`]); read by the test that holds the bound.
    #[cfg_attr(not(test), allow(dead_code))]
    examined: usize,
}

/// The most candidate incidents and stored reports the grouping of one new
/// report looks at. Reports crowded into the window's box but beyond its
/// distance (the box's corners) would otherwise make every new report scan
/// all of them, with the one writer waiting. When the bound is reached the
/// report is placed by what was seen so far, and a warning is logged.
pub const MAX_GROUPING_ROWS: usize = 4096;

fn target(tx: &Transaction<'_>, m: &Member, window: Window) -> Result<Placement, StoreError> {
    // Incidents whose time span and latitude span come within the window
    // of the event are the only candidates; in each, the first member
    // within the distance settles it. The latitude bound is safe: a degree
    // of latitude is at least 111,195 m of great circle; the longitude
    // bound widens it by 1/cos(latitude), and is left out where it would
    // wrap the antimeridian or near a pole.
    let dlat = f64::from(window.metres) / 111_000.0 + 1e-6;
    let (from, to) = (m.observed_at.saturating_sub(window.millis()), m.observed_at.saturating_add(window.millis()));
    let (south, north) = (m.ev.0 - dlat, m.ev.0 + dlat);
    let cos = south.abs().max(north.abs()).min(90.0).to_radians().cos();
    let dlon = if cos > 0.01 { dlat / cos } else { 360.0 };
    let (west, east) = if m.ev.1 - dlon >= -180.0 && m.ev.1 + dlon <= 180.0 {
        (m.ev.1 - dlon, m.ev.1 + dlon)
    } else {
        (-361.0, 361.0)
    };
    let candidates: Vec<i64> = tx
        .prepare_cached(
            "SELECT id FROM incidents
             WHERE category = ?1 AND last_at >= ?2 AND first_at <= ?3 AND max_lat >= ?4 AND min_lat <= ?5
             LIMIT ?6",
        )?
        .query_map(params![m.category, from, to, south, north, MAX_GROUPING_ROWS as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut examined = candidates.len();
    let mut near: Vec<i64> = Vec::new();
    'candidates: for incident in candidates {
        let mut q = tx.prepare_cached(
            "SELECT ev_lat, ev_lon FROM reports
             WHERE incident = ?1 AND observed_at BETWEEN ?2 AND ?3 AND ev_lat BETWEEN ?4 AND ?5
                   AND ev_lon BETWEEN ?6 AND ?7 AND n != ?8",
        )?;
        let mut rows = q.query(params![incident, from, to, south, north, west, east, m.n])?;
        while let Some(r) = rows.next()? {
            if examined >= MAX_GROUPING_ROWS {
                tracing::warn!(
                    rows = examined,
                    category = %m.category,
                    "incident grouping stopped at its bound: this report is placed by the incidents seen so far"
                );
                break 'candidates;
            }
            examined += 1;
            if distance_m(m.ev, (r.get(0)?, r.get(1)?)) <= f64::from(window.metres) {
                near.push(incident);
                break;
            }
        }
    }
    let target = match near.iter().min() {
        Some(&t) => t,
        None => {
            tx.prepare_cached(
                "INSERT INTO incidents (category, first_at, last_at, reports, devices, min_lat, max_lat)
                 VALUES (?1, ?2, ?2, 0, 0, ?3, ?3)",
            )?
            .execute(params![m.category, m.observed_at, m.ev.0])?;
            tx.last_insert_rowid()
        }
    };
    for &other in near.iter().filter(|&&i| i != target) {
        tx.prepare_cached("UPDATE reports SET incident = ?1 WHERE incident = ?2")?.execute([target, other])?;
        tx.prepare_cached(
            "INSERT OR IGNORE INTO incident_devices (incident, device)
             SELECT ?1, device FROM incident_devices WHERE incident = ?2",
        )?
        .execute([target, other])?;
        tx.prepare_cached("DELETE FROM incident_devices WHERE incident = ?1")?.execute([other])?;
        tx.prepare_cached(
            "UPDATE incidents SET
                 first_at = MIN(first_at, (SELECT first_at FROM incidents WHERE id = ?2)),
                 last_at = MAX(last_at, (SELECT last_at FROM incidents WHERE id = ?2)),
                 reports = reports + (SELECT reports FROM incidents WHERE id = ?2),
                 min_lat = MIN(min_lat, (SELECT min_lat FROM incidents WHERE id = ?2)),
                 max_lat = MAX(max_lat, (SELECT max_lat FROM incidents WHERE id = ?2)),
                 devices = (SELECT COUNT(*) FROM incident_devices WHERE incident = ?1)
             WHERE id = ?1",
        )?
        .execute([target, other])?;
        tx.prepare_cached("DELETE FROM incidents WHERE id = ?1")?.execute([other])?;
    }
    Ok(Placement { incident: target, examined })
}

/// Counts `m`, whose row already names incident `t`, into that incident's
/// device set, report count and spans. The device count goes up only when
/// the device is new to the incident, so nothing is counted over again.
fn count_in(tx: &Transaction<'_>, t: i64, m: &Member) -> Result<(), StoreError> {
    let new_device = tx
        .prepare_cached("INSERT OR IGNORE INTO incident_devices (incident, device) VALUES (?1, ?2)")?
        .execute(params![t, m.device])?;
    tx.prepare_cached(
        "UPDATE incidents SET first_at = MIN(first_at, ?2), last_at = MAX(last_at, ?2), reports = reports + 1,
             min_lat = MIN(min_lat, ?3), max_lat = MAX(max_lat, ?3), devices = devices + ?4
         WHERE id = ?1",
    )?
    .execute(params![t, m.observed_at, m.ev.0, new_device as i64])?;
    Ok(())
}

/// Takes report `n` out of its incident (a later version superseded it).
/// What remains may have been held together only by `n`, so the rest of
/// the incident is grouped again.
fn leave(tx: &Transaction<'_>, n: i64, window: Window) -> Result<(), StoreError> {
    let incident: Option<i64> =
        tx.prepare_cached("SELECT incident FROM reports WHERE n = ?1")?.query_row([n], |r| r.get(0))?;
    let Some(incident) = incident else { return Ok(()) };
    let rest: Vec<i64> = tx
        .prepare_cached("SELECT n FROM reports WHERE incident = ?1 AND n != ?2 ORDER BY observed_at, n")?
        .query_map([incident, n], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    dissolve(tx, incident)?;
    for r in rest {
        if let Some(m) = member(tx, r)? {
            join(tx, &m, window)?;
        }
    }
    Ok(())
}

fn dissolve(tx: &Transaction<'_>, incident: i64) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE reports SET incident = NULL WHERE incident = ?1")?.execute([incident])?;
    tx.prepare_cached("DELETE FROM incident_devices WHERE incident = ?1")?.execute([incident])?;
    tx.prepare_cached("DELETE FROM incidents WHERE id = ?1")?.execute([incident])?;
    Ok(())
}

/// Groups every stored report again under `window` (after the window
/// changed, or after a migration). Returns the number of incidents.
pub(super) fn rebuild(tx: &Transaction<'_>, window: Window) -> Result<u64, StoreError> {
    tx.execute_batch(
        "UPDATE reports SET incident = NULL WHERE incident IS NOT NULL;
         DELETE FROM incident_devices; DELETE FROM incidents;",
    )?;
    let ns: Vec<i64> = tx
        .prepare("SELECT n FROM reports WHERE status = 'verified' ORDER BY observed_at, n")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for n in ns {
        on_verified(tx, n, window)?;
    }
    tx.execute("INSERT OR REPLACE INTO settings (name, value) VALUES ('regroup', 0)", [])?;
    Ok(tx.query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get::<_, i64>(0))? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verified report of `category` stored straight into its incident,
    /// as the writer would.
    fn stored(tx: &Transaction<'_>, n: i64, ev: (f64, f64), at: i64, window: Window) -> i64 {
        let m = Member { n: 0, device: vec![n as u8; 32], category: "shelling".into(), observed_at: at, ev };
        let incident = target(tx, &m, window).unwrap().incident;
        tx.execute(
            "INSERT INTO reports (n, id, device, seq, prev, recorded_at, observed_at, category, lat, lon, body,
                                  signature, status, received_at, ev_lat, ev_lon, incident)
             VALUES (?1, ?2, ?3, 1, x'00', ?4, ?4, 'shelling', ?5, ?6, x'00', x'00', 'verified', ?4, ?5, ?6, ?7)",
            params![n, n.to_be_bytes().repeat(4), vec![n as u8; 32], at, ev.0, ev.1, incident],
        )
        .unwrap();
        let stored = Member { n, ..m };
        count_in(tx, incident, &stored).unwrap();
        incident
    }

    #[test]
    fn grouping_one_report_looks_at_no_more_than_its_bound() {
        let mut store = Store::open_in_memory().unwrap();
        let tx = store.begin().unwrap();
        let window = Window::default();
        let at = 1_795_338_900_000;
        let (lat, lon): (f64, f64) = (48.0, 37.8);
        // Four crowds in the corners of the window's box around (lat, lon):
        // 1.7 km north or south and 1.7 km east or west, so 2.4 km away,
        // beyond the 2 km distance, yet inside every bound the queries
        // use. Each crowd is one incident of many reports.
        let dlat = 1700.0 / 111_195.0;
        let dlon = dlat / lat.to_radians().cos();
        let per_corner = MAX_GROUPING_ROWS / 4 + 100;
        let mut n = 0;
        for (sy, sx) in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
            for _ in 0..per_corner {
                n += 1;
                stored(&tx, n, (lat + sy * dlat, lon + sx * dlon), at, window);
            }
        }
        let incidents: i64 = tx.query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0)).unwrap();
        assert_eq!(incidents, 4, "each corner's crowd is one incident");
        // A report in the middle is near none of them: without a bound it
        // would look at every report of every crowd.
        let m = Member { n: 0, device: vec![0; 32], category: "shelling".into(), observed_at: at, ev: (lat, lon) };
        let p = target(&tx, &m, window).unwrap();
        assert!(4 * per_corner > MAX_GROUPING_ROWS);
        assert_eq!(p.examined, MAX_GROUPING_ROWS, "grouping stops at its bound");
        let members: i64 =
            tx.query_row("SELECT COUNT(*) FROM reports WHERE incident = ?1", [p.incident], |r| r.get(0)).unwrap();
        assert_eq!(members, 0, "and the report starts an incident of its own");
        // One more report in a crowd still joins it at once.
        let m = Member { ev: (lat + dlat, lon + dlon), ..m };
        let p = target(&tx, &m, window).unwrap();
        assert!(p.examined <= 8, "a report beside a crowd looks at {} rows", p.examined);
    }
}
