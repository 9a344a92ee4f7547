//! `apitoken::leak::FetchedKeys` against a local HTTP server of the test's own, which counts
//! requests and records their headers: the `KeySource` contract (known keys from memory,
//! unknown ones refetch at most once a minute, one fetch for concurrent callers,
//! conditional requests, whole replacement, failures keep the last good list) with the
//! reference's two signed vectors verified end to end. Time is a `ManualClock`: nothing
//! waits for the minute to pass.
#![cfg(feature = "leak-fetch")]
// Tests unwrap, index and panic freely: a panic is a failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use apitoken::ManualClock;
use apitoken::leak::{
    FetchConfigError, FetchedKeys, KeyId, KeyListError, KeySource, KeySourceError,
    MAX_KEY_LIST_BYTES, VerifyError, verify_with,
};
use chrono::TimeDelta;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

// The test vectors of the reference (docs: secret-scanning.md).
const KEY_A: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYAGMWO8XgCamYKMJS6jc/qgvSlAdAjPuDPRcXU22YxgBrz+zoN19MzuRyW87qEt9/AmtoNP5GrobzUvQSyJFVw==";
const SIG_A: &str = "MEQCIQDaMKqrGnE27S0kgMrEK0eYBmyG0LeZismAEz/BgZyt7AIfXt9fErtRS4XaeSt/AO1RtBY66YcAdjxji410VQV4xg==";
const BODY_A: &[u8] = br#"[{"source":"commit","token":"some_token","type":"some_type","url":"https://example.com/base-repo-url/"}]"#;
const KEY_B: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE9MJJHnMfn2+H4xL4YaPDA4RpJqUqkCmRCBnYERxZanmcpzQSXs1X/AljlKkbJ8qpVIW4clayyef9gWhFbNHWAA==";
const SIG_B: &str = "MEUCIQDKZokqnCjrRtw0tni+2Ltvl/uiMJ1EGumEsp1BsNr32AIgQY1YXD2nlj+XNfGK4rBfkMJ1JDOQcYXxa2sY8FNkrKc=";
const BODY_B: &[u8] = br#"[{"token":"some_token","type":"some_type","url":"some_url"}]"#;

