//! The issuer's whole lifecycle on `MemoryStore` with a settable clock.

use apitoken::StoreError;
use apitoken::http::UNAUTHORIZED_MESSAGE;
use apitoken::{
    Caller, Clock, Creator, EnvironmentId, Error, HashKey, IssueRequest, ManualClock, MemoryStore,
    Note, PageRequest, Principal, Scope, ScopeCatalog, Scopes, Token, TokenIssuer, TokenStore,
    UserId,
};
use chrono::{DateTime, TimeDelta, Utc};
use rand::SeedableRng;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::Counting;
use uuid::Uuid;

mod support;

fn start() -> DateTime<Utc> {
    "2026-03-01T12:00:00.123456Z".parse().unwrap()
}

fn env(n: u128) -> EnvironmentId {
    EnvironmentId::from_uuid(Uuid::from_u128(n))
}

fn alice() -> Creator {
    Creator {
        alias: Some("alice".into()),
        email: Some("alice@example.com".into()),
        ..Creator::new(UserId::from_uuid(Uuid::from_u128(0xa11ce)))
    }
}

fn request(note: &str, scopes: impl Into<Scopes>) -> IssueRequest {
    IssueRequest::new(Note::new(note).unwrap()).with_scopes(scopes)
}

struct Setup {
    issuer: TokenIssuer<Arc<Counting>>,
    store: Arc<Counting>,
    clock: ManualClock,
}

fn setup_with(
    configure: impl FnOnce(
        apitoken::TokenIssuerBuilder<Arc<Counting>>,
    ) -> apitoken::TokenIssuerBuilder<Arc<Counting>>,
) -> Setup {
    let store = Arc::new(Counting::default());
    let clock = ManualClock::new(start());
    let issuer = configure(
        TokenIssuer::builder(store.clone())
            .clock(clock.clone())
            .rng(rand::rngs::StdRng::seed_from_u64(7)),
    )
    .build();
    Setup {
        issuer,
        store,
        clock,
    }
}

fn setup() -> Setup {
    setup_with(|b| b)
}

/// Issues a token for Alice in environment 1 and authenticates it: a token caller.
async fn issue_caller(s: &Setup, request: IssueRequest) -> (apitoken::IssuedToken, Principal) {
    let issued = s.issuer.issue(env(1), alice(), request).await.unwrap();
    let principal = s
        .issuer
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap();
    (issued, principal)
}

