//! Running the server: its logs never hold a token or an `Authorization` value, SIGTERM
//! stops it cleanly, and it refuses to start, saying why, on a wrong database or key.

mod support;

use serde_json::{Value, json};
use support::{
    Server, TempDb, admin_scopes, alice, call_at, environment, issue_first, issue_reader,
    run_to_exit, sqlite_store,
};

/// Every 8-character window of the part after the prefix (random characters and
/// checksum): none may appear in the logs. The logs may show a 6-character checksum alone.
fn windows(token: &str) -> Vec<String> {
    let body = token.strip_prefix("dyn_").unwrap_or(token);
    let chars: Vec<char> = body.chars().collect();
    chars.windows(8).map(|w| w.iter().collect()).collect()
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_hold_no_secret_and_sigterm_stops_cleanly() {
    let db = TempDb::new("logs");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    // The most verbose level, and JSON: the libraries' own events are checked too.
    let server = Server::start(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--log-format",
            "json",
            "--log-level",
            "trace",
        ],
        &[],
    );
    let tokens = format!("/api/v0/environments/{}/tokens", environment());

    let mut secrets = vec![admin.raw.clone()];
    for i in 0..3 {
        let created = server
            .call("POST", &tokens)
            .bearer(&admin.raw)
            .json(
                &json!({ "note": format!("token {i}"), "scopes": ["environment.apiTokens.read"] }),
            )
            .send()
            .await
            .expect(201)
            .json();
        let raw = created["token"]["rawToken"].as_str().unwrap().to_owned();
        server
            .call("GET", "/api/v0/tokens/me")
            .bearer(&raw)
            .send()
            .await
            .expect(200);
        secrets.push(raw);
    }
    // Revoked, then presented.
    let revoked = secrets[3].clone();
    let me = server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&revoked)
        .send()
        .await
        .json();
    server
        .call(
            "DELETE",
            &format!("{tokens}/{}", me["token"]["id"].as_str().unwrap()),
        )
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&revoked)
        .send()
        .await
        .expect(401);

    // Wrong in every way, and in every place a client might put a token.
    let mut wrong = admin.raw.clone();
    wrong.pop();
    wrong.push('!');
    let unknown = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC".to_owned();
    let garbage = "dyn_Zq8Lw3Xv9Kp2Rt6Ym4Nb7Hc5Jd1Fg0Sa".to_owned();
    let header_only = "sk_live_Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9".to_owned();
    for presented in [&wrong, &unknown, &garbage, &header_only, &admin.raw] {
        server
            .call("GET", &format!("/api/v0/tokens/me?token={presented}"))
            .bearer(presented)
            .send()
            .await;
        server
            .call("GET", &format!("/api/v0/tokens/{presented}"))
            .header("authorization", format!("Token {presented}"))
            .send()
            .await
            .expect(404);
        // A note holding a well-formed token is a 400; otherwise the scope is refused (422).
        let refused = server
            .call("POST", "/api/v0/user/tokens")
            .bearer(&admin.raw)
            .json(&json!({ "note": presented, "scopes": [presented] }))
            .send()
            .await;
        assert!(
            matches!(refused.status, 400 | 422),
            "{}: {}",
            refused.status,
            String::from_utf8_lossy(&refused.body)
        );
    }
    secrets.extend([wrong, unknown, garbage, header_only]);

    let (status, logs) = server.terminate();
    assert!(status.success(), "exit status {status:?}\n{logs}");
    // Structured: every line is one JSON object with a level and a message.
    let events: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(events.iter().all(|e| e["level"].is_string()), "{logs}");
    let requests = events
        .iter()
        .filter(|e| e["message"] == "request" && e["route"].is_string())
        .count();
    assert!(requests >= 24, "{requests} request lines:\n{logs}");
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "shutting down" && e["signal"] == "SIGTERM"),
        "{logs}"
    );
    assert_eq!(events.last().unwrap()["message"], "stopped", "{logs}");
    // A reason is logged for failures (the checksum at most, never the token).
    assert!(logs.contains("is revoked"), "{logs}");
    assert!(logs.contains("unknown token …4n3LFC"), "{logs}");

    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a token is in the logs");
        for window in windows(secret) {
            assert!(
                !logs.contains(&window),
                "{window:?}, from a presented token, is in the logs:\n{logs}"
            );
        }
    }
    assert!(
        !logs.contains("Bearer "),
        "an Authorization value is in the logs"
    );
}

