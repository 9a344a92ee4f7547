//! The reference API end to end: the real `apitoken-server` binary on a loopback port,
//! driven over HTTP. The whole lifecycle on SQLite and on PostgreSQL, every error status
//! (a test for each), concurrent creation against the live-token limit, and the OpenAPI
//! description checked against real answers.

mod support;

use apitoken::http::UNAUTHORIZED_MESSAGE;
use apitoken::{
    HashKey, IssueRequest, KeyFingerprint, ManualClock, Note, PostgresStore, SqliteStore,
    TokenFormat, TokenIssuer, TokenStore,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use support::{
    First, PgSchema, Reply, Server, TempDb, admin_scopes, alice, bob, env_tokens, environment, ids,
    issue_first, issue_reader, other_environment, postgres_url, sqlite_store,
};

const READ: &str = "environment.apiTokens.read";
const WRITE: &str = "environment.apiTokens.write";

fn keys(object: &Value) -> BTreeSet<String> {
    object.as_object().unwrap().keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn assert_unauthorized(reply: Reply) {
    let reply = reply.expect(401);
    assert_eq!(reply.json(), json!({ "error": UNAUTHORIZED_MESSAGE }));
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
}

fn assert_unprocessable(reply: Reply, code: &str) -> Value {
    let body = reply.expect(422).json();
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(body["payload"].is_object(), "{body}");
    assert_eq!(keys(&body), set(&["error", "code", "payload"]));
    body
}

/// Create, use, list, introspect, delete, refused afterwards; through both families of
/// routes. `first` holds read and write for Alice; `bobs` is Bob's, in the same
/// environment, with the same scopes.
async fn lifecycle(server: &Server, first: &First, bobs: &First) {
    let env = environment();
    let tokens = env_tokens(env);

    // Introspect the first token: its record, never a raw token.
    let me = server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&first.raw)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(me["token"]["id"], first.id.as_str());
    assert_eq!(me["token"]["createdBy"]["alias"], "alice");
    assert!(me["token"].get("rawToken").is_none());

    // Create in the environment: 201 with exactly the reference shape.
    let reply = server
        .call("POST", &tokens)
        .bearer(&first.raw)
        .json(&json!({ "note": "CI deploys", "scopes": [READ] }))
        .send()
        .await
        .expect(201);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let created = reply.json();
    assert_eq!(keys(&created), set(&["token"]));
    let token = &created["token"];
    assert_eq!(
        keys(token),
        set(&[
            "id",
            "rawToken",
            "checksum",
            "createdBy",
            "createdAt",
            "active",
            "note",
            "projectEnvironmentId",
            "projectEnvironment",
            "scopes",
            "createdByTokenId",
        ])
    );
    assert_eq!(
        token["createdByTokenId"], first.id,
        "the creating token is recorded"
    );
    let raw = token["rawToken"].as_str().unwrap().to_owned();
    let parsed = TokenFormat::dynamic().parse(&raw).expect("a dyn_ token");
    assert_eq!(token["checksum"], parsed.checksum().as_str());
    assert_eq!(token["active"], true);
    assert_eq!(token["note"], "CI deploys");
    assert_eq!(token["scopes"], json!([READ]));
    assert_eq!(token["projectEnvironmentId"], env.to_string());
    assert_eq!(
        token["projectEnvironment"],
        json!({ "id": env.to_string() })
    );
    // The caller's creator is recorded.
    assert_eq!(token["createdBy"], me["token"]["createdBy"]);
    assert!(
        token["createdAt"].as_str().unwrap().ends_with('Z'),
        "{token}"
    );
    let ci_id = token["id"].as_str().unwrap().to_owned();

    // Use it: it reads, it introspects itself, it cannot write.
    let list = server
        .call("GET", &tokens)
        .bearer(&raw)
        .send()
        .await
        .expect(200);
    assert_eq!(
        ids(&list),
        [first.id.clone(), bobs.id.clone(), ci_id.clone()]
    );
    let listed = list.text();
    assert!(!listed.contains("rawToken"), "{listed}");
    assert!(!listed.contains(&raw) && !listed.contains(&first.raw));
    let me = server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&raw)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(me["token"]["id"], ci_id.as_str());
    server
        .call("POST", &tokens)
        .bearer(&raw)
        .json(&json!({ "note": "escalate" }))
        .send()
        .await
        .expect(403);

    // The user routes: the caller's user, in the caller's environment.
    let mine = server
        .call("POST", "/api/v0/user/tokens")
        .bearer(&first.raw)
        .json(&json!({ "note": "laptop", "scopes": [READ, WRITE] }))
        .send()
        .await
        .expect(201)
        .json();
    let laptop_raw = mine["token"]["rawToken"].as_str().unwrap().to_owned();
    let laptop_id = mine["token"]["id"].as_str().unwrap().to_owned();
    assert_eq!(mine["token"]["projectEnvironmentId"], env.to_string());
    assert_eq!(mine["token"]["createdBy"]["id"], alice().id.to_string());
    let alices = server
        .call("GET", "/api/v0/user/tokens")
        .bearer(&laptop_raw)
        .send()
        .await
        .expect(200);
    assert_eq!(
        ids(&alices),
        [first.id.clone(), ci_id.clone(), laptop_id.clone()]
    );
    assert!(!alices.text().contains("rawToken"));
    let bobs_list = server
        .call("GET", "/api/v0/user/tokens")
        .bearer(&bobs.raw)
        .send()
        .await
        .expect(200);
    assert_eq!(ids(&bobs_list), vec![bobs.id.clone()]);
    // Bob cannot delete Alice's token through the user routes.
    server
        .call("DELETE", &format!("/api/v0/user/tokens/{laptop_id}"))
        .bearer(&bobs.raw)
        .send()
        .await
        .expect(404);

    // Delete: 204 with no body, then refused with the one 401.
    let deleted = server
        .call("DELETE", &format!("{tokens}/{ci_id}"))
        .bearer(&first.raw)
        .send()
        .await
        .expect(204);
    assert!(deleted.body.is_empty());
    assert_unauthorized(
        server
            .call("GET", "/api/v0/tokens/me")
            .bearer(&raw)
            .send()
            .await,
    );
    // Deleting again changes nothing; the record stays, inactive, listed only when asked.
    server
        .call("DELETE", &format!("{tokens}/{ci_id}"))
        .bearer(&first.raw)
        .send()
        .await
        .expect(204);
    let live = server
        .call("GET", &tokens)
        .bearer(&first.raw)
        .send()
        .await
        .expect(200);
    assert!(!ids(&live).contains(&ci_id), "{}", live.text());
    let list = server
        .call("GET", &format!("{tokens}?state=all"))
        .bearer(&first.raw)
        .send()
        .await
        .expect(200)
        .json();
    let ci = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == ci_id.as_str())
        .unwrap();
    assert_eq!(ci["active"], false);

    // A token deletes itself through the user routes.
    server
        .call("DELETE", &format!("/api/v0/user/tokens/{laptop_id}"))
        .bearer(&laptop_raw)
        .send()
        .await
        .expect(204);
    assert_unauthorized(
        server
            .call("GET", "/api/v0/user/tokens")
            .bearer(&laptop_raw)
            .send()
            .await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_sqlite_with_a_hash_key() {
    let db = TempDb::new("lifecycle");
    let key_hex = "8f1c3e5a7b9d0f2e4c6a8b0d1f3e5c7a9b1d3f5e7c9a0b2d4f6e8a0c2e4a6c8e";
    let key = HashKey::from_hex(key_hex).unwrap();
    let store = sqlite_store(&db.path, Some(&key)).await;
    let first = issue_first(
        store.clone(),
        Some(key.clone()),
        environment(),
        alice(),
        admin_scopes(),
    )
    .await;
    let bobs = issue_first(
        store.clone(),
        Some(key),
        environment(),
        bob(),
        admin_scopes(),
    )
    .await;
    store.pool().close().await;

    let db_path = db.path.to_str().unwrap();
    let server = Server::start(&["--db", db_path], &[("APITOKEN_HASH_KEY", key_hex)]);
    lifecycle(&server, &first, &bobs).await;
    let (status, logs) = server.terminate();
    assert!(status.success(), "{status:?}\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_on_postgres() {
    let Some(url) = postgres_url("lifecycle_on_postgres") else {
        return;
    };
    let schema = PgSchema::create(&url).await;
    let store = PostgresStore::connect(&schema.url).await.unwrap();
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    let first = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let bobs = issue_first(store.clone(), None, environment(), bob(), admin_scopes()).await;
    store.pool().close().await;

    // DATABASE_URL from the environment, as an operator would set it.
    let server = Server::start(&[], &[("DATABASE_URL", schema.url.as_str())]);
    lifecycle(&server, &first, &bobs).await;
    let (status, logs) = server.terminate();
    // The URL (which may hold a password) is never logged.
    assert!(!logs.contains(&schema.url), "{logs}");
    schema.drop().await;
    assert!(status.success(), "{status:?}\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_a_503_and_recovers() {
    let Some(url) = postgres_url("an_unreachable_store_is_a_503_and_recovers") else {
        return;
    };
    // The server reaches PostgreSQL through a proxy that the test can cut.
    let (schema, first, proxy, proxied) = behind_a_proxy(&url).await;
    // Uncached, every request reads the store; the cached server is below.
    let server = Server::start(&["--database-url", proxied.as_str(), "--no-cache"], &[]);
    let me = || {
        server
            .call("GET", "/api/v0/tokens/me")
            .bearer(&first.raw)
            .send()
    };
    me().await.expect(200);
    proxy.cut();
    let body = me().await.expect(503).json();
    assert_eq!(
        body,
        json!({ "error": "the token service is temporarily unavailable; retry later" })
    );
    // The readiness probe says so too, without a token, naming the check only.
    let ready = || server.call("GET", "/readyz").send();
    let unready = ready().await.expect(503);
    assert_eq!(
        unready.header("retry-after"),
        Some(apitoken::http::RETRY_AFTER_SECONDS)
    );
    let body = unready.json();
    assert_eq!(body["code"], "store_unavailable", "{body}");
    assert_eq!(body["status"], "unready", "{body}");
    server.call("GET", "/healthz").send().await.expect(200);
    proxy.restore();
    me().await.expect(200);
    // A pooled connection the cut broke may fail one more check.
    let mut answered = Vec::new();
    for _ in 0..20 {
        let status = ready().await.status;
        answered.push(status);
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answered.last(), Some(&200), "{answered:?}");
    let (status, logs) = server.terminate();
    schema.drop().await;
    assert!(status.success(), "{logs}");
    assert!(logs.contains("status=503"), "{logs}");
    assert!(!logs.contains(&proxied), "the database URL is in the logs");
}

/// A new schema with an admin token, and a proxy to PostgreSQL the test can cut: the URL
/// through it.
async fn behind_a_proxy(url: &str) -> (PgSchema, support::First, support::Proxy, String) {
    let schema = PgSchema::create(url).await;
    let store = PostgresStore::connect(&schema.url).await.unwrap();
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    let first = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let (_, upstream) = support::via(&schema.url, "127.0.0.1:1".parse().unwrap());
    let proxy = support::Proxy::start(upstream).await;
    let (proxied, _) = support::via(&schema.url, proxy.addr);
    (schema, first, proxy, proxied)
}

/// With the cache (the default), a database that stops answering is no reason to accept
/// tokens no one can check: once the staleness bound has passed, authentication goes to
/// the store and fails with 503, and recovers with the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_server_fails_closed_once_the_store_is_unreachable_past_the_bound() {
    let Some(url) =
        postgres_url("a_cached_server_fails_closed_once_the_store_is_unreachable_past_the_bound")
    else {
        return;
    };
    let (schema, first, proxy, proxied) = behind_a_proxy(&url).await;
    let server = Server::start(
        &[
            "--database-url",
            proxied.as_str(),
            "--cache-staleness-ms",
            "200",
        ],
        &[],
    );
    let me = || {
        server
            .call("GET", "/api/v0/tokens/me")
            .bearer(&first.raw)
            .send()
    };
    me().await.expect(200);
    proxy.cut();
    // Served from the cache at most for the bound, then refused: wait for the 503 (the
    // timeout only guards against a hang).
    let refused = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let reply = me().await;
            if reply.status == 503 {
                return reply;
            }
            assert_eq!(reply.status, 200, "{}", reply.text());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a cached server kept answering 200 with its database unreachable");
    assert_eq!(
        refused.json(),
        json!({ "error": "the token service is temporarily unavailable; retry later" })
    );
    proxy.restore();
    let recovered = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            if me().await.status == 200 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        recovered.is_ok(),
        "the server did not recover with the database"
    );
    drop(server);
    schema.drop().await;
}

/// `/healthz` and `/readyz` answer without a token, stay out of the request log while
/// they succeed, and `/readyz` names the check that fails when the database changes under
/// the server: another hash key, a newer schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probes_say_whether_the_server_can_serve() {
    let db = TempDb::new("probes");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    let probe = |path: &'static str| server.call("GET", path).send();
    for _ in 0..3 {
        let health = probe("/healthz").await.expect(200);
        assert_eq!(health.json(), json!({ "status": "ok" }));
        assert_eq!(health.header("cache-control"), Some("no-store"));
        let ready = probe("/readyz").await.expect(200);
        assert_eq!(ready.json(), json!({ "status": "ready" }));
    }
    // Other methods are refused as anywhere else.
    server.call("POST", "/readyz").send().await.expect(405);

    let other_key = HashKey::from_bytes([7; 32]).fingerprint().to_string();
    let set_meta = |key: &'static str, value: String| {
        let pool = store.pool().clone();
        async move {
            sqlx::query("UPDATE apitoken_meta SET value = ? WHERE key = ?")
                .bind(value)
                .bind(key)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    // The database now holds tokens of a hash key the server lacks.
    let needed = |sql: &'static str| {
        let pool = store.pool().clone();
        let other_key = other_key.clone();
        async move {
            sqlx::query(sql)
                .bind(other_key)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    needed("INSERT INTO apitoken_hash_keys (fingerprint) VALUES (?)").await;
    let unready = probe("/readyz").await.expect(503);
    assert_eq!(unready.header("cache-control"), Some("no-store"));
    assert_eq!(
        unready.header("retry-after"),
        Some(apitoken::http::RETRY_AFTER_SECONDS)
    );
    let body = unready.json();
    assert_eq!(keys(&body), set(&["status", "error", "code"]));
    assert_eq!(body["status"], "unready");
    assert_eq!(body["code"], "hash_key_mismatch", "{body}");
    probe("/healthz").await.expect(200);
    needed("DELETE FROM apitoken_hash_keys WHERE fingerprint = ?").await;
    probe("/readyz").await.expect(200);
    set_meta("schema_version", "99".to_owned()).await;
    let body = probe("/readyz").await.expect(503).json();
    assert_eq!(body["code"], "schema_too_new", "{body}");
    set_meta("schema_version", "3".to_owned()).await;
    let body = probe("/readyz").await.expect(503).json();
    assert_eq!(body["code"], "schema_not_prepared", "{body}");
    set_meta("schema_version", "8".to_owned()).await;
    probe("/readyz").await.expect(200);
    server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200);
    store.pool().close().await;

    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    // Successful probes are not in the log; failed ones are, with the full reason.
    assert!(!logs.contains("route=\"/healthz\""), "{logs}");
    assert!(!logs.contains("route=\"/readyz\" status=200"), "{logs}");
    assert_eq!(
        logs.matches("route=\"/readyz\" status=503").count(),
        3,
        "{logs}"
    );
    assert!(logs.contains("kind=\"unready\""), "{logs}");
    assert!(
        logs.contains("newer than this version of apitoken"),
        "{logs}"
    );
    assert!(logs.contains("route=\"/api/v0/tokens/me\""), "{logs}");
    // Started without a hash key: said once, at start.
    assert_eq!(logs.matches("no hash key").count(), 1, "{logs}");
}

/// `POST /oauth/introspect` (RFC 7662): a live token of the caller's environment is
/// active with what it is; anything else is exactly `{"active": false}`; the caller needs
/// the introspection scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_answers_as_rfc_7662_says() {
    let db = TempDb::new("introspect");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let reader = issue_reader(store.clone(), bob()).await;
    let writer = issue_first(
        store.clone(),
        None,
        environment(),
        alice(),
        vec![apitoken::Scope::ENVIRONMENT_API_TOKENS_WRITE],
    )
    .await;
    let elsewhere = issue_first(
        store.clone(),
        None,
        other_environment(),
        alice(),
        admin_scopes(),
    )
    .await;
    store.pool().close().await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    let introspect = |caller: &str, form: String| {
        server
            .call("POST", "/oauth/introspect")
            .bearer(caller)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };

    let reply = introspect(&admin.raw, format!("token={}", reader.raw))
        .await
        .expect(200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let active = reply.json();
    assert_eq!(
        keys(&active),
        set(&[
            "active",
            "scope",
            "sub",
            "iat",
            "jti",
            "token_type",
            "environment_id"
        ]),
        "{active}"
    );
    assert_eq!(active["active"], true);
    assert_eq!(active["scope"], READ);
    assert_eq!(active["sub"], bob().id.to_string());
    assert_eq!(active["jti"], reader.id.as_str());
    assert_eq!(active["environment_id"], environment().to_string());
    assert_eq!(active["token_type"], "dyn_api_token");
    let iat = active["iat"].as_i64().unwrap();
    assert!(
        (chrono::Utc::now().timestamp() - iat).abs() < 600,
        "{active}"
    );

    // An expiring token has `exp`; a percent-encoded form is read as such.
    let in_an_hour = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    let expiring = server
        .call("POST", &env_tokens(environment()))
        .bearer(&admin.raw)
        .json(&json!({ "note": "for an hour", "scopes": [READ], "expiresAt": in_an_hour.to_rfc3339() }))
        .send()
        .await
        .expect(201)
        .json();
    let raw = expiring["token"]["rawToken"]
        .as_str()
        .unwrap()
        .replace('_', "%5F");
    let answer = introspect(
        &reader.raw,
        format!("token_type_hint=access_token&token={raw}"),
    )
    .await
    .expect(200)
    .json();
    assert_eq!(answer["exp"], in_an_hour.timestamp(), "{answer}");

    // Revoked, unknown, malformed, another environment's: exactly inactive.
    server
        .call(
            "DELETE",
            &format!("{}/{}", env_tokens(environment()), writer.id),
        )
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    for token in [
        writer.raw.clone(),
        "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC".to_owned(),
        "not a token".to_owned(),
        String::new(),
        elsewhere.raw.clone(),
    ] {
        let answer = introspect(&admin.raw, format!("token={token}"))
            .await
            .expect(200)
            .json();
        assert_eq!(answer, json!({ "active": false }), "{token}");
    }

    // The caller: authenticated, with the introspection scope; the request: a form with a
    // token.
    let fresh_writer = server
        .call("POST", &env_tokens(environment()))
        .bearer(&admin.raw)
        .json(&json!({ "note": "writes", "scopes": [WRITE] }))
        .send()
        .await
        .expect(201)
        .json();
    let fresh_writer = fresh_writer["token"]["rawToken"]
        .as_str()
        .unwrap()
        .to_owned();
    introspect(&fresh_writer, format!("token={}", reader.raw))
        .await
        .expect(403);
    assert_unauthorized(introspect(&writer.raw, format!("token={}", reader.raw)).await);
    introspect(&admin.raw, "other=1".to_owned())
        .await
        .expect(400);
    server
        .call("POST", "/oauth/introspect")
        .bearer(&admin.raw)
        .json(&json!({ "token": reader.raw }))
        .send()
        .await
        .expect(415);

    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    for raw in [&reader.raw, &elsewhere.raw, &writer.raw] {
        assert!(!logs.contains(raw.as_str()), "{logs}");
    }
}

/// A server on a fresh SQLite file for the error tests: an admin token (read and write),
/// a reader (read only) and a token that expired an hour ago.
struct ErrorFixture {
    server: Server,
    admin: First,
    reader: First,
    expired: First,
    tokens: String,
    // Last: dropped after the server, it removes the file.
    _db: TempDb,
}

impl ErrorFixture {
    async fn start(name: &str) -> ErrorFixture {
        let db = TempDb::new(name);
        let store = sqlite_store(&db.path, None).await;
        let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
        let reader = issue_reader(store.clone(), alice()).await;
        let expired = issue_expired(&store).await;
        store.pool().close().await;
        let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
        ErrorFixture {
            server,
            admin,
            reader,
            expired,
            tokens: env_tokens(environment()),
            _db: db,
        }
    }

    /// Checks that the failures created nothing (the environment holds `tokens` tokens)
    /// and that the server stops cleanly.
    async fn finish(self, tokens: usize) {
        let list = self
            .server
            .call("GET", &format!("{}?state=all", self.tokens))
            .bearer(&self.reader.raw)
            .send()
            .await
            .expect(200);
        assert_eq!(ids(&list).len(), tokens, "{}", list.text());
        let (status, logs) = self.server.terminate();
        assert!(status.success(), "{logs}");
    }
}

/// 401: the same answer for every way a token can be wrong, on every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_the_same_401() {
    let f = ErrorFixture::start("errors_401").await;
    let (server, admin, tokens) = (&f.server, &f.admin, &f.tokens);
    let note = json!({ "note": "x" });
    let revoked = server
        .call("POST", tokens)
        .bearer(&admin.raw)
        .json(&note)
        .send()
        .await
        .expect(201)
        .json();
    let revoked_raw = revoked["token"]["rawToken"].as_str().unwrap().to_owned();
    server
        .call(
            "DELETE",
            &format!("{tokens}/{}", revoked["token"]["id"].as_str().unwrap()),
        )
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    let mut bad_checksum = admin.raw.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'A' { 'B' } else { 'A' });
    let authorizations: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".to_owned()),
        Some(format!("Basic {}", admin.raw)),
        Some(admin.raw.clone()),
        Some("Bearer not-a-token".to_owned()),
        Some(format!("Bearer {bad_checksum}")),
        // Well-formed (the reference page's example) but unknown.
        Some("Bearer dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC".to_owned()),
        Some(format!("Bearer {revoked_raw}")),
        Some(format!("Bearer {}", f.expired.raw)),
    ];
    for (method, path) in [
        ("GET", "/api/v0/tokens/me".to_owned()),
        ("GET", tokens.clone()),
        ("POST", tokens.clone()),
        ("GET", "/api/v0/user/tokens".to_owned()),
        ("DELETE", format!("/api/v0/user/tokens/{}", admin.id)),
    ] {
        for authorization in &authorizations {
            let mut call = server.call(method, &path).json(&note);
            if let Some(value) = authorization {
                call = call.header("authorization", value);
            }
            let reply = call.send().await;
            assert_eq!(reply.status, 401, "{method} {path} with {authorization:?}");
            assert_unauthorized(reply);
        }
    }
    // Two Authorization headers are ambiguous: refused too.
    assert_unauthorized(
        server
            .call("GET", "/api/v0/tokens/me")
            .bearer(&admin.raw)
            .bearer(&admin.raw)
            .send()
            .await,
    );
    // Authentication comes before anything else: a bad body or path id still gets a 401.
    assert_unauthorized(
        server
            .call("POST", "/api/v0/environments/not-a-uuid/tokens")
            .body("{")
            .send()
            .await,
    );
    // The admin, the reader, the expired and the revoked token.
    f.finish(4).await;
}

