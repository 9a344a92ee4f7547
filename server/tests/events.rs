//! `GET /api/v0/environments/{environmentId}/tokens/events` end to end, on SQLite and on
//! PostgreSQL: the events of a creation, a delegated creation, a rotation and a revocation
//! that cascades, in order, with their actors, causes and successors; one environment's
//! events only, to holders of its read scope; paging with `after` and `limit`; 400 for a
//! bad query and 410 once the log was pruned past the cursor.

mod support;

use support::create_token as create;

use apitoken::{KeyFingerprint, PostgresStore, TokenStore};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use support::{
    First, PgSchema, Reply, Server, TempDb, admin_scopes, alice, bob, env_tokens, environment,
    issue_first, other_environment, postgres_url, sqlite_store,
};

const READ: &str = "environment.apiTokens.read";
const WRITE: &str = "environment.apiTokens.write";

fn events_path(environment: apitoken::EnvironmentId) -> String {
    format!("{}/events", env_tokens(environment))
}

/// One page of `environment`'s events after `query` (`?after=…&limit=…`, or empty).
async fn page(
    server: &Server,
    caller: &str,
    environment: apitoken::EnvironmentId,
    query: &str,
) -> Reply {
    server
        .call("GET", &format!("{}{query}", events_path(environment)))
        .bearer(caller)
        .send()
        .await
}

/// An event as `(kind, token, actor type, actor id, cause or successor)`.
fn summary(event: &Value) -> Summary {
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    let other = match event["kind"].as_str().unwrap() {
        "revoked" => event.get("cause").map(text),
        "rotated" => Some(text(&event["successor"])),
        _ => None,
    };
    (
        text(&event["kind"]),
        text(&event["tokenId"]),
        text(&event["actorType"]),
        text(&event["actorId"]),
        other,
    )
}

