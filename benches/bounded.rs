#![allow(missing_docs, clippy::print_stdout, clippy::print_stderr)]
//! Bounded work (issue 17): what one tenant's large environment and deep revocations cost,
//! and what they cost the other tenants, on SQLite and PostgreSQL.
//!
//! ```text
//! cargo bench --bench bounded --features sqlite,postgres,conformance
//! ```
//!
//! Not criterion: the questions are medians side by side (page 1 against page 1,000) and
//! tails under load (another tenant's p99 while one tenant lists or revokes), which one
//! run measures together. For each store it
//!
//! 1. fills environment A with `APITOKEN_BENCH_TOKENS` tokens (default 100,000; one in ten
//!    revoked), and builds trees of 3,000 live descendants (a root a user created, 30 tokens
//!    it created, 99 created by each of those), each in an environment of its own;
//! 2. **paging**: reads page 1 and page 1,000 of A (100 tokens a page), all tokens and live
//!    ones only, interleaved, 50 times each: the medians and their ratio;
//! 3. **revocation**: revokes 9 trees' roots through the issuer (3,000 tokens each in one
//!    step: the median and the slowest), then re-revokes a revoked root 200 times beside
//!    200 reads of it by id (`get`): the medians and their ratio;
//! 4. **isolation**: a tenant B issues and authenticates, one operation after another,
//!    for `APITOKEN_BENCH_SECONDS` (default 5) each: alone; while 8 clients page through
//!    all of A (pages of 1,000) over and over; while roots of fresh trees are revoked back
//!    to back and 6 clients re-revoke a revoked root in a loop (the review's re-DELETEs).
//!    B's p50, p99 and slowest, per operation.
//!
//! The SQLite store is a temporary file opened as `SqliteStore::open` opens it (WAL,
//! `synchronous = FULL`); it is filled first through a pool with `synchronous = OFF`, which
//! only makes the filling faster. PostgreSQL is at `APITOKEN_BENCH_POSTGRES_URL`, else
//! `APITOKEN_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`, in a schema
//! of its own, dropped at the end (filled with `synchronous_commit = off`; `VACUUM ANALYZE`
//! after the big environment, as autovacuum would have done by the time such an
//! environment exists, and only `VACUUM` after the trees: their environments are newer
//! than the statistics, which the planner takes for environments of a few rows).
//! The issuer has its defaults, among them two list reads per environment at once.
//! `APITOKEN_BENCH_STORES=sqlite` or `=postgres` runs one.

use apitoken::conformance::{delegated_token, sample_token};
use apitoken::{
    Creator, EnvironmentId, IssueRequest, Limits, Note, PageRequest, PostgresStore, SqliteStore,
    StoredToken, TokenId, TokenIssuer, TokenStore, UserId,
};
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Children of a tree's root, and children of each of those: 30 + 30 × 99 = 3,000.
const CHILDREN: usize = 30;
const GRANDCHILDREN: usize = 99;
/// Trees revoked one by one for the timing, and back to back during the isolation run.
const TIMED_TREES: usize = 9;
const LOAD_TREES: usize = 12;
const PAGE: u32 = 100;
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

struct Config {
    tokens: usize,
    seconds: f64,
    stores: Vec<String>,
}

fn main() -> ExitCode {
    let number = |name: &str, default: f64| -> Result<f64, String> {
        match std::env::var(name) {
            Err(_) => Ok(default),
            Ok(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| *v > 0.0)
                .ok_or_else(|| format!("{name} must be a positive number, got {s:?}")),
        }
    };
    let config = match (|| {
        Ok::<_, String>(Config {
            tokens: number("APITOKEN_BENCH_TOKENS", 100_000.0)? as usize,
            seconds: number("APITOKEN_BENCH_SECONDS", 5.0)?,
            stores: std::env::var("APITOKEN_BENCH_STORES")
                .unwrap_or_else(|_| "sqlite,postgres".to_owned())
                .split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect(),
        })
    })() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut failed = false;
        for store in &config.stores {
            let result = match store.as_str() {
                "sqlite" => bench_sqlite(&config).await,
                "postgres" => bench_postgres(&config).await,
                other => Err(format!("unknown store {other:?}: sqlite or postgres")),
            };
            if let Err(e) = result {
                eprintln!("{store}: {e}");
                failed = true;
            }
        }
        if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}

