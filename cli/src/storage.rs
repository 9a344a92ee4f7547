//! Opening the database the options name, migrated and bound to the hash key.

use crate::args::{Global, Source};
use crate::failure::Failure;
use apitoken::{
    HashKey, PostgresStore, ScopeCatalog, SqliteStore, StoreError, TokenHasher, TokenIssuer,
    TokenStore,
};
use std::path::{Path, PathBuf};

/// The issuer every store-backed command uses.
pub(crate) type Issuer = TokenIssuer<Box<dyn TokenStore>>;

/// Whether a missing SQLite file may be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Missing {
    /// `issue`: create the file on first use.
    Create,
    /// Every other command: a missing file is a mistake (a mistyped path, say).
    Refuse,
}

/// Where the tokens live.
#[derive(Debug)]
enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

/// A second handle on the store, to close its connections when the command is done.
enum Handle {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Handle {
    /// Closes the pool. For SQLite this checkpoints the write-ahead log into the database
    /// file and removes it, so that `apitoken.db` alone holds every token (a copy of the
    /// file without its `-wal` would miss the latest ones).
    async fn close(self) {
        match self {
            Handle::Sqlite(store) => store.pool().close().await,
            Handle::Postgres(store) => store.pool().close().await,
        }
    }
}

/// Opens the store (see [`open`]), runs `command` with the issuer, then closes the
/// store's connections whatever the outcome.
pub(crate) async fn with_issuer<T>(
    global: &Global,
    missing: Missing,
    command: impl AsyncFnOnce(&Issuer) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let (issuer, handle) = open(global, missing).await?;
    let result = command(&issuer).await;
    drop(issuer);
    handle.close().await;
    result
}

/// Opens the store, migrates its schema, checks the hash key against the one the
/// database was created with, and builds the issuer.
async fn open(global: &Global, missing: Missing) -> Result<(Issuer, Handle), Failure> {
    let backend = backend(global)?;
    let key = hash_key(global)?;
    let fingerprint = match &key {
        Some(key) => TokenHasher::keyed(key.clone()),
        None => TokenHasher::unkeyed(),
    }
    .fingerprint();
    let (store, handle): (Box<dyn TokenStore>, Handle) = match backend {
        Backend::Sqlite(path) => {
            let store = open_sqlite(&path, missing, &fingerprint).await?;
            (Box::new(store.clone()), Handle::Sqlite(store))
        }
        Backend::Postgres(url) => {
            let store = open_postgres(&url, &fingerprint).await?;
            (Box::new(store.clone()), Handle::Postgres(store))
        }
    };
    let mut builder = TokenIssuer::builder(store).scope_catalog(catalog(global));
    if let Some(key) = key {
        builder = builder.hash_key(key);
    }
    Ok((builder.build(), handle))
}

/// The scopes `issue` accepts.
pub(crate) fn catalog(global: &Global) -> ScopeCatalog {
    ScopeCatalog::reference().extend(global.extra_scopes.iter().cloned())
}

fn backend(global: &Global) -> Result<Backend, Failure> {
    let url = global
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let sources = global.sources;
    let use_postgres = match (url, sources.db, sources.database_url) {
        (None, _, _) => false,
        (Some(_), Source::CommandLine, Source::CommandLine) => {
            return Err(Failure::usage(
                "--db and --database-url both given: use --db for a SQLite file or --database-url for PostgreSQL, not both",
            ));
        }
        // The command line beats the environment.
        (Some(_), Source::CommandLine, _) => false,
        (Some(_), Source::Environment, Source::Environment) => {
            return Err(Failure::usage(
                "both APITOKEN_DB and DATABASE_URL are set: unset one, or choose with --db or --database-url",
            ));
        }
        (Some(_), _, _) => true,
    };
    match url {
        Some(url) if use_postgres => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                let name = match sources.database_url {
                    Source::Environment => "DATABASE_URL",
                    _ => "--database-url",
                };
                return Err(Failure::usage(format!(
                    "{name} must be a postgres:// or postgresql:// URL; for a SQLite file use --db <PATH>"
                )));
            }
            Ok(Backend::Postgres(url.to_owned()))
        }
        _ => Ok(Backend::Sqlite(global.db.clone())),
    }
}

