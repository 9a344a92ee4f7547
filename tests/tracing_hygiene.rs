//! What the library tells a `tracing` subscriber holds no secret: a subscriber that keeps
//! every field of every span and event (every level, every target, sqlx's included) sees
//! a whole lifecycle on `SqliteStore` behind a coherent `CachedStore`: issue, delegate,
//! authenticate (accepted, malformed, unknown, revoked, expired), authorize and refuse,
//! read, list, rotate, revoke with a cascade, a leak report, last-use writes and a purge.
//! Then every recorded string is scanned with `apitoken::scan`, and searched for any
//! 8-character window of each token's random part and of each token's hash (hex), and
//! for the notes and the e-mail address.
//!
//! One binary of its own: the subscriber is the process's global default.
#![cfg(any(feature = "sqlite", feature = "sqlite-unbundled"))]
#![allow(clippy::print_stderr)] // the count, and the lines on request

mod support;

use apitoken::{
    CachedStore, Caller, Creator, EnvironmentId, HashKey, IssueRequest, LeakDetails, LeakOutcome,
    LeakReporter, ManualClock, Note, PageRequest, Scope, SqliteStore, TokenFormat, TokenIssuer,
    UserId,
};
use chrono::{TimeDelta, Utc};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::TempDb;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use uuid::Uuid;

const KEY_HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const NOTE: &str = "hygiene note 7c1e";
const EMAIL: &str = "hygiene-7c1e@example.com";

