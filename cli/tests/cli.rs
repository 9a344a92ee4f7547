//! Runs the real `apitoken` binary against temporary SQLite files and, when
//! `APITOKEN_TEST_POSTGRES_URL` is set, against a fresh PostgreSQL database per test.
//!
//! Without that variable the PostgreSQL tests are skipped (and say so on standard error),
//! unless `APITOKEN_REQUIRE_POSTGRES=1`, which makes them fail instead.

use apitoken::{Alphabet, Checksum};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const ENV: &str = "0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d";
const OTHER_ENV: &str = "0190a5c4-0000-7000-8000-000000000002";
const KEY_A: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const KEY_B: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const REFERENCE: &str = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC";
const READ: &str = "environment.apiTokens.read";
const CLI_OPERATOR: &str = "be9ff319-9cc8-507a-b470-228869fbc201";

// ---------------------------------------------------------------------------------------
// Scaffolding: scratch directories, databases, running the binary.

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test, process or earlier run uses.
fn unique(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{label}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary directory, removed with everything in it when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = std::env::temp_dir().join(unique(&format!("apitoken-cli-{test}")));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

#[path = "../../tests/support/postgres_url.rs"]
mod postgres_url;
use postgres_url::postgres_url;

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A database created for one test and dropped after it.
struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(admin_url: String, test: &str) -> PgDatabase {
        use sqlx::Connection;
        let name = unique(&format!("apitoken_cli_{test}"));
        let name = name.chars().take(63).collect::<String>().to_lowercase();
        block_on(async {
            let mut conn = sqlx::PgConnection::connect(&admin_url)
                .await
                .expect("connect to APITOKEN_TEST_POSTGRES_URL");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await
                .expect("CREATE DATABASE");
            conn.close().await.unwrap();
        });
        PgDatabase {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        use sqlx::Connection;
        block_on(async {
            if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin_url).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    self.name
                )))
                .execute(&mut conn)
                .await;
                let _ = conn.close().await;
            }
        });
    }
}

enum Store {
    Sqlite(PathBuf),
    Postgres(PgDatabase),
}

/// A fresh, empty database and a scratch directory to run the binary in.
struct Db {
    store: Store,
    scratch: Scratch,
}

impl Db {
    fn sqlite(test: &str) -> Db {
        let scratch = Scratch::new(test);
        let path = scratch.path().join("tokens.db");
        Db {
            store: Store::Sqlite(path),
            scratch,
        }
    }

    fn postgres(test: &str) -> Option<Db> {
        let url = postgres_url(test)?;
        Some(Db {
            store: Store::Postgres(PgDatabase::create(url, test)),
            scratch: Scratch::new(test),
        })
    }

    /// The binary with this database selected by its command-line option.
    fn cli(&self, args: &[&str]) -> Cli {
        let cli = Cli::new(self.scratch.path());
        match &self.store {
            Store::Sqlite(path) => cli.arg("--db").arg(path.to_str().unwrap()),
            Store::Postgres(db) => cli.arg("--database-url").arg(&db.url),
        }
        .args(args)
    }

    /// Issues a token in `env` and returns the `token` object of the JSON.
    fn issue_in(&self, env: &str, args: &[&str]) -> Value {
        let mut cli = self.cli(&["issue", "--env", env]).args(args);
        if !args.contains(&"--note") {
            cli = cli.args(&["--note", "a note"]);
        }
        let run = cli.run();
        let out = run.success();
        let json: Value = serde_json::from_str(&out).unwrap();
        json["token"].clone()
    }

    fn issue(&self, args: &[&str]) -> Value {
        self.issue_in(ENV, args)
    }

    /// `verify -` with `raw` on standard input, and `args`.
    fn verify(&self, raw: &str, args: &[&str]) -> Cli {
        self.cli(&["verify", "-"]).args(args).stdin(raw)
    }

    /// The database as `apitoken::open_store` reads it.
    fn url(&self) -> String {
        match &self.store {
            Store::Sqlite(path) => format!("sqlite://{}", path.display()),
            Store::Postgres(db) => db.url.clone(),
        }
    }

    /// Has the token `creator` (raw) create a token through the library, as the server
    /// does for a request it authenticated; returns the new token's raw value and id.
    fn delegate(&self, creator: &str, note: &str) -> (String, String) {
        block_on(async {
            let store = apitoken::open_store(&self.url()).await.unwrap();
            let issuer = apitoken::TokenIssuer::builder(store)
                .prepare()
                .await
                .unwrap();
            let principal = issuer.authenticate(creator).await.unwrap();
            let request = apitoken::IssueRequest::new(apitoken::Note::new(note).unwrap());
            let issued = issuer
                .issue(principal.environment(), &principal, request)
                .await
                .unwrap();
            apitoken::TokenStore::close(issuer.store()).await;
            (
                issued.raw.expose_secret().to_owned(),
                issued.token.id.to_string(),
            )
        })
    }

    /// Has the token (raw) authenticate through the library from `client`, as the server
    /// does for a request (the CLI's own `verify` only reads, and records no use).
    fn use_from(&self, raw: &str, client: &str) {
        block_on(async {
            let store = apitoken::open_store(&self.url()).await.unwrap();
            let issuer = apitoken::TokenIssuer::builder(store)
                .prepare()
                .await
                .unwrap();
            issuer
                .authenticate_from(raw, client.parse().unwrap())
                .await
                .unwrap();
            apitoken::TokenStore::close(issuer.store()).await;
        })
    }
}

/// One run of the binary, being set up.
struct Cli {
    command: Command,
    stdin: Vec<u8>,
}

impl Cli {
    /// The binary, run in `dir`, with none of its environment variables inherited.
    fn new(dir: &Path) -> Cli {
        let mut command = Command::new(env!("CARGO_BIN_EXE_apitoken"));
        command.current_dir(dir);
        for var in [
            "APITOKEN_DB",
            "DATABASE_URL",
            "APITOKEN_DATABASE_URL_FILE",
            "APITOKEN_HASH_KEY",
            "APITOKEN_RETIRED_HASH_KEYS",
            "APITOKEN_EXTRA_SCOPES",
            "APITOKEN_MAX_TOKENS_PER_ENVIRONMENT",
            "APITOKEN_MAX_LIFETIME",
            "APITOKEN_REQUIRE_EXPIRY",
            "APITOKEN_IDLE_EXPIRY",
        ] {
            command.env_remove(var);
        }
        Cli {
            command,
            stdin: Vec::new(),
        }
    }

    fn arg(mut self, arg: &str) -> Cli {
        self.command.arg(arg);
        self
    }

    fn args(mut self, args: &[&str]) -> Cli {
        self.command.args(args);
        self
    }

    fn env(mut self, key: &str, value: &str) -> Cli {
        self.command.env(key, value);
        self
    }

    fn stdin(mut self, input: impl Into<Vec<u8>>) -> Cli {
        self.stdin = input.into();
        self
    }

    fn run(mut self) -> Run {
        let mut child = self
            .command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run apitoken");
        let mut stdin = child.stdin.take().unwrap();
        let input = std::mem::take(&mut self.stdin);
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let output = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Run {
            code: output
                .status
                .code()
                .expect("exited, not killed by a signal"),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }
}

/// What a run printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts exit 0 and nothing on standard error; returns standard output.
    fn success(&self) -> String {
        assert_eq!(self.code, 0, "{self:#?}");
        assert_eq!(self.stderr, "", "{self:#?}");
        self.stdout.clone()
    }

    /// Asserts exit `code` and exactly one `error: …` line on standard error that
    /// contains each of `fragments`; returns that line.
    fn error(&self, code: i32, fragments: &[&str]) -> String {
        assert_eq!(self.code, code, "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        for fragment in fragments {
            assert!(lines[0].contains(fragment), "{fragment:?} in {self:#?}");
        }
        lines[0].to_owned()
    }

    /// Asserts exit 0 and only `warning: …` lines on standard error; returns them.
    fn warned(&self) -> Vec<String> {
        assert_eq!(self.code, 0, "{self:#?}");
        let warnings: Vec<String> = self.stderr.lines().map(str::to_owned).collect();
        for line in &warnings {
            assert!(line.starts_with("warning: "), "{self:#?}");
        }
        warnings
    }

    /// Asserts that neither output holds the token's random part.
    fn never_shows(&self, raw: &str) -> &Run {
        let random = &raw[4..34];
        assert!(
            !self.stdout.contains(random),
            "raw token on stdout: {self:#?}"
        );
        assert!(
            !self.stderr.contains(random),
            "raw token on stderr: {self:#?}"
        );
        self
    }
}

/// Writes `contents` to a new file that only its owner may read and write (mode 0600), as
/// a key or URL file must be.
fn write_private(path: &Path, contents: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(contents.as_bytes()).unwrap();
}

fn raw(token: &Value) -> String {
    token["rawToken"].as_str().unwrap().to_owned()
}

fn id(token: &Value) -> String {
    token["id"].as_str().unwrap().to_owned()
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn assert_near(at: DateTime<Utc>, expected: DateTime<Utc>) {
    let off = (at - expected).abs();
    assert!(off < TimeDelta::seconds(60), "{at} is not near {expected}");
}

/// Runs each scenario against SQLite and against PostgreSQL.
macro_rules! on_every_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::Db::sqlite(stringify!($name))); })*
        }
        mod postgres {
            $(#[test] fn $name() {
                if let Some(db) = super::Db::postgres(stringify!($name)) { super::$name(&db); }
            })*
        }
    };
}

on_every_store! {
    issue_verify_revoke,
    list_never_shows_raw_tokens,
    rotate_with_grace,
    rotate_only_once,
    get_shows_one_token,
    wrong_hash_key_is_refused,
    expires_in_sets_the_expiry,
    extra_scopes_extend_the_catalog,
    list_shows_which_token_created_which,
    purge_deletes_tokens_that_ended,
    an_environment_holds_a_bounded_number_of_tokens,
    events_tell_who_did_what,
    pruned_events_say_where_to_go_on,
    follow_prints_changes_as_they_happen,
    scan_revoke_revokes_the_live_tokens_found,
    lifetime_policy_flags,
    keys_replace_the_hash_key_without_refusing_a_token,
    allowed_ranges_and_the_last_used_address,
}

// ---------------------------------------------------------------------------------------
// Scenarios run on every store.

/// `list` names the token that created each delegated token; revoking a token with
/// `revoke` revokes the tokens it created, directly or not.
fn list_shows_which_token_created_which(db: &Db) {
    let root = db.issue(&["--note", "root", "--scope", READ]);
    let (child_raw, child_id) = db.delegate(&raw(&root), "child");
    let (grandchild_raw, grandchild_id) = db.delegate(&child_raw, "grandchild");

    let table = db.cli(&["list", "--env", ENV]).run().success();
    let header = table.lines().next().unwrap();
    assert!(header.contains("CREATED BY TOKEN"), "{table}");
    let row = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}: {table}"))
            .to_owned()
    };
    // The column before STATUS (names and ids hold no spaces).
    let created_by = |id: &str| {
        let row = row(id);
        let words: Vec<&str> = row.split_whitespace().collect();
        words[words.len() - 2].to_owned()
    };
    let root_name = format!("dyn_…{}", root["checksum"].as_str().unwrap());
    assert_eq!(created_by(&id(&root)), "-", "{table}");
    assert_eq!(created_by(&child_id), root_name, "{table}");
    let child_name = format!("dyn_…{}", &child_raw[child_raw.len() - 6..]);
    assert_eq!(created_by(&grandchild_id), child_name, "{table}");
    let got = db
        .cli(&["get", "--env", ENV, "--id", &child_id])
        .run()
        .success();
    let line = got
        .lines()
        .find(|l| l.starts_with("created by token"))
        .unwrap();
    assert!(line.ends_with(&id(&root)), "{got}");

    let revoked = db
        .cli(&["revoke", "--env", ENV, "--id", &id(&root)])
        .run()
        .success();
    assert!(
        revoked.contains("also revoked 2 tokens it created or replaced"),
        "{revoked}"
    );
    for raw in [&child_raw, &grandchild_raw] {
        let run = db.cli(&["verify", "-"]).stdin(raw.as_str()).run();
        run.never_shows(raw)
            .error(1, &["verification failed (revoked)"]);
    }
    let table = db.cli(&["list", "--env", ENV]).run().success();
    assert!(table.contains("3 tokens: 0 active, 3 revoked"), "{table}");
}