/// The hash key from --hash-key-file, else from APITOKEN_HASH_KEY, else none.
fn hash_key(global: &Global) -> Result<Option<HashKey>, Failure> {
    const HOW: &str = "generate one with `openssl rand -hex 32`";
    if let Some(path) = &global.hash_key_file {
        let text = zeroize::Zeroizing::new(std::fs::read(path).map_err(|e| {
            Failure::usage(format!(
                "cannot read the hash key file {}: {e}",
                path.display()
            ))
        })?);
        let text = std::str::from_utf8(&text).map_err(|_| {
            Failure::usage(format!(
                "the hash key file {} is not text: it must hold 64 hex characters; {HOW}",
                path.display()
            ))
        })?;
        return HashKey::from_hex(text).map(Some).map_err(|e| {
            Failure::usage(format!(
                "the hash key file {} does not hold a hash key: {e}; {HOW}",
                path.display()
            ))
        });
    }
    match std::env::var_os("APITOKEN_HASH_KEY") {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => {
            let value = zeroize::Zeroizing::new(value.into_string().map_err(|_| {
                Failure::usage(format!(
                    "APITOKEN_HASH_KEY is not a hash key: it must be 64 hex characters; {HOW}"
                ))
            })?);
            HashKey::from_hex(&value).map(Some).map_err(|e| {
                Failure::usage(format!("APITOKEN_HASH_KEY is not a hash key: {e}; {HOW}"))
            })
        }
    }
}

async fn open_sqlite(
    path: &Path,
    missing: Missing,
    fingerprint: &str,
) -> Result<SqliteStore, Failure> {
    let shown = path.display();
    if missing == Missing::Refuse && !path.exists() {
        return Err(Failure::usage(format!(
            "no database at {shown}: issue a token first (`apitoken issue` creates it), or point --db or APITOKEN_DB at your database"
        )));
    }
    if path.is_dir() {
        return Err(Failure::usage(format!(
            "{shown} is a directory: --db names the database file, e.g. --db {}",
            path.join("apitoken.db").display()
        )));
    }
    let store = SqliteStore::open(path).await.map_err(|e| {
        Failure::usage(format!(
            "cannot open the SQLite database {shown} ({}): check the path and its permissions, or choose another file with --db",
            cause(&e)
        ))
    })?;
    store
        .migrate()
        .await
        .map_err(|e| schema_failure(&format!("the SQLite database {shown}"), e))?;
    store
        .bind_hash_key(fingerprint)
        .await
        .map_err(|e| schema_failure(&format!("the SQLite database {shown}"), e))?;
    Ok(store)
}

async fn open_postgres(url: &str, fingerprint: &str) -> Result<PostgresStore, Failure> {
    const WHAT: &str = "the PostgreSQL database";
    let store = PostgresStore::connect(url).await.map_err(|e| {
        Failure::usage(format!(
            "cannot connect to PostgreSQL ({}): check --database-url (or DATABASE_URL) and that the server is running",
            cause(&e)
        ))
    })?;
    store.migrate().await.map_err(|e| schema_failure(WHAT, e))?;
    store
        .bind_hash_key(fingerprint)
        .await
        .map_err(|e| schema_failure(WHAT, e))?;
    Ok(store)
}

/// The driver's own words for a failure to connect, without the store's generic advice.
fn cause(e: &StoreError) -> String {
    match e {
        StoreError::Unavailable { source } | StoreError::Backend { source } => source.to_string(),
        other => other.to_string(),
    }
}

fn schema_failure(what: &str, e: StoreError) -> Failure {
    match e {
        StoreError::HashKeyMismatch { stored, given } => {
            Failure::usage(key_mismatch(&stored, &given))
        }
        other => Failure::usage(format!("cannot prepare {what}: {other}")),
    }
}

/// What to say when the database was created with another hash key.
fn key_mismatch(stored: &str, given: &str) -> String {
    if stored == "unkeyed" {
        format!(
            "this database was created without a hash key, but a key with fingerprint {given} was given: unset APITOKEN_HASH_KEY and drop --hash-key-file to open it"
        )
    } else if given == "unkeyed" {
        format!(
            "this database was created with hash key fingerprint {stored}, but no key was given: set the original APITOKEN_HASH_KEY or pass --hash-key-file"
        )
    } else {
        format!(
            "this database was created with hash key fingerprint {stored}; the key given has fingerprint {given}: use the original APITOKEN_HASH_KEY (or --hash-key-file)"
        )
    }
}
