//! Times as Truce shows and reads them: unix milliseconds inside, RFC 3339
//! UTC outside.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, unix ms UTC.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Formats unix ms as RFC 3339 UTC with milliseconds, always the same
/// width (`2026-11-22T09:15:00.000Z`), so exported columns sort as text;
/// times outside the calendar's range are shown as raw milliseconds.
pub fn format_ms(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| format!("{ms}ms"))
}

/// Why a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read time {0:?}: use \"now\", a relative time such as \"-15m\", \"-2h\" or \"-1d\", or RFC 3339 such as 2026-11-22T09:15:00Z")]
pub struct TimeError(pub String);

/// Reads "now", "-15m"/"-2h"/"-30s"/"-1d", or RFC 3339, relative to `now`.
pub fn parse_time(s: &str, now: i64) -> Result<i64, TimeError> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(rel) = t.strip_prefix('-') {
        let (num, unit) = rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = num.parse().map_err(|_| TimeError(s.into()))?;
        let mult = match unit {
            "s" => 1_000,
            "m" | "min" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(TimeError(s.into())),
        };
        return n.checked_mul(mult).and_then(|d| now.checked_sub(d)).ok_or_else(|| TimeError(s.into()));
    }
    OffsetDateTime::parse(t, &Rfc3339)
        .map(|d| (d.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| TimeError(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_forms() {
        let now = 1_763_800_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("-15m", now), Ok(now - 15 * 60_000));
        assert_eq!(parse_time("-2h", now), Ok(now - 7_200_000));
        assert_eq!(parse_time("2026-11-22T09:15:00Z", now), Ok(1_795_338_900_000));
        assert_eq!(parse_time("2026-11-22T11:15:00+02:00", now), Ok(1_795_338_900_000));
        assert!(parse_time("yesterday", now).is_err());
        assert!(parse_time("-15x", now).is_err());
    }

    #[test]
    fn formats_utc_with_milliseconds() {
        assert_eq!(format_ms(1_795_338_900_123), "2026-11-22T09:15:00.123Z");
        assert_eq!(parse_time(&format_ms(1_795_338_900_123), 0), Ok(1_795_338_900_123));
        assert_eq!(format_ms(1_795_338_900_000), "2026-11-22T09:15:00.000Z");
        assert_eq!(format_ms(1_795_338_900_100), "2026-11-22T09:15:00.100Z");
    }
}