/// `purge` deletes the tokens revoked or expired longer ago than `--older-than`, and only
/// those; a purged token is unknown.
fn purge_deletes_tokens_that_ended(db: &Db) {
    let live = db.issue(&["--note", "live"]);
    let gone = db.issue(&["--note", "revoked"]);
    db.cli(&["revoke", "--env", ENV, "--id", &id(&gone)])
        .run()
        .success();
    let none = db.cli(&["purge", "--older-than", "1d"]).run().success();
    assert!(
        none.starts_with("purged 0 tokens revoked or expired before "),
        "{none}"
    );
    let purged = db
        .cli(&["purge", "--older-than", "0s", "--json"])
        .run()
        .success();
    let purged: Value = serde_json::from_str(&purged).unwrap();
    assert_eq!(purged["purged"], 1, "{purged}");
    assert!(purged["endedBefore"].is_string(), "{purged}");
    let table = db.cli(&["list", "--env", ENV]).run().success();
    assert!(
        table.contains(&id(&live)) && !table.contains(&id(&gone)),
        "{table}"
    );
    db.cli(&["verify", "-"])
        .stdin(raw(&gone))
        .run()
        .never_shows(&raw(&gone))
        .error(1, &["verification failed (unknown)"]);
    db.cli(&["verify", "-"]).stdin(raw(&live)).run().success();
}

/// `--max-tokens-per-environment` (or its variable) bounds the tokens an environment keeps,
/// revoked ones included, for the CLI as for the server.
fn an_environment_holds_a_bounded_number_of_tokens(db: &Db) {
    let first = db.issue(&["--note", "one"]);
    db.cli(&["revoke", "--env", ENV, "--id", &id(&first)])
        .run()
        .success();
    db.cli(&[
        "--max-tokens-per-environment",
        "2",
        "issue",
        "--env",
        ENV,
        "--note",
        "two",
    ])
    .run()
    .success();
    db.cli(&["issue", "--env", ENV, "--note", "three"])
        .env("APITOKEN_MAX_TOKENS_PER_ENVIRONMENT", "2")
        .run()
        .error(2, &["already holds 2 tokens", "apitoken purge"]);
}

fn issue_verify_revoke(db: &Db) {
    let token = db.issue(&["--scope", READ, "--scope", "environment.users.read"]);
    let raw = raw(&token);
    let id = id(&token);
    assert!(raw.starts_with("dyn_") && raw.len() == 40, "{raw}");
    assert_eq!(token["checksum"].as_str().unwrap(), &raw[34..]);
    assert_eq!(token["projectEnvironmentId"], ENV);
    assert_eq!(token["projectEnvironment"]["id"], ENV);
    assert_eq!(token["note"], "a note");
    assert_eq!(token["active"], true);
    assert_eq!(
        token["scopes"],
        serde_json::json!(["environment.apiTokens.read", "environment.users.read"])
    );
    assert_eq!(token["createdBy"]["id"], CLI_OPERATOR);
    assert_eq!(token["createdBy"]["alias"], "apitoken-cli");
    assert!(token.get("expiresAt").is_none());
    assert_near(time(&token["createdAt"]), Utc::now());

    // Authenticate and authorize, from an argument (with --insecure-argv) and from
    // standard input.
    let ok = db
        .cli(&[
            "verify",
            &raw,
            "--insecure-argv",
            "--env",
            ENV,
            "--scope",
            READ,
        ])
        .run();
    let out = ok.never_shows(&raw).success();
    assert!(
        out.contains(&id) && out.contains(ENV) && out.contains(READ),
        "{out}"
    );
    db.cli(&["verify", "-"])
        .stdin(format!("{raw}\n"))
        .run()
        .success();
    db.cli(&["verify"])
        .stdin(format!("Bearer {raw}\r\n"))
        .run()
        .success();
    let json: Value = serde_json::from_str(
        &db.cli(&["verify", "--json", "-"])
            .stdin(raw.as_str())
            .run()
            .success(),
    )
    .unwrap();
    assert_eq!(json["valid"], true);
    assert_eq!(json["tokenId"], id.as_str());
    assert_eq!(json["projectEnvironmentId"], ENV);
    assert_eq!(json["createdBy"]["id"], CLI_OPERATOR);

    // Refusals: exit 1, the category on stderr, never the token.
    let run = db.verify(&raw, &["--env", OTHER_ENV]).run();
    run.never_shows(&raw)
        .error(1, &["verification failed (wrong environment)"]);
    let run = db
        .cli(&["verify", "-", "--scope", "environment.users.write"])
        .stdin(raw.as_str())
        .run();
    run.never_shows(&raw).error(
        1,
        &[
            "verification failed (missing scope)",
            "environment.users.write",
        ],
    );
    let run = db.verify(REFERENCE, &[]).run();
    run.error(1, &["verification failed (unknown)"]);
    let run = db.verify(&raw[..39], &[]).run();
    run.error(1, &["verification failed (malformed)", "got 35"]);

    // Revoke, then the same token is refused.
    let out = db
        .cli(&["revoke", "--env", ENV, "--id", &id])
        .run()
        .success();
    assert!(out.contains(&format!("revoked token {id}")), "{out}");
    let run = db.cli(&["verify", "-"]).stdin(raw.as_str()).run();
    run.never_shows(&raw)
        .error(1, &["verification failed (revoked)", &id]);
    // Revoking again is harmless.
    db.cli(&["revoke", "--env", ENV, "--id", &id])
        .run()
        .success();
}

fn list_never_shows_raw_tokens(db: &Db) {
    let tokens: Vec<Value> = (0..5)
        .map(|i| {
            let note = format!("token {i}");
            db.issue(&["--note", &note, "--scope", READ])
        })
        .collect();
    let elsewhere = db.issue_in(OTHER_ENV, &[]);
    let revoked = id(&tokens[2]);
    db.cli(&["revoke", "--env", ENV, "--id", &revoked])
        .run()
        .success();

    let runs = [
        db.cli(&["list", "--env", ENV]).run(),
        db.cli(&["list", "--env", ENV, "--json"]).run(),
        db.cli(&["list", "--env", ENV, "--json", "--page-size", "2"])
            .run(),
        db.cli(&["list", "--env", ENV, "--limit", "3"]).run(),
        db.cli(&["get", "--env", ENV, "--id", &id(&tokens[0]), "--json"])
            .run(),
    ];
    for run in &runs {
        for token in tokens.iter().chain([&elsewhere]) {
            run.never_shows(&raw(token));
        }
        assert!(!run.stdout.contains("rawToken"), "{run:#?}");
    }

    // The table: a header, one row per token, a summary.
    let table = runs[0].success();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 7, "{table}");
    for word in [
        "ID",
        "TOKEN",
        "NOTE",
        "SCOPES",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "STATUS",
    ] {
        assert!(lines[0].contains(word), "{table}");
    }
    for (token, line) in tokens.iter().zip(&lines[1..6]) {
        assert!(line.starts_with(&id(token)), "{table}");
        let name = format!("dyn_…{}", token["checksum"].as_str().unwrap());
        assert!(line.contains(&name), "{table}");
        let status = if id(token) == revoked {
            "revoked"
        } else {
            "active"
        };
        assert!(line.ends_with(status), "{table}");
    }
    assert_eq!(lines[6], "5 tokens: 4 active, 1 revoked, 0 expired");
    assert!(!table.contains(&id(&elsewhere)));

    // JSON, in creation order, in one page or several.
    for run in &runs[1..3] {
        let json: Value = serde_json::from_str(&run.success()).unwrap();
        let listed: Vec<String> = json["tokens"].as_array().unwrap().iter().map(id).collect();
        let issued: Vec<String> = tokens.iter().map(id).collect();
        assert_eq!(listed, issued);
        assert_eq!(json["tokens"][2]["active"], false);
        assert_eq!(json["tokens"][0]["scopes"], serde_json::json!([READ]));
    }

    // --limit shows the oldest N.
    let limited = runs[3].success();
    assert_eq!(limited.lines().count(), 5, "{limited}");
    assert!(limited.contains(&id(&tokens[2])) && !limited.contains(&id(&tokens[3])));
    assert!(limited.contains("--limit reached"));

    let empty = "0190a5c4-0000-7000-8000-0000000000ff";
    let out = db.cli(&["list", "--env", empty]).run().success();
    assert_eq!(out.trim(), format!("no tokens in environment {empty}"));
    let out = db.cli(&["list", "--env", empty, "--json"]).run().success();
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        serde_json::json!({"tokens": []})
    );
}

fn rotate_with_grace(db: &Db) {
    let old = db.issue(&["--scope", READ, "--expires-in", "30d", "--note", "rotated"]);
    let old_raw = raw(&old);
    let run = db
        .cli(&["rotate", "--env", ENV, "--id", &id(&old), "--grace", "1h"])
        .run();
    run.never_shows(&old_raw);
    let new: Value = serde_json::from_str(&run.success()).unwrap();
    let new = &new["token"];
    let new_raw = raw(new);
    assert_ne!(id(new), id(&old));
    assert_ne!(new_raw, old_raw);
    assert_eq!(new["note"], "rotated");
    assert_eq!(new["scopes"], serde_json::json!([READ]));
    assert_near(time(&new["expiresAt"]), Utc::now() + TimeDelta::days(30));

    // Both work during the grace period; the old one now expires in an hour.
    db.verify(&old_raw, &[]).run().success();
    db.verify(&new_raw, &[]).run().success();
    let got: Value = serde_json::from_str(
        &db.cli(&["get", "--env", ENV, "--id", &id(&old), "--json"])
            .run()
            .success(),
    )
    .unwrap();
    assert_near(
        time(&got["token"]["expiresAt"]),
        Utc::now() + TimeDelta::hours(1),
    );

    // Without grace the replaced token stops at once, and cannot be rotated again.
    let newest: Value = serde_json::from_str(
        &db.cli(&["rotate", "--env", ENV, "--id", &id(new)])
            .run()
            .success(),
    )
    .unwrap();
    db.verify(&new_raw, &[])
        .run()
        .never_shows(&new_raw)
        .error(1, &["verification failed (expired)"]);
    db.cli(&["rotate", "--env", ENV, "--id", &id(new)])
        .run()
        .error(
            2,
            &[
                "has already been rotated",
                &format!("rotate its successor {} instead", id(&newest["token"])),
            ],
        );

    // A token revoked without ever being rotated cannot be rotated either.
    let revoked = db.issue(&["--note", "revoked"]);
    db.cli(&["revoke", "--env", ENV, "--id", &id(&revoked)])
        .run()
        .success();
    db.cli(&["rotate", "--env", ENV, "--id", &id(&revoked)])
        .run()
        .error(2, &["cannot be rotated", "issue a new token"]);
}

/// A token still in its grace period cannot be rotated again; its successor can.
fn rotate_only_once(db: &Db) {
    let old = db.issue(&["--note", "once"]);
    let rotate = |id: &str| db.cli(&["rotate", "--env", ENV, "--id", id, "--grace", "1h"]);
    let first: Value = serde_json::from_str(&rotate(&id(&old)).run().success()).unwrap();
    let first = &first["token"];

    let run = rotate(&id(&old)).run();
    run.never_shows(&raw(&old));
    assert!(
        !run.stdout.contains("rawToken"),
        "no second successor: {run:#?}"
    );
    run.error(
        2,
        &[
            &id(&old),
            "has already been rotated",
            &format!("rotate its successor {} instead", id(first)),
        ],
    );

    // Nothing changed: the old token works through its grace period, and there are two.
    db.verify(&raw(&old), &[]).run().success();
    let listed: Value =
        serde_json::from_str(&db.cli(&["list", "--env", ENV, "--json"]).run().success()).unwrap();
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 2, "{listed}");

    rotate(&id(first)).run().success();
}

fn get_shows_one_token(db: &Db) {
    let token = db.issue(&["--created-by", OTHER_ENV, "--email", "ops@example.com"]);
    let out = db
        .cli(&["get", "--env", ENV, "--id", &id(&token), "--json"])
        .run()
        .success();
    let json: Value = serde_json::from_str(&out).unwrap();
    let mut expected = token.clone();
    expected.as_object_mut().unwrap().remove("rawToken");
    assert_eq!(json, serde_json::json!({ "token": expected }));
    assert_eq!(json["token"]["createdBy"]["email"], "ops@example.com");

    let out = db
        .cli(&["get", "--env", ENV, "--id", &id(&token)])
        .run()
        .success();
    for expected in [
        id(&token),
        format!("dyn_…{}", token["checksum"].as_str().unwrap()),
        "active".to_owned(),
        "ops@example.com".to_owned(),
    ] {
        assert!(out.contains(&expected), "{expected} in {out}");
    }

    // The token is not found in another environment, nor an unknown id anywhere.
    let missing = "0190a5c4-0000-7000-8000-00000000dead";
    db.cli(&["get", "--env", OTHER_ENV, "--id", &id(&token)])
        .run()
        .error(
            2,
            &["no token", &format!("apitoken list --env {OTHER_ENV}")],
        );
    db.cli(&["revoke", "--env", ENV, "--id", missing])
        .run()
        .error(2, &["no token", missing]);
    db.cli(&["rotate", "--env", ENV, "--id", missing])
        .run()
        .error(2, &["no token", missing]);
}