/// 403: another environment, a missing scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_environment_or_a_missing_scope_is_a_403() {
    let f = ErrorFixture::start("errors_403").await;
    let (server, admin, tokens) = (&f.server, &f.admin, &f.tokens);
    let note = json!({ "note": "x" });
    for (method, path) in [
        ("GET", env_tokens(other_environment())),
        ("POST", env_tokens(other_environment())),
        (
            "DELETE",
            format!("{}/{}", env_tokens(other_environment()), admin.id),
        ),
    ] {
        let body = server
            .call(method, &path)
            .bearer(&admin.raw)
            .json(&note)
            .send()
            .await
            .expect(403)
            .json();
        assert_eq!(keys(&body), set(&["error"]), "{body}");
    }
    for (method, path) in [
        ("POST", tokens.clone()),
        ("POST", "/api/v0/user/tokens".to_owned()),
        ("DELETE", format!("{tokens}/{}", admin.id)),
        ("DELETE", format!("/api/v0/user/tokens/{}", admin.id)),
    ] {
        let body = server
            .call(method, &path)
            .bearer(&f.reader.raw)
            .json(&note)
            .send()
            .await
            .expect(403)
            .json();
        assert!(body["error"].as_str().unwrap().contains(WRITE), "{body}");
    }
    f.finish(3).await;
}

