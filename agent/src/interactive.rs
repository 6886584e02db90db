//! Interactive `record`: on a terminal with no flags, ask for each field.
//!
//! Defaults are what a monitor most often means: the time is now, the
//! position is the last one used (read from the newest report in the
//! queue), the basis is "seen"; optional fields are skipped with Enter.
//! A bad answer is explained (with the same message the flag would give)
//! and the same question is asked again, so nothing typed so far is lost.
//! Nothing is signed until the monitor confirms the summary.
//!
//! The questions go to the `out` writer (stderr in the binary) so stdout
//! carries only the id. Reading and writing are generic, so the whole
//! dialogue is unit-tested with scripted input.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use truce_shared::time::format_ms;
use truce_shared::{limits, Category, Position};

use crate::error::{AgentError, Result};
use crate::input::{self, RecordInput};

/// A question-and-answer session over a reader and a writer.
struct Dialogue<'a> {
    input: &'a mut dyn BufRead,
    out: &'a mut dyn Write,
}

impl Dialogue<'_> {
    fn say(&mut self, s: &str) -> Result<()> {
        writeln!(self.out, "{s}").and_then(|()| self.out.flush()).map_err(AgentError::Terminal)
    }

    /// Asks one question; returns the trimmed answer, or the default for a
    /// blank line. End of input cancels the whole record.
    fn ask(&mut self, label: &str, default: Option<&str>) -> Result<String> {
        match default {
            Some(d) if !d.is_empty() => write!(self.out, "{label} [{d}]: "),
            _ => write!(self.out, "{label}: "),
        }
        .and_then(|()| self.out.flush())
        .map_err(AgentError::Terminal)?;
        let mut line = String::new();
        if self.input.read_line(&mut line).map_err(AgentError::Terminal)? == 0 {
            self.say("")?;
            return Err(AgentError::Cancelled);
        }
        let t = line.trim();
        Ok(if t.is_empty() { default.unwrap_or("").to_string() } else { t.to_string() })
    }

    /// Asks until `parse` accepts the answer, explaining each refusal.
    fn ask_until<T>(
        &mut self,
        label: &str,
        default: Option<&str>,
        mut parse: impl FnMut(&str) -> Result<T>,
    ) -> Result<T> {
        loop {
            let a = self.ask(label, default)?;
            match parse(&a) {
                Ok(v) => return Ok(v),
                Err(e) => self.say(&format!("  ! {e}"))?,
            }
        }
    }

    /// An optional field: blank (or "-") is none.
    fn ask_optional<T>(
        &mut self,
        label: &str,
        default: Option<&str>,
        mut parse: impl FnMut(&str) -> Result<T>,
    ) -> Result<Option<T>> {
        self.ask_until(label, default, |a| if a.is_empty() || a == "-" { Ok(None) } else { parse(a).map(Some) })
    }
}

