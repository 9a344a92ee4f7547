//! Request methods the server does not know, against the real binary: hyper accepts any
//! RFC 9110 token as a method, of any length, and sending one needs no token. Such a
//! method counts against the 32 KiB head limit, and is logged as `OTHER`, never as sent.

mod support;

use support::{Server, TempDb, sqlite_store};

/// A server over a fresh (empty, migrated) database; dropped after the server, the
/// database removes its file.
async fn start(name: &str) -> (Server, TempDb) {
    let db = TempDb::new(name);
    sqlite_store(&db.path, None).await.pool().close().await;
    let server = Server::start(&["--db", db.path.to_str().unwrap()], &[]);
    (server, db)
}

/// The request lines of a whole log with the given status.
fn request_lines(logs: &str, status: u16) -> Vec<&str> {
    logs.lines()
        .filter(|l| l.contains(" request ") && l.contains(&format!("status={status} ")))
        .collect()
}

/// A 100 KB method is a 431 with the JSON body, and so is a 20 KiB one with 20 KiB of
/// headers (each fits alone, not together); neither is copied into the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_method_is_a_431_and_is_not_logged() {
    let (server, _db) = start("methods_long").await;
    let long = "LONGMETHOD".repeat(10_000);
    let half = "HALFMETHOD".repeat(2 * 1024);
    let answers = [
        server.call(&long, "/api/v0/tokens/me").send().await,
        server
            .call(&half, "/openapi.json")
            .header("cookie", "c".repeat(20 * 1024))
            .send()
            .await,
    ];
    for answer in answers {
        let answer = answer.expect(431);
        assert_eq!(answer.header("content-type"), Some("application/json"));
        let body = answer.json();
        assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
        assert!(body["error"].as_str().unwrap().contains("32 KiB"), "{body}");
    }
    // Either alone fits.
    server.call(&half, "/openapi.json").send().await.expect(405);
    server
        .call("GET", "/openapi.json")
        .header("cookie", "c".repeat(20 * 1024))
        .send()
        .await
        .expect(200);

    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    let too_large = request_lines(&logs, 431);
    assert_eq!(too_large.len(), 2, "{logs}");
    for line in too_large {
        // What a failure shows: the line might be 100 KB.
        let start = &line[..line.floor_char_boundary(300)];
        assert!(line.len() < 512, "a {} byte log line: {start}…", line.len());
        assert!(line.contains("method=OTHER "), "{start}");
        assert!(line.contains("headers_too_large"), "{start}");
    }
    for copy in ["LONGMETHODLONGMETHOD", "HALFMETHODHALFMETHOD"] {
        assert!(!logs.contains(copy), "the method was logged as sent");
    }
}

/// A short method the server does not know is answered as the router answers any method
/// a route lacks (405, or 404 off the routes) and logged as `OTHER`; the standard ones
/// keep their names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_is_answered_and_logged_as_other() {
    let (server, _db) = start("methods_unknown").await;
    let not_allowed = server
        .call("FROBNICATE", "/openapi.json")
        .send()
        .await
        .expect(405);
    assert!(
        not_allowed
            .header("allow")
            .is_some_and(|a| a.contains("GET"))
    );
    server
        .call("FROBNICATE", "/nowhere")
        .send()
        .await
        .expect(404);
    server.call("GET", "/openapi.json").send().await.expect(200);
    server.call("DELETE", "/nowhere").send().await.expect(404);

    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    assert!(!logs.contains("FROBNICATE"), "{logs}");
    let not_allowed = request_lines(&logs, 405);
    assert_eq!(not_allowed.len(), 1, "{logs}");
    assert!(
        not_allowed[0].contains("method=OTHER "),
        "{}",
        not_allowed[0]
    );
    let not_found = request_lines(&logs, 404);
    assert_eq!(not_found.len(), 2, "{logs}");
    assert!(not_found[0].contains("method=OTHER "), "{}", not_found[0]);
    assert!(not_found[1].contains("method=DELETE "), "{}", not_found[1]);
    let served = request_lines(&logs, 200);
    assert_eq!(served.len(), 1, "{logs}");
    assert!(served[0].contains("method=GET "), "{}", served[0]);
}