/// `issue --allow-cidr` restricts where a token is accepted; `verify --from` presents it
/// from an address, which `list` (LAST USED FROM) and `get` show with its last use.
fn allowed_ranges_and_the_last_used_address(db: &Db) {
    let token = db.issue(&[
        "--scope",
        READ,
        "--allow-cidr",
        "10.0.0.0/8",
        "--allow-cidr",
        "2001:db8::7",
    ]);
    assert_eq!(
        token["allowedCidrs"],
        serde_json::json!(["10.0.0.0/8", "2001:db8::7/128"])
    );
    let other = db.issue(&["--note", "anywhere"]);
    assert!(other.get("allowedCidrs").is_none(), "{other}");
    let secret = raw(&token);

    db.verify(&secret, &[])
        .run()
        .never_shows(&secret)
        .error(1, &["verification failed (ip not allowed)", "--from"]);
    db.verify(&secret, &["--from", "192.0.2.1"])
        .run()
        .never_shows(&secret)
        .error(1, &["verification failed (ip not allowed)", "192.0.2.1"]);
    let out = db.verify(&secret, &["--from", "10.1.2.3"]).run().success();
    assert!(out.contains("valid"), "{out}");
    db.verify(&raw(&other), &[]).run().success();
    db.use_from(&secret, "::ffff:10.1.2.3");

    let table = db.cli(&["list", "--env", ENV]).run().success();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].contains("LAST USED FROM"), "{table}");
    let row = |t: &Value| {
        lines
            .iter()
            .find(|l| l.starts_with(&id(t)))
            .copied()
            .unwrap_or_else(|| panic!("{table}"))
    };
    assert!(row(&token).contains("10.1.2.3"), "{table}");
    assert!(!row(&other).contains("10.1.2.3"), "{table}");

    let shown = db
        .cli(&["get", "--env", ENV, "--id", &id(&token)])
        .run()
        .success();
    for expected in ["10.0.0.0/8 2001:db8::7/128", "last used from", "10.1.2.3"] {
        assert!(shown.contains(expected), "{expected} in {shown}");
    }
    let shown = db
        .cli(&["get", "--env", ENV, "--id", &id(&other)])
        .run()
        .success();
    assert!(shown.contains("any address"), "{shown}");
    let json: Value = serde_json::from_str(
        &db.cli(&["get", "--env", ENV, "--id", &id(&token), "--json"])
            .run()
            .success(),
    )
    .unwrap();
    assert_eq!(json["token"]["lastUsedIp"], "10.1.2.3", "{json}");

    // Ranges that cannot be read, or too many, are usage errors, and issue nothing.
    db.cli(&[
        "issue",
        "--env",
        ENV,
        "--note",
        "x",
        "--allow-cidr",
        "10.0.0.1/8",
    ])
    .run()
    .error(2, &["host bits", "10.0.0.0/8"]);
    let many: Vec<String> = (0..33).map(|i| format!("10.{i}.0.0/16")).collect();
    let mut args = vec!["issue", "--env", ENV, "--note", "x"];
    for range in &many {
        args.extend(["--allow-cidr", range.as_str()]);
    }
    db.cli(&args).run().error(2, &["at most 32"]);
}

fn wrong_hash_key_is_refused(db: &Db) {
    let token = db
        .cli(&["issue", "--env", ENV, "--note", "keyed"])
        .env("APITOKEN_HASH_KEY", KEY_A)
        .run()
        .success();
    let token: Value = serde_json::from_str(&token).unwrap();
    let raw = raw(&token["token"]);

    // The right key, from the environment or from a file.
    db.verify(&raw, &[])
        .env("APITOKEN_HASH_KEY", KEY_A)
        .run()
        .success();
    let key_file = db.scratch.path().join("hash.key");
    write_private(&key_file, &format!("{KEY_A}\n"));
    db.verify(&raw, &["--hash-key-file", key_file.to_str().unwrap()])
        .env("APITOKEN_HASH_KEY", KEY_B)
        .run()
        .success();

    // Another key, or none, is refused before anything is read.
    let line = db
        .cli(&["list", "--env", ENV])
        .env("APITOKEN_HASH_KEY", KEY_B)
        .run()
        .error(
            2,
            &[
                "this database was created with hash key fingerprint key:",
                "the key given has fingerprint key:",
                "use the original APITOKEN_HASH_KEY",
            ],
        );
    let run = db.verify(&raw, &[]).run();
    run.never_shows(&raw).error(
        2,
        &["created with hash key fingerprint key:", "no key was given"],
    );
    // The fingerprints are the keys' public names, never the keys.
    assert!(!line.contains(KEY_A) && !line.contains(KEY_B));

    // A malformed key says what a key looks like.
    db.cli(&["list", "--env", ENV])
        .env("APITOKEN_HASH_KEY", "not-a-key")
        .run()
        .error(
            2,
            &[
                "APITOKEN_HASH_KEY",
                "64 hexadecimal characters",
                "openssl rand -hex 32",
            ],
        );
    std::fs::write(&key_file, "abc").unwrap();
    db.cli(&[
        "list",
        "--env",
        ENV,
        "--hash-key-file",
        key_file.to_str().unwrap(),
    ])
    .run()
    .error(2, &["hash key file", "64 hexadecimal characters"]);
    db.cli(&["list", "--env", ENV, "--hash-key-file", "/nonexistent/key"])
        .run()
        .error(2, &["cannot read the hash key file /nonexistent/key"]);
}

/// The README's rehearsal of a key rotation: tokens of the old key keep working under a
/// keyring (from a file or the environment), `keys status` counts what still needs the
/// old key, `keys retire` refuses while live tokens need it and revokes them with
/// `--revoke-remaining`, after which the new key alone opens the database.
fn keys_replace_the_hash_key_without_refusing_a_token(db: &Db) {
    let fingerprint = |key: &str| {
        apitoken::HashKey::from_hex(key)
            .unwrap()
            .fingerprint()
            .to_string()
    };
    let (old, new) = (fingerprint(KEY_A), fingerprint(KEY_B));
    let old_tokens: Vec<Value> = (0..2)
        .map(|_| {
            let out = db
                .cli(&["issue", "--env", ENV, "--note", "old key"])
                .env("APITOKEN_HASH_KEY", KEY_A)
                .run()
                .success();
            serde_json::from_str::<Value>(&out).unwrap()["token"].clone()
        })
        .collect();
    let ring = db.scratch.path().join("ring.keys");
    write_private(&ring, &format!("{KEY_B}\n{KEY_A}\n"));
    let ring = ring.to_str().unwrap();
    let status = |key_file: &str| -> Vec<Value> {
        let out = db
            .cli(&["keys", "status", "--json", "--hash-key-file", key_file])
            .run()
            .success();
        serde_json::from_str(&out).unwrap()
    };
    let entry = |keys: &[Value], fingerprint: &str| -> Option<Value> {
        keys.iter()
            .find(|k| k["fingerprint"] == fingerprint)
            .cloned()
    };

    let keys = status(ring);
    let retired = entry(&keys, &old).expect("the old key is listed");
    assert_eq!(retired["current"], false, "{keys:?}");
    assert_eq!(retired["live"], 2, "{keys:?}");
    assert_eq!(retired["neverExpiring"], 2, "{keys:?}");
    assert_eq!(retired["retirableOn"], Value::Null, "never: {keys:?}");
    if let Some(current) = entry(&keys, &new) {
        assert_eq!(current["current"], true, "{keys:?}");
    }

    // Old tokens authenticate under the ring, from the file or from the environment.
    for token in &old_tokens {
        db.verify(&raw(token), &["--hash-key-file", ring])
            .run()
            .success();
        db.verify(&raw(token), &[])
            .env("APITOKEN_HASH_KEY", KEY_B)
            .env("APITOKEN_RETIRED_HASH_KEYS", KEY_A)
            .run()
            .success();
    }
    let out = db
        .cli(&[
            "issue",
            "--env",
            ENV,
            "--note",
            "new key",
            "--hash-key-file",
            ring,
        ])
        .run()
        .success();
    let fresh: Value = serde_json::from_str::<Value>(&out).unwrap()["token"].clone();

    // Refused while live tokens need the old key; revoked with it on request.
    let before = status(ring);
    let refused = db
        .cli(&["keys", "retire", &old, "--hash-key-file", ring])
        .run();
    assert_ne!(refused.code, 0, "{refused:#?}");
    assert!(refused.stderr.contains(&old), "{refused:#?}");
    assert_eq!(status(ring), before, "a refused retire changes nothing");
    let out = db
        .cli(&[
            "keys",
            "retire",
            &old,
            "--hash-key-file",
            ring,
            "--revoke-remaining",
            "--json",
        ])
        .run()
        .success();
    let retired: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(retired["retired"], old.as_str());
    let mut revoked: Vec<String> = retired["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    revoked.sort();
    let mut expected: Vec<String> = old_tokens.iter().map(id).collect();
    expected.sort();
    assert_eq!(revoked, expected);

    // The new key alone now opens the database; the old key is no longer needed.
    let new_key = db.scratch.path().join("new.key");
    write_private(&new_key, &format!("{KEY_B}\n"));
    let new_key = new_key.to_str().unwrap();
    let keys = status(new_key);
    assert_eq!(entry(&keys, &old), None, "{keys:?}");
    assert_eq!(entry(&keys, &new).unwrap()["live"], 1, "{keys:?}");
    db.verify(&raw(&fresh), &["--hash-key-file", new_key])
        .run()
        .success();
    for token in &old_tokens {
        let refused = db.verify(&raw(token), &["--hash-key-file", ring]).run();
        assert_ne!(refused.code, 0, "revoked: {refused:#?}");
    }
}

fn expires_in_sets_the_expiry(db: &Db) {
    for (duration, seconds) in [
        ("30d", 30 * 86_400),
        ("12h", 43_200),
        ("1d12h", 129_600),
        ("2w", 1_209_600),
        ("90m", 5_400),
        ("45s", 45),
    ] {
        let token = db.issue(&["--expires-in", duration]);
        let expires = time(&token["expiresAt"]);
        assert_near(expires, Utc::now() + TimeDelta::seconds(seconds));
        // Rounded up to a whole second, never shorter than asked.
        assert_eq!(expires.timestamp_subsec_nanos(), 0);
        assert!(
            expires + TimeDelta::seconds(1)
                >= time(&token["createdAt"]) + TimeDelta::seconds(seconds)
        );
    }
    // The expiry is stored: it comes back in the listing and the principal.
    let token = db.issue(&["--expires-in", "7d"]);
    let out = db.verify(&raw(&token), &["--json"]).run().success();
    let principal: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(principal["expiresAt"], token["expiresAt"]);
}

/// `--max-lifetime`, `--require-expiry` (or their variables) bound `issue` and
/// `rotate`; `--idle-expiry` makes `verify` refuse, and `list` and `get` show as expired,
/// a token unused for that long (issued here with the library at a clock 40 days back).
fn lifetime_policy_flags(db: &Db) {
    let never = db.issue(&["--note", "never expires"]);
    db.cli(&[
        "issue",
        "--env",
        ENV,
        "--note",
        "n",
        "--max-lifetime",
        "90d",
    ])
    .run()
    .error(2, &["--max-lifetime", "--expires-in"]);
    db.cli(&[
        "issue",
        "--env",
        ENV,
        "--note",
        "n",
        "--max-lifetime",
        "90d",
    ])
    .args(&["--expires-in", "91d"])
    .run()
    .error(2, &["--expires-in is longer than --max-lifetime"]);
    db.cli(&["issue", "--env", ENV, "--note", "n"])
        .env("APITOKEN_REQUIRE_EXPIRY", "1")
        .run()
        .error(2, &["--require-expiry", "--expires-in"]);
    let bounded = db.issue(&["--max-lifetime", "90d", "--expires-in", "90d"]);
    let expires = time(&bounded["expiresAt"]);
    assert!(expires <= Utc::now() + TimeDelta::days(90), "{bounded}");
    assert_near(expires, Utc::now() + TimeDelta::days(90));
    // A rotation's successor is capped at the maximum.
    let out = db
        .cli(&[
            "rotate",
            "--env",
            ENV,
            "--id",
            &id(&never),
            "--max-lifetime",
            "30d",
        ])
        .run()
        .success();
    let successor: Value = serde_json::from_str(&out).unwrap();
    assert_near(
        time(&successor["token"]["expiresAt"]),
        Utc::now() + TimeDelta::days(30),
    );
    // An idle expiry shorter than ten last-use intervals is refused by the parser.
    db.cli(&["list", "--env", ENV, "--idle-expiry", "5m"])
        .run()
        .error(2, &["at least 10m"]);

    let created = Utc::now() - TimeDelta::days(40);
    let (idle_raw, idle_id) = block_on(async {
        let store = apitoken::open_store(&db.url()).await.unwrap();
        let issuer = apitoken::TokenIssuer::builder(store)
            .clock(apitoken::ManualClock::new(created))
            .prepare()
            .await
            .unwrap();
        let env: apitoken::EnvironmentId = ENV.parse().unwrap();
        let creator = apitoken::Creator::new(apitoken::UserId::from_uuid(uuid::Uuid::nil()));
        let request = apitoken::IssueRequest::new(apitoken::Note::new("idle").unwrap());
        let issued = issuer.issue(env, creator, request).await.unwrap();
        apitoken::TokenStore::close(issuer.store()).await;
        (
            issued.raw.expose_secret().to_owned(),
            issued.token.id.to_string(),
        )
    });
    db.verify(&idle_raw, &[]).run().success();
    db.verify(&idle_raw, &["--idle-expiry", "30d"])
        .run()
        .error(1, &["verification failed (expired)"]);
    let out = db
        .cli(&["list", "--env", ENV, "--json", "--idle-expiry", "30d"])
        .run()
        .success();
    let listed: Value = serde_json::from_str(&out).unwrap();
    let shown = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == idle_id.as_str())
        .unwrap()
        .clone();
    let went_idle = time(&shown["createdAt"]) + TimeDelta::days(30);
    assert_eq!(time(&shown["expiresAt"]), went_idle, "{shown}");
    let out = db
        .cli(&[
            "get",
            "--env",
            ENV,
            "--id",
            &idle_id,
            "--idle-expiry",
            "30d",
        ])
        .run()
        .success();
    assert!(out.contains("status") && out.contains("expired"), "{out}");
    let out = db
        .cli(&["get", "--env", ENV, "--id", &idle_id])
        .run()
        .success();
    assert!(!out.contains("expired"), "{out}");
}

