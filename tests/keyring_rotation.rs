//! A hash key rotation rehearsed end to end on each store: 1,000 tokens issued under the
//! old key, the key replaced (the old one retired in the keyring), half the tokens used
//! (and so rehashed), `hash_key_usage` showing the 500 left, retiring refused, the rest
//! expired (a `ManualClock`) or revoked with the key, retiring done, the old key dropped
//! from the ring. No token is refused along the way.

mod support;

use apitoken::{
    CachedStore, Creator, EnvironmentId, Error, EventCursor, EventKind, HashKey, HashKeyring,
    IssueRequest, IssuedToken, KeyFingerprint, ManualClock, MemoryStore, Note, StoreError,
    TokenHasher, TokenIssuer, TokenStore, UserId,
};
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const TOKENS: usize = 1_000;

/// How the tokens left on the old key end.
#[derive(Clone, Copy, Debug)]
enum End {
    /// They expire (the clock moves past their expiry).
    Expire,
    /// They are revoked with the key (`retire_hash_key` with `revoke_remaining`).
    Revoke,
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_780_000_000_000_000).unwrap()
}

fn usage_of(usage: &[apitoken::KeyUsage], key: KeyFingerprint) -> (u64, u64) {
    usage
        .iter()
        .find(|u| u.key == key)
        .map_or((0, 0), |u| (u.live, u.never_expiring))
}

/// The rehearsal on `store` (prepared here), ending the old key's tokens as `end` says.
async fn rehearse(store: Arc<dyn TokenStore>, end: End) {
    let clock = ManualClock::new(start());
    let env = EnvironmentId::from_uuid(Uuid::from_u128(rand::random()));
    let me = Creator::new(UserId::from_uuid(Uuid::from_u128(0x0ae2)));
    let (old, new) = (HashKey::generate().unwrap(), HashKey::generate().unwrap());
    let (old_key, new_key) = (old.fingerprint(), new.fingerprint());

    let before = TokenIssuer::builder(store.clone())
        .hash_key(old.clone())
        .clock(clock.clone())
        .prepare()
        .await
        .unwrap();
    let mut issued: Vec<IssuedToken> = Vec::with_capacity(TOKENS);
    for i in 0..TOKENS {
        let request = IssueRequest::new(Note::new(&format!("token {i}")).unwrap())
            .expires_at(start() + TimeDelta::days(30));
        issued.push(before.issue(env, me.clone(), request).await.unwrap());
    }

    // The new key current, the old one retired: every token still authenticates.
    let ring = HashKeyring::new(TokenHasher::keyed(new.clone()))
        .with_retired(TokenHasher::keyed(old.clone()), None)
        .unwrap();
    let after = TokenIssuer::builder(store.clone())
        .keyring(ring.clone())
        .clock(clock.clone())
        .prepare()
        .await
        .unwrap();
    let head = store.event_head().await.unwrap();
    for token in &issued[..TOKENS / 2] {
        let who = after.authenticate(token.raw.expose_secret()).await.unwrap();
        assert_eq!(who.token_id(), token.token.id);
    }
    // A check that writes nothing finds every token too, and moves none.
    let checker = TokenIssuer::builder(store.clone())
        .keyring(ring)
        .clock(clock.clone())
        .last_use_interval(None)
        .rehash_on_use(false)
        .build();
    for token in &issued {
        checker
            .authenticate(token.raw.expose_secret())
            .await
            .unwrap();
    }
    let rehashed = events_of(&*store, head, EventKind::Rehashed).await;
    assert_eq!(
        rehashed,
        TOKENS / 2,
        "each token used once was rehashed once"
    );

    let usage = after.hash_key_usage().await.unwrap();
    assert_eq!(usage[0].key, new_key, "the current key comes first");
    assert_eq!(
        usage_of(&usage, old_key),
        (500, 0),
        "500 left on the old key"
    );
    assert_eq!(
        usage_of(&usage, new_key),
        (500, 0),
        "500 moved to the new key"
    );
    let old_usage = usage.iter().find(|u| u.key == old_key).unwrap();
    assert_eq!(
        old_usage.retirable_on(clock_now(&clock)),
        Some((start() + TimeDelta::days(30)).date_naive()),
        "the old key can go when its last token expires"
    );
    match after.retire_hash_key(old_key, None).await {
        Err(Error::Store(StoreError::HashKeyInUse { key, live })) => {
            assert_eq!((key, live), (old_key, 500));
        }
        other => panic!("retiring a key 500 live tokens need is refused, got {other:?}"),
    }
    assert!(matches!(
        after.retire_hash_key(new_key, None).await,
        Err(Error::Store(StoreError::CurrentHashKey { .. }))
    ));

    let revoked = match end {
        End::Expire => {
            clock.advance(TimeDelta::days(31));
            let retired = after.retire_hash_key(old_key, None).await.unwrap();
            assert!(retired.revoked.is_empty());
            0
        }
        End::Revoke => {
            let head = store.event_head().await.unwrap();
            let retired = after
                .retire_hash_key(old_key, Some(apitoken::Caller::from(me.clone())))
                .await
                .unwrap();
            assert_eq!(retired.revoked.len(), 500);
            assert_eq!(events_of(&*store, head, EventKind::KeyRetired).await, 500);
            500
        }
    };

    // The old key dropped from the configuration: the store takes the new key alone, and
    // the tokens that moved still authenticate (until they expire).
    let last = TokenIssuer::builder(store.clone())
        .hash_key(new)
        .clock(clock.clone())
        .prepare()
        .await
        .unwrap();
    if revoked > 0 {
        for token in &issued[..TOKENS / 2] {
            last.authenticate(token.raw.expose_secret()).await.unwrap();
        }
    }
    // The old key alone is refused now, naming the key the tokens need.
    let refused = TokenIssuer::builder(store.clone())
        .hash_key(old)
        .prepare()
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            Error::Store(StoreError::HashKeyMismatch { stored, .. }) if stored == new_key
        ),
        "{refused:?}"
    );
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    apitoken::Clock::now(clock)
}

