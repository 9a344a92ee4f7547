//! `SqliteStore` on temporary files: the conformance suite, migrations, durability
//! settings, two writers at once, and nothing secret at rest.
#![cfg(all(
    any(feature = "sqlite", feature = "sqlite-unbundled"),
    feature = "conformance"
))]

mod support;

use apitoken::conformance::{self, base_time, new_environment, sample_token};
use apitoken::{
    Creator, EnvironmentId, Error, IssueRequest, KeyFingerprint, Limits, Note, SqliteStore,
    StoreError, TokenFormat, TokenHasher, TokenId, TokenIssuer, TokenStore, UserId,
};
use chrono::{TimeDelta, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};
use std::num::NonZeroU32;
use std::sync::Arc;
use support::TempDb;
use uuid::Uuid;

async fn open(db: &TempDb) -> SqliteStore {
    let store = SqliteStore::open(&db.path).await.unwrap();
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    store
}

fn alice() -> Creator {
    Creator::new(UserId::from_uuid(Uuid::from_u128(0xa11ce)))
}

fn request(note: &str) -> IssueRequest {
    IssueRequest::new(Note::new(note).unwrap())
}

#[tokio::test]
async fn sqlite_file_passes_the_conformance_suite() {
    let db = TempDb::new("apitoken_conformance");
    conformance::run_all(&open(&db).await).await;
}

#[tokio::test]
async fn sqlite_in_memory_passes_the_conformance_suite() {
    // One connection: each in-memory connection would be its own database.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    let store = SqliteStore::from_pool(pool);
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn durability_settings_are_wal_and_synchronous_full() {
    let db = TempDb::new("apitoken_pragmas");
    let store = open(&db).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(sync, 2, "synchronous = FULL");
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(busy, 5000);
}

#[tokio::test]
async fn migrate_is_idempotent_and_tokens_survive_reopening() {
    let db = TempDb::new("apitoken_migrate");
    let store = SqliteStore::open(&db.path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 0);
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 8);
    let issuer = TokenIssuer::new(store);
    let issued = issuer
        .issue(new_environment(), alice(), request("kept"))
        .await
        .unwrap();
    drop(issuer);

    let reopened = open(&db).await;
    let issuer = TokenIssuer::new(reopened);
    let who = issuer
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap();
    assert_eq!(who.token_id(), issued.token.id);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let db = TempDb::new("apitoken_newer");
    let store = open(&db).await;
    sqlx::query("UPDATE apitoken_meta SET value = '99' WHERE key = 'schema_version'")
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.prepare(KeyFingerprint::Unkeyed).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                supported: 8
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade apitoken"), "{err}");
    let err = store.check(KeyFingerprint::Unkeyed).await.unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err:?}"
    );
}

/// The schema exactly as version 1 of this library created it (its only migration, and
/// the table `migrate` created before it), copied rather than taken from the library, so
/// that the upgrade is tested from what shipped.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS apitoken_meta (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE apitoken_tokens (
    id BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    environment_id BLOB NOT NULL CHECK (length(environment_id) = 16),
    checksum TEXT NOT NULL,
    created_by_id BLOB NOT NULL,
    created_by_alias TEXT,
    created_by_first_name TEXT,
    created_by_last_name TEXT,
    created_by_email TEXT,
    created_at INTEGER NOT NULL,
    active INTEGER NOT NULL,
    note TEXT NOT NULL,
    scopes TEXT NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX apitoken_tokens_hash ON apitoken_tokens (hash);
CREATE INDEX apitoken_tokens_environment_id ON apitoken_tokens (environment_id, id);
CREATE INDEX apitoken_tokens_environment_created ON apitoken_tokens (environment_id, created_at, id);
INSERT INTO apitoken_meta (key, value) VALUES ('schema_version', '1');
";

