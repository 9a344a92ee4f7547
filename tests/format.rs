//! The token format: the reference example, exact error messages, the GitHub preset,
//! configuration limits, the checksum encoder against independent implementations
//! (a bitwise CRC-32 and the `base62` crate), generate/parse round trips, error
//! detection (every single substitution and adjacent transposition) and uniformity.

// Tests unwrap, index and panic freely: a panic is a failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use apitoken::{Alphabet, Checksum, FormatConfigError, FormatError, RawToken, TokenFormat};
use apitoken::{CHECKSUM_LEN, MAX_PREFIX_LEN, MAX_RANDOM_LEN, MIN_RANDOM_LEN};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

/// The `rawToken` of the reference page's example response.
const REFERENCE: &str = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC";
/// Its 30 random characters.
const REFERENCE_RANDOM: &str = "aGLjTe3TUN40vSE75sTtgUx9AjIe0q";
/// Its CRC-32, as computed for the reference page.
const REFERENCE_CRC: u32 = 0xeebb_cda8;

const DYNAMIC_DIGITS: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const GITHUB_DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A textbook bitwise CRC-32 (zlib / ISO-HDLC: reflected polynomial 0xEDB88320, initial
/// and final XOR 0xFFFFFFFF), independent of the `crc32fast` the library uses.
fn crc32_reference(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn alphabet_strategy() -> impl Strategy<Value = Alphabet> {
    prop_oneof![Just(Alphabet::Dynamic), Just(Alphabet::GitHub)]
}

/// Any valid configuration: lower-case prefix of 1 to 16 characters, either digit order,
/// 22 to 64 random characters.
fn format_strategy() -> impl Strategy<Value = TokenFormat> {
    (
        "[a-z][a-z0-9]{0,15}",
        alphabet_strategy(),
        MIN_RANDOM_LEN..=MAX_RANDOM_LEN,
    )
        .prop_map(|(prefix, alphabet, random_len)| {
            TokenFormat::new(&prefix, alphabet, random_len).unwrap()
        })
}

/// The random part of a token of `format`.
fn random_part<'a>(format: &TokenFormat, token: &'a str) -> &'a str {
    &token[format.prefix().len() + 1..token.len() - CHECKSUM_LEN]
}

// ---------------------------------------------------------------------------------------
// The reference example
// ---------------------------------------------------------------------------------------

