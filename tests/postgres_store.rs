//! `PostgresStore` against the real server (`APITOKEN_TEST_POSTGRES_URL`), each test in a
//! schema of its own that is dropped afterwards: the conformance suite, migrations,
//! concurrency over several connections, faults through a TCP proxy, nothing secret at
//! rest.
#![cfg(all(feature = "postgres", feature = "conformance"))]

mod support;

use apitoken::conformance::{self, GatedStore, new_environment};
use apitoken::{
    CachedStore, Creator, Error, HashKey, IssueRequest, IssuedToken, KeyFingerprint, Note,
    PageRequest, PostgresStore, PostgresTimeouts, StoreError, TokenFormat, TokenHasher, TokenId,
    TokenIssuer, TokenStore, UserId,
};
use chrono::{TimeDelta, Utc};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use support::{Proxy, postgres_url, unique_name, with_cleanup};
use uuid::Uuid;

fn alice() -> Creator {
    Creator::new(UserId::from_uuid(Uuid::from_u128(0xa11ce)))
}

fn request(note: &str) -> IssueRequest {
    IssueRequest::new(Note::new(note).unwrap())
}

/// A test's own schema: created, handed to `body`, dropped afterwards.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn options(&self) -> PgConnectOptions {
        PgConnectOptions::from_str(&self.url)
            .unwrap()
            .options([("search_path", self.name.as_str())])
    }

    /// A TCP proxy in front of the server, and a store (its own pool, `pool`) in the
    /// schema, migrated, connecting through it without TLS so that the proxy can read the
    /// server's answers.
    async fn through_proxy(&self, pool: PgPoolOptions) -> (Proxy, PostgresStore) {
        drop(self.store().await); // creates the tables
        let target = self.options();
        let upstream = tokio::net::lookup_host((target.get_host(), target.get_port()))
            .await
            .unwrap()
            .next()
            .unwrap();
        let proxy = Proxy::start(upstream).await;
        let store = PostgresStore::connect_with(
            self.options()
                .host("127.0.0.1")
                .port(proxy.addr.port())
                .ssl_mode(PgSslMode::Disable),
            pool,
        )
        .await
        .unwrap();
        (proxy, store)
    }

    /// A new store (its own pool) in the schema, migrated.
    async fn store(&self) -> PostgresStore {
        let store = PostgresStore::connect_with(self.options(), PostgresStore::pool_options())
            .await
            .unwrap();
        store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
        store
    }
}