/// 404: an unknown token, an unknown route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_token_or_route_is_a_404() {
    let f = ErrorFixture::start("errors_404").await;
    let (server, admin, tokens) = (&f.server, &f.admin, &f.tokens);
    let unknown = "0190a5c4-7d3e-7b5a-9c1d-ffffffffffff";
    for path in [
        format!("{tokens}/{unknown}"),
        format!("/api/v0/user/tokens/{unknown}"),
    ] {
        let body = server
            .call("DELETE", &path)
            .bearer(&admin.raw)
            .send()
            .await
            .expect(404)
            .json();
        // Dynamic's client decodes a 404 as `NotFound`, which requires a code.
        assert_eq!(keys(&body), set(&["error", "code"]));
        assert_eq!(body["code"], "not_found");
    }
    let body = server
        .call("GET", "/api/v0/nowhere")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(404)
        .json();
    assert_eq!(body["code"], "not_found", "{body}");
    f.finish(3).await;
}

/// 400: malformed JSON, not an object, ids that are not UUIDs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_or_ids_are_a_400() {
    let f = ErrorFixture::start("errors_400").await;
    let (server, admin, tokens) = (&f.server, &f.admin, &f.tokens);
    for body in ["{", "", "[1]", "\"note\"", "{\"note\": \"x\",}"] {
        let reply = server
            .call("POST", tokens)
            .bearer(&admin.raw)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect(400);
        assert_eq!(keys(&reply.json()), set(&["error"]));
    }
    for path in [
        "/api/v0/environments/not-a-uuid/tokens".to_owned(),
        "/api/v0/environments/%FF%FE/tokens".to_owned(),
        format!("{tokens}/not-a-uuid"),
        format!("{tokens}/%FF%FE"),
        "/api/v0/user/tokens/not-a-uuid".to_owned(),
    ] {
        let method = if path.ends_with("/tokens") {
            "GET"
        } else {
            "DELETE"
        };
        let reply = server
            .call(method, &path)
            .bearer(&admin.raw)
            .send()
            .await
            .expect(400);
        let body = reply.json();
        assert_eq!(keys(&body), set(&["error"]), "{path}");
        assert!(
            body["error"].as_str().unwrap().contains("must be a UUID"),
            "{body}"
        );
    }
    f.finish(3).await;
}

