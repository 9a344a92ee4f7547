//! Scopes and notes: the reference vocabulary, the catalog, scope syntax errors, the
//! canonical `Scopes` set and its JSON, and `Note` validation (directly and through serde).
#![cfg(feature = "serde")]
// Tests unwrap, index and panic freely: a panic is a failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use apitoken::{IssueRequest, Note, NoteError, Scope, ScopeCatalog, ScopeError, Scopes};
use apitoken::{MAX_SCOPE_LEN, REFERENCE_SCOPES};
use std::collections::HashSet;

/// The 14 scopes of the reference page, in its order, written out literally.
const REFERENCE_LITERALS: [&str; 14] = [
    "waas.delegatedAccess.signMessage",
    "waas.authenticate",
    "environment.settings.read",
    "environment.settings.write",
    "environment.apiTokens.read",
    "environment.apiTokens.write",
    "environment.users.read",
    "environment.users.write",
    "environment.analytics.read",
    "environment.webhooks.read",
    "environment.webhooks.write",
    "environment.events.read",
    "environment.events.write",
    "environment.balances.read",
];

fn scope(s: &str) -> Scope {
    Scope::new(s).unwrap()
}

fn scopes(list: &[&str]) -> Scopes {
    list.iter().map(|s| scope(s)).collect()
}

// ---------------------------------------------------------------------------------------
// The reference vocabulary and the catalog
// ---------------------------------------------------------------------------------------

/// Each named constant has exactly the reference string.
#[test]
fn reference_constants_have_the_reference_strings() {
    let constants = [
        (
            Scope::WAAS_DELEGATED_ACCESS_SIGN_MESSAGE,
            "waas.delegatedAccess.signMessage",
        ),
        (Scope::WAAS_AUTHENTICATE, "waas.authenticate"),
        (
            Scope::ENVIRONMENT_SETTINGS_READ,
            "environment.settings.read",
        ),
        (
            Scope::ENVIRONMENT_SETTINGS_WRITE,
            "environment.settings.write",
        ),
        (
            Scope::ENVIRONMENT_API_TOKENS_READ,
            "environment.apiTokens.read",
        ),
        (
            Scope::ENVIRONMENT_API_TOKENS_WRITE,
            "environment.apiTokens.write",
        ),
        (Scope::ENVIRONMENT_USERS_READ, "environment.users.read"),
        (Scope::ENVIRONMENT_USERS_WRITE, "environment.users.write"),
        (
            Scope::ENVIRONMENT_ANALYTICS_READ,
            "environment.analytics.read",
        ),
        (
            Scope::ENVIRONMENT_WEBHOOKS_READ,
            "environment.webhooks.read",
        ),
        (
            Scope::ENVIRONMENT_WEBHOOKS_WRITE,
            "environment.webhooks.write",
        ),
        (Scope::ENVIRONMENT_EVENTS_READ, "environment.events.read"),
        (Scope::ENVIRONMENT_EVENTS_WRITE, "environment.events.write"),
        (
            Scope::ENVIRONMENT_BALANCES_READ,
            "environment.balances.read",
        ),
    ];
    for (constant, literal) in &constants {
        assert_eq!(constant.as_str(), *literal);
        assert_eq!(constant.to_string(), *literal);
        assert_eq!(&scope(literal), constant);
    }
    let distinct: HashSet<&str> = constants.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(distinct.len(), 14);
}

/// `REFERENCE_SCOPES` is the 14 reference strings, distinct, in the page's order.
#[test]
fn reference_scopes_are_fourteen_distinct_in_order() {
    let strings: Vec<&str> = REFERENCE_SCOPES.iter().map(Scope::as_str).collect();
    assert_eq!(strings, REFERENCE_LITERALS);
    let distinct: HashSet<&str> = strings.iter().copied().collect();
    assert_eq!(distinct.len(), 14);
}