async fn in_schema<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Schema) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(url) = postgres_url(test) else {
        return;
    };
    let admin = PostgresStore::connect(&url)
        .await
        .expect("connect to PostgreSQL");
    let name = unique_name("apitoken_test");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
        .execute(admin.pool())
        .await
        .unwrap();
    let schema = Schema {
        url,
        name: name.clone(),
    };
    with_cleanup(body(schema), async {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
            .execute(admin.pool())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn postgres_passes_the_conformance_suite() {
    in_schema(
        "postgres_passes_the_conformance_suite",
        |schema| async move {
            conformance::run_all(&schema.store().await).await;
        },
    )
    .await;
}

/// The cache in front of PostgreSQL: a look-up that read a row before a revoke, rotate or
/// insert committed never puts the old state into the cache.
#[tokio::test]
async fn a_cache_in_front_of_postgres_is_never_refilled_with_the_old_state() {
    in_schema(
        "a_cache_in_front_of_postgres_is_never_refilled_with_the_old_state",
        |schema| async move {
            let gated = Arc::new(GatedStore::new(schema.store().await));
            let cache = CachedStore::new(gated.clone());
            conformance::racing_lookups_never_undo_a_change(&gated, &cache).await;
            conformance::run_all(&cache).await;
        },
    )
    .await;
}

#[tokio::test]
async fn migrate_is_idempotent_and_a_newer_schema_is_refused() {
    in_schema("migrate_is_idempotent", |schema| async move {
        let store = PostgresStore::connect_with(schema.options(), PostgresStore::pool_options())
            .await
            .unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 0);
        // Several processes starting at once.
        let others = [schema.store(), schema.store(), schema.store()];
        let (a, b, c) = tokio::join!(
            store.prepare(KeyFingerprint::Unkeyed),
            async {
                let [x, _, _] = others;
                x.await
            },
            store.prepare(KeyFingerprint::Unkeyed)
        );
        a.unwrap();
        c.unwrap();
        drop(b);
        assert_eq!(store.schema_version().await.unwrap(), 9);
        let issuer = TokenIssuer::new(store.clone());
        let issued = issuer
            .issue(new_environment(), alice(), request("kept"))
            .await
            .unwrap();
        store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
        issuer
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();

        sqlx::query("UPDATE apitoken_meta SET value = '10' WHERE key = 'schema_version'")
            .execute(store.pool())
            .await
            .unwrap();
        let err = store.prepare(KeyFingerprint::Unkeyed).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 10,
                    supported: 9
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

/// The schema exactly as version 1 of this library created it (its only migration, and
/// the table `migrate` created before it), copied rather than taken from the library, so
/// that the upgrade is tested from what shipped.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS apitoken_meta (key text NOT NULL PRIMARY KEY, value text NOT NULL);
CREATE TABLE apitoken_tokens (
    id uuid NOT NULL,
    hash bytea NOT NULL CHECK (octet_length(hash) = 32),
    environment_id uuid NOT NULL,
    checksum text NOT NULL,
    created_by_id uuid NOT NULL,
    created_by_alias text,
    created_by_first_name text,
    created_by_last_name text,
    created_by_email text,
    created_at timestamptz NOT NULL,
    active boolean NOT NULL,
    note text NOT NULL,
    scopes text NOT NULL,
    expires_at timestamptz,
    last_used_at timestamptz,
    revoked_at timestamptz,
    CONSTRAINT apitoken_tokens_id_key PRIMARY KEY (id),
    CONSTRAINT apitoken_tokens_hash_key UNIQUE (hash)
);
CREATE INDEX apitoken_tokens_environment_id ON apitoken_tokens (environment_id, id);
CREATE INDEX apitoken_tokens_environment_created ON apitoken_tokens (environment_id, created_at, id);
INSERT INTO apitoken_meta (key, value) VALUES ('schema_version', '1');
";

/// The `replaced_by` column of token `id`.
async fn replaced_by(store: &PostgresStore, id: TokenId) -> Option<Uuid> {
    sqlx::query_scalar("SELECT replaced_by FROM apitoken_tokens WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// A schema written by version 1 (schema version 1, a live token and one revoked 100 days
/// ago in another environment, the hash key bound) is migrated in place: its token still
/// authenticates, can be rotated once, and not twice; the revoked one is found by purging
/// (schema 7 records revocations apart, and copies the old ones).
#[tokio::test]
async fn a_version_1_schema_is_upgraded_and_its_tokens_rotate_once() {
    in_schema("version_1_upgrade", |schema| async move {
        let env = new_environment();
        let raw = TokenFormat::dynamic().generate(&mut rand::rng());
        let hasher = TokenHasher::unkeyed();
        let created_at = Utc::now() - TimeDelta::days(1);
        let id = TokenId::generate(created_at, &mut rand::rng());
        {
            let pool = PgPool::connect_with(schema.options()).await.unwrap();
            let mut tx = pool.begin().await.unwrap();
            sqlx::raw_sql(SCHEMA_V1).execute(&mut *tx).await.unwrap();
            sqlx::query(
                "INSERT INTO apitoken_meta (key, value) VALUES ('hash_key_fingerprint', $1)",
            )
            .bind(hasher.fingerprint().to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO apitoken_tokens (id, hash, environment_id, checksum, created_by_id, \
                 created_by_alias, created_by_first_name, created_by_last_name, \
                 created_by_email, created_at, active, note, scopes, expires_at, last_used_at, \
                 revoked_at) VALUES ($1, $2, $3, $4, $5, 'alice', NULL, NULL, NULL, $6, true, \
                 'from v1', 'environment.apiTokens.read', NULL, NULL, NULL)",
            )
            .bind(id.as_uuid())
            .bind(hasher.hash(raw.expose_secret()).as_bytes().as_slice())
            .bind(env.as_uuid())
            .bind(raw.checksum().as_str())
            .bind(Uuid::from_u128(0xa11ce))
            .bind(created_at)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO apitoken_tokens (id, hash, environment_id, checksum, created_by_id, \
                 created_at, active, note, scopes, revoked_at) \
                 VALUES ($1, $2, $3, 'abcdef', $4, $5, false, 'revoked', '', $6)",
            )
            .bind(Uuid::from_u128(0x5eed))
            .bind([7u8; 32].as_slice())
            .bind(new_environment().as_uuid())
            .bind(Uuid::from_u128(0xa11ce))
            .bind(Utc::now() - TimeDelta::days(101))
            .bind(Utc::now() - TimeDelta::days(100))
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
            pool.close().await;
        }

        let store = PostgresStore::connect_with(schema.options(), PostgresStore::pool_options())
            .await
            .unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 1);
        store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 9);
        store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
        assert_eq!(store.schema_version().await.unwrap(), 9);
        store.prepare(hasher.fingerprint()).await.unwrap();
        assert_eq!(
            replaced_by(&store, id).await,
            None,
            "an old row is unrotated"
        );

        let issuer = TokenIssuer::new(store.clone());
        let who = issuer.authenticate(raw.expose_secret()).await.unwrap();
        assert_eq!(who.token_id(), id);
        assert_eq!(who.environment(), env);
        assert_eq!(
            issuer
                .get(env, support::operator(), id)
                .await
                .unwrap()
                .note
                .as_str(),
            "from v1"
        );

        let successor = support::rotates_once(&issuer, env, id, &raw).await;
        assert_eq!(
            replaced_by(&store, id).await,
            Some(*successor.as_uuid()),
            "the old row names its successor"
        );

        let purged = issuer
            .purge(Duration::from_secs(90 * 86_400))
            .await
            .unwrap();
        assert_eq!(purged.tokens, 1, "the token revoked 100 days ago");
        let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM apitoken_tokens ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert!(!left.contains(&Uuid::from_u128(0x5eed)), "{left:?}");
        assert_eq!(left.len(), 2, "the v1 token and its successor stay");
        let revocations: i64 = sqlx::query_scalar("SELECT count(*) FROM apitoken_revocations")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(revocations, 0, "the purged token's revocation went with it");

        // A schema from a version newer than this one is still refused.
        sqlx::query("UPDATE apitoken_meta SET value = '10' WHERE key = 'schema_version'")
            .execute(store.pool())
            .await
            .unwrap();
        let err = store.prepare(KeyFingerprint::Unkeyed).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 10,
                    supported: 9
                }
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn the_hash_key_is_bound_to_the_database() {
    in_schema(
        "the_hash_key_is_bound_to_the_database",
        |schema| async move {
            let store = schema.store().await;
            store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
            let other = HashKey::from_bytes([0xaa; 32]).fingerprint();
            let err = schema.store().await.prepare(other).await.unwrap_err();
            assert!(matches!(err, StoreError::HashKeyMismatch { .. }), "{err:?}");
        },
    )
    .await;
}

/// Issuers on separate pools race against one limit: it is never exceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_issuance_on_many_connections_never_exceeds_the_limit() {
    in_schema("concurrent_issuance_limit", |schema| async move {
        let limit = NonZeroU32::new(5).unwrap();
        let issuers: Vec<_> = futures_util::future::join_all((0..3).map(|_| async {
            Arc::new(
                TokenIssuer::builder(schema.store().await)
                    .max_live_tokens_per_environment(limit)
                    .build(),
            )
        }))
        .await;
        for _ in 0..3 {
            let env = new_environment();
            let tasks: Vec<_> = (0..30)
                .map(|i| {
                    let issuer = issuers[i % issuers.len()].clone();
                    tokio::spawn(async move { issuer.issue(env, alice(), request("race")).await })
                })
                .collect();
            let mut accepted = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Ok(_) => accepted += 1,
                    Err(Error::Store(StoreError::LimitReached { .. })) => {}
                    Err(e) => panic!("unexpected: {e}"),
                }
            }
            assert_eq!(accepted, 5);
            let listed = issuers[0].list(env, Default::default()).await.unwrap();
            assert_eq!(listed.tokens.len(), 5);
        }
    })
    .await;
}

/// Rotations racing on one predecessor: exactly one wins, and a failed one leaves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_of_one_token_are_all_or_nothing() {
    in_schema("concurrent_rotations", |schema| async move {
        let a = Arc::new(
            TokenIssuer::builder(schema.store().await)
                .max_live_tokens_per_environment(NonZeroU32::new(1).unwrap())
                .build(),
        );
        let b = Arc::new(
            TokenIssuer::builder(schema.store().await)
                .max_live_tokens_per_environment(NonZeroU32::new(1).unwrap())
                .build(),
        );
        let env = new_environment();
        let old = a.issue(env, alice(), request("rotating")).await.unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let issuer = if i % 2 == 0 { a.clone() } else { b.clone() };
                let id = old.token.id;
                tokio::spawn(async move {
                    issuer
                        .rotate(env, support::operator(), id, Duration::ZERO)
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => won += 1,
                // A loser whose clock read came before the winner's expiry still sees a
                // live predecessor, already rotated.
                Err(
                    Error::Store(StoreError::NotLive { .. })
                    | Error::Store(StoreError::AlreadyRotated { .. })
                    | Error::Store(StoreError::LimitReached { .. }),
                ) => {}
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        assert_eq!(won, 1, "one rotation wins");
        let listed = a.list(env, Default::default()).await.unwrap();
        assert_eq!(
            listed.tokens.len(),
            2,
            "the predecessor and one successor, nothing else"
        );
    })
    .await;
}

/// Rotations with a grace period and no limit, racing on one predecessor from several
/// pools: only the row lock and the rotation mark stop a second successor. Exactly one
/// wins; every other is refused as already rotated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_in_the_grace_period_give_one_successor() {
    in_schema("concurrent_rotations_grace", |schema| async move {
        let issuers: Vec<_> = futures_util::future::join_all(
            (0..3).map(|_| async { Arc::new(TokenIssuer::new(schema.store().await)) }),
        )
        .await;
        for _ in 0..3 {
            let env = new_environment();
            let old = issuers[0]
                .issue(env, alice(), request("rotating"))
                .await
                .unwrap();
            let tasks: Vec<_> = (0..16)
                .map(|i| {
                    let issuer = issuers[i % issuers.len()].clone();
                    let id = old.token.id;
                    tokio::spawn(async move {
                        issuer
                            .rotate(env, support::operator(), id, Duration::from_secs(600))
                            .await
                    })
                })
                .collect();
            let mut won = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Ok(_) => won += 1,
                    Err(Error::Store(StoreError::AlreadyRotated { id, successor })) => {
                        assert_eq!(id, old.token.id);
                        assert!(successor.is_some(), "the winner is named");
                    }
                    Err(e) => panic!("unexpected: {e}"),
                }
            }
            assert_eq!(won, 1, "one rotation wins");
            let listed = issuers[0].list(env, Default::default()).await.unwrap();
            assert_eq!(
                listed.tokens.len(),
                2,
                "the predecessor and one successor, nothing else"
            );
        }
    })
    .await;
}