fn extra_scopes_extend_the_catalog(db: &Db) {
    db.cli(&[
        "issue",
        "--env",
        ENV,
        "--note",
        "x",
        "--scope",
        "gasless.read",
    ])
    .run()
    .error(
        2,
        &[
            "unknown scope `gasless.read`",
            "apitoken scopes",
            "--extra-scopes",
        ],
    );
    let out = db
        .cli(&[
            "issue",
            "--env",
            ENV,
            "--note",
            "x",
            "--scope",
            "gasless.read",
        ])
        .env("APITOKEN_EXTRA_SCOPES", "gasless.read,gasless.write")
        .run()
        .success();
    let token: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        token["token"]["scopes"],
        serde_json::json!(["gasless.read"])
    );
    db.verify(&raw(&token["token"]), &["--scope", "gasless.read"])
        .run()
        .success();
}

// ---------------------------------------------------------------------------------------
// The audit trail: `events`.

/// `scan --revoke` revokes the live tokens it finds (and what they created) as leaked,
/// with the file and line as where, says what each one was without showing it, and
/// exits 1 when a live one was found; run again, it changes nothing and exits 0.
fn scan_revoke_revokes_the_live_tokens_found(db: &Db) {
    let live = db.issue(&["--note", "live", "--scope", READ]);
    let (child_raw, child_id) = db.delegate(&raw(&live), "child");
    let revoked = db.issue(&["--note", "revoked"]);
    db.cli(&["revoke", "--env", ENV, "--id", &id(&revoked)])
        .run()
        .success();
    let bystander = db.issue(&["--note", "not in the file"]);
    // Well formed in the other digit order: a token of someone else's format.
    let random = &REFERENCE[4..34];
    let foreign = format!(
        "dyn_{random}{}",
        Checksum::compute(random.as_bytes(), Alphabet::GitHub)
    );
    assert_ne!(foreign, REFERENCE);
    let file = db.scratch.path().join("leak.log");
    std::fs::write(
        &file,
        format!(
            "start\nTOKEN={}\n{}\n# {REFERENCE}\n{foreign}\n",
            raw(&live),
            raw(&revoked)
        ),
    )
    .unwrap();
    let name = file.to_str().unwrap();

    let run = db.cli(&["scan", "--revoke", name]).run();
    assert_eq!(run.code, 1, "a live token was found: {run:#?}");
    assert_eq!(run.stderr, "", "{run:#?}");
    for shown in [raw(&live), raw(&revoked), foreign.clone()] {
        run.never_shows(&shown);
    }
    let lines: Vec<&str> = run.stdout.lines().collect();
    let checksum = |token: &Value| token["checksum"].as_str().unwrap().to_owned();
    assert_eq!(
        lines,
        vec![
            format!(
                "{name}:2:7: {} revoked now (token {}), with 1 token it created or replaced",
                checksum(&live),
                id(&live)
            ),
            format!(
                "{name}:3:1: {} already revoked (token {})",
                checksum(&revoked),
                id(&revoked)
            ),
            format!("{name}:4:3: 4n3LFC unknown: well formed, but not in this database"),
            format!(
                "{name}:5:1: {} not ours: not in this database's token format",
                &foreign[34..]
            ),
            "found 4: 1 revoked now, 1 already revoked, 0 expired, 1 unknown, 1 not ours"
                .to_owned(),
        ]
    );
    for dead in [raw(&live), child_raw] {
        assert_eq!(db.verify(&dead, &["--env", ENV]).run().code, 1);
    }
    db.verify(&raw(&bystander), &["--env", ENV]).run().success();

    // The revocation is a `leaked` event, by the reporter, naming the file and line; the
    // child's is caused by it.
    let leaked: Vec<Value> = events(db, &["--env", ENV])
        .into_iter()
        .filter(|e| e["kind"] == "leaked" || e["cause"] == id(&live).as_str())
        .collect();
    assert_eq!(leaked.len(), 2, "{leaked:#?}");
    assert_eq!(leaked[0]["tokenId"], id(&live).as_str());
    assert_eq!(leaked[0]["actorType"], "reporter");
    assert_eq!(leaked[0]["actorId"], Value::Null);
    assert_eq!(leaked[0]["reporter"], "operator");
    assert_eq!(leaked[0]["leakUrl"], format!("{name}:2").as_str());
    assert_eq!(leaked[1]["tokenId"], child_id.as_str());
    assert_eq!(leaked[1]["kind"], "revoked");

    // Again: nothing changes, nothing live is found.
    let before = events(db, &[]).len();
    let run = db.cli(&["scan", "--revoke", "--json", name]).run();
    let out = run.success();
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            &json["found"],
            &json["revoked"],
            &json["alreadyRevoked"],
            &json["unknown"],
            &json["notOurs"]
        ),
        (
            &Value::from(4),
            &Value::from(0),
            &Value::from(2),
            &Value::from(1),
            &Value::from(1)
        ),
        "{json:#}"
    );
    assert_eq!(json["tokens"][0]["outcome"], "already_revoked");
    assert_eq!(json["tokens"][0]["line"], 2);
    assert_eq!(events(db, &[]).len(), before, "nothing was logged");

    // Nothing found: exit 0, and a clean file never needs the database.
    let clean = db.scratch.path().join("clean.txt");
    std::fs::write(&clean, "nothing\n").unwrap();
    let out = db
        .cli(&["scan", "--revoke", clean.to_str().unwrap()])
        .run()
        .success();
    assert_eq!(
        out.trim_end(),
        "found 0: 0 revoked now, 0 already revoked, 0 expired, 0 unknown, 0 not ours"
    );
}

/// `events --json` with `args`: the events, one JSON object per line, and nothing on
/// standard error.
fn events(db: &Db, args: &[&str]) -> Vec<Value> {
    let out = db.cli(&["events", "--json"]).args(args).run().success();
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

fn sequences(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect()
}

/// An event as `events --json` prints it, without its time.
fn event(
    sequence: u64,
    env: &str,
    token: &str,
    kind: &str,
    actor: (&str, &str),
    other: Option<(&str, &str)>,
) -> Value {
    let mut event = serde_json::json!({
        "sequence": sequence,
        "environmentId": env,
        "tokenId": token,
        "kind": kind,
        "actorType": actor.0,
        "actorId": actor.1,
    });
    if let Some((key, id)) = other {
        event[key] = Value::from(id);
    }
    event
}

/// `events` tells who issued, rotated and revoked which token, oldest first: a delegated
/// token's issue by its creating token, a rotation with its successor, a cascaded
/// revocation with its cause; `--env`, `--after` and `--limit` select, and paging goes on
/// to the end.
fn events_tell_who_did_what(db: &Db) {
    let issued = db.issue(&["--note", "root"]);
    let root = id(&issued);
    let (_, child) = db.delegate(&raw(&issued), "child");
    let other = id(&db.issue_in(OTHER_ENV, &["--note", "other"]));
    let out = db
        .cli(&["rotate", "--env", OTHER_ENV, "--id", &other])
        .run()
        .success();
    let successor: Value = serde_json::from_str(&out).unwrap();
    let successor = id(&successor["token"]);
    db.cli(&["revoke", "--env", ENV, "--id", &root])
        .run()
        .success();

    let operator = ("user", CLI_OPERATOR);
    let expected = vec![
        event(1, ENV, &root, "issued", operator, None),
        event(2, ENV, &child, "issued", ("token", &root), None),
        event(3, OTHER_ENV, &other, "issued", operator, None),
        event(4, OTHER_ENV, &successor, "issued", operator, None),
        event(
            5,
            OTHER_ENV,
            &other,
            "rotated",
            operator,
            Some(("successor", &successor)),
        ),
        event(6, ENV, &root, "revoked", operator, None),
        event(7, ENV, &child, "revoked", operator, Some(("cause", &root))),
    ];
    let mut all = events(db, &[]);
    for event in &mut all {
        assert_near(time(&event["at"]), Utc::now());
        event.as_object_mut().unwrap().remove("at");
    }
    assert_eq!(all, expected);

    assert_eq!(sequences(&events(db, &["--env", ENV])), [1, 2, 6, 7]);
    assert_eq!(sequences(&events(db, &["--env", OTHER_ENV])), [3, 4, 5]);
    assert_eq!(sequences(&events(db, &["--after", "5"])), [6, 7]);
    assert_eq!(
        sequences(&events(db, &["--after", "2", "--limit", "2"])),
        [3, 4]
    );
    assert_eq!(
        sequences(&events(db, &["--env", ENV, "--after", "2"])),
        [6, 7]
    );
    // Small pages: each read goes on where the last one stopped, to the end.
    assert_eq!(
        sequences(&events(db, &["--page-size", "2"])),
        [1, 2, 3, 4, 5, 6, 7]
    );
    assert_eq!(
        sequences(&events(
            db,
            &[
                "--page-size",
                "1",
                "--env",
                ENV,
                "--after",
                "1",
                "--limit",
                "2"
            ]
        )),
        [2, 6]
    );
    assert!(events(db, &["--after", "7"]).is_empty());
    db.cli(&["events", "--after", "8"])
        .run()
        .error(2, &["--after 8", "newest event is 7"]);

    // The table: one row per event, and where to go on from on standard error.
    let run = db.cli(&["events", "--after", "1"]).run();
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(
        run.stderr, "note: next cursor: 7 (to go on from here: --after 7)\n",
        "{run:#?}"
    );
    let lines: Vec<&str> = run.stdout.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "SEQUENCE",
            "AT",
            "ENVIRONMENT",
            "TOKEN",
            "EVENT",
            "BY",
            "DETAIL"
        ],
        "{run:#?}"
    );
    let row = |sequence: u64| -> Vec<&str> {
        let row = lines[1..]
            .iter()
            .find(|l| l.split_whitespace().next() == Some(&sequence.to_string()))
            .unwrap_or_else(|| panic!("no row {sequence}: {run:#?}"));
        row.split_whitespace().skip(2).collect()
    };
    assert_eq!(lines.len(), 7, "{run:#?}");
    assert_eq!(row(2), [ENV, &child, "issued", "token", &root]);
    assert_eq!(
        row(5),
        [
            OTHER_ENV,
            &other,
            "rotated",
            "user",
            CLI_OPERATOR,
            "successor",
            &successor
        ]
    );
    assert_eq!(row(6), [ENV, &root, "revoked", "user", CLI_OPERATOR]);
    assert_eq!(
        row(7),
        [ENV, &child, "revoked", "user", CLI_OPERATOR, "cause", &root]
    );
    // The time column: RFC 3339 in UTC.
    let at = lines[1].split_whitespace().nth(1).unwrap();
    assert_near(time(&Value::from(at)), Utc::now());
    assert!(at.ends_with('Z'), "{at}");

    let run = db.cli(&["events", "--env", ENV, "--after", "7"]).run();
    assert_eq!(
        run.stdout,
        format!("no events after 7 in environment {ENV}\n")
    );
}

