//! Text from outside shown on a terminal: names, reasons, ids as read.
//!
//! A device name, a revocation reason or a reason quoted from a report can
//! hold control characters (a device list or bundle from elsewhere, a field
//! an adversary filled). Written raw to a terminal, escape sequences can
//! move the cursor, rewrite earlier lines or retitle the window, so what an
//! operator reads is not what is stored. [`printable`] writes each control
//! character as a visible escape (`\n`, `\u{1b}`), leaving all other text,
//! Cyrillic and Arabic included, as it is. JSON output needs none of this:
//! its encoder escapes control characters itself.

use std::borrow::Cow;

/// `text` with every control character escaped (`\t`, `\n`, `\r`, `\u{1b}`…).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A command-line parser's usage error (clap's several lines: the problem,
/// a blank line, the usage, a pointer to help) as the one line both
/// binaries print: the problem, then where to read more.
pub fn usage_error(rendered: &str, program: &str) -> String {
    let text: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    let text = text.join(" ");
    format!("{} (see `{program} --help`)", text.trim_start_matches("error: "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_error_is_one_line() {
        let clap = "error: the argument '--no-crl' cannot be used with '--crl <FILE>'\n\nUsage: truce-server run --no-crl\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error(clap, "truce-server"),
            "the argument '--no-crl' cannot be used with '--crl <FILE>' (see `truce-server --help`)"
        );
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(printable("laptop-07"), "laptop-07");
        assert_eq!(printable("обстріл «важкі»"), "обстріл «важкі»");
        assert_eq!(printable("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(printable("\u{1b}[2J\u{1b}]0;owned\u{7}x"), "\\u{1b}[2J\\u{1b}]0;owned\\u{7}x");
        assert_eq!(printable("\u{9b}31m"), "\\u{9b}31m", "the one-byte CSI of C1 too");
        assert!(!printable("\u{1b}\u{0}\u{7f}").chars().any(char::is_control));
    }
}
