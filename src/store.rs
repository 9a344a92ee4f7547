//! [`TokenStore`]: where token records live.

pub(crate) mod cached;
pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

use crate::hash::{KeyFingerprint, TokenHash};
use crate::model::{Credential, EnvironmentId, StoredToken, Token, TokenId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use core::num::NonZeroU32;
use std::sync::Arc;

/// A store chosen at run time (the CLI and the server pick SQLite or PostgreSQL from their
/// options): `TokenIssuer<DynTokenStore>`.
pub type DynTokenStore = Box<dyn TokenStore>;

/// Opens the store a URL names, for an application that picks its storage from
/// configuration (as object_store's `parse_url` does):
///
/// | URL | store | feature |
/// |---|---|---|
/// | `memory:` | a new, empty [`MemoryStore`](crate::MemoryStore) | always |
/// | `sqlite://PATH`, `sqlite:PATH` (`sqlite:///abs/path` for an absolute one) | [`SqliteStore`](crate::SqliteStore), creating the file | `sqlite` |
/// | `postgres://…`, `postgresql://…` | [`PostgresStore`](crate::PostgresStore) | `postgres` |
///
/// Another scheme, or one whose feature this build lacks, is refused with
/// [`StoreError::InvalidUrl`], which names the scheme but never the rest of the URL (it may
/// hold a password). The store is opened, not prepared: build the issuer with
/// [`TokenIssuerBuilder::prepare`](crate::TokenIssuerBuilder::prepare), which creates the
/// schema and binds the hash key.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use apitoken::{StoreError, TokenIssuer, open_store};
///
/// let issuer = TokenIssuer::builder(open_store("memory:").await?).prepare().await?;
/// # drop(issuer);
/// let refused = open_store("mysql://app:secret@db/app").await.unwrap_err();
/// assert!(matches!(refused, StoreError::InvalidUrl { .. }));
/// assert!(!refused.to_string().contains("secret"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub async fn open_store(url: &str) -> Result<DynTokenStore, StoreError> {
    let url = url.trim();
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    let invalid = |reason: String| Err(StoreError::InvalidUrl { reason });
    match scheme.to_ascii_lowercase().as_str() {
        "memory" if matches!(url.split_once(':'), Some((_, "" | "//"))) => {
            Ok(Box::new(memory::MemoryStore::new()))
        }
        "memory" => invalid("a memory store takes no path: use `memory:`".to_owned()),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Box::new(sqlite::SqliteStore::connect(url).await?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Box::new(postgres::PostgresStore::connect(url).await?)),
        #[cfg(not(feature = "sqlite"))]
        "sqlite" => invalid(
            "this build of apitoken has no SQLite support: enable the cargo feature `sqlite`"
                .to_owned(),
        ),
        #[cfg(not(feature = "postgres"))]
        "postgres" | "postgresql" => invalid(
            "this build of apitoken has no PostgreSQL support: enable the cargo feature `postgres`"
                .to_owned(),
        ),
        _ => {
            // Only a plausible scheme is repeated: the rest may be a password.
            let shown = if !scheme.is_empty()
                && scheme.len() <= 20
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+')
            {
                format!("the scheme `{scheme}:` is not one")
            } else {
                "it has no scheme".to_owned()
            };
            invalid(format!(
                "{shown} of `sqlite://PATH`, `postgres://…` or `memory:`"
            ))
        }
    }
}