/// A SubjectPublicKeyInfo in base64 DER, armoured in PEM lines of 64 characters.
fn pem(der_b64: &str) -> String {
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in der_b64.as_bytes().chunks(64) {
        pem.push_str(core::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// A partner's key list of these `(identifier, base64 DER)` keys.
fn key_list(keys: &[(&str, &str)]) -> String {
    let entries: Vec<_> = keys
        .iter()
        .map(|(id, der)| {
            serde_json::json!({"key_identifier": id, "key": pem(der), "is_current": true})
        })
        .collect();
    serde_json::json!({ "public_keys": entries }).to_string()
}

/// What the server answers next.
#[derive(Clone)]
enum Reply {
    /// 200 with the list and its `ETag`, or 304 to a request whose `If-None-Match` is it.
    Keys { body: String, etag: Option<String> },
    /// This status, with no body.
    Status(u16),
    /// 200 with this body, announced with `Content-Length` or read until the connection
    /// closes.
    Raw { body: Vec<u8>, content_length: bool },
    /// Reads the request and never answers.
    Silent,
}

impl Reply {
    fn keys(keys: &[(&str, &str)], etag: Option<&str>) -> Reply {
        Reply::Keys {
            body: key_list(keys),
            etag: etag.map(str::to_owned),
        }
    }
}

/// The headers of one request the server received.
#[derive(Clone, Debug, Default)]
struct Seen {
    if_none_match: Option<String>,
    authorization: Option<String>,
    user_agent: Option<String>,
}

struct Shared {
    reply: Mutex<Reply>,
    seen: Mutex<Vec<Seen>>,
    /// How many requests arrived.
    count: watch::Sender<usize>,
    /// While true, requests are read and counted but not answered.
    hold: watch::Sender<bool>,
}

/// A key list server on 127.0.0.1, plain HTTP/1.1, one request per connection.
struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Server {
    async fn start(reply: Reply) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            reply: Mutex::new(reply),
            seen: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
            hold: watch::Sender::new(false),
        });
        let serving = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, Arc::clone(&serving)));
            }
        });
        Server { addr, shared }
    }

    fn url(&self) -> String {
        format!("http://{}/meta/public_keys/secret_scanning", self.addr)
    }

    fn reply(&self, reply: Reply) {
        *self.shared.reply.lock().unwrap() = reply;
    }

    fn requests(&self) -> usize {
        *self.shared.count.borrow()
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    fn last_seen(&self) -> Seen {
        self.seen().last().cloned().unwrap()
    }

    fn hold(&self, hold: bool) {
        self.shared.hold.send_replace(hold);
    }

    async fn wait_for_requests(&self, n: usize) {
        let mut count = self.shared.count.subscribe();
        count.wait_for(|&count| count >= n).await.unwrap();
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        assert!(head.len() < 16 * 1024, "request head too long");
    }
    let head = String::from_utf8(head).unwrap();
    let mut seen = Seen::default();
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = Some(value.trim().to_owned());
        match name.to_ascii_lowercase().as_str() {
            "if-none-match" => seen.if_none_match = value,
            "authorization" => seen.authorization = value,
            "user-agent" => seen.user_agent = value,
            _ => {}
        }
    }
    let if_none_match = seen.if_none_match.clone();
    shared.seen.lock().unwrap().push(seen);
    shared.count.send_modify(|count| *count += 1);

    let mut hold = shared.hold.subscribe();
    let _ = hold.wait_for(|&held| !held).await;
    let reply = shared.reply.lock().unwrap().clone();
    let answer = match reply {
        Reply::Keys { body, etag } => match etag {
            Some(etag) if if_none_match.as_deref() == Some(etag.as_str()) => {
                format!("HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n")
                    .into_bytes()
            }
            _ => {
                let etag = etag.map(|e| format!("ETag: {e}\r\n")).unwrap_or_default();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{etag}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }
        },
        Reply::Status(status) => {
            format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .into_bytes()
        }
        Reply::Raw {
            body,
            content_length,
        } => {
            let length = if content_length {
                format!("Content-Length: {}\r\n", body.len())
            } else {
                String::new()
            };
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{length}Connection: close\r\n\r\n"
            )
            .into_bytes();
            answer.extend_from_slice(&body);
            answer
        }
        Reply::Silent => {
            std::future::pending::<()>().await;
            return;
        }
    };
    // The client may stop reading (an oversized body): a failed write is its choice.
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}

fn clock() -> ManualClock {
    ManualClock::new("2026-03-17T12:00:00Z".parse().unwrap())
}

