#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]
//! Do the 401 answers of `GET /api/v0/tokens/me` take the same time whatever the token?
//!
//! ```text
//! cargo bench -p apitoken-server --bench timing
//! APITOKEN_TIMING_STORE=postgres cargo bench -p apitoken-server --bench timing
//! APITOKEN_TIMING_BASELINE=path/to/older/apitoken-server cargo bench -p apitoken-server --bench timing
//! ```
//!
//! Not criterion, and not a test: a timing is evidence to read, never a pass or a fail.
//! The release server binary runs on a loopback port over a fresh database (a temporary
//! SQLite file, or with `APITOKEN_TIMING_STORE=postgres` a schema of its own in the
//! database at `APITOKEN_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`,
//! dropped at the end). Tokens are issued into it with the library, as the CLI does:
//!
//! - `unknown`: one well-formed token that was never issued, sent every time;
//! - `unknown-fresh`: a new never-issued token for every request (nothing can cache it);
//! - `revoked`: issued, then revoked;
//! - `revoked-retired`: the same under the last retired key of the keyring (below): found
//!   by the look-up over every key's hash, as a token that has not moved to the new key yet;
//! - `expired`: issued with an `expiresAt` two seconds ahead, then waited past;
//! - `malformed`: a well-formed-looking token with a wrong checksum (rejected before any
//!   hashing or look-up, by design: it reveals nothing about any token).
//!
//! The issued tokens carry a note and three scopes, like tokens created through the API.
//! Every request goes over one of a few keep-alive connections, one request in flight at
//! a time; each round sends one request of every kind in a new random order, and a
//! request's time runs from sending it to having read the whole answer. The first rounds
//! warm up and are discarded. For each kind it prints the median and mean in µs, the 10th
//! and 90th percentiles, and Welch's t (with Welch–Satterthwaite degrees of freedom) of
//! its times against `unknown`'s: |t| < 3 means no difference this many samples can show.
//! A shared machine's stalls make the tails long, which inflates the variance and hides a
//! steady difference from the plain t; the last column is therefore Welch's t again with
//! both samples cut at the 90th percentile of the two pooled (as dudect crops), which
//! keeps its power when a few requests waited for the CPU.
//! It also checks that every 401 is byte-for-byte the same answer (`date` and
//! `x-request-id` aside).
//!
//! With `APITOKEN_TIMING_BASELINE` naming another server binary (say, a release build of
//! an older commit), both servers run over the same database and their requests are
//! interleaved in the same rounds, so that "before" and "after" meet the same noise.
//!
//! Settings: `APITOKEN_TIMING_ROUNDS` (default 3,000 measured rounds, after 300 of
//! warm-up), `APITOKEN_TIMING_CONNECTIONS` (default 4 per server),
//! `APITOKEN_TIMING_SERVER_ARGS` (more arguments for every server, split at spaces, e.g.
//! `--log-level error` to see what logging costs), `APITOKEN_TIMING_RING` (default 1, at
//! most 4: the servers hash with a keyring of that many keys, read from a `--hash-key-file`;
//! the first of them current, the unkeyed hash the last retired one, so that a keyring of
//! 1 is the unkeyed hash alone, as before keyrings; `revoked-retired` is then the same as
//! `revoked`). The servers log at their default level to a temporary file, as a deployed
//! server writes to a file or a pipe.

#[path = "support/database.rs"]
mod database;
use database::Database;

use apitoken::{
    Creator, EnvironmentId, HashKey, HashKeyring, IssueRequest, Note, Scope, Scopes, TokenFormat,
    TokenHasher, TokenIssuer, TokenStore, UserId,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::seq::SliceRandom;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

const WARM_UP_ROUNDS: usize = 300;

/// What a request presents.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Unknown,
    UnknownFresh,
    Revoked,
    RevokedRetired,
    Expired,
    Malformed,
}

const KINDS: [Kind; 6] = [
    Kind::Unknown,
    Kind::UnknownFresh,
    Kind::Revoked,
    Kind::RevokedRetired,
    Kind::Expired,
    Kind::Malformed,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Unknown => "unknown",
            Kind::UnknownFresh => "unknown-fresh",
            Kind::Revoked => "revoked",
            Kind::RevokedRetired => "revoked-retired",
            Kind::Expired => "expired",
            Kind::Malformed => "malformed",
        }
    }
}

/// The fixed tokens of each kind.
struct Tokens {
    unknown: String,
    revoked: String,
    revoked_retired: String,
    expired: String,
    malformed: String,
}

