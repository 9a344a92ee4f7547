#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]
//! Store throughput and tail latency: `issue` and `authenticate` through a `TokenIssuer`
//! into each store, with 1 and 8 concurrent tasks.
//!
//! ```text
//! cargo bench --bench stores --features sqlite,postgres
//! ```
//!
//! Not criterion: criterion times one iteration at a time, but a store is judged by
//! throughput under concurrency and by its tail. Each cell runs its tasks on a tokio
//! multi-thread runtime (one worker per CPU) for a fixed time after a warm-up, records
//! every operation's latency, and reports operations per second (over the cell's wall
//! time) with p50 and p99. The result is a Markdown table on stdout; progress goes to
//! stderr.
//!
//! Stores:
//! - `MemoryStore`, the baseline (no I/O);
//! - `SqliteStore` on a temporary file, as `SqliteStore::open` configures it (WAL,
//!   `synchronous = FULL`, 4 reader connections and 1 writer), deleted at the end;
//! - `PostgresStore` at `APITOKEN_BENCH_POSTGRES_URL`, else `APITOKEN_TEST_POSTGRES_URL`,
//!   else `postgres://postgres@127.0.0.1:5432/test`, pooled as `PostgresStore::connect`
//!   configures it, in a schema `apitoken_bench_…` created for the run and dropped at the
//!   end (an interrupted run leaves it behind: `DROP SCHEMA apitoken_bench_… CASCADE`).
//!   Skipped with a message on stderr when the server cannot be reached, unless
//!   `APITOKEN_REQUIRE_POSTGRES=1`.
//!
//! Operations:
//! - `issue`: `TokenIssuer::issue` (generate, hash, insert one row), each task in its own
//!   environment, no live-token limit;
//! - `authenticate`: `TokenIssuer::authenticate` of 10,000 tokens issued beforehand,
//!   picked round-robin, with last-use recording at its default (at most once a minute
//!   per token). Before the cells, every token is authenticated once, which records its
//!   first use; the cells then measure the steady state, where look-ups are reads. (With
//!   `APITOKEN_BENCH_SECONDS` above about 29, the second cell reaches the one-minute
//!   interval again and includes some last-use writes, as a real service does.)
//!
//! Settings:
//! - `APITOKEN_BENCH_SECONDS` (default 3): time per cell, after a warm-up of a third of
//!   that (at most 1 s);
//! - `APITOKEN_BENCH_STORES` (default `memory,sqlite,postgres`): which stores, e.g. to
//!   profile one at a time;
//! - `APITOKEN_BENCH_PG_PING=1` adds PostgreSQL rows whose pool pings a connection
//!   before handing it out (`test_before_acquire(true)`, sqlx's default, which the store
//!   turns off), to show what that round trip costs (sqlx pings each connection when it
//!   returns to the pool either way, off the caller's path).

use apitoken::{
    Creator, EnvironmentId, IssueRequest, MemoryStore, Note, PostgresStore, Scope, Scopes,
    SqliteStore, TokenIssuer, TokenStore, UserId,
};
use rand::RngExt;
use sqlx::postgres::PgConnectOptions;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Tokens issued before the `authenticate` cells.
const TOKENS: usize = 10_000;
/// Concurrency levels.
const TASKS: [usize; 2] = [1, 8];
/// A cell also stops after this many operations (bounds the memory the in-memory
/// baseline's `issue` cells use).
const MAX_SAMPLES: usize = 1_000_000;
/// The stores `APITOKEN_BENCH_STORES` can name, in the order they run.
const STORES: [&str; 3] = ["memory", "sqlite", "postgres"];
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Issue,
    Authenticate,
    /// `SELECT 1` through the store's own pool: the floor of any operation that reads.
    RoundTrip,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Issue => "issue",
            Op::Authenticate => "authenticate",
            Op::RoundTrip => "`SELECT 1` (floor)",
        }
    }
}

/// A [`RoundTrip`] through `$pool` (a macro: sqlx's pools of different databases share
/// no convenient trait).
macro_rules! select_one {
    ($pool:expr) => {{
        let pool = $pool.clone();
        let round_trip: RoundTrip = Arc::new(move || {
            let pool = pool.clone();
            Box::pin(async move {
                sqlx::query("SELECT 1")
                    .execute(&pool)
                    .await
                    .map(drop)
                    .map_err(|e| format!("SELECT 1 failed: {e}"))
            })
        });
        round_trip
    }};
}

