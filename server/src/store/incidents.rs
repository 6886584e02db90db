//! Incidents as the store keeps them: each report placed in its group as
//! it is stored, promoted or superseded, and every group rebuilt when the
//! window changes. The rule itself (window, event positions, distances) is
//! [`crate::incidents`].

use super::sql::{args, Backend};
use super::{Store, StoreError, Tx};
use crate::incidents::{distance_m, Incident, Window};

impl Store {
    /// The incident window in force (stored in the database).
    pub fn incident_window(&self) -> Result<Window, StoreError> {
        self.read(load_window)
    }

    /// Changes the incident window and groups every report again under it.
    /// Returns the number of incidents.
    pub fn set_incident_window(&mut self, window: Window) -> Result<u64, StoreError> {
        self.write(|tx| {
            save_window(window, tx)?;
            rebuild(tx, window)
        })
    }

    /// The incidents corroborated by at least `min_devices` devices, most
    /// corroborated first, then newest.
    pub fn incidents(&self, min_devices: u64) -> Result<Vec<Incident>, StoreError> {
        self.read(|tx| {
            tx.all(
                "SELECT id, category, first_at, last_at, reports, devices FROM incidents
                 WHERE devices >= ?1 ORDER BY devices DESC, last_at DESC, id",
                args![min_devices.min(i64::MAX as u64) as i64],
                |r| {
                    Ok(Incident {
                        id: r.i64(0)?,
                        category: r.str(1)?.to_string(),
                        first_at: r.i64(2)?,
                        last_at: r.i64(3)?,
                        reports: r.i64(4)?.max(0) as u64,
                        devices: r.i64(5)?.max(0) as u64,
                    })
                },
            )
        })
    }
}

/// Reads the window stored in the database (the defaults if none).
pub(super) fn load_window(tx: &Tx<'_>) -> Result<Window, StoreError> {
    let get = |name: &str| tx.one("SELECT value FROM settings WHERE name = ?1", args![name], |r| r.i64(0));
    let d = Window::default();
    let minutes = get("incident_window_minutes")?.and_then(|v| u32::try_from(v).ok()).unwrap_or(d.minutes);
    let metres = get("incident_radius_m")?.and_then(|v| u32::try_from(v).ok()).unwrap_or(d.metres);
    Ok(Window::new(minutes, metres).unwrap_or(d))
}

/// Stores the window; the caller regroups.
pub(super) fn save_window(window: Window, tx: &Tx<'_>) -> Result<(), StoreError> {
    set(tx, "incident_window_minutes", i64::from(window.minutes))?;
    set(tx, "incident_radius_m", i64::from(window.metres))
}

/// Stores a named setting.
fn set(tx: &Tx<'_>, name: &str, value: i64) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        args![name, value],
    )?;
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

fn member(tx: &Tx<'_>, n: i64) -> Result<Option<Member>, StoreError> {
    tx.one("SELECT device, category, observed_at, ev_lat, ev_lon FROM reports WHERE n = ?1", args![n], |r| {
        Ok(Member {
            n,
            device: r.bytes(0)?.to_vec(),
            category: r.str(1)?.to_string(),
            observed_at: r.i64(2)?,
            ev: (r.f64(3)?, r.f64(4)?),
        })
    })
}

/// "Is there a verified amendment of this report by the same device?" as
/// a condition on `x`. (`+x.device` keeps SQLite's planner on the
/// `amends` index; PostgreSQL has no such spelling and needs none.)
fn superseded_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "SELECT 1 FROM reports x WHERE x.amends = ?1 AND +x.device = ?2 AND x.status = 'verified' LIMIT 1"
        }
        Backend::Postgres => {
            "SELECT 1 FROM reports x WHERE x.amends = ?1 AND x.device = ?2 AND x.status = 'verified' LIMIT 1"
        }
    }
}