/// The default catalog is the 14 reference scopes and nothing else.
#[test]
fn reference_catalog_has_the_fourteen() {
    let catalog = ScopeCatalog::reference();
    assert_eq!(catalog.len(), 14);
    assert!(!catalog.is_empty());
    assert_eq!(ScopeCatalog::default(), catalog);
    for literal in REFERENCE_LITERALS {
        assert!(catalog.contains(&scope(literal)), "{literal}");
        assert_eq!(catalog.parse(literal).unwrap().as_str(), literal);
    }
    for later in ["all.read", "gasless.read", "gasless.write"] {
        assert!(!catalog.contains(&scope(later)));
        assert!(matches!(
            catalog.parse(later),
            Err(ScopeError::Unknown { .. })
        ));
    }
    assert!(ScopeCatalog::empty().is_empty());
    assert_eq!(ScopeCatalog::empty().len(), 0);
}

/// The catalog extends with the later scopes without forking; adding a known scope again
/// changes nothing.
#[test]
fn catalog_extends_with_later_scopes() {
    let extended = ScopeCatalog::reference()
        .with(Scope::from_static("all.read"))
        .with(scope("gasless.read"))
        .extend([scope("gasless.write"), Scope::ENVIRONMENT_USERS_READ]);
    assert_eq!(extended.len(), 17);
    for name in ["all.read", "gasless.read", "gasless.write"] {
        assert_eq!(extended.parse(name).unwrap().as_str(), name);
    }
    for literal in REFERENCE_LITERALS {
        assert!(extended.parse(literal).is_ok());
    }
    assert!(extended.parse("gasless.admin").is_err());
    let again = extended.clone().with(scope("all.read"));
    assert_eq!(again, extended);
    assert_eq!(
        ScopeCatalog::empty().with(scope("all.read")).len(),
        1,
        "an application's own vocabulary"
    );
}

/// A well-formed scope outside the catalog is `Unknown`, and the message names it.
#[test]
fn unknown_scope_is_named_in_the_error() {
    let catalog = ScopeCatalog::reference();
    let err = catalog.parse("nope.scope").unwrap_err();
    assert_eq!(
        err,
        ScopeError::Unknown {
            name: "nope.scope".to_owned()
        }
    );
    let message = err.to_string();
    assert!(message.contains("nope.scope"), "{message}");
    assert_eq!(
        message,
        "unknown scope \"nope.scope\": it is not in this issuer's catalog"
    );
    // Case matters: scopes are compared as strings.
    assert!(catalog.parse("environment.apitokens.read").is_err());
    // `unknown` lists the scopes a catalog does not grant, in canonical order.
    let requested = scopes(&["z.z", "environment.users.read", "a.a"]);
    let unknown: Vec<&str> = catalog.unknown(&requested).map(Scope::as_str).collect();
    assert_eq!(unknown, ["a.a", "z.z"]);
}

/// Malformed scope strings are syntax errors (checked before the catalog), and each
/// message says what a scope must look like.
#[test]
fn scope_syntax_errors_say_what_is_expected() {
    let long = "a".repeat(MAX_SCOPE_LEN + 1);
    let cases: Vec<(&str, ScopeError, &str)> = vec![
        (
            "",
            ScopeError::Empty,
            "empty scope: expected dot-separated names such as `environment.apiTokens.read`",
        ),
        (
            ".environment.users.read",
            ScopeError::EmptySegment { position: 1 },
            "empty segment at character 1: a scope is names separated by single dots",
        ),
        (
            "environment.users.read.",
            ScopeError::EmptySegment { position: 23 },
            "empty segment at character 23: a scope is names separated by single dots",
        ),
        (
            "environment..read",
            ScopeError::EmptySegment { position: 13 },
            "empty segment at character 13: a scope is names separated by single dots",
        ),
        (
            ".",
            ScopeError::EmptySegment { position: 1 },
            "empty segment at character 1: a scope is names separated by single dots",
        ),
        (
            "environment.users read",
            ScopeError::InvalidCharacter { position: 18 },
            "scope character 18 is not allowed: scopes have letters, digits, `_`, `-` and `.`",
        ),
        (
            " environment.users.read",
            ScopeError::InvalidCharacter { position: 1 },
            "scope character 1 is not allowed: scopes have letters, digits, `_`, `-` and `.`",
        ),
        (
            "environment.usérs.read",
            ScopeError::InvalidCharacter { position: 15 },
            "scope character 15 is not allowed: scopes have letters, digits, `_`, `-` and `.`",
        ),
        (
            "environment.users.read\n",
            ScopeError::InvalidCharacter { position: 23 },
            "scope character 23 is not allowed: scopes have letters, digits, `_`, `-` and `.`",
        ),
        (
            &long,
            ScopeError::TooLong { found: 101 },
            "scope too long: at most 100 characters, got 101",
        ),
    ];
    let catalog = ScopeCatalog::reference();
    for (input, expected, message) in cases {
        let err = Scope::new(input).unwrap_err();
        assert_eq!(err, expected, "{input:?}");
        assert_eq!(err.to_string(), message, "{input:?}");
        assert_eq!(catalog.parse(input).unwrap_err(), expected, "{input:?}");
        assert_eq!(input.parse::<Scope>().unwrap_err(), expected);
        assert_eq!(Scope::try_from(input).unwrap_err(), expected);
        let json = serde_json::to_string(input).unwrap();
        assert!(serde_json::from_str::<Scope>(&json).is_err(), "{input:?}");
    }
    // At the limits: 100 characters, single characters, `_` and `-` are fine.
    assert_eq!(scope(&"a".repeat(MAX_SCOPE_LEN)).as_str().len(), 100);
    for ok in ["a", "a.b", "a_b-c.D9", "all.read", "-._"] {
        assert_eq!(scope(ok).as_str(), ok);
    }
}

