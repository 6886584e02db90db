//! Incidents: reports of one event, grouped as they arrive (DESIGN §5).
//!
//! Two reports belong to one incident when they have the same category,
//! were observed within the window's time of each other (default 10
//! minutes) and their event positions lie within the window's distance
//! (default 2 km). The event position is the estimated one where the
//! monitor gave a bearing and a distance (the distance range's midpoint
//! along the bearing), else the monitor's own position. The relation is
//! chained: a report close to members of two incidents merges them. So the
//! incidents are the connected groups of that relation, which do not depend
//! on the order reports arrive in: a bundle carried in days later joins the
//! incident it would have joined on time.
//!
//! Which reports take part: verified ones, except "nothing observed" (not
//! an event) and versions superseded by a verified amendment from the same
//! device (the latest version speaks for the report). A quarantined report
//! joins when its device is enrolled.
//!
//! The corroboration count of an incident is the number of distinct devices
//! in it: one device reporting twice counts once, and an exact duplicate is
//! never stored twice, so never counts.

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;
use truce_shared::Observation;

use crate::store::StoreError;

/// Mean Earth radius in metres (IUGG), for great-circle distances.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// The default time window: 10 minutes.
pub const DEFAULT_WINDOW_MINUTES: u32 = 10;
/// The default distance window: 2 km.
pub const DEFAULT_RADIUS_M: u32 = 2_000;

/// The largest time window accepted: one day.
pub const MAX_WINDOW_MINUTES: u32 = 24 * 60;
/// The largest distance window accepted: 100 km.
pub const MAX_RADIUS_M: u32 = 100_000;

/// How close two reports must be to belong to one incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Observation times at most this many minutes apart.
    pub minutes: u32,
    /// Event positions at most this many metres apart.
    pub metres: u32,
}

impl Default for Window {
    fn default() -> Self {
        Window { minutes: DEFAULT_WINDOW_MINUTES, metres: DEFAULT_RADIUS_M }
    }
}

/// A window outside its limits.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// Zero or more than a day.
    #[error("the incident time window must be 1 to {MAX_WINDOW_MINUTES} minutes, not {0}")]
    Minutes(u32),
    /// Zero or more than 100 km.
    #[error("the incident distance must be 1 to {MAX_RADIUS_M} metres, not {0}")]
    Metres(u32),
}

impl Window {
    /// A window, checked against its limits.
    pub fn new(minutes: u32, metres: u32) -> Result<Window, WindowError> {
        if minutes == 0 || minutes > MAX_WINDOW_MINUTES {
            return Err(WindowError::Minutes(minutes));
        }
        if metres == 0 || metres > MAX_RADIUS_M {
            return Err(WindowError::Metres(metres));
        }
        Ok(Window { minutes, metres })
    }

    fn millis(self) -> i64 {
        i64::from(self.minutes) * 60_000
    }

    /// Reads the window stored in the database (the defaults if none).
    pub(crate) fn load(tx: &rusqlite::Connection) -> Result<Window, StoreError> {
        let get = |name: &str| -> Result<Option<i64>, StoreError> {
            Ok(tx.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| r.get(0)).optional()?)
        };
        let d = Window::default();
        let minutes = get("incident_window_minutes")?.and_then(|v| u32::try_from(v).ok()).unwrap_or(d.minutes);
        let metres = get("incident_radius_m")?.and_then(|v| u32::try_from(v).ok()).unwrap_or(d.metres);
        Ok(Window::new(minutes, metres).unwrap_or(d))
    }

    /// Stores the window; the caller regroups.
    pub(crate) fn save(self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let mut q = tx.prepare_cached("INSERT OR REPLACE INTO settings (name, value) VALUES (?1, ?2)")?;
        q.execute(params!["incident_window_minutes", self.minutes])?;
        q.execute(params!["incident_radius_m", self.metres])?;
        Ok(())
    }
}

/// Where the event was, estimated from the monitor's position, bearing and
/// distance: the midpoint of the distance range along the bearing, on a
/// sphere. `None` unless both bearing and distance were given.
pub fn estimated_position(o: &Observation) -> Option<(f64, f64)> {
    let bearing = o.bearing_deg?;
    let (min, max) = o.distance_m?;
    let d = (f64::from(min) + f64::from(max)) / 2.0;
    Some(destination(o.position.lat, o.position.lon, f64::from(bearing), d))
}

/// The position used for grouping: estimated where possible, else the
/// monitor's.
pub fn event_position(o: &Observation) -> (f64, f64) {
    estimated_position(o).unwrap_or((o.position.lat, o.position.lon))
}

/// The point `metres` from (lat, lon) along `bearing_deg` (great circle),
/// longitude normalised to [-180, 180].
fn destination(lat: f64, lon: f64, bearing_deg: f64, metres: f64) -> (f64, f64) {
    let (phi1, lambda1, theta) = (lat.to_radians(), lon.to_radians(), bearing_deg.to_radians());
    let delta = metres / EARTH_RADIUS_M;
    let sin_phi2 = (phi1.sin() * delta.cos() + phi1.cos() * delta.sin() * theta.cos()).clamp(-1.0, 1.0);
    let phi2 = sin_phi2.asin();
    let lambda2 = lambda1 + (theta.sin() * delta.sin() * phi1.cos()).atan2(delta.cos() - phi1.sin() * sin_phi2);
    let mut lon2 = lambda2.to_degrees();
    if lon2 > 180.0 {
        lon2 -= 360.0;
    } else if lon2 < -180.0 {
        lon2 += 360.0;
    }
    (phi2.to_degrees(), lon2)
}