/// Events pruned before they were read: a one-off read says so and where to go on from;
/// a follower says so on standard error and goes on.
fn pruned_events_say_where_to_go_on(db: &Db) {
    for note in ["one", "two", "three"] {
        db.issue(&["--note", note]);
    }
    let pruned = block_on(async {
        use apitoken::TokenStore;
        let store = apitoken::open_store(&db.url()).await.unwrap();
        let pruned = store
            .prune_events(Utc::now() + TimeDelta::days(1), 2)
            .await
            .unwrap();
        store.close().await;
        pruned
    });
    assert_eq!(pruned, 2);
    db.cli(&["events", "--json"]).run().error(
        2,
        &["the events after 0 were pruned", "rerun with `--after 2`"],
    );
    db.cli(&["events", "--after", "1"])
        .run()
        .error(2, &["the events after 1 were pruned", "`--after 2`"]);
    assert_eq!(sequences(&events(db, &["--after", "2"])), [3]);

    let mut follower = Follower::spawn(db.cli(&["events", "--json", "--follow"]));
    let line: Value = serde_json::from_str(&follower.line()).unwrap();
    assert_eq!(line["sequence"], 3);
    let run = follower.terminate();
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(
        run.stderr
            .starts_with("warning: the events after 0 were pruned before they were read"),
        "{run:#?}"
    );
    assert!(run.stderr.contains("going on after 2"), "{run:#?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
}

/// `events --follow` prints what the log holds, then each change another process makes,
/// as it is made (of its environment only, with --env); SIGTERM ends it with exit 0 and,
/// for a table, the cursor to go on from.
fn follow_prints_changes_as_they_happen(db: &Db) {
    let root = id(&db.issue(&["--note", "root"]));
    let other = id(&db.issue_in(OTHER_ENV, &["--note", "other"]));

    let mut json = Follower::spawn(db.cli(&["events", "--follow", "--json", "--env", ENV]));
    let mut table = Follower::spawn(db.cli(&["events", "--follow"]));
    let first: Value = serde_json::from_str(&json.line()).unwrap();
    assert_eq!(first["sequence"], 1);
    assert_eq!(first["tokenId"], root.as_str());
    assert!(table.line().starts_with("SEQUENCE"));
    assert!(table.line().starts_with("1 "));
    assert!(table.line().starts_with("2 "));

    // Another environment's change, then this one's: the follower of ENV, which prints
    // in sequence order, shows the second and never the first.
    db.cli(&["revoke", "--env", OTHER_ENV, "--id", &other])
        .run()
        .success();
    db.cli(&["revoke", "--env", ENV, "--id", &root])
        .run()
        .success();
    let next: Value = serde_json::from_str(&json.line()).unwrap();
    assert_eq!(next["sequence"], 4, "{next}");
    assert_eq!(next["kind"], "revoked");
    assert_eq!(next["tokenId"], root.as_str());
    assert_eq!(next["actorId"], CLI_OPERATOR);
    let row = table.line();
    assert!(row.starts_with("3 ") && row.contains(&other), "{row}");
    let row = table.line();
    assert!(row.starts_with("4 ") && row.contains(&root), "{row}");

    let run = json.terminate();
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "", "")
    );
    let run = table.terminate();
    assert_eq!(run.code, 0, "{run:#?}");
    assert_eq!(run.stdout, "", "{run:#?}");
    assert_eq!(
        run.stderr,
        "note: next cursor: 4 (to go on from here: --after 4)\n"
    );

    // --limit ends a follow too.
    let run = db
        .cli(&[
            "events", "--follow", "--json", "--after", "1", "--limit", "2",
        ])
        .run();
    assert_eq!(sequences(&parse_lines(&run.success())), [2, 3]);
}

fn parse_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A malformed `--after` is a usage error: exit 2, one line, what a cursor is.
#[test]
fn events_refuse_a_malformed_cursor() {
    let scratch = Scratch::new("events_cursor");
    for after in ["x", "+5", "-1", "1.5", "", "99999999999999999999999"] {
        let arg = format!("--after={after}");
        Cli::new(scratch.path())
            .args(&["events", &arg])
            .run()
            .error(
                2,
                &[
                    "--after <CURSOR>",
                    "not an event cursor",
                    "a whole number, 0 for the start",
                    "apitoken events --help",
                ],
            );
    }
}

/// A running `events --follow`: its standard output line by line, as it comes.
struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Follower {
    fn spawn(cli: Cli) -> Follower {
        let mut command = cli.command;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run apitoken");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = std::sync::mpsc::channel();
        // The channel closes when standard output does, at the exit.
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                if send.send(line.expect("stdout is UTF-8")).is_err() {
                    break;
                }
            }
        });
        Follower { child, lines }
    }

    /// The next line; fails the test if none comes within a minute (a hang guard only:
    /// the line is normally there well within a second).
    fn line(&mut self) -> String {
        self.lines
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a line from the follower within 60 s")
    }

    /// Sends SIGTERM and waits for the exit (failing the test if it takes a minute: a
    /// hang guard); `stdout` holds what came after the last line read.
    fn terminate(mut self) -> Run {
        let mut stderr = self.child.stderr.take().unwrap();
        let (send, closed) = std::sync::mpsc::channel();
        // Standard error closes at the exit.
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
            let _ = send.send(text);
        });
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let stderr = closed
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the follower exits within 60 s of SIGTERM");
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.lines.iter().collect();
        Run {
            code: status.code().expect("exited, not killed by the signal"),
            stdout: rest.iter().map(|l| format!("{l}\n")).collect(),
            stderr,
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        // A test that failed half-way leaves no follower running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------
// Storage selection and the default database.

#[test]
fn apitoken_db_environment_variable_is_honoured() {
    let scratch = Scratch::new("env_db");
    let path = scratch.path().join("from-env.db");
    let path = path.to_str().unwrap();
    let out = Cli::new(scratch.path())
        .args(&["issue", "--env", ENV, "--note", "from env"])
        .env("APITOKEN_DB", path)
        .run()
        .success();
    assert!(Path::new(path).exists());
    assert!(!scratch.path().join("apitoken.db").exists());
    let token: Value = serde_json::from_str(&out).unwrap();
    let listed = Cli::new(scratch.path())
        .args(&["list", "--env", ENV])
        .env("APITOKEN_DB", path)
        .run()
        .success();
    assert!(listed.contains(&id(&token["token"])), "{listed}");
    // --db on the command line wins over APITOKEN_DB.
    let other = scratch.path().join("other.db");
    Cli::new(scratch.path())
        .args(&["list", "--env", ENV, "--db", other.to_str().unwrap()])
        .env("APITOKEN_DB", path)
        .run()
        .error(2, &["no database at", "other.db"]);
}

#[test]
fn the_default_database_is_apitoken_db_in_the_working_directory() {
    let scratch = Scratch::new("default_db");
    let out = Cli::new(scratch.path())
        .args(&["issue", "--env", ENV, "--note", "default"])
        .run()
        .success();
    assert!(scratch.path().join("apitoken.db").exists());
    // The connections are closed cleanly: the write-ahead log is folded into the file,
    // which alone holds the token.
    assert!(!scratch.path().join("apitoken.db-wal").exists());
    let token: Value = serde_json::from_str(&out).unwrap();
    Cli::new(scratch.path())
        .args(&["verify", "-"])
        .stdin(raw(&token["token"]))
        .run()
        .success();
}

/// With standard output closed or sent to /dev/null the token could not be seen, so
/// none is made: the command fails before touching the database. (Rust's runtime reopens
/// a closed stdout as /dev/null, so without the check `issue >&-` would exit 0.)
#[cfg(unix)]
#[test]
fn a_closed_stdout_issues_nothing() {
    let db = Db::sqlite("closed_stdout");
    let token = db.issue(&[]);
    let token_id = id(&token);
    for (args, redirect) in [
        (vec!["issue", "--env", ENV, "--note", "lost"], ">&-"),
        (vec!["issue", "--env", ENV, "--note", "lost"], ">/dev/null"),
        (vec!["rotate", "--env", ENV, "--id", &token_id], ">&-"),
    ] {
        let mut closed = db.cli(&args);
        let program = closed.command.get_program().to_owned();
        let argv: Vec<_> = closed.command.get_args().map(ToOwned::to_owned).collect();
        closed.command = Command::new("sh");
        closed
            .command
            .current_dir(db.scratch.path())
            .args(["-c", &format!("exec \"$0\" \"$@\" {redirect}")])
            .arg(program)
            .args(argv);
        let run = closed.run();
        assert_eq!(run.code, 2, "{args:?} {redirect}: {run:#?}");
        assert!(
            run.stderr
                .contains("standard output is closed or /dev/null"),
            "{args:?}: {run:#?}"
        );
    }
    let listed: Value =
        serde_json::from_str(&db.cli(&["list", "--env", ENV, "--json"]).run().success()).unwrap();
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "neither issued nor rotated: {listed:#}");
    assert!(
        tokens[0]["expiresAt"].is_null(),
        "the rotation did not happen"
    );
}

#[test]
fn only_issue_creates_a_database() {
    let scratch = Scratch::new("missing_db");
    for args in [
        vec!["verify", "-"],
        vec!["list", "--env", ENV],
        vec!["get", "--env", ENV, "--id", OTHER_ENV],
        vec!["revoke", "--env", ENV, "--id", OTHER_ENV],
        vec!["rotate", "--env", ENV, "--id", OTHER_ENV],
    ] {
        Cli::new(scratch.path()).args(&args).run().error(
            2,
            &["no database at ./apitoken.db", "apitoken issue", "--db"],
        );
    }
    assert!(!scratch.path().join("apitoken.db").exists());
    Cli::new(scratch.path())
        .args(&[
            "list",
            "--env",
            ENV,
            "--db",
            scratch.path().to_str().unwrap(),
        ])
        .run()
        .error(2, &["is a directory"]);
}

#[test]
fn the_command_line_beats_the_environment_when_choosing_the_store() {
    let scratch = Scratch::new("choose");
    // An unreachable server: if it were used, the command would fail.
    let nowhere = "postgres://nobody@127.0.0.1:1/nowhere";
    Cli::new(scratch.path())
        .args(&["issue", "--env", ENV, "--note", "x", "--db", "local.db"])
        .env("DATABASE_URL", nowhere)
        .run()
        .success();
    assert!(scratch.path().join("local.db").exists());

    Cli::new(scratch.path())
        .args(&["list", "--env", ENV])
        .env("DATABASE_URL", nowhere)
        .env("APITOKEN_DB", "local.db")
        .run()
        .error(2, &["both APITOKEN_DB and DATABASE_URL are set"]);
    Cli::new(scratch.path())
        .args(&[
            "list",
            "--env",
            ENV,
            "--db",
            "local.db",
            "--database-url",
            nowhere,
        ])
        .run()
        .error(2, &["not both"]);
    Cli::new(scratch.path())
        .args(&["list", "--env", ENV])
        .env("DATABASE_URL", "mysql://root@localhost/x")
        .run()
        .error(
            2,
            &[
                "DATABASE_URL must be a postgres:// or postgresql:// URL",
                "--db",
            ],
        );
    Cli::new(scratch.path())
        .args(&["list", "--env", ENV, "--database-url", nowhere])
        .run()
        .error(2, &["cannot connect to PostgreSQL", "--database-url"]);
}

/// Built with TLS, against a server whose certificate does not verify (a self-signed one,
/// checked against the public roots): the error is about the certificate, not an outage.
#[cfg(feature = "postgres-tls")]
#[test]
fn a_refused_server_certificate_says_what_to_check() {
    let Some(url) = postgres_url("refused_certificate") else {
        return;
    };
    let scratch = Scratch::new("refused_certificate");
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}sslmode=verify-full");
    Cli::new(scratch.path())
        .args(&["list", "--env", ENV, "--database-url", &url])
        .run()
        .error(
            2,
            &[
                "cannot connect to PostgreSQL",
                "certificate",
                "retrying will not help",
            ],
        );
}

#[test]
fn database_url_environment_variable_selects_postgres() {
    let Some(db) = Db::postgres("database_url_env") else {
        return;
    };
    let Store::Postgres(pg) = &db.store else {
        unreachable!()
    };
    let out = Cli::new(db.scratch.path())
        .args(&["issue", "--env", ENV, "--note", "in postgres"])
        .env("DATABASE_URL", &pg.url)
        .run()
        .success();
    let token: Value = serde_json::from_str(&out).unwrap();
    assert!(!db.scratch.path().join("apitoken.db").exists());
    // Found through the command-line option too: the same database.
    db.verify(&raw(&token["token"]), &[]).run().success();
}

