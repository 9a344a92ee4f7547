//! Authority and bounded work over HTTP (issue 17), against the real binary: a delegated
//! token acts only on itself and what it created; lists come in pages, leave revoked and
//! expired tokens out unless asked, and are never cached; paths take one spelling of an
//! id; an environment holds a bounded number of tokens; tokens that ended long ago are
//! purged.

mod support;

use apitoken::{Creator, IssueRequest, ManualClock, Note, Scope, TokenIssuer};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use support::{Server, TempDb, admin_scopes, alice, environment, ids, issue_first, sqlite_store};

const WRITE: &str = "environment.apiTokens.write";

fn env_tokens() -> String {
    support::env_tokens(environment())
}

/// Creates a token through the API with `caller`; its raw token and id.
async fn create(server: &Server, caller: &str, body: Value) -> (String, String) {
    let created = server
        .call("POST", &env_tokens())
        .bearer(caller)
        .json(&body)
        .send()
        .await
        .expect(201)
        .json();
    let token = &created["token"];
    (
        token["rawToken"].as_str().unwrap().to_owned(),
        token["id"].as_str().unwrap().to_owned(),
    )
}

/// The review's attack: R (three scopes) creates K with `environment.apiTokens.write`
/// only; K reads its creator's id from `/tokens/me` and deletes it. Refused with 403 now
/// (it was a 204 that killed R, R's other tokens and K itself), as are deleting the
/// never-expiring admin token, through either route, and R's other token; R and the admin
/// token still work. K deletes what it created, and itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_token_cannot_revoke_its_elders() {
    let db = TempDb::new("elders");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let mut three = admin_scopes();
    three.push(Scope::ENVIRONMENT_USERS_READ);
    let r = issue_first(store.clone(), None, environment(), alice(), three).await;
    let (r, r_id) = (r.raw, r.id);
    store.pool().close().await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    let (k, k_id) = create(
        &server,
        &r,
        json!({ "note": "K", "scopes": [WRITE], "expiresAt": "2099-01-01T00:00:00Z" }),
    )
    .await;
    let (_, sibling_id) = create(&server, &r, json!({ "note": "R's other" })).await;
    let me = server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&k)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(me["token"]["createdByTokenId"], r_id.as_str());

    for path in [
        format!("{}/{r_id}", env_tokens()),
        format!("/api/v0/user/tokens/{r_id}"),
        format!("{}/{}", env_tokens(), admin.id),
        format!("/api/v0/user/tokens/{}", admin.id),
        format!("{}/{sibling_id}", env_tokens()),
    ] {
        let refused = server
            .call("DELETE", &path)
            .bearer(&k)
            .send()
            .await
            .expect(403)
            .json();
        let error = refused["error"].as_str().unwrap();
        assert!(error.contains("acts only on itself"), "{path}: {error}");
    }
    for raw in [&r, &admin.raw] {
        server
            .call("GET", "/api/v0/tokens/me")
            .bearer(raw)
            .send()
            .await
            .expect(200);
    }

    let (_, child_id) = create(&server, &k, json!({ "note": "K's own" })).await;
    server
        .call("DELETE", &format!("{}/{child_id}", env_tokens()))
        .bearer(&k)
        .send()
        .await
        .expect(204);
    server
        .call("DELETE", &format!("/api/v0/user/tokens/{k_id}"))
        .bearer(&k)
        .send()
        .await
        .expect(204);
    // R, which a user created, still acts on its whole environment.
    server
        .call("DELETE", &format!("{}/{sibling_id}", env_tokens()))
        .bearer(&r)
        .send()
        .await
        .expect(204);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}

/// Lists come in pages of `limit` (default 100, at most 1,000), each with the next
/// page's cursor in `nextCursor` and in a `Link` header, until the last, which has
/// neither; `state=all` adds the revoked ones; every list and `/tokens/me` is
/// `Cache-Control: no-store`; a bad `limit`, `cursor` or `state` is a 400 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_come_in_pages_that_are_never_cached() {
    let db = TempDb::new("pages");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    let mut created = vec![admin.id.clone()];
    for n in 0..6 {
        created.push(
            create(&server, &admin.raw, json!({ "note": format!("t{n}") }))
                .await
                .1,
        );
    }
    let revoked = created.pop().unwrap();
    server
        .call("DELETE", &format!("{}/{revoked}", env_tokens()))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);

    for (query, expected) in [
        ("", created.clone()),
        ("&state=all", {
            let mut all = created.clone();
            all.push(revoked.clone());
            all
        }),
    ] {
        let mut seen = Vec::new();
        let mut next = format!("{}?limit=2{query}", env_tokens());
        loop {
            let page = server
                .call("GET", &next)
                .bearer(&admin.raw)
                .send()
                .await
                .expect(200);
            assert_eq!(page.header("cache-control"), Some("no-store"));
            let body = page.json();
            let tokens = ids(&page);
            assert!(tokens.len() <= 2, "{body}");
            seen.extend(tokens);
            match body.get("nextCursor").and_then(Value::as_str) {
                Some(cursor) => {
                    let link = page
                        .header("link")
                        .expect("a Link header with the next page");
                    let target = link
                        .strip_prefix('<')
                        .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                        .unwrap_or_else(|| panic!("not a next link: {link}"));
                    assert!(target.contains(&format!("cursor={cursor}")), "{link}");
                    next = target.to_owned();
                }
                None => {
                    assert_eq!(page.header("link"), None, "the last page links nowhere");
                    break;
                }
            }
            assert!(seen.len() <= expected.len(), "paging does not end");
        }
        assert_eq!(seen, expected, "pages of {query:?}");
    }

    let whole = server
        .call("GET", &env_tokens())
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200);
    assert_eq!(ids(&whole), created, "one default page holds them all");
    assert!(whole.json().get("nextCursor").is_none());
    let me = server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200);
    assert_eq!(me.header("cache-control"), Some("no-store"));
    let mine = server
        .call("GET", "/api/v0/user/tokens?limit=1")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200);
    assert_eq!(mine.header("cache-control"), Some("no-store"));
    assert!(mine.json()["nextCursor"].is_string());

    for (query, names) in [
        ("limit=0", "`limit`"),
        ("limit=1001", "`limit`"),
        ("limit=ten", "`limit`"),
        ("cursor=abc", "cursor"),
        (
            "cursor=ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "cursor",
        ),
        ("state=revoked", "`state`"),
        ("limit=1&limit=2", "at most once"),
    ] {
        for path in [env_tokens(), "/api/v0/user/tokens".to_owned()] {
            let refused = server
                .call("GET", &format!("{path}?{query}"))
                .bearer(&admin.raw)
                .send()
                .await
                .expect(400)
                .json();
            let error = refused["error"].as_str().unwrap();
            assert!(error.contains(names), "{query}: {error}");
        }
    }
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}