/// How many events of `kind` follow `after`.
async fn events_of(store: &dyn TokenStore, mut after: EventCursor, kind: EventKind) -> usize {
    let mut count = 0;
    loop {
        let page = store.events_since(None, after, 1000).await.unwrap();
        if page.events.is_empty() {
            return count;
        }
        count += page.events.iter().filter(|e| e.kind == kind).count();
        after = page.next;
    }
}

#[tokio::test]
async fn a_rotation_on_the_memory_store() {
    rehearse(Arc::new(MemoryStore::new()), End::Expire).await;
    rehearse(Arc::new(MemoryStore::new()), End::Revoke).await;
}

#[tokio::test]
async fn a_rotation_through_a_cache() {
    let cache = CachedStore::new(MemoryStore::new()).ttl(Duration::from_secs(3600));
    rehearse(Arc::new(cache), End::Revoke).await;
}

#[cfg(any(feature = "sqlite", feature = "sqlite-unbundled"))]
#[tokio::test]
async fn a_rotation_on_sqlite() {
    for end in [End::Expire, End::Revoke] {
        let db = support::TempDb::new("apitoken_keyring");
        let store = apitoken::SqliteStore::open(&db.path).await.unwrap();
        rehearse(Arc::new(store.clone()), end).await;
        store.close().await;
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_rotation_on_postgres() {
    use apitoken::PostgresStore;
    let Some(url) = support::postgres_url("a_rotation_on_postgres") else {
        return;
    };
    let admin = PostgresStore::connect(&url).await.unwrap();
    let name = support::unique_name("apitoken_keyring");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(admin.pool())
        .await
        .unwrap();
    let options = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&url)
        .unwrap()
        .options([("search_path", name.as_str())]);
    let store = PostgresStore::connect_with(options, PostgresStore::pool_options())
        .await
        .unwrap();
    let rehearsal = tokio::spawn(rehearse(Arc::new(store), End::Revoke)).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
        .execute(admin.pool())
        .await
        .unwrap();
    if let Err(panic) = rehearsal {
        std::panic::resume_unwind(panic.into_panic());
    }
}

/// A retired key with an end date is tried through that day (UTC) and not after: its
/// tokens then read as unknown, as any token no key made.
#[tokio::test]
async fn a_retired_key_is_tried_through_its_last_day() {
    let day = start().date_naive();
    let clock = ManualClock::new(day.and_hms_opt(12, 0, 0).unwrap().and_utc());
    let store = Arc::new(MemoryStore::new());
    let env = EnvironmentId::from_uuid(Uuid::from_u128(rand::random()));
    let me = Creator::new(UserId::from_uuid(Uuid::from_u128(0x0ae2)));
    let (old, new) = (HashKey::generate().unwrap(), HashKey::generate().unwrap());
    let before = TokenIssuer::builder(store.clone())
        .hash_key(old.clone())
        .clock(clock.clone())
        .prepare()
        .await
        .unwrap();
    let token = before
        .issue(env, me, IssueRequest::new(Note::new("old key").unwrap()))
        .await
        .unwrap();
    let raw = token.raw.expose_secret();

    let ring = HashKeyring::new(TokenHasher::keyed(new))
        .with_retired(TokenHasher::keyed(old), Some(day))
        .unwrap();
    let after = TokenIssuer::builder(store.clone())
        .keyring(ring)
        .rehash_on_use(false)
        .clock(clock.clone())
        .prepare()
        .await
        .unwrap();
    after.authenticate(raw).await.unwrap();
    clock.set(
        day.and_hms_micro_opt(23, 59, 59, 999_999)
            .unwrap()
            .and_utc(),
    );
    after.authenticate(raw).await.unwrap();
    clock.set(
        day.succ_opt()
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc(),
    );
    let err = after.authenticate(raw).await.unwrap_err();
    assert!(matches!(err, Error::Unknown { .. }), "{err:?}");
}

/// Under a keyring the lifetime policy's idle expiry holds as under one key, for a token
/// of the current key and of a retired one.
#[tokio::test]
async fn idle_tokens_are_refused_under_a_keyring() {
    let clock = ManualClock::new(start());
    let store = Arc::new(MemoryStore::new());
    let env = EnvironmentId::from_uuid(Uuid::from_u128(rand::random()));
    let me = Creator::new(UserId::from_uuid(Uuid::from_u128(0x0ae2)));
    let (old, new) = (HashKey::generate().unwrap(), HashKey::generate().unwrap());
    let idle = apitoken::LifetimePolicy::default().idle_expiry(Duration::from_secs(30 * 86_400));
    let issuer = |ring: HashKeyring| {
        TokenIssuer::builder(store.clone())
            .keyring(ring)
            .lifetime_policy(idle)
            .rehash_on_use(false)
            .clock(clock.clone())
            .try_build()
            .unwrap()
    };
    let before = issuer(HashKeyring::new(TokenHasher::keyed(old.clone())));
    let under_old = before
        .issue(
            env,
            me.clone(),
            IssueRequest::new(Note::new("old").unwrap()),
        )
        .await
        .unwrap();
    let ring = HashKeyring::new(TokenHasher::keyed(new))
        .with_retired(TokenHasher::keyed(old), None)
        .unwrap();
    let after = issuer(ring);
    let under_new = after
        .issue(env, me, IssueRequest::new(Note::new("new").unwrap()))
        .await
        .unwrap();
    for token in [&under_old, &under_new] {
        after.authenticate(token.raw.expose_secret()).await.unwrap();
    }
    clock.advance(TimeDelta::days(31));
    for token in [&under_old, &under_new] {
        let err = after
            .authenticate(token.raw.expose_secret())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Expired { id, .. } if id == token.token.id),
            "{err:?}"
        );
    }
}