#[tokio::test]
async fn issue_then_authenticate_in_every_presentation() {
    let s = setup();
    let issued = s
        .issuer
        .issue(
            env(1),
            alice(),
            request("deploys", [Scope::ENVIRONMENT_USERS_READ]),
        )
        .await
        .unwrap();
    let secret = issued.raw.expose_secret();
    assert!(secret.starts_with("dyn_") && secret.len() == 40);
    assert_eq!(issued.token.checksum, issued.raw.checksum());
    assert_eq!(issued.token.created_at, start());
    assert_eq!(issued.token.id.as_uuid().get_version_num(), 7);
    assert_eq!(
        issued.token.created_by.email.as_deref(),
        Some("alice@example.com")
    );

    let headers = [
        format!("Bearer {secret}"),
        format!("bearer {secret}"),
        format!("  BEARER   {secret} \r\n"),
        format!("Bearer\t{secret}\n"),
    ];
    let mut answers = vec![s.issuer.authenticate(secret).await.unwrap()];
    for header in &headers {
        answers.push(s.issuer.authenticate_header(header).await.unwrap());
    }
    for who in answers {
        assert_eq!(who.token_id(), issued.token.id);
        assert_eq!(who.environment(), env(1));
        assert_eq!(who.scopes(), &Scopes::from([Scope::ENVIRONMENT_USERS_READ]));
        assert_eq!(who.expires_at(), None);
    }
    // A token is taken as it is; a header value needs its scheme.
    for (token, header) in [
        (format!("Bearer {secret}"), secret.to_owned()),
        (format!("\t{secret}\n"), format!("Basic {secret}")),
    ] {
        let err = s.issuer.authenticate(&token).await.unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err:?}");
        let err = s.issuer.authenticate_header(&header).await.unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err:?}");
    }
    assert_eq!(s.store.inner.len(), 1);
    let stored = s
        .store
        .inner
        .find_by_hash(&s.issuer.hasher().hash(secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored,
        s.issuer
            .get(env(1), support::operator(), issued.token.id)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn authorize_checks_environment_and_every_scope() {
    let s = setup();
    let scopes = [
        Scope::ENVIRONMENT_API_TOKENS_READ,
        Scope::ENVIRONMENT_USERS_READ,
    ];
    let issued = s
        .issuer
        .issue(env(1), alice(), request("x", scopes))
        .await
        .unwrap();
    let secret = issued.raw.expose_secret();

    s.issuer.authorize(secret, env(1), &[]).await.unwrap();
    s.issuer
        .authorize(
            secret,
            env(1),
            &[
                Scope::ENVIRONMENT_USERS_READ,
                Scope::ENVIRONMENT_API_TOKENS_READ,
            ],
        )
        .await
        .unwrap();

    let err = s.issuer.authorize(secret, env(2), &[]).await.unwrap_err();
    assert!(matches!(err, Error::WrongEnvironment { requested, .. } if requested == env(2)));
    assert_eq!(apitoken::http::status(&err), 403);
    assert!(err.is_forbidden());

    let err = s
        .issuer
        .authorize(
            secret,
            env(1),
            &[
                Scope::ENVIRONMENT_USERS_READ,
                Scope::ENVIRONMENT_USERS_WRITE,
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::MissingScope { scope, .. } if *scope == Scope::ENVIRONMENT_USERS_WRITE)
    );
    assert_eq!(apitoken::http::status(&err), 403);
    assert_eq!(
        apitoken::http::public_message(&err),
        format!(
            "token {} lacks the scope `environment.users.write` this operation requires",
            issued.token.id
        )
    );
}

#[tokio::test]
async fn tokens_expire_at_their_expiry() {
    let s = setup();
    let expires_at = start() + TimeDelta::hours(1);
    let issued = s
        .issuer
        .issue(env(1), alice(), request("short", []).expires_at(expires_at))
        .await
        .unwrap();
    let secret = issued.raw.expose_secret();
    s.clock.advance(TimeDelta::minutes(59));
    assert_eq!(
        s.issuer.authenticate(secret).await.unwrap().expires_at(),
        Some(expires_at)
    );
    s.clock.set(expires_at);
    let err = s.issuer.authenticate(secret).await.unwrap_err();
    assert!(matches!(err, Error::Expired { expired_at, .. } if expired_at == expires_at));
    assert_eq!(apitoken::http::status(&err), 401);
}

/// A clock that counts its reads; clones share the count.
#[derive(Clone, Debug)]
struct CountedClock {
    inner: ManualClock,
    reads: Arc<AtomicUsize>,
}

impl Clock for CountedClock {
    fn now(&self) -> DateTime<Utc> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.now()
    }
}

#[tokio::test]
async fn the_clock_is_read_only_when_the_answer_depends_on_it() {
    let clock = CountedClock {
        inner: ManualClock::new(start()),
        reads: Arc::default(),
    };
    let issuer = TokenIssuer::builder(MemoryStore::new())
        .clock(clock.clone())
        .last_use_interval(None)
        .build();
    let forever = issuer
        .issue(env(1), alice(), request("forever", []))
        .await
        .unwrap();
    let expires_at = start() + TimeDelta::hours(1);
    let hour = issuer
        .issue(
            env(1),
            alice(),
            request("an hour", []).expires_at(expires_at),
        )
        .await
        .unwrap();
    let reads = || clock.reads.load(Ordering::SeqCst);

    // No expiry and no last-use tracking: nothing to compare the time with.
    let before = reads();
    issuer
        .authenticate(forever.raw.expose_secret())
        .await
        .unwrap();
    assert_eq!(reads(), before);

    // An expiry is still enforced without last-use tracking.
    issuer.authenticate(hour.raw.expose_secret()).await.unwrap();
    assert_eq!(reads(), before + 1);
    clock.inner.set(expires_at);
    let err = issuer
        .authenticate(hour.raw.expose_secret())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Expired { expired_at, .. } if expired_at == expires_at));

    // A revoked token is refused before the clock is read, expired or not.
    issuer
        .revoke(env(1), support::operator(), hour.token.id)
        .await
        .unwrap();
    let before = reads();
    let err = issuer
        .authenticate(hour.raw.expose_secret())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Revoked { .. }), "{err:?}");
    assert_eq!(reads(), before);
}

#[tokio::test]
async fn expiry_must_be_in_the_future() {
    let s = setup();
    for at in [start(), start() - TimeDelta::seconds(1)] {
        let err = s
            .issuer
            .issue(env(1), alice(), request("x", []).expires_at(at))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidExpiry { .. }), "{err:?}");
        assert_eq!(apitoken::http::status(&err), 422);
    }
    assert!(s.store.inner.is_empty(), "nothing stored on failure");
}

/// A token creates tokens that expire no later than it: its own expiry when none is
/// asked for, a refusal naming the latest allowed instant for a later one; a token that
/// never expires delegates without a bound. The creating token is recorded.
#[tokio::test]
async fn delegated_tokens_expire_no_later_than_their_creator() {
    let s = setup();
    let end = start() + TimeDelta::hours(1);
    let write = [Scope::ENVIRONMENT_API_TOKENS_WRITE];
    let (parent, principal) =
        issue_caller(&s, request("parent", write.clone()).expires_at(end)).await;
    let child = s
        .issuer
        .issue(env(1), &principal, request("child", write.clone()))
        .await
        .unwrap();
    assert_eq!(
        child.token.expires_at,
        Some(end),
        "no expiry asked: the creator's"
    );
    assert_eq!(child.token.created_by_token, Some(parent.token.id));
    let sooner = start() + TimeDelta::minutes(5);
    let short = s
        .issuer
        .issue(env(1), &principal, request("short", []).expires_at(sooner))
        .await
        .unwrap();
    assert_eq!(
        short.token.expires_at,
        Some(sooner),
        "an earlier expiry is kept"
    );
    let stored = s.store.inner.len();
    for later in [
        end + TimeDelta::microseconds(1),
        start() + TimeDelta::days(3650),
    ] {
        let err = s
            .issuer
            .issue(env(1), &principal, request("longer", []).expires_at(later))
            .await
            .unwrap_err();
        match &err {
            Error::InvalidExpiry {
                expires_at, latest, ..
            } => {
                assert_eq!(*expires_at, Some(later));
                assert_eq!(*latest, Some(end));
            }
            other => panic!("expected InvalidExpiry, got {other:?}"),
        }
        assert_eq!(apitoken::http::code(&err), Some("invalid_expires_at"));
        assert!(err.to_string().contains("creating token"), "{err}");
    }
    assert_eq!(s.store.inner.len(), stored, "nothing stored on refusal");

    // A creator that never expires bounds nothing.
    let (_, principal) = issue_caller(&s, request("forever", write)).await;
    let far = start() + TimeDelta::days(3650);
    let child = s
        .issuer
        .issue(env(1), &principal, request("far", []).expires_at(far))
        .await
        .unwrap();
    assert_eq!(child.token.expires_at, Some(far));
}

