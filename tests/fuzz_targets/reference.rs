//! The library's rules restated as simply as possible, to check its fast paths against.

use apitoken::{Alphabet, TokenFormat};

/// The digits of an alphabet, written out independently of the library.
pub(crate) fn digits(alphabet: Alphabet) -> &'static [u8; 62] {
    match alphabet {
        Alphabet::Dynamic => b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
        Alphabet::GitHub => b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        other => panic!("no reference digits for {other:?}: add them here"),
    }
}

/// CRC-32 (zlib), bit by bit.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The checksum of a random part: CRC-32 in base 62, 6 digits.
pub(crate) fn checksum(random: &[u8], alphabet: Alphabet) -> [u8; 6] {
    let digits = digits(alphabet);
    let mut n = crc32(random);
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = digits[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// Whether `s` is a token of `format`: `{prefix}_`, then exactly `body_len` ASCII letters
/// and digits whose last 6 are the checksum of the rest.
pub(crate) fn is_token(format: &TokenFormat, s: &[u8]) -> bool {
    let Some(body) = s
        .strip_prefix(format.prefix().as_bytes())
        .and_then(|rest| rest.strip_prefix(b"_"))
    else {
        return false;
    };
    if body.len() != format.random_len() + 6 || !body.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let (random, found) = body.split_at(format.random_len());
    checksum(random, format.alphabet()) == found
}

/// Whether `s` is a token of some format: a prefix of 1 to 16 letters and digits starting
/// with a letter, `_`, 22 to 64 random letters and digits and a checksum in either order.
pub(crate) fn is_token_of_any_format(s: &str) -> bool {
    let Some((prefix, body)) = s.split_once('_') else {
        return false;
    };
    let prefix_ok = (1..=16).contains(&prefix.len())
        && prefix.as_bytes()[0].is_ascii_alphabetic()
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric());
    let Some(random_len) = body.len().checked_sub(6) else {
        return false;
    };
    if !prefix_ok || !(22..=64).contains(&random_len) {
        return false;
    }
    [Alphabet::Dynamic, Alphabet::GitHub]
        .into_iter()
        .any(|alphabet| {
            let format = TokenFormat::new(prefix, alphabet, random_len).expect("checked above");
            is_token(&format, s.as_bytes())
        })
}

/// The random part of a token of `format` (which must be one).
pub(crate) fn random_part<'a>(format: &TokenFormat, token: &'a str) -> &'a str {
    let start = format.prefix().len() + 1;
    &token[start..start + format.random_len()]
}

/// The token of an `Authorization` value: surrounding ASCII whitespace (space, tab, line
/// feed, form feed, carriage return) is ignored, then it must start with `Bearer` (any
/// case) followed by ASCII whitespace; `None` otherwise. Other whitespace (a vertical tab,
/// U+1680, U+00A0) is kept, so the token is malformed: HTTP's own is spaces and tabs.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    const ASCII_WHITESPACE: [char; 5] = [' ', '\t', '\n', '\x0C', '\r'];
    let s = value.trim_matches(ASCII_WHITESPACE);
    if let (Some(scheme), Some(rest)) = (s.get(..6), s.get(6..))
        && scheme.eq_ignore_ascii_case("bearer")
        && rest.starts_with(ASCII_WHITESPACE)
    {
        return Some(rest.trim_start_matches(ASCII_WHITESPACE));
    }
    None
}

/// Unicode 16's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt).
const DEFAULT_IGNORABLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
];

fn is_invisible(c: char) -> bool {
    let c = u32::from(c);
    DEFAULT_IGNORABLE
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// The first invisible character of a (trimmed) note that is not part of an emoji, with
/// its position from 1: a variation selector U+FE00..U+FE0F may follow a visible
/// character, a zero-width joiner may stand between a visible character (or a variation
/// selector) and a visible character.
pub(crate) fn first_invisible_in_note(note: &str) -> Option<(usize, char)> {
    let chars: Vec<char> = note.chars().collect();
    let visible = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|&c| !is_invisible(c) && !c.is_whitespace())
    };
    let selector = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|&c| ('\u{FE00}'..='\u{FE0F}').contains(&c))
    };
    (0..chars.len()).find_map(|i| {
        let c = chars[i];
        let before = i.checked_sub(1);
        let allowed = match c {
            '\u{FE00}'..='\u{FE0F}' => visible(before),
            '\u{200D}' => (visible(before) || selector(before)) && visible(Some(i + 1)),
            _ => !is_invisible(c),
        };
        (!allowed).then_some((i + 1, c))
    })
}

/// Where the first Dynamic token in a note starts (from 1, in characters): a token not
/// glued to a letter, digit or `_` before it, nor to a letter or digit after it.
pub(crate) fn token_in_note(note: &str) -> Option<usize> {
    let format = TokenFormat::dynamic();
    let bytes = note.as_bytes();
    let len = format.token_len();
    (0..bytes.len()).find_map(|start| {
        let window = bytes.get(start..start + len)?;
        let glued_before =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let glued_after = bytes
            .get(start + len)
            .is_some_and(u8::is_ascii_alphanumeric);
        (is_token(&format, window) && !glued_before && !glued_after)
            .then(|| note[..start].chars().count() + 1)
    })
}

/// Whether a note character is refused: controls, line separators, bidi formatting.
pub(crate) fn is_forbidden_in_note(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `s` is a well-formed scope: 1 to 100 bytes, dot-separated non-empty segments
/// of ASCII letters, digits, `_` and `-`.
pub(crate) fn is_scope(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}
