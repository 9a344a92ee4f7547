//! Hostile and unlucky clients, against the real binary on a loopback port: connections
//! that stall, more connections than the cap, one client holding more than its share, and
//! a shutdown with a client stuck mid-headers. Raw sockets, since a well-behaved HTTP
//! client cannot stall on purpose.

mod support;

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use support::{First, Server, TempDb, admin_scopes, alice, environment, issue_first, sqlite_store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};

/// A database with a first token that may read and create tokens.
async fn database(name: &str) -> (TempDb, First) {
    let db = TempDb::new(name);
    let store = sqlite_store(&db.path, None).await;
    let first = issue_first(store.clone(), None, environment(), alice(), admin_scopes()).await;
    store.pool().close().await;
    (db, first)
}

fn create_head(addr: SocketAddr, token: &str, length: usize) -> String {
    format!(
        "POST /api/v0/environments/{}/tokens HTTP/1.1\r\nhost: {addr}\r\n\
         authorization: Bearer {token}\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n\r\n",
        environment()
    )
}

fn me(addr: SocketAddr, token: &str) -> String {
    format!(
        "GET /api/v0/tokens/me HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\n\r\n"
    )
}

/// Reads until the server closes the connection (end of file or a reset); what it read.
async fn read_to_close(reader: &mut OwnedReadHalf) -> Vec<u8> {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return read,
            Ok(n) => read.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return read,
            Err(e) => panic!("reading: {e}"),
        }
    }
}

/// Reads one whole answer (headers and a `content-length` body) off a kept-alive
/// connection.
async fn read_answer(reader: &mut OwnedReadHalf) -> String {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = reader.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "closed mid-answer: {}",
            String::from_utf8_lossy(&read)
        );
        read.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&read).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.trim().parse().unwrap());
            if read.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Whether the server still holds the connection open: nothing to read, and no end.
