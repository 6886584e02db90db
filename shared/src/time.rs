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
    // Exports format two or three times per row, a million rows at a time,
    // so years 0000–9999 take a direct path (the same text as `format_ms_slow`,
    // which the tests check); anything else goes through the `time` crate.
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    if !(0..=9999).contains(&y) {
        return format_ms_slow(ms);
    }
    let sod = secs.rem_euclid(86_400);
    let milli = ms.rem_euclid(1000);
    let mut b = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, mo);
    put(8, 2, d);
    put(11, 2, sod / 3600);
    put(14, 2, sod / 60 % 60);
    put(17, 2, sod % 60);
    put(20, 3, milli);
    // Only ASCII digits and separators were written, so this never falls back.
    std::str::from_utf8(&b).map_or_else(|_| format_ms_slow(ms), str::to_owned)
}

fn format_ms_slow(ms: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(FORMAT).ok())
        .unwrap_or_else(|| format!("{ms}ms"))
}

/// (year, month, day) of a count of days since 1970-01-01 in the proleptic
/// Gregorian calendar (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
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
    fn the_direct_format_matches_the_time_crate() {
        const DAY: i64 = 86_400_000;
        let mut cases = vec![
            0,
            -1,
            1,
            951_782_400_000,     // 2000-02-29
            -2_203_891_200_000,  // 1900-03-01
            253_402_300_799_999, // 9999-12-31T23:59:59.999
            253_402_300_800_000, // year 10000: the slow path
            -62_167_219_200_000, // 0000-01-01
            -62_167_219_200_001, // year -1: the slow path
            i64::MIN,
            i64::MAX,
        ];
        // Instants spread over every year from 0000 to 9999.
        let mut t = -62_167_219_200_000i64;
        while t < 253_402_300_800_000 {
            cases.extend([t, t + DAY - 1, t + 45_296_789]);
            t += DAY * 97 + 13_579;
        }
        for ms in cases {
            assert_eq!(format_ms(ms), format_ms_slow(ms), "{ms}");
        }
        assert_eq!(format_ms(1_795_338_900_000), "2026-11-22T09:15:00.000Z");
    }

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