/// The `replaced_by` column of token `id`.
async fn replaced_by(store: &SqliteStore, id: TokenId) -> Option<Vec<u8>> {
    sqlx::query_scalar("SELECT replaced_by FROM apitoken_tokens WHERE id = ?")
        .bind(id.as_uuid().as_bytes().as_slice())
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// A database file written by version 1 (schema version 1, one token, the hash key bound)
/// is migrated to version 2 in place: its token still authenticates, can be rotated once,
/// and not twice.
#[tokio::test]
async fn a_version_1_database_is_upgraded_and_its_tokens_rotate_once() {
    let db = TempDb::new("apitoken_v1");
    let env = new_environment();
    let raw = TokenFormat::dynamic().generate(&mut rand::rng());
    let hasher = TokenHasher::unkeyed();
    let created_at = Utc::now() - TimeDelta::days(1);
    let id = TokenId::generate(created_at, &mut rand::rng());
    {
        let pool = SqlitePool::connect_with(
            SqliteConnectOptions::new()
                .filename(&db.path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .unwrap();
        sqlx::raw_sql(SCHEMA_V1).execute(&pool).await.unwrap();
        sqlx::query("INSERT INTO apitoken_meta (key, value) VALUES ('hash_key_fingerprint', ?)")
            .bind(hasher.fingerprint().to_string())
            .execute(&pool)
            .await
            .unwrap();
        // Version 1's columns and encodings: ids as 16-byte blobs, times in microseconds.
        sqlx::query(
            "INSERT INTO apitoken_tokens (id, hash, environment_id, checksum, created_by_id, \
             created_by_alias, created_by_first_name, created_by_last_name, created_by_email, \
             created_at, active, note, scopes, expires_at, last_used_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, 'alice', NULL, NULL, NULL, ?, 1, 'from v1', \
             'environment.apiTokens.read', NULL, NULL, NULL)",
        )
        .bind(id.as_uuid().as_bytes().as_slice())
        .bind(hasher.hash(raw.expose_secret()).as_bytes().as_slice())
        .bind(env.as_uuid().as_bytes().as_slice())
        .bind(raw.checksum().as_str())
        .bind(Uuid::from_u128(0xa11ce).as_bytes().as_slice())
        .bind(created_at.timestamp_micros())
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }

    let store = SqliteStore::open(&db.path).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 1);
    // Not ready until prepared: a readiness probe says so, reading only.
    let unready = store.check(KeyFingerprint::Unkeyed).await.unwrap_err();
    assert!(
        matches!(
            unready,
            StoreError::NotPrepared {
                found: 1,
                current: 8
            }
        ),
        "{unready:?}"
    );
    assert_eq!(store.schema_version().await.unwrap(), 1);
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 8);
    store.check(KeyFingerprint::Unkeyed).await.unwrap();
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    assert_eq!(store.schema_version().await.unwrap(), 8);
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
    let old = issuer.get(env, support::operator(), id).await.unwrap();
    assert_eq!(old.note.as_str(), "from v1");
    assert_eq!(
        old.created_at.timestamp_micros(),
        created_at.timestamp_micros()
    );

    let successor = support::rotates_once(&issuer, env, id, &raw).await;
    assert_eq!(
        replaced_by(&store, id).await,
        Some(successor.as_uuid().as_bytes().to_vec()),
        "the old row names its successor"
    );

    // A database from a version newer than this one is still refused.
    sqlx::query("UPDATE apitoken_meta SET value = '9' WHERE key = 'schema_version'")
        .execute(store.pool())
        .await
        .unwrap();
    let err = store.prepare(KeyFingerprint::Unkeyed).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 9,
                supported: 8
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_hash_key_is_bound_to_the_database() {
    let db = TempDb::new("apitoken_key");
    let store = SqliteStore::open(&db.path).await.unwrap();
    let key: KeyFingerprint = "key:0011223344556677".parse().unwrap();
    store.prepare(key).await.unwrap();
    store.prepare(key).await.unwrap();
    let err = store.prepare(KeyFingerprint::Unkeyed).await.unwrap_err();
    match &err {
        StoreError::HashKeyMismatch { stored, given } => {
            assert_eq!(*stored, key);
            assert_eq!(*given, KeyFingerprint::Unkeyed);
        }
        other => panic!("expected HashKeyMismatch, got {other:?}"),
    }
    assert!(
        err.to_string().contains("use the original hash key"),
        "{err}"
    );
}

#[tokio::test]
async fn opening_an_unreachable_path_is_unavailable_not_a_panic() {
    let err = SqliteStore::open("/nonexistent-directory/apitoken/x.db")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the driver error is kept"
    );
}

/// Two stores (two pools, so two connections at least) on one file: concurrent issuance
/// never exceeds the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_issuing_at_once_never_exceed_the_limit() {
    let db = TempDb::new("apitoken_limit");
    let a = Arc::new(
        TokenIssuer::builder(open(&db).await)
            .max_live_tokens_per_environment(NonZeroU32::new(4).unwrap())
            .build(),
    );
    let b = Arc::new(
        TokenIssuer::builder(open(&db).await)
            .max_live_tokens_per_environment(NonZeroU32::new(4).unwrap())
            .build(),
    );
    for _ in 0..3 {
        let env = new_environment();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let issuer = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move { issuer.issue(env, alice(), request("race")).await })
            })
            .collect();
        let mut accepted = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => accepted += 1,
                Err(Error::Store(StoreError::LimitReached { limit: 4, .. })) => {}
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        assert_eq!(accepted, 4);
    }
}