/// An id in a path has one spelling, the canonical lower-case hyphenated UUID: any other
/// (upper case, braces, no hyphens, a URN) is a 400, so that a proxy rule or a cache keyed
/// by path never sees one token under two names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_take_ids_in_one_spelling() {
    let db = TempDb::new("spelling");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    let env = environment().to_string();
    let id = admin.id.clone();
    let spellings = |uuid: &str| {
        [
            uuid.to_uppercase(),
            format!("{{{uuid}}}"),
            uuid.replace('-', ""),
            format!("urn:uuid:{uuid}"),
        ]
    };
    for other in spellings(&env) {
        let reply = server
            .call("GET", &format!("/api/v0/environments/{other}/tokens"))
            .bearer(&admin.raw)
            .send()
            .await
            .expect(400);
        assert!(
            reply.text().contains("environmentId"),
            "{other}: {}",
            reply.text()
        );
    }
    for other in spellings(&id) {
        for path in [
            format!("/api/v0/environments/{env}/tokens/{other}"),
            format!("/api/v0/user/tokens/{other}"),
        ] {
            let reply = server
                .call("DELETE", &path)
                .bearer(&admin.raw)
                .send()
                .await
                .expect(400);
            assert!(reply.text().contains("tokenId"), "{path}: {}", reply.text());
        }
    }
    // Still there: no spelling reached it.
    server
        .call("GET", "/api/v0/tokens/me")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}

/// `--max-tokens-per-environment` bounds every token an environment keeps, revoked ones
/// included: one more is a 422 `too_many_api_tokens` naming the limit, and nothing is
/// created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_holds_a_bounded_number_of_tokens() {
    let db = TempDb::new("cap");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    let server = Server::start(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--max-tokens-per-environment",
            "3",
        ],
        &[],
    );
    let (_, second) = create(&server, &admin.raw, json!({ "note": "two" })).await;
    server
        .call("DELETE", &format!("{}/{second}", env_tokens()))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    create(&server, &admin.raw, json!({ "note": "three" })).await;
    let refused = server
        .call("POST", &env_tokens())
        .bearer(&admin.raw)
        .json(&json!({ "note": "four" }))
        .send()
        .await
        .expect(422)
        .json();
    assert_eq!(refused["code"], "too_many_api_tokens", "{refused}");
    assert_eq!(refused["payload"]["limit"], 3, "{refused}");
    assert_eq!(
        refused["payload"]["projectEnvironmentId"],
        environment().to_string()
    );
    let all = server
        .call("GET", &format!("{}?state=all", env_tokens()))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200);
    assert_eq!(ids(&all).len(), 3, "nothing was created");
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
}

/// The server deletes tokens revoked or expired longer ago than `--purge-after` when it
/// starts (and hourly): a token revoked in 2020 is gone, one revoked now stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_purges_tokens_that_ended_long_ago() {
    let db = TempDb::new("purge");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let long_ago: DateTime<Utc> = "2020-01-01T00:00:00Z".parse().unwrap();
    let old_issuer = TokenIssuer::builder(store.clone())
        .clock(ManualClock::new(long_ago))
        .build();
    let operator = Creator::new(alice().id);
    let old = old_issuer
        .issue(
            environment(),
            operator.clone(),
            IssueRequest::new(Note::new("revoked in 2020").unwrap())
                .with_scopes([Scope::ENVIRONMENT_API_TOKENS_READ]),
        )
        .await
        .unwrap();
    old_issuer
        .revoke(environment(), operator, old.token.id)
        .await
        .unwrap();
    store.pool().close().await;
    let server = Server::start(
        &["--db", db.path.to_str().unwrap(), "--purge-after", "90d"],
        &[],
    );
    let (_, recent) = create(&server, &admin.raw, json!({ "note": "revoked now" })).await;
    server
        .call("DELETE", &format!("{}/{recent}", env_tokens()))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    let old_id = old.token.id.to_string();
    let mut listed = Vec::new();
    // The purge at start-up runs beside the first requests: wait for it, boundedly.
    for _ in 0..100 {
        listed = ids(&server
            .call("GET", &format!("{}?state=all", env_tokens()))
            .bearer(&admin.raw)
            .send()
            .await
            .expect(200));
        if !listed.contains(&old_id) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        !listed.contains(&old_id),
        "the 2020 token was purged: {listed:?}"
    );
    assert!(listed.contains(&recent), "the token revoked now stays");
    assert!(listed.contains(&admin.id));
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("purged=1"), "{logs}");
}