fn source(server: &Server, clock: &ManualClock) -> FetchedKeys {
    FetchedKeys::builder(&server.url())
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn id(id: &str) -> KeyId {
    KeyId::new(id).unwrap()
}

async fn known(keys: &FetchedKeys, key: &str) -> bool {
    keys.key(&id(key)).await.unwrap().is_some()
}

fn listed(keys: &FetchedKeys) -> Vec<String> {
    keys.keys()
        .map(|list| list.iter().map(|k| k.id().to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn first_use_fetches_and_known_ids_never_refetch() {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], None)).await;
    let clock = clock();
    let keys = source(&server, &clock);
    assert!(keys.keys().is_none(), "nothing fetched before first use");
    assert_eq!(server.requests(), 0);

    verify_with(&keys, "a", SIG_A, BODY_A).await.unwrap();
    assert_eq!(server.requests(), 1);
    let seen = server.last_seen();
    assert_eq!(
        seen.user_agent.as_deref(),
        Some(concat!("apitoken/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(seen.authorization, None);
    assert_eq!(seen.if_none_match, None, "nothing to be conditional on");
    assert_eq!(listed(&keys), ["a"]);

    // A known key is answered from memory, however much time passes.
    for _ in 0..50 {
        clock.advance(TimeDelta::minutes(10));
        verify_with(&keys, "a", SIG_A, BODY_A).await.unwrap();
    }
    // And a forgery under it is refused without a fetch either.
    let refused = verify_with(&keys, "a", SIG_A, BODY_B).await.unwrap_err();
    assert!(
        matches!(refused, VerifyError::BadSignature { .. }),
        "{refused}"
    );
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn unknown_ids_refetch_at_most_once_a_minute() {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], None)).await;
    let clock = clock();
    let keys = source(&server, &clock);
    keys.refresh().await.unwrap();
    assert_eq!(server.requests(), 1);

    // The partner adds a key; a report under it arrives after the minute.
    server.reply(Reply::keys(&[("a", KEY_A), ("b", KEY_B)], None));
    clock.advance(TimeDelta::seconds(61));
    verify_with(&keys, "b", SIG_B, BODY_B).await.unwrap();
    assert_eq!(server.requests(), 2, "an unknown id refetches");

    // Made-up ids within the minute cost nothing.
    for n in 0..100 {
        assert!(!known(&keys, &format!("made-up-{n}")).await);
    }
    clock.advance(TimeDelta::seconds(59));
    assert!(!known(&keys, "made-up-again").await);
    assert_eq!(server.requests(), 2, "no refetch within the minute");

    // 61 s after the last fetch, one more.
    clock.advance(TimeDelta::seconds(2));
    assert!(!known(&keys, "made-up-late").await);
    assert_eq!(server.requests(), 3);
    assert!(!known(&keys, "made-up-later").await);
    assert_eq!(server.requests(), 3);
}

#[tokio::test]
async fn the_minimum_refetch_interval_is_configurable() {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], None)).await;
    let clock = clock();
    let keys = FetchedKeys::builder(&server.url())
        .clock(clock.clone())
        .min_refetch_interval(Duration::from_secs(10))
        .build()
        .unwrap();
    keys.refresh().await.unwrap();
    clock.advance(TimeDelta::seconds(9));
    assert!(!known(&keys, "x").await);
    assert_eq!(server.requests(), 1);
    clock.advance(TimeDelta::seconds(2));
    assert!(!known(&keys, "x").await);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_clock_that_goes_back_does_not_unlock_fetches() {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], None)).await;
    let clock = clock();
    let keys = source(&server, &clock);
    keys.refresh().await.unwrap();
    clock.advance(TimeDelta::hours(-2));
    assert!(!known(&keys, "x").await);
    clock.advance(TimeDelta::seconds(30));
    assert!(!known(&keys, "y").await);
    assert_eq!(server.requests(), 1);
    // One interval after the clock was seen going back, fetches resume.
    clock.advance(TimeDelta::seconds(31));
    assert!(!known(&keys, "z").await);
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn fetches_are_conditional_and_304_keeps_the_list() {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], Some("\"v1\""))).await;
    let clock = clock();
    let keys = source(&server, &clock);
    keys.refresh().await.unwrap();
    let before = keys.keys().unwrap();
    assert_eq!(server.last_seen().if_none_match, None);

    clock.advance(TimeDelta::seconds(61));
    assert_eq!(keys.key(&id("b")).await.unwrap().map(|_| ()), None);
    assert_eq!(server.requests(), 2);
    assert_eq!(server.last_seen().if_none_match.as_deref(), Some("\"v1\""));
    // The 304 kept the very list, and counted as a successful fetch.
    assert!(Arc::ptr_eq(&before, &keys.keys().unwrap()));
    verify_with(&keys, "a", SIG_A, BODY_A).await.unwrap();
    assert!(!known(&keys, "c").await);
    assert_eq!(server.requests(), 2);

    // refresh is conditional too, and fetches whatever the interval.
    keys.refresh().await.unwrap();
    assert_eq!(server.requests(), 3);
    assert_eq!(server.last_seen().if_none_match.as_deref(), Some("\"v1\""));
}

#[tokio::test]
async fn a_new_list_replaces_the_old_one_whole() {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], Some("\"v1\""))).await;
    let clock = clock();
    let keys = source(&server, &clock);
    verify_with(&keys, "a", SIG_A, BODY_A).await.unwrap();

    // The partner rotates: b is added, a withdrawn.
    server.reply(Reply::keys(&[("b", KEY_B)], Some("\"v2\"")));
    clock.advance(TimeDelta::seconds(61));
    verify_with(&keys, "b", SIG_B, BODY_B).await.unwrap();
    assert_eq!(server.requests(), 2);
    assert_eq!(listed(&keys), ["b"]);

    let withdrawn = verify_with(&keys, "a", SIG_A, BODY_A).await.unwrap_err();
    assert!(
        matches!(&withdrawn, VerifyError::UnknownKey { id } if id.as_str() == "a"),
        "{withdrawn}"
    );
    assert_eq!(server.requests(), 2, "within the minute: no fetch");

    // The next fetch is conditional on the new list's ETag.
    clock.advance(TimeDelta::seconds(61));
    assert!(!known(&keys, "a").await);
    assert_eq!(server.requests(), 3);
    assert_eq!(server.last_seen().if_none_match.as_deref(), Some("\"v2\""));
}

