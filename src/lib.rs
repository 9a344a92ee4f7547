#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
pub mod format;
pub mod hash;
pub mod http;
pub mod issuer;
pub mod model;
pub mod note;
pub mod scan;
pub mod scope;
pub mod secret;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::Error;
pub use format::{Alphabet, Checksum, FormatConfigError, FormatError, ParsedToken, TokenFormat};
pub use hash::{HashKey, HashKeyError, InvalidFingerprint, KeyFingerprint, TokenHash, TokenHasher};
pub use issuer::{Caller, TokenIssuer, TokenIssuerBuilder};
pub use model::{
    Creator, Credential, EnvironmentId, IssueRequest, IssuedToken, Principal, StoredToken, Token,
    TokenId, UserId,
};
pub use note::{Note, NoteError};
pub use scope::{Scope, ScopeCatalog, ScopeError, Scopes};
pub use secret::RawToken;
pub use store::cached::CachedStore;
pub use store::memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use store::postgres::{PostgresStore, PostgresTimeouts};
#[cfg(feature = "sqlite")]
pub use store::sqlite::SqliteStore;
pub use store::{
    Cursor, DynTokenStore, Page, PageRequest, Rotation, StoreError, TokenStore, UniqueKey,
    open_store,
};

/// The attribute a [`TokenStore`] implementation needs (`#[apitoken::async_trait]`), so
/// that a store of your own does not need `async-trait` as a dependency of its own.
pub use async_trait::async_trait;
/// What a random generator passed to [`TokenIssuerBuilder::rng`] implements, re-exported so
/// that injecting one needs no `rand_core` dependency of your own.
pub use rand_core::{CryptoRng, Rng, TryCryptoRng, TryRng};