fn still_open(reader: &OwnedReadHalf) -> bool {
    let mut buf = [0u8; 1];
    matches!(reader.try_read(&mut buf), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

#[derive(Clone, Copy, Debug)]
enum Stall {
    /// Connects and sends nothing.
    Silent,
    /// Sends part of a request's headers, then nothing.
    PartialHeaders,
    /// Sends headers one byte every 300 ms.
    DribbledHeaders,
    /// Sends a create's headers and 10 of its 100 body bytes.
    SlowBody,
    /// Gets one answer, then keeps the connection without a next request.
    KeptAlive,
}

const STALLS: [Stall; 5] = [
    Stall::Silent,
    Stall::PartialHeaders,
    Stall::DribbledHeaders,
    Stall::SlowBody,
    Stall::KeptAlive,
];

/// Opens a connection that stalls as `stall` says; returns its read half, its local
/// address, and the task that keeps dribbling (if any).
async fn open_stalled(
    addr: SocketAddr,
    token: &str,
    stall: Stall,
    dribblers: &mut JoinSet<()>,
) -> (OwnedReadHalf, SocketAddr) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (mut reader, mut writer) = stream.into_split();
    match stall {
        Stall::Silent => {
            dribblers.spawn(async move {
                // Keeps the write half open.
                sleep(Duration::from_secs(60)).await;
                drop(writer);
            });
        }
        Stall::PartialHeaders => {
            writer
                .write_all(format!("GET /api/v0/tokens/me HTTP/1.1\r\nhost: {addr}\r\n").as_bytes())
                .await
                .unwrap();
            dribblers.spawn(async move {
                sleep(Duration::from_secs(60)).await;
                drop(writer);
            });
        }
        Stall::DribbledHeaders => {
            let request = me(addr, token);
            dribblers.spawn(async move {
                // Bounded: 200 bytes at most, a minute.
                for byte in request.bytes().take(200) {
                    if writer.write_all(&[byte]).await.is_err() {
                        return;
                    }
                    sleep(Duration::from_millis(300)).await;
                }
            });
        }
        Stall::SlowBody => {
            writer
                .write_all(create_head(addr, token, 100).as_bytes())
                .await
                .unwrap();
            writer.write_all(br#"{"note": "s"#).await.unwrap();
            dribblers.spawn(async move {
                sleep(Duration::from_secs(60)).await;
                drop(writer);
            });
        }
        Stall::KeptAlive => {
            writer.write_all(me(addr, token).as_bytes()).await.unwrap();
            let answer = read_answer(&mut reader).await;
            assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
            dribblers.spawn(async move {
                sleep(Duration::from_secs(60)).await;
                drop(writer);
            });
        }
    }
    (reader, local)
}

/// 200 stalled connections of five kinds, timeouts of 3 s: a normal request is answered
/// while they are all open, and the server closes every one of them, logging each with
/// its peer and the timeout it hit. Without timeouts they stay open and the test fails at
/// its hang guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_are_closed_and_others_served() {
    let (db, first) = database("stalled").await;
    let server = Server::start(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--header-timeout",
            "3",
            "--body-timeout",
            "3",
            "--idle-timeout",
            "3",
            // All 200 come from 127.0.0.1.
            "--max-connections-per-client",
            "0",
        ],
        &[],
    );
    let mut dribblers = JoinSet::new();
    let mut stalled = Vec::new();
    for i in 0..200 {
        let stall = STALLS[i % STALLS.len()];
        let (reader, local) = open_stalled(server.addr, &first.raw, stall, &mut dribblers).await;
        stalled.push((stall, reader, local));
    }

    let answered = timeout(
        Duration::from_secs(10),
        server
            .call("GET", "/api/v0/tokens/me")
            .bearer(&first.raw)
            .send(),
    )
    .await
    .expect("a normal request was not answered within 10 s");
    answered.expect(200);
    let open = stalled.iter().filter(|(_, r, _)| still_open(r)).count();
    assert_eq!(
        open, 200,
        "stalled connections closed before the normal request"
    );

    let mut closing = JoinSet::new();
    for (stall, mut reader, local) in stalled {
        closing.spawn(async move {
            let read = read_to_close(&mut reader).await;
            (stall, local, read)
        });
    }
    let closed = timeout(Duration::from_secs(30), closing.join_all())
        .await
        .expect("stalled connections still open 30 s after 3 s timeouts");
    dribblers.abort_all();

    let logs = server.logs();
    for (stall, local, read) in &closed {
        // Closed without an answer.
        assert!(
            read.is_empty(),
            "{stall:?}: {}",
            String::from_utf8_lossy(read)
        );
        assert!(
            logs.contains(&format!("peer={local}")),
            "{stall:?} from {local} not logged:\n{logs}"
        );
    }
    let count = |timeout: &str| {
        logs.lines()
            .filter(|l| l.contains("closed a stalled connection"))
            .filter(|l| l.contains(&format!("timeout=\"{timeout}\"")))
            .count()
    };
    assert_eq!(count("header"), 120, "{logs}");
    assert_eq!(count("body"), 40, "{logs}");
    assert_eq!(count("idle"), 40, "{logs}");
}