/// Great-circle distance in metres (haversine).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let dp = p2 - p1;
    let dl = (b.1 - a.1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// One report as grouping sees it.
pub(crate) struct Member {
    /// Its arrival number; 0 for a report not stored yet (rowids start at 1).
    pub n: i64,
    pub device: Vec<u8>,
    pub category: String,
    pub observed_at: i64,
    /// The event position (see [`event_position`]).
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
pub(crate) fn on_verified(tx: &Transaction<'_>, n: i64, window: Window) -> Result<(), StoreError> {
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
pub(crate) fn place_new(
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
    target(tx, m, window).map(Some)
}

/// After [`place_new`]'s report is stored as number `n`: it is counted into
/// its incident, and the version it amends (same device) leaves its own.
pub(crate) fn stored_verified(
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
    let t = target(tx, m, window)?;
    tx.prepare_cached("UPDATE reports SET incident = ?1 WHERE n = ?2")?.execute([t, m.n])?;
    count_in(tx, t, m)?;
    Ok(t)
}

/// The incident `m` belongs in: the incidents of every report close to it,
/// merged into the oldest, or a new incident of its own. `m` itself is not
/// counted in it yet ([`count_in`]).
fn target(tx: &Transaction<'_>, m: &Member, window: Window) -> Result<i64, StoreError> {
    // Incidents whose time span and latitude span come within the window
    // of the event are the only candidates; in each, the first member
    // within the distance settles it. The latitude bound is safe: a degree
    // of latitude is at least 111,195 m of great circle.
    let dlat = f64::from(window.metres) / 111_000.0 + 1e-6;
    let (from, to) = (m.observed_at.saturating_sub(window.millis()), m.observed_at.saturating_add(window.millis()));
    let (south, north) = (m.ev.0 - dlat, m.ev.0 + dlat);
    let candidates: Vec<i64> = tx
        .prepare_cached(
            "SELECT id FROM incidents
             WHERE category = ?1 AND last_at >= ?2 AND first_at <= ?3 AND max_lat >= ?4 AND min_lat <= ?5",
        )?
        .query_map(params![m.category, from, to, south, north], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut near: Vec<i64> = Vec::new();
    for incident in candidates {
        let mut q = tx.prepare_cached(
            "SELECT ev_lat, ev_lon FROM reports
             WHERE incident = ?1 AND observed_at BETWEEN ?2 AND ?3 AND ev_lat BETWEEN ?4 AND ?5 AND n != ?6",
        )?;
        let mut rows = q.query(params![incident, from, to, south, north, m.n])?;
        while let Some(r) = rows.next()? {
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
    Ok(target)
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
pub(crate) fn rebuild(tx: &Transaction<'_>, window: Window) -> Result<u64, StoreError> {
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

/// One incident, for `stats` and `incidents`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Incident {
    /// The incident id (exports carry it).
    pub id: i64,
    /// Kebab-case category.
    pub category: String,
    /// Earliest observation, unix ms.
    pub first_at: i64,
    /// Latest observation, unix ms.
    pub last_at: i64,
    /// Reports in it.
    pub reports: u64,
    /// Distinct devices: the corroboration count.
    pub devices: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearing_and_distance_move_the_event() {
        // 1 km due north of the equator is 1/111.2 of a degree of latitude.
        let (lat, lon) = destination(0.0, 30.0, 0.0, 1_000.0);
        assert!((lat - 0.008_993).abs() < 1e-5 && (lon - 30.0).abs() < 1e-9, "{lat} {lon}");
        let (lat, lon) = destination(48.0, 37.8, 90.0, 5_000.0);
        assert!((distance_m((48.0, 37.8), (lat, lon)) - 5_000.0).abs() < 0.5);
        assert!(lon > 37.8);
        let (_, lon) = destination(0.0, 179.99, 90.0, 10_000.0);
        assert!((-180.0..=-179.0).contains(&lon), "wraps the antimeridian: {lon}");
    }

    #[test]
    fn distances_are_great_circle() {
        assert!((distance_m((48.0, 37.0), (48.0, 37.0))).abs() < 1e-9);
        let d = distance_m((0.0, 0.0), (0.0, 1.0));
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
    }

    #[test]
    fn windows_have_limits() {
        assert!(Window::new(0, 2000).is_err());
        assert!(Window::new(10, 0).is_err());
        assert!(Window::new(MAX_WINDOW_MINUTES + 1, 2000).is_err());
        assert!(Window::new(MAX_WINDOW_MINUTES, MAX_RADIUS_M).is_ok());
        assert!(Window::new(10, MAX_RADIUS_M + 1).is_err());
    }
}