/// On PostgreSQL too, `list`, `get` and `verify` only read: they record no key fingerprint
/// in a database that has none, and refuse a schema newer than they know before anything.
#[test]
fn read_only_commands_never_write_to_postgres() {
    let Some(db) = Db::postgres("pg_read_only") else {
        return;
    };
    let Store::Postgres(pg) = &db.store else {
        unreachable!()
    };
    let url = pg.url.clone();
    let meta = move |sql: &'static str| {
        let url = url.clone();
        block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let rows: Vec<(String, String)> =
                sqlx::query_as(sql).fetch_all(&mut conn).await.unwrap();
            conn.close().await.unwrap();
            rows
        })
    };
    let token = db.issue(&[]);
    // As if the tables were made by a program that never bound a key.
    meta("DELETE FROM apitoken_meta WHERE key = 'hash_key_fingerprint' RETURNING key, value");
    let before = meta("SELECT key, value FROM apitoken_meta ORDER BY key");
    db.cli(&["list", "--env", ENV]).run().success();
    db.cli(&["get", "--env", ENV, "--id", &id(&token)])
        .run()
        .success();
    db.cli(&["verify", "-"]).stdin(raw(&token)).run().success();
    db.cli(&["events", "--json"]).run().success();
    assert_eq!(
        meta("SELECT key, value FROM apitoken_meta ORDER BY key"),
        before,
        "read-only commands wrote to apitoken_meta"
    );

    meta("UPDATE apitoken_meta SET value = '99' WHERE key = 'schema_version' RETURNING key, value");
    for args in [&["list", "--env", ENV][..], &["verify", "-"], &["events"]] {
        db.cli(args)
            .stdin(raw(&token))
            .run()
            .error(2, &["version 99", "upgrade apitoken"]);
    }
}

// ---------------------------------------------------------------------------------------
// Usage errors: exit 2, one line, nothing created.

#[test]
fn usage_errors_are_one_line_with_exit_2() {
    let scratch = Scratch::new("usage");
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["no command given", "issue", "apitoken --help"]),
        (&["frobnicate"], &["unrecognized subcommand"]),
        (
            &["issue", "--env", "not-a-uuid", "--note", "x"],
            &[
                "--env <UUID>",
                "expected a UUID such as",
                "apitoken issue --help",
            ],
        ),
        (&["issue", "--note", "x"], &["--env <UUID>", "not provided"]),
        (&["issue", "--env", ENV], &["--note <TEXT>"]),
        (
            &["issue", "--env", ENV, "--note", "   "],
            &["note is required"],
        ),
        (
            &["issue", "--env", ENV, "--note", "x", "--expires-in", "30"],
            &[
                "--expires-in",
                "no unit",
                "such as 45s, 90m, 12h, 30d or 2w",
            ],
        ),
        (
            &[
                "issue",
                "--env",
                ENV,
                "--note",
                "x",
                "--expires-in",
                "3 days",
            ],
            &["--expires-in", "such as 45s, 90m, 12h, 30d or 2w"],
        ),
        (
            &["issue", "--env", ENV, "--note", "x", "--expires-in", "0s"],
            &["--expires-in must be at least 1s"],
        ),
        (
            &[
                "issue",
                "--env",
                ENV,
                "--note",
                "x",
                "--expires-in",
                "99999d",
            ],
            &["too long"],
        ),
        (
            &[
                "issue",
                "--env",
                ENV,
                "--note",
                "x",
                "--scope",
                "environment..read",
            ],
            &["--scope <SCOPE>", "empty segment"],
        ),
        (
            &[
                "issue",
                "--env",
                ENV,
                "--note",
                "x",
                "--scope",
                "environment.apiTokens.reed",
            ],
            &[
                "unknown scope `environment.apiTokens.reed`",
                "apitoken scopes",
            ],
        ),
        (
            &["issue", "--env", ENV, "--note", "x", "--email", "a\u{7}b"],
            &["--email must be one line"],
        ),
        (
            &["issue", "--env", ENV, "--nte", "x"],
            &["'--nte'", "--note"],
        ),
        (&["list", "--env", ENV, "--limit", "0"], &["--limit"]),
        (
            &["get", "--env", ENV, "--id", "123"],
            &["--id <UUID>", "expected a UUID"],
        ),
        (
            &["rotate", "--env", ENV, "--id", OTHER_ENV, "--grace", "soon"],
            &["--grace", "such as 45s"],
        ),
        (
            &["inspect", REFERENCE, "--length", "5"],
            &["invalid --length", "22 to 64"],
        ),
        (
            &["inspect", REFERENCE, "--prefix", "9x"],
            &["invalid --prefix"],
        ),
        (
            &["inspect", REFERENCE, "--alphabet", "base64"],
            &["--alphabet", "dynamic, github"],
        ),
        (&["scan", "--length", "100"], &["invalid --length"]),
    ];
    for (args, fragments) in cases {
        let run = Cli::new(scratch.path()).args(args).run();
        assert_eq!(run.stdout, "", "{args:?}: {run:#?}");
        run.error(2, fragments);
    }
    assert!(
        !scratch.path().join("apitoken.db").exists(),
        "a usage error created the database"
    );
}

#[test]
fn usage_errors_never_echo_a_token() {
    let scratch = Scratch::new("usage_redact");
    let mut lookalike = REFERENCE.to_owned();
    lookalike.replace_range(39.., "c");
    for args in [
        &["inspect", REFERENCE, &lookalike][..],
        &["verfy", &lookalike][..],
        &["issue", "--env", &lookalike, "--note", "x"][..],
        &["verify", REFERENCE, "--scope", &lookalike, "--bogus"][..],
    ] {
        let run = Cli::new(scratch.path()).args(args).run();
        run.never_shows(&lookalike).never_shows(REFERENCE);
        assert_eq!(run.code, 2, "{run:#?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
    }
}

#[test]
fn help_shows_an_example_and_exits_0() {
    let scratch = Scratch::new("help");
    let out = Cli::new(scratch.path()).arg("--help").run().success();
    assert!(
        out.contains("Examples:") && out.contains("apitoken issue --env"),
        "{out}"
    );
    assert!(
        out.contains("APITOKEN_HASH_KEY") && out.contains("Exit status"),
        "{out}"
    );
    for command in [
        "issue", "list", "get", "revoke", "rotate", "verify", "inspect", "scan",
    ] {
        let out = Cli::new(scratch.path())
            .args(&[command, "--help"])
            .run()
            .success();
        assert!(out.contains("Usage: apitoken"), "{out}");
    }
    let out = Cli::new(scratch.path()).arg("--version").run().success();
    assert!(out.starts_with("apitoken "), "{out}");
}

#[test]
fn scopes_lists_the_catalog() {
    let scratch = Scratch::new("scopes");
    let out = Cli::new(scratch.path()).arg("scopes").run().success();
    assert_eq!(out.lines().count(), 14, "{out}");
    assert!(out.lines().any(|l| l == READ));
    let out = Cli::new(scratch.path())
        .args(&["scopes", "--extra-scopes", "gasless.read,all.read"])
        .run()
        .success();
    assert_eq!(out.lines().count(), 16, "{out}");
    assert!(out.lines().any(|l| l == "all.read"));
}

// ---------------------------------------------------------------------------------------
// inspect and scan: no database.

/// A GitHub-style token: same random part as the reference, GitHub's digit order.
fn github_token() -> String {
    let random = &REFERENCE[4..34];
    let checksum = Checksum::compute(random.as_bytes(), Alphabet::GitHub);
    format!("ghp_{random}{checksum}")
}

#[test]
fn inspect_reports_prefix_checksum_or_the_reason() {
    let scratch = Scratch::new("inspect");
    let inspect = |args: &[&str]| Cli::new(scratch.path()).arg("inspect").args(args).run();

    let out = inspect(&[REFERENCE]).success();
    assert!(out.contains("valid     yes"), "{out}");
    assert!(out.lines().any(|l| l == "prefix    dyn"), "{out}");
    assert!(out.lines().any(|l| l == "checksum  4n3LFC"), "{out}");
    assert!(out.contains("dynamic (0-9a-zA-Z)"), "{out}");

    let json: Value = serde_json::from_str(&inspect(&[REFERENCE, "--json"]).success()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "valid": true, "prefix": "dyn", "checksum": "4n3LFC", "alphabet": "dynamic",
            "randomLength": 30, "length": 40
        })
    );

    // From standard input, with the newline `echo` adds.
    let run = Cli::new(scratch.path())
        .args(&["inspect", "-", "--json"])
        .stdin(format!("{REFERENCE}\n"))
        .run();
    assert_eq!(serde_json::from_str::<Value>(&run.success()).unwrap(), json);

    // Invalid: exit 1, the reason on stdout, the token nowhere.
    let mut altered = REFERENCE.to_owned();
    altered.replace_range(39.., "c");
    // A truncated Dynamic token is reported as too short, with or without the length.
    let cases: &[(&str, &[&str], &str)] = &[
        (
            &REFERENCE[..39],
            &[],
            "expected 36 characters after `dyn_`, got 35",
        ),
        (
            &REFERENCE[..39],
            &["--length", "30"],
            "expected 36 characters after `dyn_`, got 35",
        ),
        (&altered, &[], "checksum mismatch"),
        (
            "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LF!",
            &[],
            "character 40 is not allowed",
        ),
        ("", &[], "not a token"),
        ("", &["--prefix", "dyn"], "no token given"),
        ("hello world", &[], "not a token"),
    ];
    for (token, options, reason) in cases {
        let run = inspect(&[&[*token], *options].concat());
        assert_eq!(run.code, 1, "{token}: {run:#?}");
        assert!(run.stdout.contains("valid   no"), "{run:#?}");
        assert!(run.stdout.contains(reason), "{reason} in {run:#?}");
        if token.len() > 34 {
            run.never_shows(token);
        }
        let run = inspect(&[&[*token, "--json"], *options].concat());
        assert_eq!(run.code, 1);
        let json: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(json["valid"], false);
        assert!(json["reason"].as_str().unwrap().contains(reason), "{json}");
    }
    let run = inspect(&[REFERENCE, "--prefix", "ghp"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("wrong prefix: expected a token starting with `ghp_`")
    );

    // GitHub's digit order: inferred, accepted with --prefix alone, refused as dynamic.
    let github = github_token();
    let out = inspect(&[&github]).success();
    assert!(
        out.contains("prefix    ghp") && out.contains("github (0-9A-Za-z)"),
        "{out}"
    );
    inspect(&[&github, "--prefix", "ghp"]).success();
    inspect(&[
        &github,
        "--prefix",
        "ghp",
        "--alphabet",
        "github",
        "--length",
        "30",
    ])
    .success();
    let run = inspect(&[&github, "--prefix", "ghp", "--alphabet", "dynamic"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("checksum mismatch"));
    let run = inspect(&[REFERENCE, "--length", "31"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout
            .contains("expected 37 characters after `dyn_`, got 36")
    );
}

#[test]
fn scan_reports_file_line_column_and_exit_1() {
    let scratch = Scratch::new("scan");
    let github = github_token();
    let text = format!(
        "config:\n  token: {REFERENCE}\n\té x{REFERENCE} (not a token: glued)\nlook-alike dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFc\n{REFERENCE}, again {github}\n"
    );
    let file = scratch.path().join("leaky.yaml");
    std::fs::write(&file, &text).unwrap();
    let clean = scratch.path().join("clean.txt");
    std::fs::write(&clean, "nothing to see\ndyn_short\n").unwrap();

    let name = file.to_str().unwrap();
    let run = Cli::new(scratch.path()).args(&["scan", name]).run();
    assert_eq!(run.code, 1, "{run:#?}");
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout,
        format!("{name}:2:10: 4n3LFC\n{name}:5:1: 4n3LFC\n")
    );
    run.never_shows(REFERENCE);

    // Another format finds the GitHub token (its digit order found by itself, or
    // given); its column counts bytes.
    let checksum = &github[34..];
    for options in [
        &["--prefix", "ghp"][..],
        &["--prefix", "ghp", "--alphabet", "github"][..],
    ] {
        let run = Cli::new(scratch.path())
            .args(&["scan", name])
            .args(options)
            .run();
        assert_eq!(run.code, 1);
        assert_eq!(run.stdout, format!("{name}:5:49: {checksum}\n"));
    }
    let run = Cli::new(scratch.path())
        .args(&["scan", name, "--prefix", "ghp", "--alphabet", "dynamic"])
        .run();
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));

    // Clean input: exit 0, no output.
    let run = Cli::new(scratch.path())
        .args(&["scan", clean.to_str().unwrap()])
        .run();
    assert_eq!(
        (run.code, run.stdout.as_str(), run.stderr.as_str()),
        (0, "", "")
    );

    // Standard input, by `-` or by default.
    for args in [&["scan", "-"][..], &["scan"][..]] {
        let run = Cli::new(scratch.path())
            .args(args)
            .stdin(format!("Authorization: Bearer {REFERENCE}\n"))
            .run();
        assert_eq!(run.code, 1);
        assert_eq!(run.stdout, "<stdin>:1:23: 4n3LFC\n");
    }
    let run = Cli::new(scratch.path()).arg("scan").stdin("clean\n").run();
    assert_eq!((run.code, run.stdout.as_str()), (0, ""));

    // Binary input is fine.
    let mut binary = vec![0u8, 159, 146, 150, b'\n'];
    binary.extend_from_slice(REFERENCE.as_bytes());
    let run = Cli::new(scratch.path()).arg("scan").stdin(binary).run();
    assert_eq!(run.stdout, "<stdin>:2:1: 4n3LFC\n");

    // An unreadable file: exit 2, one line for it; the other files are still scanned.
    let run = Cli::new(scratch.path())
        .args(&["scan", "missing.txt", name])
        .run();
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout.lines().count(), 2);
    assert_eq!(run.stderr.lines().count(), 1);
    assert!(run.stderr.starts_with("error: cannot read missing.txt"));
}