/// Report `n`, already stored, has just become verified (promoted on
/// enrolment, or grouped again): a version it amends leaves its incident,
/// and it joins one unless it is itself superseded or says nothing was
/// observed.
pub(super) fn on_verified(tx: &Tx<'_>, n: i64, window: Window) -> Result<(), StoreError> {
    let amended = tx.one(
        "SELECT a.n FROM reports r JOIN reports a ON a.id = r.amends AND a.device = r.device
         WHERE r.n = ?1 AND a.incident IS NOT NULL",
        args![n],
        |r| r.i64(0),
    )?;
    if let Some(a) = amended {
        leave(tx, a, window)?;
    }
    // Verified, not grouped yet, an event, and not superseded.
    let candidate = tx.one(
        "SELECT id, device FROM reports WHERE n = ?1 AND status = 'verified' AND incident IS NULL AND category != ?2",
        args![n, NOTHING_OBSERVED],
        |r| Ok((r.bytes(0)?.to_vec(), r.bytes(1)?.to_vec())),
    )?;
    let Some((id, device)) = candidate else { return Ok(()) };
    if tx.exists(superseded_sql(tx.backend()), args![&id, &device])? {
        return Ok(());
    }
    if let Some(m) = member(tx, n)? {
        join(tx, &m, window)?;
    }
    Ok(())
}

/// A report about to be stored as verified, with `id`: the incident it
/// joins (created, or merged from the incidents it bridges), or `None`
/// when it takes no part (nothing observed, or a verified amendment of it
/// arrived first). The caller stores the report with that incident in the
/// same INSERT, then calls [`stored_verified`]. This is the ingest path: the
/// report's fields are in hand, so nothing is read back or updated twice.
pub(super) fn place_new(tx: &Tx<'_>, id: &[u8], m: &Member, window: Window) -> Result<Option<i64>, StoreError> {
    if m.category == NOTHING_OBSERVED {
        return Ok(None);
    }
    if tx.exists(superseded_sql(tx.backend()), args![id, &m.device])? {
        return Ok(None);
    }
    target(tx, m, window).map(|p| Some(p.incident))
}

/// After [`place_new`]'s report is stored as number `n`: it is counted into
/// its incident, and the version it amends (same device) leaves its own.
pub(super) fn stored_verified(
    tx: &Tx<'_>,
    incident: Option<i64>,
    m: &Member,
    amends: Option<&[u8]>,
    window: Window,
) -> Result<(), StoreError> {
    if let Some(t) = incident {
        count_in(tx, t, m)?;
    }
    if let Some(a) = amends {
        let amended = tx.one(
            "SELECT n FROM reports WHERE id = ?1 AND device = ?2 AND incident IS NOT NULL",
            args![a, &m.device],
            |r| r.i64(0),
        )?;
        if let Some(a) = amended {
            leave(tx, a, window)?;
        }
    }
    Ok(())
}