/// Once revoke has returned, no connection authenticates the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_is_seen_by_every_connection_at_once() {
    in_schema("revoke_is_seen_by_every_connection", |schema| async move {
        let a = TokenIssuer::new(schema.store().await);
        let b = Arc::new(TokenIssuer::new(schema.store().await));
        let env = new_environment();
        for _ in 0..10 {
            let issued = a.issue(env, alice(), request("x")).await.unwrap();
            let secret = issued.raw.expose_secret().to_owned();
            b.authenticate(&secret).await.unwrap();
            a.revoke(env, support::operator(), issued.token.id)
                .await
                .unwrap();
            let checks: Vec<_> = (0..8)
                .map(|_| {
                    let (b, secret) = (b.clone(), secret.clone());
                    tokio::spawn(async move { b.authenticate(&secret).await })
                })
                .collect();
            for c in checks {
                assert!(matches!(c.await.unwrap(), Err(Error::Revoked { .. })));
            }
        }
    })
    .await;
}

/// Through a proxy that is cut and restored: authentication fails closed with a
/// store-unavailable error while the database is unreachable, and works again by itself
/// once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_fails_closed_and_recovers_when_the_database_comes_back() {
    in_schema("faults_through_a_proxy", |schema| async move {
        let direct = TokenIssuer::new(schema.store().await);
        let env = new_environment();
        let issued = direct.issue(env, alice(), request("x")).await.unwrap();
        let secret = issued.raw.expose_secret();

        let (proxy, via_proxy) = schema
            .through_proxy(PostgresStore::pool_options().acquire_timeout(Duration::from_secs(1)))
            .await;
        let issuer = TokenIssuer::new(via_proxy);
        issuer.authenticate(secret).await.unwrap();

        for _ in 0..2 {
            proxy.cut();
            for _ in 0..3 {
                match issuer.authenticate(secret).await {
                    Err(Error::Store(StoreError::Unavailable { .. })) => {}
                    other => panic!("expected a store-unavailable error, got {other:?}"),
                }
            }
            let err = issuer.authenticate(secret).await.unwrap_err();
            assert_eq!(apitoken::http::status(&err), 503);
            assert!(
                !err.is_unauthenticated(),
                "an outage is not an authentication failure"
            );
            proxy.restore();
            let who = issuer
                .authenticate(secret)
                .await
                .expect("recovers once the database is back");
            assert_eq!(who.token_id(), issued.token.id);
        }
        // A connection cut in the middle of use is replaced too.
        proxy.cut();
        proxy.restore();
        issuer.authenticate(secret).await.unwrap();
        // The revocation made directly is seen through the recovered pool.
        direct
            .revoke(env, support::operator(), issued.token.id)
            .await
            .unwrap();
        assert!(matches!(
            issuer.authenticate(secret).await,
            Err(Error::Revoked { .. })
        ));
    })
    .await;
}

