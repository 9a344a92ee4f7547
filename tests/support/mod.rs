//! Shared by the store tests: PostgreSQL test schemas and a TCP proxy that can cut the
//! connection to the database.
#![allow(dead_code, clippy::print_stderr)] // the skip notice must be loud

use apitoken::{
    Actor, Caller, Creator, EnvironmentId, Error, Limits, MemoryStore, Page, PageRequest, RawToken,
    Revoked, Rotation, StoreError, StoredToken, Token, TokenHash, TokenId, TokenIssuer, TokenStore,
    UserId,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

mod postgres_url;
#[allow(unused_imports)] // not every test file needs PostgreSQL
pub(crate) use postgres_url::postgres_url;

/// An operator: a person, who acts on every token of an environment.
pub(crate) fn operator() -> Caller {
    Caller::from(Creator::new(UserId::from_uuid(uuid::Uuid::from_u128(
        0x0ae2,
    ))))
}

/// A fresh schema name.
pub(crate) fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{:x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// A temporary SQLite path, removed with its WAL files when dropped.
pub(crate) struct TempDb {
    pub(crate) path: std::path::PathBuf,
}

impl TempDb {
    pub(crate) fn new(name: &str) -> TempDb {
        TempDb {
            path: std::env::temp_dir().join(format!("{}.db", unique_name(name))),
        }
    }

    /// The bytes of the database and its WAL, as they are on disk now.
    pub(crate) fn bytes_on_disk(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for suffix in ["", "-wal", "-shm", "-journal"] {
            if let Ok(bytes) = std::fs::read(format!("{}{suffix}", self.path.display())) {
                all.extend(bytes);
            }
        }
        all
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
        }
    }
}

/// Runs `body` and then `cleanup`, even when `body` panics (the panic is then resumed).
#[cfg(feature = "conformance")]
pub(crate) async fn with_cleanup<B, C>(body: B, cleanup: C)
where
    B: std::future::Future<Output = ()>,
    C: std::future::Future<Output = ()>,
{
    use futures_util::FutureExt;
    let result = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    cleanup.await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// A TCP proxy in front of a server: `cut` drops every connection and refuses new ones
/// until `restore`.
pub(crate) struct Proxy {
    pub(crate) addr: SocketAddr,
    open: Arc<AtomicBool>,
    /// Armed with a pattern: the next server data holding it is lost, with the connection.
    lose_reply: Arc<Mutex<Option<&'static [u8]>>>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let lose_reply: Arc<Mutex<Option<&'static [u8]>>> = Arc::default();
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (open2, lose2, connections2) = (open.clone(), lose_reply.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !open2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let lose = lose2.clone();
                let task = tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let up = tokio::io::copy(&mut from_client, &mut to_server);
                    let down = async {
                        let mut buf = vec![0; 16 * 1024];
                        loop {
                            let n = from_server.read(&mut buf).await?;
                            let data = &buf[..n];
                            let lost = {
                                let mut armed = lose.lock().unwrap();
                                let hit = armed.is_some_and(|pattern| {
                                    data.windows(pattern.len()).any(|w| w == pattern)
                                });
                                hit && armed.take().is_some()
                            };
                            if n == 0 || lost {
                                return Ok::<(), std::io::Error>(());
                            }
                            to_client.write_all(&buf[..n]).await?;
                        }
                    };
                    // Either side ending closes both connections.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
                connections2.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            addr,
            open,
            lose_reply,
            connections,
            accept,
        }
    }

    /// Drops every open connection and refuses new ones.
    pub(crate) fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Accepts connections again.
    pub(crate) fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// The next server data holding `pattern` (a command tag such as `COMMIT\0`), on any
    /// connection, is dropped with that connection: the server has done what it was
    /// asked, and the client never hears.
    pub(crate) fn lose_reply_holding(&self, pattern: &'static [u8]) {
        assert!(!pattern.is_empty(), "lose a reply holding what?");
        *self.lose_reply.lock().unwrap() = Some(pattern);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// A `MemoryStore` that counts the calls an issuer makes: look-ups and last-use writes.
#[derive(Debug, Default)]
pub(crate) struct Counting {
    pub(crate) inner: MemoryStore,
    pub(crate) finds: AtomicUsize,
    pub(crate) gets: AtomicUsize,
    pub(crate) last_use_writes: AtomicUsize,
}

#[async_trait]
impl TokenStore for Counting {
    async fn insert(&self, t: StoredToken, limits: Limits) -> Result<(), StoreError> {
        self.inner.insert(t, limits).await
    }
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        self.finds.fetch_add(1, AtomicOrdering::SeqCst);
        self.inner.find_by_hash(hash).await
    }
    async fn get(&self, env: EnvironmentId, id: TokenId) -> Result<Option<Token>, StoreError> {
        self.gets.fetch_add(1, AtomicOrdering::SeqCst);
        self.inner.get(env, id).await
    }
    async fn list(&self, env: EnvironmentId, page: PageRequest) -> Result<Page, StoreError> {
        self.inner.list(env, page).await
    }
    async fn revoke(
        &self,
        env: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Actor,
    ) -> Result<Revoked, StoreError> {
        self.inner.revoke(env, id, at, by).await
    }
    async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError> {
        self.inner.rotate(rotation).await
    }
    async fn descends_from(
        &self,
        env: EnvironmentId,
        id: TokenId,
        ancestor: TokenId,
    ) -> Result<bool, StoreError> {
        self.inner.descends_from(env, id, ancestor).await
    }
    async fn purge(&self, ended_before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        self.inner.purge(ended_before, max).await
    }
    async fn record_last_use(
        &self,
        id: TokenId,
        at: DateTime<Utc>,
        from: Option<std::net::IpAddr>,
    ) -> Result<(), StoreError> {
        self.last_use_writes.fetch_add(1, AtomicOrdering::SeqCst);
        self.inner.record_last_use(id, at, from).await
    }
    async fn events_since(
        &self,
        env: Option<EnvironmentId>,
        after: apitoken::EventCursor,
        limit: u32,
    ) -> Result<apitoken::EventPage, StoreError> {
        self.inner.events_since(env, after, limit).await
    }
    async fn event_head(&self) -> Result<apitoken::EventCursor, StoreError> {
        self.inner.event_head().await
    }
    fn watch(&self, after: apitoken::EventCursor) -> Result<apitoken::ChangeFeed, StoreError> {
        self.inner.watch(after)
    }
}

/// What the upgrade tests of both SQL stores check once a version-1 token has been read:
/// it rotates once, a second rotation is refused with 409, both tokens then authenticate
/// and the environment lists both. Returns the successor's id.
pub(crate) async fn rotates_once<S: TokenStore>(
    issuer: &TokenIssuer<S>,
    env: EnvironmentId,
    id: TokenId,
    raw: &RawToken,
) -> TokenId {
    let grace = std::time::Duration::from_secs(600);
    let new = issuer
        .rotate(env, operator(), id, grace)
        .await
        .expect("a token from version 1 can be rotated");
    let err = issuer.rotate(env, operator(), id, grace).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(StoreError::AlreadyRotated { id: refused, successor })
                if refused == id && successor == Some(new.token.id)
        ),
        "{err:?}"
    );
    assert_eq!(apitoken::http::status(&err), 409);
    issuer.authenticate(raw.expose_secret()).await.unwrap();
    issuer.authenticate(new.raw.expose_secret()).await.unwrap();
    let page = issuer.list(env, PageRequest::default()).await.unwrap();
    assert_eq!(page.tokens.len(), 2);
    // The upgrade counted the old row in its environment: two tokens fill a cap of two.
    let capped = TokenIssuer::builder(issuer.store())
        .limits(Limits {
            max_total: std::num::NonZeroU32::new(2),
            ..Limits::NONE
        })
        .build();
    let request = apitoken::IssueRequest::new(apitoken::Note::new("third").unwrap());
    let err = capped.issue(env, operator(), request).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Store(StoreError::EnvironmentFull { limit: 2, .. })
        ),
        "{err:?}"
    );
    new.token.id
}

