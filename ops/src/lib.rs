//! **Internal**: published only because `apitoken-cli` (`cargo install apitoken-cli`)
//! needs it from crates.io. Its API follows the CLI's needs and may change in any
//! release; applications depend on `apitoken`.
//!
//! What the `apitoken` command line and the reference server share: the storage options
//! (`--db`/`APITOKEN_DB`, `--database-url`/`DATABASE_URL`,
//! `--database-url-file`/`APITOKEN_DATABASE_URL_FILE`, `--hash-key-file`/
//! `APITOKEN_HASH_KEY`) and opening the database they name, checked against the hash key,
//! so that a token one of them issued authenticates in the other. What is not specific to
//! a command line (the schema, binding and checking the hash key) is the library's:
//! [`Handle::issuer`] builds the issuer with [`TokenIssuerBuilder::prepare`]. [`open`] may
//! create a SQLite file; [`open_existing`] refuses a database without apitoken's schema,
//! and with [`Access::Read`] writes nothing at all.
//!
//! Secrets stay with their owner: a key or URL file that others may write is refused, and
//! [`Handle::warnings`] says what others may read (a key or URL file, the SQLite database
//! and its `-wal` and `-shm`, a password on the command line) and the `chmod` that fixes it.

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod duration;

use apitoken::{
    DynTokenStore, Error, HashKeyring, KeyFingerprint, KeyringFingerprints, PostgresStore,
    SqliteStore, StoreError, TokenHasher, TokenIssuer, TokenIssuerBuilder, TokenStore,
};
use clap::ArgMatches;
use clap::parser::ValueSource;
use sqlx::sqlite::SqliteConnectOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

mod file_mode;
mod keyring;
mod postgres_url;

/// The storage options, for `#[command(flatten)]`.
#[derive(Clone, Debug, clap::Args)]
pub struct StorageArgs {
    /// SQLite database file
    ///
    /// `apitoken issue` creates it when missing; everything else refuses a missing file,
    /// so that a mistyped path is not mistaken for an empty database.
    #[arg(
        long,
        verbatim_doc_comment,
        global = true,
        env = "APITOKEN_DB",
        value_name = "PATH",
        default_value = "./apitoken.db"
    )]
    pub db: PathBuf,

    /// PostgreSQL URL: selects PostgreSQL instead of SQLite
    ///
    /// postgres://user@host:port/database. On the command line it wins over APITOKEN_DB;
    /// --db on the command line wins over DATABASE_URL. Other local users can read a
    /// command line (ps, /proc): keep the password in DATABASE_URL, in a file for
    /// --database-url-file, or in PGPASSFILE (default ~/.pgpass, mode 0600), which is read
    /// when the URL has none.
    #[arg(
        long,
        verbatim_doc_comment,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// File holding the PostgreSQL URL: selects PostgreSQL, like --database-url
    ///
    /// Keeps a password off the command line. The URL on one line (a trailing newline is
    /// ignored). Refused if its group or other users may write the file, a warning if
    /// they may read it: `chmod 600 PATH`. Not with --database-url.
    #[arg(
        long,
        verbatim_doc_comment,
        global = true,
        env = "APITOKEN_DATABASE_URL_FILE",
        value_name = "PATH"
    )]
    pub database_url_file: Option<PathBuf>,

    /// File holding the hash key (64 hex characters), or a keyring
    ///
    /// Takes precedence over the APITOKEN_HASH_KEY environment variable. Without either,
    /// tokens are hashed unkeyed. Refused if its group or other users may write the file,
    /// a warning if they may read it: `chmod 600 PATH`.
    ///
    /// A keyring is one key a line: the first is the current key, which hashes new
    /// tokens; the others (at most 3) are retired keys, which still find the tokens they
    /// hashed (each is rehashed to the current key when used). A retired line may be the
    /// word `unkeyed` (the hash without a key) and may end with ` until=YYYY-MM-DD`, the
    /// last day it is tried. Without this option: APITOKEN_HASH_KEY (current) and
    /// APITOKEN_RETIRED_HASH_KEYS (retired, comma-separated, the same forms).
    #[arg(long, global = true, value_name = "PATH", verbatim_doc_comment)]
    pub hash_key_file: Option<PathBuf>,

    /// Where --db, --database-url and --database-url-file came from; see
    /// [`StorageArgs::note_sources`].
    #[arg(skip)]
    pub sources: Sources,
}

