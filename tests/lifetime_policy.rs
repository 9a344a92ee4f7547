//! Lifetime policies (maximum lifetime, required expiry, idle expiry) on every store:
//! memory, SQLite, PostgreSQL, and a cache in front of memory.
#![cfg(all(feature = "sqlite", feature = "postgres", feature = "conformance"))]

mod support;

use apitoken::conformance::new_environment;
use apitoken::{
    CachedStore, Caller, Creator, EnvironmentId, Error, IssueRequest, LifetimePolicy, ManualClock,
    MemoryStore, Note, PageRequest, PolicyError, PostgresStore, SqliteStore, TokenIssuer,
    TokenStore, UserId,
};
use chrono::{DateTime, TimeDelta, Utc};
use std::time::Duration;
use support::{TempDb, postgres_url, unique_name, with_cleanup};
use uuid::Uuid;

const DAY: Duration = Duration::from_secs(86_400);

/// A whole millisecond, so that a token's creation read from its id is exact.
fn start() -> DateTime<Utc> {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

fn alice() -> Caller {
    Caller::from(Creator::new(UserId::from_uuid(Uuid::from_u128(0xa11ce))))
}

fn request(note: &str) -> IssueRequest {
    IssueRequest::new(Note::new(note).unwrap())
}

/// The latest instant an `InvalidExpiry` names, after checking its HTTP answer.
fn refused_expiry(
    result: Result<apitoken::IssuedToken, Error>,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let err = result.expect_err("the policy refuses it");
    assert_eq!(apitoken::http::status(&err), 422, "{err:?}");
    assert_eq!(apitoken::http::code(&err), Some("invalid_expires_at"));
    match err {
        Error::InvalidExpiry {
            expires_at, latest, ..
        } => (expires_at, latest),
        other => panic!("expected InvalidExpiry, got {other:?}"),
    }
}

/// Everything the policy decides, on `store`. `strict` has a 90-day maximum and a
/// 30-day idle expiry; `required` requires an expiry without a maximum; any other
/// environment has no policy.
async fn the_policy_holds<S: TokenStore + Clone>(store: S) {
    let clock = ManualClock::new(start());
    let (strict, required, free) = (new_environment(), new_environment(), new_environment());
    let policy = LifetimePolicy::default()
        .max_lifetime(90 * DAY)
        .idle_expiry(30 * DAY);
    let issuer = TokenIssuer::builder(store.clone())
        .clock(clock.clone())
        .environment_lifetime_policy(strict, policy)
        .environment_lifetime_policy(required, LifetimePolicy::default().require_expiry(true))
        .try_build()
        .unwrap();
    // The same store without a policy: tokens from before the policy.
    let before = TokenIssuer::builder(store.clone())
        .clock(clock.clone())
        .build();
    let t0 = issuer.now();

    // Maximum lifetime: later, or none, is refused naming the latest allowed instant.
    let (asked, latest) = refused_expiry(
        issuer
            .issue(strict, alice(), request("long").expires_at(t0 + days(91)))
            .await,
    );
    assert_eq!((asked, latest), (Some(t0 + days(91)), Some(t0 + days(90))));
    let (asked, latest) = refused_expiry(issuer.issue(strict, alice(), request("never")).await);
    assert_eq!((asked, latest), (None, Some(t0 + days(90))));
    let ok = issuer
        .issue(
            strict,
            alice(),
            request("90 days").expires_at(t0 + days(90)),
        )
        .await
        .unwrap();
    assert_eq!(ok.token.expires_at, Some(t0 + days(90)));
    // Required without a maximum: none is refused, any future time accepted.
    let (asked, latest) = refused_expiry(issuer.issue(required, alice(), request("never")).await);
    assert_eq!((asked, latest), (None, None));
    issuer
        .issue(
            required,
            alice(),
            request("a year").expires_at(t0 + days(365)),
        )
        .await
        .unwrap();
    // Other environments are not bound.
    issuer.issue(free, alice(), request("never")).await.unwrap();

    // Delegation obeys the policy: the creator's expiry and the maximum bound it.
    let old = before
        .issue(strict, alice(), request("from before the policy"))
        .await
        .unwrap();
    let old_caller = issuer.authenticate(old.raw.expose_secret()).await.unwrap();
    let (asked, latest) = refused_expiry(issuer.issue(strict, &old_caller, request("child")).await);
    assert_eq!((asked, latest), (None, Some(t0 + days(90))));
    clock.advance(days(1));
    let t1 = issuer.now();
    let caller = issuer.authenticate(ok.raw.expose_secret()).await.unwrap();
    let (_, latest) = refused_expiry(
        issuer
            .issue(strict, &caller, request("child").expires_at(t1 + days(90)))
            .await,
    );
    assert_eq!(
        latest,
        Some(t0 + days(90)),
        "the creator's expiry is earlier"
    );
    let child = issuer
        .issue(strict, &caller, request("child"))
        .await
        .unwrap();
    assert_eq!(child.token.expires_at, Some(t0 + days(90)));

    // Rotation: the successor's expiry is capped at the maximum from now.
    let successor = issuer
        .rotate(strict, alice(), old.token.id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(successor.token.expires_at, Some(t1 + days(90)));
    // Required without a maximum: a token that never expires has no compliant successor.
    let never = before
        .issue(required, alice(), request("never"))
        .await
        .unwrap();
    let (asked, latest) = refused_expiry(
        issuer
            .rotate(required, alice(), never.token.id, Duration::from_secs(60))
            .await,
    );
    assert_eq!((asked, latest), (None, None));

    // Idle expiry (30 days). `used` is used just before it would go idle, and again.
    let used = issuer
        .issue(strict, alice(), request("used").expires_at(t1 + days(90)))
        .await
        .unwrap();
    clock.set(t1 + days(30) - TimeDelta::milliseconds(1));
    issuer.authenticate(used.raw.expose_secret()).await.unwrap();
    // `third` is never used.
    let third = issuer
        .issue(strict, alice(), request("third").expires_at(t1 + days(90)))
        .await
        .unwrap();
    let third_created = third.token.created_at;
    clock.set(third_created + days(29));
    let used_at = issuer.now();
    issuer.authenticate(used.raw.expose_secret()).await.unwrap();
    clock.set(third_created + days(30));
    let now = issuer.now();
    let err = issuer
        .authenticate(third.raw.expose_secret())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Expired { id, expired_at } if id == third.token.id && expired_at == third_created + days(30)),
        "{err:?}"
    );
    assert!(err.is_unauthenticated());
    // Refused without a write: the record has no last use still.
    let record = store.get(strict, third.token.id).await.unwrap().unwrap();
    assert_eq!(record.last_used_at, None, "nothing written when refused");
    assert!(record.active, "the record is not changed");
    // Shown as expired, at the instant it went idle.
    let shown = issuer.as_of(
        issuer.get(strict, alice(), third.token.id).await.unwrap(),
        now,
    );
    assert!(!shown.active);
    assert_eq!(shown.expires_at, Some(third_created + days(30)));
    assert_eq!(shown.revoked_at, None);
    // A token in use is shown with its own expiry.
    let shown = issuer.as_of(
        issuer.get(strict, alice(), used.token.id).await.unwrap(),
        now,
    );
    assert!(shown.active);
    assert_eq!(shown.expires_at, Some(t1 + days(90)));
    assert_eq!(shown.last_used_at, Some(used_at));
    issuer.authenticate(used.raw.expose_secret()).await.unwrap();

    // A live listing leaves the idle token out; a listing of all keeps it.
    let live = issuer
        .list(strict, PageRequest::first(100).live_at(now))
        .await
        .unwrap();
    let ids: Vec<_> = live.tokens.iter().map(|t| t.id).collect();
    assert!(ids.contains(&used.token.id));
    assert!(!ids.contains(&third.token.id), "an idle token is not live");
    assert!(
        !ids.contains(&ok.token.id),
        "unused since day 1: idle, though it expires on day 90"
    );
    let all = issuer.list(strict, PageRequest::first(100)).await.unwrap();
    assert!(all.tokens.iter().any(|t| t.id == third.token.id));
    // Without the policy, the same token is live.
    assert!(before.authenticate(third.raw.expose_secret()).await.is_ok());
}

