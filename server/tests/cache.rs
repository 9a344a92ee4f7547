//! The authentication cache, on by default, across servers over one database: a token
//! revoked, rotated or revoked with its creator through one server stops working on
//! another as soon as that server's change feed brings the event, on PostgreSQL and on
//! SQLite; with `--no-cache` the store is read on every request, as before. The feed's
//! interruptions are logged once and its recovery once.

mod support;

use apitoken::{KeyFingerprint, PostgresStore, SqliteStore, TokenStore};
use std::time::{Duration, Instant};
use support::{
    First, PgSchema, Server, TempDb, admin_scopes, alice, call_at, env_tokens, environment,
    issue_first, postgres_url, sqlite_store,
};

const READ: &str = "environment.apiTokens.read";
const WRITE: &str = "environment.apiTokens.write";

/// How long a change may take to reach another server before the test gives up: a guard
/// against a hang, not a measure (it takes milliseconds). The server that must see the
/// change trusts what it cached for far longer (`--cache-staleness-ms 60000`), so only
/// its feed can make it see the change within this.
const HANG_GUARD: Duration = Duration::from_secs(10);

/// What the server that must see changes from elsewhere is started with.
const TRUSTING: [&str; 2] = ["--cache-staleness-ms", "60000"];

/// The database under the servers, reached directly.
enum Db {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Db {
    /// Marks token `id` revoked behind every server's back: a write that appends no
    /// event, which no feed can report.
    async fn deactivate(&self, id: &str) {
        match self {
            Db::Sqlite(store) => {
                sqlx::query("UPDATE apitoken_tokens SET active = 0 WHERE lower(hex(id)) = ?")
                    .bind(id.replace('-', ""))
                    .execute(store.pool())
                    .await
                    .unwrap();
            }
            Db::Postgres(store) => {
                sqlx::query("UPDATE apitoken_tokens SET active = false WHERE id = $1::uuid")
                    .bind(id)
                    .execute(store.pool())
                    .await
                    .unwrap();
            }
        }
    }
}

/// `GET /verify` with `raw`: the status.
async fn verify(server: &Server, raw: &str) -> u16 {
    server
        .call("GET", "/verify")
        .bearer(raw)
        .send()
        .await
        .status
}

/// Asks `server` to verify `raw` until it answers `status`; fails after [`HANG_GUARD`].
async fn until(server: &Server, raw: &str, status: u16, what: &str) {
    let started = Instant::now();
    loop {
        let answered = verify(server, raw).await;
        if answered == status {
            return;
        }
        assert!(
            started.elapsed() < HANG_GUARD,
            "{what}: still {answered} after {HANG_GUARD:?}, not {status}; the server's log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (at most 30 s) until `server`'s log holds `text`.
async fn logged(server: &Server, text: &str) {
    let started = Instant::now();
    while !server.logs().contains(text) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no {text:?} in the log:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `POST` a token with `caller`: its raw token and id.
async fn create(server: &Server, caller: &str, scopes: &[&str]) -> First {
    support::create_token(server, caller, environment(), "cached", scopes).await
}

/// Three servers over one database: `writer` (all defaults) makes the changes,
/// `follower` (cached, started with [`TRUSTING`]) must see them through its feed, and
/// `uncached` (`--no-cache`) reads the store on every request.
async fn propagation(
    writer: &Server,
    follower: &Server,
    uncached: &Server,
    admin: &First,
    db: &Db,
) {
    let tokens = env_tokens(environment());
    let plain = create(writer, &admin.raw, &[READ]).await;
    let creator = create(writer, &admin.raw, &[READ, WRITE]).await;
    let delegated = create(writer, &creator.raw, &[READ]).await;
    let rotated = create(writer, &admin.raw, &[READ]).await;
    let hidden = create(writer, &admin.raw, &[READ]).await;
    // Each authenticates on the follower, which caches it.
    for token in [&plain, &creator, &delegated, &rotated, &hidden] {
        assert_eq!(verify(follower, &token.raw).await, 200);
    }
    assert_eq!(verify(uncached, &hidden.raw).await, 200);

    // The cache is on by default: a change no event reports (a write behind the servers'
    // backs) leaves the follower answering from its cache, which its feed vouches for,
    // while the uncached server reads the store and refuses at once.
    db.deactivate(&hidden.id).await;
    assert_eq!(verify(uncached, &hidden.raw).await, 401, "--no-cache reads");
    assert_eq!(
        verify(follower, &hidden.raw).await,
        200,
        "the follower answered from the store, not its cache"
    );

    // A revocation through the writer reaches the follower through the feed.
    writer
        .call("DELETE", &format!("{tokens}/{}", plain.id))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    // The writer and the uncached server refuse it at once (the writer's cache dropped it
    // before the revocation returned).
    assert_eq!(verify(writer, &plain.raw).await, 401);
    assert_eq!(verify(uncached, &plain.raw).await, 401);
    until(follower, &plain.raw, 401, "a revoked token").await;

    // So does the cascade: each token revoked with its creator has its own event.
    writer
        .call("DELETE", &format!("{tokens}/{}", creator.id))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    until(follower, &creator.raw, 401, "a revoked creator").await;
    until(
        follower,
        &delegated.raw,
        401,
        "a token revoked with its creator",
    )
    .await;

    // And a rotation without a grace period: the replaced token stops, its successor works.
    let successor = writer
        .call("POST", &format!("{tokens}/{}/rotate", rotated.id))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(201)
        .json()["token"]["rawToken"]
        .as_str()
        .unwrap()
        .to_owned();
    until(follower, &rotated.raw, 401, "a rotated token").await;
    assert_eq!(verify(follower, &successor).await, 200);
    assert_eq!(verify(follower, &admin.raw).await, 200);
}

/// The `listening` line says whether the cache is on.
fn assert_cache_logged(logs: &str, on: bool) {
    let listening = logs
        .lines()
        .find(|l| l.contains(" listening "))
        .unwrap_or_else(|| panic!("no listening line:\n{logs}"));
    assert_eq!(
        listening.contains("cache_ttl_seconds=60"),
        on,
        "{listening}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_server_through_the_feed_on_sqlite() {
    let db = TempDb::new("cache");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let path = db.path.to_str().unwrap();
    let writer = Server::start(&["--db", path], &[]);
    let follower = Server::start(&["--db", path, TRUSTING[0], TRUSTING[1]], &[]);
    let uncached = Server::start(&["--db", path], &[("APITOKEN_NO_CACHE", "1")]);
    propagation(
        &writer,
        &follower,
        &uncached,
        &admin,
        &Db::Sqlite(store.clone()),
    )
    .await;
    store.pool().close().await;
    for (server, cached) in [(writer, true), (follower, true), (uncached, false)] {
        let (status, logs) = server.terminate();
        assert!(status.success(), "{logs}");
        assert_cache_logged(&logs, cached);
        assert!(!logs.contains("event feed"), "{logs}");
    }
}

/// On PostgreSQL the follower also reaches the database through a proxy the test cuts:
/// its feed's interruption is logged once, its recovery once, and counted in
/// `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_every_server_through_the_feed_on_postgres() {
    let Some(url) = postgres_url("changes_reach_every_server_through_the_feed_on_postgres") else {
        return;
    };
    let schema = PgSchema::create(&url).await;
    let store = PostgresStore::connect(&schema.url).await.unwrap();
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let (_, upstream) = support::via(&schema.url, "127.0.0.1:1".parse().unwrap());
    let proxy = support::Proxy::start(upstream).await;
    let (proxied, _) = support::via(&schema.url, proxy.addr);

    let writer = Server::start(&[], &[("DATABASE_URL", schema.url.as_str())]);
    let follower = Server::start(
        &[
            "--database-url",
            proxied.as_str(),
            TRUSTING[0],
            TRUSTING[1],
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let uncached = Server::start(
        &["--no-cache", "--metrics-listen", "127.0.0.1:0"],
        &[("DATABASE_URL", schema.url.as_str())],
    );
    propagation(
        &writer,
        &follower,
        &uncached,
        &admin,
        &Db::Postgres(store.clone()),
    )
    .await;

    let metrics = |server: &Server| {
        let logs = server.logs();
        let address = logs
            .lines()
            .find_map(|l| {
                l.split("address=")
                    .nth(1)
                    .filter(|_| l.contains("metrics at"))
            })
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no metrics address in the log:\n{logs}"))
            .parse()
            .unwrap();
        async move {
            call_at(address, "GET", "/metrics")
                .send()
                .await
                .expect(200)
                .text()
        }
    };
    let text = metrics(&follower).await;
    assert!(
        text.contains("\napitoken_event_feed_lag_seconds "),
        "{text}"
    );
    assert!(
        text.contains("\napitoken_event_feed_interruptions_total 0\n"),
        "{text}"
    );
    let text = metrics(&uncached).await;
    assert!(
        !text.contains("apitoken_event_feed"),
        "no feed without a cache: {text}"
    );

    // The follower loses the database, then finds it again.
    proxy.cut();
    logged(&follower, "event feed interrupted").await;
    proxy.restore();
    logged(&follower, "event feed caught up again").await;
    // Changes made meanwhile, or after, still arrive.
    let late = create(&writer, &admin.raw, &[READ]).await;
    until(
        &follower,
        &late.raw,
        200,
        "a token issued after the interruption",
    )
    .await;
    writer
        .call(
            "DELETE",
            &format!("{}/{}", env_tokens(environment()), late.id),
        )
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    until(
        &follower,
        &late.raw,
        401,
        "a token revoked after the interruption",
    )
    .await;
    let text = metrics(&follower).await;
    assert!(
        text.contains("\napitoken_event_feed_interruptions_total 1\n"),
        "{text}"
    );

    store.pool().close().await;
    let (status, logs) = follower.terminate();
    assert!(status.success(), "{logs}");
    assert_cache_logged(&logs, true);
    assert_eq!(logs.matches("event feed interrupted").count(), 1, "{logs}");
    assert!(
        logs.contains("cached entries are trusted for at most 60 s until it catches up"),
        "{logs}"
    );
    assert_eq!(
        logs.matches("event feed caught up again").count(),
        1,
        "{logs}"
    );
    assert!(!logs.contains(&proxied), "the database URL is in the logs");
    for (server, cached) in [(writer, true), (uncached, false)] {
        let (status, logs) = server.terminate();
        assert!(status.success(), "{logs}");
        assert_cache_logged(&logs, cached);
        // Neither lost touch, and a shutdown is no interruption.
        assert!(!logs.contains("event feed"), "{logs}");
    }
    schema.drop().await;
}