/// The bound on tokens per environment, which the CLI and the server share so that one
/// setting (`APITOKEN_MAX_TOKENS_PER_ENVIRONMENT`) holds for both.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct CapArgs {
    /// At most N tokens per environment, revoked and expired ones included until they
    /// are purged (`apitoken purge`); one more is refused (422 too_many_api_tokens). 0: no
    /// bound
    #[arg(
        long,
        global = true,
        env = "APITOKEN_MAX_TOKENS_PER_ENVIRONMENT",
        value_name = "N",
        default_value_t = 100_000
    )]
    pub max_tokens_per_environment: u32,
}

impl CapArgs {
    /// `limits` with this bound.
    pub fn apply(&self, limits: apitoken::Limits) -> apitoken::Limits {
        apitoken::Limits {
            max_total: core::num::NonZeroU32::new(self.max_tokens_per_environment),
            ..limits
        }
    }
}

/// The lifetime policy (`--max-lifetime`, `--require-expiry`, `--idle-expiry`), which the
/// CLI and the server share so that one setting holds for both. It applies to every
/// environment of the database.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct LifetimeArgs {
    /// Longest lifetime a token may be given, e.g. 90d: an issue asking for a later expiry,
    /// or for none, is refused (422 invalid_expires_at, naming the latest allowed
    /// instant); a rotation's successor expires at most this long after the rotation
    #[arg(
        long,
        global = true,
        env = "APITOKEN_MAX_LIFETIME",
        value_name = "DURATION",
        value_parser = positive_duration
    )]
    pub max_lifetime: Option<std::time::Duration>,

    /// Refuse to issue a token without an expiry (422 invalid_expires_at); implied by
    /// --max-lifetime
    #[arg(
        long,
        global = true,
        env = "APITOKEN_REQUIRE_EXPIRY",
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub require_expiry: bool,

    /// A token unused for this long, e.g. 30d, stops working (401, as an expired one) and
    /// is listed as expired since then; at least 10m, as last use is recorded at most once
    /// a minute (a token may go idle up to a minute early)
    #[arg(
        long,
        global = true,
        env = "APITOKEN_IDLE_EXPIRY",
        value_name = "DURATION",
        value_parser = idle_expiry
    )]
    pub idle_expiry: Option<std::time::Duration>,
}

impl LifetimeArgs {
    /// The policy these options describe.
    pub fn policy(&self) -> apitoken::LifetimePolicy {
        let mut policy = apitoken::LifetimePolicy::default().require_expiry(self.require_expiry);
        if let Some(max) = self.max_lifetime {
            policy = policy.max_lifetime(max);
        }
        if let Some(idle) = self.idle_expiry {
            policy = policy.idle_expiry(idle);
        }
        policy
    }
}

/// How often the CLI and the server record a token's last use at most: the library's
/// default.
pub const LAST_USE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// A duration of at least a second.
fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration = duration::parse(text)?;
    if duration.is_zero() {
        return Err("must be at least 1s; leave the option out for no bound".to_owned());
    }
    Ok(duration)
}

/// An idle expiry: long enough for how often last use is recorded.
fn idle_expiry(text: &str) -> Result<std::time::Duration, String> {
    let duration = positive_duration(text)?;
    apitoken::LifetimePolicy::default()
        .idle_expiry(duration)
        .validate(Some(LAST_USE_INTERVAL))
        .map_err(|_| {
            format!(
                "{text} is too short: at least 10m, as last use is recorded at most once a minute"
            )
        })?;
    Ok(duration)
}

/// Where the storage options came from, so that the command line beats the environment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// Where `--db` came from.
    pub db: Source,
    /// Where `--database-url` came from.
    pub database_url: Source,
    /// Where `--database-url-file` came from.
    pub database_url_file: Source,
}

/// Where an option's value came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Source {
    /// Not given (or only the default).
    #[default]
    Unset,
    /// From an environment variable.
    Environment,
    /// From the command line.
    CommandLine,
}

impl StorageArgs {
    /// Records where the options came from; call it with the parsed matches.
    pub fn note_sources(&mut self, matches: &ArgMatches) {
        self.sources = Sources {
            db: source(matches, "db"),
            database_url: source(matches, "database_url"),
            database_url_file: source(matches, "database_url_file"),
        };
    }
}

/// Where an option came from. Clap records global options on the subcommand's matches,
/// so look there first.
fn source(matches: &ArgMatches, id: &str) -> Source {
    let sub = matches.subcommand().map(|(_, m)| m);
    let found = sub
        .and_then(|m| m.value_source(id))
        .or_else(|| matches.value_source(id));
    match found {
        Some(ValueSource::CommandLine) => Source::CommandLine,
        Some(ValueSource::EnvVariable) => Source::Environment,
        _ => Source::Unset,
    }
}

