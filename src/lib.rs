//! Issue, store and verify API tokens inside a Rust backend: Dynamic's environment API
//! tokens (`dyn_` + 30 random base-62 characters + a 6-character CRC-32 checksum), shown
//! once, stored only as a BLAKE3 hash, with scopes, environments, expiry, delegation,
//! rotation with a grace period, revocation that reaches every server of a fleet, and
//! leak reports from secret-scanning partners.
//!
//! ```sh
//! cargo add apitoken --features sqlite      # or postgres, or neither (MemoryStore)
//! cargo add tokio --features macros,rt
//! ```
//!
//! # Quick start
//!
//! Besides `apitoken`, this uses `tokio` (any runtime works; the SQL stores need tokio's)
//! and `uuid` (your own ids; [`EnvironmentId::generate`] makes new ones):
//!
//! ```
//! use apitoken::{Creator, EnvironmentId, IssueRequest, MemoryStore, Note, Scope, TokenIssuer, UserId};
//! use uuid::Uuid;
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let issuer = TokenIssuer::new(MemoryStore::new()); // or SqliteStore, PostgresStore
//!     let environment = EnvironmentId::from_uuid(Uuid::from_u128(1));
//!     let alice = Creator::new(UserId::from_uuid(Uuid::from_u128(2)));
//!
//!     // The raw token is in `issued.raw` and nowhere else: show it once.
//!     let request = IssueRequest::new(Note::new("CI deploys")?)
//!         .with_scopes([Scope::ENVIRONMENT_API_TOKENS_READ]);
//!     let issued = issuer.issue(environment, alice.clone(), request).await?;
//!
//!     // Each request: authenticate the `Authorization` header, then authorize.
//!     let header = format!("Bearer {}", issued.raw.expose_secret());
//!     let principal = issuer.authenticate_header(&header).await?;
//!     principal.authorize(environment, &[Scope::ENVIRONMENT_API_TOKENS_READ])?;
//!
//!     issuer.revoke(environment, alice, issued.token.id).await?;
//!     assert!(issuer.authenticate_header(&header).await.unwrap_err().is_unauthenticated());
//!     Ok(())
//! }
//! ```
//!
//! Every refusal is an [`Error`]: malformed, unknown, revoked and expired tokens are four
//! variants for your logs and one 401 for clients ([`http::status`],
//! [`http::public_message`]). A database store is built with
//! [`TokenIssuerBuilder::prepare`], which creates or upgrades its schema and binds it to
//! your [`HashKey`]. To replace the key without revoking tokens, give the issuer a
//! [`HashKeyring`]: the new key current, the old one retired, until
//! [`TokenIssuer::hash_key_usage`] says no live token needs it.
//!
//! # Map
//!
//! | where | what |
//! |---|---|
//! | [`TokenIssuer`], [`TokenIssuerBuilder`] | issue, authenticate, authorize, list, get, revoke, rotate, purge, revoke leaks |
//! | [`Token`], [`IssueRequest`], [`Scope`], [`Note`], [`Principal`], [`Caller`] | the domain: records, requests, who acts |
//! | [`TokenFormat`], [`ParsedToken`], [`RawToken`] | the token format: generation, parsing, the checksum |
//! | [`HashKey`], [`TokenHasher`], [`TokenHash`], [`HashKeyring`] | hashing at rest, keyed or not; replacing the key |
//! | [`TokenStore`], [`MemoryStore`], [`CachedStore`], [`open_store`] | storage: the trait, the stores, a cache that stays coherent across a fleet |
//! | [`Event`], [`ChangeFeed`] | the event log: the audit trail and the feed caches follow |
//! | [`http`] | status codes and public messages for errors; with `axum`, extractors |
//! | [`scan`] | finding and redacting tokens in text |
//! | `leak` | secret-scanning partner reports (GitHub, GitLab) and their signatures |
//! | `conformance` | the suite every store, yours included, passes |
//!
//! # Features
//!
//! | feature | what it adds |
//! |---|---|
//! | `serde` (default) | the reference JSON for every record |
//! | `sqlite` | `SqliteStore`, with SQLite compiled in (sqlx's bundled `libsqlite3-sys`) |
//! | `sqlite-unbundled` | `SqliteStore` on the system's SQLite (3.35.0 or newer, found with pkg-config) |
//! | `postgres`, `postgres-tls` | `PostgresStore`; TLS with rustls |
//! | `axum` | extractors (`Authenticated`, `Authorized`) and `IntoResponse` for [`Error`] |
//! | `leak`, `leak-fetch` | the leak intake; fetching partners' key lists over HTTPS |
//! | `metrics` | counters and a latency histogram through the `metrics` facade |
//! | `conformance` | `conformance::run_all` for a store of your own |
//!
//! The store features expose sqlx 0.9 types (`from_pool`, `pool_options`), and `axum`
//! exposes axum 0.8's traits: a new major version of either is a breaking change here.
//! `libsqlite3-sys` declares `links = "sqlite3"`, so a build holds one SQLite: an
//! application that links its own takes `sqlite-unbundled`.
//!
//! # Observability
//!
//! The library emits `tracing` events and spans: `debug` for each authentication,
//! authorization and read, `info` for each change (issued, revoked, rotated, purged, a
//! leak), `warn` for each failure it handles itself (a last-use write, a cache emptied
//! after a store error). Their fields are ids, environments, counts and outcomes: never
//! a raw token, a hash, a note or an e-mail address. Spans: `apitoken.issue`,
//! `apitoken.authenticate`, `apitoken.revoke`, `apitoken.rotate`, and `apitoken.store`
//! around each store call (field `op`). With no subscriber they cost a load and a branch
//! per call site.
//!
//! With the `metrics` feature, the application's recorder receives
//! `apitoken_authentications_total{outcome}`, `apitoken_changes_total{kind}`,
//! `apitoken_store_errors_total{kind,op}`, `apitoken_cache_total{result}` (hits,
//! misses, invalidations) and the histogram `apitoken_store_call_seconds{op}`.
//!
//! # More
//!
//! The README (in the package, and on the crate's page) covers the project as a whole:
//! the `apitoken` command line, the reference HTTP server, deployment, and the security
//! model (who may revoke whom, bounded work). The repository's `BENCHMARKS.md` and
//! `docs/RELIABILITY.md` say what is measured and what is promised.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's code examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod cidr;
mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod event;
mod format;
mod hash;
pub mod http;
mod issuer;
#[cfg(feature = "leak")]
pub mod leak;
mod model;
mod note;
mod observe;
mod policy;
mod principal;
pub mod scan;
mod scope;
mod secret;
mod store;
#[cfg(feature = "serde")]
mod wire;