/// Connections are not pinged before use (a round trip saved per operation), so a pooled
/// connection the network dropped while it sat idle is handed out broken. Its first
/// statement fails with an I/O error and is retried on another connection: reads and
/// writes right after the cut succeed, and nothing is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_while_idle_are_replaced_without_an_error() {
    in_schema("dropped_while_idle", |schema| async move {
        let (proxy, store) = schema
            .through_proxy(PostgresStore::pool_options().min_connections(3))
            .await;
        let issuer = TokenIssuer::new(store.clone());
        let env = new_environment();
        let issued = issuer.issue(env, alice(), request("x")).await.unwrap();
        let secret = issued.raw.expose_secret();
        for round in 0..3 {
            // Every pooled connection is idle and was tested when released; then the
            // network drops them all, and comes back at once.
            tokio::time::sleep(Duration::from_millis(200)).await;
            proxy.cut();
            proxy.restore();
            match round {
                0 => {
                    let who = issuer.authenticate(secret).await.expect("a read recovers");
                    assert_eq!(who.token_id(), issued.token.id);
                }
                1 => {
                    issuer
                        .issue(env, alice(), request("y"))
                        .await
                        .expect("an insert recovers");
                }
                _ => {
                    issuer
                        .revoke(env, support::operator(), issued.token.id)
                        .await
                        .expect("an update recovers");
                }
            }
        }
        let page = issuer.list(env, PageRequest::first(10)).await.unwrap();
        assert_eq!(page.tokens.len(), 2, "the insert ran once");
        assert!(matches!(
            issuer.authenticate(secret).await,
            Err(Error::Revoked { .. })
        ));
    })
    .await;
}

/// The server runs an insert, and the connection breaks before its answer arrives: the
/// insert is retried on another connection, meets the row the first attempt wrote, and
/// succeeds. The token is there once, and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_whose_answer_is_lost_succeeds_once() {
    in_schema("insert_answer_lost", |schema| async move {
        let (proxy, store) = schema
            .through_proxy(PostgresStore::pool_options().max_connections(2))
            .await;
        let issuer = TokenIssuer::new(store.clone());
        let env = new_environment();
        proxy.lose_reply_holding(b"INSERT 0 1\0");
        let issued = issuer
            .issue(env, alice(), request("once"))
            .await
            .expect("the insert happened: issuing succeeds");
        let page = issuer.list(env, PageRequest::first(10)).await.unwrap();
        assert_eq!(page.tokens.len(), 1, "the token is there once");
        let who = issuer
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();
        assert_eq!(who.token_id(), issued.token.id);
    })
    .await;
}

/// Under a live-token limit issuing is a transaction. The server commits it and the
/// answer to `COMMIT` is lost: the retry, whose limit check waits for the first attempt's
/// transaction to end, finds the limit reached by that attempt's row, which is this
/// token's, and issuing succeeds, once. The limit counts the token once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_under_a_limit_whose_commit_answer_is_lost_succeeds_once() {
    in_schema("limited_commit_lost", |schema| async move {
        let (proxy, store) = schema
            .through_proxy(PostgresStore::pool_options().max_connections(2))
            .await;
        let issuer = TokenIssuer::builder(store)
            .max_live_tokens_per_environment(NonZeroU32::new(1).unwrap())
            .build();
        let env = new_environment();
        proxy.lose_reply_holding(b"COMMIT\0");
        let issued = issuer
            .issue(env, alice(), request("first"))
            .await
            .expect("the commit happened: issuing succeeds");
        let page = issuer.list(env, PageRequest::first(10)).await.unwrap();
        assert_eq!(page.tokens.len(), 1, "the token is there once");
        issuer
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();
        let second = issuer.issue(env, alice(), request("second")).await;
        assert!(
            matches!(second, Err(Error::Store(StoreError::LimitReached { .. }))),
            "one live token, the limit: {second:?}"
        );
    })
    .await;
}