/// Asks for every field and returns the input to record, after the monitor
/// confirmed it. `last` is the last position used, `now` the clock.
pub fn ask_record(
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    last: Option<Position>,
    now: impl Fn() -> i64,
) -> Result<RecordInput> {
    let mut d = Dialogue { input, out };
    d.say("New report. Press Enter to take the value in [brackets]; Ctrl-D cancels.")?;
    let names: Vec<String> =
        Category::ALL.iter().enumerate().map(|(i, c)| format!("{:>2} {}", i + 1, c.name())).collect();
    for row in names.chunks(3) {
        d.say(&format!("  {}", row.iter().map(|n| format!("{n:<24}")).collect::<String>().trim_end()))?;
    }
    let category: Category =
        d.ask_until("Category (name or number)", None, |a| input::parse_category("category", a))?;

    let observed_at =
        d.ask_until("When (now, -15m, 2026-11-22T09:15:00Z)", Some("now"), |a| input::parse_when("time", a, now()))?;
    let until_hint = if category == Category::NothingObserved {
        "Watched until (end of the watch)"
    } else {
        "Until (blank if it was a moment)"
    };
    let observed_until = d.ask_optional(until_hint, None, |a| {
        let u = input::parse_when("until", a, now())?;
        input::check_field(|o| {
            o.observed_at = observed_at;
            o.observed_until = Some(u);
        })?;
        Ok(u)
    })?;

    let lat_d = last.map(|p| p.lat.to_string());
    let lat = d.ask_until("Latitude (decimal degrees)", lat_d.as_deref(), |a| {
        let v = input::parse_degrees("latitude", a)?;
        input::check_field(|o| o.position.lat = v)?;
        Ok(v)
    })?;
    let lon_d = last.map(|p| p.lon.to_string());
    let lon = d.ask_until("Longitude (decimal degrees)", lon_d.as_deref(), |a| {
        let v = input::parse_degrees("longitude", a)?;
        input::check_field(|o| o.position.lon = v)?;
        Ok(v)
    })?;
    let acc_d = last.and_then(|p| p.accuracy_m).map(|a| a.to_string());
    let accuracy_m = d.ask_optional("Accuracy in metres (blank if unknown)", acc_d.as_deref(), |a| {
        input::parse_metres("accuracy", a)
    })?;

    let mut input = RecordInput::new(category, lat, lon);
    input.position.accuracy_m = accuracy_m;
    input.observed_at = Some(observed_at);
    input.observed_until = observed_until;

    if category != Category::NothingObserved {
        input.bearing_deg = d.ask_optional("Bearing to the event (degrees or NNW; blank if none)", None, |a| {
            let b = input::parse_bearing("bearing", a)?;
            input::check_field(|o| o.bearing_deg = Some(b))?;
            Ok(b)
        })?;
        input.distance_m = d.ask_optional("Distance (5000, 3000-5000, 3-5km; blank if unknown)", None, |a| {
            let r = input::parse_distance("distance", a)?;
            input::check_field(|o| o.distance_m = Some(r))?;
            Ok(r)
        })?;
        if matches!(category, Category::Explosion | Category::Shelling | Category::Airstrike) {
            input.effect =
                d.ask_optional("Effect (impact, outgoing, airburst, undetermined; blank if none)", None, |a| {
                    input::parse_effect("effect", a)
                })?;
        }
        input.weapon = d.ask_optional("Assessed weapon (blank if unknown)", None, |a| {
            let w = a.to_string();
            input::check_field(|o| o.weapon = Some(w.clone()))?;
            Ok(w)
        })?;
        input.count = d.ask_optional("Count (12, about 30, at least 37; blank if none)", None, |a| {
            input::parse_count("count", a)
        })?;
    }
    input.basis = d.ask_until("Basis (seen, heard, reported)", Some("seen"), |a| input::parse_basis("basis", a))?;
    input.description = d.ask_until("Description (one line)", None, |a| {
        let s = a.to_string();
        input::check_field(|o| o.description = s.clone())?;
        Ok(s)
    })?;
    loop {
        if input.attachments.len() >= limits::MAX_ATTACHMENTS {
            break;
        }
        let file = d.ask_optional("Attach a file (path; blank when done)", None, |a| {
            let p = PathBuf::from(a);
            crate::attachments::check_attachment(&p)?;
            Ok(p)
        })?;
        match file {
            Some(p) => input.attachments.push(p),
            None => break,
        }
    }

    let mut summary = format!("{} at {}, {}, {}", category.name(), lat, lon, format_ms(observed_at));
    if let Some(u) = observed_until {
        summary.push_str(&format!(" until {}", format_ms(u)));
    }
    if !input.attachments.is_empty() {
        summary.push_str(&format!(", {} attachment(s)", input.attachments.len()));
    }
    d.say(&format!("Report: {summary}"))?;
    let yes = d.ask_until("Sign and record it? (y/n)", Some("y"), |a| match a.to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(true),
        "n" | "no" => Ok(false),
        _ => Err(AgentError::input("answer", "type y or n")),
    })?;
    if !yes {
        return Err(AgentError::Cancelled);
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use truce_shared::{Basis, Qualifier};

    fn run(script: &str, last: Option<Position>) -> (Result<RecordInput>, String) {
        let mut input = script.as_bytes();
        let mut out = Vec::new();
        let r = ask_record(&mut input, &mut out, last, || 1_800_000_000_000);
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn defaults_take_now_last_position_and_seen() {
        let last = Some(Position { lat: 48.5, lon: 37.9, accuracy_m: Some(10) });
        let (r, out) =
            run("shelling\n\n\n\n\n\n315\n5-7km\noutgoing\n152mm artillery\nabout 30\n\ntwo salvos\n\ny\n", last);
        let r = r.unwrap();
        assert_eq!(r.category, Category::Shelling);
        assert_eq!(r.observed_at, Some(1_800_000_000_000));
        assert_eq!(r.position, Position { lat: 48.5, lon: 37.9, accuracy_m: Some(10) });
        assert_eq!(r.bearing_deg, Some(315));
        assert_eq!(r.distance_m, Some((5000, 7000)));
        assert_eq!(r.count.map(|c| c.qualifier), Some(Qualifier::About));
        assert_eq!(r.basis, Basis::Seen);
        assert_eq!(r.description, "two salvos");
        assert!(out.contains("Latitude (decimal degrees) [48.5]"), "{out}");
    }

    #[test]
    fn bad_answers_are_explained_and_asked_again() {
        let (r, out) = run("artillery\n2\n-15m\n\n91\n48.1\n37.2\n\n\n\n\n\n\nheard\nboom\n\ny\n", None);
        let r = r.unwrap();
        assert_eq!(r.category, Category::Shelling);
        assert_eq!(r.observed_at, Some(1_800_000_000_000 - 15 * 60_000));
        assert_eq!(r.position.lat, 48.1);
        assert_eq!(r.basis, Basis::Heard);
        assert!(out.contains("! category: unknown value \"artillery\""), "{out}");
        assert!(out.contains("! latitude 91 is out of range"), "{out}");
    }

    #[test]
    fn nothing_observed_asks_for_the_watch_end_and_skips_event_fields() {
        let (r, _) = run("nothing-observed\n-5h\nnow\n48\n37\n\n\nquiet day\n\n\n", None);
        let r = r.unwrap();
        assert_eq!(r.category, Category::NothingObserved);
        assert_eq!(r.observed_until, Some(1_800_000_000_000));
        assert!(r.bearing_deg.is_none() && r.count.is_none());
    }

    #[test]
    fn end_of_input_or_no_cancels() {
        assert!(matches!(run("shelling\n", None).0, Err(AgentError::Cancelled)));
        assert!(matches!(run("other\n\n\n1\n2\n\n\n\n\n\n\nx\n\nn\n", None).0, Err(AgentError::Cancelled)));
    }
}
