//! `parse_token`: a presented token or `Authorization` value, under every format.
//!
//! Checks `TokenFormat::parse` against the reference rules, `TokenFormat::infer` and
//! `RawToken::parse_any` for completeness and consistency, and
//! `TokenIssuer::authenticate` and `authenticate_header` over a `MemoryStore` holding one
//! token per format: they accept exactly that token (bare, or after `Bearer` in a header
//! value), and every refusal is the same 401 that never repeats the secret.

use super::{block_on, formats, reference};
use apitoken::http::UNAUTHORIZED_MESSAGE;
use apitoken::{
    Creator, EnvironmentId, Error, IssueRequest, ManualClock, MemoryStore, Note, Principal,
    RawToken, Scope, TokenFormat, TokenId, TokenIssuer, UserId,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::OnceLock;
use uuid::Uuid;

/// The seed of the token each fixture issuer holds. `fuzz/make_seeds.py` writes the
/// resulting tokens into `fuzz/corpus/parse_token` (if `StdRng` ever changes its stream,
/// update them there).
pub(crate) const FIXTURE_SEED: u64 = 0x00a9_1703_c0de;

/// An issuer of one format holding one live token.
struct Fixture {
    format: TokenFormat,
    issuer: TokenIssuer<MemoryStore>,
    token: String,
    id: TokenId,
}

/// Built once per process: the issuer's state never changes (last use is not recorded).
fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| formats().into_iter().map(fixture).collect())
}

fn fixture(format: TokenFormat) -> Fixture {
    let issuer = TokenIssuer::builder(MemoryStore::new())
        .format(format)
        .clock(ManualClock::new(
            "2026-01-01T00:00:00Z".parse().expect("a valid time"),
        ))
        .rng(StdRng::seed_from_u64(FIXTURE_SEED))
        .last_use_interval(None)
        .build();
    let request = IssueRequest::new(Note::new("parse_token fixture").expect("a valid note"))
        .with_scopes([Scope::ENVIRONMENT_API_TOKENS_READ]);
    let issued = block_on(issuer.issue(
        EnvironmentId::from_uuid(Uuid::from_u128(1)),
        Creator::new(UserId::from_uuid(Uuid::from_u128(2))),
        request,
    ))
    .expect("the fixture token is issued");
    Fixture {
        format,
        token: issued.raw.expose_secret().to_owned(),
        id: issued.token.id,
        issuer,
    }
}

pub(crate) fn parse_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for fixture in fixtures() {
        check_parse(&fixture.format, &text);
        check_authenticate(fixture, &text);
    }
    check_infer(&text);
}

fn check_parse(format: &TokenFormat, s: &str) {
    let expected = reference::is_token(format, s.as_bytes());
    let parsed = match format.parse(s) {
        Ok(parsed) => parsed,
        Err(e) => {
            assert!(!expected, "{format:?} refused a valid token: {e}");
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(expected, "{format:?} accepted a string that is not a token");
    assert_eq!(parsed.expose_secret(), s);
    assert_eq!(parsed.prefix(), format.prefix());
    assert_eq!(s.len(), format.token_len());
    assert_eq!(parsed.checksum().as_str(), &s[s.len() - 6..]);

    let random = reference::random_part(format, s);
    let raw = parsed.to_raw_token();
    assert_eq!(raw.expose_secret(), s);
    assert_eq!(raw.prefix(), format.prefix());
    assert_eq!(raw.checksum(), parsed.checksum());
    for shown in [format!("{raw:?}"), format!("{parsed:?}")] {
        assert!(!shown.contains(random), "Debug shows the secret: {shown}");
    }

    // A token read without context is recognised, as a format that reads it too.
    let inferred = TokenFormat::infer(s).expect("infer recognises every token");
    assert!(inferred.parse(s).is_ok());
    assert_eq!(inferred.prefix(), format.prefix());
    assert_eq!(inferred.random_len(), format.random_len());
    let any = RawToken::parse_any(s).expect("parse_any reads every token");
    assert!(any == raw);
}

fn check_infer(s: &str) {
    let expected = reference::is_token_of_any_format(s);
    match TokenFormat::infer(s) {
        Ok(format) => {
            assert!(expected, "infer accepted a string that is not a token");
            assert!(
                format.parse(s).is_ok(),
                "infer returned a format that refuses it"
            );
            assert_eq!(Some(format.prefix()), s.split_once('_').map(|(p, _)| p));
            let raw = RawToken::parse_any(s).expect("parse_any agrees with infer");
            assert_eq!(raw.expose_secret(), s);
        }
        Err(e) => {
            assert!(!expected, "infer refused a token: {e}");
            assert!(RawToken::parse_any(s).is_err());
            for format in formats() {
                assert!(
                    format.parse(s).is_err(),
                    "{format:?} reads what infer refused"
                );
            }
        }
    }
}

/// `authenticate` takes the input as the token; `authenticate_header` as an
/// `Authorization` value, whose token the reference reads (none: the empty string).
fn check_authenticate(fixture: &Fixture, presented: &str) {
    let answer = block_on(fixture.issuer.authenticate(presented));
    check_answer(fixture, presented, answer);
    let token = reference::bearer_token(presented).unwrap_or_default();
    let answer = block_on(fixture.issuer.authenticate_header(presented));
    check_answer(fixture, token, answer);
}

/// The answer to a presented `token`: the fixture's principal exactly when it is the
/// fixture's token, otherwise the one 401, malformed exactly when parsing refuses it.
fn check_answer(fixture: &Fixture, stripped: &str, answer: Result<Principal, Error>) {
    let secret = reference::random_part(&fixture.format, &fixture.token);
    match answer {
        Ok(principal) => {
            assert_eq!(stripped, fixture.token, "authenticated something else");
            assert_eq!(principal.token_id(), fixture.id);
            assert!(
                principal
                    .scopes()
                    .contains(&Scope::ENVIRONMENT_API_TOKENS_READ)
            );
        }
        Err(e) => {
            assert_ne!(stripped, fixture.token, "refused the live token: {e}");
            assert!(
                e.is_unauthenticated(),
                "not an authentication failure: {e:?}"
            );
            assert_eq!(apitoken::http::status(&e), 401);
            assert_eq!(apitoken::http::public_message(&e), UNAUTHORIZED_MESSAGE);
            let malformed = !reference::is_token(&fixture.format, stripped.as_bytes());
            assert_eq!(
                matches!(e, Error::Malformed(_)),
                malformed,
                "malformed input must be refused by parsing, and only it: {e:?}"
            );
            for shown in [e.to_string(), format!("{e:?}")] {
                assert!(
                    !shown.contains(secret),
                    "the error shows the secret: {shown}"
                );
            }
        }
    }
}
