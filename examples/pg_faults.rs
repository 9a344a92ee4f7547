//! Measures `PostgresStore` under server-side faults (the numbers behind
//! docs/RELIABILITY.md). Not a test: it restarts the server and takes seconds.
//!
//! ```sh
//! export APITOKEN_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
//! # The server ends the store's idle sessions (pg_terminate_backend) every 20 ms:
//! cargo run --example pg_faults --features postgres -- kill [operations]
//! # The server restarts once mid-load (APITOKEN_FAULTS_RESTART, by default
//! # `pg_ctlcluster 15 main restart`: needs root or the postgres user):
//! cargo run --example pg_faults --features postgres -- restart [operations]
//! # A downtime longer than the pool's acquire timeout (5 s):
//! APITOKEN_FAULTS_RESTART='pg_ctlcluster 15 main stop && sleep 7 && pg_ctlcluster 15 main start' \
//!     cargo run --example pg_faults --features postgres -- restart [operations]
//! # How long a client stalled in a transaction holding an environment's lock blocks an
//! # issuer of that environment, with the default PostgresTimeouts:
//! cargo run --example pg_faults --features postgres -- frozen
//! ```
//!
//! The load is 8 tasks issuing and authenticating through `TokenIssuer<PostgresStore>`
//! (half under a live-token limit, so issuing is a transaction under the environment's
//! lock), `operations` in all (4000 by default). Every token an issue returned is
//! authenticated at the end: one not found is *lost*. The harness works in a database of
//! its own (created, then dropped), so it kills only its own sessions.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use apitoken::PostgresTimeouts;
use apitoken::{
    Creator, EnvironmentId, Error, IssueRequest, Note, PostgresStore, StoreError, TokenIssuer,
    TokenStore, UserId,
};
use chrono::Utc;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{Connection, PgConnection};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const TASKS: usize = 8;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_default();
    let operations: usize = args.next().map_or(Ok(4000), |n| n.parse())?;
    let url = std::env::var("APITOKEN_TEST_POSTGRES_URL").map_err(
        |_| "set APITOKEN_TEST_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/postgres)",
    )?;
    let admin_options = PgConnectOptions::from_str(&url)?;
    let admin = PgPool::connect_with(admin_options.clone()).await?;
    let database = format!("apitoken_faults_{}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await?;
    let options = admin_options.database(&database);
    let result = match scenario.as_str() {
        "kill" | "restart" => load(&scenario, operations, &admin, &database, options).await,
        "frozen" => frozen(options).await,
        _ => Err("usage: pg_faults kill|restart|frozen [operations]".into()),
    };
    // A restart may have closed the admin pool's connections: it reconnects.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {database} WITH (FORCE)"
    )))
    .execute(&admin)
    .await?;
    result
}

fn creator() -> Creator {
    Creator::new(UserId::from_uuid(uuid::Uuid::from_u128(0xfa17)))
}

fn request() -> Result<IssueRequest, BoxError> {
    Ok(IssueRequest::new(Note::new("fault load")?))
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    attempted: usize,
    succeeded: usize,
    failed: BTreeMap<String, usize>,
    issued: Vec<String>,
    /// The slowest operation, and how many took over a second (waited out a fault).
    slowest: Duration,
    slow: usize,
}

/// An error's kind, for the table: the store error's variant, or the issuer's.
fn kind(e: &Error) -> String {
    match e {
        Error::Store(StoreError::Unavailable { .. }) => "Unavailable (503)".to_owned(),
        Error::Store(StoreError::Backend { .. }) => "Backend (500)".to_owned(),
        other => format!("{} ({other})", apitoken::http::status(other)),
    }
}