/// A boxed error from a storage driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The storage behind a [`TokenIssuer`](crate::TokenIssuer): records and hashes, never raw
/// tokens. Usable as `Arc<dyn TokenStore>` (and through `Box` and `&`).
///
/// # Contract
///
/// Every implementation passes `conformance::run_all` (feature `conformance`),
/// which checks the following. "Live at `t`" means `active` and (`expires_at` absent or
/// later than `t`).
///
/// - **Uniqueness.** No two records share an id or a hash. [`insert`](Self::insert) and
///   [`rotate`](Self::rotate) fail with [`StoreError::Duplicate`] and change nothing if
///   either is taken, however many callers race.
/// - **The live limit is atomic.** With `max_live = Some(n)`, `insert` counts the
///   environment's tokens live at the new token's `created_at` and the check and the
///   insert are one atomic step: concurrent inserts never leave more than `n` live tokens
///   ([`StoreError::LimitReached`] otherwise). `rotate` applies the same limit but does not
///   count the predecessor, which it is replacing.
/// - **Revocation is linearizable.** Once [`revoke`](Self::revoke) has returned, every
///   later [`find_by_hash`](Self::find_by_hash), on any connection, sees `active = false`.
///   Revoking again succeeds and keeps the first `revoked_at`.
/// - **Revocation cascades, in the same step.** Revoking a token also revokes (at the
///   same time) every token live at that time that it created
///   ([`Token::created_by_token`]), directly or through tokens they created; a token
///   created by a rotated predecessor counts as created by its successor. The predecessor
///   itself, and tokens already expired, are left as they are.
/// - **Delegation needs a live creator.** `insert` of a token with a `created_by_token`
///   fails with [`StoreError::NotLive`] naming the creator, and writes nothing, unless
///   the creator is live in the same environment at the new token's `created_at`; the
///   check and a concurrent revocation of the creator are serialized, so no token is ever
///   stored under a revoked creator. (A rotation's successor inherits its predecessor's
///   creator without this check.)
/// - **Rotation is all-or-nothing.** `rotate` inserts the successor and sets the
///   predecessor's expiry (keeping an earlier one) in one atomic step, or does neither.
/// - **A token is rotated at most once.** The same atomic step checks that the
///   predecessor has not been rotated before and records its successor: rotating it
///   again (during its grace period, say) fails with [`StoreError::AlreadyRotated`],
///   naming that successor, and changes nothing, and of concurrent rotations of one token
///   exactly one succeeds. A token thus never has two successors. The record is the
///   store's own; [`Token`] does not show it.
/// - **Look-ups.** Unknown hashes and ids are `Ok(None)`, not errors. [`get`](Self::get)
///   only finds a token in its own environment.
/// - **Listing** returns an environment's tokens in creation order, `(created_at, id)`
///   ascending, after the cursor: paging visits every token exactly once.
/// - **Fidelity.** Every field round-trips exactly: Unicode notes, every scope,
///   timestamps at microsecond precision (the issuer never makes finer ones).
/// - **Failures** are [`StoreError`]s of the right kind with the driver's error as source,
///   never panics; [`StoreError::Unavailable`] when the backend cannot be reached.
///
/// # Writing a store
///
/// Implement the eight required methods, from `insert` to `record_last_use`, with
/// `#[apitoken::async_trait]`; build pages with [`Page::from_overfetch`]; run
/// `conformance::run_all` from your tests. The provided methods have correct defaults:
/// [`prepare`](Self::prepare) and [`close`](Self::close) for a store with a schema or
/// connections, and two speed hooks that only an in-memory store gains from,
/// [`find_credential`](Self::find_credential) and
/// [`find_credential_now`](Self::find_credential_now) (with [`Credential`]).
#[async_trait]
pub trait TokenStore: Send + Sync + core::fmt::Debug {
    /// Adds a record. Fails with `Duplicate` if its id or hash exists, with `LimitReached`
    /// if `max_live` is set and the environment already has that many live tokens, with
    /// `NotLive` if it has a creating token that is not live.
    async fn insert(
        &self,
        token: StoredToken,
        max_live: Option<NonZeroU32>,
    ) -> Result<(), StoreError>;

    /// The record with this hash, in any environment.
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError>;

    /// The record with this id in this environment.
    async fn get(
        &self,
        environment: EnvironmentId,
        id: TokenId,
    ) -> Result<Option<Token>, StoreError>;

    /// A page of the environment's tokens in creation order.
    async fn list(&self, environment: EnvironmentId, page: PageRequest)
    -> Result<Page, StoreError>;

    /// Marks a token revoked at `at` (idempotent: a second call keeps the first time),
    /// with every live token it created, and returns the updated record; `NotFound` if
    /// the environment has no such token.
    async fn revoke(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
    ) -> Result<Token, StoreError>;

    /// Inserts `rotation.successor`, sets the predecessor's expiry and marks the
    /// predecessor rotated, atomically. Fails, changing nothing, with `NotFound` if the
    /// predecessor does not exist in the environment, `AlreadyRotated` (with its
    /// successor) if it has been rotated before, live or not, `NotLive` if it is not live
    /// at the successor's `created_at`, and as `insert` does otherwise. Returns the
    /// updated predecessor.
    async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError>;