/// A creator revoked after it authenticated creates nothing: the store checks it in the
/// same step as the insert, and the answer is a 401.
#[tokio::test]
async fn a_creator_revoked_meanwhile_creates_nothing() {
    let s = setup();
    let (parent, principal) = issue_caller(&s, request("parent", [])).await;
    s.issuer
        .revoke(env(1), support::operator(), parent.token.id)
        .await
        .unwrap();
    let stored = s.store.inner.len();
    let err = s
        .issuer
        .issue(env(1), &principal, request("late", []))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Revoked { id, .. } if id == parent.token.id),
        "{err:?}"
    );
    assert_eq!(apitoken::http::status(&err), 401);
    assert_eq!(s.store.inner.len(), stored);
}

/// Rotating a delegated token replaces its secret but never extends it past the end it
/// had, and the successor keeps the creating token.
#[tokio::test]
async fn rotating_a_delegated_token_keeps_its_end() {
    let s = setup();
    let end = start() + TimeDelta::hours(1);
    let (parent, principal) = issue_caller(&s, request("parent", []).expires_at(end)).await;
    let child = s
        .issuer
        .issue(env(1), &principal, request("child", []))
        .await
        .unwrap();
    s.clock.advance(TimeDelta::minutes(30));
    let successor = s
        .issuer
        .rotate(env(1), support::operator(), child.token.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(successor.token.expires_at, Some(end), "not now + 1 hour");
    assert_eq!(successor.token.created_by_token, Some(parent.token.id));
    s.issuer
        .revoke(env(1), support::operator(), parent.token.id)
        .await
        .unwrap();
    assert!(matches!(
        s.issuer.authenticate(successor.raw.expose_secret()).await,
        Err(Error::Revoked { .. })
    ));
}

#[tokio::test]
async fn revoked_tokens_never_authenticate_again() {
    let s = setup();
    let issued = s
        .issuer
        .issue(env(1), alice(), request("x", []))
        .await
        .unwrap();
    let secret = issued.raw.expose_secret();
    s.issuer.authenticate(secret).await.unwrap();
    s.clock.advance(TimeDelta::seconds(5));
    let revoked = s
        .issuer
        .revoke(env(1), support::operator(), issued.token.id)
        .await
        .unwrap();
    assert!(!revoked.token.active);
    assert_eq!(
        revoked.token.revoked_at,
        Some(start() + TimeDelta::seconds(5))
    );
    let err = s.issuer.authenticate(secret).await.unwrap_err();
    assert!(matches!(err, Error::Revoked { id, .. } if id == issued.token.id));

    s.clock.advance(TimeDelta::seconds(5));
    let again = s
        .issuer
        .revoke(env(1), support::operator(), issued.token.id)
        .await
        .unwrap();
    assert_eq!(again, revoked, "revoke is idempotent");

    let err = s
        .issuer
        .revoke(env(2), support::operator(), issued.token.id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store(StoreError::NotFound { .. })));
    assert_eq!(apitoken::http::status(&err), 404);
}

#[tokio::test]
async fn the_four_authentication_failures_look_the_same_to_a_client() {
    let s = setup();
    let expiring = s
        .issuer
        .issue(
            env(1),
            alice(),
            request("x", []).expires_at(start() + TimeDelta::seconds(1)),
        )
        .await
        .unwrap();
    let revoked = s
        .issuer
        .issue(env(1), alice(), request("y", []))
        .await
        .unwrap();
    s.issuer
        .revoke(env(1), support::operator(), revoked.token.id)
        .await
        .unwrap();
    s.clock.advance(TimeDelta::seconds(2));
    let unknown = apitoken::TokenFormat::dynamic().generate(&mut rand::rng());

    let failures = [
        s.issuer.authenticate("dyn_short").await.unwrap_err(),
        s.issuer
            .authenticate(unknown.expose_secret())
            .await
            .unwrap_err(),
        s.issuer
            .authenticate(revoked.raw.expose_secret())
            .await
            .unwrap_err(),
        s.issuer
            .authenticate(expiring.raw.expose_secret())
            .await
            .unwrap_err(),
    ];
    assert!(matches!(failures[0], Error::Malformed(_)));
    assert!(matches!(failures[1], Error::Unknown { .. }));
    assert!(matches!(failures[2], Error::Revoked { .. }));
    assert!(matches!(failures[3], Error::Expired { .. }));
    for err in &failures {
        assert!(err.is_unauthenticated());
        assert_eq!(apitoken::http::status(err), 401);
        assert_eq!(apitoken::http::code(err), None);
        assert_eq!(apitoken::http::public_message(err), UNAUTHORIZED_MESSAGE);
    }
    // The log messages tell them apart, without the secret.
    let logs: Vec<String> = failures.iter().map(ToString::to_string).collect();
    assert_eq!(
        logs.iter().collect::<std::collections::HashSet<_>>().len(),
        4
    );
    let unknown_secret = unknown.expose_secret();
    assert!(logs[1].contains(unknown.checksum().as_str()));
    assert!(!logs[1].contains(&unknown_secret[4..34]), "{}", logs[1]);
}

