//! The lifetime policy through the real server (`--max-lifetime`, `--idle-expiry`,
//! `--require-expiry`): the 422 with the latest allowed instant, an idle token's 401 and
//! how lists show it. An idle token is made by issuing it with the library at a clock set
//! 40 days back: nothing waits.

mod support;

use apitoken::{IssueRequest, ManualClock, Note, TokenIssuer};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use support::{
    Server, TempDb, admin_scopes, alice, env_tokens, environment, issue_first, sqlite_store,
};

fn time(value: &serde_json::Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp: {value}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_server_enforces_its_lifetime_policy() {
    let db = TempDb::new("lifetime");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    // Created 40 days ago and never used: idle under a 30-day idle expiry.
    let created = Utc::now() - TimeDelta::days(40);
    let old = TokenIssuer::builder(store.clone())
        .clock(ManualClock::new(created))
        .build()
        .issue(
            environment(),
            alice(),
            IssueRequest::new(Note::new("idle").unwrap())
                .with_scopes([apitoken::Scope::ENVIRONMENT_API_TOKENS_READ]),
        )
        .await
        .unwrap();
    apitoken::TokenStore::close(&store).await;
    let old_id = old.token.id.to_string();
    let old_created = old.token.created_at;

    let path = db.path.to_str().unwrap();
    let server = Server::start(
        &[
            "--db",
            path,
            "--max-lifetime",
            "90d",
            "--idle-expiry",
            "30d",
        ],
        &[],
    );
    let tokens = env_tokens(environment());

    // No expiry, or a later one than 90 days from now: 422 with the latest allowed.
    let before = Utc::now();
    let body = server
        .call("POST", &tokens)
        .bearer(&admin.raw)
        .json(&json!({ "note": "forever" }))
        .send()
        .await
        .expect(422)
        .json();
    let after = Utc::now();
    assert_eq!(body["code"], "invalid_expires_at", "{body}");
    assert_eq!(
        body["payload"]["expiresAt"],
        serde_json::Value::Null,
        "{body}"
    );
    let latest = time(&body["payload"]["latest"]);
    assert!(
        latest >= before + TimeDelta::days(90) - TimeDelta::seconds(1)
            && latest <= after + TimeDelta::days(90),
        "{body}"
    );
    let too_late = (Utc::now() + TimeDelta::days(91)).to_rfc3339();
    let body = server
        .call("POST", &tokens)
        .bearer(&admin.raw)
        .json(&json!({ "note": "too long", "expiresAt": too_late }))
        .send()
        .await
        .expect(422)
        .json();
    assert_eq!(body["code"], "invalid_expires_at", "{body}");
    assert!(time(&body["payload"]["latest"]) < time(&body["payload"]["expiresAt"]));
    let within = (Utc::now() + TimeDelta::days(10)).to_rfc3339();
    server
        .call("POST", &tokens)
        .bearer(&admin.raw)
        .json(&json!({ "note": "ten days", "expiresAt": within }))
        .send()
        .await
        .expect(201);

    // The idle token: 401, like an expired one.
    let reply = server
        .call("GET", "/api/v0/tokens/me")
        .bearer(old.raw.expose_secret())
        .send()
        .await
        .expect(401);
    assert_eq!(
        reply.json(),
        json!({ "error": apitoken::http::UNAUTHORIZED_MESSAGE })
    );
    // Live lists leave it out; `state=all` shows it expired when it went idle.
    let live = server
        .call("GET", &tokens)
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json();
    assert!(
        live["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != old_id.as_str()),
        "{live}"
    );
    let all = server
        .call("GET", &format!("{tokens}?state=all"))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json();
    let shown = all["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == old_id.as_str())
        .unwrap_or_else(|| panic!("listed with state=all: {all}"));
    assert_eq!(shown["active"], false, "{shown}");
    assert_eq!(time(&shown["expiresAt"]), old_created + TimeDelta::days(30));
    assert!(shown.get("revokedAt").is_none(), "{shown}");

    // Rotating the admin token, which never expires: its successor expires within 90 days.
    let before = Utc::now();
    let rotated = server
        .call("POST", &format!("{tokens}/{}/rotate", admin.id))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(201)
        .json();
    let expires = time(&rotated["token"]["expiresAt"]);
    assert!(
        expires >= before + TimeDelta::days(90) - TimeDelta::seconds(1)
            && expires <= Utc::now() + TimeDelta::days(90),
        "{rotated}"
    );
    drop(server);
}

#[tokio::test]
async fn an_idle_expiry_shorter_than_ten_minutes_is_refused_at_start() {
    let (status, _, stderr) = support::run_to_exit(&["--idle-expiry", "5m"], &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("--idle-expiry") && stderr.contains("at least 10m"),
        "{stderr}"
    );
}