/// Scope equality, order and hashing are by string, whatever the representation.
#[test]
fn scope_identity_is_its_string() {
    let built = scope("environment.users.read");
    assert_eq!(built, Scope::ENVIRONMENT_USERS_READ);
    assert_eq!(format!("{built:?}"), "Scope(environment.users.read)");
    let custom = scope("custom.thing");
    assert_eq!(custom.clone(), custom);
    assert!(scope("a.B") < scope("a.a"), "byte-wise: upper case first");
    let set: HashSet<Scope> = [built, Scope::ENVIRONMENT_USERS_READ, custom].into();
    assert_eq!(set.len(), 2);
    assert_eq!(
        serde_json::to_string(&Scope::ENVIRONMENT_USERS_READ).unwrap(),
        "\"environment.users.read\""
    );
}

// ---------------------------------------------------------------------------------------
// Scopes
// ---------------------------------------------------------------------------------------

/// Duplicates collapse, and the set is the same whatever the input order.
#[test]
fn scopes_collapse_duplicates_and_ignore_order() {
    let a = scopes(&[
        "environment.users.read",
        "environment.users.read",
        "all.read",
        "environment.users.read",
    ]);
    assert_eq!(a.len(), 2);
    assert!(!a.is_empty());
    let b = scopes(&["all.read", "environment.users.read"]);
    assert_eq!(a, b);
    let strings: Vec<&str> = a.iter().map(Scope::as_str).collect();
    assert_eq!(strings, ["all.read", "environment.users.read"]);
    assert_eq!(
        Scopes::from([Scope::WAAS_AUTHENTICATE, Scope::WAAS_AUTHENTICATE]).len(),
        1
    );
    assert!(Scopes::empty().is_empty());
    assert_eq!(Scopes::default(), Scopes::empty());
    assert_eq!(scopes(&[]), Scopes::empty());
    let more = a.with(scope("all.read")).with(scope("zz.top"));
    assert_eq!(more.len(), 3);
    assert_eq!(a.len(), 2, "with() leaves the original alone");
}