#[tokio::test]
async fn malformed_input_never_reaches_the_store() {
    let s = setup();
    let issued = s
        .issuer
        .issue(env(1), alice(), request("x", []))
        .await
        .unwrap();
    let mut typo = issued.raw.expose_secret().to_owned().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let huge = "dyn_".to_owned() + &"A".repeat(1 << 20);
    for bad in [
        "",
        "Bearer",
        "Bearer ",
        "ghp_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC",
        &typo,
        &huge,
    ] {
        let err = s.issuer.authenticate(bad).await.unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err:?}");
        let err = s.issuer.authenticate_header(bad).await.unwrap_err();
        assert!(matches!(err, Error::Malformed(_)), "{err:?}");
    }
    assert_eq!(s.store.finds.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn rotation_keeps_the_old_token_through_the_grace_period() {
    let s = setup();
    let lifetime = TimeDelta::days(30);
    let old = s
        .issuer
        .issue(
            env(1),
            alice(),
            request(
                "rotating",
                [Scope::ENVIRONMENT_EVENTS_READ, Scope::WAAS_AUTHENTICATE],
            )
            .expires_at(start() + lifetime),
        )
        .await
        .unwrap();
    s.clock.advance(TimeDelta::days(10));
    let rotated_at = start() + TimeDelta::days(10);
    let new = s
        .issuer
        .rotate(
            env(1),
            support::operator(),
            old.token.id,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert_ne!(new.token.id, old.token.id);
    assert_ne!(new.raw, old.raw);
    assert_eq!(new.token.note, old.token.note);
    assert_eq!(new.token.scopes, old.token.scopes);
    assert_eq!(new.token.created_by, old.token.created_by);
    assert_eq!(new.token.created_at, rotated_at);
    assert_eq!(
        new.token.expires_at,
        Some(rotated_at + lifetime),
        "same lifetime length"
    );

    s.clock.advance(TimeDelta::seconds(599));
    s.issuer
        .authenticate(old.raw.expose_secret())
        .await
        .unwrap();
    s.issuer
        .authenticate(new.raw.expose_secret())
        .await
        .unwrap();
    s.clock.advance(TimeDelta::seconds(1));
    let err = s
        .issuer
        .authenticate(old.raw.expose_secret())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Expired { expired_at, .. } if expired_at == rotated_at + TimeDelta::seconds(600))
    );
    s.issuer
        .authenticate(new.raw.expose_secret())
        .await
        .unwrap();

    let err = s
        .issuer
        .rotate(env(1), support::operator(), old.token.id, Duration::ZERO)
        .await
        .unwrap_err();
    // Past its grace period, and rotated: the error names the successor to rotate.
    assert!(
        matches!(err, Error::Store(StoreError::AlreadyRotated { successor, .. }) if successor == Some(new.token.id)),
        "{err:?}"
    );
    assert_eq!(apitoken::http::status(&err), 409);
    let err = s
        .issuer
        .rotate(env(2), support::operator(), new.token.id, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store(StoreError::NotFound { .. })));
}

/// A token in its grace period cannot be rotated again: it would get a second live
/// successor. Its successor can be rotated instead.
#[tokio::test]
async fn a_token_is_rotated_at_most_once() {
    let s = setup();
    let old = s
        .issuer
        .issue(env(1), alice(), request("once", []))
        .await
        .unwrap();
    let new = s
        .issuer
        .rotate(
            env(1),
            support::operator(),
            old.token.id,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    s.clock.advance(TimeDelta::seconds(1));
    let in_grace = s
        .issuer
        .get(env(1), support::operator(), old.token.id)
        .await
        .unwrap();

    let err = s
        .issuer
        .rotate(
            env(1),
            support::operator(),
            old.token.id,
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(StoreError::AlreadyRotated { id, successor })
                if id == old.token.id && successor == Some(new.token.id)
        ),
        "{err:?}"
    );
    assert_eq!(apitoken::http::status(&err), 409);
    assert_eq!(apitoken::http::code(&err), None);
    assert!(!err.is_unauthenticated() && !err.is_forbidden());
    assert_eq!(
        apitoken::http::public_message(&err),
        format!(
            "token {} has already been rotated, so it cannot be rotated again: rotate its successor {} instead",
            old.token.id, new.token.id
        )
    );

    // Nothing changed: the same two tokens, the old one's grace period as it was.
    let listed = s.issuer.list(env(1), PageRequest::default()).await.unwrap();
    assert_eq!(listed.tokens.len(), 2);
    assert_eq!(
        s.issuer
            .get(env(1), support::operator(), old.token.id)
            .await
            .unwrap(),
        in_grace
    );
    s.issuer
        .authenticate(old.raw.expose_secret())
        .await
        .unwrap();

    let newest = s
        .issuer
        .rotate(
            env(1),
            support::operator(),
            new.token.id,
            Duration::from_secs(600),
        )
        .await
        .expect("the successor can be rotated");
    assert_ne!(newest.token.id, new.token.id);
}

