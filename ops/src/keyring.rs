//! The hash keys the options give: `--hash-key-file` (one key a line, the first current,
//! the others retired), else `APITOKEN_HASH_KEY` (current) and
//! `APITOKEN_RETIRED_HASH_KEYS` (retired, comma-separated), else none (unkeyed).
//!
//! A retired key is 64 hexadecimal characters or the word `unkeyed` (the hash without a
//! key, for a deployment that starts keying), optionally followed by ` until=YYYY-MM-DD`,
//! the last day (UTC) it is tried. Blank lines and lines starting with `#` are ignored.

use apitoken::{HashKey, HashKeyring, TokenHasher};
use chrono::NaiveDate;
use std::path::Path;
use zeroize::Zeroizing;

const HOW: &str = "generate one with `openssl rand -hex 32`";

/// The keyring the options give, or `None` for unkeyed hashing alone (no key given).
pub(crate) fn from_options(
    file: Option<&Path>,
    warnings: &mut Vec<String>,
) -> Result<Option<HashKeyring>, String> {
    let retired = std::env::var_os("APITOKEN_RETIRED_HASH_KEYS").filter(|v| !v.is_empty());
    if let Some(path) = file {
        let shown = path.display();
        let text = crate::file_mode::read_secret(path, "the hash key file", warnings)?;
        let text = std::str::from_utf8(&text).map_err(|_| {
            format!("the hash key file {shown} is not text: it must hold 64 hex characters; {HOW}")
        })?;
        if retired.is_some() {
            warnings.push(format!(
                "APITOKEN_RETIRED_HASH_KEYS is ignored: --hash-key-file {shown} gives every key (retired ones on the lines after the first); unset it"
            ));
        }
        return from_file(text, &format!("the hash key file {shown}")).map(Some);
    }
    let current = match std::env::var_os("APITOKEN_HASH_KEY").filter(|v| !v.is_empty()) {
        None if retired.is_some() => {
            return Err(
                "APITOKEN_RETIRED_HASH_KEYS is set without APITOKEN_HASH_KEY: set the current key in APITOKEN_HASH_KEY (the retired ones are the keys it replaced)".to_owned(),
            );
        }
        None => return Ok(None),
        Some(value) => {
            let value = Zeroizing::new(value.into_string().map_err(|_| {
                format!("APITOKEN_HASH_KEY is not a hash key: it must be 64 hex characters; {HOW}")
            })?);
            HashKey::from_hex(&value)
                .map_err(|e| format!("APITOKEN_HASH_KEY is not a hash key: {e}; {HOW}"))?
        }
    };
    let mut ring = HashKeyring::new(TokenHasher::keyed(current));
    if let Some(retired) = retired {
        let retired = Zeroizing::new(retired.into_string().map_err(|_| {
            "APITOKEN_RETIRED_HASH_KEYS is not text: list retired keys (64 hex characters, or `unkeyed`), comma-separated".to_owned()
        })?);
        for (i, entry) in retired.split(',').enumerate() {
            let what = format!("APITOKEN_RETIRED_HASH_KEYS, entry {}", i + 1);
            let (hasher, until) = retired_key(entry, &what)?;
            ring = ring
                .with_retired(hasher, until)
                .map_err(|e| format!("{what}: {e}"))?;
        }
    }
    Ok(Some(ring))
}

/// The keyring a key file's text holds; `what` names the file in messages.
pub(crate) fn from_file(text: &str, what: &str) -> Result<HashKeyring, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
    let Some((first_line, first)) = lines.next() else {
        return Err(format!(
            "{what} is empty: put the hash key in it (64 hex characters); {HOW}"
        ));
    };
    let mut rest = lines.peekable();
    // One key, as before keyrings: the same messages.
    let current = if rest.peek().is_none() {
        HashKey::from_hex(first)
            .map_err(|e| format!("{what} does not hold a hash key: {e}; {HOW}"))?
    } else {
        if first.contains("until=") {
            return Err(format!(
                "{what}, line {first_line}: the first line is the current key, which has no end date: move `until=` to a retired key's line"
            ));
        }
        HashKey::from_hex(first).map_err(|e| {
            format!("{what}, line {first_line} (the current key) is not a hash key: {e}; {HOW}")
        })?
    };
    let mut ring = HashKeyring::new(TokenHasher::keyed(current));
    for (number, line) in rest {
        let where_ = format!("{what}, line {number}");
        let (hasher, until) = retired_key(line, &where_)?;
        ring = ring
            .with_retired(hasher, until)
            .map_err(|e| format!("{where_}: {e}"))?;
    }
    Ok(ring)
}