/// One `SELECT 1` through a store's pool.
type RoundTrip = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

struct Row {
    store: String,
    op: Op,
    tasks: usize,
    ops_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

struct Config {
    measure: Duration,
    warmup: Duration,
    /// Which stores to measure: `memory`, `sqlite`, `postgres`.
    stores: Vec<String>,
}

impl Config {
    fn wants(&self, store: &str) -> bool {
        self.stores.iter().any(|s| s == store)
    }
}

/// What every issued token looks like: a typical creator, a 20-character note, two scopes.
struct Template {
    creator: Arc<Creator>,
    note: Note,
    scopes: Scopes,
}

impl Template {
    fn new() -> Result<Template, String> {
        let mut creator = Creator::new(UserId::from_uuid(Uuid::from_u128(0x1234_5678)));
        creator.alias = Some("ci-bot".to_owned());
        creator.first_name = Some("Ada".to_owned());
        creator.last_name = Some("Lovelace".to_owned());
        creator.email = Some("ada@example.com".to_owned());
        Ok(Template {
            creator: Arc::new(creator),
            note: Note::new("deploys from CI prod").map_err(|e| e.to_string())?,
            scopes: Scopes::from([
                Scope::ENVIRONMENT_API_TOKENS_READ,
                Scope::ENVIRONMENT_SETTINGS_READ,
            ]),
        })
    }

    fn request(&self) -> IssueRequest {
        IssueRequest::new(self.note.clone()).with_scopes(self.scopes.clone())
    }
}

fn main() -> ExitCode {
    let seconds = match std::env::var("APITOKEN_BENCH_SECONDS") {
        Err(_) => 3.0,
        Ok(s) => match s.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 3600.0 => v,
            _ => {
                eprintln!(
                    "APITOKEN_BENCH_SECONDS must be a number of seconds in (0, 3600], got {s:?}"
                );
                return ExitCode::FAILURE;
            }
        },
    };
    let stores: Vec<String> = std::env::var("APITOKEN_BENCH_STORES")
        .unwrap_or_else(|_| STORES.join(","))
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    if let Some(unknown) = stores.iter().find(|s| !STORES.contains(&s.as_str())) {
        eprintln!(
            "APITOKEN_BENCH_STORES: unknown store {unknown:?}; use a comma-separated list of {}",
            STORES.join(", ")
        );
        return ExitCode::FAILURE;
    }
    let measure = Duration::from_secs_f64(seconds);
    let config = Config {
        measure,
        warmup: (measure / 3).min(Duration::from_secs(1)),
        stores,
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cpus)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config, cpus))
}