#[tokio::test]
async fn rotation_with_no_grace_ends_the_old_token_at_once() {
    let s = setup();
    let old = s
        .issuer
        .issue(env(1), alice(), request("x", []))
        .await
        .unwrap();
    let new = s
        .issuer
        .rotate(env(1), support::operator(), old.token.id, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(
        new.token.expires_at, None,
        "a token without expiry stays without"
    );
    assert!(matches!(
        s.issuer
            .authenticate(old.raw.expose_secret())
            .await
            .unwrap_err(),
        Error::Expired { .. }
    ));
    s.issuer
        .authenticate(new.raw.expose_secret())
        .await
        .unwrap();
}

#[tokio::test]
async fn last_use_is_recorded_at_most_once_per_interval() {
    let s = setup_with(|b| b.last_use_interval(Some(Duration::from_secs(60))));
    let issued = s
        .issuer
        .issue(env(1), alice(), request("x", []))
        .await
        .unwrap();
    let secret = issued.raw.expose_secret();
    let writes = || s.store.last_use_writes.load(Ordering::SeqCst);
    for _ in 0..100 {
        s.issuer.authenticate(secret).await.unwrap();
    }
    assert_eq!(writes(), 1);
    let token = s
        .issuer
        .get(env(1), support::operator(), issued.token.id)
        .await
        .unwrap();
    assert_eq!(token.last_used_at, Some(start()));

    s.clock.advance(TimeDelta::seconds(59));
    for _ in 0..10 {
        s.issuer.authenticate(secret).await.unwrap();
    }
    assert_eq!(writes(), 1);
    s.clock.advance(TimeDelta::seconds(1));
    s.issuer.authenticate(secret).await.unwrap();
    s.issuer.authenticate(secret).await.unwrap();
    assert_eq!(writes(), 2);
    let token = s
        .issuer
        .get(env(1), support::operator(), issued.token.id)
        .await
        .unwrap();
    assert_eq!(token.last_used_at, Some(start() + TimeDelta::seconds(60)));

    let quiet = setup_with(|b| b.last_use_interval(None));
    let issued = quiet
        .issuer
        .issue(env(1), alice(), request("x", []))
        .await
        .unwrap();
    for _ in 0..10 {
        quiet
            .issuer
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();
    }
    assert_eq!(quiet.store.last_use_writes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_live_token_limit_counts_only_live_tokens() {
    let s = setup_with(|b| b.max_live_tokens_per_environment(NonZeroU32::new(2).unwrap()));
    let first = s
        .issuer
        .issue(env(1), alice(), request("1", []))
        .await
        .unwrap();
    let _second = s
        .issuer
        .issue(
            env(1),
            alice(),
            request("2", []).expires_at(start() + TimeDelta::minutes(1)),
        )
        .await
        .unwrap();
    let err = s
        .issuer
        .issue(env(1), alice(), request("3", []))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::LimitReached { limit: 2, .. })),
        "{err:?}"
    );
    assert_eq!(apitoken::http::status(&err), 422);
    assert_eq!(apitoken::http::code(&err), Some("too_many_api_tokens"));
    assert_eq!(s.store.inner.len(), 2, "nothing stored on failure");

    s.issuer
        .issue(env(2), alice(), request("other env", []))
        .await
        .unwrap();

    s.issuer
        .revoke(env(1), support::operator(), first.token.id)
        .await
        .unwrap();
    s.issuer
        .issue(env(1), alice(), request("3", []))
        .await
        .unwrap();
    s.clock.advance(TimeDelta::minutes(1));
    s.issuer
        .issue(env(1), alice(), request("4", []))
        .await
        .unwrap();
    assert!(
        s.issuer
            .issue(env(1), alice(), request("5", []))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_token_can_only_delegate_scopes_it_holds() {
    let s = setup();
    let parent = s
        .issuer
        .issue(
            env(1),
            alice(),
            request(
                "parent",
                [
                    Scope::ENVIRONMENT_API_TOKENS_WRITE,
                    Scope::ENVIRONMENT_USERS_READ,
                ],
            ),
        )
        .await
        .unwrap();
    let caller = s
        .issuer
        .authenticate(parent.raw.expose_secret())
        .await
        .unwrap();

    let child = s
        .issuer
        .issue(
            env(1),
            &caller,
            request("child", [Scope::ENVIRONMENT_USERS_READ]),
        )
        .await
        .unwrap();
    assert_eq!(
        child.token.created_by, parent.token.created_by,
        "recorded for the same person"
    );

    let err = s
        .issuer
        .issue(
            env(1),
            Caller::Token(caller.clone()),
            request(
                "escalate",
                [
                    Scope::ENVIRONMENT_USERS_READ,
                    Scope::ENVIRONMENT_USERS_WRITE,
                ],
            ),
        )
        .await
        .unwrap_err();
    match &err {
        Error::InvalidScopes { unknown, not_held } => {
            assert!(unknown.is_empty());
            assert_eq!(not_held, &[Scope::ENVIRONMENT_USERS_WRITE]);
        }
        other => panic!("expected InvalidScopes, got {other:?}"),
    }
    assert_eq!(apitoken::http::code(&err), Some("invalid_scopes"));
    assert_eq!(apitoken::http::status(&err), 422);
    assert!(
        err.to_string().contains("`environment.users.write`"),
        "{err}"
    );

    let err = s
        .issuer
        .issue(env(2), &caller, request("elsewhere", []))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongEnvironment { .. }), "{err:?}");
    assert_eq!(s.store.inner.len(), 2, "nothing stored on failure");
}

