//! [`SqliteStore`]: tokens in an embedded SQLite file (feature `sqlite`).
//!
//! # Durability
//!
//! The database runs in WAL mode with `synchronous = FULL`: every commit is flushed to
//! the write-ahead log before it returns, so a token is never lost once
//! [`TokenIssuer::issue`](crate::TokenIssuer::issue) has returned, even on power loss
//! (`NORMAL` could lose the last commits then). WAL lets readers (authentication) run
//! while a writer commits. A second writer waits up to the busy timeout (5 s by default)
//! instead of failing at once; writes that must be atomic with a check (the live-token
//! limit, rotation) run in `BEGIN IMMEDIATE` transactions, which take the write lock
//! before reading.
//!
//! # Last use
//!
//! Authentication never waits for the write lock, which another process may hold:
//! [`record_last_use`](TokenStore::record_last_use) only notes the time in memory (the
//! newest per token, shared by every clone of the store, at most 10,000 tokens; past
//! that, new ones are dropped until the next flush) and returns. A background tokio task,
//! started on the first record, writes the buffer in one transaction about once a second;
//! a flush that fails (the lock stayed busy past the busy timeout) keeps its entries for
//! the next one. Reads merge the buffer in, so `get`, `list` and authentication see the
//! time at once and the issuer still records each token at most once per interval; a
//! live listing that leaves out idle tokens ([`PageRequest::used_after`]) filters in SQL,
//! so it writes the buffer first (if that fails, a token used within the last second may
//! be left out of that page).
//! [`close`](SqliteStore::close) writes what is buffered; the task ends with `close` or
//! when every clone is dropped. A crash, or dropping the store without `close`, loses at
//! most the last second's last-use times: bookkeeping only, never a token or a
//! revocation.
//!
//! # Schema
//!
//! Three tables: `apitoken_meta` (schema version, hash key fingerprint),
//! `apitoken_tokens` (one row per token: ids as 16-byte blobs, the 32-byte hash, times as
//! microseconds since the Unix epoch, `replaced_by`, the successor's id once the token has
//! been rotated, and `created_by_token`) with a unique index on the hash, and
//! `apitoken_environments` (how many tokens each environment holds, which the cap reads).
//! Indexes serve each bounded statement with a range (a test reads their plans): listing
//! `(environment_id, created_at, id)`, live tokens only, one user's; the revocation's walk
//! along `created_by_token` and `replaced_by`; purging by the time a token ended.
//! [`prepare`](TokenStore::prepare)
//! creates or upgrades it; [`SqliteStore::check_schema`] checks it by reading only, on a
//! store from [`SqliteStore::open_existing`], which changes nothing in the file.

use super::sql::{self, Engine, SqlDialect, event_columns, insert_into_tokens, token_columns};
use super::{
    KeyUsage, Limits, Page, PageRequest, Rehash, Retired, Revoked, Rotation, StoreError, TokenStore,
};
use crate::event::{
    Actor, ChangeFeed, EventBatch, EventCursor, EventPage, LeakDetails, PollingSource, Revoker,
};
use crate::hash::{KeyFingerprint, KeyringFingerprints, TokenHash};
use crate::model::{EnvironmentId, StoredToken, Token, TokenId, record_use};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use core::time::Duration;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqliteConnection};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

mod private_file;

/// Schema migrations, applied in order; the schema version is how many have run. Never
/// edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: the tokens.
    "
CREATE TABLE apitoken_tokens (
    id BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    environment_id BLOB NOT NULL CHECK (length(environment_id) = 16),
    checksum TEXT NOT NULL,
    created_by_id BLOB NOT NULL,
    created_by_alias TEXT,
    created_by_first_name TEXT,
    created_by_last_name TEXT,
    created_by_email TEXT,
    created_at INTEGER NOT NULL,
    active INTEGER NOT NULL,
    note TEXT NOT NULL,
    scopes TEXT NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX apitoken_tokens_hash ON apitoken_tokens (hash);
CREATE INDEX apitoken_tokens_environment_id ON apitoken_tokens (environment_id, id);
CREATE INDEX apitoken_tokens_environment_created ON apitoken_tokens (environment_id, created_at, id);
",
    // 2: the successor of a rotated token, so that a token is rotated at most once. NULL
    // (never rotated) for every existing row.
    "
ALTER TABLE apitoken_tokens ADD COLUMN replaced_by BLOB CHECK (length(replaced_by) = 16);
",
    // 3: the token that created a token (delegation), NULL for every existing row (a user
    // created it); indexed both ways a revocation walks.
    "
ALTER TABLE apitoken_tokens ADD COLUMN created_by_token BLOB CHECK (length(created_by_token) = 16);
CREATE INDEX apitoken_tokens_created_by_token ON apitoken_tokens (created_by_token)
    WHERE created_by_token IS NOT NULL;
CREATE INDEX apitoken_tokens_replaced_by ON apitoken_tokens (replaced_by)
    WHERE replaced_by IS NOT NULL;
",
    // 4: bounded work. The count of each environment's tokens (the per-environment cap is
    // one read, not a count); an index for listing live tokens, one for listing a user's,
    // one for purging by the time a token ended; the index on (environment_id, id) goes,
    // since the primary key finds a token by id (every index is one more write per token
    // a revocation changes). A successor revoked before version 4 left its predecessor
    // working for the rest of its grace period: revoke such predecessors as version 4
    // would have, with their successor.
    "
CREATE TABLE apitoken_environments (
    environment_id BLOB NOT NULL PRIMARY KEY CHECK (length(environment_id) = 16),
    tokens INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO apitoken_environments (environment_id, tokens)
    SELECT environment_id, count(*) FROM apitoken_tokens GROUP BY environment_id;
CREATE INDEX apitoken_tokens_live ON apitoken_tokens (environment_id, created_at, id)
    WHERE active;
CREATE INDEX apitoken_tokens_created_by ON apitoken_tokens
    (environment_id, created_by_id, created_at, id);
DROP INDEX apitoken_tokens_environment_id;
CREATE INDEX apitoken_tokens_ended ON apitoken_tokens (coalesce(revoked_at, expires_at));
UPDATE apitoken_tokens AS p
    SET active = 0,
        revoked_at = (SELECT s.revoked_at FROM apitoken_tokens s WHERE s.id = p.replaced_by)
    WHERE p.active AND p.replaced_by IS NOT NULL
    AND (p.expires_at IS NULL
         OR p.expires_at > CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER))
    AND EXISTS (SELECT 1 FROM apitoken_tokens s
                WHERE s.id = p.replaced_by AND NOT s.active AND s.revoked_at IS NOT NULL);
",
    // 5: the event log (see `TokenStore::events_since`): the events, and one row with the
    // last sequence number given and how far the log was pruned.
    "
CREATE TABLE apitoken_events (
    sequence INTEGER NOT NULL PRIMARY KEY,
    at INTEGER NOT NULL,
    environment_id BLOB NOT NULL CHECK (length(environment_id) = 16),
    token_id BLOB NOT NULL CHECK (length(token_id) = 16),
    kind TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    actor_id BLOB NOT NULL CHECK (length(actor_id) = 16),
    other_id BLOB CHECK (length(other_id) = 16)
);
CREATE INDEX apitoken_events_environment ON apitoken_events (environment_id, sequence);
CREATE INDEX apitoken_events_at ON apitoken_events (at);
CREATE TABLE apitoken_event_log (
    one INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
    last_sequence INTEGER NOT NULL,
    pruned_through INTEGER NOT NULL
);
INSERT INTO apitoken_event_log (one, last_sequence, pruned_through) VALUES (1, 0, 0);
",
    // 6: what is known of a leak, kept with its event (`Leaked`): the reporter, and the
    // reporter's data (source, URL, type), which is forgotten after the leak retention;
    // the partial index finds what is left to forget.
    "
ALTER TABLE apitoken_events ADD COLUMN leak_reporter TEXT;
ALTER TABLE apitoken_events ADD COLUMN leak_source TEXT;
ALTER TABLE apitoken_events ADD COLUMN leak_url TEXT;
ALTER TABLE apitoken_events ADD COLUMN leak_type TEXT;
CREATE INDEX apitoken_events_leak_details ON apitoken_events (at, sequence)
    WHERE leak_source IS NOT NULL OR leak_url IS NOT NULL OR leak_type IS NOT NULL;
",
    // 7: the keyring. Which key made each row's hash (existing rows: the bound key's), and
    // the set of keys the rows need, which `prepare` checks a keyring against (see
    // `TokenStore::prepare_keyring`).
    // SQLite cannot add a NOT NULL column without a constant default, so existing rows
    // are written once here.
    "
ALTER TABLE apitoken_tokens ADD COLUMN hash_key TEXT;
UPDATE apitoken_tokens
    SET hash_key = (SELECT value FROM apitoken_meta WHERE key = 'hash_key_fingerprint');
CREATE TABLE apitoken_hash_keys (fingerprint TEXT NOT NULL PRIMARY KEY) WITHOUT ROWID;
INSERT INTO apitoken_hash_keys (fingerprint)
    SELECT value FROM apitoken_meta WHERE key = 'hash_key_fingerprint';
",
    // 8: the client addresses a token authenticates from,
    // space-separated ranges (NULL: any), and the address of its last use, kept with
    // `last_used_at`. NULL for every existing row: no list, no address known.
    "
ALTER TABLE apitoken_tokens ADD COLUMN allowed_cidrs TEXT;
ALTER TABLE apitoken_tokens ADD COLUMN last_used_ip TEXT;
",
];

