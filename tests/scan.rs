//! Leak response: `scan` finds exactly the tokens of a format in any bytes, `redact`
//! hides them, and the gitleaks rule in `docs/gitleaks.toml` reports the same shape.

use apitoken::scan::{Finding, redact, scan};
use apitoken::{Alphabet, Checksum, TokenFormat};
use proptest::collection::vec;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::borrow::Cow;

const REFERENCE: &str = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC";
const REFERENCE_RANDOM: &str = "aGLjTe3TUN40vSE75sTtgUx9AjIe0q";
const ALNUM: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

const GITLEAKS_TOML: &str = include_str!("../docs/gitleaks.toml");
const GITLEAKS_REGEX: &str = r"\b(dyn_[0-9A-Za-z]{36})(?:[^0-9A-Za-z]|$)";
const SAMPLE_TOKENS: &str = include_str!("../docs/scan-samples/tokens.txt");
const SAMPLE_NEAR_MISSES: &str = include_str!("../docs/scan-samples/near-misses.txt");
const SAMPLE_NON_TOKENS: &str = include_str!("../docs/scan-samples/non-tokens.txt");

fn dynamic() -> TokenFormat {
    TokenFormat::dynamic()
}

fn findings(format: &TokenFormat, text: impl AsRef<[u8]>) -> Vec<Finding> {
    scan(format, text.as_ref()).collect()
}

fn offsets(format: &TokenFormat, text: impl AsRef<[u8]>) -> Vec<usize> {
    scan(format, text.as_ref()).map(|f| f.offset).collect()
}

fn checksum(s: &str) -> Checksum {
    Checksum::parse(s).unwrap()
}