impl Tokens {
    fn for_kind(&self, kind: Kind, format: &TokenFormat) -> String {
        match kind {
            Kind::Unknown => self.unknown.clone(),
            Kind::UnknownFresh => format.generate(&mut rand::rng()).expose_secret().to_owned(),
            Kind::Revoked => self.revoked.clone(),
            Kind::RevokedRetired => self.revoked_retired.clone(),
            Kind::Expired => self.expired.clone(),
            Kind::Malformed => self.malformed.clone(),
        }
    }
}

/// The database of the run: `APITOKEN_TIMING_STORE` (sqlite, the default, or postgres),
/// and a store on it.
async fn create_database() -> (Database, Box<dyn TokenStore>) {
    let database = match std::env::var("APITOKEN_TIMING_STORE").as_deref() {
        Ok("postgres") => Database::postgres().await,
        Ok("sqlite") | Err(_) => Database::sqlite().await,
        Ok(other) => panic!("APITOKEN_TIMING_STORE={other}: expected sqlite or postgres"),
    };
    let store = database.store().await;
    (database, store)
}

/// The keyring of `APITOKEN_TIMING_RING` keys (see the module docs) and the lines of its
/// `--hash-key-file` (none for the unkeyed hash alone).
fn keyring() -> (HashKeyring, Vec<String>) {
    let size = setting("APITOKEN_TIMING_RING", 1).clamp(1, 4);
    if size == 1 {
        return (HashKeyring::new(TokenHasher::unkeyed()), Vec::new());
    }
    let keys: Vec<HashKey> = (1..size).map(|_| HashKey::generate().unwrap()).collect();
    let mut ring = HashKeyring::new(TokenHasher::keyed(keys[0].clone()));
    for key in &keys[1..] {
        ring = ring
            .with_retired(TokenHasher::keyed(key.clone()), None)
            .unwrap();
    }
    ring = ring.with_retired(TokenHasher::unkeyed(), None).unwrap();
    let hex = |key: &HashKey| -> String {
        key.expose_secret()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    let mut lines: Vec<String> = keys.iter().map(hex).collect();
    lines.push("unkeyed".to_owned());
    (ring, lines)
}

/// Writes the key file (mode 0600, as the server demands) and returns the servers'
/// arguments for it.
fn key_file_args(lines: &[String]) -> Vec<String> {
    if lines.is_empty() {
        return Vec::new();
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = std::env::temp_dir().join(format!("apitoken_timing_{}.keys", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    writeln!(file, "{}", lines.join("\n")).unwrap();
    vec!["--hash-key-file".to_owned(), path.display().to_string()]
}

/// Issues the tokens: the revoked and expired ones for real, the unknown one into nothing.
async fn issue_tokens(store: Box<dyn TokenStore>, ring: HashKeyring) -> (Tokens, Instant) {
    let store: Arc<dyn TokenStore> = store.into();
    let issuer = TokenIssuer::builder(store.clone())
        .keyring(ring)
        .prepare()
        .await
        .unwrap();
    // The last retired key is the unkeyed hash.
    let retired = TokenIssuer::builder(store).build();
    let environment: EnvironmentId = "0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d".parse().unwrap();
    let creator = Creator {
        alias: Some("alice".to_owned()),
        email: Some("alice@example.com".to_owned()),
        ..Creator::new(
            "0190a5c4-7d3e-7b5a-9c1d-00000000a11c"
                .parse::<UserId>()
                .unwrap(),
        )
    };
    let scopes: Scopes = [
        Scope::ENVIRONMENT_API_TOKENS_READ,
        Scope::ENVIRONMENT_API_TOKENS_WRITE,
        Scope::ENVIRONMENT_USERS_READ,
    ]
    .into_iter()
    .collect();
    let request =
        |note: &str| IssueRequest::new(Note::new(note).unwrap()).with_scopes(scopes.clone());
    let revoked = issuer
        .issue(
            environment,
            creator.clone(),
            request("CI deploy key, staging"),
        )
        .await
        .unwrap();
    issuer
        .revoke(environment, creator.clone(), revoked.token.id)
        .await
        .unwrap();
    let revoked_retired = retired
        .issue(
            environment,
            creator.clone(),
            request("CI deploy key, preview"),
        )
        .await
        .unwrap();
    retired
        .revoke(environment, creator.clone(), revoked_retired.token.id)
        .await
        .unwrap();
    let expires_in = Duration::from_secs(2);
    let expired = issuer
        .issue(
            environment,
            creator,
            request("CI deploy key, production")
                .expires_at(chrono::Utc::now() + chrono::Duration::from_std(expires_in).unwrap()),
        )
        .await
        .unwrap();
    let expired_after = Instant::now() + expires_in + Duration::from_millis(200);
    let format = issuer.format();
    let unknown = format.generate(&mut rand::rng()).expose_secret().to_owned();
    // The last checksum character changed: the right length and alphabet, a wrong checksum.
    let mut malformed = format.generate(&mut rand::rng()).expose_secret().to_owned();
    let last = malformed.pop().unwrap();
    malformed.push(if last == 'A' { 'B' } else { 'A' });
    let tokens = Tokens {
        unknown,
        revoked: revoked.raw.expose_secret().to_owned(),
        revoked_retired: revoked_retired.raw.expose_secret().to_owned(),
        expired: expired.raw.expose_secret().to_owned(),
        malformed,
    };
    (tokens, expired_after)
}

/// A server binary running on a loopback port.
struct Server {
    label: String,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn start(label: &str, binary: &str, database: &Database, extra: &[String]) -> Server {
        let log = std::env::temp_dir().join(format!(
            "apitoken_timing_{}_{label}.log",
            std::process::id()
        ));
        let mut command = Command::new(binary);
        command
            .args(["--listen", "127.0.0.1:0"])
            .args(database.args())
            .args(extra);
        for name in [
            "APITOKEN_DB",
            "DATABASE_URL",
            "APITOKEN_HASH_KEY",
            "APITOKEN_RETIRED_HASH_KEYS",
            "APITOKEN_LISTEN",
            "APITOKEN_MAX_LIVE_TOKENS",
            "APITOKEN_EXTRA_SCOPES",
            "APITOKEN_LOG_FORMAT",
            "APITOKEN_LOG_LEVEL",
        ] {
            command.env_remove(name);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| {
                panic!(
                    "{binary} did not start: {line:?}; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .parse()
            .unwrap();
        // Keep reading so that the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in stdout.lines() {});
        Server {
            label: label.to_owned(),
            child,
            addr,
            log,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

async fn connect(addr: SocketAddr) -> SendRequest<Empty<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}

/// What an answer says, `date` and `x-request-id` aside.
#[derive(PartialEq, Eq, Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Bytes,
}

/// Sends one request; returns its time and the answer.
async fn send(
    sender: &mut SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    token: &str,
) -> (Duration, Answer) {
    let request = Request::get("/api/v0/tokens/me")
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap();
    sender.ready().await.unwrap();
    let started = Instant::now();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let elapsed = started.elapsed();
    let headers = parts
        .headers
        .iter()
        // Each answer's own: the time and the request's id.
        .filter(|(name, _)| *name != "date" && *name != "x-request-id")
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    let answer = Answer {
        status: parts.status.as_u16(),
        headers,
        body,
    };
    (elapsed, answer)
}

struct Summary {
    n: usize,
    median: f64,
    mean: f64,
    var: f64,
    p10: f64,
    p90: f64,
}

fn summarize(samples: &[f64]) -> Summary {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let quantile = |q: f64| sorted[((n - 1) as f64 * q).round() as usize];
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let var = sorted.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    Summary {
        n,
        median: quantile(0.5),
        mean,
        var,
        p10: quantile(0.1),
        p90: quantile(0.9),
    }
}

/// Both samples without the times above the `q` quantile of the two pooled.
fn crop(a: &[f64], b: &[f64], q: f64) -> (Vec<f64>, Vec<f64>) {
    let mut pooled: Vec<f64> = a.iter().chain(b).copied().collect();
    pooled.sort_by(f64::total_cmp);
    let cut = pooled[((pooled.len() - 1) as f64 * q).round() as usize];
    let keep = |s: &[f64]| s.iter().copied().filter(|&x| x <= cut).collect();
    (keep(a), keep(b))
}

/// Welch's t of `a` against `b`, and its Welch–Satterthwaite degrees of freedom.
fn welch(a: &Summary, b: &Summary) -> (f64, f64) {
    let (va, vb) = (a.var / a.n as f64, b.var / b.n as f64);
    let t = (a.mean - b.mean) / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va.powi(2) / (a.n - 1) as f64 + vb.powi(2) / (b.n - 1) as f64);
    (t, df)
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
        })
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let rounds = setting("APITOKEN_TIMING_ROUNDS", 3_000);
    let per_server = setting("APITOKEN_TIMING_CONNECTIONS", 4).max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(rounds, per_server));
}

async fn run(rounds: usize, per_server: usize) {
    let (database, store) = create_database().await;
    let (ring, key_lines) = keyring();
    let keys = ring.len();
    let (tokens, expired_after) = issue_tokens(store, ring).await;
    let mut extra = key_file_args(&key_lines);
    if let Ok(args) = std::env::var("APITOKEN_TIMING_SERVER_ARGS") {
        extra.extend(args.split_whitespace().map(str::to_owned));
    }
    let mut servers = vec![Server::start(
        "current",
        env!("CARGO_BIN_EXE_apitoken-server"),
        &database,
        &extra,
    )];
    if let Ok(baseline) = std::env::var("APITOKEN_TIMING_BASELINE")
        && !baseline.is_empty()
    {
        servers.push(Server::start("baseline", &baseline, &database, &extra));
    }
    let mut connections = Vec::new();
    for server in &servers {
        let mut own = Vec::new();
        for _ in 0..per_server {
            own.push(connect(server.addr).await);
        }
        connections.push(own);
    }
    tokio::time::sleep_until(expired_after.into()).await;
    eprintln!(
        "{} rounds (+{WARM_UP_ROUNDS} warm-up) of {} kinds on {} server(s), {per_server} keep-alive connections each, a keyring of {keys}, {}",
        rounds,
        KINDS.len(),
        servers.len(),
        database.describe()
    );

    let format = TokenFormat::dynamic();
    let cells: Vec<(usize, Kind)> = (0..servers.len())
        .flat_map(|s| KINDS.iter().map(move |&k| (s, k)))
        .collect();
    let mut times = vec![Vec::with_capacity(rounds); cells.len()];
    let mut first: Vec<Option<Answer>> = (0..cells.len()).map(|_| None).collect();
    let mut next_connection = vec![0usize; servers.len()];
    let mut order: Vec<usize> = (0..cells.len()).collect();
    let started = Instant::now();
    for round in 0..WARM_UP_ROUNDS + rounds {
        order.shuffle(&mut rand::rng());
        for &cell in &order {
            let (s, kind) = cells[cell];
            let token = tokens.for_kind(kind, &format);
            let c = next_connection[s];
            next_connection[s] = (c + 1) % per_server;
            let (elapsed, answer) = send(&mut connections[s][c], servers[s].addr, &token).await;
            assert_eq!(answer.status, 401, "{} {}", servers[s].label, kind.name());
            if round >= WARM_UP_ROUNDS {
                times[cell].push(elapsed.as_secs_f64() * 1e6);
            }
            if first[cell].is_none() {
                first[cell] = Some(answer);
            }
        }
    }
    eprintln!("measured in {:.1} s", started.elapsed().as_secs_f64());

    for (s, server) in servers.iter().enumerate() {
        let cell = |kind: Kind| s * KINDS.len() + KINDS.iter().position(|&k| k == kind).unwrap();
        let unknown = summarize(&times[cell(Kind::Unknown)]);
        let reference = first[cell(Kind::Unknown)].as_ref().unwrap();
        let identical = KINDS
            .iter()
            .all(|&k| first[cell(k)].as_ref() == Some(reference));
        println!(
            "\n{} server ({}), {} requests per kind; every 401 identical: {}\n",
            server.label,
            database.describe(),
            rounds,
            if identical { "yes" } else { "NO" }
        );
        println!(
            "| kind | median µs | mean µs | p10 µs | p90 µs | Welch t vs unknown | df | t, cut at p90 |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for &kind in &KINDS {
            let summary = summarize(&times[cell(kind)]);
            let (t, df, cropped) = if kind == Kind::Unknown {
                (String::new(), String::new(), String::new())
            } else {
                let (t, df) = welch(&summary, &unknown);
                let (a, b) = crop(&times[cell(kind)], &times[cell(Kind::Unknown)], 0.9);
                let (cropped, _) = welch(&summarize(&a), &summarize(&b));
                (
                    format!("{t:+.2}"),
                    format!("{df:.0}"),
                    format!("{cropped:+.2}"),
                )
            };
            println!(
                "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {t} | {df} | {cropped} |",
                kind.name(),
                summary.median,
                summary.mean,
                summary.p10,
                summary.p90
            );
        }
        if !identical {
            for &kind in &KINDS {
                println!("{}: {:?}", kind.name(), first[cell(kind)]);
            }
        }
    }
    drop(connections);
    drop(servers);
    if let Some(path) = extra.get(1).filter(|_| !key_lines.is_empty()) {
        let _ = std::fs::remove_file(path);
    }
    database.remove().await;
}
