//! Robustness: nothing that reads untrusted text panics, whatever the input (arbitrary
//! strings, lossy-decoded bytes, near-valid tokens and JSON documents, inputs of 1 MiB),
//! and every acceptance is consistent with the documented rules, so garbage is rejected.
#![cfg(feature = "serde")]
// Tests unwrap, index and panic freely: a panic is a failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[allow(dead_code)]
#[path = "fuzz_targets/reference.rs"]
mod reference;

use apitoken::MAX_TOKEN_LEN;
use apitoken::{
    Alphabet, Checksum, HashKey, IssueRequest, IssuedToken, Note, RawToken, Scope, ScopeCatalog,
    Scopes, Token, TokenFormat, TokenHash,
};
use apitoken::{MAX_SCOPE_LEN, REFERENCE_SCOPES};
use proptest::collection::vec;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const MIB: usize = 1 << 20;
const ALNUM: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// The reference page's example response.
const REFERENCE_RESPONSE: &str = r#"{
  "token": {
    "id": "95b11417-f18f-457f-8804-68e361f9164f",
    "rawToken": "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC",
    "checksum": "4n3LFC",
    "createdBy": {
      "id": "95b11417-f18f-457f-8804-68e361f9164f",
      "alias": "<string>",
      "firstName": "<string>",
      "lastName": "<string>",
      "email": "jsmith@example.com"
    },
    "createdAt": "2023-11-07T05:31:56Z",
    "active": true,
    "note": "<string>",
    "projectEnvironmentId": "95b11417-f18f-457f-8804-68e361f9164f",
    "projectEnvironment": {
      "id": "95b11417-f18f-457f-8804-68e361f9164f"
    },
    "scopes": []
  }
}"#;

/// Every preset: Dynamic's (and its 50-character production variant), GitHub's and npm's
/// prefixes, and the extremes of the configuration space.
fn presets() -> Vec<TokenFormat> {
    let mut formats = vec![
        TokenFormat::dynamic(),
        TokenFormat::dynamic().with_random_len(50).unwrap(),
        TokenFormat::new("a", Alphabet::Dynamic, 22).unwrap(),
        TokenFormat::new("abcdefghijklmnop", Alphabet::GitHub, 64).unwrap(),
    ];
    for prefix in ["ghp", "gho", "ghu", "ghs", "ghr", "npm"] {
        formats.push(TokenFormat::github(prefix).unwrap());
    }
    formats
}

fn catalogs() -> [ScopeCatalog; 3] {
    [
        ScopeCatalog::reference(),
        ScopeCatalog::reference().extend([
            Scope::from_static("all.read"),
            Scope::from_static("gasless.read"),
            Scope::from_static("gasless.write"),
        ]),
        ScopeCatalog::empty(),
    ]
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn alnum(rng: &mut StdRng, len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|&b| char::from(ALNUM[usize::from(b) % 62]))
        .collect()
}

fn seeded(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

// ---------------------------------------------------------------------------------------
// Input strategies
// ---------------------------------------------------------------------------------------

/// A valid token of a preset, then one mutation: substitution by any character,
/// truncation, deletion, insertion, a huge suffix, a `Bearer ` or whitespace wrapper,
/// doubling, case change, or a byte replaced before lossy decoding.
fn near_valid_token() -> impl Strategy<Value = String> {
    (
        prop::sample::select(presets()),
        any::<u64>(),
        0u8..12,
        any::<prop::sample::Index>(),
        any::<char>(),
        any::<u8>(),
        0usize..70_000,
    )
        .prop_map(|(format, seed, kind, index, c, byte, len)| {
            let mut rng = seeded(seed);
            let raw = format.generate(&mut rng);
            let token = raw.expose_secret();
            let at = index.index(token.len());
            let mut s = token.to_owned();
            match kind {
                0 => {}
                1 => s.replace_range(at..=at, &c.to_string()),
                2 => s.truncate(at),
                3 => {
                    s.remove(at);
                }
                4 => s.insert(at, c),
                5 => s.push_str(&alnum(&mut rng, len)),
                6 => s.push_str(&c.to_string().repeat(len / 4)),
                7 => s = format!("Bearer {token}"),
                8 => s = format!(" {token}\n"),
                9 => s = format!("{token}{token}"),
                10 => s = token.to_ascii_uppercase(),
                _ => {
                    let mut bytes = token.as_bytes().to_vec();
                    bytes[at] = byte;
                    s = lossy(&bytes);
                }
            }
            s
        })
}

/// Arbitrary text: printable strings, any characters (controls included), lossy-decoded
/// bytes, token-alphabet soup, and near-valid tokens.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(any::<char>(), 0..300).prop_map(|cs| cs.into_iter().collect::<String>()),
        vec(any::<u8>(), 0..8192).prop_map(|b| lossy(&b)),
        "[a-zA-Z0-9_.\\- ]{0,120}",
        "[a-z]{1,4}_[a-zA-Z0-9]{20,80}",
        "[0-9a-fA-F ]{60,70}",
        near_valid_token(),
    ]
}