/// 415: not JSON; 413: past 16 KiB (the note alone would be refused anyway: the size
/// comes first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_not_json_is_a_415_and_one_too_large_a_413() {
    let f = ErrorFixture::start("errors_415").await;
    let (server, admin) = (&f.server, &f.admin);
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut call = server
            .call("POST", "/api/v0/user/tokens")
            .bearer(&admin.raw)
            .body(r#"{"note": "x"}"#);
        if let Some(content_type) = content_type {
            call = call.header("content-type", content_type);
        }
        let reply = call.send().await.expect(415);
        assert_eq!(keys(&reply.json()), set(&["error"]));
    }

    let big = format!(r#"{{"note": "{}"}}"#, "x".repeat(17 * 1024));
    let reply = server
        .call("POST", &f.tokens)
        .bearer(&admin.raw)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect(413);
    assert_eq!(keys(&reply.json()), set(&["error"]));
    f.finish(3).await;
}

/// 431 with the JSON error body for headers over 32 KiB or over 100 fields, before the
/// token is even read; smaller ones pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_a_431_with_a_json_body() {
    let f = ErrorFixture::start("errors_431").await;
    let (server, admin) = (&f.server, &f.admin);
    let big = server
        .call("GET", &f.tokens)
        .bearer(&admin.raw)
        .header("cookie", "c".repeat(40 * 1024))
        .send()
        .await
        .expect(431);
    assert_eq!(big.header("content-type"), Some("application/json"));
    assert_eq!(keys(&big.json()), set(&["error"]));
    assert!(big.json()["error"].as_str().unwrap().contains("32 KiB"));
    let mut many = server.call("GET", &f.tokens).bearer(&admin.raw);
    for i in 0..120 {
        many = many.header(&format!("x-field-{i}"), "1");
    }
    let many = many.send().await.expect(431);
    assert_eq!(keys(&many.json()), set(&["error"]));
    // Within the bounds: served.
    let mut fine = server
        .call("GET", &f.tokens)
        .bearer(&admin.raw)
        .header("cookie", "c".repeat(30 * 1024));
    for i in 0..90 {
        fine = fine.header(&format!("x-field-{i}"), "1");
    }
    fine.send().await.expect(200);
    let logs = server.logs();
    assert!(logs.contains("headers_too_large"), "{logs}");
    f.finish(3).await;
}

/// 422: scopes not in the catalog, not held, not scopes at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_scopes_are_a_422() {
    let f = ErrorFixture::start("errors_422_scopes").await;
    let (server, admin, tokens) = (&f.server, &f.admin, &f.tokens);
    let body = assert_unprocessable(
        server
            .call("POST", tokens)
            .bearer(&admin.raw)
            .json(&json!({ "note": "x", "scopes": ["gasless.read", READ] }))
            .send()
            .await,
        "invalid_scopes",
    );
    assert_eq!(body["payload"]["unknown"], json!(["gasless.read"]));
    let body = assert_unprocessable(
        server
            .call("POST", "/api/v0/user/tokens")
            .bearer(&admin.raw)
            .json(&json!({ "note": "x", "scopes": ["environment.users.write"] }))
            .send()
            .await,
        "invalid_scopes",
    );
    assert_eq!(
        body["payload"]["notHeld"],
        json!(["environment.users.write"])
    );
    for scopes in [
        json!("environment.apiTokens.read"),
        json!([1]),
        json!(["a..b"]),
    ] {
        assert_unprocessable(
            server
                .call("POST", tokens)
                .bearer(&admin.raw)
                .json(&json!({ "note": "x", "scopes": scopes }))
                .send()
                .await,
            "invalid_scopes",
        );
    }
    f.finish(3).await;
}

