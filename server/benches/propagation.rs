#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]
//! How long a revocation takes to reach the other servers of a fleet.
//!
//! ```text
//! cargo bench -p apitoken-server --bench propagation
//! APITOKEN_PROPAGATION_SCENARIOS="pg-api pg-kill" APITOKEN_PROPAGATION_REVOCATIONS=300 \
//!     cargo bench -p apitoken-server --bench propagation
//! ```
//!
//! Not criterion, and not a test: figures to read. Three release server processes run
//! over one database with their default cache (coherent: it follows the event log), each
//! under authentication load (`APITOKEN_PROPAGATION_LOAD` keep-alive connections per
//! server, default 2, sending `GET /api/v0/tokens/me` with a token that stays valid, one
//! request after another). Then tokens are revoked one after another, each one first
//! authenticated on every server so that every cache holds it. A token is revoked
//! through the API of the first server, or with the `apitoken revoke` command line; as
//! soon as the revocation has returned, a prober per other server sends
//! `GET /api/v0/tokens/me` with the revoked token, request after request, until that server
//! refuses it. A server's propagation time is from the return of the revocation to the
//! sending of the first request it refused (0 when the first one already was); an accepted
//! request sent later than the bound (`APITOKEN_PROPAGATION_BOUND_MS`, default 1,000, the
//! servers' staleness bound) is counted as late. Scenarios
//! (`APITOKEN_PROPAGATION_SCENARIOS`, default all four):
//!
//! - `pg-api`: PostgreSQL, revoked through the API;
//! - `pg-cli`: PostgreSQL, revoked by `apitoken revoke` (a process per revocation);
//! - `pg-kill`: `pg-api` while every server's listening connection is killed
//!   (`pg_terminate_backend`) every `APITOKEN_PROPAGATION_KILL_MS` (default 2,000);
//! - `sqlite-api`: one SQLite file, revoked through the API (the servers poll the file).
//!
//! `APITOKEN_PROPAGATION_REVOCATIONS` tokens per scenario (default 1,000). With SQLite a
//! random pause of up to `APITOKEN_PROPAGATION_JITTER_MS` (default 250) comes before each
//! revocation, so that revocations do not fall in step with the servers' polls. PostgreSQL is
//! `APITOKEN_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), in a
//! schema of its own, dropped at the end. On a 2-core machine the servers, the database,
//! the load and the probers share the cores: the times are the whole machine's.

#[path = "support/database.rs"]
mod database;
use database::Database;