/// What to do when the SQLite file does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Create it (`apitoken issue`).
    Create,
    /// Refuse, saying this (after "no database at PATH: ").
    Refuse(String),
}

/// An opened database, not yet prepared: build the issuer with [`Handle::issuer`], which
/// runs the library's checked build step ([`TokenIssuerBuilder::prepare`]) unless the
/// command only reads.
pub struct Handle {
    store: Arc<dyn TokenStore>,
    keyring: HashKeyring,
    /// A key being retired, which the keyring may lack.
    retiring: Option<KeyFingerprint>,
    place: Place,
    access: Access,
    warnings: Vec<String>,
}

/// Where the database is, for messages and logs.
enum Place {
    Sqlite(PathBuf),
    Postgres,
}

impl Handle {
    /// A builder on the store with the hash key the options give; configure the rest, then
    /// pass it to [`Handle::issuer`].
    pub fn builder(&self) -> TokenIssuerBuilder<DynTokenStore> {
        let store: DynTokenStore = Box::new(self.store());
        self.builder_on(store)
    }

    /// The database's store, shared, for a layer in front of it (the server's cache):
    /// build the issuer over that layer with [`Handle::builder_on`].
    pub fn store(&self) -> Arc<dyn TokenStore> {
        Arc::clone(&self.store)
    }

    /// A builder like [`Handle::builder`] (the same hash key) on `store`, which must
    /// reach this database: [`Handle::store`] behind a layer of the caller's.
    pub fn builder_on<S: TokenStore>(&self, store: S) -> TokenIssuerBuilder<S> {
        TokenIssuer::builder(store).keyring(self.keyring.clone())
    }

    /// The hash keys the options give (the unkeyed hash alone when none is).
    pub fn keyring(&self) -> &HashKeyring {
        &self.keyring
    }

    /// The issuer: for a command that writes, after [`TokenIssuerBuilder::prepare`] has
    /// created or upgraded the schema and checked the hash key; a read-only command's
    /// database was checked, without writing, when it was opened. On failure the
    /// connections are closed and the error is one line that says what to do.
    pub async fn issuer(
        &self,
        builder: TokenIssuerBuilder<DynTokenStore>,
    ) -> Result<TokenIssuer<DynTokenStore>, String> {
        if self.access == Access::Read {
            return builder
                .try_build()
                .map_err(|e| format!("invalid lifetime policy: {e}"));
        }
        let prepared = match self.retiring {
            // Prepared as the builder would, with the key being retired tolerated.
            Some(key) => {
                let keys = self.keyring.fingerprints().with_retired(key);
                match self.store.prepare_keyring(&keys).await {
                    Ok(()) => Ok(builder.build()),
                    Err(e) => Err(Error::Store(e)),
                }
            }
            None => builder.prepare().await,
        };
        match prepared {
            Ok(issuer) => Ok(issuer),
            Err(e) => {
                self.store.close().await;
                let Error::Store(e) = e else {
                    return Err(e.to_string());
                };
                Err(match &self.place {
                    Place::Sqlite(path) => sqlite_failure(path, &e),
                    Place::Postgres => postgres_failure(&e),
                })
            }
        }
    }

    /// Closes the connections. For SQLite this writes the buffered last-use times and
    /// checkpoints the write-ahead log into the database file, so that the file alone
    /// holds every token.
    pub async fn close(self) {
        self.store.close().await;
    }

    /// What the operator should fix although the database opened: a hash key or URL file,
    /// the SQLite database or its `-wal` or `-shm` that other users may read (or write),
    /// a password given on the command line. One line each, without a `warning: ` prefix,
    /// saying what to do; never a secret. The CLI prints them on standard error, the
    /// server logs them.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// What to log about the storage: never the URL, which may hold a password.
    pub fn describe(&self) -> String {
        match &self.place {
            Place::Sqlite(path) => format!("sqlite {}", path.display()),
            Place::Postgres => "postgresql".to_owned(),
        }
    }
}