#[test]
fn stdin_that_is_not_a_token_is_refused_without_echo() {
    let scratch = Scratch::new("stdin");
    Cli::new(scratch.path())
        .args(&["inspect", "-"])
        .stdin(vec![0xff, 0xfe, b'\n'])
        .run()
        .error(2, &["standard input is not UTF-8"]);
    Cli::new(scratch.path())
        .args(&["inspect", "-"])
        .stdin(vec![b'a'; 70_000])
        .run()
        .error(2, &["more than 64 KiB"]);
}

#[test]
fn url_database_names_are_replaced() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}

// ---------------------------------------------------------------------------------------
// Read-only commands, files that are not token databases, damaged files.

/// Every file in `dir`, by name, with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// Whether this test process runs as root, which file modes do not stop.
fn is_root(scratch: &Scratch) -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = scratch.path().join(".owner");
    std::fs::write(&probe, b"").unwrap();
    let uid = std::fs::metadata(&probe).unwrap().uid();
    std::fs::remove_file(&probe).unwrap();
    uid == 0
}

impl Cli {
    /// Runs as `nobody` when the tests run as root, so that file modes apply.
    fn unprivileged(mut self, root: bool) -> Cli {
        use std::os::unix::process::CommandExt;
        if root {
            self.command.uid(65534).gid(65534);
        }
        self
    }
}

/// `list`, `get`, `verify` and `events` read a database whose file and directory this
/// user cannot write, and change nothing: no schema write, no last use, no `-wal` or `-shm` left.
#[test]
fn read_only_commands_work_on_a_read_only_file() {
    use std::os::unix::fs::PermissionsExt;
    let db = Db::sqlite("read_only");
    let issued = db.issue(&["--scope", READ]);
    let Store::Sqlite(path) = &db.store else {
        unreachable!()
    };
    let root = is_root(&db.scratch);
    let dir = db.scratch.path();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    let before = snapshot(dir);
    let id = id(&issued);
    // Every user may read this file: each command works, and says so once.
    let works = |run: Run| {
        let warnings = run.warned();
        assert_eq!(warnings.len(), 1, "{run:#?}");
        assert!(warnings[0].contains("(mode 0444)"), "{run:#?}");
        run.stdout
    };
    works(db.cli(&["list", "--env", ENV]).unprivileged(root).run());
    works(
        db.cli(&["get", "--env", ENV, "--id", &id])
            .unprivileged(root)
            .run(),
    );
    let out = works(
        db.cli(&["verify", "-", "--env", ENV, "--scope", READ])
            .stdin(raw(&issued))
            .unprivileged(root)
            .run(),
    );
    assert!(out.contains("valid"), "{out}");
    let out = works(db.cli(&["events", "--json"]).unprivileged(root).run());
    assert!(out.contains(r#""kind":"issued""#), "{out}");
    // Writing needs write access, and says so.
    db.cli(&["revoke", "--env", ENV, "--id", &id])
        .unprivileged(root)
        .run()
        .error(2, &["read-only", "need write access"]);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(snapshot(dir) == before, "the directory changed");
}

/// A writer in another process holds the write lock: `list`, `get` and `verify` answer
/// anyway (before, they migrated the schema first and failed with "database is locked"
/// after the 5-second busy timeout).
#[test]
fn read_only_commands_do_not_wait_for_a_writer() {
    use sqlx::Connection;
    let db = Db::sqlite("stuck_writer");
    let issued = db.issue(&[]);
    let Store::Sqlite(path) = &db.store else {
        unreachable!()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut holder = runtime
        .block_on(sqlx::SqliteConnection::connect_with(
            &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
        ))
        .unwrap();
    runtime
        .block_on(sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut holder))
        .unwrap();
    db.cli(&["list", "--env", ENV]).run().success();
    db.cli(&["get", "--env", ENV, "--id", &id(&issued)])
        .run()
        .success();
    db.cli(&["verify", "-"]).stdin(raw(&issued)).run().success();
    // A writer waits out the busy timeout, then says what happened.
    db.cli(&["revoke", "--env", ENV, "--id", &id(&issued)])
        .run()
        .error(2, &["locked by another process", "retry"]);
    runtime
        .block_on(sqlx::raw_sql("ROLLBACK").execute(&mut holder))
        .unwrap();
    runtime.block_on(holder.close()).unwrap();
}

/// Another application's database (rollback journal or WAL) and an empty file are refused
/// by every command but `issue`, byte-for-byte unchanged, with no file added beside them.
#[test]
fn a_file_without_the_schema_is_refused_and_left_unchanged() {
    use sqlx::Connection;
    let scratch = Scratch::new("foreign");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (name, journal) in [("rollback.sqlite", "DELETE"), ("wal.sqlite", "WAL")] {
        runtime.block_on(async {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(scratch.path().join(name))
                .create_if_missing(true);
            let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
            let setup = format!(
                "PRAGMA journal_mode = {journal}; CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada');"
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        });
    }
    std::fs::write(scratch.path().join("empty.db"), b"").unwrap();
    let before = snapshot(scratch.path());
    assert_eq!(
        before.len(),
        3,
        "{:?}",
        before.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, what) in [
        ("rollback.sqlite", "without apitoken's tables"),
        ("wal.sqlite", "without apitoken's tables"),
        ("empty.db", "is an empty file"),
    ] {
        for args in [
            vec!["verify", "-"],
            vec!["list", "--env", ENV],
            vec!["get", "--env", ENV, "--id", OTHER_ENV],
            vec!["revoke", "--env", ENV, "--id", OTHER_ENV],
            vec!["rotate", "--env", ENV, "--id", OTHER_ENV],
        ] {
            Cli::new(scratch.path())
                .args(&["--db", name])
                .args(&args)
                .stdin(REFERENCE)
                .run()
                .error(2, &[what, "left unchanged", "--db", "apitoken issue"]);
            assert!(
                snapshot(scratch.path()) == before,
                "{name} {args:?} changed a file"
            );
        }
    }
}

/// A file that is not SQLite, a truncated database and a damaged page: one line each that
/// says what to do, the file unchanged and no `-wal` or `-shm` left behind.
#[test]
fn damaged_files_are_named_with_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let db = Db::sqlite("damaged");
    for i in 0..60 {
        db.issue(&[
            "--note",
            &format!("token {i} with a note long enough to fill pages"),
        ]);
    }
    let Store::Sqlite(path) = &db.store else {
        unreachable!()
    };
    let good = std::fs::read(path).unwrap();
    assert!(good.len() >= 8 * 4096, "several pages: {}", good.len());
    let dir = db.scratch.path();
    std::fs::write(
        dir.join("notes.txt"),
        "this is not a database\n".repeat(200),
    )
    .unwrap();
    std::fs::write(dir.join("truncated.db"), &good[..good.len() / 2]).unwrap();
    // Overwrite the token table's and indexes' pages (not the schema on page 1, nor the
    // meta table on page 2), page headers included: an invalid page type is damage SQLite
    // reports on every read, where scrambled cell pointers alone could send a look-up down a
    // path that merely finds nothing (which made this test fail one run in four).
    let mut damaged = good.clone();
    for page in 3..good.len() / 4096 {
        damaged[page * 4096..page * 4096 + 208].fill(0xff);
    }
    std::fs::write(dir.join("damaged.db"), &damaged).unwrap();
    std::fs::remove_file(path).unwrap();
    // Private, as a token database should be: the warning for others' access is not what
    // this test is about.
    for name in ["notes.txt", "truncated.db", "damaged.db"] {
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let before = snapshot(dir);
    let cases: [(&str, &[&str]); 3] = [
        (
            "notes.txt",
            &[
                "notes.txt is not a SQLite database",
                "--db",
                "restore it from a backup",
            ],
        ),
        (
            "truncated.db",
            &["damaged", "restore it from a backup", ".recover"],
        ),
        (
            "damaged.db",
            &["malformed", "restore it from a backup", ".recover"],
        ),
    ];
    for (name, fragments) in cases {
        for args in [
            vec!["list", "--env", ENV],
            vec!["verify", "-"],
            vec!["revoke", "--env", ENV, "--id", OTHER_ENV],
            vec!["issue", "--env", ENV, "--note", "n"],
        ] {
            let line = Cli::new(dir)
                .args(&["--db", name])
                .args(&args)
                .stdin(REFERENCE)
                .run()
                .error(2, fragments);
            assert!(!line.contains("permissions"), "wrong advice: {line}");
            assert!(snapshot(dir) == before, "{name} {args:?} changed a file");
        }
    }
}

/// A tmpfs of its own, unmounted when dropped.
struct Tmpfs(Scratch);

impl Tmpfs {
    /// `None` (said on standard error) where mounting is not allowed: not root, or in a
    /// container without the capability.
    fn mount(test: &str, size: &str) -> Option<Tmpfs> {
        let scratch = Scratch::new(test);
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(scratch.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::io::stderr()
                .write_all(b"\n*** apitoken-cli: the full-disk test is SKIPPED: cannot mount a tmpfs (not root?) ***\n\n");
            return None;
        }
        Some(Tmpfs(scratch))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// On a full disk, `issue` says to free space, writes nothing and leaves no `-wal` or
/// `-shm` behind; once there is space, the database is as it was.
#[test]
fn a_full_disk_says_free_space_and_writes_nothing() {
    let Some(disk) = Tmpfs::mount("full_disk", "1m") else {
        return;
    };
    let dir = disk.path();
    let db = dir.join("tokens.db");
    let issue = || {
        Cli::new(dir)
            .args(&[
                "--db",
                db.to_str().unwrap(),
                "issue",
                "--env",
                ENV,
                "--note",
                "n",
            ])
            .run()
    };
    issue().success();
    let before = std::fs::read(&db).unwrap();
    // Fill the disk, then free 44 KiB: room for the 32 KiB -shm file, not for the
    // write-ahead log of a commit.
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
    let len = file.metadata().unwrap().len();
    file.set_len(len.saturating_sub(44 * 1024)).unwrap();
    drop(file);
    let line = issue().error(2, &["full", "nothing was written", "free space"]);
    assert!(!line.contains("permissions"), "{line}");
    std::fs::remove_file(&filler).unwrap();
    let left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["tokens.db"], "no -wal or -shm left");
    assert!(std::fs::read(&db).unwrap() == before, "nothing was written");
    let listed = Cli::new(dir)
        .args(&["--db", db.to_str().unwrap(), "list", "--env", ENV, "--json"])
        .run()
        .success();
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["tokens"].as_array().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------
// Secrets and files stay with their owner.

/// The mode bits of `path`.
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `issue` creates the database private (no warning); once its group or other users may
/// read it, every command says so, naming the file and the `chmod` that fixes it.
#[test]
fn a_database_others_may_read_is_warned_about() {
    let db = Db::sqlite("exposed_db");
    let Store::Sqlite(path) = &db.store else {
        unreachable!()
    };
    let token = db.issue(&[]);
    assert_eq!(mode(path), 0o600);

    chmod(path, 0o644);
    let run = db.cli(&["list", "--env", ENV]).run();
    assert!(run.stdout.contains(&id(&token)), "{run:#?}");
    let warnings = run.warned();
    let shown = path.display().to_string();
    assert!(
        warnings.iter().any(|w| w.starts_with(&format!(
            "warning: {shown} is readable by its group and other users (mode 0644)"
        )) && w.ends_with(&format!("`chmod 600 {shown}`"))),
        "{warnings:#?}"
    );
    // Its -wal and -shm, which SQLite makes with the database's mode, are named too.
    for warning in &warnings {
        assert!(warning.contains("chmod 600"), "{warning}");
    }
    let run = db.verify(&raw(&token), &[]).run();
    assert!(!run.warned().is_empty());
    // `issue`, which may create the file, checks an existing one too.
    let run = db.cli(&["issue", "--env", ENV, "--note", "n"]).run();
    assert!(run.stdout.contains("rawToken"), "{run:#?}");
    assert!(run.warned().iter().any(|w| w.contains(&shown)), "{run:#?}");

    chmod(path, 0o600);
    db.cli(&["list", "--env", ENV]).run().success();
}

/// A hash key file its group or other users may write is refused (they could put their
/// own key in it); one they may read is a warning, as ssh does for keys. A symbolic link
/// is followed: the mode of the file it names counts.
#[test]
fn hash_key_files_others_may_write_are_refused_and_read_warned_about() {
    let db = Db::sqlite("key_modes");
    let key_file = db.scratch.path().join("hash.key");
    write_private(&key_file, &format!("{KEY_A}\n"));
    let shown = key_file.display().to_string();
    let link = db.scratch.path().join("link.key");
    std::os::unix::fs::symlink(&key_file, &link).unwrap();
    let with_key = |file: &Path, args: &[&str]| {
        db.cli(args)
            .args(&["--hash-key-file", file.to_str().unwrap()])
    };
    let token = with_key(&link, &["issue", "--env", ENV, "--note", "n"])
        .run()
        .success();
    let token: Value = serde_json::from_str(&token).unwrap();
    let raw = raw(&token["token"]);

    for writable in [0o620, 0o602, 0o666] {
        chmod(&key_file, writable);
        for file in [&key_file, &link] {
            let line = with_key(file, &["verify", "-"])
                .stdin(raw.as_str())
                .run()
                .error(
                    2,
                    &[
                        "the hash key file",
                        "is writable by",
                        &format!("(mode {writable:04o})"),
                        "`chmod 600 ",
                    ],
                );
            assert!(line.contains(file.to_str().unwrap()), "{line}");
            assert!(!line.contains(KEY_A), "{line}");
        }
    }

    chmod(&key_file, 0o644);
    let run = with_key(&key_file, &["verify", "-"])
        .stdin(raw.as_str())
        .run();
    assert!(run.stdout.contains("valid"), "{run:#?}");
    let warnings = run.warned();
    assert_eq!(
        warnings,
        [format!(
            "warning: the hash key file {shown} is readable by its group and other users (mode 0644): they can read the secret in it; make it private with `chmod 600 {shown}`"
        )]
    );
    chmod(&key_file, 0o640);
    let warnings = with_key(&link, &["list", "--env", ENV]).run().warned();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("readable by its group (mode 0640)"),
        "{warnings:#?}"
    );

    chmod(&key_file, 0o400);
    with_key(&link, &["list", "--env", ENV]).run().success();
}

/// `verify` refuses a token on its command line, where other local users can read it,
/// before anything else; `--insecure-argv` accepts it.
#[test]
fn verify_refuses_a_token_argument_without_insecure_argv() {
    let db = Db::sqlite("argv");
    let token = db.issue(&[]);
    let raw = raw(&token);
    for args in [
        &["verify", raw.as_str()][..],
        &["verify", "--env", ENV, raw.as_str()][..],
        &["verify", &format!("Bearer {raw}")][..],
    ] {
        db.cli(args).run().never_shows(&raw).error(
            2,
            &[
                "can be read by other local users",
                "pipe it on standard input with `-`",
                "--insecure-argv",
            ],
        );
    }
    // Refused before the database is opened: a missing one is not the complaint.
    let scratch = Scratch::new("argv_no_db");
    Cli::new(scratch.path())
        .args(&["verify", REFERENCE])
        .run()
        .error(2, &["--insecure-argv"]);
    db.cli(&["verify", &raw, "--insecure-argv"]).run().success();
    db.verify(&raw, &[]).run().success();
}

/// `--database-url-file` and `APITOKEN_DATABASE_URL_FILE` are checked before any
/// connection: a file others may write is refused, and an empty or wrong one is named.
#[test]
fn a_database_url_file_is_checked_before_connecting() {
    let scratch = Scratch::new("url_file");
    let file = scratch.path().join("url");
    let shown = file.display().to_string();
    let list = |file: &Path| {
        Cli::new(scratch.path()).args(&[
            "list",
            "--env",
            ENV,
            "--database-url-file",
            file.to_str().unwrap(),
        ])
    };
    // An unreachable server: the advice names the file the URL came from.
    write_private(&file, "postgres://nobody:pw@127.0.0.1:1/nowhere\n");
    let line = list(&file).run().error(
        2,
        &[
            "cannot connect to PostgreSQL",
            &format!("check the URL in {shown}"),
        ],
    );
    assert!(!line.contains("pw@") && !line.contains("nowhere"), "{line}");
    Cli::new(scratch.path())
        .args(&["list", "--env", ENV])
        .env("APITOKEN_DATABASE_URL_FILE", &shown)
        .run()
        .error(2, &["cannot connect to PostgreSQL", &shown]);

    chmod(&file, 0o622);
    list(&file).run().error(
        2,
        &[
            "the database URL file",
            &shown,
            "writable by",
            "`chmod 600 ",
        ],
    );
    chmod(&file, 0o600);
    for (text, fragment) in [
        ("\n", "is empty"),
        ("postgres://a/b\npostgres://c/d\n", "more than one line"),
        (
            "mysql://root@localhost/x\n",
            "must hold a postgres:// or postgresql:// URL",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        list(&file).run().error(2, &[&shown, fragment]);
    }
    list(&scratch.path().join("missing"))
        .run()
        .error(2, &["cannot read the database URL file"]);
    Cli::new(scratch.path())
        .args(&["list", "--env", ENV, "--database-url", "postgres://h/db"])
        .args(&["--database-url-file", &shown])
        .run()
        .error(2, &["--database-url and --database-url-file both given"]);
    assert!(!scratch.path().join("apitoken.db").exists());
}

/// Against PostgreSQL: the URL read from a file (its trailing newline dropped) works like
/// `--database-url`, wins over `DATABASE_URL` from the command line, and a file others may
/// read is a warning.
#[test]
fn the_database_url_can_come_from_a_file() {
    let Some(db) = Db::postgres("url_from_file") else {
        return;
    };
    let Store::Postgres(pg) = &db.store else {
        unreachable!()
    };
    let file = db.scratch.path().join("database-url");
    write_private(&file, &format!("{}\n", pg.url));
    let shown = file.display().to_string();
    let nowhere = "postgres://nobody@127.0.0.1:1/nowhere";
    let out = Cli::new(db.scratch.path())
        .args(&[
            "issue",
            "--env",
            ENV,
            "--note",
            "n",
            "--database-url-file",
            &shown,
        ])
        .env("DATABASE_URL", nowhere)
        .run()
        .success();
    let token: Value = serde_json::from_str(&out).unwrap();
    let listed = Cli::new(db.scratch.path())
        .args(&["list", "--env", ENV])
        .env("APITOKEN_DATABASE_URL_FILE", &shown)
        .run()
        .success();
    assert!(listed.contains(&id(&token["token"])), "{listed}");
    // The same database as --database-url's.
    db.verify(&raw(&token["token"]), &[]).run().success();

    chmod(&file, 0o644);
    let warnings = Cli::new(db.scratch.path())
        .args(&["list", "--env", ENV, "--database-url-file", &shown])
        .run()
        .warned();
    assert_eq!(
        warnings,
        [format!(
            "warning: the database URL file {shown} is readable by its group and other users (mode 0644): they can read the secret in it; make it private with `chmod 600 {shown}`"
        )]
    );
}

/// `url` with `password` in its user information (`postgres://user:password@host/db`),
/// whatever user the test URL names.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("the test URL has a scheme");
    let (user, host) = rest
        .split_once('@')
        .expect("the test URL names a user (user@host)");
    let user = user.split_once(':').map_or(user, |(user, _)| user);
    format!("{scheme}://{user}:{password}@{host}")
}

/// A password in `--database-url` on the command line is warned about without repeating
/// it or the URL; from `DATABASE_URL`, which other users cannot read, it is not.
#[test]
fn a_password_on_the_command_line_is_warned_about() {
    let Some(db) = Db::postgres("password_on_argv") else {
        return;
    };
    let Store::Postgres(pg) = &db.store else {
        unreachable!()
    };
    db.issue(&[]);
    // The test server trusts local connections: the password is not checked.
    let with_password = with_password(&pg.url, "hunter2");
    let run = Cli::new(db.scratch.path())
        .args(&["list", "--env", ENV, "--database-url", &with_password])
        .run();
    let warnings = run.warned();
    assert_eq!(warnings.len(), 1, "{run:#?}");
    let warning = &warnings[0];
    assert!(
        warning.starts_with("warning: --database-url on the command line holds a password"),
        "{warning}"
    );
    for hint in ["--database-url-file", "DATABASE_URL", "PGPASSFILE"] {
        assert!(warning.contains(hint), "{hint} in {warning}");
    }
    assert!(
        !warning.contains("hunter2") && !warning.contains(&pg.name),
        "{warning}"
    );
    Cli::new(db.scratch.path())
        .args(&["list", "--env", ENV])
        .env("DATABASE_URL", &with_password)
        .run()
        .success();
}

/// A PostgreSQL server that asks for the password in clear text, records what it is sent
/// and refuses it: the test server trusts local connections and would never ask.
struct PasswordCatcher {
    port: u16,
    passwords: std::sync::mpsc::Receiver<String>,
}

impl PasswordCatcher {
    fn start() -> PasswordCatcher {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sent, passwords) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                if let Some(password) = catch_password(&mut stream)
                    && sent.send(password).is_err()
                {
                    return;
                }
            }
        });
        PasswordCatcher { port, passwords }
    }

    fn password(&self) -> String {
        self.passwords
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the client sent a password")
    }
}