/// The server commits a rotation and the answer to `COMMIT` is lost: the retry locks the
/// predecessor, finds this successor recorded on it, and rotating succeeds, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_commit_answer_is_lost_succeeds_once() {
    in_schema("rotation_commit_lost", |schema| async move {
        let (proxy, store) = schema
            .through_proxy(PostgresStore::pool_options().max_connections(2))
            .await;
        let issuer = TokenIssuer::new(store);
        let env = new_environment();
        let old = issuer.issue(env, alice(), request("old")).await.unwrap();
        proxy.lose_reply_holding(b"COMMIT\0");
        let grace = Duration::from_secs(600);
        let new = issuer
            .rotate(env, support::operator(), old.token.id, grace)
            .await
            .expect("the commit happened: rotating succeeds");
        let page = issuer.list(env, PageRequest::first(10)).await.unwrap();
        assert_eq!(page.tokens.len(), 2, "the predecessor and one successor");
        issuer.authenticate(new.raw.expose_secret()).await.unwrap();
        let in_grace = issuer.authenticate(old.raw.expose_secret()).await.unwrap();
        assert!(in_grace.expires_at().is_some(), "the grace period is set");
        let again = issuer.rotate(env, support::operator(), old.token.id, grace).await;
        assert!(
            matches!(
                again,
                Err(Error::Store(StoreError::AlreadyRotated { successor, .. })) if successor == Some(new.token.id)
            ),
            "{again:?}"
        );
    })
    .await;
}

/// The backend pids of every connection `pool` can hold (`max` of them), which all sit
/// idle in it afterwards. Each runs `then` (if any) after giving its pid.
async fn idle_backends(pool: &PgPool, max: usize, then: Option<&'static str>) -> Vec<i32> {
    let mut conns = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..max {
        let mut conn = pool.acquire().await.unwrap();
        pids.push(
            sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut *conn)
                .await
                .unwrap(),
        );
        if let Some(statement) = then {
            sqlx::query(statement).execute(&mut *conn).await.unwrap();
        }
        // Held until all are open, so that the pool opens `max` of them.
        conns.push(conn);
    }
    pids
}

/// The pool size of the stores whose connections the server closes below.
const DEAD_POOL: u32 = 3;

/// One store per kind of operation (a read, an issue under a limit, a rotation, a
/// revocation), each with a pool of `DEAD_POOL` connections, all open and idle, each of
/// which ran `then` (if any); and the backend pids of them all.
async fn stores_with_full_pools(
    options: PgConnectOptions,
    then: Option<&'static str>,
) -> (Vec<PostgresStore>, Vec<i32>) {
    let mut stores = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..4 {
        let store = PostgresStore::connect_with(
            options.clone(),
            PostgresStore::pool_options().max_connections(DEAD_POOL),
        )
        .await
        .unwrap();
        pids.extend(idle_backends(store.pool(), DEAD_POOL as usize, then).await);
        stores.push(store);
    }
    (stores, pids)
}

/// Issues the tokens the four operations of `every_operation_recovers` act on.
async fn tokens_to_act_on(store: &PostgresStore) -> (apitoken::EnvironmentId, [IssuedToken; 3]) {
    let issuer = TokenIssuer::new(store.clone());
    let env = new_environment();
    let issue = async |note| issuer.issue(env, alice(), request(note)).await.unwrap();
    let tokens = [
        issue("read").await,
        issue("rotated").await,
        issue("revoked").await,
    ];
    (env, tokens)
}

/// Every connection of every store in `stores` is dead (`dead` are their backend pids):
/// the first operation on each (a read, an issue under a limit, a rotation, a revocation)
/// succeeds, each write happened once, and then every connection the pools hand out
/// works: none of the dead ones was handed out again.
async fn every_operation_recovers(
    stores: &[PostgresStore],
    dead: &[i32],
    env: apitoken::EnvironmentId,
    tokens: &[IssuedToken; 3],
) {
    let issuers: Vec<_> = stores
        .iter()
        .map(|store| {
            TokenIssuer::builder(store.clone())
                .max_live_tokens_per_environment(NonZeroU32::new(10).unwrap())
                .build()
        })
        .collect();
    let [read, rotated, revoked] = tokens;
    let who = issuers[0]
        .authenticate(read.raw.expose_secret())
        .await
        .expect("a read recovers");
    assert_eq!(who.token_id(), read.token.id);
    issuers[1]
        .issue(env, alice(), request("new"))
        .await
        .expect("an issue under a limit recovers");
    let successor = issuers[2]
        .rotate(env, support::operator(), rotated.token.id, Duration::ZERO)
        .await
        .expect("a rotation recovers");
    issuers[3]
        .revoke(env, support::operator(), revoked.token.id)
        .await
        .expect("a revocation recovers");

    let page = issuers[0].list(env, PageRequest::first(10)).await.unwrap();
    assert_eq!(
        page.tokens.len(),
        5,
        "the three, the new one and one successor"
    );
    issuers[0]
        .authenticate(successor.raw.expose_secret())
        .await
        .unwrap();
    assert!(matches!(
        issuers[0].authenticate(revoked.raw.expose_secret()).await,
        Err(Error::Revoked { .. })
    ));
    for store in stores {
        // Straight on the pool, with no retry: a dead connection handed out again fails.
        let pids = idle_backends(store.pool(), DEAD_POOL as usize, None).await;
        assert!(
            pids.iter().all(|pid| !dead.contains(pid)),
            "{pids:?} {dead:?}"
        );
    }
}