/// A missing, empty, multi-line or too long note is a 400 `{"error": …}` naming the rule
/// (what Dynamic's client decodes as `BadRequest`; its 422 codes have no `invalid_note`);
/// an expiry that is not a time or is past is a 422. A note of 100 characters is fine,
/// emoji included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_notes_are_a_400_and_invalid_expiries_a_422() {
    let f = ErrorFixture::start("errors_422_fields").await;
    let (server, admin, tokens) = (&f.server, &f.admin, &f.tokens);
    for fields in [
        json!({}),
        json!({ "scopes": [READ] }),
        json!({ "note": null }),
        json!({ "note": "" }),
        json!({ "note": "   " }),
        json!({ "note": 7 }),
        json!({ "note": "x".repeat(101) }),
        json!({ "note": "two\nlines" }),
    ] {
        let body = server
            .call("POST", tokens)
            .bearer(&admin.raw)
            .json(&fields)
            .send()
            .await
            .expect(400)
            .json();
        assert_eq!(keys(&body), set(&["error"]), "{fields}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("note"),
            "{fields}: {body}"
        );
    }
    server
        .call("POST", tokens)
        .bearer(&admin.raw)
        .json(&json!({ "note": "🔑".repeat(100) }))
        .send()
        .await
        .expect(201);
    for expires_at in [json!("tomorrow"), json!("2000-01-01T00:00:00Z")] {
        assert_unprocessable(
            server
                .call("POST", tokens)
                .bearer(&admin.raw)
                .json(&json!({ "note": "x", "expiresAt": expires_at }))
                .send()
                .await,
            "invalid_expires_at",
        );
    }
    // The admin, the reader, the expired and the 100-emoji tokens.
    f.finish(4).await;
}

/// Issue 12, part 6: capped scope lists, one payload shape per code with its keys in one
/// order, JSON 405s, a 400 that names the parameter at fault (and is logged with why).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_small_answers_of_one_shape() {
    let db = TempDb::new("shapes");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    let tokens = env_tokens(environment());
    let create = |body: Value| {
        server
            .call("POST", &tokens)
            .bearer(&admin.raw)
            .json(&body)
            .send()
    };
    let payload_text = |reply: &Reply| {
        let text = reply.text();
        text[text.find(r#""payload":"#).unwrap()..].to_owned()
    };

    // More than 64 scopes (65 here): refused without repeating them.
    let many: Vec<String> = (0..65).map(|i| format!("unknown.scope{i}")).collect();
    let reply = create(json!({ "note": "x", "scopes": many })).await;
    assert!(reply.body.len() < 400, "{}", reply.text());
    assert_eq!(
        payload_text(&reply),
        r#""payload":{"unknown":[],"notHeld":[]}}"#
    );
    assert_unprocessable(reply, "invalid_scopes");
    // Not even scopes: at most 10 listed (each cut to a scope's length), the rest counted,
    // keys in the library's order.
    let broken: Vec<String> = (0..30)
        .map(|i| format!("a..{i}{}", "b".repeat(300)))
        .collect();
    let reply = create(json!({ "note": "x", "scopes": broken })).await;
    assert!(reply.body.len() < 1_500, "{} bytes", reply.body.len());
    let text = payload_text(&reply);
    assert!(
        text.starts_with(r#""payload":{"unknown":["a..0bbb"#),
        "{text}"
    );
    assert!(
        text.ends_with(r#"],"notHeld":[],"omitted":{"unknown":20,"notHeld":0}}}"#),
        "{text}"
    );
    let body = assert_unprocessable(reply, "invalid_scopes");
    assert_eq!(body["payload"]["unknown"].as_array().unwrap().len(), 10);
    let reply = create(json!({ "note": "x", "scopes": "environment.apiTokens.read" })).await;
    assert_eq!(
        payload_text(&reply),
        r#""payload":{"unknown":[],"notHeld":[]}}"#
    );
    // The issuer's answer has the same order.
    let reply = create(json!({ "note": "x", "scopes": ["gasless.read"] })).await;
    assert_eq!(
        payload_text(&reply),
        r#""payload":{"unknown":["gasless.read"],"notHeld":["gasless.read"]}}"#
    );

    // invalid_expires_at: expiresAt (null when not a timestamp), then now; whatever the cause.
    for (expires_at, shown) in [
        (json!("tomorrow"), Value::Null),
        (json!(5), Value::Null),
        (json!("2000-01-01T00:00:00Z"), json!("2000-01-01T00:00:00Z")),
    ] {
        let reply = create(json!({ "note": "x", "expiresAt": expires_at })).await;
        assert!(
            payload_text(&reply).starts_with(r#""payload":{"expiresAt":"#),
            "{}",
            reply.text()
        );
        let body = assert_unprocessable(reply, "invalid_expires_at");
        assert_eq!(
            keys(&body["payload"]),
            set(&["expiresAt", "now", "latest"]),
            "{body}"
        );
        assert_eq!(body["payload"]["latest"], Value::Null, "{body}");
        assert_eq!(body["payload"]["expiresAt"], shown, "{body}");
        assert!(
            body["payload"]["now"].as_str().unwrap().ends_with('Z'),
            "{body}"
        );
    }
    // A note longer than 100 characters as sent is refused, as the document says.
    let padded = format!(" {} ", "x".repeat(100));
    create(json!({ "note": padded })).await.expect(400);

    // 405 in the JSON error shape, with Allow.
    let reply = server
        .call("PATCH", "/api/v0/tokens/me")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(405);
    assert_eq!(keys(&reply.json()), set(&["error"]));
    assert_eq!(reply.header("allow"), Some("GET,HEAD"));

    // A token id that is not even UTF-8 is blamed, not the (valid) environment.
    let reply = server
        .call("DELETE", &format!("{tokens}/%FF"))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(400);
    let error = reply.json()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("`tokenId`"), "{error}");
    let reply = server
        .call("DELETE", "/api/v0/environments/%FF/tokens/%FE")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(400);
    assert!(reply.text().contains("`environmentId`"), "{}", reply.text());
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains(
            "kind=\"invalid_path_parameter\" reason=\"the path parameter `tokenId` must be a UUID"
        ),
        "{logs}"
    );
}

/// Issues a token that expired an hour ago (issued two hours ago, by an issuer whose clock
/// said so).
async fn issue_expired(store: &SqliteStore) -> First {
    let then = chrono::Utc::now() - chrono::TimeDelta::hours(2);
    let issuer = TokenIssuer::builder(store.clone())
        .clock(ManualClock::new(then))
        .build();
    let request = IssueRequest::new(Note::new("expired").unwrap())
        .with_scopes(admin_scopes().into_iter().collect::<apitoken::Scopes>())
        .expires_at(then + chrono::TimeDelta::hours(1));
    let issued = issuer.issue(environment(), alice(), request).await.unwrap();
    First {
        raw: issued.raw.expose_secret().to_owned(),
        id: issued.token.id.to_string(),
    }
}

/// Lists show the tokens that work unless asked for all (Dynamic's SDK has no `active`
/// field: a listed revoked token would look live to its users); then `active` says
/// whether the token works at the time of the answer, and the stored record keeps its
/// facts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_expired_tokens_are_listed_only_when_asked() {
    let db = TempDb::new("inactive");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let expired = issue_expired(&store).await.id;
    store.pool().close().await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    let tokens = env_tokens(environment());
    let revoked = server
        .call("POST", &tokens)
        .bearer(&admin.raw)
        .json(&json!({ "note": "revoked soon" }))
        .send()
        .await
        .expect(201)
        .json();
    assert_eq!(revoked["token"]["active"], true);
    let revoked = revoked["token"]["id"].as_str().unwrap().to_owned();
    server
        .call("DELETE", &format!("{tokens}/{revoked}"))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    for path in [tokens.clone(), "/api/v0/user/tokens".to_owned()] {
        let live = server
            .call("GET", &path)
            .bearer(&admin.raw)
            .send()
            .await
            .expect(200);
        assert_eq!(
            ids(&live),
            std::slice::from_ref(&admin.id),
            "{path}: {}",
            live.text()
        );
        let path = format!("{path}?state=all");
        let list = server
            .call("GET", &path)
            .bearer(&admin.raw)
            .send()
            .await
            .expect(200)
            .json();
        let active: BTreeSet<(String, bool)> = list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["id"].as_str().unwrap().to_owned(),
                    t["active"].as_bool().unwrap(),
                )
            })
            .collect();
        let expected = BTreeSet::from([
            (admin.id.clone(), true),
            (expired.clone(), false),
            (revoked.clone(), false),
        ]);
        assert_eq!(active, expected, "{path}: {list}");
        let expired_json = list["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == expired.as_str())
            .unwrap();
        assert!(expired_json["expiresAt"].is_string(), "{expired_json}");
        assert!(expired_json.get("revokedAt").is_none(), "{expired_json}");
    }
    let me = server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(me["token"]["active"], true);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");

    // The record itself still says what happened: never revoked, expired by its date.
    let store = SqliteStore::open(&db.path).await.unwrap();
    let record = store
        .get(environment(), expired.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(record.active && record.revoked_at.is_none(), "{record:?}");
    store.pool().close().await;
}