async fn bench_sqlite(config: &Config) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!(
        "apitoken-bounded-{}-{:08x}.db",
        std::process::id(),
        rand::random::<u32>()
    ));
    let result = async {
        let store = SqliteStore::open(&path).await.map_err(|e| e.to_string())?;
        store
            .prepare(apitoken::KeyFingerprint::Unkeyed)
            .await
            .map_err(|e| e.to_string())?;
        let fast = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(
                SqliteConnectOptions::new()
                    .filename(&path)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Off)
                    .busy_timeout(Duration::from_secs(30)),
            )
            .await
            .map_err(|e| e.to_string())?;
        let filler = SqliteStore::from_pool(fast);
        let world = fill(&filler, config.tokens, 1, async || Ok(())).await?;
        filler.close().await;
        bench(
            "SQLite (file, WAL, synchronous = FULL)",
            Arc::new(store),
            world,
            config,
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

async fn bench_postgres(config: &Config) -> Result<(), String> {
    let url = std::env::var("APITOKEN_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("APITOKEN_TEST_POSTGRES_URL"))
        .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
    let admin = PostgresStore::connect(&url)
        .await
        .map_err(|e| e.to_string())?;
    let schema = format!(
        "apitoken_bounded_{}_{:08x}",
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
        let store = PostgresStore::connect_with(options.clone(), PostgresStore::pool_options())
            .await
            .map_err(|e| e.to_string())?;
        store
            .prepare(apitoken::KeyFingerprint::Unkeyed)
            .await
            .map_err(|e| e.to_string())?;
        let filler = PostgresStore::connect_with(
            options.options([("synchronous_commit", "off")]),
            PostgresStore::pool_options().max_connections(8),
        )
        .await
        .map_err(|e| e.to_string())?;
        // What autovacuum would have done by now in production: statistics, and the
        // visibility map and hint bits of the rows just written; the trees' environments
        // are newer than the statistics.
        let vacuum = async |statement| {
            sqlx::raw_sql(statement)
                .execute(store.pool())
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let world = fill(&filler, config.tokens, 8, async || {
            vacuum("VACUUM ANALYZE apitoken_tokens").await
        })
        .await?;
        filler.close().await;
        vacuum("VACUUM apitoken_tokens").await?;
        let version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(store.pool())
            .await
            .map_err(|e| e.to_string())?;
        bench(
            &format!("PostgreSQL {version} (pool of 10)"),
            Arc::new(store),
            world,
            config,
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

/// What the filling made.
struct World {
    big: EnvironmentId,
    /// Each tree's environment and root.
    trees: Vec<(EnvironmentId, TokenId)>,
}

fn random_environment() -> EnvironmentId {
    EnvironmentId::from_uuid(Uuid::from_u128(rand::random()))
}

fn start() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_764_000_000_000_000).unwrap()
}

/// Fills the big environment, runs `between`, and builds the trees, with `tasks`
/// inserting at once.
async fn fill<S: TokenStore + Clone + 'static>(
    store: &S,
    tokens: usize,
    tasks: usize,
    between: impl AsyncFnOnce() -> Result<(), String>,
) -> Result<World, String> {
    let began = Instant::now();
    let big = random_environment();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for i in (task..tokens).step_by(tasks) {
                let at = start() + TimeDelta::microseconds(i as i64 * 1_000);
                let mut stored = sample_token(big, at);
                if i % 10 == 0 {
                    stored.token.active = false;
                    stored.token.revoked_at = Some(at + TimeDelta::seconds(1));
                }
                store
                    .insert(stored, Limits::NONE)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for handle in handles {
        handle.await.map_err(|e| e.to_string())??;
    }
    eprintln!(
        "filled an environment with {tokens} tokens in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    between().await?;
    let began = Instant::now();
    let mut trees = Vec::new();
    for _ in 0..TIMED_TREES + LOAD_TREES {
        trees.push(tree(store, tasks).await?);
    }
    eprintln!(
        "built {} trees of {} descendants in {:.1} s",
        trees.len(),
        CHILDREN * (1 + GRANDCHILDREN),
        began.elapsed().as_secs_f64()
    );
    Ok(World { big, trees })
}

/// A root a user created, 30 tokens it created, 99 created by each of those.
async fn tree<S: TokenStore + Clone + 'static>(
    store: &S,
    tasks: usize,
) -> Result<(EnvironmentId, TokenId), String> {
    let env = random_environment();
    let root = sample_token(env, start());
    let root_id = root.token.id;
    store
        .insert(root, Limits::NONE)
        .await
        .map_err(|e| e.to_string())?;
    let children: Vec<StoredToken> = (0..CHILDREN)
        .map(|_| delegated_token(env, root_id, start()))
        .collect();
    for child in &children {
        store
            .insert(child.clone(), Limits::NONE)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = store.clone();
        let parents: Vec<TokenId> = children
            .iter()
            .skip(task)
            .step_by(tasks)
            .map(|c| c.token.id)
            .collect();
        handles.push(tokio::spawn(async move {
            for parent in parents {
                for _ in 0..GRANDCHILDREN {
                    store
                        .insert(delegated_token(env, parent, start()), Limits::NONE)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            Ok::<_, String>(())
        }));
    }
    for handle in handles {
        handle.await.map_err(|e| e.to_string())??;
    }
    Ok((env, root_id))
}

fn operator() -> Creator {
    Creator::new(UserId::from_uuid(Uuid::from_u128(0x0ae2)))
}

async fn bench<S: TokenStore + 'static>(
    label: &str,
    store: Arc<S>,
    world: World,
    config: &Config,
) -> Result<(), String> {
    let issuer = Arc::new(TokenIssuer::builder(store.clone()).build());
    println!("\n## {label}\n");
    paging(&issuer, world.big, config.tokens).await?;
    let (timed, load) = world.trees.split_at(TIMED_TREES);
    revocation(&issuer, timed).await?;
    isolation(&issuer, world.big, load, timed[0], config).await
}

/// Page 1 and page 1,000 (or the last), all tokens and live ones, interleaved.
async fn paging<S: TokenStore + 'static>(
    issuer: &TokenIssuer<Arc<S>>,
    big: EnvironmentId,
    tokens: usize,
) -> Result<(), String> {
    let now = issuer.now();
    let far = (tokens / PAGE as usize).clamp(1, 1_000);
    let mut cells = Vec::new();
    for (what, first) in [
        ("all", PageRequest::first(PAGE)),
        ("live", PageRequest::first(PAGE).live_at(now)),
    ] {
        // The cursor of page `far`: walk there once.
        let mut request = first;
        for _ in 1..far {
            let page = issuer.list(big, request).await.map_err(|e| e.to_string())?;
            match page.next {
                Some(next) => request = request.after(next),
                None => break,
            }
        }
        cells.push((what, first, request));
    }
    let mut medians = Vec::new();
    for (what, first, later) in cells {
        let (mut near, mut deep) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            for (request, into) in [(first, &mut near), (later, &mut deep)] {
                let began = Instant::now();
                let page = issuer.list(big, request).await.map_err(|e| e.to_string())?;
                into.push(began.elapsed());
                assert_eq!(page.tokens.len(), PAGE as usize, "full pages");
            }
        }
        let (a, b) = (median(&mut near), median(&mut deep));
        medians.push(format!(
            "| {what} | {} | {} | {:.2} |",
            ms(a),
            ms(b),
            b.as_secs_f64() / a.as_secs_f64()
        ));
    }
    println!(
        "Paging an environment of {tokens} tokens (one in ten revoked), {PAGE} a page, medians of 50 each, interleaved:\n"
    );
    println!("| tokens | page 1 | page {far} | ratio |\n|---|---:|---:|---:|");
    for row in medians {
        println!("{row}");
    }
    Ok(())
}

/// Revoking trees' roots, then re-revoking one beside reading it.
async fn revocation<S: TokenStore + 'static>(
    issuer: &TokenIssuer<Arc<S>>,
    trees: &[(EnvironmentId, TokenId)],
) -> Result<(), String> {
    let mut times = Vec::new();
    for &(env, root) in trees {
        let began = Instant::now();
        let revoked = issuer
            .revoke(env, operator(), root)
            .await
            .map_err(|e| e.to_string())?;
        times.push(began.elapsed());
        assert_eq!(
            revoked.cascade.len(),
            CHILDREN * (1 + GRANDCHILDREN),
            "the whole tree"
        );
    }
    let slowest = times.iter().max().copied().unwrap_or_default();
    let typical = median(&mut times);
    let (env, root) = trees[0];
    let (mut again, mut read) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let began = Instant::now();
        let revoked = issuer
            .revoke(env, operator(), root)
            .await
            .map_err(|e| e.to_string())?;
        again.push(began.elapsed());
        assert!(revoked.cascade.is_empty());
        let began = Instant::now();
        issuer
            .get(env, operator(), root)
            .await
            .map_err(|e| e.to_string())?;
        read.push(began.elapsed());
    }
    let (a, r) = (median(&mut again), median(&mut read));
    println!(
        "\nRevoking the root of a tree of {} live descendants, in one step: median {} of {}, slowest {}.",
        CHILDREN * (1 + GRANDCHILDREN),
        ms(typical),
        trees.len(),
        ms(slowest)
    );
    println!(
        "Revoking it again: median {} against {} for reading it by id (ratio {:.2}), medians of 200 each, interleaved.",
        ms(a),
        ms(r),
        a.as_secs_f64() / r.as_secs_f64()
    );
    Ok(())
}

/// Tenant B's issue and authenticate, alone and beside the heavy work.
async fn isolation<S: TokenStore + 'static>(
    issuer: &Arc<TokenIssuer<Arc<S>>>,
    big: EnvironmentId,
    load_trees: &[(EnvironmentId, TokenId)],
    revoked: (EnvironmentId, TokenId),
    config: &Config,
) -> Result<(), String> {
    let seconds = Duration::from_secs_f64(config.seconds);
    println!(
        "\nAnother tenant's operations, one after another for {:.0} s per row (p50 / p99 / slowest, ms):\n",
        config.seconds
    );
    println!("| while | issue | authenticate | operations |\n|---|---|---|---:|");
    let alone = tenant(issuer, seconds, async {}).await?;
    println!("| nothing else runs | {alone}");
    let stop = Arc::new(AtomicBool::new(false));
    let listers: Vec<_> = (0..8)
        .map(|_| {
            let (issuer, stop) = (issuer.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut request = PageRequest::first(PageRequest::MAX_LIMIT);
                    loop {
                        let Ok(page) = issuer.list(big, request).await else {
                            return;
                        };
                        match page.next {
                            Some(next) if !stop.load(Ordering::Relaxed) => {
                                request = request.after(next)
                            }
                            _ => break,
                        }
                    }
                }
            })
        })
        .collect();
    let listing = tenant(issuer, seconds, async {}).await?;
    stop.store(true, Ordering::Relaxed);
    for lister in listers {
        let _ = lister.await;
    }
    println!(
        "| 8 clients page through all {} tokens, over and over | {listing}",
        config.tokens
    );

    let stop = Arc::new(AtomicBool::new(false));
    let re_revokers: Vec<_> = (0..6)
        .map(|_| {
            let (issuer, stop) = (issuer.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = issuer.revoke(revoked.0, operator(), revoked.1).await;
                }
            })
        })
        .collect();
    let trees = load_trees.to_vec();
    let revoker = {
        let issuer = issuer.clone();
        async move {
            for (env, root) in trees {
                let _ = issuer.revoke(env, operator(), root).await;
            }
        }
    };
    let revoking = tenant(issuer, seconds, revoker).await?;
    stop.store(true, Ordering::Relaxed);
    for task in re_revokers {
        let _ = task.await;
    }
    println!(
        "| roots of {} trees of 3,000 revoked back to back, 6 clients re-revoke a revoked root | {revoking}",
        load_trees.len()
    );
    Ok(())
}

