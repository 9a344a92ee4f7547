#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]
//! Leak reports (issue 19): how long the issuer takes to act on a report of 1,000 matches,
//! on SQLite and PostgreSQL.
//!
//! ```text
//! cargo bench --bench leak --features sqlite,postgres
//! ```
//!
//! Not criterion: the question is whether a whole report is handled well within the 15 s
//! GitHub allows (the target is 1 s), and that every live token in it is revoked exactly
//! once. Each round issues fresh tokens and builds a report of 1,000 matches: half of them
//! live tokens of ours, a quarter ours and revoked before, a quarter well formed but
//! unknown (issued by another issuer), shuffled. It then hands every match to
//! [`TokenIssuer::revoke_leaked`], one at a time (`one by one`), then eight at a time
//! (`8 at once`), then the whole report to [`TokenIssuer::revoke_leaks`] (which revokes the
//! live ones a hundred to a transaction: what the reference server calls), and times the
//! whole report. After each round it checks the outcomes (500 revoked now, 250 already revoked,
//! 250 unknown) and counts the `Leaked` events the round wrote in the store's log: 500.
//!
//! `APITOKEN_BENCH_ROUNDS` (default 5) rounds per mode; medians and the slowest are
//! printed. The SQLite store is a temporary file as `SqliteStore::open` opens it (WAL,
//! `synchronous = FULL`). PostgreSQL is at `APITOKEN_BENCH_POSTGRES_URL`, else
//! `APITOKEN_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`, in a
//! schema of its own, dropped at the end. `APITOKEN_BENCH_STORES=sqlite` or `=postgres`
//! runs one.

use apitoken::{
    Creator, EnvironmentId, EventCursor, EventKind, IssueRequest, LeakDetails, LeakOutcome,
    LeakReporter, MemoryStore, Note, PostgresStore, SqliteStore, TokenIssuer, TokenStore, UserId,
};
use sqlx::postgres::PgConnectOptions;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

