//! From what the monitor typed to a valid [`Observation`]: the
//! [`RecordInput`] a caller fills in, and the field parsers that both the
//! flags and the interactive prompts use (attachments: [`crate::attachments`]).
//!
//! Every parser returns an error that names the field and says how to write
//! it. Range rules (latitude, bearing, lengths…) are not repeated here: they
//! live once in `truce_shared`'s `Observation::validate`, and
//! [`check_field`] runs that on a single field for the prompts.

use std::path::PathBuf;

use truce_shared::{Basis, Category, Count, Effect, Observation, Position, Qualifier};

use crate::error::{AgentError, Result};

/// What a monitor wants to record, before validation and signing. Times
/// are unix ms; `None` for `observed_at` means "now" at signing.
#[derive(Clone)]
pub struct RecordInput {
    /// What it was.
    pub category: Category,
    /// When it happened; `None` = now.
    pub observed_at: Option<i64>,
    /// End of a continuous event or watch.
    pub observed_until: Option<i64>,
    /// Where the monitor was.
    pub position: Position,
    /// Direction of the event, degrees.
    pub bearing_deg: Option<u16>,
    /// Distance range in metres.
    pub distance_m: Option<(u32, u32)>,
    /// Impact, outgoing…
    pub effect: Option<Effect>,
    /// Assessed weapon.
    pub weapon: Option<String>,
    /// How many.
    pub count: Option<Count>,
    /// How the monitor knows.
    pub basis: Basis,
    /// Free text.
    pub description: String,
    /// Files to hash, copy and attach.
    pub attachments: Vec<PathBuf>,
    /// The report this one corrects: a full id or a unique prefix of one in
    /// this queue.
    pub amends: Option<String>,
}

impl std::fmt::Debug for RecordInput {
    // Report content stays out of logs: the category and sizes only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordInput")
            .field("category", &self.category)
            .field("description_len", &self.description.len())
            .field("attachments", &self.attachments.len())
            .finish_non_exhaustive()
    }
}

impl RecordInput {
    /// The minimum report: a category at a position, now, seen, no text.
    pub fn new(category: Category, lat: f64, lon: f64) -> Self {
        RecordInput {
            category,
            observed_at: None,
            observed_until: None,
            position: Position { lat, lon, accuracy_m: None },
            bearing_deg: None,
            distance_m: None,
            effect: None,
            weapon: None,
            count: None,
            basis: Basis::Seen,
            description: String::new(),
            attachments: Vec::new(),
            amends: None,
        }
    }

    /// The observation without attachments, at `now` if no time was given.
    pub fn observation(&self, now: i64) -> Observation {
        Observation {
            observed_at: self.observed_at.unwrap_or(now),
            observed_until: self.observed_until,
            position: self.position,
            bearing_deg: self.bearing_deg,
            distance_m: self.distance_m,
            category: self.category,
            effect: self.effect,
            weapon: self.weapon.clone(),
            count: self.count,
            basis: self.basis,
            description: self.description.clone(),
            attachments: Vec::new(),
        }
    }
}

/// Reads a vocabulary word (its `name()`), forgiving case, spaces and
/// underscores.
fn parse_word<T: Copy + std::str::FromStr>(field: &'static str, s: &str, names: &[&str]) -> Result<T> {
    let want: String =
        s.trim().to_ascii_lowercase().chars().map(|c| if c == ' ' || c == '_' { '-' } else { c }).collect();
    want.parse::<T>()
        .map_err(|_| AgentError::input(field, format!("unknown value {:?}: use one of {}", s.trim(), names.join(", "))))
}

/// Reads a category (`small-arms-fire`) or its number in [`Category::ALL`] (1-based).
pub fn parse_category(field: &'static str, s: &str) -> Result<Category> {
    if let Ok(n) = s.trim().parse::<usize>() {
        if let Some(c) = n.checked_sub(1).and_then(|i| Category::ALL.get(i)) {
            return Ok(*c);
        }
    }
    parse_word(field, s, Category::NAMES)
}

/// Reads an effect.
pub fn parse_effect(field: &'static str, s: &str) -> Result<Effect> {
    parse_word(field, s, Effect::NAMES)
}