/// The independent CRC-32 above is right: it gives the standard check value.
#[test]
fn reference_crc32_matches_the_standard_check_value() {
    assert_eq!(crc32_reference(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32_reference(REFERENCE_RANDOM.as_bytes()), REFERENCE_CRC);
}

/// The reference token parses with the default format and its checksum is `4n3LFC`,
/// which is CRC-32 0xeebbcda8 in base 62, order 0-9a-zA-Z.
#[test]
fn reference_token_parses_with_its_checksum() {
    let format = TokenFormat::dynamic();
    assert_eq!(format, TokenFormat::default());
    assert_eq!(format.prefix(), "dyn");
    assert_eq!(format.alphabet(), Alphabet::Dynamic);
    assert_eq!(format.random_len(), 30);
    assert_eq!(format.body_len(), 36);
    assert_eq!(format.token_len(), REFERENCE.len());

    let parsed = format.parse(REFERENCE).unwrap();
    assert_eq!(parsed.checksum().as_str(), "4n3LFC");
    assert_eq!(parsed.prefix(), "dyn");
    assert_eq!(parsed.expose_secret(), REFERENCE);

    let encoded = Checksum::compute(REFERENCE_RANDOM.as_bytes(), Alphabet::Dynamic);
    assert_eq!(encoded.as_str(), "4n3LFC");
    assert_eq!(encoded.to_string(), "4n3LFC");
    assert_eq!(parsed.checksum(), encoded);
    assert_eq!(crc32fast::hash(REFERENCE_RANDOM.as_bytes()), REFERENCE_CRC);
    assert_eq!(Checksum::parse("4n3LFC").unwrap(), encoded);
}

/// `RawToken`'s Debug is exactly `RawToken(dyn_…4n3LFC)`: prefix and checksum only.
#[test]
fn raw_token_debug_is_prefix_and_checksum_only() {
    let raw = TokenFormat::dynamic()
        .parse(REFERENCE)
        .unwrap()
        .to_raw_token();
    assert_eq!(format!("{raw:?}"), "RawToken(dyn_…4n3LFC)");
    assert_eq!(format!("{raw:#?}"), "RawToken(dyn_…4n3LFC)");
    assert_eq!(raw.expose_secret(), REFERENCE);
    assert_eq!(raw.prefix(), "dyn");
    assert_eq!(raw.checksum().as_str(), "4n3LFC");
}

/// `ParsedToken`'s Debug shows no piece of the random part (no 4-character window of it).
#[test]
fn parsed_token_debug_hides_the_random_part() {
    let parsed = TokenFormat::dynamic().parse(REFERENCE).unwrap();
    let debug = format!("{parsed:?}");
    let pretty = format!("{parsed:#?}");
    assert!(debug.contains("4n3LFC"), "{debug}");
    for shown in [&debug, &pretty] {
        for window in REFERENCE_RANDOM.as_bytes().windows(4) {
            let window = std::str::from_utf8(window).unwrap();
            assert!(!shown.contains(window), "{shown:?} shows {window:?}");
        }
    }
}

/// `RawToken::parse_any` reads the reference token and equals the parsed copy.
#[test]
fn parse_any_reads_the_reference_token() {
    let any = RawToken::parse_any(REFERENCE).unwrap();
    let parsed = TokenFormat::dynamic()
        .parse(REFERENCE)
        .unwrap()
        .to_raw_token();
    assert_eq!(any, parsed);
    assert_eq!(any.expose_secret(), REFERENCE);
    assert_eq!(
        TokenFormat::infer(REFERENCE).unwrap(),
        TokenFormat::dynamic()
    );
}

/// The random part is the documented mapping of the generator's 64-bit draws, at every
/// length and in both digit orders: each draw below the largest multiple of 62¹⁰ gives ten
/// digits, digit i being (draw mod 62¹⁰) / 62^i mod 62; the others are skipped. So a
/// seeded generator gives the same tokens from one version to the next.
#[test]
fn the_random_part_is_the_documented_mapping_of_the_draws() {
    const SPAN: u64 = 62u64.pow(10);
    let limit = u64::MAX / SPAN * SPAN;
    for alphabet in Alphabet::ALL {
        for random_len in MIN_RANDOM_LEN..=MAX_RANDOM_LEN {
            let format = TokenFormat::dynamic()
                .with_alphabet(alphabet)
                .with_random_len(random_len)
                .unwrap();
            for seed in 0..20 {
                let token = format.generate(&mut seeded(seed));
                let mut draws = seeded(seed);
                let mut expected = Vec::new();
                while expected.len() < random_len {
                    let draw = rand::Rng::next_u64(&mut draws);
                    if draw >= limit {
                        continue;
                    }
                    let mut value = draw % SPAN;
                    for _ in 0..10 {
                        expected.push(alphabet.digits()[(value % 62) as usize]);
                        value /= 62;
                    }
                }
                expected.truncate(random_len);
                let random = &token.expose_secret().as_bytes()[4..4 + random_len];
                assert_eq!(
                    random,
                    &expected[..],
                    "{alphabet:?}, {random_len}, seed {seed}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Error messages
// ---------------------------------------------------------------------------------------

/// Too short and too long: the message gives the expected and the found length.
#[test]
fn wrong_length_messages() {
    let format = TokenFormat::dynamic();
    let short = &REFERENCE[..REFERENCE.len() - 1];
    let err = format.parse(short).unwrap_err();
    assert!(matches!(
        err,
        FormatError::WrongLength {
            expected: 36,
            found: 35,
            ..
        }
    ));
    assert_eq!(
        err.to_string(),
        "expected 36 characters after `dyn_`, got 35"
    );

    let long = format!("{REFERENCE}x");
    assert_eq!(
        format.parse(&long).unwrap_err().to_string(),
        "expected 36 characters after `dyn_`, got 37"
    );
    assert_eq!(
        format.parse("dyn_").unwrap_err().to_string(),
        "expected 36 characters after `dyn_`, got 0"
    );
    // Lengths are in bytes: 20 two-byte characters are 40.
    let wide = format!("dyn_{}", "é".repeat(20));
    assert_eq!(
        format.parse(&wide).unwrap_err().to_string(),
        "expected 36 characters after `dyn_`, got 40"
    );
}

/// A token of another prefix (or none) names the expected prefix.
#[test]
fn wrong_prefix_messages() {
    let format = TokenFormat::dynamic();
    let expected = "wrong prefix: expected a token starting with `dyn_`";
    for input in [
        "ghp_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC",
        "DYN_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC",
        "dynaGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFCx",
        "dyn-aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC",
        " dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC",
        "Bearer dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC",
        "dy",
        "dyn",
        " ",
    ] {
        let err = format.parse(input).unwrap_err();
        assert!(
            matches!(err, FormatError::WrongPrefix { .. }),
            "{input:?}: {err:?}"
        );
        assert_eq!(err.to_string(), expected, "{input:?}");
    }
    let ghp = TokenFormat::github("ghp").unwrap();
    assert_eq!(
        ghp.parse(REFERENCE).unwrap_err().to_string(),
        "wrong prefix: expected a token starting with `ghp_`"
    );
}

/// The empty string says what a token looks like.
#[test]
fn empty_message() {
    let err = TokenFormat::dynamic().parse("").unwrap_err();
    assert!(matches!(err, FormatError::Empty { expected: 36, .. }));
    assert_eq!(
        err.to_string(),
        "no token given: expected `dyn_` followed by 36 letters and digits"
    );
    assert_eq!(
        TokenFormat::github("ghp")
            .unwrap()
            .parse("")
            .unwrap_err()
            .to_string(),
        "no token given: expected `ghp_` followed by 36 letters and digits"
    );
}

/// A character outside 0-9a-zA-Z is reported at its 1-based position in the token.
#[test]
fn invalid_character_messages_give_the_position() {
    let format = TokenFormat::dynamic();
    for (index, bad) in [(4, '-'), (10, '_'), (20, ' '), (39, '=')] {
        let mut token = REFERENCE.to_owned();
        token.replace_range(index..=index, &bad.to_string());
        let err = format.parse(&token).unwrap_err();
        assert!(
            matches!(
                err,
                FormatError::InvalidCharacter { prefix, position }
                    if prefix.as_str() == "dyn" && position == index + 1
            ),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "character {} is not allowed: after `dyn_` a token has only the characters 0-9, a-z and A-Z",
                index + 1
            )
        );
    }
    // A two-byte character in place of two ASCII ones keeps the length in bytes: it is
    // reported at the position of its first byte.
    let mut token = REFERENCE.to_owned();
    token.replace_range(10..12, "é");
    let err = format.parse(&token).unwrap_err();
    assert!(
        matches!(err, FormatError::InvalidCharacter { position: 11, .. }),
        "{err:?}"
    );
}

/// A changed checksum character is a checksum mismatch, and the message says so first.
#[test]
fn checksum_mismatch_message() {
    let format = TokenFormat::dynamic();
    let altered = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFD";
    let err = format.parse(altered).unwrap_err();
    assert_eq!(err, FormatError::ChecksumMismatch);
    assert!(
        err.to_string().starts_with("checksum mismatch"),
        "{}",
        err.to_string()
    );
    let typo = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0Q4n3LFC";
    assert_eq!(
        format.parse(typo).unwrap_err(),
        FormatError::ChecksumMismatch
    );
}

/// Whether `message` repeats any 8-character window of `secret`.
fn repeats_secret(message: &str, secret: &str) -> Option<String> {
    secret
        .as_bytes()
        .windows(8)
        .filter_map(|w| std::str::from_utf8(w).ok())
        .find(|w| message.contains(w))
        .map(str::to_owned)
}

/// The error for each kind of malformed input never repeats the presented random part.
#[test]
fn error_messages_never_repeat_the_presented_token() {
    let format = TokenFormat::dynamic();
    let body = &REFERENCE[4..];
    let inputs = [
        REFERENCE[..REFERENCE.len() - 1].to_owned(),
        format!("{REFERENCE}0"),
        format!("ghp_{body}"),
        format!("dyn_{}-{}", &body[..10], &body[11..]),
        "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFD".to_owned(),
        format!("{body}{body}"),
        body.to_owned(),
    ];
    for input in &inputs {
        let err = format.parse(input).unwrap_err();
        for shown in [err.to_string(), format!("{err:?}")] {
            assert_eq!(repeats_secret(&shown, body), None, "{input:?} -> {shown}");
        }
        if let Err(err) = TokenFormat::infer(input) {
            assert_eq!(repeats_secret(&err.to_string(), body), None, "{input:?}");
        }
    }
}

proptest! {
    /// For generated tokens with one character mutated, truncated or extended, the error
    /// (Display and Debug) never repeats 8 characters of the presented body.
    #[test]
    fn mutated_token_errors_never_repeat_the_body(
        format in format_strategy(),
        seed in any::<u64>(),
        index in any::<prop::sample::Index>(),
        replacement in prop::sample::select(b"-_ .=+/!".to_vec()),
        cut in 0usize..3,
    ) {
        let raw = format.generate(&mut seeded(seed));
        let token = raw.expose_secret();
        let body_start = format.prefix().len() + 1;
        let mut bytes = token.as_bytes().to_vec();
        let at = body_start + index.index(format.body_len());
        bytes[at] = replacement;
        let substituted = String::from_utf8(bytes).unwrap();
        let truncated = token[..token.len() - 1 - cut].to_owned();
        let extended = format!("{token}{}", "x".repeat(cut + 1));
        let body = &token[body_start..];
        for input in [&substituted, &truncated, &extended] {
            let err = format.parse(input).unwrap_err();
            prop_assert_eq!(repeats_secret(&err.to_string(), body), None);
            prop_assert_eq!(repeats_secret(&format!("{err:?}"), body), None);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The GitHub preset
// ---------------------------------------------------------------------------------------

/// `github(prefix)` uses digit order 0-9A-Za-z and 30 random characters; Dynamic's order
/// is 0-9a-zA-Z.
#[test]
fn github_preset_digit_order() {
    let github = TokenFormat::github("ghp").unwrap();
    assert_eq!(github.prefix(), "ghp");
    assert_eq!(github.alphabet(), Alphabet::GitHub);
    assert_eq!(github.random_len(), 30);
    assert_eq!(github.token_len(), 40);
    assert_eq!(Alphabet::GitHub.digits(), GITHUB_DIGITS);
    assert_eq!(Alphabet::Dynamic.digits(), DYNAMIC_DIGITS);
    assert_eq!(Alphabet::ALL, [Alphabet::Dynamic, Alphabet::GitHub]);
    assert_eq!("github".parse::<Alphabet>().unwrap(), Alphabet::GitHub);
    assert_eq!("Dynamic".parse::<Alphabet>().unwrap(), Alphabet::Dynamic);
    assert!("base62".parse::<Alphabet>().is_err());
    for prefix in ["ghp", "gho", "ghu", "ghs", "ghr", "npm"] {
        let format = TokenFormat::github(prefix).unwrap();
        assert_eq!(format.prefix(), prefix);
        assert_eq!(format.alphabet(), Alphabet::GitHub);
    }
}

/// The same random part has a different checksum in GitHub's order (the reference's is
/// `4N3lfc`: every letter's case swapped), so a Dynamic token does not parse as GitHub's.
#[test]
fn github_checksum_differs_from_dynamic() {
    let github = Checksum::compute(REFERENCE_RANDOM.as_bytes(), Alphabet::GitHub);
    assert_eq!(
        github,
        Checksum::parse(&base62::encode(REFERENCE_CRC)).unwrap()
    );
    assert_eq!(github.as_str(), "4N3lfc");
    assert_ne!(
        github,
        Checksum::compute(REFERENCE_RANDOM.as_bytes(), Alphabet::Dynamic)
    );

    let as_github = TokenFormat::github("dyn").unwrap();
    assert_eq!(
        as_github.parse(REFERENCE).unwrap_err(),
        FormatError::ChecksumMismatch
    );
    let github_token = format!("ghp_{REFERENCE_RANDOM}4N3lfc");
    let ghp = TokenFormat::github("ghp").unwrap();
    assert_eq!(
        ghp.parse(&github_token).unwrap().checksum().as_str(),
        "4N3lfc"
    );
    assert_eq!(
        ghp.with_alphabet(Alphabet::Dynamic)
            .parse(&github_token)
            .unwrap_err(),
        FormatError::ChecksumMismatch
    );
    assert_eq!(TokenFormat::infer(&github_token).unwrap(), ghp);
}

/// Generated GitHub tokens parse as GitHub's and not in Dynamic's order (seeded, so the
/// rare coincidence of an all-digit checksum is excluded once and for all).
#[test]
fn generated_github_tokens_are_not_dynamic_tokens() {
    let ghp = TokenFormat::github("ghp").unwrap();
    let mut rng = seeded(7);
    for _ in 0..200 {
        let raw = ghp.generate(&mut rng);
        let token = raw.expose_secret();
        assert_eq!(ghp.parse(token).unwrap().checksum(), raw.checksum());
        assert_eq!(
            ghp.with_alphabet(Alphabet::Dynamic)
                .parse(token)
                .unwrap_err(),
            FormatError::ChecksumMismatch
        );
        assert_eq!(TokenFormat::infer(token).unwrap(), ghp);
    }
}

// ---------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------

/// Random lengths 22 to 64 are accepted, 21 and 65 (and 0) are not.
#[test]
fn random_length_limits() {
    for len in [0, 1, 21, 65, 255, 256, usize::MAX] {
        assert_eq!(
            TokenFormat::new("dyn", Alphabet::Dynamic, len).unwrap_err(),
            FormatConfigError::RandomLength { found: len }
        );
        assert_eq!(
            TokenFormat::dynamic().with_random_len(len).unwrap_err(),
            FormatConfigError::RandomLength { found: len }
        );
    }
    assert_eq!(
        TokenFormat::dynamic()
            .with_random_len(21)
            .unwrap_err()
            .to_string(),
        "a token has 22 to 64 random characters (at least 128 bits), got 21"
    );
    for len in [22, 30, 50, 64] {
        let format = TokenFormat::new("dyn", Alphabet::GitHub, len).unwrap();
        assert_eq!(format.random_len(), len);
        assert_eq!(format.token_len(), 4 + len + 6);
        assert!(format.entropy_bits() >= 128.0);
    }
    assert_eq!(MIN_RANDOM_LEN, 22);
    assert_eq!(MAX_RANDOM_LEN, 64);
}

/// Prefixes: 1 to 16 ASCII letters and digits starting with a letter; everything else is
/// a `FormatConfigError`, through every constructor.
#[test]
fn prefix_validation() {
    let rejected = [
        ("", FormatConfigError::PrefixLength { found: 0 }),
        (
            "abcdefghijklmnopq",
            FormatConfigError::PrefixLength { found: 17 },
        ),
        ("1dyn", FormatConfigError::PrefixStart),
        ("0", FormatConfigError::PrefixStart),
        ("_dyn", FormatConfigError::PrefixStart),
        (" dyn", FormatConfigError::PrefixStart),
        ("dyn_", FormatConfigError::PrefixCharacter { position: 4 }),
        ("dy_n", FormatConfigError::PrefixCharacter { position: 3 }),
        ("dyn-x", FormatConfigError::PrefixCharacter { position: 4 }),
        ("dyn ", FormatConfigError::PrefixCharacter { position: 4 }),
        ("dÿn", FormatConfigError::PrefixCharacter { position: 2 }),
        ("éa", FormatConfigError::PrefixStart),
        ("ab🔑", FormatConfigError::PrefixCharacter { position: 3 }),
    ];
    for (prefix, expected) in rejected {
        assert_eq!(
            TokenFormat::new(prefix, Alphabet::Dynamic, 30).unwrap_err(),
            expected,
            "{prefix:?}"
        );
        assert_eq!(
            TokenFormat::github(prefix).unwrap_err(),
            expected,
            "{prefix:?}"
        );
        assert_eq!(
            TokenFormat::dynamic().with_prefix(prefix).unwrap_err(),
            expected,
            "{prefix:?}"
        );
    }
    assert_eq!(
        TokenFormat::github("").unwrap_err().to_string(),
        "a prefix has 1 to 16 characters, got 0"
    );
    assert_eq!(
        TokenFormat::github("1x").unwrap_err().to_string(),
        "a prefix must start with a letter (a-z or A-Z)"
    );
    assert_eq!(
        TokenFormat::github("a-b").unwrap_err().to_string(),
        "prefix character 2 is not allowed: a prefix has only letters and digits"
    );
    for prefix in [
        "a",
        "Z",
        "dyn",
        "ghp",
        "sk2",
        "ABCdef123",
        "abcdefghijklmnop",
    ] {
        let format = TokenFormat::new(prefix, Alphabet::Dynamic, 30).unwrap();
        assert_eq!(format.prefix(), prefix);
    }
    assert_eq!(MAX_PREFIX_LEN, 16);
}

/// `infer` recovers prefix, digit order and random length of generated tokens.
#[test]
fn infer_finds_the_format_of_generated_tokens() {
    let formats = [
        TokenFormat::dynamic(),
        TokenFormat::dynamic().with_random_len(50).unwrap(),
        TokenFormat::github("ghp").unwrap(),
        TokenFormat::github("npm").unwrap(),
        TokenFormat::new("a", Alphabet::Dynamic, 22).unwrap(),
        TokenFormat::new("a", Alphabet::GitHub, 22).unwrap(),
        TokenFormat::new("abcdefghijklmnop", Alphabet::GitHub, 64).unwrap(),
        TokenFormat::new("Sk9", Alphabet::Dynamic, 64).unwrap(),
    ];
    let mut rng = seeded(42);
    for format in formats {
        for _ in 0..20 {
            let raw = format.generate(&mut rng);
            assert_eq!(
                TokenFormat::infer(raw.expose_secret()).unwrap(),
                format,
                "{raw:?}"
            );
            assert_eq!(RawToken::parse_any(raw.expose_secret()).unwrap(), raw);
        }
    }
    for garbage in ["", "_", "dyn", "dyn_", "dyn_abc", "1dyn_", "x_!!!!!!!!!!"] {
        assert_eq!(
            TokenFormat::infer(garbage).unwrap_err(),
            FormatError::Unrecognized,
            "{garbage:?}"
        );
    }
    // Right shape, wrong checksum: the last format's error.
    assert_eq!(
        TokenFormat::infer("dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFD").unwrap_err(),
        FormatError::ChecksumMismatch
    );
    // A Dynamic token cut short is reported as too short, not as a bad checksum of
    // some shorter format.
    for cut in [REFERENCE.get(..39).unwrap(), REFERENCE.get(..32).unwrap()] {
        match TokenFormat::infer(cut).unwrap_err() {
            FormatError::WrongLength {
                expected, found, ..
            } => assert_eq!((expected, found), (36, cut.len() - 4), "{cut}"),
            other => panic!("{cut}: {other:?}"),
        }
    }
}

proptest! {
    /// For any valid configuration, `infer` finds it again (or, when the checksum is the
    /// same in both orders, the Dynamic order, which then parses the token too).
    #[test]
    fn infer_recovers_any_configuration(format in format_strategy(), seed in any::<u64>()) {
        let raw = format.generate(&mut seeded(seed));
        let token = raw.expose_secret();
        let inferred = TokenFormat::infer(token).unwrap();
        let random = random_part(&format, token).as_bytes();
        let ambiguous = Checksum::compute(random, Alphabet::Dynamic)
            == Checksum::compute(random, Alphabet::GitHub);
        if ambiguous {
            prop_assert_eq!(inferred, format.with_alphabet(Alphabet::Dynamic));
        } else {
            prop_assert_eq!(inferred, format);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The checksum encoder against independent implementations
// ---------------------------------------------------------------------------------------

/// The `base62` crate's orders, as read in its source: `encode` is 0-9A-Za-z (GitHub's),
/// `encode_alternative` is 0-9a-zA-Z (Dynamic's).
#[test]
fn base62_crate_digit_orders() {
    assert_eq!(base62::encode(10u32), "A");
    assert_eq!(base62::encode(36u32), "a");
    assert_eq!(base62::encode_alternative(10u32), "a");
    assert_eq!(base62::encode_alternative(36u32), "A");
    assert_eq!(base62::encode_alternative(REFERENCE_CRC), "4n3LFC");
}

/// `crc` as a checksum in `alphabet`'s digit order, by the `base62` crate (the library's
/// own encoder is checked against the same crate in its unit tests).
fn encode(crc: u32, alphabet: Alphabet) -> Checksum {
    let digits = match alphabet {
        Alphabet::Dynamic => base62::encode_alternative(crc),
        _ => base62::encode(crc),
    };
    Checksum::parse(&format!("{digits:0>6}")).unwrap()
}

proptest! {
    /// `Checksum::compute` is the independent bitwise CRC-32 above, encoded.
    #[test]
    fn checksum_compute_is_crc32(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        let crc = crc32_reference(&bytes);
        for alphabet in Alphabet::ALL {
            prop_assert_eq!(Checksum::compute(&bytes, alphabet), encode(crc, alphabet));
        }
    }

    /// `parse` accepts exactly the checksum `compute` gives: the right one, and no other
    /// six characters, whether one character off, any six, or past 2³² (`ZZZZZZ`).
    #[test]
    fn parse_accepts_exactly_the_computed_checksum(
        random in "[0-9a-zA-Z]{30}",
        other in "[0-9a-zA-Z]{6}",
        position in 0..CHECKSUM_LEN,
        replacement in "[0-9a-zA-Z]",
    ) {
        for alphabet in Alphabet::ALL {
            let format = TokenFormat::dynamic().with_alphabet(alphabet);
            let right = Checksum::compute(random.as_bytes(), alphabet);
            let mut one_off = right.as_str().to_owned();
            one_off.replace_range(position..position + 1, &replacement);
            for found in [right.as_str(), &one_off, &other, "ZZZZZZ", "zzzzzz", "000000"] {
                let token = format!("dyn_{random}{found}");
                let parsed = format.parse(&token);
                prop_assert_eq!(parsed.is_ok(), found == right.as_str(), "{}", token);
                if let Ok(parsed) = parsed {
                    prop_assert_eq!(parsed.checksum(), right);
                } else {
                    prop_assert_eq!(parsed.unwrap_err(), FormatError::ChecksumMismatch);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------

proptest! {
    /// For any valid configuration, a generated token parses back: same string, same
    /// checksum (the CRC-32 of its random part), expected length, alphanumeric random part,
    /// redacted Debug; the same seed gives the same token.
    #[test]
    fn generate_then_parse_round_trips(format in format_strategy(), seed in any::<u64>()) {
        let raw = format.generate(&mut seeded(seed));
        let token = raw.expose_secret();
        prop_assert_eq!(token.len(), format.token_len());
        let underscore = format!("{}_", format.prefix());
        prop_assert!(token.starts_with(&underscore), "{} {}", token, underscore);
        prop_assert_eq!(raw.prefix(), format.prefix());

        let random = random_part(&format, token);
        prop_assert_eq!(random.len(), format.random_len());
        prop_assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()), "{}", random);
        let crc = crc32_reference(random.as_bytes());
        prop_assert_eq!(raw.checksum(), encode(crc, format.alphabet()));
        let checksum = raw.checksum();
        prop_assert_eq!(checksum.as_str(), &token[token.len() - CHECKSUM_LEN..]);

        let parsed = format.parse(token).unwrap();
        prop_assert_eq!(parsed.expose_secret(), token);
        prop_assert_eq!(parsed.checksum(), raw.checksum());
        prop_assert_eq!(parsed.prefix(), format.prefix());
        prop_assert!(parsed.to_raw_token() == raw);

        let expected_debug = format!("RawToken({}_…{})", format.prefix(), raw.checksum());
        prop_assert_eq!(format!("{raw:?}"), expected_debug);

        let again = format.generate(&mut seeded(seed));
        prop_assert!(again == raw);
        let other = format.generate(&mut seeded(seed.wrapping_add(1)));
        prop_assert!(other != raw);
    }
}

/// Consecutive tokens from one generator differ (no repeated state between calls).
#[test]
fn consecutive_tokens_differ() {
    let mut rng = seeded(1);
    let format = TokenFormat::dynamic();
    let tokens: std::collections::HashSet<String> = (0..1000)
        .map(|_| format.generate(&mut rng).expose_secret().to_owned())
        .collect();
    assert_eq!(tokens.len(), 1000);
}

// ---------------------------------------------------------------------------------------
// Error detection
// ---------------------------------------------------------------------------------------

/// Checks every single-character substitution (by each other alphanumeric character) and
/// every transposition of two adjacent different characters in the body (random part and
/// checksum) of `token`: each must be rejected as a checksum mismatch. Returns how many
/// variants were checked.
fn assert_all_small_errors_detected(format: &TokenFormat, token: &str) -> usize {
    let body_start = format.prefix().len() + 1;
    let mut bytes = token.as_bytes().to_vec();
    let mut checked = 0;
    for at in body_start..bytes.len() {
        let original = bytes[at];
        for &other in DYNAMIC_DIGITS {
            if other == original {
                continue;
            }
            bytes[at] = other;
            let variant = std::str::from_utf8(&bytes).unwrap();
            assert_eq!(
                format.parse(variant).map(|_| ()),
                Err(FormatError::ChecksumMismatch),
                "substitution at byte {at} accepted: {variant} (from {token})"
            );
            checked += 1;
        }
        bytes[at] = original;
    }
    for at in body_start..bytes.len() - 1 {
        if bytes[at] == bytes[at + 1] {
            continue;
        }
        bytes.swap(at, at + 1);
        let variant = std::str::from_utf8(&bytes).unwrap();
        assert_eq!(
            format.parse(variant).map(|_| ()),
            Err(FormatError::ChecksumMismatch),
            "transposition at byte {at} accepted: {variant} (from {token})"
        );
        checked += 1;
        bytes.swap(at, at + 1);
    }
    assert_eq!(bytes, token.as_bytes());
    checked
}

/// Every single substitution and adjacent transposition of the reference token is
/// rejected.
#[test]
fn reference_token_small_errors_are_detected() {
    let checked = assert_all_small_errors_detected(&TokenFormat::dynamic(), REFERENCE);
    // 36 positions × 61 other characters, plus 35 adjacent pairs (none equal here).
    assert_eq!(checked, 36 * 61 + 35);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Dynamic tokens (36-character body): every single-character substitution and every
    /// adjacent transposition of different characters is rejected by `parse`.
    #[test]
    fn every_small_error_in_a_dynamic_token_is_detected(seed in any::<u64>()) {
        let format = TokenFormat::dynamic();
        let raw = format.generate(&mut seeded(seed));
        let checked = assert_all_small_errors_detected(&format, raw.expose_secret());
        prop_assert!(checked >= 36 * 61);
    }

    /// The same for tokens of any configuration (22 to 64 random characters, both
    /// orders): CRC-32 detects every error burst of up to 32 bits.
    #[test]
    fn every_small_error_in_any_format_is_detected(format in format_strategy(), seed in any::<u64>()) {
        let raw = format.generate(&mut seeded(seed));
        let checked = assert_all_small_errors_detected(&format, raw.expose_secret());
        prop_assert!(checked >= format.body_len() * 61);
    }
}

// ---------------------------------------------------------------------------------------
// Uniformity
// ---------------------------------------------------------------------------------------

/// Pearson's chi-squared statistic of `counts` against a uniform distribution.
fn chi_squared(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| {
            let d = c as f64 - expected;
            d * d / expected
        })
        .sum()
}

/// Counts each of the 62 characters in the random parts of `n` seeded tokens, overall
/// and at the first random position.
fn character_counts(format: &TokenFormat, seed: u64, n: usize) -> (Vec<u64>, Vec<u64>) {
    let digits = format.alphabet().digits();
    let mut all = vec![0u64; 62];
    let mut first = vec![0u64; 62];
    let mut rng = seeded(seed);
    for _ in 0..n {
        let raw = format.generate(&mut rng);
        let random = random_part(format, raw.expose_secret()).as_bytes();
        for (i, c) in random.iter().enumerate() {
            let value = digits.iter().position(|d| d == c).unwrap();
            all[value] += 1;
            if i == 0 {
                first[value] += 1;
            }
        }
    }
    (all, first)
}

/// 20,000 seeded tokens: each of the 62 characters is about equally frequent (chi-squared
/// with 61 degrees of freedom below 140; a modulo bias towards `0` and `1` would give
/// thousands), overall and at the first position.
#[test]
fn random_characters_are_uniform() {
    for format in [TokenFormat::dynamic(), TokenFormat::github("ghp").unwrap()] {
        let (all, first) = character_counts(&format, 2024, 20_000);
        assert_eq!(all.iter().sum::<u64>(), 20_000 * 30);
        assert!(all.iter().all(|&c| c > 0));
        let overall = chi_squared(&all);
        let at_first = chi_squared(&first);
        assert!(
            overall < 140.0,
            "{format:?}: chi-squared {overall}: {all:?}"
        );
        assert!(
            at_first < 140.0,
            "{format:?}: chi-squared {at_first}: {first:?}"
        );
    }
}

/// The threshold above is sensitive: the two classic biases of turning random bytes into
/// base-62 digits (`byte % 62`, and folding 62 and 63 of `byte & 63` onto 0 and 1) over
/// the same number of draws give a chi-squared far above it.
#[test]
fn chi_squared_threshold_catches_biased_sampling() {
    use rand::Rng;
    let mut rng = seeded(2024);
    let mut modulo = vec![0u64; 62];
    let mut folded = vec![0u64; 62];
    for _ in 0..20_000 * 30 {
        let byte = rng.next_u32() as u8;
        modulo[usize::from(byte % 62)] += 1;
        folded[usize::from(byte & 63) % 62] += 1;
    }
    let (m, f) = (chi_squared(&modulo), chi_squared(&folded));
    assert!(m > 1000.0, "{m}");
    assert!(f > 1000.0, "{f}");
}