/// A retired key: hex or `unkeyed`, then optionally ` until=YYYY-MM-DD`.
fn retired_key(entry: &str, what: &str) -> Result<(TokenHasher, Option<NaiveDate>), String> {
    let mut words = entry.split_whitespace();
    let key = words.next().ok_or_else(|| {
        format!("{what} is empty: give a retired key (64 hex characters, or `unkeyed`)")
    })?;
    let hasher = if key == "unkeyed" {
        TokenHasher::unkeyed()
    } else {
        TokenHasher::keyed(HashKey::from_hex(key).map_err(|e| {
            format!("{what} is not a retired key: {e} (or `unkeyed` for the hash without a key)")
        })?)
    };
    let until = match words.next() {
        None => None,
        Some(word) => {
            let date = word.strip_prefix("until=").ok_or_else(|| {
                format!("{what}: after the key only ` until=YYYY-MM-DD` may follow")
            })?;
            Some(NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|_| {
                format!("{what}: `until={date}` is not a date: write until=YYYY-MM-DD (the last day, UTC, the key is tried)")
            })?)
        }
    };
    if words.next().is_some() {
        return Err(format!(
            "{what}: one key a line, optionally followed by ` until=YYYY-MM-DD`"
        ));
    }
    Ok((hasher, until))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitoken::KeyFingerprint;

    fn key(byte: u8) -> String {
        format!("{byte:02x}").repeat(32)
    }

    #[test]
    fn one_line_is_one_key_as_before() {
        let ring = from_file(&format!("{}\n", key(0xab)), "f").unwrap();
        assert_eq!(ring.len(), 1);
        assert_eq!(
            ring.current().fingerprint(),
            HashKey::from_bytes([0xab; 32]).fingerprint()
        );
        let refused = from_file("nothex", "the hash key file k").unwrap_err();
        assert!(
            refused.starts_with("the hash key file k does not hold a hash key"),
            "{refused}"
        );
    }

    #[test]
    fn later_lines_are_retired_keys_with_end_dates() {
        let text = format!(
            "# rotated 2026-03-01\n{}\n\n{} until=2026-06-30\nunkeyed\n",
            key(0xcd),
            key(0xab)
        );
        let ring = from_file(&text, "f").unwrap();
        let keys = ring.fingerprints();
        assert_eq!(
            keys.current(),
            HashKey::from_bytes([0xcd; 32]).fingerprint()
        );
        assert_eq!(
            keys.retired(),
            [
                HashKey::from_bytes([0xab; 32]).fingerprint(),
                KeyFingerprint::Unkeyed
            ]
        );
        assert_eq!(
            ring.retired()[0].until(),
            NaiveDate::from_ymd_opt(2026, 6, 30)
        );
        assert_eq!(ring.retired()[1].until(), None);
    }

    #[test]
    fn a_bad_line_is_named_with_what_to_do() {
        for (text, said) in [
            (
                format!("{} until=2026-01-01\n{}", key(1), key(2)),
                "line 1: the first line is the current key",
            ),
            (
                format!("{}\n{} until=tomorrow", key(1), key(2)),
                "line 2: `until=tomorrow` is not a date",
            ),
            (
                format!("{}\n{} later", key(1), key(2)),
                "line 2: after the key only",
            ),
            (format!("{}\nabc", key(1)), "line 2 is not a retired key"),
            (format!("{}\n{}", key(1), key(1)), "is in the keyring twice"),
            (
                format!("{}\n{}\n{}\n{}\n{}", key(1), key(2), key(3), key(4), key(5)),
                "at most 3 retired keys",
            ),
        ] {
            let refused = from_file(&text, "f").unwrap_err();
            assert!(refused.contains(said), "{text:?}: {refused}");
            assert!(
                !refused.contains(&key(2)),
                "a key is never repeated: {refused}"
            );
        }
        assert!(
            from_file("\n# nothing\n", "f")
                .unwrap_err()
                .contains("is empty")
        );
    }
}
