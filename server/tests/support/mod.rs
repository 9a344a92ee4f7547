//! Shared by the end-to-end tests: the real server binary on a loopback port, a real HTTP
//! client (hyper), first tokens issued with the library into the server's database, and
//! PostgreSQL schemas of their own.
#![allow(dead_code)]

use apitoken::{
    Creator, EnvironmentId, HashKey, IssueRequest, KeyFingerprint, Note, PostgresStore, Scope,
    SqliteStore, TokenIssuer, TokenStore, UserId,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// The environment the tests work in.
pub(crate) fn environment() -> EnvironmentId {
    "0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d".parse().unwrap()
}

/// Another environment.
pub(crate) fn other_environment() -> EnvironmentId {
    "0190a5c4-7d3e-7b5a-9c1d-000000000002".parse().unwrap()
}

/// The dashboard user who issued the first token (as `apitoken issue --created-by` would).
pub(crate) fn alice() -> Creator {
    Creator {
        alias: Some("alice".to_owned()),
        email: Some("alice@example.com".to_owned()),
        ..Creator::new(
            "0190a5c4-7d3e-7b5a-9c1d-00000000a11c"
                .parse::<UserId>()
                .unwrap(),
        )
    }
}

/// Another dashboard user of the same environment.
pub(crate) fn bob() -> Creator {
    Creator::new(
        "0190a5c4-7d3e-7b5a-9c1d-000000000b0b"
            .parse::<UserId>()
            .unwrap(),
    )
}

/// A fresh name: the process id and a counter-free random part.
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}_{}_{n}_{nanos:x}", std::process::id())
}

/// A temporary SQLite path, removed with its WAL files when dropped.
pub(crate) struct TempDb {
    pub(crate) path: PathBuf,
}