/// Runs `load` beside tenant B's issue-then-authenticate loop for `seconds`; B's row.
async fn tenant<S: TokenStore + 'static>(
    issuer: &Arc<TokenIssuer<Arc<S>>>,
    seconds: Duration,
    load: impl Future<Output = ()> + Send + 'static,
) -> Result<String, String> {
    let load = tokio::spawn(load);
    let env = random_environment();
    let (mut issues, mut authentications) = (Vec::new(), Vec::new());
    let began = Instant::now();
    while began.elapsed() < seconds {
        let request = IssueRequest::new(Note::new("tenant B").map_err(|e| e.to_string())?);
        let at = Instant::now();
        let issued = issuer
            .issue(env, operator(), request)
            .await
            .map_err(|e| e.to_string())?;
        issues.push(at.elapsed());
        let at = Instant::now();
        issuer
            .authenticate(issued.raw.expose_secret())
            .await
            .map_err(|e| e.to_string())?;
        authentications.push(at.elapsed());
    }
    let _ = load.await;
    let n = issues.len() + authentications.len();
    Ok(format!(
        "{} | {} | {n} |",
        tail(&mut issues),
        tail(&mut authentications)
    ))
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn tail(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).saturating_sub(1);
        samples.get(i).copied().unwrap_or_default()
    };
    format!(
        "{:.2} / {:.2} / {:.2}",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