fn err(e: sqlx::Error) -> StoreError {
    sql::map_error(e, Engine::Sqlite)
}

/// SQLite's primary result code behind a store error, if it came from SQLite.
fn sqlite_code(e: &StoreError) -> Option<u32> {
    let mut source = std::error::Error::source(e);
    while let Some(e) = source {
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>() {
            return db.code()?.parse::<u32>().ok().map(|c| c & 0xff);
        }
        source = e.source();
    }
    None
}

/// Token records in a SQLite database.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use apitoken::{SqliteStore, TokenIssuer};
///
/// let path = std::env::temp_dir().join(format!("apitoken-doc-{}.db", std::process::id()));
/// let store = SqliteStore::open(&path).await?;
/// let issuer = TokenIssuer::builder(store).prepare().await?;
/// # drop(issuer);
/// # for suffix in ["", "-wal", "-shm"] { let _ = std::fs::remove_file(format!("{}{suffix}", path.display())); }
/// # Ok::<(), apitoken::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Reads (authentication, listing).
    pool: SqlitePool,
    /// Writes. SQLite has one write lock per database; with one writer connection per
    /// process, this process's writers queue here in order instead of sleeping and retrying
    /// in SQLite's busy handler (which put 10-20 ms on the slowest issues). Writers in
    /// other processes still wait through the busy timeout.
    writer: SqlitePool,
    /// Last-use times not yet written, shared by every clone.
    last_use: Arc<LastUse>,
    /// Woken by this process's writes, so that its own feeds need not wait for a poll.
    written: Arc<tokio::sync::watch::Sender<()>>,
    /// How often a feed reads the log (other processes' writes wake nothing here).
    feed_poll: Duration,
}

/// How often a feed reads the log by default.
const FEED_POLL: Duration = Duration::from_millis(200);

/// How often buffered last-use times are written.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// At most this many tokens' last-use times wait to be written; past it, new ones are
/// dropped (the token's next authentication after a flush records it again), so that a
/// writer stuck for long never makes the buffer grow without bound.
const MAX_PENDING: usize = 10_000;

/// Last uses waiting for the background flush: the newest per token, each time with its
/// client address (never one use's time with another's address). Reads merge them in, so
/// a store answers as if they were written.
#[derive(Debug)]
struct LastUse {
    pending: Mutex<HashMap<TokenId, Use>>,
    writer: SqlitePool,
    /// Opened read-only: nothing is recorded.
    read_only: bool,
    flusher: Mutex<Flusher>,
}

/// One use: when, and from which address if known.
type Use = (DateTime<Utc>, Option<IpAddr>);

#[derive(Debug)]
enum Flusher {
    Idle,
    Running(tokio::task::JoinHandle<()>),
    Closed,
}