/// Revoked through one connection, refused through every other at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_on_one_connection_is_seen_by_the_other() {
    let db = TempDb::new("apitoken_revoke");
    let a = TokenIssuer::new(open(&db).await);
    let b = TokenIssuer::new(open(&db).await);
    let env = new_environment();
    for _ in 0..10 {
        let issued = a.issue(env, alice(), request("x")).await.unwrap();
        b.authenticate(issued.raw.expose_secret()).await.unwrap();
        a.revoke(env, support::operator(), issued.token.id)
            .await
            .unwrap();
        let err = b
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Revoked { .. }), "{err:?}");
    }
}

/// A second writer waits for the busy timeout instead of failing at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_waits_for_the_first() {
    let db = TempDb::new("apitoken_busy");
    let holder = open(&db).await;
    let writer = open(&db).await;
    let tx = holder.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    let env = new_environment();
    let pending = tokio::spawn(async move {
        writer
            .insert(
                sample_token(env, base_time()),
                Limits {
                    max_live: NonZeroU32::new(10),
                    ..Limits::NONE
                },
            )
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "the second writer gave up instead of waiting"
    );
    tx.commit().await.unwrap();
    pending
        .await
        .unwrap()
        .expect("the second writer succeeds once the lock is free");
}

/// The database file and its WAL hold neither a raw token nor its random part.
#[tokio::test]
async fn nothing_secret_is_at_rest() {
    let db = TempDb::new("apitoken_secret");
    let issuer = TokenIssuer::new(open(&db).await);
    let env = EnvironmentId::from_uuid(Uuid::from_u128(9));
    let mut secrets = Vec::new();
    for i in 0..20 {
        let issued = issuer
            .issue(env, alice(), request(&format!("t{i}")))
            .await
            .unwrap();
        secrets.push(issued.raw.expose_secret().to_owned());
    }
    let mut rotated = issuer
        .rotate(
            env,
            support::operator(),
            issuer.list(env, Default::default()).await.unwrap().tokens[0].id,
            Default::default(),
        )
        .await
        .unwrap();
    secrets.push(rotated.raw.expose_secret().to_owned());
    rotated.token.note = Note::new("x").unwrap();
    drop(issuer);
    let bytes = db.bytes_on_disk();
    assert!(bytes.len() > 4096, "read the database");
    for secret in &secrets {
        let random = &secret.as_bytes()[4..34];
        assert!(
            !bytes.windows(random.len()).any(|w| w == random),
            "a random part is on disk"
        );
        // Not even a third of it.
        for piece in random.chunks(10) {
            assert!(
                !bytes.windows(piece.len()).any(|w| w == piece),
                "part of a secret is on disk"
            );
        }
    }
}