#[tokio::test]
async fn an_unknown_id_after_a_refresh_is_unknown_without_a_fetch() {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], None)).await;
    let clock = clock();
    let keys = source(&server, &clock);
    keys.refresh().await.unwrap();
    assert!(keys.key(&id("nope")).await.unwrap().is_none());
    let unknown = verify_with(&keys, "nope", SIG_A, BODY_A).await.unwrap_err();
    assert!(
        matches!(&unknown, VerifyError::UnknownKey { id } if id.as_str() == "nope"),
        "{unknown}"
    );
    // Vector A's signature is not B's, whichever key is asked.
    let wrong = verify_with(&keys, "a", SIG_B, BODY_B).await.unwrap_err();
    assert!(matches!(wrong, VerifyError::BadSignature { .. }), "{wrong}");
    assert_eq!(server.requests(), 1);
}

/// After a good list (ETag `"v1"`), the server answers `failure`: the fetch an unknown id
/// makes fails as `check` says, the good list keeps verifying, unknown ids get the same
/// failure without I/O until the minute has passed, and the next good answer recovers
/// (conditionally on the good list's ETag, not on anything the failure sent).
async fn failure_keeps_the_last_good_list(failure: Reply, check: impl Fn(&KeySourceError)) {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], Some("\"v1\""))).await;
    let clock = clock();
    let keys = source(&server, &clock);
    keys.refresh().await.unwrap();

    server.reply(failure);
    clock.advance(TimeDelta::seconds(61));
    let err = keys.key(&id("b")).await.unwrap_err();
    check(&err);
    assert_eq!(server.requests(), 2);
    verify_with(&keys, "a", SIG_A, BODY_A).await.unwrap();
    assert_eq!(listed(&keys), ["a"]);

    // Until the next fetch may be tried, the same answer, without I/O.
    clock.advance(TimeDelta::seconds(30));
    for other in ["b", "c"] {
        let again = keys.key(&id(other)).await.unwrap_err();
        check(&again);
        assert_eq!(again.to_string(), err.to_string());
        let via_verify = verify_with(&keys, other, SIG_B, BODY_B).await.unwrap_err();
        assert!(
            matches!(&via_verify, VerifyError::KeySource(inner) if inner.to_string() == err.to_string()),
            "{via_verify}"
        );
    }
    assert_eq!(server.requests(), 2);

    // The partner recovers, with the list it had: 304 to the good list's ETag.
    server.reply(Reply::keys(&[("a", KEY_A), ("b", KEY_B)], Some("\"v1\"")));
    clock.advance(TimeDelta::seconds(31));
    assert!(!known(&keys, "b").await, "304: the old list stands");
    assert_eq!(server.requests(), 3);
    assert_eq!(server.last_seen().if_none_match.as_deref(), Some("\"v1\""));
    assert!(
        !known(&keys, "c").await,
        "Ok(None) again after a good fetch"
    );
    assert_eq!(server.requests(), 3);
}

fn unavailable_saying(err: &KeySourceError, words: &[&str]) {
    assert!(
        matches!(err, KeySourceError::Unavailable { .. }),
        "not Unavailable: {err:?}"
    );
    let message = err.to_string();
    for word in words {
        assert!(message.contains(word), "{message:?} lacks {word:?}");
    }
    assert!(message.contains("answer 503"), "{message}");
}

#[tokio::test]
async fn a_server_error_keeps_the_last_good_list() {
    failure_keeps_the_last_good_list(Reply::Status(500), |err| {
        unavailable_saying(err, &["500"]);
    })
    .await;
}

#[tokio::test]
async fn a_rate_limit_or_missing_list_says_what_to_do() {
    failure_keeps_the_last_good_list(Reply::Status(429), |err| {
        unavailable_saying(err, &["429", "bearer token"]);
    })
    .await;
    failure_keeps_the_last_good_list(Reply::Status(404), |err| {
        unavailable_saying(err, &["404", "check the key list URL"]);
    })
    .await;
}