    /// Records that a token authenticated at `at`; never moves `last_used_at` backwards.
    /// Unknown ids are ignored.
    async fn record_last_use(&self, id: TokenId, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Makes the store ready for an issuer that hashes with `key`: creates or upgrades its
    /// schema and binds it to the key in one step, or refuses a store bound to another key
    /// with [`StoreError::HashKeyMismatch`] (read with the wrong key, every token would be
    /// unknown) and a schema newer than this library with [`StoreError::SchemaTooNew`].
    /// Running it again changes nothing. [`TokenIssuerBuilder::prepare`](crate::TokenIssuerBuilder::prepare)
    /// calls it. The default, for a store that keeps nothing across restarts, does nothing.
    async fn prepare(&self, key: KeyFingerprint) -> Result<(), StoreError> {
        let _ = key;
        Ok(())
    }

    /// Writes what the store buffers (SQLite's last-use times) and closes its connections;
    /// the store is not used afterwards. The default does nothing.
    async fn close(&self) {}

    // Speed hooks: a store need not implement them; the defaults are correct.

    /// What authentication needs of the record with this hash: the same as
    /// `find_by_hash` without the note and checksum. The default calls `find_by_hash`;
    /// a store overrides it when it can answer without reading the whole record (the
    /// in-memory store skips a cache miss per authentication this way).
    async fn find_credential(&self, hash: &TokenHash) -> Result<Option<Credential>, StoreError> {
        Ok(self.find_by_hash(hash).await?.map(Credential::from))
    }

    /// Answers [`find_credential`](Self::find_credential) without waiting, when the store
    /// holds the answer in memory: `Some(found)` is the answer, `None` means "call
    /// `find_credential`". Authentication tries it first, which spares the in-memory store
    /// and cache hits a boxed future per request. When it answers, the answer must be the
    /// one `find_credential` would give. The default never answers.
    fn find_credential_now(&self, hash: &TokenHash) -> Option<Option<Credential>> {
        let _ = hash;
        None
    }
}

/// What [`TokenStore::rotate`] does in one step.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The environment of both tokens.
    pub environment: EnvironmentId,
    /// The token being replaced.
    pub predecessor: TokenId,
    /// Its new expiry (an earlier existing expiry is kept).
    pub predecessor_expires_at: DateTime<Utc>,
    /// The replacement, created now.
    pub successor: StoredToken,
    /// The environment's live-token limit.
    pub max_live: Option<NonZeroU32>,
}

/// Where a page of a listing starts: after this token in creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The last token's creation time.
    pub created_at: DateTime<Utc>,
    /// The last token's id.
    pub id: TokenId,
}

impl Cursor {
    /// The position just after `token`.
    pub fn after(token: &Token) -> Cursor {
        Cursor {
            created_at: token.created_at,
            id: token.id,
        }
    }
}

/// Which page of a listing to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many tokens (1 to [`PageRequest::MAX_LIMIT`]).
    pub limit: u32,
    /// Start after this position; `None` for the first page.
    pub after: Option<Cursor>,
}

impl PageRequest {
    /// The largest page.
    pub const MAX_LIMIT: u32 = 1000;

    /// The first page of at most `limit` tokens (clamped to 1..=1000).
    pub fn first(limit: u32) -> PageRequest {
        PageRequest {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            after: None,
        }
    }

    /// The same size, after `cursor`.
    pub fn after(self, cursor: Cursor) -> PageRequest {
        PageRequest {
            after: Some(cursor),
            ..self
        }
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest::first(100)
    }
}

/// A page of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The tokens, in creation order.
    pub tokens: Vec<Token>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

impl Page {
    /// A page from up to `limit + 1` tokens in creation order: the extra one, read only to
    /// learn that another page follows, is dropped, and `next` points after the last token
    /// kept. A store implements [`TokenStore::list`] by reading `limit + 1` tokens after
    /// the cursor and handing them here.
    ///
    /// ```
    /// use apitoken::Page;
    ///
    /// let page = Page::from_overfetch(Vec::new(), 10);
    /// assert!(page.tokens.is_empty() && page.next.is_none());
    /// ```
    pub fn from_overfetch(mut tokens: Vec<Token>, limit: u32) -> Page {
        let limit = limit as usize;
        let next = if tokens.len() > limit {
            tokens.truncate(limit);
            tokens.last().map(Cursor::after)
        } else {
            None
        };
        Page { tokens, next }
    }
}

/// Which unique key an insert collided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UniqueKey {
    /// The token id.
    Id,
    /// The token hash.
    Hash,
}

impl core::fmt::Display for UniqueKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            UniqueKey::Id => "id",
            UniqueKey::Hash => "hash",
        })
    }
}

/// The advice for a token rotated before: rotate its successor, by id when known.
pub(crate) fn rotate_instead(successor: &Option<TokenId>) -> String {
    match successor {
        Some(successor) => format!("rotate its successor {successor} instead"),
        None => "rotate its successor instead".to_owned(),
    }
}