/// Opens the database the options name for a command that may create it (`issue`, the
/// server): with `Missing::Create` a missing SQLite file is created. A damaged file, a
/// schema newer than this library and a wrong hash key are refused here without writing;
/// [`Handle::issuer`] then creates or upgrades the schema. The error is one line that says
/// what to do.
pub async fn open(args: &StorageArgs, missing: Missing) -> Result<Handle, String> {
    let mut warnings = Vec::new();
    let keyring = keyring(args, &mut warnings)?;
    let fingerprints = keyring.fingerprints();
    let (store, place): (Arc<dyn TokenStore>, _) = match backend(args, &mut warnings)? {
        Backend::Sqlite(path) => {
            check_path(&path, &missing)?;
            // A damaged file is refused by a read that changes nothing, before the WAL
            // settings are applied: that keeps it unchanged and leaves no -wal or -shm
            // beside it.
            if std::fs::metadata(&path).is_ok_and(|m| m.len() > 0) {
                let reader = SqliteStore::open_existing(&path)
                    .await
                    .map_err(|e| sqlite_failure(&path, &e))?;
                let checked = reader.check_schema_keyring(&fingerprints).await;
                reader.close().await;
                checked.map_err(|e| sqlite_failure(&path, &e))?;
            }
            let store = SqliteStore::open(&path)
                .await
                .map_err(|e| sqlite_failure(&path, &e))?;
            warnings.extend(sqlite_exposed(&path));
            (Arc::new(store), Place::Sqlite(path))
        }
        Backend::Postgres(postgres) => (
            Arc::new(connect_postgres(&postgres, &mut warnings).await?),
            Place::Postgres,
        ),
    };
    Ok(Handle {
        store,
        keyring,
        retiring: None,
        place,
        access: Access::Write,
        warnings,
    })
}

/// What a command does with an existing database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads only (`list`, `get`, `verify`): the database is opened as it is and nothing
    /// is written, not even the schema or last use, so a stuck writer does not block it
    /// and a read-only file works. The hash key is checked when the database recorded one.
    Read,
    /// Changes tokens (`revoke`, `rotate`): an older apitoken schema is upgraded first, as
    /// these commands write anyway; a database without the apitoken schema is refused.
    Write,
}

/// Opens a database that must already hold apitoken's schema; a missing SQLite file is
/// refused with "no database at PATH: `missing`". A database without the schema (another
/// application's, an empty file) is refused and left unchanged. The error is one line
/// that says what to do.
pub async fn open_existing(
    args: &StorageArgs,
    access: Access,
    missing: &str,
) -> Result<Handle, String> {
    open_existing_retiring(args, access, missing, None).await
}