#[test]
fn windows_cover_the_random_part() {
    let w = windows("dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC");
    assert_eq!(w.first().unwrap(), "aGLjTe3T");
    assert!(w.iter().any(|w| w.contains("q4n3")));
    assert!(w.iter().all(|w| w.chars().count() == 8));
}

#[test]
fn refuses_to_start_without_its_database() {
    let db = TempDb::new("missing");
    let (status, stdout, stderr) = run_to_exit(&["--db", db.path.to_str().unwrap()], &[]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("no database at"), "{stderr}");
    assert!(stderr.contains("apitoken issue"), "{stderr}");
    assert!(!db.path.exists(), "an empty database was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_hash_key_the_database_was_not_created_with() {
    let db = TempDb::new("key");
    let store = sqlite_store(&db.path, None).await;
    store.pool().close().await;
    let key = "8f1c3e5a7b9d0f2e4c6a8b0d1f3e5c7a9b1d3f5e7c9a0b2d4f6e8a0c2e4a6c8e";
    let (status, stdout, stderr) = run_to_exit(
        &["--db", db.path.to_str().unwrap()],
        &[("APITOKEN_HASH_KEY", key)],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("created without a hash key"), "{stderr}");
    // Never the key itself, not even in an error.
    assert!(
        !stderr.contains(key) && !stderr.contains(&key[..16]),
        "{stderr}"
    );
    let (status, _, stderr) = run_to_exit(
        &["--db", db.path.to_str().unwrap()],
        &[("APITOKEN_HASH_KEY", "not hex")],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("openssl rand -hex 32"), "{stderr}");
}

#[test]
fn refuses_a_bad_listen_address_or_database_url() {
    let db = TempDb::new("listen");
    let (status, _, stderr) = run_to_exit(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--database-url",
            "mysql://x",
        ],
        &[],
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--db and --database-url both given"),
        "{stderr}"
    );
    let (status, _, stderr) = run_to_exit(&[], &[("DATABASE_URL", "mysql://x")]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL must be a postgres://"),
        "{stderr}"
    );
}