/// Every span's and event's name and fields, as text.
#[derive(Default)]
struct Recorder {
    lines: Mutex<Vec<String>>,
    next_id: AtomicU64,
}

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl Recorder {
    fn keep(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Subscriber for &'static Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!(
            "span {} {}:",
            span.metadata().target(),
            span.metadata().name()
        );
        span.record(&mut Line(&mut line));
        self.keep(line);
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut line = String::from("record:");
        values.record(&mut Line(&mut line));
        self.keep(line);
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut line = format!("event {} {} {}:", meta.level(), meta.target(), meta.name());
        event.record(&mut Line(&mut line));
        self.keep(line);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn user(n: u128) -> Creator {
    Creator {
        email: Some(EMAIL.into()),
        ..Creator::new(UserId::from_uuid(Uuid::from_u128(n)))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_recorded_field_holds_a_token_a_hash_or_a_note() {
    let recorder: &'static Recorder = Box::leak(Box::default());
    tracing::subscriber::set_global_default(recorder).expect("the only subscriber");

    let db = TempDb::new("tracing_hygiene");
    let clock = ManualClock::new(Utc::now());
    let store = SqliteStore::open(&db.path).await.unwrap();
    let key = HashKey::from_hex(KEY_HEX).unwrap();
    let issuer = TokenIssuer::builder(CachedStore::new(store).coherent())
        .hash_key(key)
        .clock(clock.clone())
        .last_use_interval(Some(Duration::from_secs(1)))
        .prepare()
        .await
        .unwrap();
    let environment = EnvironmentId::from_uuid(Uuid::from_u128(0xe1));
    let scopes = [
        Scope::ENVIRONMENT_API_TOKENS_READ,
        Scope::ENVIRONMENT_API_TOKENS_WRITE,
    ];
    let mut raw = Vec::new();
    let mut hashes = Vec::new();

    // Issue, and delegate twice down.
    let admin = issuer
        .issue(
            environment,
            user(1),
            IssueRequest::new(Note::new(NOTE).unwrap()).with_scopes(scopes.clone()),
        )
        .await
        .unwrap();
    let admin_principal = issuer
        .authenticate(admin.raw.expose_secret())
        .await
        .unwrap();
    let child = issuer
        .issue(
            environment,
            Caller::from(&admin_principal),
            IssueRequest::new(Note::new(NOTE).unwrap()).with_scopes(scopes.clone()),
        )
        .await
        .unwrap();
    let child_principal = issuer
        .authenticate_header(&format!("Bearer {}", child.raw.expose_secret()))
        .await
        .unwrap();
    let grandchild = issuer
        .issue(
            environment,
            Caller::from(&child_principal),
            IssueRequest::new(Note::new(NOTE).unwrap())
                .with_scopes([Scope::ENVIRONMENT_API_TOKENS_READ])
                .expires_at(issuer.now() + TimeDelta::hours(1)),
        )
        .await
        .unwrap();
    let short = issuer
        .issue(
            environment,
            user(2),
            IssueRequest::new(Note::new(NOTE).unwrap())
                .expires_at(issuer.now() + TimeDelta::hours(1)),
        )
        .await
        .unwrap();
    // Refused: a scope it does not hold, and a token that does not exist.
    issuer
        .issue(
            environment,
            Caller::from(&child_principal),
            IssueRequest::new(Note::new(NOTE).unwrap())
                .with_scopes([Scope::new("environment.secrets.read").unwrap()]),
        )
        .await
        .unwrap_err();
    let unknown = TokenFormat::dynamic().generate(&mut rand::rng());
    // A client may send anything as a scope: a token too (refused, and not logged).
    issuer
        .issue(
            environment,
            user(1),
            IssueRequest::new(Note::new(NOTE).unwrap())
                .with_scopes([Scope::new(unknown.expose_secret()).unwrap()]),
        )
        .await
        .unwrap_err();
    issuer
        .authenticate(unknown.expose_secret())
        .await
        .unwrap_err();
    // Malformed: a real token with one character changed (a wrong checksum).
    let mut tampered = admin.raw.expose_secret().to_owned();
    tampered.replace_range(6..7, if &tampered[6..7] == "a" { "b" } else { "a" });
    issuer.authenticate(&tampered).await.unwrap_err();

    // Use, authorize and refuse, read, list; last use is written.
    for _ in 0..3 {
        clock.advance(TimeDelta::seconds(2));
        let principal = issuer
            .authorize(
                grandchild.raw.expose_secret(),
                environment,
                &[Scope::ENVIRONMENT_API_TOKENS_READ],
            )
            .await
            .unwrap();
        principal
            .authorize(environment, &[Scope::ENVIRONMENT_API_TOKENS_WRITE])
            .unwrap_err();
        principal
            .authorize(EnvironmentId::from_uuid(Uuid::from_u128(0xe2)), &[])
            .unwrap_err();
    }
    issuer
        .get(environment, &child_principal, grandchild.token.id)
        .await
        .unwrap();
    issuer
        .get(environment, &child_principal, admin.token.id)
        .await
        .unwrap_err();
    issuer
        .list(environment, PageRequest::first(10))
        .await
        .unwrap();

    // Rotate the child (its successor takes over), then revoke the successor: the child,
    // still in its grace period, and the grandchild go with it.
    let successor = issuer
        .rotate(
            environment,
            user(1),
            child.token.id,
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
    issuer
        .revoke(environment, user(1), successor.token.id)
        .await
        .unwrap();
    issuer
        .revoke(environment, user(1), successor.token.id)
        .await
        .unwrap();
    issuer
        .authenticate(child.raw.expose_secret())
        .await
        .unwrap_err();

    // A leak report naming the admin token, an unknown one and a stranger's string.
    let reported = format!(
        "{} {} ghp_notours",
        admin.raw.expose_secret(),
        unknown.expose_secret()
    );
    let leak = LeakDetails::new(LeakReporter::GitHub)
        .with_source("Commit")
        .with_url("https://example.com/leak");
    let outcomes = issuer
        .revoke_leaks(reported.split(' ').map(|s| (s, &leak)))
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0], LeakOutcome::Revoked(_)),
        "{outcomes:?}"
    );

    // An expired token, then a purge of everything ended.
    clock.advance(TimeDelta::hours(2));
    issuer
        .authenticate(short.raw.expose_secret())
        .await
        .unwrap_err();
    clock.advance(TimeDelta::days(100));
    let purged = issuer.purge(Duration::from_secs(86_400)).await.unwrap();
    assert!(purged.tokens >= 5, "{purged:?}");

    for issued in [&admin, &child, &grandchild, &successor, &short] {
        raw.push(issued.raw.expose_secret().to_owned());
        hashes.push(hex(issuer.hasher().hash_token(&issued.raw).as_bytes()));
    }
    raw.push(unknown.expose_secret().to_owned());
    raw.push(tampered);
    hashes.push(hex(issuer
        .hasher()
        .hash(unknown.expose_secret())
        .as_bytes()));
    drop(issuer);

    let lines = recorder.lines();
    let format = TokenFormat::dynamic();
    // The recording is a real one: the library's own events and spans are in it.
    for expected in [
        "apitoken.issue",
        "apitoken.authenticate",
        "apitoken.store",
        "apitoken.revoke",
        "apitoken.rotate",
        "token issued",
        "token revoked",
        "token rotated",
        "leaked token revoked",
        "purged",
        " outcome=ok",
        " outcome=unknown",
        " outcome=malformed",
        " outcome=revoked",
        " outcome=expired",
        "not authorized",
        "outside the caller's delegation",
    ] {
        assert!(
            lines.iter().any(|line| line.contains(expected)),
            "nothing recorded with {expected:?}: {lines:#?}"
        );
    }
    // The checks below find what they look for: a line holding a token fails them.
    let control = format!("event: token={}", raw[0]);
    assert_eq!(apitoken::scan::scan(&format, control.as_bytes()).count(), 1);

    for line in &lines {
        let found: Vec<_> = apitoken::scan::scan(&format, line.as_bytes()).collect();
        assert!(found.is_empty(), "a token in a recorded field: {line}");
        for secret in raw
            .iter()
            .map(|r| &r[4..r.len() - 6])
            .chain(hashes.iter().map(String::as_str))
        {
            for window in secret.as_bytes().windows(8) {
                let window = std::str::from_utf8(window).unwrap();
                assert!(!line.contains(window), "{window:?} of a secret in: {line}");
            }
        }
        for private in [NOTE, EMAIL, "example.com/leak"] {
            assert!(!line.contains(private), "{private:?} in: {line}");
        }
    }
    eprintln!(
        "{} spans and events recorded, none holds a secret",
        lines.len()
    );
    if std::env::var_os("APITOKEN_SHOW_TRACING").is_some() {
        for line in lines.iter().filter(|line| line.contains(" apitoken")) {
            eprintln!("{line}");
        }
    }
}