#[tokio::test]
async fn scopes_outside_the_catalog_are_named_in_the_error() {
    let s = setup();
    let gasless = Scope::new("gasless.write").unwrap();
    let err = s
        .issuer
        .issue(
            env(1),
            alice(),
            request("x", [gasless.clone(), Scope::WAAS_AUTHENTICATE]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidScopes { unknown, .. } if unknown == std::slice::from_ref(&gasless))
    );
    assert_eq!(
        err.to_string(),
        "invalid scopes: not in the catalog: `gasless.write`;"
    );

    let extended = setup_with(|b| b.scope_catalog(ScopeCatalog::reference().with(gasless.clone())));
    let issued = extended
        .issuer
        .issue(env(1), alice(), request("x", [gasless.clone()]))
        .await
        .unwrap();
    extended
        .issuer
        .authorize(issued.raw.expose_secret(), env(1), &[gasless])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_seeded_generator_makes_issuance_reproducible() {
    let a = setup();
    let b = setup();
    let x = a
        .issuer
        .issue(env(1), alice(), request("x", []))
        .await
        .unwrap();
    let y = b
        .issuer
        .issue(env(1), alice(), request("x", []))
        .await
        .unwrap();
    assert_eq!(x.raw, y.raw);
    assert_eq!(x.token.id, y.token.id);
    let z = a
        .issuer
        .issue(env(1), alice(), request("x", []))
        .await
        .unwrap();
    assert_ne!(x.raw, z.raw);
}

#[tokio::test]
async fn another_hash_key_does_not_recognise_the_tokens() {
    let store = Arc::new(MemoryStore::new());
    let a = TokenIssuer::builder(store.clone())
        .hash_key(HashKey::from_bytes([1; 32]))
        .build();
    let b = TokenIssuer::builder(store.clone())
        .hash_key(HashKey::from_bytes([2; 32]))
        .build();
    let issued = a.issue(env(1), alice(), request("x", [])).await.unwrap();
    a.authenticate(issued.raw.expose_secret()).await.unwrap();
    assert!(matches!(
        b.authenticate(issued.raw.expose_secret())
            .await
            .unwrap_err(),
        Error::Unknown { .. }
    ));
}

#[tokio::test]
async fn listing_pages_through_an_environment_in_creation_order() {
    let s = setup();
    let mut ids = Vec::new();
    for i in 0..7 {
        s.clock.advance(TimeDelta::microseconds(1));
        let t = s
            .issuer
            .issue(env(1), alice(), request(&format!("t{i}"), []))
            .await
            .unwrap();
        ids.push(t.token.id);
    }
    s.issuer
        .issue(env(2), alice(), request("other", []))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut page = PageRequest::first(3);
    loop {
        let got = s.issuer.list(env(1), page).await.unwrap();
        seen.extend(got.tokens.iter().map(|t| t.id));
        match got.next {
            Some(cursor) => page = page.after(cursor),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    // `list_all` pages the same way, and stops at its maximum.
    let ids_of = |tokens: Vec<Token>| tokens.into_iter().map(|t| t.id).collect::<Vec<_>>();
    for (max, page_size) in [(usize::MAX, 3), (usize::MAX, 1000), (7, 7), (5, 2), (1, 3)] {
        let all = s.issuer.list_all(env(1), max, page_size).await.unwrap();
        assert_eq!(ids_of(all), ids[..max.min(7)], "{max} by {page_size}");
    }
    assert!(s.issuer.list_all(env(1), 0, 3).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_default_issuer_generates_distinct_tokens() {
    let issuer = TokenIssuer::new(MemoryStore::new());
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let t = issuer
            .issue(env(1), alice(), request("x", []))
            .await
            .unwrap();
        assert!(seen.insert(t.raw.expose_secret().to_owned()));
        issuer.authenticate(t.raw.expose_secret()).await.unwrap();
    }
}

/// Found by the stateful fuzz target: after the clock moved back before a token's
/// creation, a rotation can leave it with an expiry earlier than its creation; rotating it
/// again must not issue a successor that is born expired. It was rotated: that comes
/// first, as the store contract orders its checks.
#[tokio::test]
async fn rotation_never_issues_a_successor_born_expired() {
    let s = setup();
    let old = s
        .issuer
        .issue(
            env(1),
            alice(),
            request("x", []).expires_at(start() + TimeDelta::hours(1)),
        )
        .await
        .unwrap();
    s.clock.set(start() - TimeDelta::hours(2));
    let first = s
        .issuer
        .rotate(
            env(1),
            support::operator(),
            old.token.id,
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    assert!(first.token.expires_at.unwrap() > start() - TimeDelta::hours(2));
    let err = s
        .issuer
        .rotate(
            env(1),
            support::operator(),
            old.token.id,
            Duration::from_secs(600),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::AlreadyRotated { successor, .. }) if successor == Some(first.token.id)),
        "{err:?}"
    );
}

/// Found by the stateful fuzz target (issue 17): a delegated token, rotated with no grace,
/// whose creator is then revoked. Rotating it again was refused as not live, because the
/// issuer judged the successor it would make (born expired) before the store could say
/// that the token had been rotated; the store's order holds now: rotated comes first.
#[tokio::test]
async fn a_rotated_token_whose_creator_is_gone_is_refused_as_rotated() {
    let s = setup();
    let (_, parent) = issue_caller(
        &s,
        request("parent", []).expires_at(start() + TimeDelta::days(1)),
    )
    .await;
    let child = s
        .issuer
        .issue(env(1), &parent, request("child", []))
        .await
        .unwrap();
    let successor = s
        .issuer
        .rotate(env(1), &parent, child.token.id, Duration::ZERO)
        .await
        .unwrap();
    s.issuer
        .revoke(env(1), support::operator(), parent.token_id())
        .await
        .unwrap();
    let err = s
        .issuer
        .rotate(
            env(1),
            support::operator(),
            child.token.id,
            Duration::from_secs(60),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(StoreError::AlreadyRotated { id, successor: Some(next) })
                if id == child.token.id && next == successor.token.id
        ),
        "{err:?}"
    );
}

/// Delegation narrows authority (issue 17): R, which a user created, creates K with
/// `environment.apiTokens.write` only. K acts on itself and what it created, directly or
/// not, and on nothing else: not R (its creator), not R's other tokens, not an unrelated
/// admin token, not an id that does not exist; for get, revoke and rotate alike, refused
/// with 403 and nothing changed. R, a token a user created, acts on the whole
/// environment; so does the operator.
#[tokio::test]
async fn a_delegated_token_acts_only_on_itself_and_its_descendants() {
    let s = setup();
    let write = Scope::ENVIRONMENT_API_TOKENS_WRITE;
    let all = [
        Scope::ENVIRONMENT_API_TOKENS_READ,
        write.clone(),
        Scope::ENVIRONMENT_USERS_READ,
    ];
    let (admin, _) = issue_caller(&s, request("admin", all.clone())).await;
    let (r, r_principal) = issue_caller(&s, request("R", all.clone())).await;
    let k = s
        .issuer
        .issue(env(1), &r_principal, request("K", [write.clone()]))
        .await
        .unwrap();
    let sibling = s
        .issuer
        .issue(env(1), &r_principal, request("sibling", [write.clone()]))
        .await
        .unwrap();
    let k_principal = s.issuer.authenticate(k.raw.expose_secret()).await.unwrap();
    assert!(k_principal.is_delegated());
    assert!(!r_principal.is_delegated());
    let g = s
        .issuer
        .issue(env(1), &k_principal, request("G", [write.clone()]))
        .await
        .unwrap();
    let g_principal = s.issuer.authenticate(g.raw.expose_secret()).await.unwrap();
    let grandchild = s
        .issuer
        .issue(env(1), &g_principal, request("GG", []))
        .await
        .unwrap();
    let ghost = apitoken::TokenId::from_uuid(Uuid::from_u128(0x6405));

    for (target, what) in [
        (r.token.id, "its creator"),
        (admin.token.id, "an unrelated admin token"),
        (sibling.token.id, "its creator's other token"),
        (ghost, "an id that does not exist"),
    ] {
        let refused = |result: Result<(), Error>, op: &str| {
            let err = result.unwrap_err();
            assert!(
                matches!(err, Error::OutsideDelegation { caller, id } if caller == k.token.id && id == target),
                "{op} of {what}: {err:?}"
            );
            assert!(err.is_forbidden());
            assert_eq!(apitoken::http::status(&err), 403, "{op} of {what}");
        };
        refused(
            s.issuer.get(env(1), &k_principal, target).await.map(drop),
            "get",
        );
        refused(
            s.issuer
                .revoke(env(1), &k_principal, target)
                .await
                .map(drop),
            "revoke",
        );
        refused(
            s.issuer
                .rotate(env(1), &k_principal, target, Duration::ZERO)
                .await
                .map(drop),
            "rotate",
        );
    }
    for (token, what) in [
        (&r, "R"),
        (&admin, "the admin token"),
        (&sibling, "the sibling"),
    ] {
        assert!(
            s.issuer
                .authenticate(token.raw.expose_secret())
                .await
                .is_ok(),
            "{what} still works"
        );
    }
    // In another environment, the environment check comes first.
    let err = s
        .issuer
        .revoke(env(2), &k_principal, g.token.id)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongEnvironment { .. }), "{err:?}");

    // Its own descendants, and itself, it may act on.
    let got = s
        .issuer
        .get(env(1), &k_principal, grandchild.token.id)
        .await
        .unwrap();
    assert_eq!(got.id, grandchild.token.id);
    let rotated = s
        .issuer
        .rotate(env(1), &k_principal, g.token.id, Duration::ZERO)
        .await
        .expect("a delegated token rotates its child");
    let revoked = s
        .issuer
        .revoke(env(1), &k_principal, rotated.token.id)
        .await
        .expect("a delegated token revokes its child's successor");
    assert!(
        revoked.cascade.contains(&grandchild.token.id),
        "with what its predecessor created: {:?}",
        revoked.cascade
    );
    s.issuer
        .revoke(env(1), &k_principal, k.token.id)
        .await
        .expect("a delegated token revokes itself");

    // A token a user created acts on the whole environment, as the operator does.
    s.issuer
        .revoke(env(1), &r_principal, sibling.token.id)
        .await
        .expect("R revokes a token it created");
    let (_, other) = issue_caller(&s, request("other", all.clone())).await;
    s.issuer
        .revoke(env(1), &other, r.token.id)
        .await
        .expect("a user-created token revokes any token of its environment");
    s.issuer
        .revoke(env(1), support::operator(), admin.token.id)
        .await
        .expect("the operator revokes any token");
}