use apitoken::{
    Creator, EnvironmentId, IssueRequest, Note, Scope, TokenIssuer, TokenStore, UserId,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ENVIRONMENT: &str = "0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d";

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let scenarios = std::env::var("APITOKEN_PROPAGATION_SCENARIOS")
        .unwrap_or_else(|_| "pg-api pg-cli pg-kill sqlite-api".to_owned());
    let cli = build_cli();
    println!(
        "three servers, {} load connections each; {} revocations per scenario; bound {} ms",
        setting("APITOKEN_PROPAGATION_LOAD", 2),
        setting("APITOKEN_PROPAGATION_REVOCATIONS", 1000),
        setting("APITOKEN_PROPAGATION_BOUND_MS", 1000),
    );
    println!(
        "{:<11} {:>6} {:>9} {:>9} {:>9} {:>9} {:>13} {:>10}",
        "scenario", "pairs", "p50 ms", "p90 ms", "p99 ms", "max ms", "late accepts", "revoke ms"
    );
    for scenario in scenarios.split_whitespace() {
        let (database, how) = match scenario {
            "pg-api" => (Database::postgres().await, How::Api),
            "pg-cli" => (Database::postgres().await, How::Cli),
            "pg-kill" => (Database::postgres().await, How::ApiWithKills),
            "sqlite-api" => (Database::sqlite().await, How::Api),
            other => panic!("unknown scenario {other}"),
        };
        let result = measure(&database, how, &cli).await;
        result.print(scenario);
        database.remove().await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum How {
    Api,
    Cli,
    ApiWithKills,
}

/// `cargo build --release -p apitoken-cli`, and where its binary is.
fn build_cli() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--release", "--quiet", "-p", "apitoken-cli"])
        .status()
        .expect("run cargo");
    assert!(status.success(), "building the CLI failed");
    let server = PathBuf::from(env!("CARGO_BIN_EXE_apitoken-server"));
    server.with_file_name("apitoken")
}

/// The tokens of a run: an admin that revokes through the API, one the load sends, and
/// the ones to revoke.
struct Tokens {
    admin: String,
    load: String,
    victims: Vec<(String, String)>,
}

async fn issue(database: &Database, victims: usize) -> Tokens {
    let issuer = TokenIssuer::new(database.store().await);
    let environment: EnvironmentId = ENVIRONMENT.parse().unwrap();
    let creator = Creator::new(
        "0190a5c4-7d3e-7b5a-9c1d-00000000a11c"
            .parse::<UserId>()
            .unwrap(),
    );
    let request = |note: &str| {
        IssueRequest::new(Note::new(note).unwrap()).with_scopes([
            Scope::ENVIRONMENT_API_TOKENS_READ,
            Scope::ENVIRONMENT_API_TOKENS_WRITE,
        ])
    };
    let issue = async |note: &str| {
        let issued = issuer
            .issue(environment, creator.clone(), request(note))
            .await
            .unwrap();
        (
            issued.raw.expose_secret().to_owned(),
            issued.token.id.to_string(),
        )
    };
    let admin = issue("admin").await.0;
    let load = issue("load").await.0;
    let mut list = Vec::with_capacity(victims);
    for _ in 0..victims {
        list.push(issue("victim").await);
    }
    issuer.store().close().await;
    Tokens {
        admin,
        load,
        victims: list,
    }
}

struct Server {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(database: &Database, n: usize) -> Server {
        let log = std::env::temp_dir().join(format!(
            "apitoken_propagation_{}_{n}.log",
            std::process::id()
        ));
        let mut command = Command::new(env!("CARGO_BIN_EXE_apitoken-server"));
        command
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .args(database.args());
        for (name, _) in std::env::vars() {
            if name.starts_with("APITOKEN_") && !name.starts_with("APITOKEN_PROPAGATION") {
                command.env_remove(name);
            }
        }
        command.env_remove("DATABASE_URL");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start the server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "the server did not start: {line:?}; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .parse()
            .unwrap();
        std::thread::spawn(move || for _ in stdout.lines() {});
        Server { child, addr, log }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
        if !errors.is_empty() {
            eprintln!("server {} logged errors:\n{}", self.addr, errors.join("\n"));
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

struct Client(SendRequest<Empty<Bytes>>);

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        Client(sender)
    }

    /// The status of `method path` with `token`.
    async fn status(&mut self, method: &str, path: &str, token: &str) -> u16 {
        self.0.ready().await.unwrap();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::new())
            .unwrap();
        let response = self.0.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await.unwrap();
        status
    }
}

struct Result {
    times: Vec<Duration>,
    late: u64,
    revokes: Vec<Duration>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

impl Result {
    fn print(mut self, scenario: &str) {
        self.times.sort();
        self.revokes.sort();
        println!(
            "{:<11} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>13} {:>10.2}",
            scenario,
            self.times.len(),
            percentile(&self.times, 0.5),
            percentile(&self.times, 0.9),
            percentile(&self.times, 0.99),
            percentile(&self.times, 1.0),
            self.late,
            percentile(&self.revokes, 0.5),
        );
    }
}

async fn measure(database: &Database, how: How, cli: &PathBuf) -> Result {
    let revocations = setting("APITOKEN_PROPAGATION_REVOCATIONS", 1000) as usize;
    let bound = Duration::from_millis(setting("APITOKEN_PROPAGATION_BOUND_MS", 1000));
    let tokens = issue(database, revocations).await;
    let servers: Vec<Server> = (0..3).map(|n| Server::start(database, n)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let load_requests = Arc::new(AtomicU64::new(0));

    // Authentication load on every server.
    let mut background = Vec::new();
    for server in &servers {
        for _ in 0..setting("APITOKEN_PROPAGATION_LOAD", 2) {
            let (stop, count, token, addr) = (
                stop.clone(),
                load_requests.clone(),
                tokens.load.clone(),
                server.addr,
            );
            background.push(tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                while !stop.load(Ordering::Relaxed) {
                    let status = client.status("GET", "/api/v0/tokens/me", &token).await;
                    assert_eq!(status, 200, "the load's token is refused");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    // Kill every listening connection now and then.
    if let (How::ApiWithKills, Database::Postgres { admin, .. }) = (how, database) {
        let (stop, pool) = (stop.clone(), admin.pool().clone());
        let every = Duration::from_millis(setting("APITOKEN_PROPAGATION_KILL_MS", 2000));
        background.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                let _ = sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE query = 'LISTEN \"apitoken_events\"' AND datname = current_database()",
                )
                .execute(&pool)
                .await;
            }
        }));
    }

    let mut admin = Client::connect(servers[0].addr).await;
    let mut probers = Vec::new();
    for server in &servers {
        probers.push(Client::connect(server.addr).await);
    }
    let mut result = Result {
        times: Vec::with_capacity(revocations * 2),
        late: 0,
        revokes: Vec::with_capacity(revocations),
    };
    for (raw, id) in &tokens.victims {
        // Every cache holds it.
        for prober in probers.iter_mut() {
            assert_eq!(prober.status("GET", "/api/v0/tokens/me", raw).await, 200);
        }
        // SQLite's servers poll the file: revoking right after the last poll would measure
        // a whole interval every time, so revocations fall at random points of it.
        if let Database::Sqlite(_) = database {
            let jitter = setting("APITOKEN_PROPAGATION_JITTER_MS", 250);
            let pause = rand::random_range(0..=jitter);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        let started = Instant::now();
        match how {
            How::Api | How::ApiWithKills => {
                let path = format!("/api/v0/environments/{ENVIRONMENT}/tokens/{id}");
                let status = admin.status("DELETE", &path, &tokens.admin).await;
                assert!(status < 300, "revoke answered {status}");
            }
            How::Cli => {
                let output = Command::new(cli)
                    .args(["revoke", "--env", ENVIRONMENT, "--id", id])
                    .args(database.args())
                    .output()
                    .expect("run apitoken revoke");
                assert!(
                    output.status.success(),
                    "apitoken revoke failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        let returned = Instant::now();
        result.revokes.push(returned - started);
        // The other servers (the first revoked through its own cache when through the API).
        let others = probers.iter_mut().skip(usize::from(how != How::Cli));
        let probes = others.map(|prober| async move {
            let mut late = 0;
            loop {
                let sent = Instant::now();
                match prober.status("GET", "/api/v0/tokens/me", raw).await {
                    401 => return (sent.saturating_duration_since(returned), late),
                    200 => {
                        if sent > returned + bound {
                            late += 1;
                        }
                    }
                    other => panic!("the probe answered {other}"),
                }
            }
        });
        for (time, late) in join_up_to_three(probes).await {
            result.times.push(time);
            result.late += late;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for task in background {
        task.abort();
    }
    eprintln!(
        "  ({} load requests answered meanwhile)",
        load_requests.load(Ordering::Relaxed)
    );
    drop(servers);
    result
}

/// Runs at most three futures at once and collects their outputs in order.
async fn join_up_to_three<F: core::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    let mut handles = handles.into_iter();
    match (handles.next(), handles.next(), handles.next()) {
        (Some(a), Some(b), Some(c)) => {
            let (a, b, c) = tokio::join!(a, b, c);
            outputs.extend([a, b, c]);
        }
        (Some(a), Some(b), None) => {
            let (a, b) = tokio::join!(a, b);
            outputs.extend([a, b]);
        }
        (Some(a), None, None) => outputs.push(a.await),
        _ => {}
    }
    outputs
}