/// [`open_existing`] for retiring the hash key `retiring` (`apitoken keys retire`): the
/// database is accepted even when the keyring the options give lacks that key (it was
/// dropped from the configuration already, or lost), since retiring it is what is asked.
pub async fn open_existing_retiring(
    args: &StorageArgs,
    access: Access,
    missing: &str,
    retiring: Option<KeyFingerprint>,
) -> Result<Handle, String> {
    let mut warnings = Vec::new();
    let keyring = keyring(args, &mut warnings)?;
    let mut fingerprints = keyring.fingerprints();
    if let Some(key) = retiring {
        fingerprints = fingerprints.with_retired(key);
    }
    let (store, place): (Arc<dyn TokenStore>, _) = match backend(args, &mut warnings)? {
        Backend::Sqlite(path) => {
            check_path(&path, &Missing::Refuse(missing.to_owned()))?;
            let store = open_existing_sqlite(&path, access, &fingerprints).await?;
            warnings.extend(sqlite_exposed(&path));
            (store, Place::Sqlite(path))
        }
        Backend::Postgres(postgres) => {
            let store = connect_postgres(&postgres, &mut warnings).await?;
            // Reading only: a too-new schema and a wrong key are refused here, before any
            // write.
            let version = store.check_schema_keyring(&fingerprints).await;
            if !matches!(version, Ok(v) if v > 0) {
                store.close().await;
            }
            match version {
                Ok(0) => {
                    return Err(format!(
                        "the PostgreSQL database has no apitoken tables; it was left unchanged: check {}, or create them with `apitoken issue`",
                        postgres.named_by
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(postgres_failure(&e)),
            }
            (Arc::new(store), Place::Postgres)
        }
    };
    Ok(Handle {
        store,
        keyring,
        retiring,
        place,
        access,
        warnings,
    })
}

enum Backend {
    Sqlite(PathBuf),
    Postgres(Postgres),
}

/// The PostgreSQL database the options name.
struct Postgres {
    url: Zeroizing<String>,
    /// The option that gave the URL, for advice: "--database-url (or DATABASE_URL)".
    named_by: String,
}

/// The PostgreSQL URL as given, one of two ways.
#[derive(Clone, Copy)]
enum UrlGiven<'a> {
    /// `--database-url`, `DATABASE_URL`.
    Inline(&'a str),
    /// `--database-url-file`, `APITOKEN_DATABASE_URL_FILE`.
    File(&'a Path),
}

impl UrlGiven<'_> {
    fn flag(self) -> &'static str {
        match self {
            UrlGiven::Inline(_) => "--database-url",
            UrlGiven::File(_) => "--database-url-file",
        }
    }

    fn env(self) -> &'static str {
        match self {
            UrlGiven::Inline(_) => "DATABASE_URL",
            UrlGiven::File(_) => "APITOKEN_DATABASE_URL_FILE",
        }
    }
}

fn backend(args: &StorageArgs, warnings: &mut Vec<String>) -> Result<Backend, String> {
    let inline = args
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let file = args
        .database_url_file
        .as_deref()
        .filter(|p| !p.as_os_str().is_empty());
    let sources = args.sources;
    // Of the two ways to give a URL, the command line beats the environment.
    let (given, source) = match (inline, file) {
        (None, None) => return Ok(Backend::Sqlite(args.db.clone())),
        (Some(url), None) => (UrlGiven::Inline(url), sources.database_url),
        (None, Some(path)) => (UrlGiven::File(path), sources.database_url_file),
        (Some(url), Some(path)) => match (sources.database_url, sources.database_url_file) {
            (Source::CommandLine, Source::CommandLine) => {
                return Err("--database-url and --database-url-file both given: give the URL one way (the file keeps a password off the command line)".to_owned());
            }
            (Source::Environment, Source::Environment) => {
                return Err("both DATABASE_URL and APITOKEN_DATABASE_URL_FILE are set: unset one, or choose with --database-url or --database-url-file".to_owned());
            }
            (_, Source::CommandLine) => (UrlGiven::File(path), Source::CommandLine),
            (inline_source, _) => (UrlGiven::Inline(url), inline_source),
        },
    };
    let (flag, env) = (given.flag(), given.env());
    let use_postgres = match (sources.db, source) {
        (Source::CommandLine, Source::CommandLine) => {
            return Err(format!(
                "--db and {flag} both given: use --db for a SQLite file or {flag} for PostgreSQL, not both"
            ));
        }
        // The command line beats the environment.
        (Source::CommandLine, _) => false,
        (Source::Environment, Source::Environment) => {
            return Err(format!(
                "both APITOKEN_DB and {env} are set: unset one, or choose with --db or {flag}"
            ));
        }
        _ => true,
    };
    if !use_postgres {
        return Ok(Backend::Sqlite(args.db.clone()));
    }
    let (url, named_by, named) = match given {
        UrlGiven::Inline(url) => {
            let named = match source {
                Source::Environment => env.to_owned(),
                _ => flag.to_owned(),
            };
            if source == Source::CommandLine && postgres_url::has_password(url) {
                warnings.push(postgres_url::PASSWORD_ON_COMMAND_LINE.to_owned());
            }
            (
                Zeroizing::new(url.to_owned()),
                format!("{flag} (or {env})"),
                named,
            )
        }
        UrlGiven::File(path) => {
            let url = postgres_url::read_file(path, warnings)?;
            let url = Zeroizing::new(url.trim().to_owned());
            let shown = path.display();
            (
                url,
                format!("the URL in {shown} ({flag})"),
                format!("the database URL file {shown}"),
            )
        }
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        let verb = match given {
            UrlGiven::Inline(_) => "must be",
            UrlGiven::File(_) => "must hold",
        };
        return Err(format!(
            "{named} {verb} a postgres:// or postgresql:// URL; for a SQLite file use --db <PATH>"
        ));
    }
    Ok(Backend::Postgres(Postgres { url, named_by }))
}

/// Reads a file that holds a secret other than the hash key or the database URL (the
/// server's partner tokens, say), with the same rules: refused when group or others may
/// write it, a warning in the second value when they may read it. `what` names it in
/// messages ("the GitLab revocation token file"). Surrounding whitespace (a trailing
/// newline) is not part of the secret; an empty file is refused.
///
/// # Errors
///
/// One line that says what to do: the file cannot be read, others may write it, it is
/// larger than 64 KiB, not UTF-8, or empty.
pub fn read_secret_file(
    path: &Path,
    what: &str,
) -> Result<(Zeroizing<String>, Vec<String>), String> {
    let mut warnings = Vec::new();
    let bytes = file_mode::read_secret(path, what, &mut warnings)?;
    let shown = path.display();
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{what} {shown} is not UTF-8 text: put the secret alone in it"))?
        .trim();
    if text.is_empty() {
        return Err(format!("{what} {shown} is empty: put the secret in it"));
    }
    Ok((Zeroizing::new(text.to_owned()), warnings))
}

/// The hash keys from --hash-key-file, else from APITOKEN_HASH_KEY and
/// APITOKEN_RETIRED_HASH_KEYS, else the unkeyed hash alone (see `keyring`).
fn keyring(args: &StorageArgs, warnings: &mut Vec<String>) -> Result<HashKeyring, String> {
    Ok(
        keyring::from_options(args.hash_key_file.as_deref(), warnings)?
            .unwrap_or_else(|| HashKeyring::new(TokenHasher::unkeyed())),
    )
}

/// Refuses a directory, and a missing file unless it may be created.
fn check_path(path: &Path, missing: &Missing) -> Result<(), String> {
    let shown = path.display();
    if path.is_dir() {
        return Err(format!(
            "{shown} is a directory: --db names the database file, e.g. --db {}",
            path.join("apitoken.db").display()
        ));
    }
    if let Missing::Refuse(hint) = missing
        && !path.exists()
    {
        return Err(format!("no database at {shown}: {hint}"));
    }
    Ok(())
}

/// Opens an existing SQLite file: as it is for reading, so that neither a read nor a
/// refusal changes it; with the write-ahead log for a command that writes.
async fn open_existing_sqlite(
    path: &Path,
    access: Access,
    fingerprints: &KeyringFingerprints,
) -> Result<Arc<dyn TokenStore>, String> {
    let reader = SqliteStore::open_existing(path)
        .await
        .map_err(|e| sqlite_failure(path, &e))?;
    let version = reader.check_schema_keyring(fingerprints).await;
    if access == Access::Read && matches!(version, Ok(v) if v > 0) {
        return Ok(Arc::new(reader));
    }
    reader.close().await;
    match version {
        Ok(0) => return Err(not_apitoken(path)),
        Ok(_) => {}
        Err(e) => return Err(sqlite_failure(path, &e)),
    }
    let options = SqliteConnectOptions::new().filename(path);
    let store = SqliteStore::connect_with(options)
        .await
        .map_err(|e| sqlite_failure(path, &e))?;
    Ok(Arc::new(store))
}

/// A SQLite file without the apitoken schema.
fn not_apitoken(path: &Path) -> String {
    let shown = path.display();
    let what = match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => "is an empty file",
        _ => "is a SQLite database without apitoken's tables",
    };
    format!(
        "{shown} {what}, not a token database; it was left unchanged: point --db (or APITOKEN_DB) at your token database, or create one with `apitoken issue --db <NEW FILE>`"
    )
}