/// A token created by a rotated token counts as its successor's: the successor, itself
/// delegated, acts on it.
#[tokio::test]
async fn a_delegated_successor_acts_on_what_its_predecessor_created() {
    let s = setup();
    let (_, r) = issue_caller(&s, request("R", [Scope::ENVIRONMENT_API_TOKENS_WRITE])).await;
    let k0 = s
        .issuer
        .issue(
            env(1),
            &r,
            request("K0", [Scope::ENVIRONMENT_API_TOKENS_WRITE]),
        )
        .await
        .unwrap();
    let k0_principal = s.issuer.authenticate(k0.raw.expose_secret()).await.unwrap();
    let made_by_k0 = s
        .issuer
        .issue(env(1), &k0_principal, request("made by K0", []))
        .await
        .unwrap();
    let k1 = s
        .issuer
        .rotate(env(1), &k0_principal, k0.token.id, Duration::from_secs(60))
        .await
        .unwrap();
    let k1_principal = s.issuer.authenticate(k1.raw.expose_secret()).await.unwrap();
    assert!(
        k1_principal.is_delegated(),
        "a successor is delegated as its predecessor was"
    );
    s.issuer
        .revoke(env(1), &k1_principal, made_by_k0.token.id)
        .await
        .expect("the successor acts on what its predecessor created");
    let err = s
        .issuer
        .revoke(env(1), &k0_principal, k1.token.id)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::OutsideDelegation { .. }),
        "a predecessor does not act on its successor: {err:?}"
    );
}