/// Inputs of about 1 MiB: one repeated character, random bytes (lossy), a valid token
/// followed by 1 MiB of letters and digits, a token repeated, a prefix and 1 MiB of
/// letters and digits, a token padded with whitespace, a 1 MiB prefix, 1 MiB of `_`.
fn one_mib_text() -> impl Strategy<Value = String> {
    (
        0u8..8,
        any::<u64>(),
        any::<char>(),
        prop::sample::select(presets()),
    )
        .prop_map(|(kind, seed, c, format)| {
            let mut rng = seeded(seed);
            let raw = format.generate(&mut rng);
            let token = raw.expose_secret();
            match kind {
                0 => c.to_string().repeat(MIB / c.len_utf8()),
                1 => {
                    let mut bytes = vec![0u8; MIB];
                    rng.fill_bytes(&mut bytes);
                    lossy(&bytes)
                }
                2 => format!("{token}{}", alnum(&mut rng, MIB)),
                3 => token.repeat(MIB / token.len() + 1),
                4 => format!("{}_{}", format.prefix(), alnum(&mut rng, MIB)),
                5 => {
                    let pad = " ".repeat(MIB / 2);
                    format!("{pad}{token}{pad}")
                }
                6 => format!("{}{token}", "a".repeat(MIB)),
                _ => format!("{}{token}", "_".repeat(MIB)),
            }
        })
}

/// Any JSON value, with strings from `any_text`.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any_text().prop_map(Value::String),
        vec(any_text(), 0..4).prop_map(Value::from),
        Just(json!({})),
        Just(json!([[{}]])),
        Just(json!("2023-11-07T05:31:56Z")),
        Just(json!("95b11417-f18f-457f-8804-68e361f9164f")),
    ]
}

/// The reference response, the `Token` inside it, or a request body, with one field
/// replaced by any value or removed, and the text then optionally cut or spliced.
fn near_valid_json() -> impl Strategy<Value = String> {
    (
        0u8..3,
        any::<prop::sample::Index>(),
        any::<bool>(),
        json_leaf(),
        0u8..4,
        any::<prop::sample::Index>(),
        any::<u8>(),
    )
        .prop_map(|(doc, field, in_creator, leaf, text_edit, at, byte)| {
            let mut value = match doc {
                0 => serde_json::from_str::<Value>(REFERENCE_RESPONSE).unwrap(),
                1 => serde_json::from_str::<Value>(REFERENCE_RESPONSE).unwrap()["token"].take(),
                _ => json!({"note": "CI", "scopes": ["environment.users.read"],
                            "expiresAt": "2030-01-01T00:00:00Z"}),
            };
            let object = match (doc, in_creator) {
                (0, false) => &mut value["token"],
                (0, true) => &mut value["token"]["createdBy"],
                (1, true) => &mut value["createdBy"],
                _ => &mut value,
            };
            let object = object.as_object_mut().unwrap();
            let keys: Vec<String> = object.keys().cloned().collect();
            let key = field.get(&keys);
            if matches!(leaf, Value::Null) && text_edit == 0 {
                object.remove(key);
            } else {
                object.insert(key.clone(), leaf);
            }
            let text = value.to_string();
            let at = at.index(text.len() + 1);
            match text_edit {
                1 => lossy(&text.as_bytes()[..at]),
                2 => {
                    let mut bytes = text.into_bytes();
                    bytes.insert(at, byte);
                    lossy(&bytes)
                }
                _ => text,
            }
        })
}

