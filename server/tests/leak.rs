//! The leak routes end to end, on SQLite and on PostgreSQL: a key pair the test generates,
//! its public key served as the partner's key list by a local HTTP server of the test's,
//! reports signed over bodies holding real issued tokens, posted to the real server.
//!
//! - A signed GitHub report revokes the live token (and what it created) as a `leaked`
//!   event naming the report's URL; afterwards the token gets 401 everywhere; the answer
//!   is GitHub's feedback array (hex SHA-256, never the token); replaying the request
//!   changes nothing; one flipped byte, or no signature, gets 401 and changes nothing.
//! - Hostile bodies, signed (non-JSON, 1,001 matches, deep nesting, a number for a token,
//!   a string of a mebibyte, a body past 1 MiB): a 4xx and nothing revoked.
//! - GitLab's intake (404 until configured), its self-managed Token Revocation API, the
//!   public endpoint (the same 202 whatever was sent, rate-limited), a key list that
//!   cannot be fetched (503, nothing changed), the metrics, and start-up refusals.

mod support;

use support::partner::{KEY_ID, KeyServer, Partner};

use apitoken::{KeyFingerprint, MemoryStore, PostgresStore, TokenStore};
use base64ct::{Base64, Encoding};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{
    First, PgSchema, Reply, Server, TempDb, admin_scopes, alice, create_token, env_tokens,
    environment, issue_first, postgres_url, run_to_exit, sqlite_store,
};

const READ: &str = "environment.apiTokens.read";
const WRITE: &str = "environment.apiTokens.write";
const REPORT_URL: &str = "https://github.com/octo/leaky/blob/abc123/config.env#L3";

/// A well-formed token of our format that no database holds.
async fn never_issued() -> String {
    issue_first(
        MemoryStore::new(),
        None,
        environment(),
        alice(),
        admin_scopes(),
    )
    .await
    .raw
}

/// The status each route answers `token` with.
async fn statuses(server: &Server, token: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    for path in [
        "/api/v0/tokens/me".to_owned(),
        env_tokens(environment()),
        "/verify".to_owned(),
    ] {
        statuses.push(server.call("GET", &path).bearer(token).send().await.status);
    }
    statuses
}