/// The token's `last_used_at` as written in the file, read on a connection of its own.
async fn last_used_on_disk(db: &TempDb, id: TokenId) -> Option<i64> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&db.path)
            .read_only(true),
    )
    .await
    .unwrap();
    let at = sqlx::query_scalar("SELECT last_used_at FROM apitoken_tokens WHERE id = ?")
        .bind(id.as_uuid())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    at
}

/// The token's `last_used_ip` as written in the file, read on a connection of its own.
async fn last_used_ip_on_disk(db: &TempDb, id: TokenId) -> Option<String> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect_with(
        &SqliteConnectOptions::new()
            .filename(&db.path)
            .read_only(true),
    )
    .await
    .unwrap();
    let ip = sqlx::query_scalar("SELECT last_used_ip FROM apitoken_tokens WHERE id = ?")
        .bind(id.as_uuid())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    ip
}

/// The background flush writes each buffered last use with its own address: the newest
/// use buffered wins both columns, an older one recorded after it changes neither, and a
/// newer use without an address clears the address.
#[tokio::test]
async fn the_flush_writes_each_time_with_its_address() {
    let db = TempDb::new("apitoken_last_use_address");
    let store = open(&db).await;
    let issuer = TokenIssuer::new(store.clone());
    let issued = issuer
        .issue(new_environment(), alice(), request("x"))
        .await
        .unwrap();
    let id = issued.token.id;
    let at = |s: i64| base_time() + TimeDelta::seconds(s);
    let ip = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
    store
        .record_last_use(id, at(10), ip("198.51.100.7"))
        .await
        .unwrap();
    store
        .record_last_use(id, at(20), ip("2001:db8::7"))
        .await
        .unwrap();
    store
        .record_last_use(id, at(15), ip("203.0.113.1"))
        .await
        .unwrap();
    assert_eq!(
        last_used_on_disk(&db, id).await,
        None,
        "buffered, not written"
    );
    store.flush_last_use().await.unwrap();
    assert_eq!(
        last_used_on_disk(&db, id).await,
        Some(at(20).timestamp_micros())
    );
    assert_eq!(
        last_used_ip_on_disk(&db, id).await.as_deref(),
        Some("2001:db8::7")
    );
    // An older use buffered after the flush changes nothing on disk either.
    store
        .record_last_use(id, at(5), ip("192.0.2.5"))
        .await
        .unwrap();
    store.flush_last_use().await.unwrap();
    assert_eq!(
        last_used_ip_on_disk(&db, id).await.as_deref(),
        Some("2001:db8::7")
    );
    store.record_last_use(id, at(30), None).await.unwrap();
    store.flush_last_use().await.unwrap();
    assert_eq!(
        last_used_on_disk(&db, id).await,
        Some(at(30).timestamp_micros())
    );
    assert_eq!(last_used_ip_on_disk(&db, id).await, None);
    store.close().await;
}

/// A store whose writes would wait a minute for the write lock, so that an
/// authentication that waited for it could not go unnoticed.
async fn patient_store(db: &TempDb) -> SqliteStore {
    let options = SqliteConnectOptions::new()
        .filename(&db.path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(std::time::Duration::from_secs(60));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(60))
        .connect_with(options)
        .await
        .unwrap();
    let store = SqliteStore::from_pool(pool);
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    store
}