/// JSON of about 1 MiB: a 1 MiB note, raw token, checksum, scope, timestamp or id; an
/// array of 100,000 scopes; nesting 1 MiB deep; 1 MiB of whitespace around a document.
/// With it, whether a `Token` or `IssuedToken` must be refused: always, except for the
/// valid document padded with whitespace, the valid array of many scopes, and a note
/// that is a short text padded with 1 MiB of whitespace (notes are trimmed).
fn one_mib_json() -> impl Strategy<Value = (String, bool)> {
    (0u8..9, one_mib_text()).prop_map(|(kind, big)| {
        let mut doc = serde_json::from_str::<Value>(REFERENCE_RESPONSE).unwrap();
        let short_note = Note::new(&big).is_ok();
        match kind {
            0 => doc["token"]["note"] = Value::String(big),
            1 => doc["token"]["rawToken"] = Value::String(big),
            2 => doc["token"]["checksum"] = Value::String(big),
            3 => doc["token"]["scopes"] = json!([big]),
            4 => doc["token"]["createdAt"] = Value::String(big),
            5 => doc["token"]["id"] = Value::String(big),
            6 => {
                let many: Vec<String> = (0..100_000).map(|i| format!("s{i}.read")).collect();
                doc["token"]["scopes"] = json!(many);
                return (doc.to_string(), false);
            }
            7 => {
                let nested = format!("{}{}", "[".repeat(MIB / 2), "{".repeat(MIB / 2));
                return (nested, true);
            }
            _ => {
                let pad = " ".repeat(MIB / 2);
                return (format!("{pad}{doc}{pad}"), false);
            }
        }
        let must_fail = !(kind == 0 && short_note);
        (doc.to_string(), must_fail)
    })
}

// ---------------------------------------------------------------------------------------
// What must hold for every input
// ---------------------------------------------------------------------------------------

/// `parse` (every preset), `infer` and `parse_any` return without panicking, and accept
/// only well-formed tokens: right length, prefix, alphabet and checksum.
fn check_token_parsing(s: &str) {
    for format in presets() {
        match format.parse(s) {
            Ok(parsed) => {
                assert_eq!(s.len(), format.token_len());
                assert_eq!(parsed.expose_secret(), s);
                let body = &s[format.prefix().len() + 1..];
                assert!(s.starts_with(format.prefix()));
                assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()));
                let (random, checksum) = body.split_at(format.random_len());
                assert_eq!(
                    Checksum::compute(random.as_bytes(), format.alphabet()).as_str(),
                    checksum
                );
                assert_eq!(parsed.to_raw_token().expose_secret(), s);
            }
            Err(err) => {
                assert!(!err.to_string().is_empty());
            }
        }
    }
    let inferred = TokenFormat::infer(s);
    if let Ok(format) = &inferred {
        assert!(s.len() <= MAX_TOKEN_LEN);
        assert!(format.parse(s).is_ok());
    }
    match RawToken::parse_any(s) {
        Ok(raw) => {
            assert!(inferred.is_ok());
            assert_eq!(raw.expose_secret(), s);
            assert!(format!("{raw:?}").starts_with("RawToken("));
        }
        Err(err) => {
            assert!(inferred.is_err());
            assert!(!err.to_string().is_empty());
        }
    }
}

/// `Note::new` returns without panicking and accepts exactly the trimmed, non-empty,
/// at-most-100-character notes without control characters, invisible characters outside
/// emoji, or tokens (the rules of `fuzz_targets/reference.rs`).
fn check_note(s: &str) {
    let trimmed = s.trim();
    let valid = !trimmed.is_empty()
        && trimmed.chars().count() <= 100
        && !trimmed.chars().any(reference::is_forbidden_in_note)
        && reference::first_invisible_in_note(trimmed).is_none()
        && reference::token_in_note(trimmed).is_none();
    match Note::new(s) {
        Ok(note) => {
            assert!(valid, "accepted {s:?}");
            assert_eq!(note.as_str(), trimmed);
        }
        Err(err) => {
            assert!(!valid, "refused {s:?}: {err}");
        }
    }
}