#[tokio::test]
async fn memory_store_obeys_the_lifetime_policy() {
    the_policy_holds(std::sync::Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn cached_store_obeys_the_lifetime_policy() {
    the_policy_holds(std::sync::Arc::new(CachedStore::new(MemoryStore::new()))).await;
}

#[tokio::test]
async fn sqlite_store_obeys_the_lifetime_policy() {
    let db = TempDb::new("lifetime_policy");
    let store = SqliteStore::open(&db.path).await.unwrap();
    store
        .prepare(apitoken::KeyFingerprint::Unkeyed)
        .await
        .unwrap();
    the_policy_holds(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_store_obeys_the_lifetime_policy() {
    let Some(url) = postgres_url("postgres_store_obeys_the_lifetime_policy") else {
        return;
    };
    let admin = PostgresStore::connect(&url).await.unwrap();
    let name = unique_name("apitoken_lifetime");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(admin.pool())
        .await
        .unwrap();
    let options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&url)
        .unwrap()
        .options([("search_path", name.as_str())]);
    let body = async {
        let store = PostgresStore::connect_with(options, PostgresStore::pool_options())
            .await
            .unwrap();
        store
            .prepare(apitoken::KeyFingerprint::Unkeyed)
            .await
            .unwrap();
        the_policy_holds(store.clone()).await;
        store.close().await;
    };
    with_cleanup(body, async {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
            .execute(admin.pool())
            .await
            .unwrap();
    })
    .await;
}

/// The builder's checked steps refuse a policy that does not hold together; `build`
/// applies it as given.
#[tokio::test]
async fn an_inconsistent_policy_is_refused_with_what_to_do() {
    let short = LifetimePolicy::default().idle_expiry(Duration::from_secs(300));
    let err = TokenIssuer::builder(MemoryStore::new())
        .lifetime_policy(short)
        .try_build()
        .unwrap_err();
    assert!(
        matches!(err, PolicyError::IdleExpiryTooShort { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("lengthen the idle expiry"),
        "{err}"
    );
    // A shorter last-use interval makes it fit.
    TokenIssuer::builder(MemoryStore::new())
        .last_use_interval(Some(Duration::from_secs(30)))
        .lifetime_policy(short)
        .try_build()
        .unwrap();
    let zero = LifetimePolicy::default().max_lifetime(Duration::ZERO);
    let err = TokenIssuer::builder(MemoryStore::new())
        .environment_lifetime_policy(EnvironmentId::from_uuid(Uuid::nil()), zero)
        .prepare()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidPolicy(PolicyError::ZeroMaxLifetime)),
        "{err:?}"
    );
}
