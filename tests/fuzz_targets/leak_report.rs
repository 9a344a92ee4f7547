//! `leak_report`: what a secret-scanning partner's request goes through, from any bytes.
//! The input's first line is the signature header and the rest the body, so the fuzzer
//! reaches both the signature check (which runs before anything is read) and the report
//! reader (which takes attacker bytes once a signature holds, and any bytes before); the
//! whole input is also read as a key list.
//!
//! Invariants, checked against serde_json's own reading of the body:
//! - nothing panics;
//! - a body verifies under the key of vector A only if it is vector A's body;
//! - an accepted report is a JSON array of at most `MAX_MATCHES` objects, whose `token`
//!   and `type` strings are, in order, the report's tokens and kinds, each token non-empty
//!   and every field within its limit;
//! - the issuer's leak path answers, for each match, `Revoked` (then `AlreadyRevoked`)
//!   only for the one token it issued, `NotOurs` for a string its format does not parse,
//!   `Unknown` otherwise, and revokes nothing else.

use super::block_on;
use apitoken::leak::{
    KeyList, MAX_KEY_ID_LEN, MAX_MATCHES, MAX_REPORT_BYTES, Report, ReportField, verify,
};
use apitoken::{
    Creator, EnvironmentId, IssueRequest, LeakDetails, LeakOutcome, LeakReporter, MemoryStore,
    Note, TokenFormat, TokenIssuer, UserId,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use uuid::Uuid;

/// Vector A of `secret-scanning.md` (GitHub's documentation).
const KEY_A: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYAGMWO8XgCamYKMJS6jc/qgvSlAd
AjPuDPRcXU22YxgBrz+zoN19MzuRyW87qEt9/AmtoNP5GrobzUvQSyJFVw==
-----END PUBLIC KEY-----";
const BODY_A: &[u8] = br#"[{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]"#;

/// The seed of the issuer's generator: the token it issues is always the same, so a
/// seed input can name it (`fuzz/make_seeds.py` writes it).
pub(crate) const ISSUER_SEED: u64 = 19;

pub(crate) fn leak_report(data: &[u8]) {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    check_signature(header, body);
    check_key_list(data);
    if let Ok(report) = Report::from_json(body) {
        check_report(body, &report);
        check_leak_path(&report);
    }
}

fn check_signature(header: &[u8], body: &[u8]) {
    let keys = KeyList::from_json(
        serde_json::json!({"public_keys": [{"key_identifier": "a", "key": KEY_A}]})
            .to_string()
            .as_bytes(),
    )
    .expect("vector A's key is a key");
    let header = String::from_utf8_lossy(header);
    for id in ["a", "b", header.as_ref()] {
        if verify(&keys, id, &header, body).is_ok() {
            assert_eq!(id, "a", "only the listed key verifies");
            assert_eq!(
                body, BODY_A,
                "a body verified under key A that A never signed"
            );
        }
    }
}

fn check_key_list(data: &[u8]) {
    if let Ok(list) = KeyList::from_json(data) {
        assert!(
            list.iter().next().is_some(),
            "an accepted key list holds a key"
        );
        for key in &list {
            let id = key.id().as_str();
            assert!(
                !id.is_empty() && id.len() <= MAX_KEY_ID_LEN,
                "key id {id:?}"
            );
            assert!(
                list.get(id).is_some_and(|found| found.id() == key.id()),
                "a listed key is found by its id"
            );
        }
    }
}

fn check_report(body: &[u8], report: &Report) {
    assert!(body.len() <= MAX_REPORT_BYTES);
    let matches = report.matches();
    assert!(matches.len() <= MAX_MATCHES, "{} matches", matches.len());
    for m in matches {
        let token = m.token().expose_secret();
        assert!(!token.is_empty(), "an empty token was accepted");
        for (field, len) in [
            (ReportField::Token, token.len()),
            (ReportField::Kind, m.kind().len()),
            (ReportField::Url, m.url().map_or(0, str::len)),
            (ReportField::Source, m.source().map_or(0, str::len)),
        ] {
            assert!(len <= field.max_len(), "{field} of {len} bytes accepted");
        }
        assert_ne!(m.url(), Some(""), "an empty url is None");
        assert_ne!(m.source(), Some(""), "an empty source is None");
    }
    // The reader reads the body whole as JSON first (ignored fields too, to their depth
    // limit), so whatever it accepts, serde_json reads.
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(value) => value,
        Err(e) => panic!("the report reader accepted what serde_json refuses: {e}"),
    };
    let Value::Array(items) = value else {
        panic!("an accepted report is an array");
    };
    assert_eq!(items.len(), matches.len(), "one match per array item");
    for (item, m) in items.iter().zip(matches) {
        assert_eq!(
            item.get("token").and_then(Value::as_str),
            Some(m.token().expose_secret()),
            "the match's token is the item's"
        );
        assert_eq!(
            item.get("type").and_then(Value::as_str),
            Some(m.kind()),
            "the match's type is the item's"
        );
        let said = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        assert_eq!(said("url"), m.url(), "the match's url is the item's");
        assert_eq!(
            said("source"),
            m.source(),
            "the match's source is the item's"
        );
    }
}

fn check_leak_path(report: &Report) {
    let issuer = TokenIssuer::builder(MemoryStore::new())
        .rng(StdRng::seed_from_u64(ISSUER_SEED))
        .build();
    let env = EnvironmentId::from_uuid(Uuid::from_u128(1));
    let me = Creator::new(UserId::from_uuid(Uuid::from_u128(2)));
    let note = Note::new("fuzz").expect("a valid note");
    let issued = block_on(issuer.issue(env, me, IssueRequest::new(note)))
        .expect("the issuer issues into an empty store");
    let ours = issued.raw.expose_secret();
    let format = TokenFormat::dynamic();
    let mut revoked = false;
    for m in report.matches() {
        let reported = m.token().expose_secret();
        let leak = LeakDetails::new(LeakReporter::GitHub)
            .with_source(m.source().unwrap_or_default())
            .with_url(m.url().unwrap_or_default())
            .with_token_type(m.kind());
        let outcome =
            block_on(issuer.revoke_leaked(reported, &leak)).expect("the memory store never fails");
        match outcome {
            LeakOutcome::Revoked(_) => {
                assert_eq!(reported, ours, "only the issued token is revoked");
                assert!(!revoked, "revoked twice");
                revoked = true;
            }
            LeakOutcome::AlreadyRevoked(_) => {
                assert!(reported == ours && revoked, "already revoked: {outcome:?}");
            }
            LeakOutcome::NotOurs => assert!(format.parse(reported).is_err()),
            LeakOutcome::Unknown => {
                assert!(format.parse(reported).is_ok() && reported != ours);
            }
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(
        block_on(issuer.authenticate(ours)).is_ok(),
        !revoked,
        "the issued token is revoked exactly when the report named it"
    );
}
