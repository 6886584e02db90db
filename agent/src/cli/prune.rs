//! `prune`, and the keep period it applies: how long delivered reports keep
//! their bodies and evidence on this laptop (set by `init
//! --keep-delivered` or `prune --keep-delivered`), as typed and as shown.

use super::out::Out;
use super::unlock::Unlock;
use crate::error::{AgentError, Result};
use crate::paths::DataDir;

/// Runs `prune`, after setting a new keep period if one is given.
pub(super) fn run(keep_delivered: Option<String>, dir: &DataDir, keys: &Unlock, out: &mut Out) -> Result<()> {
    let mut agent = keys.open_unpruned(dir)?;
    if let Some(k) = keep_delivered {
        agent.set_keep_delivered_ms(parse_keep("--keep-delivered", &k)?)?;
    }
    let p = agent.prune()?;
    let keep = agent.keep_delivered_ms()?;
    if out.json {
        out.json_line(&serde_json::json!({
            "pruned_reports": p.reports, "pruned_files": p.files, "keep_delivered_s": keep / 1000,
        }))?;
    } else {
        out.line(&format!("pruned {} report(s) and {} evidence file(s); {}", p.reports, p.files, keep_text(keep)))?;
    }
    Ok(())
}

/// Reads a keep period: `0`, or a number and a unit (s, m, h, d, w).
pub fn parse_keep(field: &'static str, s: &str) -> Result<i64> {
    let t = s.trim();
    let bad = || AgentError::input(field, format!("{s:?} is not a duration: write 0, 90m, 12h or 7d"));
    if t == "0" {
        return Ok(0);
    }
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms).filter(|v| *v <= 3650 * 86_400_000).ok_or_else(bad)
}

/// The keep period in a sentence.
pub fn keep_text(ms: i64) -> String {
    if ms == 0 {
        "delivered reports' bodies are deleted as soon as the server holds them".to_string()
    } else {
        format!("delivered reports' bodies are deleted {} after delivery", human_ms(ms))
    }
}

/// A keep period as people write it: `0`, `90m`, `12h`, `7d`.
pub fn human_ms(ms: i64) -> String {
    const MIN: i64 = 60_000;
    match ms {
        0 => "at once".to_string(),
        m if m % (24 * 60 * MIN) == 0 => format!("{}d", m / (24 * 60 * MIN)),
        m if m % (60 * MIN) == 0 => format!("{}h", m / (60 * MIN)),
        m if m % MIN == 0 => format!("{}m", m / MIN),
        m => format!("{}s", m / 1000),
    }
}