/// Serialization is a JSON array in byte-wise sorted order, identical for every input
/// order.
#[test]
fn scopes_serialize_in_one_canonical_order() {
    let orders: [&[&str]; 3] = [
        &[
            "environment.users.write",
            "environment.apiTokens.read",
            "all.read",
            "environment.analytics.read",
            "Zeta.scope",
        ],
        &[
            "Zeta.scope",
            "environment.analytics.read",
            "all.read",
            "environment.users.write",
            "environment.apiTokens.read",
            "all.read",
        ],
        &[
            "all.read",
            "environment.analytics.read",
            "environment.apiTokens.read",
            "environment.users.write",
            "Zeta.scope",
        ],
    ];
    let expected = r#"["Zeta.scope","all.read","environment.analytics.read","environment.apiTokens.read","environment.users.write"]"#;
    for order in orders {
        let set = scopes(order);
        assert_eq!(serde_json::to_string(&set).unwrap(), expected, "{order:?}");
        let back: Scopes = serde_json::from_str(expected).unwrap();
        assert_eq!(back, set);
    }
    assert_eq!(serde_json::to_string(&Scopes::empty()).unwrap(), "[]");
    assert_eq!(
        serde_json::to_value(scopes(&["b.b", "a.a"])).unwrap(),
        serde_json::json!(["a.a", "b.b"])
    );
}

/// `contains`, `contains_str`, `contains_all`, `is_subset` and `first_missing`.
#[test]
fn scopes_membership_and_subsets() {
    let granted = scopes(&[
        "environment.users.read",
        "environment.users.write",
        "environment.apiTokens.read",
    ]);
    assert!(granted.contains(&Scope::ENVIRONMENT_USERS_READ));
    assert!(granted.contains_str("environment.apiTokens.read"));
    assert!(!granted.contains(&Scope::ENVIRONMENT_API_TOKENS_WRITE));
    assert!(!granted.contains_str("environment.users"));
    assert!(!granted.contains_str(""));
    assert!(!Scopes::empty().contains(&Scope::WAAS_AUTHENTICATE));

    let read_write = [
        Scope::ENVIRONMENT_USERS_READ,
        Scope::ENVIRONMENT_USERS_WRITE,
    ];
    assert!(granted.contains_all(&read_write));
    assert!(granted.contains_all(&[]));
    assert_eq!(granted.first_missing(&read_write), None);

    let wanted = [
        Scope::ENVIRONMENT_USERS_READ,
        Scope::ENVIRONMENT_WEBHOOKS_WRITE,
        Scope::ENVIRONMENT_API_TOKENS_WRITE,
    ];
    assert!(!granted.contains_all(&wanted));
    // The first missing in the order asked, not in canonical order.
    assert_eq!(
        granted.first_missing(&wanted),
        Some(&Scope::ENVIRONMENT_WEBHOOKS_WRITE)
    );

    let subset = scopes(&["environment.users.read"]);
    assert!(subset.is_subset(&granted));
    assert!(!granted.is_subset(&subset));
    assert!(granted.is_subset(&granted));
    assert!(Scopes::empty().is_subset(&granted));
    assert!(Scopes::empty().is_subset(&Scopes::empty()));
    assert!(!subset.is_subset(&Scopes::empty()));
    assert!(!scopes(&["other.read"]).is_subset(&granted));
}