fn keys(object: &Value) -> BTreeSet<&str> {
    object
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

/// The whole scenario, on a server whose database holds `admin` (read and write, for
/// Alice, in `environment()`) and `other` (the same, for Bob, in `other_environment()`),
/// issued in that order and nothing else; `store` reaches the same database, to prune.
async fn event_log(server: &Server, admin: &First, other: &First, store: &dyn TokenStore) {
    let env = environment();
    let events = events_path(env);

    // The changes: a creation, a token creating a token, a creation in the other
    // environment, a rotation, a revocation that cascades, a token without read.
    let creator = create(server, &admin.raw, env, "creator", &[READ, WRITE]).await;
    let delegated = create(server, &creator.raw, env, "delegated", &[READ]).await;
    let elsewhere = create(
        server,
        &other.raw,
        other_environment(),
        "elsewhere",
        &[READ],
    )
    .await;
    let rotated = create(server, &admin.raw, env, "rotated", &[READ]).await;
    let successor = server
        .call(
            "POST",
            &format!("{}/{}/rotate", env_tokens(env), rotated.id),
        )
        .bearer(&admin.raw)
        .send()
        .await
        .expect(201)
        .json()["token"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    server
        .call("DELETE", &format!("{}/{}", env_tokens(env), creator.id))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(204);
    let writer = create(server, &admin.raw, env, "writes only", &[WRITE]).await;

    // Everything, from the start of the log, oldest first, never cached on the way.
    let reply = page(server, &admin.raw, env, "").await.expect(200);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let body = reply.json();
    assert_eq!(keys(&body), BTreeSet::from(["events", "nextCursor"]));
    let all = body["events"].as_array().unwrap().clone();
    let expected = [
        event("issued", &admin.id, user(&alice()), None),
        event("issued", &creator.id, tok(admin), None),
        event("issued", &delegated.id, tok(&creator), None),
        event("issued", &rotated.id, tok(admin), None),
        event("issued", &successor, tok(admin), None),
        event("rotated", &rotated.id, tok(admin), Some(&successor)),
        event("revoked", &creator.id, tok(admin), None),
        // The cascade: revoked with its creator, by whoever revoked that one.
        event("revoked", &delegated.id, tok(admin), Some(&creator.id)),
        event("issued", &writer.id, tok(admin), None),
    ];
    assert_eq!(all.iter().map(summary).collect::<Vec<_>>(), expected);
    let sequences: Vec<u64> = all
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] < w[1]),
        "in sequence order: {sequences:?}"
    );
    // The other environment's events were written in between: its sequence numbers are
    // missing here.
    assert!(
        sequences.windows(2).any(|w| w[1] > w[0] + 1),
        "the other environment's events are not shown: {sequences:?}"
    );
    assert_eq!(body["nextCursor"], sequences.last().unwrap().to_string());
    for event in &all {
        assert_eq!(event["environmentId"], env.to_string(), "{event}");
        assert!(event["at"].as_str().unwrap().ends_with('Z'), "{event}");
        let mut expected_keys = BTreeSet::from([
            "sequence",
            "at",
            "environmentId",
            "tokenId",
            "kind",
            "actorType",
            "actorId",
        ]);
        match summary(event) {
            (kind, _, _, _, Some(_)) if kind == "revoked" => expected_keys.insert("cause"),
            (kind, ..) if kind == "rotated" => expected_keys.insert("successor"),
            _ => false,
        };
        assert_eq!(keys(event), expected_keys, "{event}");
    }

    // The other environment sees its own two events, to its own token.
    let theirs = page(server, &other.raw, other_environment(), "")
        .await
        .expect(200)
        .json();
    let theirs: Vec<_> = theirs["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(summary)
        .collect();
    assert_eq!(
        theirs,
        [
            event("issued", &other.id, user(&bob()), None),
            event("issued", &elsewhere.id, tok(other), None),
        ]
    );
    // Each environment's log is refused to the other's tokens, as its list is.
    for (caller, environment) in [(&admin.raw, other_environment()), (&other.raw, env)] {
        let refused = page(server, caller, environment, "")
            .await
            .expect(403)
            .json();
        assert_eq!(keys(&refused), BTreeSet::from(["error"]), "{refused}");
        server
            .call("GET", &env_tokens(environment))
            .bearer(caller)
            .send()
            .await
            .expect(403);
    }
    // The read scope is needed: a token that only writes is refused, one that reads
    // (delegated ones included, as for the list) is not; no token is a 401.
    let refused = page(server, &writer.raw, env, "").await.expect(403).json();
    assert!(
        refused["error"].as_str().unwrap().contains(READ),
        "{refused}"
    );
    server.call("GET", &events).send().await.expect(401);

    // Paging: `limit` at a time, each page's `nextCursor` as the next `after`, until a
    // page is empty; its cursor is the `after` given, for the next poll.
    let mut after = "0".to_owned();
    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    loop {
        let body = page(server, &admin.raw, env, &format!("?after={after}&limit=2"))
            .await
            .expect(200)
            .json();
        let events = body["events"].as_array().unwrap();
        sizes.push(events.len());
        let next = body["nextCursor"].as_str().unwrap().to_owned();
        if events.is_empty() {
            assert_eq!(next, after, "an empty page keeps the cursor");
            break;
        }
        assert_eq!(next, events.last().unwrap()["sequence"].to_string());
        paged.extend(events.iter().cloned());
        after = next;
    }
    assert_eq!(sizes, [2, 2, 2, 2, 1, 0]);
    assert_eq!(paged, all);
    // After the fourth event: the rest; `after=0` is the default.
    let rest = page(server, &admin.raw, env, &format!("?after={}", sequences[3]))
        .await
        .expect(200)
        .json();
    assert_eq!(rest["events"].as_array().unwrap()[..], all[4..]);
    let from_zero = page(server, &admin.raw, env, "?after=0")
        .await
        .expect(200)
        .json();
    assert_eq!(from_zero, body);

    // A query the server does not take is a 400 that says what it takes.
    for (query, says) in [
        ("?after=x", "`after`"),
        ("?after=-1", "`after`"),
        ("?after=1.5", "`after`"),
        ("?after=%2B1", "`after`"),
        ("?after=", "`after`"),
        ("?after=9007199254740992", "`after`"),
        ("?limit=0", "`limit`"),
        ("?limit=1001", "`limit`"),
        ("?limit=ten", "`limit`"),
        ("?after=1&after=2", "each at most once"),
    ] {
        let refused = page(server, &admin.raw, env, query)
            .await
            .expect(400)
            .json();
        assert_eq!(keys(&refused), BTreeSet::from(["error"]), "{query}");
        let error = refused["error"].as_str().unwrap();
        assert!(error.contains(says), "{query}: {error}");
    }
    page(
        server,
        &admin.raw,
        env,
        "?after=9007199254740991&limit=1000",
    )
    .await
    .expect(200);
    server
        .call("GET", "/api/v0/environments/not-a-uuid/tokens/events")
        .bearer(&admin.raw)
        .send()
        .await
        .expect(400);

    // `/tokens/events` is its own route; `/tokens/{tokenId}` is still a token's.
    let one = server
        .call("GET", &format!("{}/{}", env_tokens(env), writer.id))
        .bearer(&admin.raw)
        .send()
        .await
        .expect(200)
        .json();
    assert_eq!(one["token"]["id"], writer.id.as_str());
    let not_allowed = server
        .call("DELETE", &events)
        .bearer(&admin.raw)
        .send()
        .await
        .expect(405);
    assert_eq!(not_allowed.header("allow"), Some("GET,HEAD"));

    // Once the log is pruned past a cursor, reading after it is a 410 that says where to
    // resume; reading from there works.
    let pruned = store
        .prune_events(chrono::Utc::now() + chrono::TimeDelta::hours(1), 1000)
        .await
        .unwrap();
    assert!(pruned >= 11, "every event so far: {pruned}");
    let gone = page(server, &admin.raw, env, "?after=3")
        .await
        .expect(410)
        .json();
    assert_eq!(
        keys(&gone),
        BTreeSet::from(["error", "code", "payload"]),
        "{gone}"
    );
    assert_eq!(gone["code"], "events_pruned");
    let resume = gone["payload"]["resumeAfter"].as_str().unwrap().to_owned();
    assert_eq!(gone["payload"], json!({ "resumeAfter": resume }));
    assert!(
        resume.parse::<u64>().unwrap() >= *sequences.last().unwrap(),
        "{gone}"
    );
    let error = gone["error"].as_str().unwrap();
    assert!(error.contains(&format!("after={resume}")), "{error}");
    let resumed = page(server, &admin.raw, env, &format!("?after={resume}"))
        .await
        .expect(200)
        .json();
    assert_eq!(resumed, json!({ "events": [], "nextCursor": resume }));
}