/// The server's side of a startup up to the password message (protocol 3.0).
fn catch_password(stream: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .ok()?;
    fn read_body(stream: &mut std::net::TcpStream) -> Option<Vec<u8>> {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).ok()?;
        let mut body = vec![0u8; (u32::from_be_bytes(len) as usize).checked_sub(4)?];
        stream.read_exact(&mut body).ok()?;
        Some(body)
    }
    // An SSLRequest or GSSENCRequest is declined with 'N'; then the startup message.
    loop {
        let body = read_body(stream)?;
        if matches!(body.get(..4), Some([0x04, 0xd2, 0x16, 0x2f | 0x30])) {
            stream.write_all(b"N").ok()?;
            continue;
        }
        break;
    }
    // AuthenticationCleartextPassword.
    stream.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).ok()?;
    let mut tag = [0u8; 1];
    stream.read_exact(&mut tag).ok()?;
    let body = read_body(stream)?;
    let password = String::from_utf8(body.strip_suffix(&[0])?.to_vec()).ok()?;
    let mut fields = Vec::new();
    for (code, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "28P01"),
        (b'M', "password authentication failed for user \"alice\""),
    ] {
        fields.push(code);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut error = vec![b'E'];
    error.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    error.extend_from_slice(&fields);
    stream.write_all(&error).ok()?;
    Some(password)
}

/// With no password in the URL, the password comes from `PGPASSFILE`, else from
/// `~/.pgpass` (libpq's format, `:` escaped), as the driver reads them; a password file
/// its group or others may read is skipped, and the refusal that follows says why.
#[test]
fn pgpass_files_supply_the_password_the_url_lacks() {
    let scratch = Scratch::new("pgpass");
    let server = PasswordCatcher::start();
    let port = server.port;
    let url = format!("postgres://alice@127.0.0.1:{port}/tokens");
    let list = |vars: &[(&str, &Path)]| {
        let mut cli =
            Cli::new(scratch.path()).args(&["list", "--env", ENV, "--database-url", &url]);
        cli.command
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE");
        for (key, value) in vars {
            cli.command.env(key, value);
        }
        cli.run()
    };
    let line = format!("127.0.0.1:{port}:tokens:alice:s3cret\\:x\n");

    let named = scratch.path().join("pgpass");
    write_private(
        &named,
        &format!("# other servers first\nexample.com:*:*:*:wrong\n{line}"),
    );
    let home = scratch.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let run = list(&[("PGPASSFILE", &named), ("HOME", &home)]);
    run.error(
        2,
        &[
            "cannot connect to PostgreSQL",
            "password authentication failed",
        ],
    );
    assert_eq!(server.password(), "s3cret:x");

    write_private(&home.join(".pgpass"), &line.replace("s3cret", "from-home"));
    list(&[("HOME", &home)]).error(2, &["password authentication failed"]);
    assert_eq!(server.password(), "from-home:x");

    chmod(&named, 0o644);
    let shown = named.display().to_string();
    let refused = list(&[("PGPASSFILE", &named), ("HOME", scratch.path())]).error(
        2,
        &[
            "password authentication failed",
            &format!("the password file {shown} is skipped"),
            &format!("`chmod 600 {shown}`"),
        ],
    );
    assert!(!refused.contains("s3cret"), "{refused}");
    assert_eq!(
        server.password(),
        "",
        "the skipped file's password was sent"
    );
}