/// Every event of `environment()`.
async fn events(server: &Server, admin: &First) -> Vec<Value> {
    let path = format!("{}/events?limit=1000", env_tokens(environment()));
    server
        .call("GET", &path)
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json()["events"]
        .as_array()
        .unwrap()
        .clone()
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A signed report to `route`, with the partner's headers (in the letter case given).
async fn post_report(
    server: &Server,
    route: &str,
    prefix: &str,
    partner: &Partner,
    body: &[u8],
) -> Reply {
    server
        .call("POST", route)
        .header("content-type", "application/json")
        .header(&format!("{prefix}-Public-Key-Identifier"), KEY_ID)
        .header(
            &format!("{prefix}-Public-Key-Signature"),
            partner.sign(body),
        )
        .body(body.to_vec())
        .send()
        .await
}

/// The whole GitHub scenario on a server whose database holds `admin` only.
async fn github_report(server: &Server, admin: &First, keys: &KeyServer, partner: &Partner) {
    let leaked = create_token(server, &admin.raw, environment(), "leaked", &[READ, WRITE]).await;
    let child = create_token(
        server,
        &leaked.raw,
        environment(),
        "made by the leaked one",
        &[READ],
    )
    .await;
    let revoked = create_token(server, &admin.raw, environment(), "revoked before", &[READ]).await;
    server
        .call(
            "DELETE",
            &format!("{}/{}", env_tokens(environment()), revoked.id),
        )
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    let unknown = never_issued().await;
    let foreign = "ghp_0000000000000000000000000000000000000";
    let body = json!([
        {"token": leaked.raw, "type": "dynamic_api_token", "url": REPORT_URL, "source": "commit"},
        {"token": revoked.raw, "type": "dynamic_api_token", "url": "", "source": "content"},
        {"token": unknown, "type": "dynamic_api_token", "url": "https://gist.github.com/x", "source": "gist_content"},
        {"token": foreign, "type": "dynamic_api_token", "url": "https://example.com", "source": "Unknown"},
    ])
    .to_string();
    let before = events(server, admin).await.len();

    // No signature, a flipped byte in the body, a flipped signature: 401, nothing changed.
    let unsigned = server
        .call("POST", "/secret-scanning/github")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect(401);
    assert!(
        unsigned.text().contains("Github-Public-Key-Signature")
            || unsigned.text().contains("github-public-key-signature"),
        "{}",
        unsigned.text()
    );
    let mut flipped = body.clone().into_bytes();
    let at = flipped.iter().position(|&b| b == b'u').unwrap();
    flipped[at] = b'v';
    server
        .call("POST", "/secret-scanning/github")
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", KEY_ID)
        .header("Github-Public-Key-Signature", partner.sign(body.as_bytes()))
        .body(flipped)
        .send()
        .await
        .expect(401);
    let mut signature = Base64::decode_vec(&partner.sign(body.as_bytes())).unwrap();
    let last = signature.len() - 1;
    signature[last] ^= 1;
    server
        .call("POST", "/secret-scanning/github")
        .header("content-type", "application/json")
        .header("Github-Public-Key-Identifier", KEY_ID)
        .header(
            "Github-Public-Key-Signature",
            Base64::encode_string(&signature),
        )
        .body(body.clone())
        .send()
        .await
        .expect(401);
    // Signed by a key the list does not hold.
    let stranger = Partner::generate();
    post_report(
        server,
        "/secret-scanning/github",
        "Github",
        &stranger,
        body.as_bytes(),
    )
    .await
    .expect(401);
    assert_eq!(events(server, admin).await.len(), before);
    assert_eq!(statuses(server, &leaked.raw).await, [200, 200, 200]);

    // Signed: revoked, with the feedback GitHub asks for. Header names in another case.
    let answer = post_report(
        server,
        "/secret-scanning/github",
        "GITHUB",
        partner,
        body.as_bytes(),
    )
    .await
    .expect(200);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert!(
        !answer.text().contains(&leaked.raw),
        "the answer holds a token"
    );
    let feedback = answer.json();
    let labels: Vec<(&str, &str, &str)> = feedback
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f.get("token_raw").is_none());
            (
                f["token_hash"].as_str().unwrap(),
                f["token_type"].as_str().unwrap(),
                f["label"].as_str().unwrap(),
            )
        })
        .collect();
    let (h1, h2, h3, h4) = (
        hex_sha256(&leaked.raw),
        hex_sha256(&revoked.raw),
        hex_sha256(&unknown),
        hex_sha256(foreign),
    );
    assert_eq!(
        labels,
        [
            (h1.as_str(), "dynamic_api_token", "true_positive"),
            (h2.as_str(), "dynamic_api_token", "true_positive"),
            (h3.as_str(), "dynamic_api_token", "false_positive"),
            (h4.as_str(), "dynamic_api_token", "false_positive"),
        ]
    );
    // 401 on every route, for the token and for what it created; the admin is untouched.
    assert_eq!(statuses(server, &leaked.raw).await, [401, 401, 401]);
    assert_eq!(statuses(server, &child.raw).await, [401, 401, 401]);
    assert_eq!(statuses(server, &admin.raw).await, [200, 200, 200]);
    let after = events(server, admin).await;
    let new: Vec<&Value> = after[before..].iter().collect();
    assert_eq!(new.len(), 2, "{new:#?}");
    let leaked_event = new.iter().find(|e| e["kind"] == "leaked").unwrap();
    assert_eq!(leaked_event["tokenId"], leaked.id.as_str());
    assert_eq!(leaked_event["actorType"], "reporter");
    assert_eq!(leaked_event["actorId"], Value::Null);
    assert_eq!(leaked_event["reporter"], "github");
    assert_eq!(leaked_event["leakUrl"], REPORT_URL);
    assert_eq!(leaked_event["leakSource"], "commit");
    assert_eq!(leaked_event["leakType"], "dynamic_api_token");
    // Every field is one the OpenAPI description names.
    let openapi = server
        .call("GET", "/openapi.json")
        .send()
        .await
        .expect(200)
        .json();
    let described = &openapi["components"]["schemas"]["Event"]["properties"];
    for field in leaked_event.as_object().unwrap().keys() {
        assert!(described.get(field).is_some(), "{field} is not described");
    }
    assert!(
        openapi["components"]["schemas"]["ActorType"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("reporter"))
    );
    let cascade = new.iter().find(|e| e["kind"] == "revoked").unwrap();
    assert_eq!(cascade["tokenId"], child.id.as_str());
    assert_eq!(cascade["cause"], leaked.id.as_str());

    // The same request again: the same feedback, nothing changed.
    let again = post_report(
        server,
        "/secret-scanning/github",
        "Github",
        partner,
        body.as_bytes(),
    )
    .await
    .expect(200);
    assert_eq!(again.json(), feedback);
    assert_eq!(events(server, admin).await.len(), after.len());

    // Hostile bodies, signed: a clear 4xx, nothing revoked.
    let victim = create_token(server, &admin.raw, environment(), "victim", &[READ]).await;
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"token": victim.raw, "type": "t", "url": ""}))
        .collect();
    let hostile: Vec<(Vec<u8>, u16)> = vec![
        (b"not json".to_vec(), 400),
        (
            format!("{{\"token\": \"{}\"}}", victim.raw).into_bytes(),
            400,
        ),
        (serde_json::to_vec(&many).unwrap(), 400),
        (
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(),
            400,
        ),
        (br#"[{"token": 5, "type": "t", "url": ""}]"#.to_vec(), 400),
        (
            json!([{"token": victim.raw, "type": "t", "url": "x".repeat(1 << 20)}])
                .to_string()
                .into_bytes(),
            413,
        ),
        (
            json!([{"token": format!("{}{}", victim.raw, "x".repeat(1_000_000)), "type": "t"}])
                .to_string()
                .into_bytes(),
            400,
        ),
        (
            json!([{"token": victim.raw, "type": "t", "url": "x".repeat(900_000)}])
                .to_string()
                .into_bytes(),
            400,
        ),
    ];
    let before = events(server, admin).await.len();
    for (body, status) in &hostile {
        let answer = post_report(server, "/secret-scanning/github", "Github", partner, body).await;
        assert_eq!(
            answer.status,
            *status,
            "a body of {} bytes: {}",
            body.len(),
            answer.text()
        );
        assert!(!answer.json()["error"].as_str().unwrap().is_empty());
    }
    assert_eq!(statuses(server, &victim.raw).await, [200, 200, 200]);
    assert_eq!(events(server, admin).await.len(), before);
    // The key list was fetched at start-up and when the stranger's key was unknown.
    assert!(keys.requests.load(Ordering::SeqCst) >= 1);
}