/// An event as [`summary`] gives it.
type Summary = (String, String, String, String, Option<String>);

fn event(kind: &str, token: &str, actor: (String, String), other: Option<&str>) -> Summary {
    (
        kind.to_owned(),
        token.to_owned(),
        actor.0,
        actor.1,
        other.map(str::to_owned),
    )
}

/// The actor of a change a token made.
fn tok(token: &First) -> (String, String) {
    ("token".to_owned(), token.id.clone())
}

/// The actor of a change a person made.
fn user(creator: &apitoken::Creator) -> (String, String) {
    ("user".to_owned(), creator.id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_on_sqlite() {
    let db = TempDb::new("events");
    let store = sqlite_store(&db.path, None).await;
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let other = issue_first(
        store.clone(),
        None,
        other_environment(),
        bob(),
        admin_scopes(),
    )
    .await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    event_log(&server, &admin, &other, &store).await;
    store.pool().close().await;
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("route=\"/api/v0/environments/{environmentId}/tokens/events\" status=410"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_on_postgres() {
    let Some(url) = postgres_url("the_event_log_on_postgres") else {
        return;
    };
    let schema = PgSchema::create(&url).await;
    let store = PostgresStore::connect(&schema.url).await.unwrap();
    store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
    let admin = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    let other = issue_first(
        store.clone(),
        None,
        other_environment(),
        bob(),
        admin_scopes(),
    )
    .await;
    let server = Server::start(&[], &[("DATABASE_URL", schema.url.as_str())]);
    event_log(&server, &admin, &other, &store).await;
    store.pool().close().await;
    let (status, logs) = server.terminate();
    schema.drop().await;
    assert!(status.success(), "{logs}");
}