/// A store operation failed. Branch on the variant, never on the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record with the same id or hash exists; nothing was written.
    #[error("a token with the same {key} already exists; nothing was written")]
    Duplicate {
        /// The key that collided.
        key: UniqueKey,
    },
    /// No such token in the environment.
    #[error("no token {id} in environment {environment}")]
    NotFound {
        /// The environment searched.
        environment: EnvironmentId,
        /// The id asked for.
        id: TokenId,
    },
    /// The environment already has its limit of live tokens; nothing was written.
    #[error(
        "environment {environment} already has {limit} live tokens: revoke one before issuing another"
    )]
    LimitReached {
        /// The environment.
        environment: EnvironmentId,
        /// Its limit.
        limit: u32,
    },
    /// A rotation's predecessor, or a new token's creating token, is revoked or expired
    /// (or, for a creator, unknown); nothing was written.
    #[error("token {id} is revoked or expired, so it cannot be rotated: issue a new token instead")]
    NotLive {
        /// The predecessor.
        id: TokenId,
    },
    /// A rotation's predecessor was already rotated (it may still be in its grace
    /// period); nothing was written.
    #[error(
        "token {id} has already been rotated, so it cannot be rotated again: {}",
        rotate_instead(.successor)
    )]
    AlreadyRotated {
        /// The predecessor.
        id: TokenId,
        /// The token that replaced it, when the store knows (every store in this crate
        /// does).
        successor: Option<TokenId>,
    },
    /// The backend could not be reached or dropped the connection: retry later.
    #[error(
        "the token store is unavailable ({source}); check that the database is reachable, then retry"
    )]
    Unavailable {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The TLS connection to the database failed for a reason retrying will not change:
    /// the server's certificate did not verify (an unknown root, or a host name the
    /// certificate does not give), TLS was required and the server does not offer it, or
    /// this build has no TLS (feature `postgres-tls`).
    #[error(
        "the TLS connection to the database failed ({source}): check the root certificate (sslrootcert), that the host is a name the server's certificate gives, that the server has TLS on, and that apitoken is built with the `postgres-tls` feature; retrying will not help"
    )]
    Tls {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A record in the store could not be read back.
    #[error("the token store holds a record it cannot read: {message}")]
    Corrupt {
        /// What was wrong.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The database was written with another hash key (fingerprints differ): opening it
    /// with this key would make every token unknown.
    #[error(
        "this database was created with hash key fingerprint {stored}, but the key given has fingerprint {given}: use the original hash key"
    )]
    HashKeyMismatch {
        /// The fingerprint recorded in the database.
        stored: KeyFingerprint,
        /// The fingerprint of the key given.
        given: KeyFingerprint,
    },
    /// [`open`](crate::open_store) was given a URL it cannot open: another scheme, or one
    /// whose cargo feature this build lacks.
    #[error("cannot open a token store from this URL: {reason}")]
    InvalidUrl {
        /// What was wrong, and what is accepted.
        reason: String,
    },
    /// The database's schema is newer than this library knows.
    #[error(
        "the database schema is version {found}, newer than this version of apitoken supports ({supported}): upgrade apitoken"
    )]
    SchemaTooNew {
        /// The version found.
        found: i64,
        /// The newest version this library knows.
        supported: i64,
    },
    /// Any other backend failure.
    #[error("the token store failed: {source}")]
    Backend {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The database, or the disk that holds it, is full; the write was rolled back.
    #[error(
        "the database or the disk that holds it is full ({source}); nothing was written: free space, then retry"
    )]
    Full {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<T: TokenStore + ?Sized> TokenStore for $ty {
            async fn insert(&self, token: StoredToken, max_live: Option<NonZeroU32>) -> Result<(), StoreError> {
                (**self).insert(token, max_live).await
            }
            async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
                (**self).find_by_hash(hash).await
            }
            async fn find_credential(&self, hash: &TokenHash) -> Result<Option<Credential>, StoreError> {
                (**self).find_credential(hash).await
            }
            fn find_credential_now(&self, hash: &TokenHash) -> Option<Option<Credential>> {
                (**self).find_credential_now(hash)
            }
            async fn get(&self, environment: EnvironmentId, id: TokenId) -> Result<Option<Token>, StoreError> {
                (**self).get(environment, id).await
            }
            async fn list(&self, environment: EnvironmentId, page: PageRequest) -> Result<Page, StoreError> {
                (**self).list(environment, page).await
            }
            async fn revoke(&self, environment: EnvironmentId, id: TokenId, at: DateTime<Utc>) -> Result<Token, StoreError> {
                (**self).revoke(environment, id, at).await
            }
            async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError> {
                (**self).rotate(rotation).await
            }
            async fn record_last_use(&self, id: TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
                (**self).record_last_use(id, at).await
            }
            async fn prepare(&self, key: KeyFingerprint) -> Result<(), StoreError> {
                (**self).prepare(key).await
            }
            async fn close(&self) {
                (**self).close().await
            }
        }
    )*};
}

forward_store!(Arc<T>, Box<T>, &T);