/// Under a keyring a token's allowed ranges hold as under one key, for a token of the
/// current key and of a retired one, and the address of the last use is recorded.
#[tokio::test]
async fn allowed_ranges_hold_under_a_keyring() {
    let store = Arc::new(MemoryStore::new());
    let env = EnvironmentId::from_uuid(Uuid::from_u128(rand::random()));
    let me = Creator::new(UserId::from_uuid(Uuid::from_u128(0x0ae2)));
    let (old, new) = (HashKey::generate().unwrap(), HashKey::generate().unwrap());
    let request = || {
        IssueRequest::new(Note::new("office only").unwrap())
            .allowed_from(apitoken::AllowedCidrs::parse("10.0.0.0/8").unwrap())
    };
    let before = TokenIssuer::builder(store.clone())
        .hash_key(old.clone())
        .build();
    let under_old = before.issue(env, me.clone(), request()).await.unwrap();
    let ring = HashKeyring::new(TokenHasher::keyed(new))
        .with_retired(TokenHasher::keyed(old), None)
        .unwrap();
    let after = TokenIssuer::builder(store.clone())
        .keyring(ring)
        .rehash_on_use(false)
        .build();
    let under_new = after.issue(env, me, request()).await.unwrap();
    let office: std::net::IpAddr = "10.1.2.3".parse().unwrap();
    let cafe: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    for token in [&under_old, &under_new] {
        let secret = token.raw.expose_secret();
        let err = after.authenticate_from(secret, cafe).await.unwrap_err();
        assert!(
            matches!(err, Error::IpNotAllowed { id, client: Some(c) } if id == token.token.id && c == cafe),
            "{err:?}"
        );
        let err = after.authenticate(secret).await.unwrap_err();
        assert!(
            matches!(err, Error::IpNotAllowed { client: None, .. }),
            "{err:?}"
        );
        after.authenticate_from(secret, office).await.unwrap();
        let stored = store.get(env, token.token.id).await.unwrap().unwrap();
        assert_eq!(stored.last_used_ip, Some(office), "{stored:?}");
    }
}