/// While another connection holds the write lock, authentication (which records last use)
/// answers without waiting for it; the last use reaches the file once the lock is free and
/// the store is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_never_waits_for_a_writer() {
    use sqlx::Connection;
    let db = TempDb::new("apitoken_reader_vs_writer");
    let issuer = TokenIssuer::new(patient_store(&db).await);
    let env = new_environment();
    let issued = issuer.issue(env, alice(), request("x")).await.unwrap();
    let mut holder =
        sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&db.path))
            .await
            .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();
    // A hang guard only (the store would wait 60 s): no timing is asserted.
    let principal = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        issuer.authenticate(issued.raw.expose_secret()),
    )
    .await
    .expect("authentication waited for the writer")
    .unwrap();
    assert_eq!(principal.token_id(), issued.token.id);
    // Reads see the buffered last use, so the issuer does not record it again.
    let token = issuer
        .get(env, support::operator(), issued.token.id)
        .await
        .unwrap();
    assert!(token.last_used_at.is_some());
    assert_eq!(last_used_on_disk(&db, issued.token.id).await, None);
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    issuer.store().close().await;
    assert_eq!(
        last_used_on_disk(&db, issued.token.id).await,
        token.last_used_at.map(|t| t.timestamp_micros())
    );
}

/// Without `close`, the background task writes last use within about a second.
#[tokio::test]
async fn last_use_is_written_in_the_background() {
    let db = TempDb::new("apitoken_last_use_flush");
    let issuer = TokenIssuer::new(open(&db).await);
    let env = new_environment();
    let issued = issuer.issue(env, alice(), request("x")).await.unwrap();
    issuer
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap();
    let written = async {
        while last_used_on_disk(&db, issued.token.id).await.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), written)
        .await
        .expect("the last use was never written");
}

/// The flush task ends when every clone of the store is dropped: it keeps neither itself
/// nor the connections alive. Seen from outside: SQLite removes the `-wal` file when the
/// last connection to the database closes.
#[tokio::test]
async fn dropping_the_store_ends_its_flush_task() {
    let db = TempDb::new("apitoken_last_use_task");
    let issuer = TokenIssuer::new(open(&db).await);
    let issued = issuer
        .issue(new_environment(), alice(), request("x"))
        .await
        .unwrap();
    issuer
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap();
    let wal = std::path::PathBuf::from(format!("{}-wal", db.path.display()));
    assert!(wal.exists());
    drop(issuer);
    let closed = async {
        while wal.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), closed)
        .await
        .expect("a connection outlived the store");
}

/// `open_store` opens SQLite from its URL (the file it names), bound to the hash key by
/// the builder's checked step.
#[tokio::test]
async fn a_sqlite_url_opens_a_store_that_prepare_binds_to_the_key() {
    let db = TempDb::new("apitoken_url");
    support::a_url_opens_a_store_bound_to_the_key(&format!("sqlite://{}", db.path.display())).await;
    assert!(db.path.exists(), "the URL names the file");
}

/// Deleting a revoked token again (six clients retrying a DELETE, say) is one read: it
/// never takes the write lock, so it neither waits for another writer nor makes other
/// writers wait (issue 17: re-revoking ran the whole cascade again under the lock). Here
/// another connection holds the write lock throughout, and the re-revocation still
/// answers, with nothing more revoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_revoked_token_never_waits_for_the_write_lock() {
    let db = TempDb::new("apitoken_rerevoke");
    let store = open(&db).await;
    let env = new_environment();
    let token = sample_token(env, base_time());
    let child = conformance::delegated_token(env, token.token.id, base_time());
    store.insert(token.clone(), Limits::NONE).await.unwrap();
    store.insert(child.clone(), Limits::NONE).await.unwrap();
    let first = store
        .revoke(
            env,
            token.token.id,
            base_time(),
            apitoken::Actor::User(apitoken::UserId::from_uuid(uuid::Uuid::nil())),
        )
        .await
        .unwrap();
    assert_eq!(first.cascade, vec![child.token.id]);

    let holder = open(&db).await;
    let lock = holder.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    let again = store
        .revoke(
            env,
            token.token.id,
            base_time() + TimeDelta::hours(1),
            apitoken::Actor::User(apitoken::UserId::from_uuid(uuid::Uuid::nil())),
        )
        .await
        .expect("a re-revocation does not wait for the write lock");
    assert_eq!(again.token, first.token, "nothing changed");
    assert!(again.cascade.is_empty(), "nothing more revoked");
    drop(lock);
    holder.close().await;
    store.close().await;
}