/// Reads a basis.
pub fn parse_basis(field: &'static str, s: &str) -> Result<Basis> {
    parse_word(field, s, Basis::NAMES)
}

/// Reads decimal degrees. The range is checked by the observation's rules.
pub fn parse_degrees(field: &'static str, s: &str) -> Result<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
        AgentError::input(field, format!("{:?} is not a number: use decimal degrees such as 48.5123", s.trim()))
    })
}

/// Reads a whole number of metres (accuracy).
pub fn parse_metres(field: &'static str, s: &str) -> Result<u32> {
    let t = s.trim();
    let t = t.strip_suffix('m').map(str::trim_end).unwrap_or(t);
    t.parse::<u32>().map_err(|_| AgentError::input(field, format!("{:?} is not a whole number of metres", s.trim())))
}

/// The sixteen compass points, clockwise from north.
const COMPASS: [&str; 16] =
    ["n", "nne", "ne", "ene", "e", "ese", "se", "sse", "s", "ssw", "sw", "wsw", "w", "wnw", "nw", "nnw"];

/// Reads a bearing: whole degrees (0–359) or a compass point (`NNW` = 338).
pub fn parse_bearing(field: &'static str, s: &str) -> Result<u16> {
    let t = s.trim().to_ascii_lowercase();
    if let Some(i) = COMPASS.iter().position(|p| *p == t) {
        // 22.5° per point, rounded to whole degrees as the format stores them.
        return Ok(((i as f64) * 22.5).round() as u16);
    }
    let t = t.strip_suffix("deg").or_else(|| t.strip_suffix('°')).unwrap_or(&t).trim();
    t.parse::<u16>().map_err(|_| {
        AgentError::input(
            field,
            format!("{:?} is not a bearing: use whole degrees from 0 to 359 or a compass point such as NNW", s.trim()),
        )
    })
}

/// Reads one distance: a number with an optional `m` or `km` unit.
fn parse_one_distance(s: &str) -> Option<(f64, Option<f64>)> {
    let t = s.trim().to_ascii_lowercase();
    let (num, unit) = if let Some(n) = t.strip_suffix("km") {
        (n, Some(1000.0))
    } else if let Some(n) = t.strip_suffix('m') {
        (n, Some(1.0))
    } else {
        (t.as_str(), None)
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v, unit))
}

/// Reads a distance or range: `5000`, `3000-5000`, `500m`, `3km-5km`,
/// `3-5km` (a unit given on one end only applies to both), `2.5km`. Metres
/// when no unit is given.
pub fn parse_distance(field: &'static str, s: &str) -> Result<(u32, u32)> {
    let bad = || {
        AgentError::input(
            field,
            format!("{:?} is not a distance: use metres MIN or MIN-MAX (3000-5000), or km (3-5km, 2.5km)", s.trim()),
        )
    };
    let (a, b) = match s.trim().split_once('-') {
        Some((a, b)) => (parse_one_distance(a).ok_or_else(bad)?, Some(parse_one_distance(b).ok_or_else(bad)?)),
        None => (parse_one_distance(s).ok_or_else(bad)?, None),
    };
    let to_m = |v: f64, unit: f64| -> Result<u32> {
        let m = (v * unit).round();
        if m > u32::MAX as f64 {
            return Err(bad());
        }
        Ok(m as u32)
    };
    match b {
        None => {
            let m = to_m(a.0, a.1.unwrap_or(1.0))?;
            Ok((m, m))
        }
        Some(b) => {
            let ua = a.1.or(b.1).unwrap_or(1.0);
            let ub = b.1.or(a.1).unwrap_or(1.0);
            Ok((to_m(a.0, ua)?, to_m(b.0, ub)?))
        }
    }
}

