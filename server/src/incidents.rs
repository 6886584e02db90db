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
//!
//! This file holds the rule (the window, event positions, distances); the
//! store keeps the groups as reports arrive (`store/incidents.rs`).

use serde::Serialize;
use truce_shared::Observation;

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

    /// The time window in milliseconds.
    pub(crate) fn millis(self) -> i64 {
        i64::from(self.minutes) * 60_000
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
