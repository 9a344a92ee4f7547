//! `note_scope`: `Note::new`, `Scope::new`, `ScopeCatalog::parse` and `Scopes` through
//! serde_json, checked against the reference rules.
//!
//! The input is tried whole, line by line and piece by piece (split at `,`, space and
//! `\n`), so one input exercises several scopes and notes; and as JSON for `Note`,
//! `Scope` and `Scopes`.

use super::reference;
use apitoken::REFERENCE_SCOPES;
use apitoken::{Note, NoteError, Scope, ScopeCatalog, ScopeError, Scopes};
use std::collections::BTreeSet;

pub(crate) fn note_scope(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let pieces: Vec<&str> = std::iter::once(&*text)
        .chain(text.lines())
        .chain(text.split([',', ' ', '\n']))
        .collect();

    for piece in &pieces {
        check_note(piece);
    }

    let catalogs = [
        ScopeCatalog::reference(),
        ScopeCatalog::empty(),
        ScopeCatalog::reference()
            .with(Scope::from_static("all.read"))
            .with(Scope::from_static("gasless.write")),
    ];
    let mut valid = Vec::new();
    for piece in &pieces {
        if let Some(scope) = check_scope(piece, &catalogs) {
            valid.push(scope);
        }
    }
    check_scopes(valid, &catalogs);

    check_json(data);
}

fn check_note(s: &str) {
    let trimmed = s.trim();
    let count = trimmed.chars().count();
    let forbidden = trimmed
        .chars()
        .position(reference::is_forbidden_in_note)
        .map(|i| i + 1);
    match Note::new(s) {
        Ok(note) => {
            assert!(!trimmed.is_empty() && count <= 100 && forbidden.is_none());
            assert_eq!(reference::first_invisible_in_note(trimmed), None);
            assert_eq!(reference::token_in_note(trimmed), None);
            assert_eq!(note.as_str(), trimmed);
            assert_eq!(note.to_string(), trimmed);
            assert_eq!(Note::new(note.as_str()), Ok(note.clone()), "not idempotent");
            let json = serde_json::to_string(&note).expect("a note serializes");
            let back: Note = serde_json::from_str(&json).expect("a note reads back");
            assert_eq!(back, note);
        }
        Err(e) => {
            let expected = if trimmed.is_empty() {
                NoteError::Empty
            } else if count > 100 {
                NoteError::TooLong { found: count }
            } else if let Some(position) = forbidden {
                NoteError::ControlCharacter { position }
            } else if let Some((position, character)) = reference::first_invisible_in_note(trimmed)
            {
                NoteError::InvisibleCharacter {
                    position,
                    character,
                }
            } else {
                let position =
                    reference::token_in_note(trimmed).expect("a note refused for no reason");
                NoteError::ContainsToken { position }
            };
            assert_eq!(e, expected);
        }
    }
}

fn check_scope(s: &str, catalogs: &[ScopeCatalog]) -> Option<Scope> {
    let well_formed = reference::is_scope(s);
    let scope = match Scope::new(s) {
        Ok(scope) => scope,
        Err(e) => {
            assert!(!well_formed, "refused the well-formed scope {s:?}: {e}");
            assert!(!matches!(e, ScopeError::Unknown { .. }));
            for catalog in catalogs {
                assert!(catalog.parse(s).is_err());
            }
            return None;
        }
    };
    assert!(well_formed, "accepted the malformed scope {s:?}");
    assert_eq!(scope.as_str(), s);
    assert_eq!(scope.to_string(), s);
    assert_eq!(s.parse::<Scope>().ok(), Some(scope.clone()));
    let json = serde_json::to_string(&scope).expect("a scope serializes");
    let back: Scope = serde_json::from_str(&json).expect("a scope reads back");
    assert_eq!(back, scope);

    for catalog in catalogs {
        let listed = catalog.scopes().iter().any(|c| c.as_str() == s);
        assert_eq!(catalog.contains(&scope), listed);
        match catalog.parse(s) {
            Ok(parsed) => {
                assert!(listed, "{catalog:?} granted {s:?}");
                assert_eq!(parsed, scope);
            }
            Err(ScopeError::Unknown { name }) => {
                assert!(!listed, "{catalog:?} refused its own {s:?}");
                assert_eq!(name, s);
            }
            Err(e) => panic!("{s:?} is well-formed, yet {e}"),
        }
    }
    let reference = REFERENCE_SCOPES.iter().any(|r| r.as_str() == s);
    assert_eq!(ScopeCatalog::reference().parse(s).is_ok(), reference);
    Some(scope)
}

fn check_scopes(valid: Vec<Scope>, catalogs: &[ScopeCatalog]) {
    let strings: BTreeSet<String> = valid.iter().map(|s| s.as_str().to_owned()).collect();
    let scopes: Scopes = valid.iter().cloned().collect();
    assert_canonical(&scopes);
    assert_eq!(scopes.len(), strings.len());
    assert!(
        scopes
            .iter()
            .map(Scope::as_str)
            .eq(strings.iter().map(String::as_str))
    );
    for scope in &valid {
        assert!(scopes.contains(scope));
        assert!(scopes.contains_str(scope.as_str()));
    }
    assert!(scopes.is_subset(&scopes));
    assert!(scopes.contains_all(&valid));
    assert_eq!(scopes.first_missing(&valid), None);
    assert!(Scopes::empty().is_subset(&scopes));
    if let Some(first) = valid.first() {
        assert_eq!(scopes.with(first.clone()), scopes);
    }
    for catalog in catalogs {
        let unknown: Vec<&Scope> = catalog.unknown(&scopes).collect();
        assert!(unknown.iter().all(|s| !catalog.contains(s)));
        assert_eq!(unknown.is_empty(), scopes.is_subset(catalog.scopes()));
    }
    let json = serde_json::to_string(&scopes).expect("scopes serialize");
    let back: Scopes = serde_json::from_str(&json).expect("scopes read back");
    assert_eq!(back, scopes);
}

fn assert_canonical(scopes: &Scopes) {
    assert!(
        scopes
            .as_slice()
            .windows(2)
            .all(|w| w[0].as_str() < w[1].as_str()),
        "not sorted and deduplicated: {scopes:?}"
    );
    assert_eq!(scopes.is_empty(), scopes.as_slice().is_empty());
}

fn check_json(data: &[u8]) {
    if let Ok(note) = serde_json::from_slice::<Note>(data) {
        let s: String = serde_json::from_slice(data).expect("a note is a JSON string");
        assert_eq!(Note::new(&s).as_ref(), Ok(&note));
    }
    if let Ok(scope) = serde_json::from_slice::<Scope>(data) {
        assert!(reference::is_scope(scope.as_str()));
    }
    let strings = serde_json::from_slice::<Vec<String>>(data);
    match serde_json::from_slice::<Scopes>(data) {
        Ok(scopes) => {
            assert_canonical(&scopes);
            let strings: BTreeSet<String> = strings
                .expect("scopes are a JSON array of strings")
                .into_iter()
                .collect();
            assert!(
                scopes
                    .iter()
                    .map(Scope::as_str)
                    .eq(strings.iter().map(String::as_str))
            );
            let json = serde_json::to_string(&scopes).expect("scopes serialize");
            assert_eq!(serde_json::from_str::<Scopes>(&json).ok(), Some(scopes));
        }
        Err(_) => {
            if let Ok(strings) = strings {
                assert!(
                    !strings.iter().all(|s| reference::is_scope(s)),
                    "refused the well-formed scopes {strings:?}"
                );
            }
        }
    }
}