/// A token that expires creates tokens that expire no later than it (its expiry when none
/// is asked for; a later one is a 422 naming the latest allowed), and revoking it revokes
/// them, and the tokens they created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegated_tokens_never_outlive_their_creator() {
    let db = TempDb::new("delegation");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    let tokens = env_tokens(environment());
    let create = |bearer: String, body: Value| {
        let server = &server;
        let tokens = &tokens;
        async move {
            server
                .call("POST", tokens)
                .bearer(&bearer)
                .json(&body)
                .send()
                .await
        }
    };
    let in_an_hour = (chrono::Utc::now() + chrono::TimeDelta::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let parent = create(
        admin.raw.clone(),
        json!({ "note": "for an hour", "scopes": [READ, WRITE], "expiresAt": in_an_hour }),
    )
    .await
    .expect(201)
    .json();
    let parent_raw = parent["token"]["rawToken"].as_str().unwrap().to_owned();
    let parent_id = parent["token"]["id"].as_str().unwrap().to_owned();

    // No expiry asked: the creator's.
    let child = create(
        parent_raw.clone(),
        json!({ "note": "child", "scopes": [READ, WRITE] }),
    )
    .await
    .expect(201)
    .json();
    assert_eq!(child["token"]["expiresAt"], json!(in_an_hour), "{child}");
    assert_eq!(child["token"]["createdByTokenId"], json!(parent_id));
    let child_raw = child["token"]["rawToken"].as_str().unwrap().to_owned();

    // A later expiry: refused, naming the latest allowed.
    for later in ["9999-01-01T00:00:00Z", "2999-01-01T00:00:00Z"] {
        let reply = create(
            parent_raw.clone(),
            json!({ "note": "longer", "expiresAt": later }),
        )
        .await;
        let body = assert_unprocessable(reply, "invalid_expires_at");
        assert_eq!(body["payload"]["latest"], json!(in_an_hour), "{body}");
        assert_eq!(body["payload"]["expiresAt"], json!(later), "{body}");
    }
    // A grandchild, through the child.
    let grandchild = create(child_raw.clone(), json!({ "note": "grandchild" }))
        .await
        .expect(201)
        .json();
    let grandchild_raw = grandchild["token"]["rawToken"].as_str().unwrap().to_owned();

    // Revoking the parent revokes both.
    server
        .call("DELETE", &format!("{tokens}/{parent_id}"))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    for raw in [&parent_raw, &child_raw, &grandchild_raw] {
        assert_unauthorized(
            server
                .call("GET", "/api/v0/tokens/me")
                .bearer(raw)
                .send()
                .await,
        );
    }
    // The admin token, which created the parent, is untouched.
    server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}