/// `open_store(url)` opens a store the builder's checked step binds to the hash key: an
/// issuer with the key issues, one without it is refused (through a `CachedStore` too,
/// which passes the step on), one with it again finds the token.
pub(crate) async fn a_url_opens_a_store_bound_to_the_key(url: &str) {
    use apitoken::{CachedStore, Creator, HashKey, IssueRequest, KeyFingerprint, Note, UserId};
    let key = HashKey::from_bytes([9; 32]);
    // A new database is not ready until prepared, and stays so: checking writes nothing.
    let fresh = apitoken::open_store(url).await.unwrap();
    for _ in 0..2 {
        match fresh.check(key.fingerprint()).await {
            Err(StoreError::NotPrepared { found: 0, current }) => assert!(current >= 4),
            other => panic!("expected NotPrepared, got {other:?}"),
        }
    }
    fresh.close().await;
    let issuer = TokenIssuer::builder(apitoken::open_store(url).await.unwrap())
        .hash_key(key.clone())
        .prepare()
        .await
        .unwrap();
    issuer.store().check(key.fingerprint()).await.unwrap();
    let environment = EnvironmentId::from_uuid(uuid::Uuid::from_u128(rand::random()));
    let alice = Creator::new(UserId::from_uuid(uuid::Uuid::from_u128(0xa11ce)));
    let request = IssueRequest::new(Note::new("by url").unwrap());
    let issued = issuer.issue(environment, alice, request).await.unwrap();
    issuer.store().close().await;

    let cached = CachedStore::new(apitoken::open_store(url).await.unwrap());
    match cached.check(KeyFingerprint::Unkeyed).await {
        Err(StoreError::HashKeyMismatch { stored, given }) => {
            assert_eq!(
                (stored, given),
                (key.fingerprint(), KeyFingerprint::Unkeyed)
            );
        }
        other => panic!("expected HashKeyMismatch, got {other:?}"),
    }
    cached.check(key.fingerprint()).await.unwrap();
    match TokenIssuer::builder(cached).prepare().await {
        Err(Error::Store(StoreError::HashKeyMismatch { stored, given })) => {
            assert_eq!(stored, key.fingerprint());
            assert_eq!(given, KeyFingerprint::Unkeyed);
        }
        other => panic!("expected HashKeyMismatch, got {other:?}"),
    }
    let again = TokenIssuer::builder(apitoken::open_store(url).await.unwrap())
        .hash_key(key)
        .prepare()
        .await
        .unwrap();
    let who = again
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap();
    assert_eq!(who.token_id(), issued.token.id);
    again.store().close().await;
}