const MATCHES: usize = 1_000;
const AT_ONCE: usize = 8;
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn main() -> ExitCode {
    let rounds = std::env::var("APITOKEN_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(5);
    let stores: Vec<String> = std::env::var("APITOKEN_BENCH_STORES")
        .unwrap_or_else(|_| "sqlite,postgres".to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        if stores.iter().any(|s| s == "sqlite") {
            bench_sqlite(rounds).await?;
        }
        if stores.iter().any(|s| s == "postgres") {
            bench_postgres(rounds).await?;
        }
        Ok::<(), String>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench_sqlite(rounds: usize) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!(
        "apitoken-leak-{}-{:08x}.db",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = async {
        let store = SqliteStore::open(&path).await.map_err(|e| e.to_string())?;
        let issuer = TokenIssuer::builder(store)
            .prepare()
            .await
            .map_err(|e| e.to_string())?;
        bench(
            "SQLite (file, WAL, synchronous = FULL)",
            Arc::new(issuer),
            rounds,
        )
        .await
    }
    .await;
    for suffix in ["", "-wal", "-shm"] {
        let mut file: PathBuf = path.clone();
        file.as_mut_os_string().push(suffix);
        let _ = std::fs::remove_file(file);
    }
    result
}

async fn bench_postgres(rounds: usize) -> Result<(), String> {
    let url = std::env::var("APITOKEN_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("APITOKEN_TEST_POSTGRES_URL"))
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let admin = PostgresStore::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    let schema = format!(
        "apitoken_leak_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(admin.pool())
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        let options = PgConnectOptions::from_str(&url)
            .map_err(|e| e.to_string())?
            .options([("search_path", schema.as_str())]);
        let store = PostgresStore::connect_with(options, PostgresStore::pool_options())
            .await
            .map_err(|e| e.to_string())?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(store.pool())
            .await
            .map_err(|e| e.to_string())?;
        let issuer = TokenIssuer::builder(store)
            .prepare()
            .await
            .map_err(|e| e.to_string())?;
        bench(
            &format!("PostgreSQL {version} (pool of 10)"),
            Arc::new(issuer),
            rounds,
        )
        .await
    }
    .await;
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(admin.pool())
    .await;
    admin.close().await;
    result
}

fn operator() -> Creator {
    Creator::new(UserId::from_uuid(Uuid::from_u128(0x0e)))
}

/// One report's strings: 500 live, 250 revoked, 250 unknown, shuffled.
async fn report<S: TokenStore>(issuer: &TokenIssuer<S>) -> Result<Vec<String>, String> {
    let env = EnvironmentId::from_uuid(Uuid::from_u128(rand::random()));
    let note = Note::new("leaked").map_err(|e| e.to_string())?;
    let mut strings = Vec::with_capacity(MATCHES);
    for i in 0..MATCHES * 3 / 4 {
        let issued = issuer
            .issue(env, operator(), IssueRequest::new(note.clone()))
            .await
            .map_err(|e| e.to_string())?;
        if i >= MATCHES / 2 {
            issuer
                .revoke(env, operator(), issued.token.id)
                .await
                .map_err(|e| e.to_string())?;
        }
        strings.push(issued.raw.expose_secret().to_owned());
    }
    let elsewhere = TokenIssuer::new(MemoryStore::new());
    for _ in 0..MATCHES / 4 {
        let issued = elsewhere
            .issue(env, operator(), IssueRequest::new(note.clone()))
            .await
            .map_err(|e| e.to_string())?;
        strings.push(issued.raw.expose_secret().to_owned());
    }
    // A fixed shuffle (Fisher-Yates with a small LCG): live, revoked and unknown mixed.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for i in (1..strings.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let j = (state >> 33) as usize % (i + 1);
        strings.swap(i, j);
    }
    Ok(strings)
}

async fn bench<S: TokenStore + 'static>(
    name: &str,
    issuer: Arc<TokenIssuer<S>>,
    rounds: usize,
) -> Result<(), String> {
    println!("\n== {name}: a report of {MATCHES} matches (500 live, 250 revoked, 250 unknown)");
    // 0: the whole report to `revoke_leaks`.
    for at_once in [1, AT_ONCE, 0] {
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let strings = report(&issuer).await?;
            let head = issuer
                .store()
                .event_head()
                .await
                .map_err(|e| e.to_string())?;
            let leak = Arc::new(
                LeakDetails::new(LeakReporter::GitHub)
                    .with_source("Commit")
                    .with_url("https://github.com/octo/app/blob/1a2b/.env"),
            );
            let started = Instant::now();
            let outcomes = handle(&issuer, strings, leak, at_once).await?;
            times.push(started.elapsed());
            check(&issuer, &outcomes, head).await?;
        }
        times.sort();
        let mode = match at_once {
            0 => "revoke_leaks".to_owned(),
            1 => "one by one".to_owned(),
            n => format!("{n} at once"),
        };
        println!(
            "{mode:>12}: median {}, slowest {} ({rounds} reports; each: 500 revoked now, 250 already revoked, 250 unknown, 500 Leaked events)",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
        );
    }
    issuer.store().close().await;
    Ok(())
}

/// Hands every string to `revoke_leaked`, `at_once` at a time; the outcomes' names.
async fn handle<S: TokenStore + 'static>(
    issuer: &Arc<TokenIssuer<S>>,
    strings: Vec<String>,
    leak: Arc<LeakDetails>,
    at_once: usize,
) -> Result<Vec<&'static str>, String> {
    if at_once == 0 {
        let reports = strings.iter().map(|s| (s.as_str(), &*leak));
        let outcomes = issuer
            .revoke_leaks(reports)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(outcomes.iter().map(LeakOutcome::name).collect());
    }
    let strings = Arc::new(strings);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..at_once {
        let (issuer, strings, next, leak) =
            (issuer.clone(), strings.clone(), next.clone(), leak.clone());
        workers.spawn(async move {
            let mut names = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(reported) = strings.get(i) else {
                    return Ok::<_, String>(names);
                };
                let outcome = issuer
                    .revoke_leaked(reported, &leak)
                    .await
                    .map_err(|e| e.to_string())?;
                names.push(outcome.name());
            }
        });
    }
    let mut names = Vec::with_capacity(MATCHES);
    while let Some(joined) = workers.join_next().await {
        names.extend(joined.map_err(|e| e.to_string())??);
    }
    Ok(names)
}

/// 500 revoked now, 250 already revoked, 250 unknown, and 500 `Leaked` events after `head`.
async fn check<S: TokenStore>(
    issuer: &TokenIssuer<S>,
    outcomes: &[&str],
    head: EventCursor,
) -> Result<(), String> {
    let count = |name: &str| outcomes.iter().filter(|&&o| o == name).count();
    let expected = [
        (LeakOutcome::Unknown.name(), MATCHES / 4),
        ("revoked", MATCHES / 2),
        ("already_revoked", MATCHES / 4),
    ];
    for (name, n) in expected {
        if count(name) != n {
            return Err(format!("{name}: {} outcomes, expected {n}", count(name)));
        }
    }
    let mut leaked = 0;
    let mut after = head;
    loop {
        let page = issuer
            .store()
            .events_since(None, after, 1_000)
            .await
            .map_err(|e| e.to_string())?;
        if page.events.is_empty() {
            break;
        }
        leaked += page
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Leaked)
            .count();
        after = page.next;
    }
    if leaked != MATCHES / 2 {
        return Err(format!(
            "{leaked} Leaked events, expected {}: every live token revoked exactly once",
            MATCHES / 2
        ));
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