/// Puts stored report `m` into the incident of every report close to it.
fn join(tx: &Tx<'_>, m: &Member, window: Window) -> Result<i64, StoreError> {
    let t = target(tx, m, window)?.incident;
    tx.execute("UPDATE reports SET incident = ?1 WHERE n = ?2", args![t, m.n])?;
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

fn target(tx: &Tx<'_>, m: &Member, window: Window) -> Result<Placement, StoreError> {
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
    let candidates = tx.all(
        "SELECT id FROM incidents
         WHERE category = ?1 AND last_at >= ?2 AND first_at <= ?3 AND max_lat >= ?4 AND min_lat <= ?5
         ORDER BY id LIMIT ?6",
        args![&m.category, from, to, south, north, MAX_GROUPING_ROWS as i64],
        |r| r.i64(0),
    )?;
    let mut examined = candidates.len();
    let mut near: Vec<i64> = Vec::new();
    for incident in candidates {
        let mut bound = false;
        let mut hit = false;
        // Stops at the first member within the distance, or at the bound;
        // streamed, so that PostgreSQL does not first fetch every member
        // in the box (up to the bound) for a scan that stops at one.
        let scan = tx.stream(
            "SELECT ev_lat, ev_lon FROM reports
             WHERE incident = ?1 AND observed_at BETWEEN ?2 AND ?3 AND ev_lat BETWEEN ?4 AND ?5
                   AND ev_lon BETWEEN ?6 AND ?7 AND n != ?8
             LIMIT ?9",
            args![incident, from, to, south, north, west, east, m.n, (MAX_GROUPING_ROWS + 1 - examined) as i64],
            &mut |r| {
                if examined >= MAX_GROUPING_ROWS {
                    bound = true;
                    return Err(StoreError::Stopped);
                }
                examined += 1;
                if distance_m(m.ev, (r.f64(0)?, r.f64(1)?)) <= f64::from(window.metres) {
                    hit = true;
                    return Err(StoreError::Stopped);
                }
                Ok(())
            },
        );
        match scan {
            Ok(()) | Err(StoreError::Stopped) => {}
            Err(e) => return Err(e),
        }
        if hit {
            near.push(incident);
        }
        if bound {
            tracing::warn!(
                rows = examined,
                category = %m.category,
                "incident grouping stopped at its bound: this report is placed by the incidents seen so far"
            );
            break;
        }
    }
    let target = match near.iter().min() {
        Some(&t) => t,
        None => tx
            .one(
                "INSERT INTO incidents (category, first_at, last_at, reports, devices, min_lat, max_lat)
                 VALUES (?1, ?2, ?2, 0, 0, ?3, ?3) RETURNING id",
                args![&m.category, m.observed_at, m.ev.0],
                |r| r.i64(0),
            )?
            .ok_or(StoreError::Column { index: 0, problem: "no id for a new incident" })?,
    };
    for &other in near.iter().filter(|&&i| i != target) {
        tx.execute("UPDATE reports SET incident = ?1 WHERE incident = ?2", args![target, other])?;
        tx.execute(
            "INSERT INTO incident_devices (incident, device)
             SELECT CAST(?1 AS BIGINT), device FROM incident_devices WHERE incident = ?2
             ON CONFLICT DO NOTHING",
            args![target, other],
        )?;
        tx.execute("DELETE FROM incident_devices WHERE incident = ?1", args![other])?;
        let merged = tx.one(
            "SELECT first_at, last_at, reports, min_lat, max_lat FROM incidents WHERE id = ?1",
            args![other],
            |r| Ok((r.i64(0)?, r.i64(1)?, r.i64(2)?, r.f64(3)?, r.f64(4)?)),
        )?;
        if let Some((first_at, last_at, reports, min_lat, max_lat)) = merged {
            tx.execute(
                "UPDATE incidents SET
                     first_at = CASE WHEN ?2 < first_at THEN ?2 ELSE first_at END,
                     last_at = CASE WHEN ?3 > last_at THEN ?3 ELSE last_at END,
                     reports = reports + ?4,
                     min_lat = CASE WHEN ?5 < min_lat THEN ?5 ELSE min_lat END,
                     max_lat = CASE WHEN ?6 > max_lat THEN ?6 ELSE max_lat END,
                     devices = (SELECT COUNT(*) FROM incident_devices WHERE incident = ?1)
                 WHERE id = ?1",
                args![target, first_at, last_at, reports, min_lat, max_lat],
            )?;
        }
        tx.execute("DELETE FROM incidents WHERE id = ?1", args![other])?;
    }
    Ok(Placement { incident: target, examined })
}

/// Counts `m`, whose row already names incident `t`, into that incident's
/// device set, report count and spans. The device count goes up only when
/// the device is new to the incident, so nothing is counted over again.
fn count_in(tx: &Tx<'_>, t: i64, m: &Member) -> Result<(), StoreError> {
    let new_device = tx.execute(
        "INSERT INTO incident_devices (incident, device) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        args![t, &m.device],
    )?;
    tx.execute(
        "UPDATE incidents SET
             first_at = CASE WHEN ?2 < first_at THEN ?2 ELSE first_at END,
             last_at = CASE WHEN ?2 > last_at THEN ?2 ELSE last_at END,
             reports = reports + 1,
             min_lat = CASE WHEN ?3 < min_lat THEN ?3 ELSE min_lat END,
             max_lat = CASE WHEN ?3 > max_lat THEN ?3 ELSE max_lat END,
             devices = devices + ?4
         WHERE id = ?1",
        args![t, m.observed_at, m.ev.0, new_device as i64],
    )?;
    Ok(())
}

/// Takes report `n` out of its incident (a later version superseded it).
/// What remains may have been held together only by `n`, so the rest of
/// the incident is grouped again.
fn leave(tx: &Tx<'_>, n: i64, window: Window) -> Result<(), StoreError> {
    let incident = tx.one("SELECT incident FROM reports WHERE n = ?1", args![n], |r| r.opt_i64(0))?.flatten();
    let Some(incident) = incident else { return Ok(()) };
    let rest = tx.all(
        "SELECT n FROM reports WHERE incident = ?1 AND n != ?2 ORDER BY observed_at, n",
        args![incident, n],
        |r| r.i64(0),
    )?;
    dissolve(tx, incident)?;
    for r in rest {
        if let Some(m) = member(tx, r)? {
            join(tx, &m, window)?;
        }
    }
    Ok(())
}

fn dissolve(tx: &Tx<'_>, incident: i64) -> Result<(), StoreError> {
    tx.execute("UPDATE reports SET incident = NULL WHERE incident = ?1", args![incident])?;
    tx.execute("DELETE FROM incident_devices WHERE incident = ?1", args![incident])?;
    tx.execute("DELETE FROM incidents WHERE id = ?1", args![incident])?;
    Ok(())
}

/// Groups every stored report again under `window` (after the window
/// changed, or after a migration). Returns the number of incidents.
pub(super) fn rebuild(tx: &Tx<'_>, window: Window) -> Result<u64, StoreError> {
    tx.execute("UPDATE reports SET incident = NULL WHERE incident IS NOT NULL", &[])?;
    tx.execute("DELETE FROM incident_devices", &[])?;
    tx.execute("DELETE FROM incidents", &[])?;
    let ns = tx.all("SELECT n FROM reports WHERE status = 'verified' ORDER BY observed_at, n", &[], |r| r.i64(0))?;
    for n in ns {
        on_verified(tx, n, window)?;
    }
    set(tx, "regroup", 0)?;
    tx.count("SELECT COUNT(*) FROM incidents", &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A verified report of `category` stored straight into its incident,
    /// as the writer would.
    fn stored(tx: &Tx<'_>, n: i64, ev: (f64, f64), at: i64, window: Window) -> i64 {
        let m = Member { n: 0, device: vec![n as u8; 32], category: "shelling".into(), observed_at: at, ev };
        let incident = target(tx, &m, window).unwrap().incident;
        tx.execute(
            "INSERT INTO reports (n, id, device, seq, prev, recorded_at, observed_at, category, lat, lon, body,
                                  signature, status, received_at, ev_lat, ev_lon, incident)
             VALUES (?1, ?2, ?3, 1, ?8, ?4, ?4, 'shelling', ?5, ?6, ?8, ?8, 'verified', ?4, ?5, ?6, ?7)",
            args![n, &n.to_be_bytes().repeat(4), &vec![n as u8; 32], at, ev.0, ev.1, incident, &[0u8][..]],
        )
        .unwrap();
        let stored = Member { n, ..m };
        count_in(tx, incident, &stored).unwrap();
        incident
    }

    #[test]
    fn grouping_one_report_looks_at_no_more_than_its_bound() {
        let mut store = Store::open_in_memory().unwrap();
        store.write(bounded).unwrap();
    }

    /// The same on PostgreSQL, where the scan is fetched a page at a time
    /// and must stop where SQLite's stepping stops.
    #[test]
    fn grouping_one_report_looks_at_no_more_than_its_bound_on_postgresql() {
        let pg = truce_testkit::TestPostgres::start();
        let mut store = Store::open(&crate::store::Database::Postgres(pg.fresh_database())).unwrap();
        store.write(bounded).unwrap();
    }

    fn bounded(tx: &Tx<'_>) -> Result<(), StoreError> {
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
                stored(tx, n, (lat + sy * dlat, lon + sx * dlon), at, window);
            }
        }
        let incidents = tx.count("SELECT COUNT(*) FROM incidents", &[])?;
        assert_eq!(incidents, 4, "each corner's crowd is one incident");
        // A report in the middle is near none of them: without a bound it
        // would look at every report of every crowd.
        let m = Member { n: 0, device: vec![0; 32], category: "shelling".into(), observed_at: at, ev: (lat, lon) };
        let p = target(tx, &m, window)?;
        assert!(4 * per_corner > MAX_GROUPING_ROWS);
        assert_eq!(p.examined, MAX_GROUPING_ROWS, "grouping stops at its bound");
        let members = tx.count("SELECT COUNT(*) FROM reports WHERE incident = ?1", args![p.incident])?;
        assert_eq!(members, 0, "and the report starts an incident of its own");
        // One more report in a crowd still joins it at once.
        let m = Member { ev: (lat + dlat, lon + dlon), ..m };
        let p = target(tx, &m, window)?;
        assert!(p.examined <= 8, "a report beside a crowd looks at {} rows", p.examined);
        Ok(())
    }
}