/// One line for a SQLite failure that says what to do, by SQLite's result code.
fn sqlite_failure(path: &Path, e: &StoreError) -> String {
    let shown = path.display();
    match e {
        StoreError::HashKeyMismatch { stored, given } => return key_mismatch(*stored, *given),
        StoreError::SchemaTooNew { .. } | StoreError::Corrupt { source: None, .. } => {
            return format!("{shown}: {e}");
        }
        _ => {}
    }
    let Some((code, said)) = sqlite_code(e) else {
        return match e {
            StoreError::Unavailable { .. } => format!(
                "cannot open the SQLite database {shown} ({}): check the path and that this user may read the file, or choose another file with --db",
                cause(e)
            ),
            _ => format!("the SQLite database {shown} failed: {e}"),
        };
    };
    match code {
        11 => format!(
            "the SQLite database {shown} is damaged ({said}): restore it from a backup, or salvage what is readable with `sqlite3 {shown} .recover | sqlite3 recovered.db` and use --db recovered.db"
        ),
        26 => format!(
            "{shown} is not a SQLite database, or its header is damaged ({said}): point --db (or APITOKEN_DB) at your token database, or restore it from a backup"
        ),
        13 => format!(
            "the disk that holds {shown} is full ({said}); nothing was written: free space on it, then retry"
        ),
        10 => format!(
            "cannot read or write {shown} ({said}): check that the disk that holds it has free space and no errors (`df`, `dmesg`), then retry"
        ),
        8 => format!(
            "{shown} is read-only for this user ({said}): `issue`, `revoke` and `rotate` need write access to the file and its directory; `list`, `get` and `verify` work without it"
        ),
        5 | 6 => format!(
            "{shown} is locked by another process ({said}) for longer than the 5-second busy timeout: retry once it has finished"
        ),
        14 => format!(
            "cannot open the SQLite database {shown} ({said}): check the path and that this user may read the file and, for `issue`, `revoke` and `rotate`, write to it and its directory; or choose another file with --db"
        ),
        _ => format!("the SQLite database {shown} failed: {e}"),
    }
}