/// The server ends the pool's idle sessions, as an administrator's `pg_terminate_backend`
/// or a restart does: it sends an error (57P01), then closes the connection. The next
/// operations meet the dead connections, are retried on others, and succeed; the dead
/// connections are closed, not handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_the_server_terminated_are_replaced_without_an_error() {
    in_schema("terminated_sessions", |schema| async move {
        let admin = schema.store().await;
        let (env, tokens) = tokens_to_act_on(&admin).await;
        let (stores, pids) = stores_with_full_pools(schema.options(), None).await;
        // Only this test's backends: other tests share the server. Waits (up to 5 s) until
        // each has exited.
        let terminated: Vec<bool> =
            sqlx::query_scalar("SELECT pg_terminate_backend(pid, 5000) FROM unnest($1::int[]) pid")
                .bind(&pids)
                .fetch_all(admin.pool())
                .await
                .unwrap();
        assert_eq!(terminated, vec![true; pids.len()]);
        every_operation_recovers(&stores, &pids, env, &tokens).await;
    })
    .await;
}

/// With `idle_session_timeout` the server ends a session idle for that long (57P05),
/// pooled connections included: after it, the next operations succeed.
///
/// The timeout is set on the pooled sessions only, after each gave its pid: set for every
/// connection, it would also end the replacements whenever a loaded machine leaves one
/// idle for a second before the last check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_ended_by_idle_session_timeout_are_replaced_without_an_error() {
    in_schema("idle_session_timeout", |schema| async move {
        let admin = schema.store().await;
        let (env, tokens) = tokens_to_act_on(&admin).await;
        let (stores, pids) =
            stores_with_full_pools(schema.options(), Some("SET idle_session_timeout = '1s'")).await;
        // The one real wait: the timeout is the server's.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        every_operation_recovers(&stores, &pids, env, &tokens).await;
    })
    .await;
}

