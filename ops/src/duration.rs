//! Durations on the command line: `45s`, `90m`, `12h`, `30d`, `2w`, or sums like `1d12h`.
//!
//! Our own parser (40 lines) rather than `humantime`, for what it refuses. Measured with
//! humantime 2.4.0's `parse_duration`: `1M` is 2,630,016 s (a month of 30.44 days) where
//! `1m` is 60 s, `1y` is 365.25 days, `3.5d` is 302,400 s and `100ms` is 0.1 s; the same
//! strings here are errors that list the units. A retention (`purge --older-than`,
//! `--leak-retention`) that one capital letter multiplies by 43,834, or that a fraction
//! or a month of no fixed length makes unclear, is not something to guess at. Every
//! string both accept (`45s` … `1h30m15s`, sums, surrounding spaces) reads the same.

use std::time::Duration;

const EXPECTED: &str = "expected a whole number and a unit (s, m, h, d or w), such as 45s, 90m, 12h, 30d or 2w, or a sum such as 1d12h";

/// The longest duration accepted: 100 years (36525 days), far below where timestamps
/// stop being writable as RFC 3339.
pub const MAX_SECS: u64 = 36_525 * 86_400;

/// Parses a duration; the error says what is expected.
pub fn parse(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err(format!("empty duration: {EXPECTED}"));
    }
    let too_long = || format!("duration {text:?} is too long: at most 36525d (100 years)");
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        if number.is_empty() {
            return Err(format!("invalid duration {text:?}: {EXPECTED}"));
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let seconds_per_unit: u64 = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3_600,
            "d" => 86_400,
            "w" => 604_800,
            "" => return Err(format!("duration {text:?} has no unit: {EXPECTED}")),
            _ => return Err(format!("unknown unit {unit:?} in {text:?}: {EXPECTED}")),
        };
        let n: u64 = number.parse().map_err(|_| too_long())?;
        total = n
            .checked_mul(seconds_per_unit)
            .and_then(|secs| total.checked_add(secs))
            .filter(|&t| t <= MAX_SECS)
            .ok_or_else(too_long)?;
        rest = after;
    }
    Ok(Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sums() {
        for (text, secs) in [
            ("45s", 45),
            ("90m", 5_400),
            ("12h", 43_200),
            ("30d", 2_592_000),
            ("2w", 1_209_600),
            ("1d12h", 129_600),
            ("1h30m15s", 5_415),
            (" 0s ", 0),
            ("36525d", MAX_SECS),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn errors_say_what_is_expected() {
        for text in [
            "",
            "30",
            "d",
            "30x",
            "3.5d",
            "-1d",
            "30 d",
            "1M",
            "١٢h",
            "30дней",
        ] {
            let err = parse(text).unwrap_err();
            assert!(
                err.contains("such as 45s, 90m, 12h, 30d or 2w"),
                "{text}: {err}"
            );
        }
        for text in [
            "36526d",
            "99999999999999999999999s",
            "18446744073709551615w",
        ] {
            assert!(parse(text).unwrap_err().contains("too long"), "{text}");
        }
    }
}
