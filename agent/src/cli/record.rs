//! `record`: a report from flags, or from prompts on a terminal when no
//! flag is given; prints the new report's id.

use std::io::IsTerminal;

use serde::Serialize;
use truce_shared::time::now_ms;
use truce_shared::{Count, Qualifier};

use super::args::RecordArgs;
use super::out::Out;
use super::reports::AttachmentJson;
use super::unlock::Unlock;
use crate::agent::Recorded;
use crate::error::{AgentError, Result};
use crate::input::{self, RecordInput};
use crate::paths::DataDir;

impl RecordArgs {
    /// Whether no field was given at all (the interactive case).
    fn is_empty(&self) -> bool {
        let RecordArgs {
            category,
            lat,
            lon,
            accuracy,
            at,
            until,
            bearing,
            distance,
            effect,
            weapon,
            count,
            about,
            at_least,
            basis,
            description,
            attach,
            amends,
        } = self;
        [category, lat, lon, accuracy, at, until, bearing, distance, effect, weapon, count, basis, description, amends]
            .iter()
            .all(|o| o.is_none())
            && !about
            && !at_least
            && attach.is_empty()
    }

    /// Parses the flags into a [`RecordInput`], naming the flag of the
    /// first bad value.
    pub fn to_input(&self, now: i64) -> Result<RecordInput> {
        let missing: Vec<&str> = [("--category", &self.category), ("--lat", &self.lat), ("--lon", &self.lon)]
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        let (Some(c), Some(lat), Some(lon)) = (&self.category, &self.lat, &self.lon) else {
            return Err(AgentError::input(
                "record",
                format!(
                    "{} missing: give at least --category, --lat and --lon (or run `truce-agent record` with no flags on a terminal to be asked)",
                    missing.join(", ")
                ),
            ));
        };
        let mut input = RecordInput::new(
            input::parse_category("--category", c)?,
            input::parse_degrees("--lat", lat)?,
            input::parse_degrees("--lon", lon)?,
        );
        input.position.accuracy_m =
            self.accuracy.as_deref().map(|a| input::parse_metres("--accuracy", a)).transpose()?;
        input.observed_at = Some(match &self.at {
            Some(t) => input::parse_when("--at", t, now)?,
            None => now,
        });
        input.observed_until = self.until.as_deref().map(|t| input::parse_when("--until", t, now)).transpose()?;
        input.bearing_deg = self.bearing.as_deref().map(|b| input::parse_bearing("--bearing", b)).transpose()?;
        input.distance_m = self.distance.as_deref().map(|d| input::parse_distance("--distance", d)).transpose()?;
        input.effect = self.effect.as_deref().map(|e| input::parse_effect("--effect", e)).transpose()?;
        input.weapon = self.weapon.clone();
        input.count = match &self.count {
            Some(n) => {
                let n = n.trim().parse::<u32>().map_err(|_| {
                    AgentError::input("--count", format!("{n:?} is not a whole number: use --count 30 --about"))
                })?;
                let qualifier = if self.about {
                    Qualifier::About
                } else if self.at_least {
                    Qualifier::AtLeast
                } else {
                    Qualifier::Exact
                };
                Some(Count { n, qualifier })
            }
            None => None,
        };
        if let Some(b) = &self.basis {
            input.basis = input::parse_basis("--basis", b)?;
        }
        input.description = self.description.clone().unwrap_or_default();
        input.attachments = self.attach.clone();
        input.amends = self.amends.clone();
        Ok(input)
    }
}

/// `record`'s answer.
#[derive(Serialize)]
pub struct RecordedJson {
    id: String,
    seq: u64,
    attachments: Vec<AttachmentJson>,
}

impl From<&Recorded> for RecordedJson {
    fn from(r: &Recorded) -> Self {
        RecordedJson { id: hex::encode(r.id), seq: r.seq, attachments: r.attachments.iter().map(Into::into).collect() }
    }
}
/// Runs `record`.
pub(super) fn run(a: &RecordArgs, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let mut agent = keys.open(dir)?;
    let input = if a.is_empty() {
        if !std::io::stdin().is_terminal() {
            return Err(AgentError::input(
                "record",
                "no fields given and no terminal to ask on: give at least --category, --lat and --lon",
            ));
        }
        let last = agent.queue().last_position()?;
        let stdin = std::io::stdin();
        let mut lock = stdin.lock();
        crate::interactive::ask_record(&mut lock, &mut std::io::stderr(), last, now_ms)?
    } else {
        a.to_input(now_ms())?
    };
    let rec = agent.record(&input)?;
    if out.json {
        out.json_line(&RecordedJson::from(&rec))?;
    } else {
        out.line(&hex::encode(rec.id))?;
    }
    Ok(())
}