async fn run(config: Config, cpus: usize) -> ExitCode {
    let template = match Template::new() {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("bad token template: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rows = Vec::new();
    let mut notes = vec![format!(
        "Machine: {} {} ({}), {cpus} CPUs, tokio multi-thread runtime with {cpus} workers; {} s per cell after a {} s warm-up; {TOKENS} tokens issued before `authenticate`.",
        std::env::consts::OS,
        std::env::consts::ARCH,
        std::env::consts::FAMILY,
        config.measure.as_secs_f64(),
        config.warmup.as_secs_f64(),
    )];
    if let Some(rustc) = rustc_version() {
        notes.push(format!(
            "Toolchain: {rustc} (the `rustc` on PATH at run time)."
        ));
    }
    let mut failed = false;

    // Baseline: no I/O at all.
    if config.wants("memory") {
        match bench_store(
            "MemoryStore",
            MemoryStore::new(),
            None,
            &config,
            &template,
            &mut notes,
        )
        .await
        {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("MemoryStore: {e}");
                failed = true;
            }
        }
    }

    if config.wants("sqlite") {
        match bench_sqlite(&config, &template, &mut notes).await {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("SqliteStore: {e}");
                failed = true;
            }
        }
    }
    if config.wants("postgres") {
        let url = std::env::var("APITOKEN_BENCH_POSTGRES_URL")
            .or_else(|_| std::env::var("APITOKEN_TEST_POSTGRES_URL"))
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let require = std::env::var("APITOKEN_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        let ping = std::env::var("APITOKEN_BENCH_PG_PING").is_ok_and(|v| v == "1");
        match bench_postgres(&url, ping, &config, &template, &mut notes).await {
            Ok(r) => rows.extend(r),
            Err(PgFailure::Unreachable(e)) if !require => {
                eprintln!();
                eprintln!("================================================================");
                eprintln!("SKIPPING PostgreSQL: cannot use {}: {e}", redact_url(&url));
                eprintln!("Set APITOKEN_BENCH_POSTGRES_URL to a reachable server, or");
                eprintln!("APITOKEN_REQUIRE_POSTGRES=1 to make this a failure.");
                eprintln!("================================================================");
                eprintln!();
                notes.push(format!(
                    "PostgreSQL SKIPPED: cannot use {}: {e}",
                    redact_url(&url)
                ));
            }
            Err(PgFailure::Unreachable(e) | PgFailure::Failed(e)) => {
                eprintln!("PostgresStore at {}: {e}", redact_url(&url));
                failed = true;
            }
        }
    }

    print_table(&rows, &notes);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Issues the tokens, records their first use, then measures every cell.
async fn bench_store<S: TokenStore + 'static>(
    label: &str,
    store: S,
    round_trip: Option<RoundTrip>,
    config: &Config,
    template: &Arc<Template>,
    notes: &mut Vec<String>,
) -> Result<Vec<Row>, String> {
    // The issue cells put up to a million tokens into an environment: past the default
    // cap, which is not what they measure.
    let issuer = Arc::new(
        TokenIssuer::builder(store)
            .limits(apitoken::Limits::NONE)
            .build(),
    );

    let start = Instant::now();
    let tokens = populate(&issuer, template, TOKENS, 8).await?;
    let issued = start.elapsed();
    let start = Instant::now();
    first_use(&issuer, &tokens, 8).await?;
    let first = start.elapsed();
    // Not a measurement cell (no warm-up, one pass), but it shows what the once-a-minute
    // last-use write costs.
    let note = format!(
        "{label}: setup with 8 tasks: issuing the {TOKENS} tokens took {:.2} s ({}/s); authenticating each once, which also records its last use, {:.2} s ({}/s).",
        issued.as_secs_f64(),
        thousands(TOKENS as f64 / issued.as_secs_f64()),
        first.as_secs_f64(),
        thousands(TOKENS as f64 / first.as_secs_f64()),
    );
    eprintln!("{note}");
    notes.push(note);

    let mut rows = Vec::new();
    let mut cell = 0u64;
    let ops = [Op::Authenticate, Op::Issue]
        .into_iter()
        .chain(round_trip.as_ref().map(|_| Op::RoundTrip));
    for op in ops {
        for tasks in TASKS {
            cell += 1;
            run_cell(
                &issuer,
                &tokens,
                template,
                round_trip.as_ref(),
                op,
                tasks,
                config.warmup,
                cell,
                false,
            )
            .await?;
            let samples = run_cell(
                &issuer,
                &tokens,
                template,
                round_trip.as_ref(),
                op,
                tasks,
                config.measure,
                cell,
                true,
            )
            .await?;
            let row = summarize(label, op, tasks, samples);
            eprintln!(
                "{label}: {} x{tasks}: {:.0}/s, p50 {:.1} µs, p99 {:.1} µs",
                op.name(),
                row.ops_per_sec,
                micros(row.p50),
                micros(row.p99)
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Issues `count` tokens from `tasks` tasks (environment per task) and returns them raw.
async fn populate<S: TokenStore + 'static>(
    issuer: &Arc<TokenIssuer<S>>,
    template: &Arc<Template>,
    count: usize,
    tasks: usize,
) -> Result<Arc<[String]>, String> {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let issuer = issuer.clone();
        let template = template.clone();
        let n = count / tasks + usize::from(task < count % tasks);
        let environment = environment(0, task);
        handles.push(tokio::spawn(async move {
            let mut raw = Vec::with_capacity(n);
            for _ in 0..n {
                let issued = issuer
                    .issue(environment, template.creator.clone(), template.request())
                    .await
                    .map_err(|e| format!("issuing the benchmark's tokens: {e}"))?;
                raw.push(issued.raw.expose_secret().to_owned());
            }
            Ok::<_, String>(raw)
        }));
    }
    let mut all = Vec::with_capacity(count);
    for handle in handles {
        all.extend(handle.await.map_err(|e| format!("a task failed: {e}"))??);
    }
    Ok(all.into())
}

/// Authenticates every token once, so that the cells see tokens whose last use is recent.
async fn first_use<S: TokenStore + 'static>(
    issuer: &Arc<TokenIssuer<S>>,
    tokens: &Arc<[String]>,
    tasks: usize,
) -> Result<(), String> {
    let mut handles = Vec::new();
    for task in 0..tasks {
        let issuer = issuer.clone();
        let tokens = tokens.clone();
        handles.push(tokio::spawn(async move {
            for token in tokens.iter().skip(task).step_by(tasks) {
                issuer
                    .authenticate(token)
                    .await
                    .map_err(|e| format!("authenticating a freshly issued token: {e}"))?;
            }
            Ok::<_, String>(())
        }));
    }
    for handle in handles {
        handle.await.map_err(|e| format!("a task failed: {e}"))??;
    }
    Ok(())
}

/// The latencies of one cell's operations and the cell's wall time.
struct Samples {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Runs `op` from `tasks` tasks for `duration`; keeps the latencies if `record`.
#[allow(clippy::too_many_arguments)]
async fn run_cell<S: TokenStore + 'static>(
    issuer: &Arc<TokenIssuer<S>>,
    tokens: &Arc<[String]>,
    template: &Arc<Template>,
    round_trip: Option<&RoundTrip>,
    op: Op,
    tasks: usize,
    duration: Duration,
    cell: u64,
    record: bool,
) -> Result<Samples, String> {
    let cap = MAX_SAMPLES / tasks;
    let start = Instant::now();
    let deadline = start + duration;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let issuer = issuer.clone();
        let tokens = tokens.clone();
        let template = template.clone();
        let round_trip = round_trip.cloned();
        let environment = environment(cell, task);
        // Tasks start at evenly spaced tokens so that they rarely present the same one.
        let mut next = task * tokens.len() / tasks;
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(if record { 1 << 16 } else { 0 });
            let mut done = 0usize;
            loop {
                let t0 = Instant::now();
                if t0 >= deadline || done >= cap {
                    break;
                }
                match op {
                    Op::Issue => {
                        issuer
                            .issue(environment, template.creator.clone(), template.request())
                            .await
                            .map_err(|e| format!("issue failed: {e}"))?;
                    }
                    Op::Authenticate => {
                        let token = &tokens[next];
                        next = (next + 1) % tokens.len();
                        issuer
                            .authenticate(token)
                            .await
                            .map_err(|e| format!("authenticate failed: {e}"))?;
                    }
                    Op::RoundTrip => {
                        let round_trip = round_trip.as_ref().ok_or("no round trip to measure")?;
                        round_trip().await?;
                    }
                }
                if record {
                    latencies.push(t0.elapsed());
                }
                done += 1;
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.map_err(|e| format!("a task failed: {e}"))??);
    }
    Ok(Samples {
        latencies,
        elapsed: start.elapsed(),
    })
}

/// A distinct environment per cell and task.
fn environment(cell: u64, task: usize) -> EnvironmentId {
    EnvironmentId::from_uuid(Uuid::from_u128(
        (u128::from(cell) << 64) | (task as u128 + 1),
    ))
}

fn summarize(store: &str, op: Op, tasks: usize, samples: Samples) -> Row {
    let Samples {
        mut latencies,
        elapsed,
    } = samples;
    latencies.sort_unstable();
    Row {
        store: store.to_owned(),
        op,
        tasks,
        ops_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn bench_sqlite(
    config: &Config,
    template: &Arc<Template>,
    notes: &mut Vec<String>,
) -> Result<Vec<Row>, String> {
    let file = TempDb::new();
    let store = SqliteStore::open(file.path())
        .await
        .map_err(|e| format!("opening {}: {e}", file.path().display()))?;
    let result = async {
        store
            .prepare(apitoken::KeyFingerprint::Unkeyed)
            .await
            .map_err(|e| format!("migrating: {e}"))?;
        let version: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(store.pool())
            .await
            .map_err(|e| format!("reading the SQLite version: {e}"))?;
        notes.push(format!(
            "SQLite {version} (bundled), file in {}, WAL, synchronous = FULL, 4 readers and 1 writer.",
            std::env::temp_dir().display()
        ));
        bench_store(
            "SQLite (file, WAL)",
            store.clone(),
            Some(select_one!(store.pool())),
            config,
            template,
            notes,
        )
        .await
    }
    .await;
    store.pool().close().await;
    result
}

/// A temporary SQLite database path; the file and its `-wal` and `-shm` companions are
/// deleted on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new() -> TempDb {
        let name = format!(
            "apitoken-bench-{}-{:016x}.db",
            std::process::id(),
            rand::rng().random::<u64>()
        );
        TempDb(std::env::temp_dir().join(name))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

enum PgFailure {
    /// The server could not be reached or the schema could not be created.
    Unreachable(String),
    /// Anything after that.
    Failed(String),
}

async fn bench_postgres(
    url: &str,
    with_ping: bool,
    config: &Config,
    template: &Arc<Template>,
    notes: &mut Vec<String>,
) -> Result<Vec<Row>, PgFailure> {
    let admin = PostgresStore::connect(url)
        .await
        .map_err(|e| PgFailure::Unreachable(e.to_string()))?;
    let schema = format!(
        "apitoken_bench_{}_{:08x}",
        std::process::id(),
        rand::rng().random::<u32>()
    );
    if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(admin.pool())
        .await
    {
        admin.pool().close().await;
        return Err(PgFailure::Unreachable(format!(
            "creating schema {schema}: {e}"
        )));
    }
    let result = async {
        // TLS is whatever the URL's sslmode gives (`prefer` by default: encrypted when
        // this build has TLS, feature postgres-tls, and the server offers it).
        let info: (String, String, bool) = sqlx::query_as(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'), \
             coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
        )
        .fetch_one(admin.pool())
        .await
        .map_err(|e| format!("reading the server settings: {e}"))?;
        notes.push(format!(
            "PostgreSQL {} on {} (synchronous_commit = {}), pool of up to 10 connections, {}; schema {schema}, dropped afterwards.",
            info.0,
            host_of(url),
            info.1,
            if info.2 { "over TLS" } else { "without TLS" }
        ));
        let mut rows = Vec::new();
        let variants: &[(bool, &str)] = if with_ping {
            &[
                (false, "PostgreSQL (pooled)"),
                (true, "PostgreSQL (pooled, ping before use)"),
            ]
        } else {
            &[(false, "PostgreSQL (pooled)")]
        };
        for &(ping, label) in variants {
            let options = PgConnectOptions::from_str(url)
                .map_err(|e| format!("parsing the URL: {e}"))?
                .options([("search_path", schema.as_str())]);
            let pool = PostgresStore::pool_options().test_before_acquire(ping);
            let store = PostgresStore::connect_with(options, pool)
                .await
                .map_err(|e| format!("connecting: {e}"))?;
            let outcome = async {
                store.prepare(apitoken::KeyFingerprint::Unkeyed).await.map_err(|e| format!("migrating: {e}"))?;
                let round_trip = select_one!(store.pool());
                bench_store(label, store.clone(), Some(round_trip), config, template, notes)
                    .await
            }
            .await;
            store.pool().close().await;
            rows.extend(outcome?);
            if variants.len() > 1 {
                // Each variant starts from an empty table.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP TABLE {schema}.apitoken_tokens, {schema}.apitoken_meta, {schema}.apitoken_environments"
                )))
                .execute(admin.pool())
                .await
                .map_err(|e| format!("emptying schema {schema}: {e}"))?;
            }
        }
        Ok::<_, String>(rows)
    }
    .await;
    let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(admin.pool())
    .await;
    admin.pool().close().await;
    if let Err(e) = dropped {
        eprintln!("could not drop schema {schema} (drop it by hand): {e}");
    }
    result.map_err(PgFailure::Failed)
}

/// The URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn host_of(url: &str) -> String {
    let redacted = redact_url(url);
    let rest = redacted
        .split_once('@')
        .map_or(redacted.as_str(), |(_, r)| r);
    let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

fn rustc_version() -> Option<String> {
    let output = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `12345.6` as `12,346`.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_table(rows: &[Row], notes: &[String]) {
    println!();
    println!("| store | operation | tasks | ops/s | p50 (µs) | p99 (µs) |");
    println!("|---|---|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} |",
            row.store,
            row.op.name(),
            row.tasks,
            thousands(row.ops_per_sec),
            micros(row.p50),
            micros(row.p99)
        );
    }
    println!();
    for note in notes {
        println!("{note}");
    }
}