fn token(format: &TokenFormat, seed: u64) -> String {
    format
        .generate(&mut StdRng::seed_from_u64(seed))
        .expose_secret()
        .to_owned()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The definition, checked at every position independently, with `TokenFormat::parse`
/// (not the scanner's code) deciding the checksum.
fn reference(format: &TokenFormat, text: &[u8]) -> Vec<Finding> {
    let len = format.token_len();
    let head = format!("{}_", format.prefix());
    (0..text.len())
        .filter_map(|p| {
            let candidate = text.get(p..p + len)?;
            if p > 0 && is_word(text[p - 1]) {
                return None;
            }
            if text.get(p + len).is_some_and(u8::is_ascii_alphanumeric) {
                return None;
            }
            let candidate = std::str::from_utf8(candidate).ok()?;
            if !candidate.starts_with(&head) {
                return None;
            }
            let parsed = format.parse(candidate).ok()?;
            Some(Finding {
                offset: p,
                len,
                checksum: parsed.checksum(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// The reference token and look-alikes

#[test]
fn finds_the_reference_token_alone() {
    assert_eq!(
        findings(&dynamic(), REFERENCE),
        [Finding {
            offset: 0,
            len: 40,
            checksum: checksum("4n3LFC"),
        }]
    );
}

#[test]
fn finds_the_reference_token_at_its_byte_offset() {
    let text = format!("2026-03-01 INFO é caller presented {REFERENCE} and was refused");
    let found = findings(&dynamic(), &text);
    let offset = text.find(REFERENCE).unwrap();
    assert_eq!(offset, 36, "the é takes two bytes");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].offset, offset);
    assert_eq!(found[0].len, REFERENCE.len());
    assert_eq!(found[0].range(), offset..offset + 40);
    assert_eq!(found[0].checksum.as_str(), "4n3LFC");
    assert_eq!(&text[found[0].range()], REFERENCE);
}

#[test]
fn every_single_character_substitution_is_not_reported() {
    let format = dynamic();
    let mut checked = 0;
    for i in 4..REFERENCE.len() {
        for &c in ALNUM {
            let mut bytes = REFERENCE.as_bytes().to_vec();
            if bytes[i] == c {
                continue;
            }
            bytes[i] = c;
            assert_eq!(
                findings(&format, &bytes),
                [],
                "{}",
                String::from_utf8_lossy(&bytes)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 36 * 61);
}

#[test]
fn swapped_neighbours_are_not_reported() {
    let format = dynamic();
    for i in 4..REFERENCE.len() - 1 {
        let mut bytes = REFERENCE.as_bytes().to_vec();
        if bytes[i] == bytes[i + 1] {
            continue;
        }
        bytes.swap(i, i + 1);
        assert_eq!(findings(&format, &bytes), []);
    }
}

#[test]
fn look_alikes_in_text_are_not_reported() {
    let format = dynamic();
    let text = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFc dyn_000000000000000000000000000000000001 \
                dyn_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx dyn_AGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC";
    assert_eq!(findings(&format, text), []);
}

#[test]
fn the_checksum_of_the_other_digit_order_is_not_reported() {
    let wrong_order = Checksum::compute(REFERENCE_RANDOM.as_bytes(), Alphabet::GitHub);
    assert_ne!(wrong_order.as_str(), "4n3LFC");
    let text = format!("dyn_{REFERENCE_RANDOM}{wrong_order}");
    assert_eq!(findings(&dynamic(), &text), []);
    let github_dyn = TokenFormat::github("dyn").unwrap();
    assert_eq!(offsets(&github_dyn, &text), [0]);
    assert_eq!(findings(&github_dyn, REFERENCE), []);
}

#[test]
fn wrong_lengths_are_not_reported() {
    let format = dynamic();
    for cut in 1..36 {
        assert_eq!(findings(&format, &REFERENCE[..40 - cut]), []);
    }
    // One character too many, wherever the extra one is.
    assert_eq!(findings(&format, format!("{REFERENCE}0")), []);
    assert_eq!(findings(&format, format!("dyn_0{}", &REFERENCE[4..])), []);
    // Another prefix, or none.
    assert_eq!(findings(&format, &REFERENCE[4..]), []);
    assert_eq!(findings(&format, REFERENCE.replacen("dyn", "DYN", 1)), []);
    assert_eq!(findings(&format, REFERENCE.replacen("dyn_", "dyn-", 1)), []);
    assert_eq!(
        findings(&format, REFERENCE.replacen("dyn_", "dyn__", 1)),
        []
    );
}

// ---------------------------------------------------------------------------------------
// Boundaries

#[test]
fn the_byte_before_must_not_be_a_letter_digit_or_underscore() {
    let format = dynamic();
    for before in 0..=u8::MAX {
        let mut text = vec![before];
        text.extend_from_slice(REFERENCE.as_bytes());
        let expected: &[usize] = if is_word(before) { &[] } else { &[1] };
        assert_eq!(
            offsets(&format, &text),
            expected,
            "byte {before:#04x} before"
        );
    }
}

#[test]
fn the_byte_after_must_not_be_a_letter_or_digit() {
    let format = dynamic();
    for after in 0..=u8::MAX {
        let mut text = REFERENCE.as_bytes().to_vec();
        text.push(after);
        let expected: &[usize] = if after.is_ascii_alphanumeric() {
            &[]
        } else {
            &[0]
        };
        assert_eq!(offsets(&format, &text), expected, "byte {after:#04x} after");
    }
}

#[test]
fn tokens_at_the_start_and_at_the_end_of_the_input() {
    let format = dynamic();
    let text = format!("{REFERENCE} in the middle {REFERENCE}");
    assert_eq!(offsets(&format, &text), [0, text.len() - 40]);
    assert_eq!(offsets(&format, format!("\n{REFERENCE}")), [1]);
    assert_eq!(offsets(&format, format!("{REFERENCE}\n")), [0]);
    assert_eq!(findings(&format, ""), []);
    assert_eq!(findings(&format, "dyn_"), []);
    assert_eq!(findings(&format, "_"), []);
}

#[test]
fn adjacent_tokens_separated_by_one_byte() {
    let format = dynamic();
    let other = token(&format, 1);
    for sep in [
        b' ', b',', b';', b'\n', b'\t', b'-', b'.', b':', b'|', 0, 0xff,
    ] {
        let mut text = REFERENCE.as_bytes().to_vec();
        text.push(sep);
        text.extend_from_slice(other.as_bytes());
        text.push(sep);
        text.extend_from_slice(REFERENCE.as_bytes());
        assert_eq!(offsets(&format, &text), [0, 41, 82], "separator {sep:#04x}");
    }
    // `_` ends the first token but glues the second to it.
    assert_eq!(offsets(&format, format!("{REFERENCE}_{other}")), [0]);
    // No separator: neither is a token.
    assert_eq!(offsets(&format, format!("{REFERENCE}{other}")), [0usize; 0]);
}

#[test]
fn repeated_tokens_are_each_found() {
    let format = dynamic();
    let text = format!("{REFERENCE} ").repeat(1000);
    let found = offsets(&format, &text);
    assert_eq!(found, (0..1000).map(|i| i * 41).collect::<Vec<_>>());
}

// ---------------------------------------------------------------------------------------
// Where tokens leak

#[test]
fn tokens_in_json_urls_quotes_headers_and_code() {
    let format = dynamic();
    let cases = [
        format!(r#"{{"token":{{"rawToken":"{REFERENCE}","checksum":"4n3LFC"}}}}"#),
        format!("GET /v1/things?token={REFERENCE}&page=2 HTTP/1.1"),
        format!("https://api.example.com/cb#access_token={REFERENCE}"),
        format!("https://api.example.com/t/{REFERENCE}/x"),
        format!("Authorization: Bearer {REFERENCE}"),
        format!("authorization: bearer\t{REFERENCE}\r\n"),
        format!("'{REFERENCE}'"),
        format!("`{REFERENCE}`"),
        format!("export DYNAMIC_TOKEN=\"{REFERENCE}\""),
        format!("let t = \"{REFERENCE}\";"),
        format!("<token>{REFERENCE}</token>"),
        format!("token: {REFERENCE} # yaml"),
        format!("({REFERENCE})"),
        format!("«{REFERENCE}»"),
        format!("a,b,{REFERENCE},c"),
    ];
    for text in &cases {
        let found = findings(&format, text);
        assert_eq!(found.len(), 1, "{text}");
        assert_eq!(&text[found[0].range()], REFERENCE, "{text}");
        assert_eq!(found[0].checksum.as_str(), "4n3LFC");
    }
}

#[test]
fn binary_and_invalid_utf8_around_tokens() {
    let format = dynamic();
    let mut text = vec![0xff, 0xfe, 0x00, 0x80, 0xc3];
    text.extend_from_slice(REFERENCE.as_bytes());
    text.extend_from_slice(&[0x00, 0x9f, 0x92, 0x96]);
    text.extend_from_slice(REFERENCE.as_bytes());
    text.extend_from_slice(&[0xc0]);
    assert!(std::str::from_utf8(&text).is_err());
    assert_eq!(offsets(&format, &text), [5, 49]);

    // Random bytes with tokens planted in them: found at their places.
    let mut rng = StdRng::seed_from_u64(3);
    let mut blob = vec![0u8; 1 << 16];
    rand::Rng::fill_bytes(&mut rng, &mut blob);
    let mut planted = Vec::new();
    for (i, at) in [0usize, 777, 4096, 30_000, 65_000].into_iter().enumerate() {
        let t = token(&format, 100 + i as u64);
        blob[at..at + 40].copy_from_slice(t.as_bytes());
        // Keep the boundaries: a random letter next to it would glue it.
        if at > 0 {
            blob[at - 1] = b' ';
        }
        blob[at + 40] = b' ';
        planted.push(at);
    }
    assert_eq!(offsets(&format, &blob), planted);
    assert_eq!(findings(&format, &blob), reference(&format, &blob));
}

// ---------------------------------------------------------------------------------------
// Formats

#[test]
fn github_preset_uses_its_digit_order() {
    let ghp = TokenFormat::github("ghp").unwrap();
    let t = token(&ghp, 7);
    let text = format!("GITHUB_TOKEN={t}\n");
    let found = findings(&ghp, &text);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].offset, 13);
    assert_eq!(found[0].checksum.as_str(), &t[34..]);
    // The same characters under Dynamic's order (prefix `ghp`) fail the checksum.
    let dynamic_ghp = dynamic().with_prefix("ghp").unwrap();
    assert_ne!(
        Checksum::compute(&t.as_bytes()[4..34], Alphabet::Dynamic).as_str(),
        &t[34..]
    );
    assert_eq!(findings(&dynamic_ghp, &text), []);
    // And each format ignores the other's tokens.
    assert_eq!(offsets(&ghp, format!("{REFERENCE} {t}")), [41]);
    assert_eq!(offsets(&dynamic(), format!("{REFERENCE} {t}")), [0]);
}

#[test]
fn custom_prefixes_and_lengths() {
    let formats = [
        TokenFormat::new("x", Alphabet::Dynamic, 22).unwrap(),
        TokenFormat::new("aa", Alphabet::GitHub, 30).unwrap(),
        TokenFormat::new("abcdefghijklmnop", Alphabet::Dynamic, 64).unwrap(),
        TokenFormat::new("npm", Alphabet::GitHub, 40).unwrap(),
    ];
    for (i, format) in formats.iter().enumerate() {
        let t = token(format, i as u64);
        assert_eq!(t.len(), format.token_len());
        let text = format!("a {t} b {t}");
        assert_eq!(offsets(format, &text), [2, t.len() + 5], "{format:?}");
        // The prefix's first letter repeated in front glues it.
        let glued = format!("{}{t}", &t[..1]);
        assert_eq!(findings(format, &glued), [], "{format:?}");
        assert_eq!(
            findings(format, &glued),
            reference(format, glued.as_bytes())
        );
        // The default format does not see them (different prefix or length).
        assert_eq!(findings(&dynamic(), &text), []);
    }
}

#[test]
fn every_offset_and_every_tail_length() {
    // Around the scanner's 64-byte blocks: the token at each offset, with each amount of
    // text after it, in filler full of partial candidates.
    let format = dynamic();
    for filler in [&b" "[..], b"dyn_ -", b"n_ d_ y", b"\xff_d"] {
        for offset in 0..150 {
            for tail in [0usize, 1, 2, 3, 40, 63, 64, 65, 127] {
                let mut text: Vec<u8> = filler.iter().copied().cycle().take(offset).collect();
                text.extend_from_slice(REFERENCE.as_bytes());
                text.extend(filler.iter().copied().cycle().take(tail));
                let found = findings(&format, &text);
                assert_eq!(found, reference(&format, &text));
                if filler == b" " {
                    assert_eq!(offsets(&format, &text), [offset]);
                }
            }
        }
    }
}

#[test]
fn scanning_is_fused_and_restartable() {
    let format = dynamic();
    let text = format!("{REFERENCE} x");
    let mut it = scan(&format, text.as_bytes());
    assert!(it.next().is_some());
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);
    assert_eq!(scan(&format, text.as_bytes()).count(), 1);
}

// ---------------------------------------------------------------------------------------
// Redaction

#[test]
fn redact_replaces_each_token_with_prefix_and_checksum() {
    let format = dynamic();
    let other = token(&format, 9);
    let other_checksum = &other[34..];
    let text = format!(
        "é {REFERENCE},{other}\nAuthorization: Bearer {REFERENCE} dyn_notatoken xdyn_{}",
        &REFERENCE[4..]
    );
    let redacted = redact(&format, &text);
    assert_eq!(
        redacted,
        format!(
            "é dyn_…4n3LFC,dyn_…{other_checksum}\nAuthorization: Bearer dyn_…4n3LFC dyn_notatoken xdyn_{}",
            &REFERENCE[4..]
        )
    );
}

#[test]
fn redact_changes_nothing_else_and_is_idempotent() {
    let format = dynamic();
    let tokens: Vec<String> = (0..20).map(|i| token(&format, i)).collect();
    let mut text = String::new();
    for (i, t) in tokens.iter().enumerate() {
        text.push_str(&format!("line {i} ünïcödé {t} dyn_{i} "));
    }
    let redacted = redact(&format, &text).into_owned();
    // Each token is replaced where it was; what is between tokens is kept as it was.
    let found = findings(&format, &text);
    assert_eq!(found.len(), 20);
    let mut expected = String::new();
    let mut copied = 0;
    for f in &found {
        expected.push_str(&text[copied..f.offset]);
        expected.push_str(&format!("dyn_…{}", f.checksum));
        copied = f.offset + f.len;
    }
    expected.push_str(&text[copied..]);
    assert_eq!(redacted, expected);
    // No random part survives; nothing is left to find; a second pass is a no-op.
    for t in &tokens {
        assert!(!redacted.contains(&t[4..34]));
        assert!(!redacted.contains(&t[..20]));
    }
    assert_eq!(findings(&format, &redacted), []);
    assert!(matches!(redact(&format, &redacted), Cow::Borrowed(_)));
    assert_eq!(redact(&format, &redacted), redacted);
}

#[test]
fn redact_borrows_when_there_is_nothing_to_hide() {
    let format = dynamic();
    for text in [
        "",
        "nothing here",
        "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFc",
        "dyn_…4n3LFC",
    ] {
        assert!(matches!(redact(&format, text), Cow::Borrowed(t) if t == text));
    }
    assert!(matches!(redact(&format, REFERENCE), Cow::Owned(t) if t == "dyn_…4n3LFC"));
}

#[test]
fn redact_github_tokens() {
    let ghp = TokenFormat::github("ghp").unwrap();
    let t = token(&ghp, 4);
    let text = format!("token {t}.");
    let redacted = redact(&ghp, &text);
    assert_eq!(redacted, format!("token ghp_…{}.", &t[34..]));
}

// ---------------------------------------------------------------------------------------
// The gitleaks rule

/// The value of the `key = …` line of `docs/gitleaks.toml`: read with string functions,
/// not a TOML parser, and only for the single-line values the file uses.
fn gitleaks_value(key: &str) -> &'static str {
    let head = format!("{key} = ");
    let mut lines = GITLEAKS_TOML
        .lines()
        .filter_map(|line| line.strip_prefix(head.as_str()));
    let value = lines.next().unwrap_or_else(|| panic!("no `{key}` line"));
    assert_eq!(lines.next(), None, "more than one `{key}` line");
    value
}

#[test]
fn the_gitleaks_rule_is_the_documented_one() {
    let regex = gitleaks_value("regex")
        .strip_prefix("'''")
        .and_then(|r| r.strip_suffix("'''"))
        .expect("the regex is a TOML literal string in '''");
    assert_eq!(regex, GITLEAKS_REGEX);
    assert_eq!(gitleaks_value("keywords"), r#"["dyn_"]"#);
    assert_eq!(gitleaks_value("secretGroup"), "1");
    assert_eq!(gitleaks_value("id"), r#""apitoken-dynamic-api-token""#);
    assert_eq!(
        GITLEAKS_TOML.lines().filter(|l| *l == "[[rules]]").count(),
        1
    );
    // The documentation shows the same rule.
    let doc = include_str!("../docs/leak-response.md");
    assert!(doc.contains(&format!("regex = '''{GITLEAKS_REGEX}'''")));
}

/// `\b(dyn_[0-9A-Za-z]{36})(?:[^0-9A-Za-z]|$)` as Go's `FindAll` runs it: leftmost
/// matches, each search starting where the previous match (trailing byte included)
/// ended, `\b` an ASCII word boundary. Returns the start of group 1 of each match.
fn gitleaks_rule_matches(text: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut p = 0;
    while let Some(group) = text.get(p..p + 40) {
        // `\b` before `d`, a word character: no word character before it.
        let boundary = p == 0 || !is_word(text[p - 1]);
        if boundary
            && group.starts_with(b"dyn_")
            && group[4..].iter().all(u8::is_ascii_alphanumeric)
        {
            // `(?:[^0-9A-Za-z]|$)`: consumes one character, or matches at the end.
            match text.get(p + 40) {
                None => {
                    starts.push(p);
                    break;
                }
                Some(b) if !b.is_ascii_alphanumeric() => {
                    starts.push(p);
                    p += 41;
                    continue;
                }
                Some(_) => {}
            }
        }
        p += 1;
    }
    starts
}

/// The rule's matches whose checksum is valid.
fn gitleaks_rule_valid(text: &[u8]) -> Vec<usize> {
    gitleaks_rule_matches(text)
        .into_iter()
        .filter(|&p| {
            std::str::from_utf8(&text[p..p + 40]).is_ok_and(|t| dynamic().parse(t).is_ok())
        })
        .collect()
}

fn sample_lines(sample: &str) -> impl Iterator<Item = &str> {
    sample
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
}

#[test]
fn gitleaks_samples_true_positives() {
    let format = dynamic();
    let mut n = 0;
    for line in sample_lines(SAMPLE_TOKENS) {
        let found = offsets(&format, line);
        assert_eq!(found.len(), 1, "{line}");
        assert_eq!(gitleaks_rule_matches(line.as_bytes()), found, "{line}");
        n += 1;
    }
    assert!(n >= 10);
    assert_eq!(
        offsets(&format, SAMPLE_TOKENS),
        gitleaks_rule_matches(SAMPLE_TOKENS.as_bytes())
    );
}

#[test]
fn gitleaks_samples_near_misses_are_flagged_by_the_rule_only() {
    let format = dynamic();
    for line in sample_lines(SAMPLE_NEAR_MISSES) {
        assert_eq!(gitleaks_rule_matches(line.as_bytes()).len(), 1, "{line}");
        assert_eq!(findings(&format, line), [], "{line}");
    }
    assert_eq!(findings(&format, SAMPLE_NEAR_MISSES), []);
}

#[test]
fn gitleaks_samples_non_tokens_match_nothing() {
    let format = dynamic();
    for line in sample_lines(SAMPLE_NON_TOKENS) {
        assert_eq!(
            gitleaks_rule_matches(line.as_bytes()),
            [0usize; 0],
            "{line}"
        );
        assert_eq!(findings(&format, line), [], "{line}");
    }
}

// ---------------------------------------------------------------------------------------
// Properties

/// A piece of text: filler that is dense in partial tokens, or a planted token.
#[derive(Clone, Debug)]
enum Piece {
    Bytes(Vec<u8>),
    Alnum(Vec<u8>),
    Text(&'static str),
    Token(u64),
    LookAlike(u64),
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        vec(any::<u8>(), 0..80).prop_map(Piece::Bytes),
        vec(prop::sample::select(ALNUM.to_vec()), 0..60).prop_map(Piece::Alnum),
        prop::sample::select(vec![
            "dyn_", "dyn", "_", " ", ",", "\n", "d", "yn_", "…", "\u{e9}", "-", "=", "\"",
            "Bearer ", "?token=", "&", "x", "ghp_",
        ])
        .prop_map(Piece::Text),
        any::<u64>().prop_map(Piece::Token),
        any::<u64>().prop_map(Piece::LookAlike),
    ]
}

/// The text, and where the planted tokens start.
fn assemble(format: &TokenFormat, pieces: &[Piece]) -> (Vec<u8>, Vec<usize>) {
    let mut text = Vec::new();
    let mut planted = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Bytes(b) | Piece::Alnum(b) => text.extend_from_slice(b),
            Piece::Text(s) => text.extend_from_slice(s.as_bytes()),
            Piece::Token(seed) => {
                planted.push(text.len());
                text.extend_from_slice(token(format, *seed).as_bytes());
            }
            Piece::LookAlike(seed) => {
                // A token with its last checksum character changed.
                let mut t = token(format, *seed).into_bytes();
                let last = t.len() - 1;
                t[last] = if t[last] == b'0' { b'1' } else { b'0' };
                text.extend_from_slice(&t);
            }
        }
    }
    (text, planted)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Planted tokens are found exactly where their neighbours allow, nothing else is
    /// (a filler forming a token by chance would need a 1-in-2³² checksum), and the
    /// scanner agrees with the position-by-position definition.
    #[test]
    fn scan_finds_exactly_the_planted_tokens(pieces in vec(piece(), 0..40), github in any::<bool>()) {
        let format = if github { TokenFormat::github("ghp").unwrap() } else { dynamic() };
        let (text, planted) = assemble(&format, &pieces);
        let len = format.token_len();
        let expected: Vec<usize> = planted
            .into_iter()
            .filter(|&p| {
                (p == 0 || !is_word(text[p - 1]))
                    && !text.get(p + len).is_some_and(u8::is_ascii_alphanumeric)
            })
            .collect();
        let found = findings(&format, &text);
        prop_assert_eq!(found.iter().map(|f| f.offset).collect::<Vec<_>>(), expected);
        prop_assert_eq!(&found, &reference(&format, &text));
        for f in &found {
            prop_assert_eq!(f.len, len);
            prop_assert_eq!(&text[f.offset + len - 6..f.offset + len], f.checksum.as_str().as_bytes());
        }
    }

    /// `scan` reports exactly the gitleaks rule's matches whose checksum is valid.
    #[test]
    fn scan_is_the_gitleaks_rule_plus_the_checksum(pieces in vec(piece(), 0..40)) {
        let (text, _) = assemble(&dynamic(), &pieces);
        prop_assert_eq!(offsets(&dynamic(), &text), gitleaks_rule_valid(&text));
    }

    /// Redaction keeps the text between tokens, leaves no token and is idempotent.
    #[test]
    fn redact_hides_every_token(pieces in vec(piece(), 0..30)) {
        let format = dynamic();
        let (bytes, _) = assemble(&format, &pieces);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let found = findings(&format, &text);
        let redacted = redact(&format, &text);
        prop_assert_eq!(matches!(redacted, Cow::Borrowed(_)), found.is_empty());
        prop_assert_eq!(findings(&format, redacted.as_bytes()), []);
        prop_assert_eq!(redact(&format, &redacted), redacted.clone());
        for f in &found {
            prop_assert!(!redacted.contains(&text[f.offset + 4..f.offset + 34]));
        }
        let mut rebuilt = String::new();
        let mut copied = 0;
        for f in &found {
            rebuilt.push_str(&text[copied..f.offset]);
            rebuilt.push_str("dyn_…");
            rebuilt.push_str(f.checksum.as_str());
            copied = f.offset + f.len;
        }
        rebuilt.push_str(&text[copied..]);
        prop_assert_eq!(redacted.as_ref(), rebuilt.as_str());
    }
}

#[test]
fn large_inputs_agree_with_the_definition() {
    // 1 MiB dense in candidates: every 41st byte starts `dyn_`.
    let format = dynamic();
    let mut rng = StdRng::seed_from_u64(11);
    let mut text = Vec::with_capacity(1 << 20);
    let mut i = 0u64;
    while text.len() < 1 << 20 {
        i += 1;
        if i.is_multiple_of(97) {
            text.extend_from_slice(token(&format, i).as_bytes());
        } else {
            text.extend_from_slice(b"dyn_");
            for _ in 0..rand::RngExt::random_range(&mut rng, 30..40) {
                text.push(ALNUM[rand::RngExt::random_range(&mut rng, 0..62)]);
            }
        }
        text.push([b' ', b'_', b',', b'x'][rand::RngExt::random_range(&mut rng, 0..4)]);
    }
    let found = findings(&format, &text);
    assert!(found.len() > 50, "{} tokens", found.len());
    assert_eq!(found, reference(&format, &text));
    assert_eq!(
        found.iter().map(|f| f.offset).collect::<Vec<_>>(),
        gitleaks_rule_valid(&text)
    );
}