/// A client stalled inside a transaction that holds an environment's lock (the one every
/// limit check and rotation in it takes) blocks that environment's issuers only for a
/// bound: a waiter fails after `lock_timeout` with `Unavailable` (not retried, which would
/// multiply the bound), and the server ends the stalled transaction after
/// `idle_in_transaction_session_timeout`, which frees the lock for the next issue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_transaction_holding_the_lock_blocks_issuers_only_for_a_bound() {
    in_schema("stalled_lock_holder", |schema| async move {
        let patient = schema.store().await;
        let lock = Duration::from_millis(300);
        let impatient = PostgresStore::connect_with_timeouts(
            schema.options(),
            PostgresStore::pool_options(),
            PostgresTimeouts::default().lock(lock),
        )
        .await
        .unwrap();
        let show = async |store: &PostgresStore, setting| -> String {
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
                .fetch_one(store.pool())
                .await
                .unwrap()
        };
        assert_eq!(show(&impatient, "lock_timeout").await, "300ms");
        assert_eq!(show(&patient, "lock_timeout").await, "5s");
        assert_eq!(
            show(&patient, "idle_in_transaction_session_timeout").await,
            "10s"
        );
        let limited = |store| {
            TokenIssuer::builder(store)
                .max_live_tokens_per_environment(NonZeroU32::new(5).unwrap())
                .build()
        };
        let (impatient, patient) = (limited(impatient), limited(patient));
        let env = new_environment();

        // The stalled client: it takes the environment's lock (the key the store derives
        // from the environment id) and sends nothing more.
        let mut stalled = sqlx::PgConnection::connect_with(
            &schema
                .options()
                .options([("idle_in_transaction_session_timeout", "1s")]),
        )
        .await
        .unwrap();
        let mut tx = sqlx::Connection::begin(&mut stalled).await.unwrap();
        let (hi, lo) = env.as_uuid().as_u64_pair();
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind((hi ^ lo) as i64)
            .execute(&mut *tx)
            .await
            .unwrap();

        let hang_guard = Duration::from_secs(20);
        let started = std::time::Instant::now();
        let refused = tokio::time::timeout(hang_guard, impatient.issue(env, alice(), request("a")))
            .await
            .expect("an issuer waiting for a stalled client's lock gives up");
        let waited = started.elapsed();
        let Err(err) = refused else {
            panic!("issued under a lock another transaction holds");
        };
        assert_eq!(apitoken::http::status(&err), 503, "retryable: {err}");
        assert!(
            matches!(err, Error::Store(StoreError::Unavailable { .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains("lock_timeout"), "{err}");
        assert!(
            waited >= lock && waited < lock * 5,
            "gave up after {waited:?}, lock_timeout {lock:?}: not retried"
        );

        // The server ends the stalled transaction after 1 s idle; a waiter with the default
        // lock_timeout (5 s) gets the lock then.
        let issued = tokio::time::timeout(hang_guard, patient.issue(env, alice(), request("b")))
            .await
            .expect("the lock is freed")
            .expect("issuing succeeds once the stalled transaction is ended");
        patient
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();
        let ended = sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap_err();
        let code = ended
            .as_database_error()
            .and_then(|db| db.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("25P03"), "{ended}");
    })
    .await;
}

/// A PostgreSQL error reads as the server's message and SQLSTATE, without the line of the
/// server's C source that raised it; the driver's whole error is still in the chain.
#[tokio::test]
async fn server_errors_read_without_the_servers_source_line() {
    in_schema("server_error_message", |schema| async move {
        // Not migrated: the table does not exist.
        let store = PostgresStore::connect_with(schema.options(), PostgresStore::pool_options())
            .await
            .unwrap();
        let err = store
            .find_by_hash(&TokenHasher::unkeyed().hash("dyn_x"))
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
        assert!(
            message.contains(r#"relation "apitoken_tokens" does not exist (SQLSTATE 42P01)"#),
            "{message}"
        );
        assert!(!message.contains(" at line "), "{message}");
        let mut chain = std::error::Error::source(&err);
        let mut driver = None;
        while let Some(e) = chain {
            driver = driver.or(e.downcast_ref::<sqlx::Error>());
            chain = e.source();
        }
        let db = driver
            .and_then(sqlx::Error::as_database_error)
            .expect("the driver's error is in the chain");
        let pg = db.downcast_ref::<sqlx::postgres::PgDatabaseError>();
        assert_eq!(pg.code(), "42P01");
        assert!(pg.line().is_some(), "every field the server sent is kept");
    })
    .await;
}

/// No row, read as text, holds a raw token or its random part.
#[tokio::test]
async fn nothing_secret_is_at_rest() {
    in_schema("nothing_secret_is_at_rest", |schema| async move {
        let store = schema.store().await;
        let issuer = TokenIssuer::new(store.clone());
        let env = new_environment();
        let mut secrets = Vec::new();
        for i in 0..20 {
            let issued = issuer
                .issue(env, alice(), request(&format!("t{i}")))
                .await
                .unwrap();
            secrets.push(issued.raw.expose_secret().to_owned());
        }
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT t::text || encode(t.hash, 'escape') FROM apitoken_tokens t")
                .fetch_all(store.pool())
                .await
                .unwrap();
        assert_eq!(rows.len(), 20);
        let all = rows.concat();
        for secret in &secrets {
            for piece in secret.as_bytes()[4..34].chunks(10) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert!(!all.contains(piece), "part of a secret is stored");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_not_a_panic() {
    let err = PostgresStore::connect_with(
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(1)
            .username("nobody"),
        PostgresStore::pool_options().acquire_timeout(Duration::from_secs(1)),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let _: &dyn TokenStore = &PostgresStore::from_pool(
        sqlx::postgres::PgPoolOptions::new().connect_lazy_with(PgConnectOptions::new()),
    );
}

/// With `postgres-tls`, against the server's own TLS (Debian's PostgreSQL has `ssl = on`
/// with a self-signed certificate for `localhost`): `require` encrypts and the store works
/// through it; `verify-full` accepts the server only with its certificate as the root and
/// under the name the certificate gives, and refuses it otherwise, with an error that is
/// not mistaken for an outage.
#[cfg(feature = "postgres-tls")]
#[tokio::test]
async fn tls_connections_are_encrypted_and_verified() {
    in_schema("tls_connections", |schema| async move {
        let plain = schema.store().await;
        let ssl: String = sqlx::query_scalar("SHOW ssl")
            .fetch_one(plain.pool())
            .await
            .unwrap();
        let cert_file: String = sqlx::query_scalar("SHOW ssl_cert_file")
            .fetch_one(plain.pool())
            .await
            .unwrap();
        assert_eq!(
            ssl, "on",
            "the test server has ssl = off: TLS cannot be tested against it; turn it on \
             (ssl = on, ssl_cert_file, ssl_key_file) or point APITOKEN_TEST_POSTGRES_URL at \
             a server that has it"
        );
        let connect = |options: PgConnectOptions| {
            PostgresStore::connect_with(options, PostgresStore::pool_options())
        };

        let encrypted = connect(schema.options().ssl_mode(PgSslMode::Require))
            .await
            .expect("sslmode=require connects");
        let in_tls: bool =
            sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(encrypted.pool())
                .await
                .unwrap();
        assert!(in_tls, "the connection is encrypted");
        let issuer = TokenIssuer::new(encrypted);
        let issued = issuer
            .issue(new_environment(), alice(), request("over TLS"))
            .await
            .unwrap();
        let who = issuer
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();
        assert_eq!(who.token_id(), issued.token.id);

        let verify = schema
            .options()
            .host("localhost")
            .ssl_mode(PgSslMode::VerifyFull);
        let trusted = std::fs::read(&cert_file).unwrap_or_else(|e| {
            panic!("the server's certificate {cert_file} must be readable here: {e}")
        });
        connect(verify.clone().ssl_root_cert_from_pem(trusted.clone()))
            .await
            .expect("verify-full with the server's certificate as the root connects");
        for (refused, why) in [
            (
                verify.clone(),
                "the public roots do not know a self-signed certificate",
            ),
            (
                verify
                    .clone()
                    .host("127.0.0.1")
                    .ssl_root_cert_from_pem(trusted),
                "the certificate does not name 127.0.0.1",
            ),
        ] {
            let err = connect(refused).await.expect_err(why);
            assert!(matches!(err, StoreError::Tls { .. }), "{why}: {err:?}");
            assert!(err.to_string().contains("certificate"), "{why}: {err}");
            assert_eq!(
                apitoken::http::status(&Error::from(err)),
                500,
                "not 503: retrying will not help"
            );
        }
    })
    .await;
}

/// `open_store` opens PostgreSQL from its URL, bound to the hash key by the builder's
/// checked step.
#[tokio::test]
async fn a_postgres_url_opens_a_store_that_prepare_binds_to_the_key() {
    in_schema("postgres_url_prepare", |schema| async move {
        let separator = if schema.url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{}{separator}options=-c%20search_path%3D{}",
            schema.url, schema.name
        );
        support::a_url_opens_a_store_bound_to_the_key(&url).await;
    })
    .await;
}

/// No error from a malformed or refused PostgreSQL URL repeats its password, whether it
/// comes from reading the URL or from the server it names (issue 21 §5: without the `//`,
/// the driver took `app:PASSWORD@host:port/app` for a database name, and the server's
/// "database … does not exist" repeated it).
#[tokio::test]
async fn no_error_from_a_bad_url_repeats_its_password() {
    let Some(url) = postgres_url("no_error_from_a_bad_url_repeats_its_password") else {
        return;
    };
    let options = PgConnectOptions::from_str(&url).unwrap();
    let (host, port) = (options.get_host().to_owned(), options.get_port());
    let database = options.get_database().unwrap_or("postgres").to_owned();
    let user = options.get_username().to_owned();
    const SECRET: &str = "pw-s3cr3t-9f2c";
    let urls = [
        // The role the test URL names exists: the server's answer is about the database.
        format!("postgres:app:{SECRET}@{host}:{port}/{database}?user={user}"),
        format!("postgres:apitoken_no_such_role:{SECRET}@{host}:{port}/{database}"),
        format!("postgresql:apitoken_no_such_role:{SECRET}@{host}:{port}/{database}"),
        format!("POSTGRES:apitoken_no_such_role:{SECRET}@{host}:{port}/{database}"),
        format!("postgres:/apitoken_no_such_role:{SECRET}@{host}:{port}/{database}"),
        format!(" postgres://apitoken_no_such_role:{SECRET}@{host}:{port}/{database}"),
        format!("postgres://app:{SECRET}@{host}:notaport/{database}"),
        format!("postgres://app:{SECRET}@{host}:{port}/{database}?sslmode=sometimes"),
        format!("postgres://app:{SECRET}@[::1/{database}"),
        format!("postgres://app:{SECRET}@{host}:1/{database}"),
        format!("postgres://apitoken_no_such_role:{SECRET}@{host}:{port}/{database}"),
        format!("postgres://app:{SECRET}@{host}:{port}/apitoken_no_such_database"),
        format!("postgres://{host}:{port}/{database}?user=apitoken_no_such_role&password={SECRET}"),
    ];
    for url in &urls {
        let direct = PostgresStore::connect(url).await.err();
        let opened = apitoken::open_store(url).await.err();
        for e in [direct, opened] {
            let e = e.unwrap_or_else(|| panic!("{url} was accepted"));
            let mut shown = format!("{e} {e:?}");
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                shown.push_str(&format!(" {inner} {inner:?}"));
                source = inner.source();
            }
            assert!(!shown.contains(SECRET), "{url}: {shown}");
        }
    }
    // Without the `//` it is refused before any connection, saying what to write.
    for url in &urls[..6] {
        let e = PostgresStore::connect(url).await.err().unwrap();
        assert!(
            matches!(&e, StoreError::InvalidUrl { reason } if reason.contains("postgres://")),
            "{url}: {e:?}"
        );
    }
}

/// The change feed survives its listening connection being killed: it says it was
/// interrupted, listens again, reads what was committed meanwhile, and goes on. The poll
/// interval is an hour, so every event here arrives through `LISTEN` or the catch-up that
/// follows a reconnection.
#[tokio::test]
async fn the_feed_reads_what_it_missed_after_its_listener_is_killed() {
    in_schema(
        "the_feed_reads_what_it_missed_after_its_listener_is_killed",
        |schema| async move {
            let name = schema.name.clone();
            let store = PostgresStore::connect_with(
                schema.options().application_name(&name),
                PostgresStore::pool_options(),
            )
            .await
            .unwrap()
            .feed_poll_interval(Duration::from_secs(3600));
            store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
            let issuer = TokenIssuer::new(store.clone());
            let env = new_environment();
            let mut feed = store.watch(store.event_head().await.unwrap()).unwrap();
            // Listening once it has caught up the first time.
            while !matches!(
                next_message(&mut feed).await,
                apitoken::FeedMessage::CaughtUp { .. }
            ) {}

            let first = issuer.issue(env, alice(), request("1")).await.unwrap();
            loop {
                match next_message(&mut feed).await {
                    apitoken::FeedMessage::Event(e) if e.token == first.token.id => break,
                    apitoken::FeedMessage::Event(_) | apitoken::FeedMessage::CaughtUp { .. } => {}
                    other => panic!("an undisturbed feed reports {other:?}"),
                }
            }

            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND query LIKE 'LISTEN%'",
            )
            .bind(&name)
            .fetch_all(store.pool())
            .await
            .unwrap();
            assert_eq!(killed, vec![true], "one listening connection, killed");
            let meanwhile = issuer.issue(env, alice(), request("2")).await.unwrap();

            let mut interrupted = false;
            loop {
                match next_message(&mut feed).await {
                    apitoken::FeedMessage::Interrupted { .. } => interrupted = true,
                    apitoken::FeedMessage::Event(e) if e.token == meanwhile.token.id => break,
                    _ => {}
                }
            }
            assert!(interrupted, "the feed said it was interrupted");

            // Listening again: a new change arrives without waiting for a poll.
            let after = issuer.issue(env, alice(), request("3")).await.unwrap();
            loop {
                if let apitoken::FeedMessage::Event(e) = next_message(&mut feed).await
                    && e.token == after.token.id
                {
                    break;
                }
            }
            store.close().await;
        },
    )
    .await;
}

/// The feed's next message; a feed that yields nothing for 30 s fails the test.
async fn next_message(feed: &mut apitoken::ChangeFeed) -> apitoken::FeedMessage {
    tokio::time::timeout(Duration::from_secs(30), feed.next())
        .await
        .expect("the feed is stuck")
        .expect("the feed ended")
}