fn sqlite_server(db: &TempDb, extra: &[&str]) -> Server {
    let mut args = vec!["--db", db.path.to_str().unwrap()];
    args.extend_from_slice(extra);
    Server::start(&args, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_report_revokes_the_token_on_sqlite() {
    let partner = Partner::generate();
    let keys = KeyServer::start(partner.key_list()).await;
    let db = TempDb::new("leak");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let url = keys.url();
    let server = sqlite_server(&db, &["--github-keys-url", &url]);
    github_report(&server, &admin, &keys, &partner).await;
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("leak report taken"), "{logs}");
    assert!(!logs.contains(&admin.raw), "a token in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_report_revokes_the_token_on_postgres() {
    let Some(url) = postgres_url("a_signed_report_revokes_the_token_on_postgres") else {
        return;
    };
    let partner = Partner::generate();
    let keys = KeyServer::start(partner.key_list()).await;
    let schema = PgSchema::create(&url).await;
    let store = PostgresStore::connect(&schema.url).await.unwrap();
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let keys_url = keys.url();
    let server = Server::start(
        &["--github-keys-url", &keys_url],
        &[("DATABASE_URL", schema.url.as_str())],
    );
    github_report(&server, &admin, &keys, &partner).await;
    let (status, logs) = server.terminate();
    schema.drop().await;
    assert!(status.success(), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_reports_need_their_key_list_and_are_taken_with_it() {
    let partner = Partner::generate();
    let keys = KeyServer::start(partner.key_list()).await;
    let db = TempDb::new("leak_gitlab");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;

    // Not configured: 404, whatever is sent.
    let server = sqlite_server(&db, &["--github-keys-url", ""]);
    for route in ["/secret-scanning/gitlab", "/secret-scanning/github"] {
        post_report(&server, route, "Gitlab", &partner, b"[]")
            .await
            .expect(404);
    }
    drop(server);

    let url = keys.url();
    let server = sqlite_server(&db, &["--gitlab-keys-url", &url]);
    let leaked = create_token(&server, &admin.raw, environment(), "leaked", &[READ]).await;
    let body = json!([{"token": leaked.raw, "type": "dyn", "url": "https://gitlab.com/g/p/-/blob/main/.env"}])
        .to_string();
    // GitHub's headers on GitLab's route are no signature.
    post_report(
        &server,
        "/secret-scanning/gitlab",
        "Github",
        &partner,
        body.as_bytes(),
    )
    .await
    .expect(401);
    assert_eq!(statuses(&server, &leaked.raw).await, [200, 200, 200]);
    let answer = post_report(
        &server,
        "/secret-scanning/gitlab",
        "Gitlab",
        &partner,
        body.as_bytes(),
    )
    .await
    .expect(200);
    assert_eq!(answer.json()[0]["label"], "true_positive");
    assert_eq!(statuses(&server, &leaked.raw).await, [401, 401, 401]);
    let events = events(&server, &admin).await;
    let event = events.iter().find(|e| e["kind"] == "leaked").unwrap();
    assert_eq!(event["reporter"], "gitlab");
    assert_eq!(event["leakUrl"], "https://gitlab.com/g/p/-/blob/main/.env");
    assert!(event.get("leakSource").is_none(), "{event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_key_list_answers_503_and_changes_nothing() {
    let partner = Partner::generate();
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/keys", closed.local_addr().unwrap());
    drop(closed);
    let db = TempDb::new("leak_unreachable");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = sqlite_server(&db, &["--github-keys-url", &url]);
    let body = json!([{"token": admin.raw, "type": "t", "url": ""}]).to_string();
    let answer = post_report(
        &server,
        "/secret-scanning/github",
        "Github",
        &partner,
        body.as_bytes(),
    )
    .await
    .expect(503);
    assert_eq!(
        answer.header("retry-after"),
        Some(apitoken::http::RETRY_AFTER_SECONDS)
    );
    assert_eq!(statuses(&server, &admin.raw).await, [200, 200, 200]);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("could not be fetched"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_managed_gitlab_revokes_through_the_revocation_api() {
    let db = TempDb::new("leak_revocation_api");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;

    let server = sqlite_server(&db, &["--github-keys-url", ""]);
    server
        .call("GET", "/v1/revocable_token_types")
        .header("authorization", "anything")
        .send()
        .await
        .expect(404);
    drop(server);

    let file = TempDb::new("gitlab_token");
    std::fs::write(&file.path, "gl-revocation-s3cret\n").unwrap();
    set_mode(&file.path, 0o600);
    let path = file.path.to_str().unwrap();
    let server = sqlite_server(
        &db,
        &[
            "--github-keys-url",
            "",
            "--gitlab-revocation-token-file",
            path,
        ],
    );
    for wrong in [
        None,
        Some("Bearer gl-revocation-s3cre"),
        Some("gl-revocation-s3cret2"),
    ] {
        let mut call = server.call("GET", "/v1/revocable_token_types");
        if let Some(wrong) = wrong {
            call = call.header("authorization", wrong);
        }
        call.send().await.expect(401);
    }
    let types = server
        .call("GET", "/v1/revocable_token_types")
        .header("authorization", "Bearer gl-revocation-s3cret")
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(types, json!({"types": ["dyn_api_token"]}));

    let leaked = create_token(&server, &admin.raw, environment(), "leaked", &[READ]).await;
    let spared = create_token(&server, &admin.raw, environment(), "other type", &[READ]).await;
    let revoke = |body: Vec<u8>, authorization: &'static str| {
        server
            .call("POST", "/v1/revoke_tokens")
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .body(body)
    };
    let body = serde_json::to_vec(&json!([
        {"type": "dyn_api_token", "token": leaked.raw, "location": "https://gitlab.example/g/p/-/blob/main/x.env#L1"},
        {"type": "aws_access_key_id", "token": spared.raw, "location": "elsewhere"},
    ]))
    .unwrap();
    revoke(body.clone(), "gl-revocation-s3cre")
        .send()
        .await
        .expect(401);
    assert_eq!(statuses(&server, &leaked.raw).await, [200, 200, 200]);
    revoke(body.clone(), "gl-revocation-s3cret")
        .send()
        .await
        .expect(204);
    assert_eq!(statuses(&server, &leaked.raw).await, [401, 401, 401]);
    // Only tokens of our type are taken.
    assert_eq!(statuses(&server, &spared.raw).await, [200, 200, 200]);
    revoke(body, "gl-revocation-s3cret")
        .send()
        .await
        .expect(204);
    for bad in [
        &b"{}"[..],
        b"[{\"type\": 1}]",
        b"nope",
        b"[{\"type\": \"t\", \"token\": \"x\", \"other\": \"\xff\"}]",
    ] {
        revoke(bad.to_vec(), "gl-revocation-s3cret")
            .send()
            .await
            .expect(400);
    }
    let events = events(&server, &admin).await;
    let leaked_events: Vec<&Value> = events.iter().filter(|e| e["kind"] == "leaked").collect();
    assert_eq!(leaked_events.len(), 1);
    assert_eq!(leaked_events[0]["reporter"], "gitlab");
    assert_eq!(
        leaked_events[0]["leakUrl"],
        "https://gitlab.example/g/p/-/blob/main/x.env#L1"
    );
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(
        !logs.contains("gl-revocation-s3cret"),
        "the secret in the log"
    );
}

#[cfg(unix)]
fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn set_mode(_path: &std::path::Path, _mode: u32) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyone_may_report_a_token_and_learns_nothing_from_the_answer() {
    let db = TempDb::new("leak_public");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = sqlite_server(
        &db,
        &[
            "--github-keys-url",
            "",
            "--public-revoke-per-minute",
            "1",
            "--public-revoke-burst",
            "2",
        ],
    );
    let leaked = create_token(&server, &admin.raw, environment(), "leaked", &[READ]).await;
    let unknown = never_issued().await;
    let post = |credentials: Value| {
        server
            .call("POST", "/api/v0/credentials/revoke")
            .json(&json!({ "credentials": credentials }))
    };
    // No token needed; the same answer for ours, for an unknown one, for anything.
    let ours = post(json!([leaked.raw])).send().await.expect(202);
    let theirs = post(json!([unknown])).send().await.expect(202);
    assert_eq!(ours.body, theirs.body);
    assert_eq!(ours.json(), json!({"accepted": 1}));
    // Revoked in moments, as a leaked event by `public`.
    let deadline = Instant::now() + Duration::from_secs(10);
    while statuses(&server, &leaked.raw).await != [401, 401, 401] {
        assert!(Instant::now() < deadline, "the reported token still works");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = events(&server, &admin).await;
    let event = events.iter().find(|e| e["kind"] == "leaked").unwrap();
    assert_eq!(event["tokenId"], leaked.id.as_str());
    assert_eq!(event["reporter"], "public");
    // The burst is spent: 429 with when to come back.
    let limited = post(json!(["x"])).send().await.expect(429);
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");

    // Bad requests are told apart from the tokens they hold by their shape alone.
    let fresh = sqlite_server(&db, &["--github-keys-url", ""]);
    let call = |body: &[u8], content_type: &str| {
        fresh
            .call("POST", "/api/v0/credentials/revoke")
            .header("content-type", content_type)
            .body(body.to_vec())
    };
    call(
        b"{\"credentials\": [], \"x\": \"\xff\"}",
        "application/json",
    )
    .send()
    .await
    .expect(400);
    call(br#"{"credentials": [1]}"#, "application/json")
        .send()
        .await
        .expect(400);
    call(br#"["dyn_x"]"#, "application/json")
        .send()
        .await
        .expect(400);
    call(br#"{"credentials": ["dyn_x"]}"#, "text/plain")
        .send()
        .await
        .expect(415);
    let many = serde_json::to_vec(&json!({"credentials": vec!["x"; 1001]})).unwrap();
    call(&many, "application/json").send().await.expect(400);
    call(&vec![b' '; 200 * 1024], "application/json")
        .send()
        .await
        .expect(413);
    drop(fresh);
    let off = sqlite_server(
        &db,
        &["--github-keys-url", "", "--public-revoke-per-minute", "0"],
    );
    off.call("POST", "/api/v0/credentials/revoke")
        .json(&json!({"credentials": []}))
        .send()
        .await
        .expect(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_count_reports_and_outcomes() {
    let partner = Partner::generate();
    let keys = KeyServer::start(partner.key_list()).await;
    let db = TempDb::new("leak_metrics");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let metrics = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    drop(metrics);
    let url = keys.url();
    let metrics_listen = metrics_addr.to_string();
    let server = sqlite_server(
        &db,
        &[
            "--github-keys-url",
            &url,
            "--metrics-listen",
            &metrics_listen,
        ],
    );
    let leaked = create_token(&server, &admin.raw, environment(), "leaked", &[READ]).await;
    let body = json!([
        {"token": leaked.raw, "type": "t", "url": ""},
        {"token": "not ours", "type": "t", "url": ""},
    ])
    .to_string();
    post_report(
        &server,
        "/secret-scanning/github",
        "Github",
        &partner,
        body.as_bytes(),
    )
    .await
    .expect(200);
    server
        .call("POST", "/secret-scanning/github")
        .body(body)
        .send()
        .await
        .expect(401);
    let text = support::call_at(metrics_addr, "GET", "/metrics")
        .send()
        .await
        .expect(200)
        .text();
    for line in [
        "apitoken_leak_reports_total{reporter=\"github\",result=\"taken\"} 1",
        "apitoken_leak_reports_total{reporter=\"github\",result=\"unsigned\"} 1",
        "apitoken_leaked_tokens_total{reporter=\"github\",outcome=\"revoked\"} 1",
        "apitoken_leaked_tokens_total{reporter=\"github\",outcome=\"not_ours\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[test]
fn the_server_refuses_to_start_with_leak_options_it_cannot_use() {
    let db = TempDb::new("leak_startup");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = sqlite_store(&db.path, None).await;
        issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
        store.pool().close().await;
    });
    let path = db.path.to_str().unwrap();
    let (status, _, stderr) = run_to_exit(&["--db", path, "--github-keys-url", "ftp://keys"], &[]);
    assert!(!status.success());
    assert!(stderr.contains("--github-keys-url"), "{stderr}");

    let file = TempDb::new("gitlab_token_open");
    std::fs::write(&file.path, "s3cret").unwrap();
    let token_file = file.path.to_str().unwrap();
    if cfg!(unix) {
        set_mode(&file.path, 0o666);
        let (status, _, stderr) = run_to_exit(
            &["--db", path, "--gitlab-revocation-token-file", token_file],
            &[],
        );
        assert!(!status.success());
        assert!(stderr.contains("chmod 600"), "{stderr}");
    }
    set_mode(&file.path, 0o600);
    std::fs::write(&file.path, "\n").unwrap();
    let (status, _, stderr) = run_to_exit(
        &["--db", path, "--gitlab-revocation-token-file", token_file],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("is empty"), "{stderr}");
}
