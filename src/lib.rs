#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

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
mod principal;
pub mod scan;
mod scope;
mod secret;
mod store;
#[cfg(feature = "serde")]
mod wire;

// Every item has one path: the domain, the issuer and the stores at the root; the HTTP
// answers, text scanning, leak intake and the conformance suite in their modules.
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
    HASH_CONTEXT, HashKey, HashKeyError, InvalidFingerprint, KeyFingerprint, TokenHash, TokenHasher,
};
pub use issuer::{Caller, LeakOutcome, Purged, TokenIssuer, TokenIssuerBuilder, bearer_token};
pub use model::{
    Creator, Credential, EnvironmentId, IssueRequest, IssuedToken, StoredToken, Token, TokenId,
    UserId,
};
pub use note::{MAX_NOTE_CHARS, Note, NoteError};
pub use principal::Principal;
pub use scope::{MAX_SCOPE_LEN, REFERENCE_SCOPES, Scope, ScopeCatalog, ScopeError, Scopes};
pub use secret::RawToken;
pub use store::cached::{CacheStats, CachedStore};
pub use store::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use store::postgres::{PostgresStore, PostgresTimeouts};
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
pub use store::{
    BoxError, Cursor, DynTokenStore, InvalidCursor, Limits, Page, PageRequest, Revoked, Rotation,
    StoreError, TokenStore, UniqueKey, open_store,
};

/// The attribute a [`TokenStore`] implementation needs (`#[apitoken::async_trait]`), so
/// that a store of your own does not need `async-trait` as a dependency of its own.
pub use async_trait::async_trait;
/// What a random generator passed to [`TokenIssuerBuilder::rng`] implements, re-exported so
/// that injecting one needs no `rand_core` dependency of your own.
pub use rand_core::{CryptoRng, Rng, TryCryptoRng, TryRng};