/// `GET …/{tokenId}` and `POST …/{tokenId}/rotate` on both families of routes: one token
/// as the lists show it, a rotation's successor shown once, the grace period and its end,
/// rotation once only, and the same authority as deleting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_is_read_and_rotated_by_id() {
    const NEVER_ISSUED: &str = "00000000-0000-7000-8000-000000000000";
    let db = TempDb::new("rotate");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let bobs = issue_first(store.clone(), None, environment(), bob(), admin_scopes()).await;
    store.pool().close().await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    let tokens = env_tokens(environment());
    let me = |raw: String| {
        let server = &server;
        async move {
            server
                .call("GET", "/api/v0/tokens/me")
                .bearer(&raw)
                .send()
                .await
        }
    };
    let created = server
        .call("POST", &tokens)
        .bearer(&admin.raw)
        .json(&json!({ "note": "deploys", "scopes": [READ, WRITE] }))
        .send()
        .await
        .expect(201)
        .json();
    let old_raw = created["token"]["rawToken"].as_str().unwrap().to_owned();
    let old_id = created["token"]["id"].as_str().unwrap().to_owned();

    // One token: what the list shows of it, never its raw token, never cached.
    let reply = server
        .call("GET", &format!("{tokens}/{old_id}"))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let one = reply.json();
    let list = server
        .call("GET", &tokens)
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json();
    let listed = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == old_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(one, json!({ "token": listed }));
    assert!(one["token"].get("rawToken").is_none());
    let mine = server
        .call("GET", &format!("/api/v0/user/tokens/{old_id}"))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(mine, one);
    // Another user's token is not found through the user routes; an unknown id anywhere.
    for (path, bearer) in [
        (format!("/api/v0/user/tokens/{old_id}"), &bobs.raw),
        (format!("/api/v0/user/tokens/{NEVER_ISSUED}"), &admin.raw),
        (format!("{tokens}/{NEVER_ISSUED}"), &admin.raw),
    ] {
        let body = server
            .call("GET", &path)
            .bearer(bearer)
            .send()
            .await
            .expect(404)
            .json();
        assert_eq!(body["code"], "not_found", "{path}: {body}");
    }
    server
        .call("GET", &format!("{tokens}/{}", old_id.to_uppercase()))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(400);
    // Bob cannot rotate Alice's token through the user routes either.
    server
        .call("POST", &format!("/api/v0/user/tokens/{old_id}/rotate"))
        .bearer(&bobs.raw)
        .send()
        .await
        .expect(404);

    // Rotate with an hour's grace: the successor, shown once, like the token it replaces.
    let rotate = |id: String, bearer: String, body: Option<Value>| {
        let server = &server;
        let tokens = &tokens;
        async move {
            let call = server
                .call("POST", &format!("{tokens}/{id}/rotate"))
                .bearer(&bearer);
            match body {
                Some(body) => call.json(&body),
                None => call,
            }
            .send()
            .await
        }
    };
    let reply = rotate(
        old_id.clone(),
        admin.raw.clone(),
        Some(json!({ "gracePeriodSeconds": 3600 })),
    )
    .await
    .expect(201);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let successor = reply.json();
    let new_raw = successor["token"]["rawToken"].as_str().unwrap().to_owned();
    let new_id = successor["token"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, old_id);
    assert_ne!(new_raw, old_raw);
    for field in ["note", "scopes", "createdBy", "createdByTokenId"] {
        assert_eq!(
            successor["token"][field], created["token"][field],
            "{field}"
        );
    }
    // Both work during the grace period; the old one now ends within the hour.
    me(new_raw.clone()).await.expect(200);
    let old_now = me(old_raw.clone()).await.expect(200).json();
    let ends = old_now["token"]["expiresAt"].as_str().expect("an expiry");
    let ends = chrono::DateTime::parse_from_rfc3339(ends).unwrap();
    let hour = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    assert!(
        ends <= hour && ends > hour - chrono::TimeDelta::minutes(5),
        "{old_now}"
    );
    // A token is rotated once: again is a 409, whoever asks.
    let again = rotate(old_id.clone(), admin.raw.clone(), None)
        .await
        .expect(409)
        .json();
    assert_eq!(keys(&again), set(&["error"]), "{again}");
    // Deleting the successor ends the old token's grace in the same step.
    server
        .call("DELETE", &format!("{tokens}/{new_id}"))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    assert_unauthorized(me(old_raw.clone()).await);
    assert_unauthorized(me(new_raw.clone()).await);
    // A revoked token cannot be rotated.
    rotate(new_id.clone(), admin.raw.clone(), None)
        .await
        .expect(409);

    // Without a body the old token stops at once. A delegated token rotates itself (the
    // user route too), never its creator, and its successor keeps its place in the tree.
    let delegated = server
        .call("POST", &tokens)
        .bearer(&admin.raw)
        .json(&json!({ "note": "delegated", "scopes": [READ, WRITE] }))
        .send()
        .await
        .expect(201)
        .json();
    let d_raw = delegated["token"]["rawToken"].as_str().unwrap().to_owned();
    let d_id = delegated["token"]["id"].as_str().unwrap().to_owned();
    for (path, status) in [
        (format!("{tokens}/{}", admin.id), 403),
        (format!("/api/v0/user/tokens/{}", admin.id), 403),
        (format!("{tokens}/{}/rotate", admin.id), 403),
        (format!("/api/v0/user/tokens/{}/rotate", admin.id), 403),
        (format!("{tokens}/{d_id}"), 200),
    ] {
        let method = if path.ends_with("/rotate") {
            "POST"
        } else {
            "GET"
        };
        server
            .call(method, &path)
            .bearer(&d_raw)
            .send()
            .await
            .expect(status);
    }
    let d2 = server
        .call("POST", &format!("/api/v0/user/tokens/{d_id}/rotate"))
        .bearer(&d_raw)
        .send()
        .await
        .expect(201)
        .json();
    assert_unauthorized(me(d_raw.clone()).await);
    let d2_raw = d2["token"]["rawToken"].as_str().unwrap().to_owned();
    assert_eq!(d2["token"]["createdByTokenId"], json!(admin.id));
    me(d2_raw.clone()).await.expect(200);
    me(admin.raw.clone()).await.expect(200);

    // The body, when there is one: JSON, an object, a grace period within bounds.
    let d2_id = d2["token"]["id"].as_str().unwrap().to_owned();
    let path = format!("{tokens}/{d2_id}/rotate");
    for (body, content_type, status) in [
        (
            &br#"{"gracePeriodSeconds": 2592001}"#[..],
            "application/json",
            400,
        ),
        (br#"{"gracePeriodSeconds": -1}"#, "application/json", 400),
        (br#"{"gracePeriodSeconds": "1h"}"#, "application/json", 400),
        (b"[]", "application/json", 400),
        (br#"{"gracePeriodSeconds": 60}"#, "text/plain", 415),
    ] {
        let reply = server
            .call("POST", &path)
            .bearer(&admin.raw)
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .expect(status);
        assert_eq!(keys(&reply.json()), set(&["error"]));
    }
    // None of those rotated it.
    me(d2_raw).await.expect(200);

    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("token rotated"), "{logs}");
    for raw in [&old_raw, &new_raw, &d_raw] {
        assert!(!logs.contains(raw.as_str()), "{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creation_stops_at_the_limit() {
    let db = TempDb::new("limit");
    let store: SqliteStore = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    // Four live tokens at most: the admin's and three more.
    let server = Server::start(
        &["--db", db.path.to_str().unwrap(), "--max-live-tokens", "4"],
        &[],
    );
    let tokens = env_tokens(environment());
    let calls = (0..10).map(|i| {
        server
            .call("POST", &tokens)
            .bearer(&admin.raw)
            .json(&json!({ "note": format!("parallel {i}"), "scopes": [READ] }))
            .send()
    });
    let mut handles = Vec::new();
    for call in calls {
        handles.push(tokio::spawn(call));
    }
    let mut created = Vec::new();
    let mut refused = 0;
    for handle in handles {
        let reply = handle.await.unwrap();
        match reply.status {
            201 => created.push(reply.json()["token"]["id"].as_str().unwrap().to_owned()),
            422 => {
                let body = assert_unprocessable(reply, "too_many_api_tokens");
                assert_eq!(body["payload"]["limit"], 4);
                refused += 1;
            }
            other => panic!("unexpected status {other}: {}", reply.text()),
        }
    }
    assert_eq!((created.len(), refused), (3, 7));
    let list = server
        .call("GET", &tokens)
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200);
    assert_eq!(ids(&list).len(), 4);

    // Revoking one makes room for exactly one more.
    server
        .call("DELETE", &format!("{tokens}/{}", created[0]))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    for expected in [201, 422] {
        server
            .call("POST", "/api/v0/user/tokens")
            .bearer(&admin.raw)
            .json(&json!({ "note": "after revoke" }))
            .send()
            .await
            .expect(expected);
    }
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}

/// The properties an OpenAPI object schema names, and those it requires.
fn schema_fields(openapi: &Value, name: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let schema = &openapi["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    let properties = keys(&schema["properties"]);
    let required = schema["required"]
        .as_array()
        .map(|r| r.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    (properties, required)
}

/// `object` has only properties the schema names, and every one it requires.
fn conforms(openapi: &Value, name: &str, object: &Value) {
    let (properties, required) = schema_fields(openapi, name);
    let present = keys(object);
    assert!(
        present.is_subset(&properties),
        "{name}: {:?} not described",
        present.difference(&properties).collect::<Vec<_>>()
    );
    assert!(
        required.is_subset(&present),
        "{name}: {:?} missing",
        required.difference(&present).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_description_matches_the_answers() {
    let db = TempDb::new("openapi");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = Server::start(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--extra-scopes",
            "gasless.read,gasless.write",
        ],
        &[],
    );
    // No token needed for the description.
    let reply = server.call("GET", "/openapi.json").send().await.expect(200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let openapi = reply.json();
    assert_eq!(openapi["openapi"], "3.1.0");

    let operations: BTreeSet<String> = openapi["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| format!("{} {path}", method.to_uppercase()))
        })
        .collect();
    assert_eq!(
        operations,
        set(&[
            "POST /api/v0/user/tokens",
            "GET /api/v0/user/tokens",
            "GET /api/v0/user/tokens/{tokenId}",
            "DELETE /api/v0/user/tokens/{tokenId}",
            "POST /api/v0/user/tokens/{tokenId}/rotate",
            "POST /api/v0/environments/{environmentId}/tokens",
            "GET /api/v0/environments/{environmentId}/tokens",
            "GET /api/v0/environments/{environmentId}/tokens/events",
            "GET /api/v0/environments/{environmentId}/tokens/{tokenId}",
            "DELETE /api/v0/environments/{environmentId}/tokens/{tokenId}",
            "POST /api/v0/environments/{environmentId}/tokens/{tokenId}/rotate",
            "GET /api/v0/tokens/me",
            "GET /healthz",
            "GET /readyz",
            "GET /verify",
            "POST /oauth/introspect",
            "POST /api/v0/credentials/revoke",
            "POST /secret-scanning/github",
            "POST /secret-scanning/gitlab",
            "GET /v1/revocable_token_types",
            "POST /v1/revoke_tokens",
        ])
    );
    // The probes need no token; `/readyz` says what its 503 means.
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            openapi["paths"][probe]["get"]["security"],
            json!([{}]),
            "{probe}"
        );
    }
    assert_eq!(
        openapi["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/Unready"
    );
    assert_eq!(
        openapi["components"]["securitySchemes"]["bearerAuth"],
        json!({
            "type": "http",
            "scheme": "bearer",
            "description": "An API token: `Authorization: Bearer dyn_…`. Issue the first one with the `apitoken` CLI."
        })
    );
    let create = &openapi["paths"]["/api/v0/environments/{environmentId}/tokens"]["post"];
    for status in [
        "201", "400", "401", "403", "405", "413", "415", "422", "431", "503",
    ] {
        assert!(create["responses"][status].is_object(), "no {status}");
    }
    // Every other operation documents a store outage, with Retry-After.
    for (path, item) in openapi["paths"].as_object().unwrap() {
        if path == "/readyz" {
            continue;
        }
        for operation in item.as_object().unwrap().values() {
            assert_eq!(
                operation["responses"]["503"]["$ref"],
                "#/components/responses/Unavailable"
            );
        }
    }
    let unavailable = &openapi["components"]["responses"]["Unavailable"];
    assert!(
        unavailable["headers"]["Retry-After"].is_object(),
        "{unavailable}"
    );
    // A stored token's scopes are any well-formed scope, not only this server's catalog.
    for name in ["Token", "TokenWithRaw"] {
        assert_eq!(
            openapi["components"]["schemas"][name]["properties"]["scopes"]["items"]["$ref"],
            "#/components/schemas/StoredScope",
            "{name}"
        );
    }
    let note = &openapi["components"]["schemas"]["PostTokenFields"]["properties"]["note"];
    assert_eq!(
        (note["minLength"].as_u64(), note["maxLength"].as_u64()),
        (Some(1), Some(100))
    );
    assert!(note["pattern"].is_string(), "{note}");

    // PostTokenFields: note required, at most 100 characters; scopes from the catalog.
    let (fields, required) = schema_fields(&openapi, "PostTokenFields");
    assert_eq!(
        fields,
        set(&["note", "scopes", "expiresAt", "allowedCidrs"])
    );
    assert_eq!(required, set(&["note"]));
    let schemas = &openapi["components"]["schemas"];
    assert_eq!(
        schemas["PostTokenFields"]["properties"]["note"]["maxLength"],
        100
    );
    let scopes: BTreeSet<String> = schemas["Scope"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    let mut expected: BTreeSet<String> = apitoken::REFERENCE_SCOPES
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    expected.extend(["gasless.read".to_owned(), "gasless.write".to_owned()]);
    assert_eq!(scopes, expected);
    let (_, required) = schema_fields(&openapi, "TokenWithRaw");
    assert_eq!(
        required,
        set(&["id", "rawToken", "checksum", "createdBy", "createdAt"])
    );

    // Real answers conform.
    let created = server
        .call("POST", &env_tokens(environment()))
        .bearer(&admin.raw)
        .json(
            &json!({ "note": "described", "scopes": [READ], "expiresAt": "2999-01-01T00:00:00Z", "allowedCidrs": ["10.0.0.0/8"] }),
        )
        .send()
        .await
        .expect(201)
        .json();
    conforms(&openapi, "CreatedToken", &created);
    conforms(&openapi, "TokenWithRaw", &created["token"]);
    assert_eq!(created["token"]["allowedCidrs"], json!(["10.0.0.0/8"]));
    conforms(&openapi, "CreatedBy", &created["token"]["createdBy"]);
    conforms(
        &openapi,
        "ProjectEnvironment",
        &created["token"]["projectEnvironment"],
    );
    let list = server
        .call("GET", &env_tokens(environment()))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json();
    conforms(&openapi, "TokenList", &list);
    for token in list["tokens"].as_array().unwrap() {
        conforms(&openapi, "Token", token);
    }
    // The event log: the bootstrap token's creation and the one above, one of them by a
    // token.
    let events = server
        .call("GET", &format!("{}/events", env_tokens(environment())))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json();
    conforms(&openapi, "EventList", &events);
    assert_eq!(
        events["events"].as_array().map(Vec::len),
        Some(2),
        "{events}"
    );
    for event in events["events"].as_array().unwrap() {
        conforms(&openapi, "Event", event);
        for (field, name) in [("kind", "EventKind"), ("actorType", "ActorType")] {
            let allowed = schemas[name]["enum"].as_array().unwrap();
            assert!(allowed.contains(&event[field]), "{field}: {event}");
        }
    }
    // Never null: absent when it does not apply.
    for field in ["cause", "successor"] {
        assert_eq!(
            schemas["Event"]["properties"][field]["type"], "string",
            "{field}"
        );
    }
    let log = &openapi["paths"]["/api/v0/environments/{environmentId}/tokens/events"]["get"];
    for status in [
        "200", "400", "401", "403", "405", "410", "431", "501", "503",
    ] {
        assert!(log["responses"][status].is_object(), "no {status}");
    }
    assert_eq!(
        log["responses"]["410"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/EventsPrunedBody"
    );
    let me = server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json();
    conforms(&openapi, "OneToken", &me);
    conforms(&openapi, "Token", &me["token"]);
    assert_eq!(me["token"]["lastUsedIp"], "127.0.0.1", "{me}");
    // The token above allows 10.0.0.0/8 only; this client is 127.0.0.1.
    let elsewhere = server
        .call("GET", "/api/v0/tokens/me")
        .bearer(created["token"]["rawToken"].as_str().unwrap())
        .send()
        .await
        .expect(403)
        .json();
    conforms(&openapi, "ForbiddenBody", &elsewhere);
    assert_eq!(elsewhere["code"], "ip_not_allowed");
    assert!(
        openapi["paths"]["/api/v0/tokens/me"]["get"]["responses"]["403"].is_object(),
        "/tokens/me describes its 403"
    );
    let unauthorized = server
        .call("GET", "/api/v0/tokens/me")
        .send()
        .await
        .expect(401)
        .json();
    conforms(&openapi, "ErrorBody", &unauthorized);
    let bad_note = server
        .call("POST", "/api/v0/user/tokens")
        .bearer(&admin.raw)
        .json(&json!({ "note": "" }))
        .send()
        .await
        .expect(400)
        .json();
    conforms(&openapi, "ErrorBody", &bad_note);
    let unprocessable = server
        .call("POST", "/api/v0/user/tokens")
        .bearer(&admin.raw)
        .json(&json!({ "note": "more", "scopes": ["environment.users.write"] }))
        .send()
        .await
        .expect(422)
        .json();
    conforms(&openapi, "UnprocessableBody", &unprocessable);
    let not_found = server
        .call(
            "DELETE",
            "/api/v0/user/tokens/0190a5c4-7d3e-7b5a-9c1d-ffffffffffff",
        )
        .bearer(&admin.raw)
        .send()
        .await
        .expect(404)
        .json();
    conforms(&openapi, "NotFoundBody", &not_found);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}