/// SQLite's primary result code and message behind a store error, if any.
fn sqlite_code(e: &StoreError) -> Option<(u32, String)> {
    let mut source = std::error::Error::source(e);
    while let Some(e) = source {
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() {
            let code = db.code()?.parse::<u32>().ok()? & 0xff;
            return Some((code, db.message().to_owned()));
        }
        source = e.source();
    }
    None
}

async fn connect_postgres(
    postgres: &Postgres,
    warnings: &mut Vec<String>,
) -> Result<PostgresStore, String> {
    let skipped = postgres_url::skipped_password_files(&postgres.url);
    match PostgresStore::connect(&postgres.url).await {
        Ok(store) => {
            warnings.extend(skipped);
            Ok(store)
        }
        // Its own message says what to check; the server is running.
        Err(e @ StoreError::Tls { .. }) => Err(format!("cannot connect to PostgreSQL: {e}")),
        Err(StoreError::InvalidUrl { reason }) => {
            Err(format!("{reason}: correct {}", postgres.named_by))
        }
        Err(e) => {
            let mut line = format!(
                "cannot connect to PostgreSQL ({}): check {} and that the server is running",
                cause(&e),
                postgres.named_by
            );
            // A skipped password file is the likely cause of a refused password.
            for skipped in skipped {
                line.push_str("; ");
                line.push_str(&skipped);
            }
            Err(line)
        }
    }
}

/// Warnings for the SQLite database at `path` and its `-wal` and `-shm`, each that its
/// group or other users may read or write.
fn sqlite_exposed(path: &Path) -> Vec<String> {
    const HOLDS: &str = "token hashes and their creators' names, e-mail addresses and notes";
    ["", "-wal", "-shm"]
        .into_iter()
        .filter_map(|suffix| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            file_mode::exposed(Path::new(&name), HOLDS)
        })
        .collect()
}

/// One line for a PostgreSQL failure while checking or preparing the schema.
fn postgres_failure(e: &StoreError) -> String {
    match e {
        StoreError::HashKeyMismatch { stored, given } => key_mismatch(*stored, *given),
        other => format!("cannot prepare the PostgreSQL database: {other}"),
    }
}

/// The driver's own words for a failure to connect, without the store's generic advice.
fn cause(e: &StoreError) -> String {
    match e {
        StoreError::Unavailable { source } | StoreError::Backend { source } => source.to_string(),
        other => other.to_string(),
    }
}