#[tokio::test]
async fn garbage_json_keeps_the_last_good_list() {
    let garbage = Reply::Raw {
        body: b"<html>rate limited</html>".to_vec(),
        content_length: true,
    };
    failure_keeps_the_last_good_list(garbage, |err| {
        assert!(
            matches!(
                err,
                KeySourceError::InvalidKeyList(KeyListError::Malformed { line: 1, .. })
            ),
            "{err:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_list_with_an_unreadable_key_keeps_the_last_good_list() {
    // Also served with a new ETag, which must not be remembered: the good list's stays.
    let bad = Reply::Keys {
        body: key_list(&[("a", KEY_A), ("b", "bm90IGEga2V5")]),
        etag: Some("\"bad\"".to_owned()),
    };
    failure_keeps_the_last_good_list(bad, |err| {
        assert!(
            matches!(
                err,
                KeySourceError::InvalidKeyList(KeyListError::MalformedKey { id, .. }) if id.as_str() == "b"
            ),
            "{err:?}"
        );
        assert!(
            std::error::Error::source(err)
                .and_then(std::error::Error::source)
                .is_some(),
            "the key's error is kept as a source: {err:?}"
        );
    })
    .await;
}

/// A valid key list padded with whitespace past the cap: refused for its size, not its
/// content.
fn oversized() -> Vec<u8> {
    let mut body = key_list(&[("a", KEY_A), ("b", KEY_B)]).into_bytes();
    body.extend(std::iter::repeat_n(b' ', MAX_KEY_LIST_BYTES));
    body
}

#[tokio::test]
async fn an_oversized_body_keeps_the_last_good_list() {
    for content_length in [true, false] {
        let reply = Reply::Raw {
            body: oversized(),
            content_length,
        };
        failure_keeps_the_last_good_list(reply, |err| {
            unavailable_saying(err, &["larger than 65536 bytes"]);
        })
        .await;
    }
}

#[tokio::test]
async fn a_body_at_the_cap_is_read() {
    let mut body = key_list(&[("a", KEY_A)]).into_bytes();
    body.resize(MAX_KEY_LIST_BYTES, b' ');
    for content_length in [true, false] {
        let server = Server::start(Reply::Raw {
            body: body.clone(),
            content_length,
        })
        .await;
        let keys = source(&server, &clock());
        verify_with(&keys, "a", SIG_A, BODY_A).await.unwrap();
    }
}

#[tokio::test]
async fn a_list_unavailable_from_the_start_is_a_key_source_error() {
    let server = Server::start(Reply::Status(503)).await;
    let clock = clock();
    let keys = source(&server, &clock);

    // At start-up: reported, not fatal.
    let err = keys.refresh().await.unwrap_err();
    unavailable_saying(&err, &["503"]);
    assert!(keys.keys().is_none());

    // Every id is unknown without a list; until the minute has passed, the same answer.
    let refused = verify_with(&keys, "a", SIG_A, BODY_A).await.unwrap_err();
    assert!(
        matches!(
            &refused,
            VerifyError::KeySource(KeySourceError::Unavailable { .. })
        ),
        "{refused}"
    );
    assert!(keys.key(&id("b")).await.is_err());
    assert_eq!(server.requests(), 1);

    // The partner comes back.
    server.reply(Reply::keys(&[("a", KEY_A)], None));
    clock.advance(TimeDelta::seconds(61));
    verify_with(&keys, "a", SIG_A, BODY_A).await.unwrap();
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn an_unreachable_url_is_unavailable() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let keys = FetchedKeys::builder(&format!("http://{addr}/keys"))
        .clock(clock())
        .build()
        .unwrap();
    let err = keys.key(&id("a")).await.unwrap_err();
    unavailable_saying(&err, &[]);
    // Never the URL (it may hold a secret), but why.
    assert!(!err.to_string().contains(&addr.to_string()), "{err}");
    assert!(err.to_string().contains("onnect"), "{err}");
}

#[tokio::test]
async fn a_304_to_an_unconditional_request_is_unavailable() {
    let server = Server::start(Reply::Status(304)).await;
    let keys = source(&server, &clock());
    let err = keys.refresh().await.unwrap_err();
    unavailable_saying(&err, &["304", "not conditional"]);
    assert!(keys.keys().is_none());
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = Server::start(Reply::Silent).await;
    let keys = FetchedKeys::builder(&server.url())
        .clock(clock())
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    // Bounded here too, so that a source without a timeout fails rather than hangs.
    let err = tokio::time::timeout(Duration::from_secs(30), keys.key(&id("a")))
        .await
        .expect("the source's timeout never fired")
        .unwrap_err();
    unavailable_saying(&err, &["no complete answer within 200ms"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fetch() {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], None)).await;
    let clock = clock();
    let keys = Arc::new(source(&server, &clock));
    server.hold(true);

    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let keys = Arc::clone(&keys);
            tokio::spawn(async move {
                let asked = if n % 2 == 0 {
                    "a".to_owned()
                } else {
                    format!("unknown-{n}")
                };
                (n, keys.key(&id(&asked)).await)
            })
        })
        .collect();
    // The first fetch is in flight; give every other caller time to ask before it ends.
    server.wait_for_requests(1).await;
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    server.hold(false);

    for task in tasks {
        let (n, answer) = task.await.unwrap();
        let answer = answer.unwrap();
        assert_eq!(answer.is_some(), n % 2 == 0, "caller {n}");
    }
    assert_eq!(server.requests(), 1);
}

#[tokio::test]
async fn a_cancelled_fetch_counts_as_a_failed_one() {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], None)).await;
    let clock = clock();
    let keys = Arc::new(source(&server, &clock));
    server.hold(true);
    let caller = {
        let keys = Arc::clone(&keys);
        tokio::spawn(async move { keys.key(&id("a")).await })
    };
    server.wait_for_requests(1).await;
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());
    server.hold(false);

    // Callers that go away cannot make it fetch again within the minute.
    let err = keys.key(&id("a")).await.unwrap_err();
    unavailable_saying(&err, &["cancelled"]);
    assert_eq!(server.requests(), 1);

    clock.advance(TimeDelta::seconds(61));
    verify_with(&keys, "a", SIG_A, BODY_A).await.unwrap();
    assert_eq!(server.requests(), 2);
}

