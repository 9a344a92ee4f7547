//! Opening the database the options name, migrated and bound to the hash key, exactly as
//! the `apitoken` CLI does, so that a token the CLI issued authenticates here.

use crate::args::{Args, Source};
use apitoken::{
    HashKey, PostgresStore, ScopeCatalog, SqliteStore, StoreError, TokenHasher, TokenIssuer,
    TokenStore,
};
use std::path::{Path, PathBuf};

/// The issuer every handler uses.
pub(crate) type Issuer = TokenIssuer<Box<dyn TokenStore>>;

/// Where the tokens live.
#[derive(Debug)]
enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

/// A second handle on the store, to close its connections at shutdown (for SQLite this
/// checkpoints the write-ahead log into the database file).
pub(crate) enum Handle {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Handle {
    pub(crate) async fn close(self) {
        match self {
            Handle::Sqlite(store) => store.pool().close().await,
            Handle::Postgres(store) => store.pool().close().await,
        }
    }

    /// What to log about the storage: never the URL, which may hold a password.
    pub(crate) fn describe(&self) -> String {
        match self {
            Handle::Sqlite(store) => format!(
                "sqlite {}",
                store.pool().connect_options().get_filename().display()
            ),
            Handle::Postgres(_) => "postgresql".to_owned(),
        }
    }
}

/// Opens the store, migrates its schema, checks the hash key against the one the
/// database was created with, and builds the issuer.
pub(crate) async fn open(args: &Args) -> Result<(Issuer, Handle), String> {
    let backend = backend(args)?;
    let key = hash_key(args)?;
    let fingerprint = match &key {
        Some(key) => TokenHasher::keyed(key.clone()),
        None => TokenHasher::unkeyed(),
    }
    .fingerprint();
    let (store, handle): (Box<dyn TokenStore>, Handle) = match backend {
        Backend::Sqlite(path) => {
            let store = open_sqlite(&path, &fingerprint).await?;
            (Box::new(store.clone()), Handle::Sqlite(store))
        }
        Backend::Postgres(url) => {
            let store = open_postgres(&url, &fingerprint).await?;
            (Box::new(store.clone()), Handle::Postgres(store))
        }
    };
    let catalog = ScopeCatalog::reference().extend(args.extra_scopes.iter().cloned());
    let mut builder = TokenIssuer::builder(store).scope_catalog(catalog);
    if let Some(key) = key {
        builder = builder.hash_key(key);
    }
    if let Some(limit) = args.max_live_tokens {
        builder = builder.max_live_tokens_per_environment(limit);
    }
    Ok((builder.build(), handle))
}

fn backend(args: &Args) -> Result<Backend, String> {
    let url = args
        .database_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let sources = args.sources;
    let use_postgres = match (url, sources.db, sources.database_url) {
        (None, _, _) => false,
        (Some(_), Source::CommandLine, Source::CommandLine) => {
            return Err(
                "--db and --database-url both given: use --db for a SQLite file or --database-url for PostgreSQL, not both"
                    .to_owned(),
            );
        }
        // The command line beats the environment.
        (Some(_), Source::CommandLine, _) => false,
        (Some(_), Source::Environment, Source::Environment) => {
            return Err(
                "both APITOKEN_DB and DATABASE_URL are set: unset one, or choose with --db or --database-url"
                    .to_owned(),
            );
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
                return Err(format!(
                    "{name} must be a postgres:// or postgresql:// URL; for a SQLite file use --db <PATH>"
                ));
            }
            Ok(Backend::Postgres(url.to_owned()))
        }
        _ => Ok(Backend::Sqlite(args.db.clone())),
    }
}

/// The hash key from --hash-key-file, else from APITOKEN_HASH_KEY, else none.
fn hash_key(args: &Args) -> Result<Option<HashKey>, String> {
    const HOW: &str = "generate one with `openssl rand -hex 32`";
    if let Some(path) = &args.hash_key_file {
        let text = zeroize::Zeroizing::new(
            std::fs::read(path)
                .map_err(|e| format!("cannot read the hash key file {}: {e}", path.display()))?,
        );
        let text = std::str::from_utf8(&text).map_err(|_| {
            format!(
                "the hash key file {} is not text: it must hold 64 hex characters; {HOW}",
                path.display()
            )
        })?;
        return HashKey::from_hex(text).map(Some).map_err(|e| {
            format!(
                "the hash key file {} does not hold a hash key: {e}; {HOW}",
                path.display()
            )
        });
    }
    match std::env::var_os("APITOKEN_HASH_KEY") {
        None => Ok(None),
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => {
            let value = zeroize::Zeroizing::new(value.into_string().map_err(|_| {
                format!("APITOKEN_HASH_KEY is not a hash key: it must be 64 hex characters; {HOW}")
            })?);
            HashKey::from_hex(&value)
                .map(Some)
                .map_err(|e| format!("APITOKEN_HASH_KEY is not a hash key: {e}; {HOW}"))
        }
    }
}

async fn open_sqlite(path: &Path, fingerprint: &str) -> Result<SqliteStore, String> {
    let shown = path.display();
    if path.is_dir() {
        return Err(format!(
            "{shown} is a directory: --db names the database file, e.g. --db {}",
            path.join("apitoken.db").display()
        ));
    }
    // An empty database would refuse every request: the first token comes from the CLI.
    if !path.exists() {
        return Err(format!(
            "no database at {shown}: issue the first token with `apitoken issue --db {shown} --env <UUID> --note <TEXT> --scope environment.apiTokens.write` (it creates the file), or point --db or APITOKEN_DB at your database"
        ));
    }
    let store = SqliteStore::open(path).await.map_err(|e| {
        format!(
            "cannot open the SQLite database {shown} ({}): check the path and its permissions, or choose another file with --db",
            cause(&e)
        )
    })?;
    prepare(
        &format!("the SQLite database {shown}"),
        fingerprint,
        async {
            store.migrate().await?;
            store.bind_hash_key(fingerprint).await
        },
    )
    .await?;
    Ok(store)
}

async fn open_postgres(url: &str, fingerprint: &str) -> Result<PostgresStore, String> {
    let store = PostgresStore::connect(url).await.map_err(|e| {
        format!(
            "cannot connect to PostgreSQL ({}): check --database-url (or DATABASE_URL) and that the server is running",
            cause(&e)
        )
    })?;
    prepare("the PostgreSQL database", fingerprint, async {
        store.migrate().await?;
        store.bind_hash_key(fingerprint).await
    })
    .await?;
    Ok(store)
}

async fn prepare(
    what: &str,
    given: &str,
    steps: impl Future<Output = Result<(), StoreError>>,
) -> Result<(), String> {
    steps.await.map_err(|e| match e {
        StoreError::HashKeyMismatch { stored, given: _ } => key_mismatch(&stored, given),
        other => format!("cannot prepare {what}: {other}"),
    })
}

/// The driver's own words for a failure to connect, without the store's generic advice.
fn cause(e: &StoreError) -> String {
    match e {
        StoreError::Unavailable { source } | StoreError::Backend { source } => source.to_string(),
        other => other.to_string(),
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
