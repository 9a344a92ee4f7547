//! The issuer's leak path, `TokenIssuer::revoke_leaked`, on the in-memory store with a
//! settable clock: what it says of each kind of string, what it revokes, what it logs, and
//! what `purge` forgets of it.

use apitoken::{
    Actor, CachedStore, Caller, Creator, EnvironmentId, Error, EventCursor, EventKind, HashKey,
    IssueRequest, IssuedToken, LeakDetails, LeakOutcome, LeakReporter, ManualClock, MemoryStore,
    Note, Scope, TokenIssuer, TokenStore, UserId,
};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

fn start() -> DateTime<Utc> {
    "2026-03-01T12:00:00.123456Z".parse().unwrap()
}

fn env(n: u128) -> EnvironmentId {
    EnvironmentId::from_uuid(Uuid::from_u128(n))
}

fn alice() -> Creator {
    Creator::new(UserId::from_uuid(Uuid::from_u128(0xa11ce)))
}

fn request(note: &str) -> IssueRequest {
    IssueRequest::new(Note::new(note).unwrap()).with_scopes([
        Scope::ENVIRONMENT_API_TOKENS_READ,
        Scope::ENVIRONMENT_API_TOKENS_WRITE,
    ])
}

fn github() -> LeakDetails {
    LeakDetails::new(LeakReporter::GitHub)
        .with_source("Commit")
        .with_url("https://github.com/octo/app/blob/1a2b/.env")
        .with_token_type("dynamic_api_token")
}

struct Setup {
    issuer: TokenIssuer<Arc<MemoryStore>>,
    store: Arc<MemoryStore>,
    clock: ManualClock,
}

fn setup() -> Setup {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(start());
    let issuer = TokenIssuer::builder(store.clone())
        .clock(clock.clone())
        .build();
    Setup {
        issuer,
        store,
        clock,
    }
}

impl Setup {
    async fn issue(&self, environment: EnvironmentId, note: &str) -> IssuedToken {
        self.issuer
            .issue(environment, alice(), request(note))
            .await
            .unwrap()
    }

    /// Issues a token created by `creator` (delegated).
    async fn delegate(&self, creator: &IssuedToken, note: &str) -> IssuedToken {
        let principal = self
            .issuer
            .authenticate(creator.raw.expose_secret())
            .await
            .unwrap();
        self.issuer
            .issue(
                creator.token.environment,
                Caller::Token(principal),
                request(note),
            )
            .await
            .unwrap()
    }

    async fn events(&self) -> Vec<apitoken::Event> {
        self.store
            .events_since(None, EventCursor::START, 1000)
            .await
            .unwrap()
            .events
    }
}

#[tokio::test]
async fn a_live_token_is_revoked_with_its_cascade_and_logged_as_leaked() {
    let s = setup();
    let root = s.issue(env(1), "root").await;
    let child = s.delegate(&root, "child").await;
    let other = s.issue(env(1), "unrelated").await;
    let elsewhere = s.issue(env(2), "another environment").await;

    let outcome = s
        .issuer
        .revoke_leaked(child.raw.expose_secret(), &github())
        .await
        .unwrap();
    let LeakOutcome::Revoked(revoked) = &outcome else {
        panic!("a live token is revoked now: {outcome:?}");
    };
    assert_eq!(revoked.token.id, child.token.id);
    assert!(revoked.cascade.is_empty());
    assert!(outcome.is_ours());
    assert_eq!(outcome.name(), "revoked");

    // Its creator and the others are untouched; a leak of the creator takes the child's
    // siblings too, in any environment the leaked token lives in.
    for live in [&root, &other, &elsewhere] {
        s.issuer
            .authenticate(live.raw.expose_secret())
            .await
            .unwrap();
    }
    let sibling = s.delegate(&root, "sibling").await;
    let outcome = s
        .issuer
        .revoke_leaked(root.raw.expose_secret(), &github())
        .await
        .unwrap();
    let LeakOutcome::Revoked(revoked) = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(revoked.cascade, vec![sibling.token.id]);
    for dead in [&root, &child, &sibling] {
        assert!(matches!(
            s.issuer.authenticate(dead.raw.expose_secret()).await,
            Err(Error::Revoked { .. })
        ));
    }
    let outcome = s
        .issuer
        .revoke_leaked(elsewhere.raw.expose_secret(), &github())
        .await
        .unwrap();
    assert!(matches!(outcome, LeakOutcome::Revoked(_)), "{outcome:?}");

    let leaks: Vec<_> = s
        .events()
        .await
        .into_iter()
        .filter(|e| e.kind.revokes())
        .map(|e| (e.token, e.kind, e.actor, e.leak))
        .collect();
    assert_eq!(
        leaks,
        vec![
            (
                child.token.id,
                EventKind::Leaked,
                Actor::Reporter,
                Some(github())
            ),
            (
                root.token.id,
                EventKind::Leaked,
                Actor::Reporter,
                Some(github())
            ),
            (
                sibling.token.id,
                EventKind::Revoked {
                    cause: Some(root.token.id)
                },
                Actor::Reporter,
                None
            ),
            (
                elsewhere.token.id,
                EventKind::Leaked,
                Actor::Reporter,
                Some(github())
            ),
        ]
    );
}

