//! Tokens with allowed ranges over HTTP: the client's address is the connection's peer,
//! or what a trusted proxy's `X-Forwarded-For` names; outside the ranges the answer is a
//! 403 `ip_not_allowed`, and the last use shows the address (`lastUsedIp`).

mod support;

use serde_json::{Value, json};
use support::{
    Server, TempDb, admin_scopes, alice, env_tokens, environment, issue_first, sqlite_store,
};

const READ: &str = "environment.apiTokens.read";
const WRITE: &str = "environment.apiTokens.write";

/// A server over a fresh SQLite file with an admin token (no ranges), started with
/// `args`.
async fn start(name: &str, args: &[&str]) -> (TempDb, Server, String) {
    let db = TempDb::new(name);
    let store = sqlite_store(&db.path, None).await;
    let first = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let mut all = vec!["--db", db.path.to_str().unwrap()];
    all.extend_from_slice(args);
    let server = Server::start(&all, &[]);
    (db, server, first.raw)
}

/// Creates a token allowed from `ranges` with `caller`: its raw token and record.
async fn create(server: &Server, caller: &str, ranges: &[&str]) -> (String, Value) {
    let created = server
        .call("POST", &env_tokens(environment()))
        .bearer(caller)
        .json(&json!({ "note": "ranged", "scopes": [READ, WRITE], "allowedCidrs": ranges }))
        .send()
        .await
        .expect(201)
        .json();
    let raw = created["token"]["rawToken"].as_str().unwrap().to_owned();
    (raw, created["token"].clone())
}

/// `GET /api/v0/tokens/me` with `token` and these `X-Forwarded-For` lines.
async fn me(server: &Server, token: &str, forwarded: &[&str]) -> support::Reply {
    let mut call = server.call("GET", "/api/v0/tokens/me").bearer(token);
    for line in forwarded {
        call = call.header("x-forwarded-for", line);
    }
    call.send().await
}

fn assert_ip_not_allowed(reply: support::Reply) {
    let body = reply.expect(403).json();
    assert_eq!(body["code"], "ip_not_allowed", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("may not be used from"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_is_the_client_and_forwarded_headers_are_ignored_by_default() {
    let (_db, server, admin) = start("cidr_untrusted", &[]).await;
    let (office, record) = create(&server, &admin, &["10.0.0.0/8", "2001:db8::/32"]).await;
    assert_eq!(
        record["allowedCidrs"],
        json!(["10.0.0.0/8", "2001:db8::/32"])
    );
    assert!(record.get("lastUsedIp").is_none(), "{record}");
    let (local, _) = create(&server, &admin, &["127.0.0.1"]).await;

    // From 127.0.0.1, whatever the client claims.
    assert_ip_not_allowed(me(&server, &office, &[]).await);
    assert_ip_not_allowed(me(&server, &office, &["10.1.2.3"]).await);
    let body = me(&server, &local, &["10.1.2.3"]).await.expect(200).json();
    assert_eq!(body["token"]["allowedCidrs"], json!(["127.0.0.1/32"]));
    assert_eq!(body["token"]["lastUsedIp"], "127.0.0.1", "{body}");

    // A token without ranges shows the address of its last use too, in the list.
    let listed = server
        .call("GET", &format!("{}?limit=10", env_tokens(environment())))
        .bearer(&admin)
        .send()
        .await
        .expect(200)
        .json();
    let admin_record = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["allowedCidrs"].is_null())
        .unwrap();
    assert_eq!(admin_record["lastUsedIp"], "127.0.0.1", "{listed}");

    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    // Logged with the address, never with the token.
    assert!(logs.contains("ip_not_allowed"), "{logs}");
    assert!(logs.contains("127.0.0.1"), "{logs}");
    assert!(!logs.contains(&office), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_forwarded_address_is_the_client() {
    let (_db, server, admin) = start("cidr_trusted", &["--trusted-proxy", "127.0.0.1/32"]).await;
    let (office, _) = create(&server, &admin, &["10.0.0.0/8", "2001:db8::/32"]).await;

    // Without the header, the proxy itself is the client.
    assert_ip_not_allowed(me(&server, &office, &[]).await);
    let body = me(&server, &office, &["10.1.2.3"]).await.expect(200).json();
    assert_eq!(body["token"]["lastUsedIp"], "10.1.2.3", "{body}");
    me(&server, &office, &["[2001:db8::9]:443"])
        .await
        .expect(200);
    // Read from the right: the first untrusted entry is the client, and what it wrote
    // to the left of it counts for nothing.
    assert_ip_not_allowed(me(&server, &office, &["10.1.2.3, 192.0.2.1"]).await);
    me(&server, &office, &["192.0.2.1, 10.1.2.3, 127.0.0.1"])
        .await
        .expect(200);
    me(&server, &office, &["192.0.2.1", "10.1.2.3"])
        .await
        .expect(200);

    // A malformed entry from the trusted proxy is a 400 that says what to fix.
    let body = me(&server, &office, &["unknown"]).await.expect(400).json();
    assert_eq!(
        body["error"]
            .as_str()
            .map(|e| e.contains("X-Forwarded-For")),
        Some(true),
        "{body}"
    );

    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_creates_tokens_only_inside_its_own_ranges() {
    let (_db, server, admin) = start("cidr_delegation", &[]).await;
    let (parent, _) = create(&server, &admin, &["127.0.0.0/8", "2001:db8::/32"]).await;

    // No list asked: the creator's.
    let created = server
        .call("POST", &env_tokens(environment()))
        .bearer(&parent)
        .json(&json!({ "note": "child", "scopes": [READ] }))
        .send()
        .await
        .expect(201)
        .json();
    assert_eq!(
        created["token"]["allowedCidrs"],
        json!(["127.0.0.0/8", "2001:db8::/32"])
    );
    let (narrow, _) = create(&server, &parent, &["127.0.0.1/32"]).await;
    me(&server, &narrow, &[]).await.expect(200);

    let refused = server
        .call("POST", &env_tokens(environment()))
        .bearer(&parent)
        .json(&json!({ "note": "wider", "scopes": [READ], "allowedCidrs": ["127.0.0.0/8", "0.0.0.0/0"] }))
        .send()
        .await
        .expect(422)
        .json();
    assert_eq!(refused["code"], "invalid_allowed_cidrs", "{refused}");
    assert_eq!(
        refused["payload"],
        json!({ "notCovered": ["0.0.0.0/0"], "allowed": ["127.0.0.0/8", "2001:db8::/32"] })
    );

    for bad in [
        json!([]),
        json!(["10.0.0.1/8"]),
        json!("10.0.0.0/8"),
        json!(["nonsense"]),
    ] {
        let refused = server
            .call("POST", &env_tokens(environment()))
            .bearer(&admin)
            .json(&json!({ "note": "bad", "allowedCidrs": bad }))
            .send()
            .await
            .expect(422)
            .json();
        assert_eq!(refused["code"], "invalid_allowed_cidrs", "{bad}: {refused}");
        assert_eq!(
            refused["payload"],
            json!({ "notCovered": [], "allowed": null })
        );
    }
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}