/// `Scope::new` and `ScopeCatalog::parse` return without panicking; a scope is accepted
/// exactly when it follows the syntax, and a catalog accepts only its own scopes.
fn check_scope(s: &str) {
    let valid = !s.is_empty()
        && s.len() <= MAX_SCOPE_LEN
        && s.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    match Scope::new(s) {
        Ok(scope) => {
            assert!(valid, "accepted {s:?}");
            assert_eq!(scope.as_str(), s);
        }
        Err(err) => {
            assert!(!valid, "refused {s:?}: {err}");
        }
    }
    for catalog in catalogs() {
        if let Ok(scope) = catalog.parse(s) {
            assert!(valid);
            assert!(catalog.contains(&scope));
        }
    }
    let [reference, ..] = catalogs();
    assert_eq!(
        reference.parse(s).is_ok(),
        REFERENCE_SCOPES.iter().any(|known| known.as_str() == s)
    );
}

/// `Checksum::parse`, `HashKey::from_hex` and `TokenHash::from_hex` return without
/// panicking and accept exactly 6 letters and digits, or 64 hex digits (trimmed).
fn check_checksum_and_hex(s: &str) {
    let checksum_valid = s.len() == 6 && s.bytes().all(|b| b.is_ascii_alphanumeric());
    match Checksum::parse(s) {
        Ok(checksum) => {
            assert!(checksum_valid);
            assert_eq!(checksum.as_str(), s);
        }
        Err(_) => assert!(!checksum_valid),
    }
    let hex = s.trim();
    let hex_valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    assert_eq!(HashKey::from_hex(s).is_ok(), hex_valid, "{s:?}");
    match TokenHash::from_hex(s) {
        Ok(hash) => {
            assert!(hex_valid);
            assert_eq!(hash.to_hex(), hex.to_ascii_lowercase());
        }
        Err(_) => assert!(!hex_valid),
    }
}

/// Deserializing into each type returns without panicking; whatever is accepted
/// serializes and reads back to the same value.
fn check_json(s: &str) {
    if let Ok(token) = serde_json::from_str::<Token>(s) {
        let again = serde_json::to_string(&token).unwrap();
        assert_eq!(
            serde_json::from_str::<Token>(&again).unwrap(),
            token,
            "{again}"
        );
    }
    if let Ok(issued) = serde_json::from_str::<IssuedToken>(s) {
        assert_eq!(issued.raw.checksum(), issued.token.checksum);
        let again = serde_json::to_string(&issued).unwrap();
        assert_eq!(serde_json::from_str::<IssuedToken>(&again).unwrap(), issued);
    }
    if let Ok(request) = serde_json::from_str::<IssueRequest>(s) {
        let again = serde_json::to_string(&request).unwrap();
        assert_eq!(
            serde_json::from_str::<IssueRequest>(&again).unwrap(),
            request
        );
    }
    if let Ok(scopes) = serde_json::from_str::<Scopes>(s) {
        let again = serde_json::to_string(&scopes).unwrap();
        assert_eq!(serde_json::from_str::<Scopes>(&again).unwrap(), scopes);
        assert!(
            scopes
                .iter()
                .all(|scope| scope.as_str().len() <= MAX_SCOPE_LEN)
        );
    }
    if let Ok(note) = serde_json::from_str::<Note>(s) {
        assert!(note.as_str().chars().count() <= 100);
        assert_eq!(Note::new(note.as_str()).unwrap(), note);
    }
}

/// Everything, on one input.
fn check_everything(s: &str) {
    check_token_parsing(s);
    check_note(s);
    check_scope(s);
    check_checksum_and_hex(s);
    check_json(s);
}

// ---------------------------------------------------------------------------------------
// The suites
// ---------------------------------------------------------------------------------------