#[tokio::test]
async fn a_bearer_token_is_sent_and_kept_out_of_debug_output() {
    let server = Server::start(Reply::keys(&[("a", KEY_A)], None)).await;
    let builder = FetchedKeys::builder(&server.url())
        .clock(clock())
        .bearer_token("ghp_s3cr3t")
        .user_agent("example-app/1.2");
    assert!(!format!("{builder:?}").contains("s3cr3t"), "{builder:?}");
    let keys = builder.build().unwrap();
    keys.refresh().await.unwrap();
    let seen = server.last_seen();
    assert_eq!(seen.authorization.as_deref(), Some("Bearer ghp_s3cr3t"));
    assert_eq!(seen.user_agent.as_deref(), Some("example-app/1.2"));

    let debug = format!("{keys:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

#[tokio::test]
async fn debug_output_hides_a_password_or_query_in_the_url() {
    let keys = FetchedKeys::builder("https://partner:hunter2@keys.example/list?key=s3cr3t")
        .build()
        .unwrap();
    let debug = format!("{keys:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("s3cr3t"),
        "{debug}"
    );
    assert!(debug.contains("keys.example"), "{debug}");
}

#[test]
fn the_builder_refuses_what_it_cannot_use() {
    let err = FetchedKeys::builder("api.github.com/meta")
        .build()
        .unwrap_err();
    assert!(matches!(err, FetchConfigError::InvalidUrl { .. }), "{err}");
    let err = FetchedKeys::builder("ftp://example.com/keys")
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, FetchConfigError::UnsupportedScheme { scheme } if scheme == "ftp"),
        "{err}"
    );
    let err = FetchedKeys::github()
        .bearer_token("ghp_abc\r\nX-Injected: 1")
        .build()
        .unwrap_err();
    assert!(matches!(err, FetchConfigError::InvalidBearerToken), "{err}");
    assert!(!err.to_string().contains("ghp_abc"), "{err}");
    let err = FetchedKeys::github()
        .user_agent("bad\nagent")
        .build()
        .unwrap_err();
    assert!(matches!(err, FetchConfigError::InvalidUserAgent), "{err}");
    FetchedKeys::github().build().unwrap();
}