// Every item has one path: the domain, the issuer and the stores at the root; the HTTP
// answers, text scanning, leak intake and the conformance suite in their modules.
pub use cidr::{AllowedCidrs, Cidr, CidrError, MAX_ALLOWED_CIDRS};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, MAX_LISTED_SCOPES};
pub use event::{
    Actor, ChangeFeed, Event, EventCursor, EventKind, EventPage, FeedMessage, FeedSource,
    InvalidEventCursor, LeakDetails, LeakReporter, PollingSource,
};
pub use format::{
    Alphabet, CHECKSUM_LEN, Checksum, FormatConfigError, FormatError, InvalidChecksum,
    MAX_PREFIX_LEN, MAX_RANDOM_LEN, MAX_TOKEN_LEN, MIN_RANDOM_LEN, ParsedToken, Prefix,
    TokenFormat, UnknownAlphabet,
};
pub use hash::{
    Candidates, HASH_CONTEXT, HashKey, HashKeyError, HashKeyring, InvalidFingerprint,
    KeyFingerprint, KeyringError, KeyringFingerprints, MAX_RETIRED_KEYS, RetiredKey, TokenHash,
    TokenHasher,
};
pub use issuer::{Caller, LeakOutcome, Purged, TokenIssuer, TokenIssuerBuilder, bearer_token};
pub use model::{
    Creator, Credential, EnvironmentId, IssueRequest, IssuedToken, StoredToken, Token, TokenId,
    UserId,
};
pub use note::{MAX_NOTE_CHARS, Note, NoteError};
pub use policy::{LifetimePolicy, PolicyError};
pub use principal::Principal;
pub use scope::{MAX_SCOPE_LEN, REFERENCE_SCOPES, Scope, ScopeCatalog, ScopeError, Scopes};
pub use secret::RawToken;
pub use store::cached::{CacheStats, CachedStore};
pub use store::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use store::postgres::{PostgresStore, PostgresTimeouts};
#[cfg(any(feature = "sqlite", feature = "sqlite-unbundled"))]
pub use store::sqlite::SqliteStore;
pub use store::{
    BoxError, Cursor, DynTokenStore, InvalidCursor, KeyUsage, Limits, Page, PageRequest, Rehash,
    Retired, Revoked, Rotation, StoreError, TokenStore, UniqueKey, open_store,
};

/// The attribute a [`TokenStore`] implementation needs (`#[apitoken::async_trait]`), so
/// that a store of your own does not need `async-trait` as a dependency of its own.
pub use async_trait::async_trait;
/// What a random generator passed to [`TokenIssuerBuilder::rng`] implements, re-exported so
/// that injecting one needs no `rand_core` dependency of your own.
pub use rand_core::{CryptoRng, Rng, TryCryptoRng, TryRng};