/// What to say when the database was created with another hash key.
fn key_mismatch(stored: KeyFingerprint, given: KeyFingerprint) -> String {
    match (stored.is_keyed(), given.is_keyed()) {
        (false, _) => format!(
            "this database was created without a hash key, but a key with fingerprint {given} was given: unset APITOKEN_HASH_KEY and drop --hash-key-file to open it"
        ),
        (true, false) => format!(
            "this database was created with hash key fingerprint {stored}, but no key was given: set the original APITOKEN_HASH_KEY or pass --hash-key-file"
        ),
        (true, true) => format!(
            "this database was created with hash key fingerprint {stored}; the key given has fingerprint {given}: use the original APITOKEN_HASH_KEY (or --hash-key-file)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitoken::HashKey;

    fn args(url: Option<&str>, db: Source, database_url: Source) -> StorageArgs {
        StorageArgs {
            db: PathBuf::from("t.db"),
            database_url: url.map(str::to_owned),
            database_url_file: None,
            hash_key_file: None,
            sources: Sources {
                db,
                database_url,
                database_url_file: Source::Unset,
            },
        }
    }

    fn is_postgres(args: &StorageArgs) -> Result<bool, String> {
        backend(args, &mut Vec::new()).map(|b| matches!(b, Backend::Postgres(_)))
    }

    /// The URL chosen, or `None` for SQLite.
    fn chosen(args: &StorageArgs) -> Result<Option<String>, String> {
        Ok(match backend(args, &mut Vec::new())? {
            Backend::Postgres(postgres) => Some(postgres.url.to_string()),
            Backend::Sqlite(_) => None,
        })
    }

    /// A scratch file of mode 0600 holding `text`, removed when dropped.
    #[cfg(unix)]
    struct UrlFile(PathBuf);

    #[cfg(unix)]
    impl UrlFile {
        fn new(text: &str) -> UrlFile {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let path = std::env::temp_dir().join(format!(
                "apitoken-ops-url-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_file(&path);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            file.write_all(text.as_bytes()).unwrap();
            UrlFile(path)
        }
    }

    #[cfg(unix)]
    impl Drop for UrlFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[cfg(unix)]
    #[test]
    fn the_url_file_follows_the_same_precedence() {
        use Source::*;
        let file = UrlFile::new("postgres://from-file/db\n");
        let with_file = |url: Option<&str>, db: Source, inline: Source, from_file: Source| {
            let mut args = args(url, db, inline);
            args.database_url_file = Some(file.0.clone());
            args.sources.database_url_file = from_file;
            args
        };
        let inline = Some("postgres://inline/db");
        let from_file = Ok(Some("postgres://from-file/db".to_owned()));
        assert_eq!(
            chosen(&with_file(None, Unset, Unset, CommandLine)),
            from_file
        );
        assert_eq!(
            chosen(&with_file(None, Unset, Unset, Environment)),
            from_file
        );
        assert_eq!(
            chosen(&with_file(inline, Unset, Environment, CommandLine)),
            from_file
        );
        assert_eq!(
            chosen(&with_file(inline, Unset, CommandLine, Environment)),
            Ok(inline.map(str::to_owned))
        );
        let err = chosen(&with_file(inline, Unset, CommandLine, CommandLine)).unwrap_err();
        assert!(
            err.contains("--database-url and --database-url-file both given"),
            "{err}"
        );
        let err = chosen(&with_file(inline, Unset, Environment, Environment)).unwrap_err();
        assert!(
            err.contains("both DATABASE_URL and APITOKEN_DATABASE_URL_FILE"),
            "{err}"
        );
        let err = chosen(&with_file(None, CommandLine, Unset, CommandLine)).unwrap_err();
        assert!(
            err.starts_with("--db and --database-url-file both given"),
            "{err}"
        );
        let err = chosen(&with_file(None, Environment, Unset, Environment)).unwrap_err();
        assert!(
            err.starts_with("both APITOKEN_DB and APITOKEN_DATABASE_URL_FILE"),
            "{err}"
        );

        // A file that loses is not even read.
        let mut args = with_file(None, CommandLine, Unset, Environment);
        args.database_url_file = Some(PathBuf::from("/nonexistent/url"));
        assert_eq!(chosen(&args), Ok(None));
    }

    #[test]
    fn a_password_on_the_command_line_is_warned_about_without_repeating_it() {
        use Source::*;
        let url = Some("postgres://u:hunter2@h/db");
        let mut warnings = Vec::new();
        backend(&args(url, Unset, CommandLine), &mut warnings).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(!warnings[0].contains("hunter2") && !warnings[0].contains("://"));
        assert!(warnings[0].contains("--database-url-file"), "{warnings:?}");
        // The environment is the user's own; a URL without a password needs no warning.
        let mut warnings = Vec::new();
        backend(&args(url, Unset, Environment), &mut warnings).unwrap();
        backend(
            &args(Some("postgres://u@h/db"), Unset, CommandLine),
            &mut warnings,
        )
        .unwrap();
        assert_eq!(warnings, Vec::<String>::new());
    }

    #[test]
    fn the_command_line_beats_the_environment() {
        let url = Some("postgres://h/db");
        use Source::*;
        assert_eq!(is_postgres(&args(None, CommandLine, Unset)), Ok(false));
        assert_eq!(is_postgres(&args(url, Unset, CommandLine)), Ok(true));
        assert_eq!(is_postgres(&args(url, Unset, Environment)), Ok(true));
        assert_eq!(is_postgres(&args(url, CommandLine, Environment)), Ok(false));
        assert_eq!(is_postgres(&args(url, Environment, CommandLine)), Ok(true));
        assert!(is_postgres(&args(url, CommandLine, CommandLine)).is_err());
        assert!(is_postgres(&args(url, Environment, Environment)).is_err());
        assert_eq!(
            is_postgres(&args(Some("  "), Unset, CommandLine)),
            Ok(false)
        );
        let err = is_postgres(&args(Some("mysql://h/db"), Unset, Environment)).unwrap_err();
        assert!(
            err.starts_with("DATABASE_URL must be a postgres://"),
            "{err}"
        );
    }

    #[test]
    fn a_key_mismatch_says_which_key_to_use() {
        let ab = HashKey::from_bytes([0xab; 32]).fingerprint();
        let cd = HashKey::from_bytes([0xcd; 32]).fingerprint();
        let none = KeyFingerprint::Unkeyed;
        assert!(key_mismatch(none, ab).contains("unset APITOKEN_HASH_KEY"));
        assert!(key_mismatch(ab, none).contains("no key was given"));
        assert!(key_mismatch(ab, cd).contains("use the original APITOKEN_HASH_KEY"));
    }
}