/// Every answer carries `X-Request-Id`: the client's when it is well formed, a new one
/// otherwise; every log line the request causes is in a `request` span with that id and
/// the client's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_an_id_in_its_answer_and_its_log_lines() {
    let db = TempDb::new("request_ids");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = Server::start(
        &["--db", db.path.to_str().unwrap(), "--log-format", "json"],
        &[],
    );
    let me = |id: Option<&str>| {
        let call = server.call("GET", "/api/v0/tokens/me").bearer(&admin.raw);
        match id {
            Some(id) => call.header("x-request-id", id),
            None => call,
        }
        .send()
    };
    let generated = |reply: &support::Reply| {
        let id = reply.header("x-request-id").expect("an id").to_owned();
        assert!(
            id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        id
    };
    let first = generated(&me(None).await.expect(200));
    let second = generated(&me(None).await.expect(200));
    assert_ne!(first, second);
    let given = "0190a5c4-7d3e.7b5a:9c1d/2e3f+4a5b=6c7d_x";
    let echoed = me(Some(given)).await.expect(200);
    assert_eq!(echoed.header("x-request-id"), Some(given));
    // Anything else is replaced: a space, too long, not ASCII, a token.
    let long = "a".repeat(129);
    for bad in ["two words", long.as_str(), "caf\u{e9}", admin.raw.as_str()] {
        let reply = server
            .call("GET", "/api/v0/tokens/me")
            .bearer(&admin.raw)
            .header("x-request-id", bad.as_bytes())
            .send()
            .await
            .expect(200);
        assert_ne!(generated(&reply), bad);
    }
    // Failures carry one too, and the lines the handler logs share it.
    let refused = server
        .call("GET", "/api/v0/tokens/me")
        .header("x-request-id", "refused-1")
        .send()
        .await
        .expect(401);
    assert_eq!(refused.header("x-request-id"), Some("refused-1"));
    let created = server
        .call(
            "POST",
            &format!("/api/v0/environments/{}/tokens", environment()),
        )
        .bearer(&admin.raw)
        .header("x-request-id", "create-1")
        .json(&json!({ "note": "traced" }))
        .send()
        .await
        .expect(201);
    assert_eq!(created.header("x-request-id"), Some("create-1"));

    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    let events: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let in_request = |id: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["span"]["name"] == "request" && e["span"]["id"] == id)
            .collect()
    };
    for id in [first.as_str(), second.as_str(), given, "refused-1"] {
        let lines = in_request(id);
        assert_eq!(lines.len(), 1, "{id}:\n{logs}");
        assert_eq!(lines[0]["message"], "request");
        let client = lines[0]["span"]["client"].as_str().unwrap();
        assert!(client.starts_with("127.0.0.1:"), "{client}");
    }
    let create = in_request("create-1");
    let messages: Vec<&str> = create
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"token created"), "{messages:?}\n{logs}");
    assert!(messages.contains(&"request"), "{messages:?}");
    assert!(!logs.contains(admin.raw.as_str()), "{logs}");
}

/// `--metrics-listen` serves `/metrics` in the Prometheus text format on its own address,
/// with the authentication failures by kind that the API's one 401 hides; the API's own
/// address does not serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_and_refused_tokens_on_their_own_address() {
    let db = TempDb::new("metrics");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let reader = issue_reader(store.clone(), alice()).await;
    store.pool().close().await;
    let server = Server::start(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let me = |token: &str| server.call("GET", "/api/v0/tokens/me").bearer(token).send();
    me(&admin.raw).await.expect(200);
    me(&admin.raw).await.expect(200);
    server
        .call(
            "DELETE",
            &format!(
                "/api/v0/environments/{}/tokens/{}",
                environment(),
                reader.id
            ),
        )
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    me(&reader.raw).await.expect(401);
    me("dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC")
        .await
        .expect(401);
    server.call("GET", "/metrics").send().await.expect(404);

    let logs = server.logs();
    let address: std::net::SocketAddr = logs
        .lines()
        .find(|line| line.contains("metrics at /metrics"))
        .and_then(|line| line.split("address=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{logs}"))
        .parse()
        .unwrap();
    let reply = call_at(address, "GET", "/metrics").send().await.expect(200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = reply.text();
    for line in [
        "apitoken_http_requests_total{route=\"/api/v0/tokens/me\",status=\"200\"} 2",
        "apitoken_http_requests_total{route=\"/api/v0/tokens/me\",status=\"401\"} 2",
        "apitoken_authentication_failures_total{kind=\"revoked\"} 1",
        "apitoken_authentication_failures_total{kind=\"unknown\"} 1",
        "apitoken_authentication_failures_total{kind=\"expired\"} 0",
        "apitoken_store_errors_total{kind=\"unavailable\"} 0",
        "apitoken_http_request_duration_seconds_count{route=\"/api/v0/tokens/me\"} 4",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    }
    let open: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("apitoken_connections_open "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(open <= 2, "{text}");
    // Authentication read through the cache: the admin's first request filled it, its
    // next ones were answered from it; the revoked and the unknown token were read.
    let lookups = |result: &str| -> u64 {
        let prefix = format!("apitoken_cache_lookups_total{{result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no cache {result}s in:\n{text}"))
            .parse()
            .unwrap()
    };
    assert!(lookups("hit") >= 2, "{text}");
    assert!(lookups("miss") >= 3, "{text}");
    assert!(!text.contains(&admin.raw) && !text.contains(&reader.raw));
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}