/// A poisoned lock still guards a consistent map (no code panics while holding it).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LastUse {
    fn new(writer: SqlitePool, read_only: bool) -> Arc<LastUse> {
        Arc::new(LastUse {
            pending: Mutex::new(HashMap::new()),
            writer,
            read_only,
            flusher: Mutex::new(Flusher::Idle),
        })
    }

    /// Keeps the newest use per token, its address with it; never waits for I/O.
    fn record(self: &Arc<Self>, id: TokenId, at: DateTime<Utc>, from: Option<IpAddr>) {
        {
            let mut pending = lock(&self.pending);
            let full = pending.len() >= MAX_PENDING;
            match pending.entry(id) {
                Entry::Occupied(mut last) => {
                    if at > last.get().0 {
                        last.insert((at, from));
                    }
                }
                Entry::Vacant(slot) if !full => {
                    slot.insert((at, from));
                }
                Entry::Vacant(_) => return,
            }
        }
        let mut flusher = lock(&self.flusher);
        if let Flusher::Idle = *flusher {
            // The task holds only a weak reference: it ends when every clone of the
            // store is dropped (or at `close`), and never keeps the pool open.
            let this = Arc::downgrade(self);
            *flusher = Flusher::Running(tokio::spawn(flush_periodically(this)));
        }
    }

    /// `token` with its buffered last use, if newer than the stored one.
    fn merge(&self, mut token: Token) -> Token {
        self.merge_all(core::slice::from_mut(&mut token));
        token
    }

    /// Each token with its buffered last use, if newer than the stored one.
    fn merge_all(&self, tokens: &mut [Token]) {
        let pending = lock(&self.pending);
        if pending.is_empty() {
            return;
        }
        for token in tokens {
            if let Some(&(at, from)) = pending.get(&token.id) {
                record_use(token, at, from);
            }
        }
    }

    /// Writes every buffered time in one transaction. The entries stay buffered (and
    /// visible to reads) until the commit; on failure (the write lock is busy, say) they
    /// wait for the next flush.
    async fn flush(&self) -> Result<(), StoreError> {
        let batch: Vec<(TokenId, Use)> = lock(&self.pending)
            .iter()
            .map(|(&id, &last)| (id, last))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(err)?;
        for &(id, (at, from)) in &batch {
            SqliteSql::write_last_use(&mut *tx, id, at, from).await?;
        }
        tx.commit().await.map_err(err)?;
        let mut pending = lock(&self.pending);
        for (id, last) in batch {
            // A newer use recorded during the flush stays for the next one.
            if pending.get(&id) == Some(&last) {
                pending.remove(&id);
            }
        }
        Ok(())
    }

    /// Stops the background task; later records are dropped.
    fn stop(&self) {
        if let Flusher::Running(task) =
            std::mem::replace(&mut *lock(&self.flusher), Flusher::Closed)
        {
            task.abort();
        }
    }
}

impl Drop for LastUse {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The oldest SQLite this store runs on (`RETURNING` came in 3.35.0). The bundled one
/// (feature `sqlite`) is always newer; a system one (`sqlite-unbundled`) may not be.
const OLDEST_SQLITE: (u32, u32) = (3, 35);

/// Refuses a SQLite older than [`OLDEST_SQLITE`], saying what to do.
fn check_sqlite_version(version: &str) -> Result<(), StoreError> {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if found >= OLDEST_SQLITE {
        return Ok(());
    }
    Err(StoreError::Backend {
        source: format!(
            "SQLite {version} is older than {}.{}.0, the oldest this store runs on: link a \
             newer system SQLite, or build with the feature `sqlite` (SQLite compiled in) \
             instead of `sqlite-unbundled`",
            OLDEST_SQLITE.0, OLDEST_SQLITE.1
        )
        .into(),
    })
}

async fn flush_periodically(last_use: Weak<LastUse>) {
    let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
    // A flush that waited out a busy writer is not followed by a burst of catch-up ones.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(last_use) = last_use.upgrade() else {
            return;
        };
        // Bookkeeping only: a failed flush keeps its entries for the next tick.
        if let Err(error) = last_use.flush().await {
            tracing::warn!(%error, "last-use times not written; kept for the next flush");
        }
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) the database file at `path`, in WAL mode with
    /// `synchronous = FULL` and a 5-second busy timeout. Build the issuer with
    /// [`TokenIssuerBuilder::prepare`](crate::TokenIssuerBuilder::prepare), which creates the schema.
    /// On Unix a new file (and so its `-wal` and `-shm`) is private to its owner: mode 0600.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        SqliteStore::connect_with(options).await
    }

    /// Opens a database by URL (`sqlite://path/to/file.db`, `sqlite::memory:`), with the
    /// same settings as [`open`](Self::open).
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(err)?
            .create_if_missing(true);
        SqliteStore::connect_with(options).await
    }

    /// Opens an existing database as it is, to read it: creates no file, sets no journal
    /// mode, migrates nothing and records no last use, so that a read leaves the file
    /// byte-for-byte unchanged (another application's database, an empty file). A file
    /// this process may read but not write is read; when its directory cannot hold the
    /// `-shm` file SQLite needs for a WAL database (a read-only directory or mount), it is
    /// opened `immutable`, which then also ignores other processes' writes made while it
    /// is open. Check what it holds with [`check_schema`](Self::check_schema).
    pub async fn open_existing(path: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(5));
        let store = SqliteStore::reader(options.clone()).await?;
        match store.probe().await {
            Ok(()) => Ok(store),
            Err(e) => {
                store.close().await;
                if !matches!(sqlite_code(&e), Some(8 | 14)) {
                    return Err(e);
                }
                let store = SqliteStore::reader(options.read_only(true).immutable(true)).await?;
                match store.probe().await {
                    Ok(()) => Ok(store),
                    Err(e) => {
                        store.close().await;
                        Err(e)
                    }
                }
            }
        }
    }

    /// A store that reads with these options and never records last use.
    async fn reader(options: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(err)?;
        Ok(SqliteStore {
            writer: pool.clone(),
            last_use: LastUse::new(pool.clone(), true),
            pool,
            written: Arc::new(tokio::sync::watch::Sender::new(())),
            feed_poll: FEED_POLL,
        })
    }

    /// Reads the first page, where a file that is not SQLite, or a WAL database whose
    /// `-shm` file cannot be made, fails.
    async fn probe(&self) -> Result<(), StoreError> {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sqlite_master")
            .fetch_one(&self.pool)
            .await
            .map_err(err)
            .map(drop)
    }

    /// Opens a database with these options, adding WAL, `synchronous = FULL` and a
    /// 5-second busy timeout: up to 4 connections read, one writes.
    pub async fn connect_with(options: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        // A new database file is made private before SQLite creates it 0644.
        private_file::create(&options);
        let pool = |connections| {
            SqlitePoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.clone())
        };
        let writer = pool(1).await.map_err(err)?;
        // An in-memory database lives in its connections: one pool must serve both.
        let name = options.get_filename().to_string_lossy();
        if name == ":memory:" || name.starts_with("file:sqlx-in-memory") {
            return Ok(SqliteStore::from_pool(writer));
        }
        let readers = pool(4).await.map_err(err)?;
        Ok(SqliteStore {
            pool: readers,
            last_use: LastUse::new(writer.clone(), false),
            writer,
            written: Arc::new(tokio::sync::watch::Sender::new(())),
            feed_poll: FEED_POLL,
        })
    }

    /// Uses an existing pool, as it is configured, for reads and writes (see the module
    /// docs for the settings this store relies on).
    pub fn from_pool(pool: SqlitePool) -> SqliteStore {
        SqliteStore {
            writer: pool.clone(),
            last_use: LastUse::new(pool.clone(), false),
            pool,
            written: Arc::new(tokio::sync::watch::Sender::new(())),
            feed_poll: FEED_POLL,
        }
    }

    /// How often a feed from [`watch`](TokenStore::watch) reads the log (default 200 ms):
    /// SQLite has no notifications between processes, so a change another process makes
    /// reaches this one's feeds within this interval (this process's own changes wake
    /// them at once). Each read is one indexed query that finds nothing when nothing
    /// changed.
    pub fn feed_poll_interval(self, interval: Duration) -> SqliteStore {
        SqliteStore {
            feed_poll: interval,
            ..self
        }
    }

    /// The pool that serves reads (the only pool, when built with
    /// [`from_pool`](Self::from_pool)).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Writes the buffered last-use times now, in one transaction, instead of waiting for
    /// the background flush (at most a second). On failure they stay buffered.
    pub async fn flush_last_use(&self) -> Result<(), StoreError> {
        self.last_use.flush().await
    }

    /// [`TokenStore::revoke`], by an actor or for a leak.
    async fn revoke_by(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Revoker<'_>,
    ) -> Result<Revoked, StoreError> {
        // A token revoked already costs one read, without the write lock: nothing changes.
        let found = self.get(environment, id).await?;
        let revoked = match found {
            None => None,
            Some(token) if !token.active => Some(Revoked {
                token,
                cascade: Vec::new(),
            }),
            Some(_) => {
                let mut tx = self.begin_write().await?;
                let revoked = SqliteSql::revoke_in(&mut tx, environment, id, at, by).await?;
                tx.commit().await.map_err(err)?;
                self.written.send_replace(());
                revoked.map(|mut revoked| {
                    revoked.token = self.last_use.merge(revoked.token);
                    revoked
                })
            }
        };
        revoked.ok_or(StoreError::NotFound { environment, id })
    }

    /// A write transaction: `BEGIN IMMEDIATE` takes the database's write lock before the
    /// first read, so a check and the write it allows are one atomic step.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.writer.begin_with("BEGIN IMMEDIATE").await.map_err(err)
    }

    /// The schema version of the database (0 before the first migration).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'apitoken_meta'",
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(err)?;
        if exists.is_none() {
            return Ok(0);
        }
        SqliteSql::recorded_version(&mut conn).await
    }

    /// Checks, reading only, that the database holds a schema this version reads and that
    /// the hash key fingerprint it recorded, if any, is `fingerprint`
    /// ([`StoreError::HashKeyMismatch`] otherwise). Returns the schema version: 0 when the
    /// database has no apitoken schema (an empty file, another application's database);
    /// [`StoreError::SchemaTooNew`] when it is newer than this library.
    pub async fn check_schema(&self, fingerprint: KeyFingerprint) -> Result<i64, StoreError> {
        self.check_schema_keyring(&KeyringFingerprints::single(fingerprint))
            .await
    }

    /// [`check_schema`](Self::check_schema) for a keyring: fails when the database holds
    /// tokens hashed with a key `keys` lacks ([`StoreError::KeyringLacksKey`], or
    /// [`StoreError::HashKeyMismatch`] for a ring of one key).
    pub async fn check_schema_keyring(
        &self,
        keys: &KeyringFingerprints,
    ) -> Result<i64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' \
             AND name IN ('apitoken_meta', 'apitoken_tokens')",
        )
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
        if tables == 0 {
            return Ok(0);
        }
        // Present but unreadable is damage, not "no schema": never mistaken for another
        // application's database.
        let version = SqliteSql::meta(&mut conn, sql::META_SCHEMA_VERSION)
            .await?
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| StoreError::Corrupt {
                message: "apitoken's tables are there but apitoken_meta records no schema version: restore the database from a backup".to_owned(),
                source: None,
            })?;
        SqliteSql::readable(version)?;
        SqliteSql::check_keys_in(&mut conn, version, keys).await?;
        Ok(version)
    }
}