/// Deserialization collapses duplicates and validates every element.
#[test]
fn scopes_deserialize_through_validation() {
    let one: Scopes =
        serde_json::from_str(r#"["environment.users.read","environment.users.read"]"#).unwrap();
    assert_eq!(one.len(), 1);
    assert!(one.contains(&Scope::ENVIRONMENT_USERS_READ));
    let empty: Scopes = serde_json::from_str("[]").unwrap();
    assert!(empty.is_empty());
    for bad in [
        r#"["ok.scope","bad scope"]"#,
        r#"[""]"#,
        r#"["a..b"]"#,
        r#"[1]"#,
        r#""environment.users.read""#,
        "null",
        "{}",
    ] {
        assert!(serde_json::from_str::<Scopes>(bad).is_err(), "{bad}");
    }
    let err = serde_json::from_str::<Scopes>(r#"["a..b"]"#).unwrap_err();
    assert!(err.to_string().contains("empty segment"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Note
// ---------------------------------------------------------------------------------------

/// Notes are trimmed; empty and whitespace-only notes are refused.
#[test]
fn note_trims_and_requires_text() {
    assert_eq!(Note::new("  CI deploys \n").unwrap().as_str(), "CI deploys");
    assert_eq!(Note::new("\u{3000}x\u{a0}").unwrap().as_str(), "x");
    assert_eq!(Note::new("a  b").unwrap().as_str(), "a  b");
    assert_eq!(Note::new("ok").unwrap().to_string(), "ok");
    assert_eq!(format!("{:?}", Note::new("ok").unwrap()), "\"ok\"");
    for empty in ["", " ", "   ", "\t\n", "\u{3000}\u{2003}"] {
        let err = Note::new(empty).unwrap_err();
        assert_eq!(err, NoteError::Empty, "{empty:?}");
        assert_eq!(
            err.to_string(),
            "note is required: give 1 to 100 characters that say what the token is for"
        );
    }
    assert_eq!("  x ".parse::<Note>().unwrap().as_str(), "x");
    assert_eq!(Note::try_from(" y ").unwrap().as_str(), "y");
}

/// The limit is 100 characters (Unicode scalar values, not bytes) after trimming.
#[test]
fn note_length_counts_characters() {
    for unit in ["a", "🔑", "漢", "é"] {
        let hundred = unit.repeat(100);
        assert_eq!(Note::new(&hundred).unwrap().as_str(), hundred, "{unit}");
        let padded = format!("   {hundred}\n");
        assert_eq!(Note::new(&padded).unwrap().as_str(), hundred, "{unit}");
        let err = Note::new(&unit.repeat(101)).unwrap_err();
        assert_eq!(err, NoteError::TooLong { found: 101 }, "{unit}");
        assert_eq!(
            err.to_string(),
            "note too long: at most 100 characters, got 101"
        );
    }
    assert_eq!(
        Note::new(&"x".repeat(5000)).unwrap_err(),
        NoteError::TooLong { found: 5000 }
    );
}

/// Control characters, line separators and bidirectional formatting characters inside a
/// note are refused with their position (in characters, after trimming).
#[test]
fn note_control_characters_are_refused_with_position() {
    let cases = [
        ("a\nb", 2),
        ("ab\tc", 3),
        ("x\u{7f}", 2),
        ("\u{1b}[31mred", 1),
        ("  é\u{1b}x", 2),
        ("🔑🔑\r🔑", 3),
        ("nul\0", 4),
        ("a\u{9b}b", 2),
        ("line\u{2028}break", 5),
        ("admin\u{202E}txt.exe", 6),
        ("\u{2066}isolate", 1),
    ];
    for (input, position) in cases {
        let err = Note::new(input).unwrap_err();
        assert_eq!(err, NoteError::ControlCharacter { position }, "{input:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "note character {position} is a control, line-separator"
            )),
            "{message}"
        );
    }
}

/// Deserialization goes through `Note::new`: trimmed, and refused when invalid.
#[test]
fn note_deserializes_through_validation() {
    let note: Note = serde_json::from_str(r#""  deploy bot  ""#).unwrap();
    assert_eq!(note.as_str(), "deploy bot");
    assert_eq!(serde_json::to_string(&note).unwrap(), r#""deploy bot""#);

    let long = serde_json::to_string(&"n".repeat(101)).unwrap();
    let err = serde_json::from_str::<Note>(&long).unwrap_err();
    assert!(
        err.to_string()
            .contains("note too long: at most 100 characters, got 101"),
        "{err}"
    );
    let ok = serde_json::to_string(&"漢".repeat(100)).unwrap();
    assert!(serde_json::from_str::<Note>(&ok).is_ok());
    for bad in [r#""""#, r#""   ""#, r#""a\nb""#, r#""\u001b""#, "1", "null"] {
        assert!(serde_json::from_str::<Note>(bad).is_err(), "{bad}");
    }

    // The same inside a request body.
    let request = format!(r#"{{"note":{long},"scopes":[]}}"#);
    let err = serde_json::from_str::<IssueRequest>(&request).unwrap_err();
    assert!(err.to_string().contains("note too long"), "{err}");
    let request: IssueRequest = serde_json::from_str(
        r#"{"note":" ci ","scopes":["environment.users.read","environment.users.read"]}"#,
    )
    .unwrap();
    assert_eq!(request.note.as_str(), "ci");
    assert_eq!(request.scopes.len(), 1);
    assert!(serde_json::from_str::<IssueRequest>(r#"{"scopes":[]}"#).is_err());
}

/// Format characters that are not bidirectional controls, such as the zero-width joiner
/// of emoji sequences, are accepted.
#[test]
fn note_keeps_emoji_sequences() {
    let family = "👨\u{200D}👩\u{200D}👧 team token";
    assert_eq!(Note::new(family).unwrap().as_str(), family);
}

/// Emoji keep the invisible characters they are made of: variation selectors after a
/// visible character, joiners between visible characters.
#[test]
fn note_keeps_variation_selectors_and_joiners_of_emoji() {
    for note in [
        "❤\u{FE0F}\u{200D}🔥 on-call",
        "1\u{FE0F}\u{20E3} first",
        "🏳\u{FE0F}\u{200D}🌈 team",
        "👩🏽\u{200D}💻 dev",
    ] {
        assert_eq!(Note::new(note).unwrap().as_str(), note, "{note:?}");
    }
}

/// Invisible (default-ignorable) characters make look-alike notes: refused wherever they
/// are not part of an emoji, with their position and code point.
#[test]
fn note_refuses_invisible_characters() {
    let invisible = [
        '\u{00AD}',
        '\u{034F}',
        '\u{115F}',
        '\u{17B4}',
        '\u{180E}',
        '\u{200B}',
        '\u{200C}',
        '\u{2060}',
        '\u{2061}',
        '\u{2062}',
        '\u{2063}',
        '\u{2064}',
        '\u{2065}',
        '\u{206A}',
        '\u{3164}',
        '\u{FEFF}',
        '\u{FFA0}',
        '\u{FFF0}',
        '\u{1BCA0}',
        '\u{1D173}',
        '\u{E0000}',
        '\u{E0001}',
        '\u{E0041}',
        '\u{E007F}',
        '\u{E0100}',
        '\u{E01EF}',
        '\u{E0FFF}',
    ];
    for c in invisible {
        let input = format!("CI{c} deploys");
        assert_eq!(
            Note::new(&input),
            Err(NoteError::InvisibleCharacter {
                position: 3,
                character: c
            }),
            "U+{:04X}",
            u32::from(c)
        );
    }
    // Joiners and selectors outside an emoji are refused too.
    for (input, position) in [
        ("\u{200D}CI", 1),
        ("CI \u{200D}deploys", 4),
        ("CI\u{200D}", 3),
        ("\u{FE0F}CI", 1),
        ("CI \u{FE0F}x", 4),
        ("a\u{200D}\u{200D}b", 2),
    ] {
        assert!(
            matches!(Note::new(input), Err(NoteError::InvisibleCharacter { position: p, .. }) if p == position),
            "{input:?}: {:?}",
            Note::new(input)
        );
    }
    let message = Note::new("a\u{200B}b").unwrap_err().to_string();
    assert_eq!(
        message,
        "note character 2 (U+200B) is invisible; notes are plain visible text, so remove it"
    );
}

/// A well-formed token in a note would be stored in plain text: refused, wherever it
/// stands; a look-alike whose checksum is wrong is just text.
#[test]
fn note_refuses_a_token() {
    let token = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC";
    for (input, position) in [
        (token.to_owned(), 1),
        (format!("Bearer {token}"), 8),
        (format!("ключ={token}."), 6),
    ] {
        let err = Note::new(&input).unwrap_err();
        assert_eq!(err, NoteError::ContainsToken { position }, "{input}");
        assert!(
            !err.to_string().contains(token),
            "the message repeats no token"
        );
    }
    assert!(Note::new("dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFD").is_ok());
}

/// Stores read notes back by the rules every version applied, so that a record written
/// before invisible characters or tokens were refused stays readable.
#[test]
fn stored_notes_are_read_by_the_older_rules() {
    let old = "written\u{200B}before";
    assert!(Note::new(old).is_err());
    assert_eq!(Note::from_stored(old).unwrap().as_str(), old);
    assert_eq!(Note::from_stored("  "), Err(NoteError::Empty));
    assert!(matches!(
        Note::from_stored("a\nb"),
        Err(NoteError::ControlCharacter { position: 2 })
    ));
}