#[tokio::test]
async fn the_same_report_twice_changes_nothing_the_second_time() {
    let s = setup();
    let token = s.issue(env(1), "ci").await;
    let first = s
        .issuer
        .revoke_leaked(token.raw.expose_secret(), &github())
        .await
        .unwrap();
    assert!(matches!(first, LeakOutcome::Revoked(_)));
    let events = s.events().await;
    s.clock.advance(TimeDelta::seconds(5));

    let second = s
        .issuer
        .revoke_leaked(token.raw.expose_secret(), &github())
        .await
        .unwrap();
    let LeakOutcome::AlreadyRevoked(record) = &second else {
        panic!("reported again, it is already revoked: {second:?}");
    };
    assert_eq!(
        record.revoked_at,
        Some(start()),
        "the first revocation's time stays"
    );
    assert!(second.is_ours());
    assert_eq!(
        s.events().await,
        events,
        "nothing is logged the second time"
    );

    // Revoked by its owner before the report: the same answer.
    let revoked = s.issue(env(1), "revoked by its owner").await;
    s.issuer
        .revoke(env(1), Caller::User(Arc::new(alice())), revoked.token.id)
        .await
        .unwrap();
    let outcome = s
        .issuer
        .revoke_leaked(revoked.raw.expose_secret(), &github())
        .await
        .unwrap();
    assert!(
        matches!(outcome, LeakOutcome::AlreadyRevoked(_)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_expired_token_is_ours_and_left_as_it_is() {
    let s = setup();
    let short = s
        .issuer
        .issue(
            env(1),
            alice(),
            request("short").expires_at(start() + TimeDelta::minutes(1)),
        )
        .await
        .unwrap();
    s.clock.advance(TimeDelta::minutes(2));
    let events = s.events().await;
    let outcome = s
        .issuer
        .revoke_leaked(short.raw.expose_secret(), &github())
        .await
        .unwrap();
    let LeakOutcome::Expired(token) = &outcome else {
        panic!("an expired token is reported expired: {outcome:?}");
    };
    assert_eq!(token.id, short.token.id);
    assert!(token.active, "an expired token is not revoked");
    assert!(outcome.is_ours());
    assert_eq!(s.events().await, events);
}

#[tokio::test]
async fn strings_that_are_not_our_live_tokens_change_nothing() {
    let s = setup();
    let token = s.issue(env(1), "ci").await;
    let raw = token.raw.expose_secret();
    let events = s.events().await;

    // Another issuer (another store, another hash key) issued it: well formed, unknown.
    let other = TokenIssuer::builder(MemoryStore::new())
        .hash_key(HashKey::from_hex(&"ab".repeat(32)).unwrap())
        .build();
    let foreign = other
        .issue(env(1), alice(), request("foreign"))
        .await
        .unwrap();
    assert_eq!(
        s.issuer
            .revoke_leaked(foreign.raw.expose_secret(), &github())
            .await
            .unwrap(),
        LeakOutcome::Unknown
    );
    let keyed_elsewhere = other.revoke_leaked(raw, &github()).await.unwrap();
    assert_eq!(keyed_elsewhere, LeakOutcome::Unknown);

    // A changed character breaks the checksum: not ours. So are other formats and junk.
    let mut flipped = raw.to_owned();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'a' { 'b' } else { 'a' });
    for reported in [
        flipped.as_str(),
        "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
        "",
        "dyn_",
        &format!(" {raw}"),
        &"dyn_".repeat(10_000),
        "dyn_\u{0}\u{ffff}",
    ] {
        let outcome = s.issuer.revoke_leaked(reported, &github()).await.unwrap();
        assert_eq!(outcome, LeakOutcome::NotOurs, "{reported:.40}");
        assert!(!outcome.is_ours());
        assert_eq!(outcome.token(), None);
    }
    s.issuer.authenticate(raw).await.unwrap();
    assert_eq!(s.events().await, events, "nothing was logged");
}

#[tokio::test]
async fn a_coherent_cache_in_front_stops_accepting_the_leaked_token_at_once() {
    let clock = ManualClock::new(start());
    let store = CachedStore::new(MemoryStore::new())
        .coherent()
        .clock(clock.clone());
    let issuer = TokenIssuer::builder(store).clock(clock).build();
    let token = issuer.issue(env(1), alice(), request("ci")).await.unwrap();
    issuer
        .authenticate(token.raw.expose_secret())
        .await
        .unwrap(); // cached now
    let outcome = issuer
        .revoke_leaked(token.raw.expose_secret(), &github())
        .await
        .unwrap();
    assert!(matches!(outcome, LeakOutcome::Revoked(_)));
    assert!(matches!(
        issuer.authenticate(token.raw.expose_secret()).await,
        Err(Error::Revoked { .. })
    ));
}

#[tokio::test]
async fn purge_forgets_what_the_reporter_said_after_the_leak_retention() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(start());
    let issuer = TokenIssuer::builder(store.clone())
        .clock(clock.clone())
        .leak_retention(Duration::from_secs(7 * 86_400))
        .event_retention(Duration::from_secs(365 * 86_400))
        .build();
    let old = issuer.issue(env(1), alice(), request("old")).await.unwrap();
    issuer
        .revoke_leaked(old.raw.expose_secret(), &github())
        .await
        .unwrap();
    clock.advance(TimeDelta::days(6));
    let recent = issuer
        .issue(env(1), alice(), request("recent"))
        .await
        .unwrap();
    issuer
        .revoke_leaked(recent.raw.expose_secret(), &github())
        .await
        .unwrap();
    clock.advance(TimeDelta::days(2));

    let purged = issuer
        .purge(Duration::from_secs(365 * 86_400))
        .await
        .unwrap();
    assert_eq!(purged.leak_details, 1, "{purged:?}");
    assert_eq!(purged.events, 0);
    let leaks: Vec<_> = store
        .events_since(None, EventCursor::START, 100)
        .await
        .unwrap()
        .events
        .into_iter()
        .filter_map(|e| e.leak.map(|leak| (e.token, leak)))
        .collect();
    assert_eq!(
        leaks,
        vec![
            (old.token.id, LeakDetails::new(LeakReporter::GitHub)),
            (recent.token.id, github()),
        ],
        "the old leak keeps its reporter only; the recent one keeps everything"
    );
    let again = issuer
        .purge(Duration::from_secs(365 * 86_400))
        .await
        .unwrap();
    assert_eq!(again.leak_details, 0);
}

#[test]
fn leak_details_are_bounded_and_never_empty_strings() {
    let long = "é".repeat(LeakDetails::MAX_URL_LEN);
    let leak = LeakDetails::new(LeakReporter::Operator)
        .with_url(long)
        .with_source("")
        .with_token_type("t".repeat(1000));
    let url = leak.url.as_deref().unwrap();
    assert!(url.len() <= LeakDetails::MAX_URL_LEN && url.len() > LeakDetails::MAX_URL_LEN - 2);
    assert!(url.chars().all(|c| c == 'é'));
    assert_eq!(leak.source, None);
    assert_eq!(
        leak.token_type.as_ref().map(String::len),
        Some(LeakDetails::MAX_SOURCE_LEN)
    );
    for reporter in [
        LeakReporter::GitHub,
        LeakReporter::GitLab,
        LeakReporter::Public,
        LeakReporter::Operator,
    ] {
        assert_eq!(LeakReporter::from_name(reporter.name()), Some(reporter));
    }
    assert_eq!(LeakReporter::from_name("GitHub"), None);
}

#[tokio::test]
async fn a_report_is_answered_in_order_and_a_token_named_twice_is_revoked_once() {
    let s = setup();
    let live = s.issue(env(1), "live").await;
    let child = s.delegate(&live, "child").await;
    let revoked = s.issue(env(1), "revoked").await;
    s.issuer
        .revoke(env(1), Caller::User(Arc::new(alice())), revoked.token.id)
        .await
        .unwrap();
    let elsewhere = s.issue(env(2), "elsewhere").await;
    let head = s.store.event_head().await.unwrap();
    let (first, second) = (
        github(),
        LeakDetails::new(LeakReporter::GitHub).with_url("https://github.com/second"),
    );
    let reports = [
        (live.raw.expose_secret(), &first),
        ("not a token", &first),
        (revoked.raw.expose_secret(), &first),
        (live.raw.expose_secret(), &second),
        (elsewhere.raw.expose_secret(), &second),
    ];
    let outcomes = s.issuer.revoke_leaks(reports).await.unwrap();
    let names: Vec<_> = outcomes.iter().map(LeakOutcome::name).collect();
    assert_eq!(
        names,
        [
            "revoked",
            "not_ours",
            "already_revoked",
            "already_revoked",
            "revoked"
        ]
    );
    let LeakOutcome::Revoked(done) = &outcomes[0] else {
        unreachable!()
    };
    assert_eq!(done.cascade, vec![child.token.id]);
    let logged: Vec<_> = s
        .store
        .events_since(None, head, 100)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.token, e.kind, e.leak))
        .collect();
    assert_eq!(
        logged,
        vec![
            (live.token.id, EventKind::Leaked, Some(first.clone())),
            (
                child.token.id,
                EventKind::Revoked {
                    cause: Some(live.token.id)
                },
                None
            ),
            (elsewhere.token.id, EventKind::Leaked, Some(second.clone())),
        ],
        "each live token is revoked and logged once, with the report that named it first"
    );
    assert!(s.issuer.revoke_leaks([]).await.unwrap().is_empty());
}