async fn load(
    scenario: &str,
    operations: usize,
    admin: &PgPool,
    database: &str,
    options: PgConnectOptions,
) -> Result<(), BoxError> {
    let store = PostgresStore::connect_with(options, PostgresStore::pool_options()).await?;
    store.prepare(apitoken::KeyFingerprint::Unkeyed).await?;
    let limited = Arc::new(
        TokenIssuer::builder(store.clone())
            .max_live_tokens_per_environment(std::num::NonZeroU32::new(1_000_000).ok_or("0")?)
            .build(),
    );
    let unlimited = Arc::new(TokenIssuer::new(store.clone()));
    let done = Arc::new(AtomicBool::new(false));

    let faults = {
        let (admin, database, done) = (admin.clone(), database.to_owned(), done.clone());
        let scenario = scenario.to_owned();
        tokio::spawn(async move { inject(&scenario, &admin, &database, &done).await })
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let issuer = if t % 2 == 0 { &limited } else { &unlimited }.clone();
            tokio::spawn(async move {
                let env = EnvironmentId::generate(Utc::now(), &mut rand::rng());
                let mut tally = Tally::default();
                for i in 0..operations / TASKS {
                    tally.attempted += 1;
                    let op = Instant::now();
                    let outcome = if i % 2 == 0 || tally.issued.is_empty() {
                        match request() {
                            Ok(request) => {
                                issuer.issue(env, creator(), request).await.map(|issued| {
                                    tally.issued.push(issued.raw.expose_secret().to_owned())
                                })
                            }
                            Err(_) => continue,
                        }
                    } else {
                        let pick = rand::random_range(0..tally.issued.len());
                        issuer.authenticate(&tally.issued[pick]).await.map(drop)
                    };
                    let took = op.elapsed();
                    tally.slowest = tally.slowest.max(took);
                    tally.slow += usize::from(took > Duration::from_secs(1));
                    match outcome {
                        Ok(()) => tally.succeeded += 1,
                        Err(e) => *tally.failed.entry(kind(&e)).or_default() += 1,
                    }
                }
                tally
            })
        })
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let tally = task.await?;
        all.attempted += tally.attempted;
        all.succeeded += tally.succeeded;
        for (k, n) in tally.failed {
            *all.failed.entry(k).or_default() += n;
        }
        all.issued.extend(tally.issued);
        all.slowest = all.slowest.max(tally.slowest);
        all.slow += tally.slow;
    }
    let took = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let faults = faults.await??;

    // Every token an issue returned must authenticate.
    let mut lost = 0;
    for raw in &all.issued {
        loop {
            match unlimited.authenticate(raw).await {
                Ok(_) => break,
                Err(Error::Unknown { .. }) => {
                    lost += 1;
                    break;
                }
                Err(e) => {
                    eprintln!("checking a token: {e}; again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    let failed: usize = all.failed.values().sum();
    println!("scenario   attempted  succeeded  failed  lost  issued  time");
    println!(
        "{scenario:<10} {:>9}  {:>9}  {failed:>6}  {lost:>4}  {:>6}  {:.1} s",
        all.attempted,
        all.succeeded,
        all.issued.len(),
        took.as_secs_f64()
    );
    println!("faults: {faults}");
    println!(
        "slowest operation {:.2} s; {} took over 1 s",
        all.slowest.as_secs_f64(),
        all.slow
    );
    for (k, n) in &all.failed {
        println!("failed: {n} x {k}");
    }
    Ok(())
}

/// Injects the scenario's fault while the load runs; says what it did.
async fn inject(
    scenario: &str,
    admin: &PgPool,
    database: &str,
    done: &AtomicBool,
) -> Result<String, BoxError> {
    if scenario == "restart" {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let command = std::env::var("APITOKEN_FAULTS_RESTART")
            .unwrap_or_else(|_| "pg_ctlcluster 15 main restart".to_owned());
        let at = Utc::now();
        let started = Instant::now();
        let shell = command.clone();
        let status = tokio::task::spawn_blocking(move || {
            std::process::Command::new("sh")
                .args(["-c", &shell])
                .status()
        })
        .await??;
        return Ok(format!(
            "`{command}` at {at} took {:.2} s ({status})",
            started.elapsed().as_secs_f64()
        ));
    }
    let mut killed = 0_i64;
    let mut rounds = 0;
    while !done.load(Ordering::SeqCst) {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND state = 'idle' AND pid <> pg_backend_pid()",
        )
        .bind(database)
        .fetch_one(admin)
        .await?;
        killed += n;
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(format!(
        "{killed} idle sessions terminated in {rounds} rounds"
    ))
}

/// A client takes an environment's lock in a transaction and goes silent, with the
/// store's default settings on its connection (as a frozen `PostgresStore` process
/// would have); an issuer of that environment tries until it succeeds.
async fn frozen(options: PgConnectOptions) -> Result<(), BoxError> {
    let store = PostgresStore::connect_with(options.clone(), PostgresStore::pool_options()).await?;
    store.prepare(apitoken::KeyFingerprint::Unkeyed).await?;
    let issuer = TokenIssuer::builder(store)
        .max_live_tokens_per_environment(std::num::NonZeroU32::new(100).ok_or("0")?)
        .build();
    let env = EnvironmentId::generate(Utc::now(), &mut rand::rng());
    let mut stalled =
        PgConnection::connect_with(&PostgresTimeouts::default().apply(options)).await?;
    let mut tx = stalled.begin().await?;
    let (hi, lo) = env.as_uuid().as_u64_pair();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind((hi ^ lo) as i64)
        .execute(&mut *tx)
        .await?;
    let locked = Instant::now();
    println!("defaults: {:?}", PostgresTimeouts::default());
    loop {
        let attempt = Instant::now();
        let outcome = issuer.issue(env, creator(), request()?).await;
        let (took, since) = (attempt.elapsed(), locked.elapsed());
        match outcome {
            Ok(_) => {
                println!(
                    "issued after {:.2} s (attempt took {:.2} s)",
                    since.as_secs_f64(),
                    took.as_secs_f64()
                );
                break;
            }
            Err(e) => println!(
                "attempt failed after {:.2} s ({:.2} s since the lock was taken): {e}",
                took.as_secs_f64(),
                since.as_secs_f64()
            ),
        }
    }
    let ended = sqlx::query("SELECT 1").execute(&mut *tx).await;
    println!("the stalled transaction, afterwards: {ended:?}");
    Ok(())
}