/// SQLite's statements; ids are 16-byte blobs and times integer microseconds.
struct SqliteSql;

impl SqlDialect for SqliteSql {
    type Db = Sqlite;
    type Time = i64;

    const MIGRATIONS: &'static [&'static str] = MIGRATIONS;
    const CREATE_META: &'static str = "CREATE TABLE IF NOT EXISTS apitoken_meta (key TEXT NOT NULL PRIMARY KEY, value TEXT NOT NULL)";
    const SELECT_META: &'static str = "SELECT value FROM apitoken_meta WHERE key = ?";
    const UPSERT_META: &'static str = "INSERT INTO apitoken_meta (key, value) VALUES (?, ?) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    const INSERT: &'static str = concat!(
        insert_into_tokens!(),
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
    const COUNT_ONE_MORE: &'static str = "INSERT INTO apitoken_environments (environment_id, tokens) \
         VALUES (?1, 1) ON CONFLICT (environment_id) DO UPDATE SET tokens = tokens + 1 \
         RETURNING tokens";
    const COUNT_FEWER: &'static str =
        "UPDATE apitoken_environments SET tokens = tokens - ?1 WHERE environment_id = ?2";
    const COUNT_LIVE: &'static str = "SELECT count(*) FROM apitoken_tokens INDEXED BY apitoken_tokens_live \
         WHERE environment_id = ?1 AND active \
         AND (expires_at IS NULL OR expires_at > ?2) AND id IS NOT ?3";
    const COUNT_CREATED_BY: &'static str = "SELECT count(*) FROM apitoken_tokens \
         INDEXED BY apitoken_tokens_created_by_token WHERE created_by_token = ?1 AND environment_id = ?2 AND active \
         AND (expires_at IS NULL OR expires_at > ?3)";
    const DEPTH: &'static str = "WITH RECURSIVE up(id, depth) AS ( \
         SELECT created_by_token, 1 FROM apitoken_tokens \
         WHERE environment_id = ?1 AND id = ?2 AND created_by_token IS NOT NULL \
         UNION ALL SELECT t.created_by_token, up.depth + 1 FROM up \
         JOIN apitoken_tokens t ON t.id = up.id \
         WHERE t.environment_id = ?1 AND t.created_by_token IS NOT NULL AND up.depth <= ?3) \
         SELECT coalesce(max(depth), 0) FROM up";
    const SELECT_TOKEN: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        " FROM apitoken_tokens WHERE environment_id = ? AND id = ?"
    );
    // No lock: the rotation's `BEGIN IMMEDIATE` holds the database's write lock.
    const SELECT_PREDECESSOR: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        ", replaced_by FROM apitoken_tokens \
         WHERE environment_id = ? AND id = ?"
    );
    const REVOKE: &'static str = concat!(
        "UPDATE apitoken_tokens SET active = 0, revoked_at = coalesce(revoked_at, ?) \
         WHERE environment_id = ? AND id = ? AND active RETURNING ",
        token_columns!()
    );
    // SQLite takes several recursive SELECTs, each joined on its own index.
    const REVOKE_CASCADE: &'static str = "WITH RECURSIVE tree(id) AS ( \
         SELECT ?3 \
         UNION SELECT c.id FROM tree \
         JOIN apitoken_tokens c INDEXED BY apitoken_tokens_created_by_token \
         ON c.created_by_token = tree.id \
         WHERE c.environment_id = ?2 AND c.active AND (c.expires_at IS NULL OR c.expires_at > ?1) \
         UNION SELECT p.id FROM tree \
         JOIN apitoken_tokens p INDEXED BY apitoken_tokens_replaced_by ON p.replaced_by = tree.id \
         WHERE p.environment_id = ?2) \
         UPDATE apitoken_tokens SET active = 0, revoked_at = ?1 \
         WHERE id IN (SELECT id FROM tree) AND id <> ?3 \
         AND active AND (expires_at IS NULL OR expires_at > ?1) RETURNING id";
    const DESCENDS_FROM: &'static str = "WITH RECURSIVE up(id) AS ( \
         SELECT id FROM apitoken_tokens WHERE environment_id = ?1 AND id = ?2 \
         UNION SELECT t.created_by_token FROM up JOIN apitoken_tokens t ON t.id = up.id \
         WHERE t.environment_id = ?1 AND t.created_by_token IS NOT NULL \
         UNION SELECT t.replaced_by FROM up JOIN apitoken_tokens t ON t.id = up.id \
         WHERE t.environment_id = ?1 AND t.replaced_by IS NOT NULL) \
         SELECT EXISTS (SELECT 1 FROM up WHERE id = ?3)";
    const PURGE: &'static str = "DELETE FROM apitoken_tokens WHERE id IN ( \
         SELECT t.id FROM apitoken_tokens t INDEXED BY apitoken_tokens_ended \
         WHERE coalesce(t.revoked_at, t.expires_at) < ?1 \
         AND (NOT t.active OR t.expires_at < ?1) \
         AND NOT EXISTS (SELECT 1 FROM apitoken_tokens c WHERE c.created_by_token = t.id \
         AND c.active) \
         LIMIT ?2) RETURNING environment_id";
    // Row values, which each index serves as a range (`(created_at, id) > (?, ?)`); an
    // `OR` of the two cases would be read from the start of the environment every page.
    const LIST: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        " FROM apitoken_tokens INDEXED BY apitoken_tokens_environment_created \
         WHERE environment_id = ?1 AND (created_at, id) > (?2, ?3) \
         ORDER BY created_at, id LIMIT ?4"
    );
    const LIST_LIVE: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        " FROM apitoken_tokens INDEXED BY apitoken_tokens_live \
         WHERE environment_id = ?1 AND (created_at, id) > (?2, ?3) \
         AND active AND (expires_at IS NULL OR expires_at > ?4) \
         AND (?6 IS NULL OR coalesce(last_used_at, created_at) > ?6) \
         ORDER BY created_at, id LIMIT ?5"
    );
    const LIST_CREATED_BY: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        " FROM apitoken_tokens INDEXED BY apitoken_tokens_created_by \
         WHERE environment_id = ?1 AND created_by_id = ?4 AND (created_at, id) > (?2, ?3) \
         ORDER BY created_at, id LIMIT ?5"
    );
    const LIST_LIVE_CREATED_BY: &'static str = concat!(
        "SELECT ",
        token_columns!(),
        " FROM apitoken_tokens INDEXED BY apitoken_tokens_created_by \
         WHERE environment_id = ?1 AND created_by_id = ?5 AND (created_at, id) > (?2, ?3) \
         AND active AND (expires_at IS NULL OR expires_at > ?4) \
         AND (?7 IS NULL OR coalesce(last_used_at, created_at) > ?7) \
         ORDER BY created_at, id LIMIT ?6"
    );
    const RECORD_LAST_USE: &'static str = "UPDATE apitoken_tokens \
         SET last_used_at = ?1, last_used_ip = ?3 WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)";
    const MARK_ROTATED: &'static str = concat!(
        "UPDATE apitoken_tokens SET expires_at = min(coalesce(expires_at, ?1), ?1), \
         replaced_by = ?4 WHERE environment_id = ?2 AND id = ?3 RETURNING ",
        token_columns!()
    );
    const EARLIEST: DateTime<Utc> = DateTime::<Utc>::MIN_UTC;
    const SELECT_EVENTS: &'static str = concat!(
        "SELECT ",
        event_columns!(),
        " FROM apitoken_events WHERE sequence > ?1 ORDER BY sequence LIMIT ?2"
    );
    const SELECT_ENVIRONMENT_EVENTS: &'static str = concat!(
        "SELECT ",
        event_columns!(),
        " FROM apitoken_events WHERE environment_id = ?1 AND sequence > ?2 \
         ORDER BY sequence LIMIT ?3"
    );
    const SELECT_EVENT_LOG: &'static str =
        "SELECT last_sequence, pruned_through FROM apitoken_event_log";
    const PRUNE_EVENTS: &'static str = "DELETE FROM apitoken_events WHERE sequence IN ( \
         SELECT sequence FROM apitoken_events WHERE at < ?1 ORDER BY sequence LIMIT ?2) \
         RETURNING sequence";
    const FORGET_LEAK_DETAILS: &'static str = "UPDATE apitoken_events \
         SET leak_source = NULL, leak_url = NULL, leak_type = NULL WHERE sequence IN ( \
         SELECT sequence FROM apitoken_events WHERE at < ?1 AND (leak_source IS NOT NULL \
         OR leak_url IS NOT NULL OR leak_type IS NOT NULL) ORDER BY at, sequence LIMIT ?2) \
         RETURNING sequence";
    const MARK_PRUNED: &'static str = "UPDATE apitoken_event_log \
         SET pruned_through = max(pruned_through, ?1)";
    const REHASH: &'static str = "UPDATE apitoken_tokens SET hash = ?1, hash_key = ?2 \
         WHERE id = ?3 AND hash = ?4 AND active AND (expires_at IS NULL OR expires_at > ?5) \
         RETURNING environment_id";
    const KEY_USAGE: &'static str = "SELECT hash_key, count(*) AS live, \
         sum(expires_at IS NULL) AS never_expiring, max(expires_at) AS latest_expiry \
         FROM apitoken_tokens WHERE active AND (expires_at IS NULL OR expires_at > ?1) \
         GROUP BY hash_key";
    const SELECT_HASH_KEYS: &'static str = "SELECT fingerprint FROM apitoken_hash_keys";
    const ADD_HASH_KEY: &'static str =
        "INSERT INTO apitoken_hash_keys (fingerprint) VALUES (?1) ON CONFLICT DO NOTHING";
    const DELETE_HASH_KEY: &'static str = "DELETE FROM apitoken_hash_keys WHERE fingerprint = ?1";
    const LIVE_UNDER_KEY: &'static str = "SELECT environment_id, id FROM apitoken_tokens \
         WHERE hash_key = ?1 AND active AND (expires_at IS NULL OR expires_at > ?2) LIMIT ?3";
    const COUNT_LIVE_UNDER_KEY: &'static str = "SELECT count(*) FROM apitoken_tokens \
         WHERE hash_key = ?1 AND active AND (expires_at IS NULL OR expires_at > ?2)";

    /// Two statements whatever the number of tokens (a revocation's cascade may name
    /// thousands): the numbers, then the events, whose ids go in as one JSON array of
    /// hexadecimal strings. Nothing to notify: other processes poll, and this one's feeds
    /// are woken by the store once the transaction commits.
    async fn append_batch(
        conn: &mut SqliteConnection,
        batch: &EventBatch<'_>,
    ) -> Result<(), StoreError> {
        let count = batch.tokens.len() as i64;
        let last: i64 = sqlx::query_scalar(
            "UPDATE apitoken_event_log SET last_sequence = last_sequence + ?1 \
             RETURNING last_sequence",
        )
        .bind(count)
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
        // The ids as one blob of 16 bytes each, cut apart by a counter: no `unhex`
        // (SQLite 3.41) or JSON, so that a system SQLite from 3.35 on runs it.
        let mut ids = Vec::with_capacity(batch.tokens.len() * 16);
        for token in batch.tokens {
            ids.extend_from_slice(token.as_uuid().as_bytes());
        }
        sqlx::query(concat!(
            "WITH RECURSIVE n(i) AS (SELECT 0 WHERE length(?8) >= 16 \
             UNION ALL SELECT i + 1 FROM n WHERE (i + 2) * 16 <= length(?8)) \
             INSERT INTO apitoken_events (",
            event_columns!(),
            ") SELECT ?1 + i, ?2, ?3, substr(?8, 1 + 16 * i, 16), ?4, ?5, ?6, ?7, ?9, ?10, ?11, ?12 \
             FROM n"
        ))
        .bind(last - count + 1)
        .bind(micros(batch.at))
        .bind(batch.environment.as_uuid())
        .bind(batch.kind.name())
        .bind(batch.actor.kind())
        .bind(batch.actor.id().unwrap_or_default())
        .bind(batch.kind.other().map(|t| *t.as_uuid()))
        .bind(ids)
        .bind(batch.leak.map(|leak| leak.reporter.name()))
        .bind(batch.leak.and_then(|leak| leak.source.as_deref()))
        .bind(batch.leak.and_then(|leak| leak.url.as_deref()))
        .bind(batch.leak.and_then(|leak| leak.token_type.as_deref()))
        .execute(&mut *conn)
        .await
        .map_err(err)?;
        Ok(())
    }

    fn err(e: sqlx::Error) -> StoreError {
        err(e)
    }

    fn time(at: DateTime<Utc>) -> i64 {
        micros(at)
    }

    fn read_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        time(row, column)
    }

    fn read_created_at(row: &SqliteRow) -> Result<DateTime<Utc>, StoreError> {
        time(row, "created_at")?.ok_or_else(|| StoreError::Corrupt {
            message: "created_at is null".to_owned(),
            source: None,
        })
    }

    /// Nothing to take: every write transaction here is `BEGIN IMMEDIATE`, which holds the
    /// database's write lock.
    async fn lock_environment(
        _: &mut SqliteConnection,
        _: EnvironmentId,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    match row.try_get::<Option<i64>, _>(column).map_err(err)? {
        None => Ok(None),
        Some(us) => DateTime::from_timestamp_micros(us)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt {
                message: format!("{column} = {us} is not a valid time"),
                source: None,
            }),
    }
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn insert(&self, token: StoredToken, limits: Limits) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        SqliteSql::insert_checked(&mut tx, &token, limits).await?;
        tx.commit().await.map_err(err)?;
        self.written.send_replace(());
        Ok(())
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        // One row either way, decoded either way (see `sql`): a miss takes as long as a hit.
        let query =
            sql::find_by_hash_or_decoy!("?1", "1", "0", sql::sqlite_decoy_columns!(), "WHERE");
        let row = sqlx::query(query)
            .bind(hash.as_bytes().as_slice())
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        let found: bool = row.try_get("found").map_err(err)?;
        let token = self.last_use.merge(SqliteSql::decode(row)?);
        Ok(found.then_some(token))
    }

    async fn find_many_by_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Vec<Option<Token>>, StoreError> {
        let mut found: HashMap<[u8; 32], Token> = HashMap::with_capacity(hashes.len());
        let mut conn = self.pool.acquire().await.map_err(err)?;
        for chunk in hashes.chunks(sql::HASHES_PER_QUERY) {
            let mut query = String::from(concat!(
                "SELECT hash, ",
                token_columns!(),
                " FROM apitoken_tokens WHERE hash IN ("
            ));
            for i in 0..chunk.len() {
                query.push_str(if i == 0 { "?" } else { ", ?" });
            }
            query.push(')');
            let mut select = sqlx::query(sqlx::AssertSqlSafe(query));
            for hash in chunk {
                select = select.bind(hash.as_bytes().as_slice());
            }
            for row in select.fetch_all(&mut *conn).await.map_err(err)? {
                let hash: Vec<u8> = row.try_get("hash").map_err(err)?;
                let token = self.last_use.merge(SqliteSql::decode(row)?);
                if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) {
                    found.insert(hash, token);
                }
            }
        }
        Ok(sql::in_order(hashes, &found))
    }

    async fn get(
        &self,
        environment: EnvironmentId,
        id: TokenId,
    ) -> Result<Option<Token>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let found = SqliteSql::fetch_token(&mut conn, environment, id).await?;
        Ok(found.map(|t| self.last_use.merge(t)))
    }

    async fn list(
        &self,
        environment: EnvironmentId,
        page: PageRequest,
    ) -> Result<Page, StoreError> {
        // The statement filters by the written last use: buffered uses are written first,
        // or a token used within the last second could be left out as idle.
        if page.live_at.is_some()
            && page.used_after.is_some()
            && !lock(&self.last_use.pending).is_empty()
            && let Err(error) = self.last_use.flush().await
        {
            tracing::warn!(%error, "last-use times not written before an idle-filtered listing; kept for the next flush");
        }
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let mut tokens = SqliteSql::list_in(&mut conn, environment, page).await?;
        self.last_use.merge_all(&mut tokens);
        Ok(Page::from_overfetch(
            tokens,
            page.limit.clamp(1, PageRequest::MAX_LIMIT),
        ))
    }

    async fn revoke(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Actor,
    ) -> Result<Revoked, StoreError> {
        self.revoke_by(environment, id, at, Revoker::Actor(by))
            .await
    }

    async fn revoke_leaked(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        leak: &LeakDetails,
    ) -> Result<Revoked, StoreError> {
        self.revoke_by(environment, id, at, Revoker::Leak(leak))
            .await
    }

    async fn revoke_leaked_many(
        &self,
        leaks: &[(EnvironmentId, TokenId, &LeakDetails)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Option<Revoked>>, StoreError> {
        let mut all = Vec::with_capacity(leaks.len());
        for chunk in leaks.chunks(sql::LEAKS_PER_TRANSACTION) {
            let mut tx = self.begin_write().await?;
            let revoked = SqliteSql::revoke_leaked_in(&mut tx, chunk, at).await?;
            tx.commit().await.map_err(err)?;
            self.written.send_replace(());
            all.extend(revoked.into_iter().map(|revoked| {
                revoked.map(|mut revoked| {
                    revoked.token = self.last_use.merge(revoked.token);
                    revoked
                })
            }));
        }
        Ok(all)
    }

    async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError> {
        let mut tx = self.begin_write().await?;
        let (updated, _) = SqliteSql::rotate_in(&mut tx, &rotation, false).await?;
        tx.commit().await.map_err(err)?;
        self.written.send_replace(());
        Ok(self.last_use.merge(updated))
    }

    async fn descends_from(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        ancestor: TokenId,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        SqliteSql::descends_from_in(&mut conn, environment, id, ancestor).await
    }

    async fn purge(&self, ended_before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        let mut tx = self.begin_write().await?;
        let purged = SqliteSql::purge_in(&mut tx, ended_before, max).await?;
        tx.commit().await.map_err(err)?;
        Ok(purged)
    }

    /// Creates the schema, or upgrades it to the newest version, and binds the hash key,
    /// in one `BEGIN IMMEDIATE` transaction.
    async fn prepare(&self, key: KeyFingerprint) -> Result<(), StoreError> {
        self.prepare_keyring(&KeyringFingerprints::single(key))
            .await
    }

    async fn check(&self, key: KeyFingerprint) -> Result<(), StoreError> {
        self.check_keyring(&KeyringFingerprints::single(key)).await
    }

    /// Creates the schema, or upgrades it to the newest version, checks the keyring and
    /// records its current key, in one `BEGIN IMMEDIATE` transaction.
    async fn prepare_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        let version: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&self.writer)
            .await
            .map_err(err)?;
        check_sqlite_version(&version)?;
        let mut tx = self.begin_write().await?;
        SqliteSql::prepare_in(&mut tx, keys).await?;
        tx.commit().await.map_err(err)
    }

    async fn check_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        let found = self.check_schema_keyring(keys).await?;
        sql::prepared(found, SqliteSql::MIGRATIONS)
    }

    async fn find_by_any_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Option<(usize, Token)>, StoreError> {
        if let [hash] = hashes {
            return Ok(self.find_by_hash(hash).await?.map(|token| (0, token)));
        }
        let Some(query) = sql::sqlite_any_hash_query(hashes.len()) else {
            // More candidates than a keyring makes: one query each is still correct.
            return sql::first_found(self, hashes).await;
        };
        let mut select = sqlx::query(query);
        for hash in hashes {
            select = select.bind(hash.as_bytes().as_slice());
        }
        // One row at least, decoded either way (see `sql`): a miss takes as long as a hit.
        let rows = select.fetch_all(&self.pool).await.map_err(err)?;
        SqliteSql::first_of_candidates(rows, hashes, |token| self.last_use.merge(token))
    }

    async fn rehash(&self, rehash: &Rehash) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = SqliteSql::rehash_in(&mut tx, rehash).await?;
        tx.commit().await.map_err(err)?;
        if done {
            self.written.send_replace(());
        }
        Ok(done)
    }

    async fn hash_key_usage(&self, at: DateTime<Utc>) -> Result<Vec<KeyUsage>, StoreError> {
        // One read transaction: the counts and the recorded keys are one snapshot.
        let mut tx = self.pool.begin().await.map_err(err)?;
        let usage = SqliteSql::key_usage_in(&mut tx, at).await?;
        tx.commit().await.map_err(err)?;
        Ok(usage)
    }

    async fn retire_hash_key(
        &self,
        key: KeyFingerprint,
        at: DateTime<Utc>,
        revoke_remaining: Option<Actor>,
    ) -> Result<Retired, StoreError> {
        let mut revoked = Vec::new();
        if let Some(by) = revoke_remaining {
            loop {
                let mut tx = self.begin_write().await?;
                let batch = SqliteSql::revoke_under_key_in(
                    &mut tx,
                    key,
                    at,
                    by,
                    sql::RETIRED_PER_TRANSACTION,
                )
                .await?;
                tx.commit().await.map_err(err)?;
                let Some(batch) = batch else { break };
                self.written.send_replace(());
                revoked.extend(batch);
            }
        }
        let mut tx = self.begin_write().await?;
        SqliteSql::forget_key_in(&mut tx, key, at).await?;
        tx.commit().await.map_err(err)?;
        Ok(Retired { key, revoked })
    }

    /// Writes the buffered last-use times, stops the background task and closes every
    /// connection (every clone's: they share them). The last connection to close folds
    /// the write-ahead log into the database file, so that the file alone holds every
    /// token. If the write lock stays busy past the busy timeout, the buffered times are
    /// lost (bookkeeping only).
    async fn close(&self) {
        self.last_use.stop();
        if !self.last_use.read_only
            && let Err(error) = self.last_use.flush().await
        {
            tracing::warn!(%error, "last-use times lost at close (bookkeeping only)");
        }
        self.pool.close().await;
        self.writer.close().await;
    }

    /// Buffers the time and returns at once: a background task writes the buffer about
    /// once a second (see the module docs). Outside a tokio runtime, writes it inline.
    async fn record_last_use(
        &self,
        id: TokenId,
        at: DateTime<Utc>,
        from: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        if self.last_use.read_only || matches!(*lock(&self.last_use.flusher), Flusher::Closed) {
            return Ok(());
        }
        if tokio::runtime::Handle::try_current().is_err() {
            let mut conn = self.writer.acquire().await.map_err(err)?;
            return SqliteSql::write_last_use(&mut *conn, id, at, from).await;
        }
        self.last_use.record(id, at, from);
        Ok(())
    }

    async fn events_since(
        &self,
        environment: Option<EnvironmentId>,
        after: EventCursor,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        // One read transaction, so that the events and the pruning mark are one snapshot.
        let mut tx = self.pool.begin().await.map_err(err)?;
        let page = SqliteSql::events_in(&mut tx, environment, after, limit).await?;
        tx.commit().await.map_err(err)?;
        Ok(page)
    }

    async fn event_head(&self) -> Result<EventCursor, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(err)?;
        let (last, _) = SqliteSql::event_log(&mut conn).await?;
        Ok(EventCursor::after(last))
    }

    async fn prune_events(&self, before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        let mut tx = self.begin_write().await?;
        let pruned = SqliteSql::prune_events_in(&mut tx, before, max).await?;
        tx.commit().await.map_err(err)?;
        Ok(pruned)
    }

    async fn forget_leak_details(
        &self,
        before: DateTime<Utc>,
        max: u32,
    ) -> Result<u32, StoreError> {
        let mut tx = self.begin_write().await?;
        let forgotten = SqliteSql::forget_leak_details_in(&mut tx, before, max).await?;
        tx.commit().await.map_err(err)?;
        Ok(forgotten)
    }

    fn watch(&self, after: EventCursor) -> Result<ChangeFeed, StoreError> {
        let source =
            PollingSource::new(self.clone(), self.feed_poll).waking_on(self.written.subscribe());
        Ok(ChangeFeed::new(source, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_older_than_3_35_is_refused_with_what_to_do() {
        for old in ["3.34.1", "3.8.2", "2.8.17"] {
            let refused = check_sqlite_version(old).unwrap_err().to_string();
            assert!(
                refused.contains(&format!("SQLite {old} is older than 3.35.0")),
                "{refused}"
            );
            assert!(refused.contains("feature `sqlite`"), "{refused}");
        }
        for new in ["3.35.0", "3.40.1", "3.51.2", "4.0.0"] {
            assert!(check_sqlite_version(new).is_ok(), "{new}");
        }
    }

    /// The plan SQLite makes for `query`, one line per step.
    async fn plan(store: &SqliteStore, query: &str) -> String {
        let explain = format!("EXPLAIN QUERY PLAN {query}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(explain))
            .fetch_all(store.pool())
            .await
            .unwrap();
        rows.iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whether a plan reads `apitoken_tokens` (under any of the names the statements give
    /// it) from end to end, rather than searching it.
    fn scans_tokens(plan: &str) -> bool {
        plan.lines().any(|line| {
            let mut words = line.split_whitespace();
            words.next() == Some("SCAN")
                && matches!(words.next(), Some("apitoken_tokens" | "t" | "c" | "p"))
        })
    }

    /// Every statement whose cost must not grow with the environment (issue 17) reads a
    /// range of an index, never the table or an index from its start: a page of a listing
    /// wherever it starts, each branch of a revocation's walk, the lineage and depth
    /// walks, the counts under a limit, and a purge's batch.
    #[tokio::test]
    async fn bounded_statements_search_their_index() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.prepare(KeyFingerprint::Unkeyed).await.unwrap();
        let range = "(environment_id=? AND (created_at,id)>(?,?))";
        for (query, expected) in [
            (SqliteSql::LIST, vec![format!("SEARCH apitoken_tokens USING INDEX apitoken_tokens_environment_created {range}")]),
            (SqliteSql::LIST_LIVE, vec![format!("SEARCH apitoken_tokens USING INDEX apitoken_tokens_live {range}")]),
            (
                SqliteSql::LIST_CREATED_BY,
                vec!["SEARCH apitoken_tokens USING INDEX apitoken_tokens_created_by (environment_id=? AND created_by_id=? AND (created_at,id)>(?,?))".to_owned()],
            ),
            (
                SqliteSql::LIST_LIVE_CREATED_BY,
                vec!["SEARCH apitoken_tokens USING INDEX apitoken_tokens_created_by (environment_id=? AND created_by_id=? AND (created_at,id)>(?,?))".to_owned()],
            ),
            (
                SqliteSql::REVOKE_CASCADE,
                vec![
                    "SEARCH c USING INDEX apitoken_tokens_created_by_token (created_by_token=?)".to_owned(),
                    "SEARCH p USING INDEX apitoken_tokens_replaced_by (replaced_by=?)".to_owned(),
                ],
            ),
            (
                SqliteSql::COUNT_LIVE,
                vec!["SEARCH apitoken_tokens USING INDEX apitoken_tokens_live (environment_id=?)".to_owned()],
            ),
            (
                SqliteSql::COUNT_CREATED_BY,
                vec!["SEARCH apitoken_tokens USING INDEX apitoken_tokens_created_by_token (created_by_token=?)".to_owned()],
            ),
            (
                SqliteSql::PURGE,
                vec!["SEARCH t USING INDEX apitoken_tokens_ended (<expr><?)".to_owned()],
            ),
        ] {
            let plan = plan(&store, query).await;
            for step in expected {
                assert!(plan.contains(&step), "{query}\nplan:\n{plan}\nexpected: {step}");
            }
            assert!(!scans_tokens(&plan), "{query} reads a whole table or index:\n{plan}");
        }
        for query in [SqliteSql::DESCENDS_FROM, SqliteSql::DEPTH] {
            let plan = plan(&store, query).await;
            assert!(!scans_tokens(&plan), "{query} reads a whole table:\n{plan}");
        }
        // A token by its id: the primary key, not an index that starts with the environment.
        for query in [
            SqliteSql::SELECT_TOKEN,
            SqliteSql::SELECT_PREDECESSOR,
            SqliteSql::REVOKE,
            SqliteSql::MARK_ROTATED,
        ] {
            let plan = plan(&store, query).await;
            assert_eq!(
                plan, "SEARCH apitoken_tokens USING PRIMARY KEY (id=?)",
                "{query}"
            );
        }
        store.close().await;
    }
}