/// With the cap reached, one more connection is answered 503 and closed at once (the
/// header timeout is a minute), and once the others close a request is served again.
/// Without a cap it would wait for its request like any other, and the test fails at its
/// hang guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_refused_at_once() {
    let (db, first) = database("cap").await;
    let server = Server::start(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--max-connections",
            "20",
            "--header-timeout",
            "60",
        ],
        &[],
    );
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let (mut reader, _writer) = TcpStream::connect(server.addr).await.unwrap().into_split();
    let refused = timeout(Duration::from_secs(10), read_to_close(&mut reader))
        .await
        .expect("a connection over the cap was kept open");
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(refused.ends_with(r#"{"error":"too many open connections: try again shortly"}"#));

    drop(held);
    // The server sees the 20 close on its own time: try for a while.
    let mut last = String::new();
    for _ in 0..50 {
        let (mut reader, mut writer) = TcpStream::connect(server.addr).await.unwrap().into_split();
        if writer
            .write_all(me(server.addr, &first.raw).as_bytes())
            .await
            .is_ok()
        {
            last = timeout(
                Duration::from_secs(10),
                read_to_close_or_answer(&mut reader),
            )
            .await
            .expect("no answer within 10 s");
            if last.starts_with("HTTP/1.1 200 ") {
                let logs = server.logs();
                assert!(logs.contains("refused connections over the cap"), "{logs}");
                return;
            }
        }
        sleep(Duration::from_millis(100)).await;
    }
    panic!("never served again after the others closed; last answer: {last}");
}

/// A connection to `server` from the local address `from` (any port).
async fn connect_from(from: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(server).await.unwrap()
}

/// `GET /openapi.json` (no token needed) on a connection of its own from `from`, closed
/// after the answer: the answer, or what was read before the server closed.
async fn openapi_from(from: IpAddr, server: SocketAddr) -> String {
    let (mut reader, mut writer) = connect_from(from, server).await.into_split();
    // A refused connection may be closed before the request is written: the answer read
    // tells.
    let _ = writer
        .write_all(
            format!("GET /openapi.json HTTP/1.1\r\nhost: {server}\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let read = timeout(Duration::from_secs(10), read_to_close(&mut reader))
        .await
        .expect("no answer within 10 s");
    String::from_utf8_lossy(&read).into_owned()
}

/// One client (127.0.0.1) holding its limit of connections cannot take more: one more is
/// answered 503 and closed at once (the header timeout is a minute), while another client
/// (127.0.0.2) is served, and the first is served again once it closes its connections.
/// Without a per-client limit the connection over it waits for its request like any
/// other, and the test fails at its hang guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_hold_more_than_its_limit() {
    const LIMIT: usize = 5;
    let (db, _first) = database("per_client").await;
    let server = Server::start(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--max-connections",
            "20",
            "--max-connections-per-client",
            &LIMIT.to_string(),
            "--header-timeout",
            "60",
            "--idle-timeout",
            "60",
        ],
        &[],
    );
    let (first, other) = (
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
    );
    // Each held connection is answered once, so it is known to be accepted and counted,
    // then kept alive without a next request.
    let mut held = Vec::new();
    for _ in 0..LIMIT {
        let (mut reader, mut writer) = connect_from(first, server.addr).await.into_split();
        writer
            .write_all(
                format!(
                    "GET /openapi.json HTTP/1.1\r\nhost: {}\r\n\r\n",
                    server.addr
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        let answer = timeout(Duration::from_secs(10), read_answer(&mut reader))
            .await
            .expect("a connection within the limit was not answered within 10 s");
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        held.push((reader, writer));
    }

    // Nothing is sent on it: the answer comes unasked.
    let (mut reader, _writer) = connect_from(first, server.addr).await.into_split();
    let refused = timeout(Duration::from_secs(10), read_to_close(&mut reader))
        .await
        .expect("a connection over the per-client limit was kept open");
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(refused.contains("retry-after: 1"), "{refused}");
    assert!(refused.ends_with(r#"{"error":"too many open connections: try again shortly"}"#));
    let served = openapi_from(other, server.addr).await;
    assert!(served.starts_with("HTTP/1.1 200 "), "{served}");
    // Neither the refusal nor the other client disturbed the connections held.
    assert!(held.iter().all(|(reader, _)| still_open(reader)));
    // The refusal is logged after it is sent: wait for the line rather than race it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = server.logs();
        if logs.contains("refused connections over the per-client cap")
            || std::time::Instant::now() > deadline
        {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let line = logs
        .lines()
        .find(|l| l.contains("refused connections over the per-client cap"))
        .unwrap_or_else(|| panic!("no per-client refusal logged:\n{logs}"));
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(
        line.contains(&format!("max_connections_per_client={LIMIT}")),
        "{line}"
    );

    drop(held);
    // The server sees the connections close on its own time: try for a while.
    let mut last = String::new();
    for _ in 0..50 {
        last = openapi_from(first, server.addr).await;
        if last.starts_with("HTTP/1.1 200 ") {
            return;
        }
        sleep(Duration::from_millis(100)).await;
    }
    panic!("never served again after closing its connections; last answer: {last}");
}

/// One answer, or what was read before the connection closed.
async fn read_to_close_or_answer(reader: &mut OwnedReadHalf) -> String {
    let mut read = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&read).into_owned(),
            Ok(n) => read.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&read);
        if text.starts_with("HTTP/1.1 200 ") && text.ends_with('}') {
            return text.into_owned();
        }
    }
}

/// SIGTERM while one client sits mid-headers (the header timeout is a minute) and eight
/// creates have sent their headers and all but the last byte of their bodies: the creates
/// are finished after the signal and answered 201, and the process exits at the 2 s
/// deadline, logging the one connection it cut. Without the deadline it waits for the
/// stuck client and the test fails at its 20 s hang guard.
///
/// What it proves of "in flight": those requests had begun (headers sent, and in all
/// likelihood read, 300 ms before the signal) and could only finish after it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_creates_in_flight_and_cuts_a_stuck_client_at_the_deadline() {
    let (db, first) = database("shutdown").await;
    let server = Server::start(
        &[
            "--db",
            db.path.to_str().unwrap(),
            "--shutdown-timeout",
            "2",
            "--header-timeout",
            "60",
            "--body-timeout",
            "60",
        ],
        &[],
    );
    let stuck = TcpStream::connect(server.addr).await.unwrap();
    let (_stuck_reader, mut stuck_writer) = stuck.into_split();
    stuck_writer
        .write_all(b"GET /api/v0/tokens/me HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();

    let mut creates = Vec::new();
    for i in 0..8 {
        let body =
            format!(r#"{{"note": "in flight {i}", "scopes": ["environment.apiTokens.read"]}}"#);
        let (reader, mut writer) = TcpStream::connect(server.addr).await.unwrap().into_split();
        writer
            .write_all(create_head(server.addr, &first.raw, body.len()).as_bytes())
            .await
            .unwrap();
        writer
            .write_all(&body.as_bytes()[..body.len() - 1])
            .await
            .unwrap();
        creates.push((reader, writer, body));
    }
    sleep(Duration::from_millis(300)).await;

    server.sigterm();
    let mut answers = JoinSet::new();
    for (mut reader, mut writer, body) in creates {
        writer
            .write_all(&body.as_bytes()[body.len() - 1..])
            .await
            .unwrap();
        answers.spawn(async move {
            let answer = read_to_close(&mut reader).await;
            drop(writer);
            String::from_utf8_lossy(&answer).into_owned()
        });
    }
    let answers = timeout(Duration::from_secs(20), answers.join_all())
        .await
        .expect("creates in flight not answered within 20 s");
    for answer in &answers {
        assert!(answer.starts_with("HTTP/1.1 201 "), "{answer}");
        assert!(answer.contains(r#""rawToken":"dyn_"#), "{answer}");
    }

    let (status, logs) =
        tokio::task::spawn_blocking(move || server.wait_for_exit(Duration::from_secs(20)))
            .await
            .unwrap();
    assert!(status.success(), "exit status {status:?}\n{logs}");
    let cut = logs
        .lines()
        .find(|l| l.contains("shutdown deadline passed"))
        .unwrap_or_else(|| panic!("no deadline line:\n{logs}"));
    assert!(cut.contains("connections=1 "), "{cut}");
    assert!(logs.trim_end().ends_with("stopped"), "{logs}");
    drop(stuck_writer);
}