/// Revoking a rotated token's successor ends the old token's grace period at once
/// (issue 17): the old token, often the one that leaked, stops working in the same step.
#[tokio::test]
async fn revoking_the_successor_ends_the_old_tokens_grace() {
    let s = setup();
    let (old, _) = issue_caller(&s, request("old", [])).await;
    let new = s
        .issuer
        .rotate(
            env(1),
            support::operator(),
            old.token.id,
            Duration::from_secs(86_400),
        )
        .await
        .unwrap();
    s.issuer
        .authenticate(old.raw.expose_secret())
        .await
        .expect("in its grace period");
    let revoked = s
        .issuer
        .revoke(env(1), support::operator(), new.token.id)
        .await
        .unwrap();
    assert_eq!(revoked.cascade, vec![old.token.id]);
    let err = s
        .issuer
        .authenticate(old.raw.expose_secret())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Revoked { id, .. } if id == old.token.id),
        "{err:?}"
    );
}

/// `purge` deletes the tokens that ended more than the given age ago, and only those;
/// a purged token is then unknown.
#[tokio::test]
async fn purge_deletes_tokens_that_ended_long_enough_ago() {
    let s = setup();
    let (old, _) = issue_caller(&s, request("revoked long ago", [])).await;
    let (recent, _) = issue_caller(&s, request("revoked lately", [])).await;
    let (live, _) = issue_caller(&s, request("live", [])).await;
    let (expired, _) = issue_caller(
        &s,
        request("expired long ago", []).expires_at(start() + TimeDelta::days(1)),
    )
    .await;
    s.issuer
        .revoke(env(1), support::operator(), old.token.id)
        .await
        .unwrap();
    s.clock.advance(TimeDelta::days(80));
    s.issuer
        .revoke(env(1), support::operator(), recent.token.id)
        .await
        .unwrap();
    s.clock.advance(TimeDelta::days(20));
    let purged = s
        .issuer
        .purge(Duration::from_secs(90 * 86_400))
        .await
        .unwrap();
    assert_eq!(purged.tokens, 2);
    assert_eq!(purged.ended_before, s.issuer.now() - TimeDelta::days(90));
    for (token, gone) in [
        (&old, true),
        (&expired, true),
        (&recent, false),
        (&live, false),
    ] {
        let found = s
            .issuer
            .get(env(1), support::operator(), token.token.id)
            .await;
        assert_eq!(found.is_err(), gone, "{:?}", token.token.note);
    }
    assert!(matches!(
        s.issuer.authenticate(old.raw.expose_secret()).await,
        Err(Error::Unknown { .. })
    ));
    assert_eq!(
        s.issuer
            .purge(Duration::from_secs(90 * 86_400))
            .await
            .unwrap()
            .tokens,
        0,
        "a second purge finds nothing"
    );
}