/// Reads a count as typed at a prompt: `30`, `about 30`, `~30`,
/// `at least 37`, `37+`.
pub fn parse_count(field: &'static str, s: &str) -> Result<Count> {
    let t = s.trim().to_ascii_lowercase();
    let (rest, qualifier) = if let Some(r) = t.strip_prefix("about").or_else(|| t.strip_prefix('~')) {
        (r.trim().to_string(), Qualifier::About)
    } else if let Some(r) = t.strip_prefix("at least").or_else(|| t.strip_prefix(">=")) {
        (r.trim().to_string(), Qualifier::AtLeast)
    } else if let Some(r) = t.strip_suffix('+') {
        (r.trim().to_string(), Qualifier::AtLeast)
    } else {
        (t.clone(), Qualifier::Exact)
    };
    let n = rest.parse::<u32>().map_err(|_| {
        AgentError::input(
            field,
            format!("{:?} is not a count: use a whole number, \"about 30\" or \"at least 37\"", s.trim()),
        )
    })?;
    Ok(Count { n, qualifier })
}

/// Reads a time: `now`, `-15m`, `-2h`, or RFC 3339.
pub fn parse_when(field: &'static str, s: &str, now: i64) -> Result<i64> {
    truce_shared::time::parse_time(s, now).map_err(|e| AgentError::input(field, e.to_string()))
}

/// Checks one field against the report rules by applying it to an
/// otherwise valid observation: the prompts use it to re-ask a field at
/// once, with the same rule and message the final check would give.
pub fn check_field(apply: impl FnOnce(&mut Observation)) -> Result<()> {
    let mut o = RecordInput::new(Category::Other, 0.0, 0.0).observation(0);
    apply(&mut o);
    o.validate().map_err(AgentError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_reads_kebab_and_forgives_spaces() {
        assert_eq!(parse_category("c", "small-arms-fire").unwrap(), Category::SmallArmsFire);
        assert_eq!(parse_category("c", "Nothing Observed").unwrap(), Category::NothingObserved);
        assert_eq!(parse_category("c", "2").unwrap(), Category::Shelling);
        let e = parse_category("--category", "artillery").unwrap_err().to_string();
        assert!(e.starts_with("--category: unknown value \"artillery\""), "{e}");
        assert!(e.contains("small-arms-fire") && e.contains("nothing-observed"), "{e}");
        assert_eq!(parse_effect("e", "airburst").unwrap(), Effect::Airburst);
        assert_eq!(parse_basis("b", "HEARD").unwrap(), Basis::Heard);
    }

    #[test]
    fn distances_take_metres_and_km() {
        assert_eq!(parse_distance("d", "5000").unwrap(), (5000, 5000));
        assert_eq!(parse_distance("d", "3000-5000").unwrap(), (3000, 5000));
        assert_eq!(parse_distance("d", "3-5km").unwrap(), (3000, 5000));
        assert_eq!(parse_distance("d", "500m-2km").unwrap(), (500, 2000));
        assert_eq!(parse_distance("d", "2.5km").unwrap(), (2500, 2500));
        assert!(parse_distance("d", "far").is_err());
        assert!(parse_distance("d", "-5").is_err());
        assert!(parse_distance("d", "99999999km").is_err());
    }

    #[test]
    fn counts_bearings_and_metres() {
        assert_eq!(parse_count("c", "about 30").unwrap(), Count { n: 30, qualifier: Qualifier::About });
        assert_eq!(parse_count("c", "at least 37").unwrap(), Count { n: 37, qualifier: Qualifier::AtLeast });
        assert_eq!(parse_count("c", "37+").unwrap(), Count { n: 37, qualifier: Qualifier::AtLeast });
        assert_eq!(parse_count("c", "2").unwrap(), Count { n: 2, qualifier: Qualifier::Exact });
        assert!(parse_count("c", "many").is_err());
        assert_eq!(parse_bearing("b", "NNW").unwrap(), 338);
        assert_eq!(parse_bearing("b", "e").unwrap(), 90);
        assert_eq!(parse_bearing("b", "315").unwrap(), 315);
        assert!(parse_bearing("b", "north-ish").is_err());
        assert_eq!(parse_metres("a", "10m").unwrap(), 10);
        assert!(parse_degrees("lat", "forty").is_err());
    }

    #[test]
    fn field_checks_use_the_shared_rules() {
        assert!(check_field(|o| o.position.lat = 91.0).unwrap_err().to_string().contains("latitude"));
        assert!(check_field(|o| o.position.lat = 48.0).is_ok());
        assert!(check_field(|o| o.bearing_deg = Some(360)).is_err());
    }
}