impl TempDb {
    pub(crate) fn new(name: &str) -> TempDb {
        TempDb {
            path: std::env::temp_dir().join(format!("{}.db", unique_name(name))),
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

/// The path of an environment's tokens.
pub(crate) fn env_tokens(environment: EnvironmentId) -> String {
    format!("/api/v0/environments/{environment}/tokens")
}

/// The ids of a list answer's tokens, in order.
pub(crate) fn ids(list: &Reply) -> Vec<String> {
    list.json()["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The token scopes the first token gets: read and write tokens.
pub(crate) fn admin_scopes() -> Vec<Scope> {
    vec![
        Scope::ENVIRONMENT_API_TOKENS_READ,
        Scope::ENVIRONMENT_API_TOKENS_WRITE,
    ]
}

/// A first token issued with the library, the way `apitoken issue` does it: into the
/// store, migrated and bound to the hash key, as in production.
pub(crate) struct First {
    pub(crate) raw: String,
    pub(crate) id: String,
}

pub(crate) async fn issue_first(
    store: impl TokenStore + 'static,
    key: Option<HashKey>,
    environment: EnvironmentId,
    creator: Creator,
    scopes: Vec<Scope>,
) -> First {
    let mut builder = TokenIssuer::builder(store);
    if let Some(key) = key {
        builder = builder.hash_key(key);
    }
    let issuer = builder.build();
    let request = IssueRequest::new(Note::new("bootstrap").unwrap())
        .with_scopes(scopes.into_iter().collect::<apitoken::Scopes>());
    let issued = issuer.issue(environment, creator, request).await.unwrap();
    First {
        raw: issued.raw.expose_secret().to_owned(),
        id: issued.token.id.to_string(),
    }
}

/// A token of `environment()` that only reads tokens, for `creator`, issued as the CLI
/// issues (no hash key).
pub(crate) async fn issue_reader(store: impl TokenStore + 'static, creator: Creator) -> First {
    issue_first(
        store,
        None,
        environment(),
        creator,
        vec![Scope::ENVIRONMENT_API_TOKENS_READ],
    )
    .await
}

/// Opens (creating) a SQLite file, migrated and bound to `key`'s fingerprint.
pub(crate) async fn sqlite_store(path: &Path, key: Option<&HashKey>) -> SqliteStore {
    let store = SqliteStore::open(path).await.unwrap();
    store.prepare(KeyFingerprint::of(key)).await.unwrap();
    store
}

/// `POST` a token into `environment` with `caller`: its raw token and id.
pub(crate) async fn create_token(
    server: &Server,
    caller: &str,
    environment: apitoken::EnvironmentId,
    note: &str,
    scopes: &[&str],
) -> First {
    let created = server
        .call("POST", &env_tokens(environment))
        .bearer(caller)
        .json(&json!({ "note": note, "scopes": scopes }))
        .send()
        .await
        .expect(201)
        .json();
    First {
        raw: created["token"]["rawToken"].as_str().unwrap().to_owned(),
        id: created["token"]["id"].as_str().unwrap().to_owned(),
    }
}

pub(crate) mod partner;

#[path = "../../../tests/support/postgres_url.rs"]
mod postgres_url;
#[allow(unused_imports)] // not every test file needs PostgreSQL
pub(crate) use postgres_url::postgres_url;

/// A schema of its own in the test database; [`PgSchema::drop`] removes it.
pub(crate) struct PgSchema {
    admin: PostgresStore,
    pub(crate) name: String,
    /// The test database's URL with the schema as the search path.
    pub(crate) url: String,
}

impl PgSchema {
    pub(crate) async fn create(url: &str) -> PgSchema {
        let admin = PostgresStore::connect(url)
            .await
            .expect("connect to PostgreSQL at APITOKEN_TEST_POSTGRES_URL");
        let name = unique_name("apitoken_server_test");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(admin.pool())
            .await
            .unwrap();
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options=-c%20search_path%3D{name}");
        PgSchema { admin, name, url }
    }

    pub(crate) async fn drop(self) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.name
        )))
        .execute(self.admin.pool())
        .await
        .unwrap();
        self.admin.pool().close().await;
    }
}

/// The server binary, running on a loopback port chosen by the system.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `apitoken-server --listen 127.0.0.1:0 ARGS…` with only `env` of the storage
    /// and key variables set, and waits for its `listening on` line.
    pub(crate) fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_apitoken-server"));
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        for name in [
            "APITOKEN_DB",
            "DATABASE_URL",
            "APITOKEN_HASH_KEY",
            "APITOKEN_LISTEN",
            "APITOKEN_MAX_LIVE_TOKENS",
            "APITOKEN_EXTRA_SCOPES",
            "APITOKEN_LOG_FORMAT",
            "APITOKEN_LOG_LEVEL",
            "APITOKEN_HEADER_TIMEOUT",
            "APITOKEN_BODY_TIMEOUT",
            "APITOKEN_IDLE_TIMEOUT",
            "APITOKEN_MAX_CONNECTIONS",
            "APITOKEN_MAX_CONNECTIONS_PER_CLIENT",
            "APITOKEN_TRUSTED_PROXIES",
            "APITOKEN_SHUTDOWN_TIMEOUT",
            "APITOKEN_METRICS_LISTEN",
            "APITOKEN_NO_CACHE",
            "APITOKEN_CACHE_TTL",
            "APITOKEN_CACHE_STALENESS_MS",
            "APITOKEN_GITHUB_KEYS_URL",
            "APITOKEN_GITHUB_TOKEN_FILE",
            "APITOKEN_GITLAB_KEYS_URL",
            "APITOKEN_GITLAB_REVOCATION_TOKEN_FILE",
            "APITOKEN_PUBLIC_REVOKE_PER_MINUTE",
            "APITOKEN_TLS_CERT",
            "APITOKEN_TLS_KEY",
            "APITOKEN_MAX_LIFETIME",
            "APITOKEN_REQUIRE_EXPIRY",
            "APITOKEN_IDLE_EXPIRY",
        ] {
            command.env_remove(name);
        }
        command.envs(env.iter().copied());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start apitoken-server");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let stderr_reader = {
            let mut pipe = child.stderr.take().unwrap();
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    stderr.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            })
        };
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep reading so that the server never blocks on a full pipe.
            for _ in lines {}
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = server.child.kill();
                let _ = server.child.wait();
                panic!(
                    "the server did not start; its log:\n{}",
                    server.logs_after_exit()
                )
            });
        let addr = line
            .strip_prefix("listening on http://")
            .or_else(|| line.strip_prefix("listening on https://"))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        server.addr = addr.parse().unwrap();
        server
    }

    /// Everything the server wrote to standard error so far.
    pub(crate) fn logs(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    fn logs_after_exit(&mut self) -> String {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.logs()
    }

    /// Sends SIGTERM and waits (30 s at most) for the server to exit; returns its status
    /// and its whole log.
    pub(crate) fn terminate(self) -> (ExitStatus, String) {
        self.sigterm();
        self.wait_for_exit(Duration::from_secs(30))
    }

    /// Sends SIGTERM.
    pub(crate) fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `HUP`, …).
    pub(crate) fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name} failed");
    }

    /// Waits for the server to exit (failing after `within`); returns its status and its
    /// whole log.
    pub(crate) fn wait_for_exit(mut self, within: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let logs = self.logs_after_exit();
                return (status, logs);
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop within {within:?}; its log:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A request to the server.
    pub(crate) fn call(&self, method: &str, path: &str) -> Call {
        Call {
            addr: self.addr,
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A request to any HTTP server at `addr` (a proxy in front of the server, say).
pub(crate) fn call_at(addr: SocketAddr, method: &str, path: &str) -> Call {
    Call {
        addr,
        method: method.to_owned(),
        path: path.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// Runs the binary to completion (60 s at most), for start-up failures.
pub(crate) fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_apitoken-server"));
    for name in ["APITOKEN_DB", "DATABASE_URL", "APITOKEN_HASH_KEY"] {
        command.env_remove(name);
    }
    let mut child = command
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// One HTTP request, built up then sent.
pub(crate) struct Call {
    addr: SocketAddr,
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Call {
    pub(crate) fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Call {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    pub(crate) fn bearer(self, token: &str) -> Call {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub(crate) fn json(self, body: &Value) -> Call {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(body).unwrap())
    }

    pub(crate) fn body(mut self, body: impl Into<Vec<u8>>) -> Call {
        self.body = body.into();
        self
    }

    pub(crate) async fn send(self) -> Reply {
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(self.method.as_str())
            .uri(&self.path)
            .header("host", self.addr.to_string());
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_slice());
        }
        let request = request.body(Full::new(Bytes::from(self.body))).unwrap();
        let response = sender.send_request(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes().to_vec();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: hyper::HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    pub(crate) fn expect(self, status: u16) -> Reply {
        assert_eq!(self.status, status, "body: {}", self.text());
        self
    }
}

/// A TCP proxy in front of a server: `cut` drops every connection and refuses new ones
/// until `restore`.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::AbortHandle,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (open2, connections2) = (open.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !open2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                connections2.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            open,
            connections,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub(crate) fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Accepts connections again.
    pub(crate) fn restore(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// `url` with its host and port replaced by `addr`, and the address it named.
pub(crate) fn via(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    use std::net::ToSocketAddrs;
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let upstream = host
        .to_socket_addrs()
        .unwrap()
        .next()
        .expect("the PostgreSQL host resolves");
    (format!("{scheme}://{user}{addr}{tail}"), upstream)
}