/// The generators above produce what they claim: near-valid inputs start from valid
/// ones, and the reference response is accepted.
#[test]
fn seeds_of_the_near_valid_inputs_are_valid() {
    let issued: IssuedToken = serde_json::from_str(REFERENCE_RESPONSE).unwrap();
    assert_eq!(issued.token.checksum.as_str(), "4n3LFC");
    let inner = serde_json::from_str::<Value>(REFERENCE_RESPONSE).unwrap()["token"].to_string();
    assert!(serde_json::from_str::<Token>(&inner).is_ok());
    check_json(REFERENCE_RESPONSE);
    let mut rng = seeded(0);
    for format in presets() {
        let raw = format.generate(&mut rng);
        assert!(format.parse(raw.expose_secret()).is_ok());
        check_everything(raw.expose_secret());
    }
}

proptest! {
    /// Token parsing (every preset, `infer`, `parse_any`) on arbitrary and near-valid text.
    #[test]
    fn token_parsing_never_panics(s in any_text()) {
        check_token_parsing(&s);
    }

    /// Near-valid tokens: only the unmutated ones (and the rare harmless mutation) parse.
    #[test]
    fn near_valid_tokens_never_panic(s in near_valid_token()) {
        check_token_parsing(&s);
        check_everything(&s);
    }

    /// `Note::new` on arbitrary text.
    #[test]
    fn note_never_panics(s in any_text()) {
        check_note(&s);
    }

    /// Note-shaped text: up to 110 printable characters, many of them several bytes long,
    /// with surrounding whitespace, to reach the boundary between accepted and refused.
    #[test]
    fn note_shaped_text_never_panics(s in "[ \t]{0,3}\\PC{0,110}[ \n]{0,3}") {
        check_note(&s);
        check_json(&serde_json::to_string(&s).unwrap());
    }

    /// `Scope::new` and `ScopeCatalog::parse` on arbitrary text.
    #[test]
    fn scope_never_panics(s in any_text()) {
        check_scope(&s);
    }

    /// Scope-shaped text, to reach the acceptance paths often.
    #[test]
    fn scope_shaped_text_never_panics(s in "[a-zA-Z0-9_.\\-é ]{0,110}") {
        check_scope(&s);
    }

    /// `Checksum::parse`, `HashKey::from_hex` and `TokenHash::from_hex` on arbitrary text.
    #[test]
    fn checksum_and_hex_never_panic(s in any_text()) {
        check_checksum_and_hex(&s);
    }

    /// Checksum- and key-shaped text, to reach the acceptance paths often.
    #[test]
    fn checksum_and_hex_shaped_text_never_panics(
        checksum in "[a-zA-Z0-9_é]{5,7}",
        hex in "[ \t\n]{0,2}[0-9a-fA-Fg]{63,65}[ \n]{0,2}",
    ) {
        check_checksum_and_hex(&checksum);
        check_checksum_and_hex(&hex);
    }

    /// `serde_json::from_str` into every type on arbitrary text.
    #[test]
    fn json_never_panics_on_text(s in any_text()) {
        check_json(&s);
    }

    /// `serde_json::from_str` into every type on near-valid documents.
    #[test]
    fn json_never_panics_on_near_valid_documents(s in near_valid_json()) {
        check_json(&s);
    }

    /// A JSON string deserializes into a `Note` exactly when `Note::new` accepts it, and a
    /// one-element array into `Scopes` exactly when `Scope::new` does.
    #[test]
    fn json_strings_go_through_validation(s in any_text()) {
        let quoted = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(serde_json::from_str::<Note>(&quoted).is_ok(), Note::new(&s).is_ok());
        let array = format!("[{quoted}]");
        prop_assert_eq!(serde_json::from_str::<Scopes>(&array).is_ok(), Scope::new(&s).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// 1 MiB inputs: nothing panics, and none is a token, a scope, a checksum or a key.
    #[test]
    fn one_mib_inputs_never_panic_and_never_parse(s in one_mib_text()) {
        prop_assert!(s.len() >= MIB - 4);
        check_everything(&s);
        for format in presets() {
            prop_assert!(format.parse(&s).is_err());
        }
        prop_assert!(TokenFormat::infer(&s).is_err());
        prop_assert!(RawToken::parse_any(&s).is_err());
        prop_assert!(Scope::new(&s).is_err());
        for catalog in catalogs() {
            prop_assert!(catalog.parse(&s).is_err());
        }
        prop_assert!(Checksum::parse(&s).is_err());
        prop_assert!(HashKey::from_hex(&s).is_err());
        if s.trim().chars().count() > 100 {
            prop_assert!(Note::new(&s).is_err());
        }
        prop_assert!(serde_json::from_str::<Token>(&s).is_err());
        prop_assert!(serde_json::from_str::<IssuedToken>(&s).is_err());
        prop_assert!(serde_json::from_str::<IssueRequest>(&s).is_err());
    }

    /// 1 MiB JSON documents: nothing panics; a 1 MiB field or 1 MiB of nesting is refused.
    #[test]
    fn one_mib_json_never_panics((s, must_fail) in one_mib_json()) {
        prop_assert!(s.len() >= MIB - 4);
        check_json(&s);
        if must_fail {
            prop_assert!(serde_json::from_str::<Token>(&s).is_err());
            prop_assert!(serde_json::from_str::<IssuedToken>(&s).is_err());
        }
        prop_assert!(serde_json::from_str::<Note>(&s).is_err());
        prop_assert!(serde_json::from_str::<Scopes>(&s).is_err());
    }
}

/// The exact 1 MiB cases the brief names, without randomness: garbage, a token with a
/// 1 MiB tail, and a document with a 1 MiB note are rejected.
#[test]
fn explicit_one_mib_inputs_are_rejected() {
    let garbage = "\u{fffd}".repeat(MIB / 3);
    let tail = format!(
        "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC{}",
        "0".repeat(MIB)
    );
    let mut doc = serde_json::from_str::<Value>(REFERENCE_RESPONSE).unwrap();
    doc["token"]["note"] = Value::String("n".repeat(MIB));
    let doc = doc.to_string();
    for s in [&garbage, &tail, &doc] {
        check_everything(s);
        assert!(TokenFormat::dynamic().parse(s).is_err());
        assert!(RawToken::parse_any(s).is_err());
        assert!(Note::new(s).is_err());
        assert!(Scope::new(s).is_err());
        assert!(serde_json::from_str::<IssuedToken>(s).is_err());
    }
    let err = serde_json::from_str::<IssuedToken>(&doc).unwrap_err();
    assert!(err.to_string().contains("note too long"), "{err}");
}

/// Timestamps whose UTC form leaves the years 0000-9999 (which RFC 3339 can write) are
/// refused when read, so whatever is accepted is written back in a form that is accepted
/// again; the edges themselves round-trip.
#[test]
fn timestamps_at_the_edges_of_rfc3339_round_trip_or_are_refused() {
    for (at, accepted) in [
        ("0000-01-01T00:00:00+01:00", false),
        ("9999-12-31T23:59:59-01:00", false),
        ("0000-01-01T00:00:00Z", true),
        ("9999-12-31T23:59:59.999999Z", true),
    ] {
        let mut doc = serde_json::from_str::<Value>(REFERENCE_RESPONSE).unwrap();
        doc["token"]["createdAt"] = json!(at);
        let request = json!({"note": "x", "expiresAt": at}).to_string();
        match serde_json::from_str::<IssuedToken>(&doc.to_string()) {
            Ok(issued) => {
                assert!(accepted, "{at} must be refused");
                let again = serde_json::to_string(&issued).unwrap();
                let back: IssuedToken = serde_json::from_str(&again).unwrap();
                assert_eq!(back.token.created_at, issued.token.created_at);
                let request: IssueRequest = serde_json::from_str(&request).unwrap();
                let again = serde_json::to_string(&request).unwrap();
                assert!(
                    serde_json::from_str::<IssueRequest>(&again).is_ok(),
                    "{again}"
                );
            }
            Err(e) => {
                assert!(!accepted, "{at} must be accepted: {e}");
                assert!(
                    e.to_string().contains("year in UTC must be 0000 to 9999"),
                    "{e}"
                );
                assert!(serde_json::from_str::<IssueRequest>(&request).is_err());
            }
        }
    }
}
