//! [`TokenStore`]: where token records live.

pub(crate) mod cached;
pub(crate) mod memory;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(any(feature = "sqlite", feature = "sqlite-unbundled", feature = "postgres"))]
mod sql;
#[cfg(any(feature = "sqlite", feature = "sqlite-unbundled"))]
pub(crate) mod sqlite;

use crate::event::{Actor, ChangeFeed, EventCursor, EventPage, LeakDetails};
use crate::hash::{KeyFingerprint, KeyringFingerprints, TokenHash};
use crate::model::{Credential, EnvironmentId, StoredToken, Token, TokenId, UserId};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use core::num::NonZeroU32;
use std::net::IpAddr;
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
/// | `sqlite://PATH`, `sqlite:PATH` (`sqlite:///abs/path` for an absolute one) | [`SqliteStore`], creating the file | `sqlite` |
/// | `postgres://…`, `postgresql://…` | [`PostgresStore`] | `postgres` |
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
///
// The stores of a feature this build lacks link to the documentation of every feature.
#[cfg_attr(
    any(feature = "sqlite", feature = "sqlite-unbundled"),
    doc = "[`SqliteStore`]: crate::SqliteStore"
)]
#[cfg_attr(
    not(any(feature = "sqlite", feature = "sqlite-unbundled")),
    doc = "[`SqliteStore`]: https://docs.rs/apitoken/latest/apitoken/struct.SqliteStore.html"
)]
#[cfg_attr(feature = "postgres", doc = "[`PostgresStore`]: crate::PostgresStore")]
#[cfg_attr(
    not(feature = "postgres"),
    doc = "[`PostgresStore`]: https://docs.rs/apitoken/latest/apitoken/struct.PostgresStore.html"
)]
pub async fn open_store(url: &str) -> Result<DynTokenStore, StoreError> {
    let url = url.trim();
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    let invalid = |reason: String| Err(StoreError::InvalidUrl { reason });
    match scheme.to_ascii_lowercase().as_str() {
        "memory" if matches!(url.split_once(':'), Some((_, "" | "//"))) => {
            Ok(Box::new(memory::MemoryStore::new()))
        }
        "memory" => invalid("a memory store takes no path: use `memory:`".to_owned()),
        #[cfg(any(feature = "sqlite", feature = "sqlite-unbundled"))]
        "sqlite" => Ok(Box::new(sqlite::SqliteStore::connect(url).await?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Box::new(postgres::PostgresStore::connect(url).await?)),
        #[cfg(not(any(feature = "sqlite", feature = "sqlite-unbundled")))]
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
/// - **Limits are atomic.** [`insert`](Self::insert) checks every bound of its [`Limits`]
///   in the same atomic step as the insert, so concurrent inserts never break one: at most
///   `max_live` of the environment's tokens live at the new token's `created_at`
///   ([`StoreError::LimitReached`]), at most `max_total` tokens stored in the environment,
///   revoked and expired ones included until they are purged
///   ([`StoreError::EnvironmentFull`]), and for a token created by a token at most
///   `max_depth` tokens in its chain of creating tokens ([`StoreError::DelegationTooDeep`])
///   and at most `max_per_creator` live tokens created by its creating token itself
///   ([`StoreError::TooManyDelegated`]). `rotate` applies `max_live` without counting the
///   predecessor, which it is replacing, and `max_total`; a successor takes its
///   predecessor's place in the chain, so the delegation bounds do not apply to it.
/// - **Revocation is linearizable.** Once [`revoke`](Self::revoke) has returned, every
///   later [`find_by_hash`](Self::find_by_hash), on any connection, sees `active = false`.
///   Revoking a revoked token changes nothing and keeps the first `revoked_at`.
/// - **Revocation cascades, in the same step.** Revoking a token also revokes (at the
///   same time) every token live at that time that it created
///   ([`Token::created_by_token`]), directly or through tokens they created; a token
///   created by a rotated predecessor counts as created by its successor. Its rotated
///   predecessors still in their grace period are revoked too (a token is often rotated
///   because the old one leaked: revoking the new one must not leave the old one
///   working). Tokens already expired keep their facts. [`Revoked::cascade`] names every
///   token revoked with it. The walk only descends through live tokens (a revoked or
///   expired token's descendants were revoked or had expired with it), so re-revoking a
///   revoked token costs one read.
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
/// - **Lineage.** [`descends_from`](Self::descends_from) answers whether a token is
///   another's descendant exactly as the cascade would reach it, so that a token created
///   by a token acts only on what revoking it would revoke.
/// - **Listing** returns an environment's tokens in creation order, `(created_at, id)`
///   ascending, after the cursor, keeping only those [`PageRequest`]'s filters keep:
///   paging visits every such token exactly once. A page costs the same wherever it starts.
/// - **Purging** ([`purge`](Self::purge)) deletes only tokens that ended (revoked, or
///   expired) before the cut-off and that no unrevoked token names as its creator: never
///   a live token, never one that ended later, never a link a cascade or a delegated
///   token's authority still needs (only a token that can still work needs its line).
/// - **Fidelity.** Every field round-trips exactly: Unicode notes, every scope,
///   timestamps at microsecond precision (the issuer never makes finer ones), address
///   lists in their order, IPv4 and IPv6 last-use addresses.
/// - **Last use.** [`record_last_use`](Self::record_last_use) keeps the address with its
///   time: a reader never sees one use's time with another's address.
/// - **Failures** are [`StoreError`]s of the right kind with the driver's error as source,
///   never panics; [`StoreError::Unavailable`] when the backend cannot be reached.
/// - **The event log** (a store that keeps one). Every change appends its
///   [`Event`](crate::Event)s in the same atomic step: `insert` one `Issued`; `revoke` one
///   `Revoked` for the token (cause `None`) and one for each token of its cascade (cause:
///   the token revoked), none when it was revoked already; `rotate` `Issued` for the
///   successor, then `Rotated` for the predecessor. A change that fails writes none.
///   Sequence numbers grow in commit order: once a reader has seen event `n`, no event
///   below `n` can appear later, so reading "after the last one seen" never skips one
///   (on a database where transactions commit out of order, the store serializes its
///   appends). [`events_since`](Self::events_since) never skips pruned events silently.
///
/// # Writing a store
///
/// Implement the ten required methods, from `insert` to `record_last_use`, with
/// `#[apitoken::async_trait]`; build pages with [`Page::from_overfetch`]; run
/// `conformance::run_all` from your tests. The provided methods have correct defaults:
/// [`prepare`](Self::prepare) and [`close`](Self::close) for a store with a schema or
/// connections, and two speed hooks that only an in-memory store gains from,
/// [`find_credential`](Self::find_credential) and
/// [`find_credential_now`](Self::find_credential_now) (with [`Credential`]).
///
/// A store without an event log works everywhere a store does, but has no audit trail,
/// and a [`CachedStore`](crate::CachedStore) in front of it cannot learn of changes made
/// by other processes: it serves a token revoked elsewhere until the entry's TTL runs
/// out. To keep a log, append the events above in each change's transaction, implement
/// [`events_since`](Self::events_since), [`event_head`](Self::event_head) and
/// [`prune_events`](Self::prune_events), and [`watch`](Self::watch) with a
/// [`ChangeFeed`] over a [`FeedSource`](crate::FeedSource)
/// ([`PollingSource`](crate::PollingSource) when the database has no notifications);
/// `conformance::run_all` then checks the log too.
///
/// # Keyrings
///
/// An issuer with a [`HashKeyring`](crate::HashKeyring) hashes new tokens with its current
/// key and finds older ones under retired keys. A store that supports it records, with
/// every row, which key made its hash ([`StoredToken::hash_key`]), and the set of keys its
/// rows need:
///
/// - **Binding.** [`prepare_keyring`](Self::prepare_keyring) refuses a ring that lacks a
///   key of the set, naming it, and adds the ring's current key to the set, in one step;
///   [`check_keyring`](Self::check_keyring) refuses the same without writing. `insert` and
///   `rehash` write rows only under a key the set holds (the issuer's current key, which
///   its `prepare` added). A store whose rows predate keyrings counts them as its bound
///   key's.
/// - **One look-up.** [`find_by_any_hash`](Self::find_by_any_hash) finds a token under
///   any of the ring's keys in one store call.
/// - **Rehash on use.** [`rehash`](Self::rehash) moves a live token to the current key
///   only if its hash is still the one read: a revocation racing it always wins.
/// - **Retirement.** [`hash_key_usage`](Self::hash_key_usage) counts each key's live
///   tokens; [`retire_hash_key`](Self::retire_hash_key) removes a key from the set only
///   when none is live (or after revoking them), so the set never loses a key a live token
///   needs.
///
/// A store that records no keys keeps the defaults: it serves a ring of one key, finds
/// tokens under retired keys through `find_many_by_hash` but never rehashes them, and
/// answers [`StoreError::NoKeyRecords`] to counting and retiring.
#[async_trait]
pub trait TokenStore: Send + Sync + core::fmt::Debug {
    /// Adds a record. Fails, writing nothing, with `Duplicate` if its id or hash exists,
    /// with `NotLive` if it has a creating token that is not live, and with the error of
    /// the first bound of `limits` it would break (see the contract).
    async fn insert(&self, token: StoredToken, limits: Limits) -> Result<(), StoreError>;

    /// The record with this hash, in any environment.
    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError>;

    /// The records with these hashes, in any environment: one entry per hash, in order
    /// (`None` for a hash no record has; a hash given twice is answered twice). For the
    /// leak path, where a report names up to a thousand tokens at once: the store may read
    /// them in as few round trips as it likes, and need not take the same time for a miss
    /// as for a hit (a report's answer never depends on how long a look-up took).
    ///
    /// The default asks [`find_by_hash`](Self::find_by_hash) for each.
    async fn find_many_by_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Vec<Option<Token>>, StoreError> {
        let mut found = Vec::with_capacity(hashes.len());
        for hash in hashes {
            found.push(self.find_by_hash(hash).await?);
        }
        Ok(found)
    }

    /// The record with this id in this environment.
    async fn get(
        &self,
        environment: EnvironmentId,
        id: TokenId,
    ) -> Result<Option<Token>, StoreError>;

    /// A page of the environment's tokens in creation order, filtered as `page` asks.
    async fn list(&self, environment: EnvironmentId, page: PageRequest)
    -> Result<Page, StoreError>;

    /// Marks a token revoked at `at`, with every live token it created and its rotated
    /// predecessors still live (see the contract), and returns the updated record with the
    /// ids of the others; `NotFound` if the environment has no such token. Revoking a
    /// revoked token changes nothing (it keeps its first `revoked_at`) and revokes nothing
    /// else. `by` is who revoked it, for the event log.
    async fn revoke(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Actor,
    ) -> Result<Revoked, StoreError>;

    /// Revokes a token reported leaked, as [`revoke`](Self::revoke) does, with the same
    /// cascade: the token's own event is [`EventKind::Leaked`](crate::EventKind::Leaked),
    /// by [`Actor::Reporter`], holding `leak`; its cascade's are `Revoked`, caused by it.
    /// A token revoked already changes nothing and logs nothing, so a report sent twice
    /// changes nothing the second time.
    ///
    /// The default, for a store that keeps no event log, revokes it as the reporter.
    async fn revoke_leaked(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        leak: &LeakDetails,
    ) -> Result<Revoked, StoreError> {
        let _ = leak;
        self.revoke(environment, id, at, Actor::Reporter).await
    }

    /// Revokes several tokens reported leaked (each as [`revoke_leaked`](Self::revoke_leaked)
    /// does, with its own report, all at `at`), in as few transactions as the store
    /// likes: one report may name a thousand tokens, and a transaction each would make
    /// it wait on a thousand commits. Answers one entry per item, in order: the token as
    /// revoked (a token revoked already, or named twice, is returned as it is, and
    /// changes nothing), or `None` if its environment has no such token. On an error,
    /// items of transactions committed before it stay revoked.
    ///
    /// The default revokes them one at a time.
    async fn revoke_leaked_many(
        &self,
        leaks: &[(EnvironmentId, TokenId, &LeakDetails)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Option<Revoked>>, StoreError> {
        let mut revoked = Vec::with_capacity(leaks.len());
        for &(environment, id, leak) in leaks {
            revoked.push(match self.revoke_leaked(environment, id, at, leak).await {
                Ok(done) => Some(done),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            });
        }
        Ok(revoked)
    }

    /// Inserts `rotation.successor`, sets the predecessor's expiry and marks the
    /// predecessor rotated, atomically. Fails, changing nothing, with `NotFound` if the
    /// predecessor does not exist in the environment, `AlreadyRotated` (with its
    /// successor) if it has been rotated before, live or not, `NotLive` if it is not live
    /// at the successor's `created_at` or the successor would be born expired, and as
    /// `insert` does otherwise. Returns the updated predecessor.
    async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError>;

    /// Whether token `id` of `environment` is `ancestor` or descends from it: created by
    /// it, directly or through tokens it created, where a rotated token's successor
    /// stands for it (what a token's rotated predecessors created counts as its own, and
    /// a successor descends from its predecessors' line). False for an unknown `id`.
    async fn descends_from(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        ancestor: TokenId,
    ) -> Result<bool, StoreError>;

    /// Deletes at most `max` tokens, of any environment, that ended before `ended_before`
    /// (revoked then, or expired then) and that no unrevoked token names as its creating
    /// token (those go once such descendants have: call again until it returns 0).
    /// Returns how many it deleted. Each call is short, so that a large purge never holds
    /// the store's locks for long.
    async fn purge(&self, ended_before: DateTime<Utc>, max: u32) -> Result<u32, StoreError>;

    /// Records that a token authenticated at `at` from the client address `from` (`None`:
    /// not known). The address goes with its time: a use later than the recorded one
    /// sets both [`last_used_at`](Token::last_used_at) and
    /// [`last_used_ip`](Token::last_used_ip) (an unknown address clears the old one, which
    /// belonged to another use); an earlier or equal one changes neither, so
    /// `last_used_at` never moves backwards. Unknown ids are ignored. The issuer calls it
    /// at most once per token per interval
    /// ([`last_use_interval`](crate::TokenIssuerBuilder::last_use_interval)).
    async fn record_last_use(
        &self,
        id: TokenId,
        at: DateTime<Utc>,
        from: Option<IpAddr>,
    ) -> Result<(), StoreError>;

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

    /// Checks, reading only, that the store can serve an issuer that hashes with `key`: it
    /// answers, holds the schema [`prepare`](Self::prepare) writes
    /// ([`StoreError::NotPrepared`] for none or an older one, [`StoreError::SchemaTooNew`]
    /// for a newer one) and is bound to `key` ([`StoreError::HashKeyMismatch`]). What a
    /// readiness probe asks (the reference server's `/readyz`): one or two small reads,
    /// cheap enough to ask every few seconds. The default, for a store that keeps nothing
    /// across restarts, answers `Ok`.
    async fn check(&self, key: KeyFingerprint) -> Result<(), StoreError> {
        let _ = key;
        Ok(())
    }

    /// Writes what the store buffers (SQLite's last-use times) and closes its connections;
    /// the store is not used afterwards. The default does nothing.
    async fn close(&self) {}

    // The keyring: a store that records which key hashed each row implements these; the
    // defaults suit a store that does not (it then serves a ring of one key only).

    /// [`prepare`](Self::prepare) for an issuer with a [`HashKeyring`](crate::HashKeyring):
    /// creates or upgrades the schema, refuses a ring that lacks a key the store's rows
    /// need ([`StoreError::KeyringLacksKey`] naming it; [`StoreError::HashKeyMismatch`]
    /// for a ring of one key, as `prepare` does), and records the current key as one the
    /// rows need, all in one step. What [`TokenIssuerBuilder::prepare`](crate::TokenIssuerBuilder::prepare)
    /// calls. The default prepares for the current key alone.
    async fn prepare_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        self.prepare(keys.current()).await
    }

    /// [`check`](Self::check) for a keyring: reading only, the same refusals as
    /// [`prepare_keyring`](Self::prepare_keyring). The default checks the current key
    /// alone.
    async fn check_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        self.check(keys.current()).await
    }

    /// The record with any of these hashes (a token's hash under each key of a keyring,
    /// current first), with the position of the hash that found it: authentication under
    /// a keyring. A store in this crate reads it in one round trip, one indexed query over
    /// every candidate, and takes as long for a miss as for a hit (as `find_by_hash`
    /// does), so that an unknown token costs one look-up whatever the ring's size. Two
    /// records never answer for one token (each key makes different hashes); if they did,
    /// the first hash's wins.
    ///
    /// The default asks [`find_by_hash`](Self::find_by_hash) for one hash and
    /// [`find_many_by_hash`](Self::find_many_by_hash) (one call) for several.
    async fn find_by_any_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Option<(usize, Token)>, StoreError> {
        if let [hash] = hashes {
            return Ok(self.find_by_hash(hash).await?.map(|token| (0, token)));
        }
        let found = self.find_many_by_hash(hashes).await?;
        Ok(found
            .into_iter()
            .enumerate()
            .find_map(|(i, token)| Some((i, token?))))
    }

    /// [`find_by_any_hash`](Self::find_by_any_hash) without waiting, as
    /// [`find_credential_now`](Self::find_credential_now) is to `find_credential`: `None`
    /// means "call `find_by_any_hash`". The default answers for one hash as
    /// `find_credential_now` does, and never for several.
    fn find_credential_any_now(&self, hashes: &[TokenHash]) -> Option<Option<(usize, Credential)>> {
        match hashes {
            [hash] => Some(self.find_credential_now(hash)?.map(|found| (0, found))),
            _ => None,
        }
    }

    /// Replaces the hash of a token found under a retired key with its hash under the
    /// current key, in one atomic conditional step: only if the record still has the hash
    /// that was read (`rehash.from`) and is live at `rehash.at`, so that a token revoked,
    /// expired or rehashed meanwhile is left as it is (a revocation always wins: nothing
    /// here sets `active` or an expiry). Appends one [`Rehashed`](crate::EventKind::Rehashed)
    /// event by the token itself in the same step. Returns whether it replaced the hash.
    ///
    /// The default, for a store that does not record keys, replaces nothing: its tokens
    /// keep working under their retired key for as long as the ring has it.
    async fn rehash(&self, rehash: &Rehash) -> Result<bool, StoreError> {
        let _ = rehash;
        Ok(false)
    }

    /// For each hash key the store records, and each key a token live at `at` was hashed
    /// with: how many such live tokens, how many of them never expire, and the latest
    /// expiry among the others. In no particular order. The default fails with
    /// [`StoreError::NoKeyRecords`].
    async fn hash_key_usage(&self, at: DateTime<Utc>) -> Result<Vec<KeyUsage>, StoreError> {
        let _ = at;
        Err(StoreError::NoKeyRecords)
    }

    /// Retires the hash key `key`: forgets it as a key the rows need, so that
    /// [`prepare_keyring`](Self::prepare_keyring) no longer asks for it. Refuses, changing
    /// nothing, with [`StoreError::HashKeyInUse`] while tokens it hashed are live at `at`,
    /// unless `revoke_remaining` names who revokes them: each is then revoked at `at` as
    /// [`revoke`](Self::revoke) does (with its cascade), its own event a
    /// [`KeyRetired`](crate::EventKind::KeyRetired), in short transactions, before the key
    /// is forgotten. Tokens it hashed that had ended stay (they could not authenticate
    /// anyway; `purge` deletes them). Retiring a key the store does not record succeeds
    /// and changes nothing. The default fails with [`StoreError::NoKeyRecords`].
    async fn retire_hash_key(
        &self,
        key: KeyFingerprint,
        at: DateTime<Utc>,
        revoke_remaining: Option<Actor>,
    ) -> Result<Retired, StoreError> {
        let _ = (key, at, revoke_remaining);
        Err(StoreError::NoKeyRecords)
    }

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

    // The event log: a store need not keep one; the defaults say it keeps none.

    /// Up to `limit` events (1 to 1,000) after `after` in sequence order, of one
    /// environment or of all: the audit trail, and what a [`ChangeFeed`] reads. Fails with
    /// [`StoreError::EventsPruned`] when events after `after` were pruned (the reader must
    /// resynchronise), never skipping them silently. The default fails with
    /// [`StoreError::NoEventLog`].
    async fn events_since(
        &self,
        environment: Option<EnvironmentId>,
        after: EventCursor,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        let _ = (environment, after, limit);
        Err(StoreError::NoEventLog)
    }

    /// The position after the newest event: where a reader that wants only what happens
    /// from now on starts. The default fails with [`StoreError::NoEventLog`].
    async fn event_head(&self) -> Result<EventCursor, StoreError> {
        Err(StoreError::NoEventLog)
    }

    /// Deletes at most `max` events older than `before`, oldest first, and returns how
    /// many; a reader whose cursor they were after is then told
    /// ([`StoreError::EventsPruned`]). The default, for a store without a log, deletes
    /// nothing.
    async fn prune_events(&self, before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        let _ = (before, max);
        Ok(0)
    }

    /// Forgets what reporters said of at most `max` leaks logged before `before` (the
    /// [`LeakDetails`] source, URL and token type of `Leaked` events; the event and its
    /// reporter stay), oldest first, and returns how many. The default, for a store
    /// without a log, forgets nothing.
    async fn forget_leak_details(
        &self,
        before: DateTime<Utc>,
        max: u32,
    ) -> Result<u32, StoreError> {
        let _ = (before, max);
        Ok(0)
    }

    /// A feed of the events after `after` (see [`ChangeFeed`]), woken by the store's
    /// notifications where it has them. Needs a tokio runtime when pulled. The default
    /// fails with [`StoreError::NoEventLog`].
    fn watch(&self, after: EventCursor) -> Result<ChangeFeed, StoreError> {
        let _ = after;
        Err(StoreError::NoEventLog)
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
    /// The bounds the successor must respect (see the contract).
    pub limits: Limits,
    /// Who rotated it, for the event log.
    pub actor: Actor,
}

/// The bounds an [`insert`](TokenStore::insert) or a [`rotate`](TokenStore::rotate) must
/// respect, each checked in the same atomic step as the write. `None` is no bound.
///
/// ```
/// use apitoken::Limits;
/// use core::num::NonZeroU32;
///
/// let strict = Limits { max_live: NonZeroU32::new(10), ..Limits::default() };
/// assert_eq!(strict.max_total, Limits::default().max_total);
/// assert_eq!(Limits::NONE.max_total, None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// At most this many of an environment's tokens live at once
    /// ([`StoreError::LimitReached`]). Default: no bound.
    pub max_live: Option<NonZeroU32>,
    /// At most this many tokens stored per environment, revoked and expired ones included
    /// until [purged](TokenStore::purge) ([`StoreError::EnvironmentFull`]), so that one
    /// tenant cannot grow the store without end. Default: 100,000.
    pub max_total: Option<NonZeroU32>,
    /// At most this many tokens in a chain of tokens creating tokens: a token a user
    /// created is at depth 0, one it created at depth 1 ([`StoreError::DelegationTooDeep`]).
    /// Default: 8.
    pub max_depth: Option<NonZeroU32>,
    /// At most this many live tokens created by one token
    /// ([`StoreError::TooManyDelegated`]), which bounds the work of revoking it.
    /// Default: 1,000.
    pub max_per_creator: Option<NonZeroU32>,
}

impl Limits {
    /// No bound at all.
    pub const NONE: Limits = Limits {
        max_live: None,
        max_total: None,
        max_depth: None,
        max_per_creator: None,
    };
}

impl Default for Limits {
    /// The issuer's defaults: no live-token bound, 100,000 tokens per environment, chains
    /// of delegation 8 deep, 1,000 live tokens per creating token.
    fn default() -> Self {
        Limits {
            max_live: None,
            max_total: NonZeroU32::new(100_000),
            max_depth: NonZeroU32::new(8),
            max_per_creator: NonZeroU32::new(1_000),
        }
    }
}

/// What [`TokenStore::revoke`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revoked {
    /// The token, as revoked.
    pub token: Token,
    /// The other tokens revoked in the same step: its live descendants and its rotated
    /// predecessors still in their grace period, in no particular order. Empty when the
    /// token was revoked already.
    pub cascade: Vec<TokenId>,
}

/// What [`TokenStore::rehash`] does: token `id` (of `environment`), found by hash `from`
/// under a retired key at `at`, gets hash `to`, made with the current key `key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rehash {
    /// The token.
    pub id: TokenId,
    /// Its environment, for the event.
    pub environment: EnvironmentId,
    /// The hash it was found by (under a retired key).
    pub from: TokenHash,
    /// Its hash under the current key.
    pub to: TokenHash,
    /// The current key's fingerprint.
    pub key: KeyFingerprint,
    /// When it was used; it must be live then.
    pub at: DateTime<Utc>,
}

/// How many live tokens one hash key hashed ([`TokenStore::hash_key_usage`]): what
/// deciding when to retire it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyUsage {
    /// The key.
    pub key: KeyFingerprint,
    /// Its tokens live at the time asked.
    pub live: u64,
    /// How many of those never expire.
    pub never_expiring: u64,
    /// The latest expiry among those that expire.
    pub latest_expiry: Option<DateTime<Utc>>,
}

impl KeyUsage {
    /// The first day (UTC) the key can be retired without revoking anything if none of
    /// its tokens is used before then: today (the day of `now`) when none is live, the
    /// day its last token expires, `None` while some never expire. Tokens used meanwhile
    /// are rehashed to the current key, so it may come sooner.
    ///
    /// ```
    /// use apitoken::KeyUsage;
    /// use chrono::{NaiveDate, TimeZone, Utc};
    ///
    /// let now = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
    /// let usage = KeyUsage {
    ///     key: apitoken::KeyFingerprint::Unkeyed,
    ///     live: 2,
    ///     never_expiring: 0,
    ///     latest_expiry: Some(Utc.with_ymd_and_hms(2026, 4, 1, 9, 30, 0).unwrap()),
    /// };
    /// assert_eq!(usage.retirable_on(now), NaiveDate::from_ymd_opt(2026, 4, 1));
    /// ```
    pub fn retirable_on(&self, now: DateTime<Utc>) -> Option<chrono::NaiveDate> {
        if self.live == 0 {
            return Some(now.date_naive());
        }
        if self.never_expiring > 0 {
            return None;
        }
        self.latest_expiry.map(|at| at.max(now).date_naive())
    }
}

/// What [`TokenStore::retire_hash_key`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retired {
    /// The key retired.
    pub key: KeyFingerprint,
    /// The tokens revoked because it was retired (with `revoke_remaining`), cascades
    /// included; empty otherwise.
    pub revoked: Vec<TokenId>,
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
    /// Its opaque text form, 48 hexadecimal digits (the creation time in microseconds,
    /// then the id): what an HTTP API hands out as `nextCursor`. Parse it back with
    /// [`str::parse`].
    ///
    /// ```
    /// use apitoken::{Cursor, TokenId};
    /// use chrono::DateTime;
    ///
    /// let cursor = Cursor {
    ///     created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
    ///     id: TokenId::from_uuid(uuid::Uuid::from_u128(7)),
    /// };
    /// assert_eq!(cursor.to_string().parse::<Cursor>(), Ok(cursor));
    /// assert!("not a cursor".parse::<Cursor>().is_err());
    /// // Any 48 lower-case hexadecimal digits are a position, if one before or after
    /// // every token.
    /// assert!("f".repeat(48).parse::<Cursor>().is_ok());
    /// assert!("7".repeat(48).parse::<Cursor>().is_ok());
    /// ```
    pub const TEXT_LEN: usize = 48;

    /// The position just after `token`.
    pub fn after(token: &Token) -> Cursor {
        Cursor {
            created_at: token.created_at,
            id: token.id,
        }
    }
}

impl core::fmt::Display for Cursor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // Two's complement keeps the order of times before 1970 too, not that it matters
        // to an opaque value.
        write!(
            f,
            "{:016x}{:032x}",
            self.created_at.timestamp_micros() as u64,
            self.id.as_uuid().as_u128()
        )
    }
}

/// A text that is not a [`Cursor`] this library wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a listing cursor: pass back the nextCursor of the previous page as it is, or none for the first page"
)]
pub struct InvalidCursor;

impl core::str::FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lowercase_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if s.len() != Cursor::TEXT_LEN || !lowercase_hex(s) {
            return Err(InvalidCursor);
        }
        let (time, id) = s.split_at(16);
        let micros = u64::from_str_radix(time, 16).map_err(|_| InvalidCursor)? as i64;
        let id = u128::from_str_radix(id, 16).map_err(|_| InvalidCursor)?;
        // Every well-formed text is a position: one past the times a token can have is
        // before the first or after the last of them.
        let (earliest, latest) = (DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC);
        let created_at = DateTime::from_timestamp_micros(micros).unwrap_or(
            if micros < earliest.timestamp_micros() {
                earliest
            } else {
                latest
            },
        );
        Ok(Cursor {
            created_at,
            id: TokenId::from_uuid(uuid::Uuid::from_u128(id)),
        })
    }
}

/// Which page of a listing to read, and which tokens it keeps.
///
/// ```
/// use apitoken::{PageRequest, UserId};
/// use chrono::Utc;
///
/// // The first 50 tokens of one user that work now.
/// let request = PageRequest::first(50)
///     .live_at(Utc::now())
///     .created_by(UserId::from_uuid(uuid::Uuid::nil()));
/// assert_eq!(request.limit, 50);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageRequest {
    /// At most this many tokens (1 to [`PageRequest::MAX_LIMIT`]).
    pub limit: u32,
    /// Start after this position; `None` for the first page.
    pub after: Option<Cursor>,
    /// Only tokens live at this time (active and not expired); `None` keeps revoked and
    /// expired ones too.
    pub live_at: Option<DateTime<Utc>>,
    /// With [`live_at`](Self::live_at) only: also leave out tokens last used (or, never
    /// used, created) at or before this time, which an idle expiry has ended
    /// ([`LifetimePolicy::idle_expiry`](crate::LifetimePolicy::idle_expiry)). The issuer
    /// sets it from the environment's policy in [`TokenIssuer::list`](crate::TokenIssuer::list).
    pub used_after: Option<DateTime<Utc>>,
    /// Only tokens created for this user ([`Token::created_by`]).
    pub created_by: Option<UserId>,
}

impl PageRequest {
    /// The largest page.
    pub const MAX_LIMIT: u32 = 1000;

    /// The first page of at most `limit` tokens (clamped to 1..=1000).
    pub fn first(limit: u32) -> PageRequest {
        PageRequest {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            after: None,
            live_at: None,
            used_after: None,
            created_by: None,
        }
    }

    /// The same, keeping only tokens live at `at`.
    pub fn live_at(self, at: DateTime<Utc>) -> PageRequest {
        PageRequest {
            live_at: Some(at),
            ..self
        }
    }

    /// The same, with [`live_at`](Self::live_at), leaving out tokens last used (or, never
    /// used, created) at or before `at`.
    pub fn used_after(self, at: DateTime<Utc>) -> PageRequest {
        PageRequest {
            used_after: Some(at),
            ..self
        }
    }

    /// The same, keeping only tokens created for `user`.
    pub fn created_by(self, user: UserId) -> PageRequest {
        PageRequest {
            created_by: Some(user),
            ..self
        }
    }

    /// Whether `token` passes the filters (not the position): for stores that filter
    /// what they read.
    pub fn keeps(&self, token: &Token) -> bool {
        self.live_at.is_none_or(|at| {
            token.is_live_at(at)
                && self.used_after.is_none_or(|after| {
                    token
                        .last_used_at
                        .map_or(token.created_at, |used| used.max(token.created_at))
                        > after
                })
        }) && self
            .created_by
            .is_none_or(|user| token.created_by.id == user)
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

/// Fails when the rows need the key `stored` and `keys` lacks it:
/// [`StoreError::HashKeyMismatch`] for a ring of one key (as before keyrings),
/// [`StoreError::KeyringLacksKey`] for a ring with retired keys.
pub(crate) fn check_needed(
    stored: KeyFingerprint,
    keys: &KeyringFingerprints,
) -> Result<(), StoreError> {
    if keys.contains(stored) {
        Ok(())
    } else if keys.is_single() {
        Err(StoreError::HashKeyMismatch {
            stored,
            given: keys.current(),
        })
    } else {
        Err(StoreError::KeyringLacksKey {
            missing: stored,
            current: keys.current(),
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
    /// The environment already holds its limit of tokens, revoked and expired ones
    /// included; nothing was written.
    #[error(
        "environment {environment} already holds {limit} tokens, revoked and expired ones included: purge old ones (`apitoken purge`) or raise the limit"
    )]
    EnvironmentFull {
        /// The environment.
        environment: EnvironmentId,
        /// Its limit.
        limit: u32,
    },
    /// The creating token already has its limit of live tokens it created; nothing was
    /// written.
    #[error(
        "token {creator} has already created {limit} live tokens, the most one token may: revoke one of them first"
    )]
    TooManyDelegated {
        /// The environment.
        environment: EnvironmentId,
        /// The creating token.
        creator: TokenId,
        /// The limit.
        limit: u32,
    },
    /// The creating token is at the deepest level of delegation allowed, so it may not
    /// create tokens; nothing was written.
    #[error(
        "token {creator} is {limit} tokens deep in a chain of tokens creating tokens, the most allowed: create the token from a token higher in the chain"
    )]
    DelegationTooDeep {
        /// The creating token.
        creator: TokenId,
        /// The deepest level allowed.
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
    /// The store holds live tokens hashed with a key the keyring given lacks (it has
    /// retired keys; a ring of one key is refused with [`StoreError::HashKeyMismatch`]
    /// instead): opened with that ring, those tokens would be unknown.
    #[error(
        "this database holds tokens hashed with key {missing}, which the keyring given (current key {current}) lacks: add {missing} to the keyring as a retired key (a line after the first of --hash-key-file, or APITOKEN_RETIRED_HASH_KEYS), or retire it for good first (`apitoken keys retire {missing}`)"
    )]
    KeyringLacksKey {
        /// A key the store's rows need.
        missing: KeyFingerprint,
        /// The current key of the ring given.
        current: KeyFingerprint,
    },
    /// A hash key cannot be retired: live tokens are still hashed with it; nothing was
    /// changed.
    #[error(
        "{live} live tokens are still hashed with key {key}, so it cannot be retired yet: wait until each is used (it is then rehashed to the current key) or expires (`apitoken keys status` gives the day), or revoke them with `apitoken keys retire {key} --revoke-remaining`"
    )]
    HashKeyInUse {
        /// The key.
        key: KeyFingerprint,
        /// How many live tokens it hashed.
        live: u64,
    },
    /// The key asked to be retired is the issuer's current key, which hashes every new
    /// token; nothing was changed.
    #[error(
        "key {key} is the current hash key, which hashes every new token, so it cannot be retired: make another key current first (the first line of --hash-key-file, or APITOKEN_HASH_KEY, with this one retired after it), then retire this one"
    )]
    CurrentHashKey {
        /// The key.
        key: KeyFingerprint,
    },
    /// The store does not record which hash key hashed each token (a store written before
    /// keyrings), so its keys cannot be counted or retired.
    #[error(
        "this token store does not record which hash key hashed each token, so its keys cannot be counted or retired: use SQLite, PostgreSQL or the in-memory store, or implement the keyring methods (see \"Keyrings\" in the TokenStore docs)"
    )]
    NoKeyRecords,
    /// [`open`](crate::open_store) or [`PostgresStore::connect`] was
    /// given a URL it cannot open: another scheme, one whose cargo feature this build
    /// lacks, or a PostgreSQL URL without `//` or that the driver cannot read. The reason
    /// never repeats the URL's password.
    ///
    #[cfg_attr(
        feature = "postgres",
        doc = "[`PostgresStore::connect`]: crate::PostgresStore::connect"
    )]
    #[cfg_attr(
        not(feature = "postgres"),
        doc = "[`PostgresStore::connect`]: https://docs.rs/apitoken/latest/apitoken/struct.PostgresStore.html#method.connect"
    )]
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
    /// The database holds no apitoken schema, or an older one than this library writes:
    /// [`TokenStore::prepare`] has not run with this version (see [`TokenStore::check`]).
    #[error(
        "the database schema is version {found} and this version of apitoken needs version {current}: prepare the store (TokenIssuerBuilder::prepare, or any apitoken command that writes) to create or upgrade it"
    )]
    NotPrepared {
        /// The version found, 0 for none.
        found: i64,
        /// The version this library writes.
        current: i64,
    },
    /// The store keeps no event log (a store written without one), so it has no audit
    /// trail or change feed.
    #[error(
        "this token store keeps no event log, so it has no audit trail or change feed: use SQLite, PostgreSQL or the in-memory store, or add a log to the store (see \"Writing a store\" in the TokenStore docs)"
    )]
    NoEventLog,
    /// Events after the cursor were pruned before they were read (the log keeps them for
    /// a set time): what was derived from the log may be stale.
    #[error(
        "the events after {after} were pruned before they were read (the log now starts after {resumed}): resynchronise, dropping what you derived from the log, then read on from {resumed}"
    )]
    EventsPruned {
        /// The cursor given.
        after: EventCursor,
        /// The oldest position the log still holds.
        resumed: EventCursor,
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
            async fn insert(&self, token: StoredToken, limits: Limits) -> Result<(), StoreError> {
                (**self).insert(token, limits).await
            }
            async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
                (**self).find_by_hash(hash).await
            }
            async fn find_many_by_hash(&self, hashes: &[TokenHash]) -> Result<Vec<Option<Token>>, StoreError> {
                (**self).find_many_by_hash(hashes).await
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
            async fn revoke(&self, environment: EnvironmentId, id: TokenId, at: DateTime<Utc>, by: Actor) -> Result<Revoked, StoreError> {
                (**self).revoke(environment, id, at, by).await
            }
            async fn revoke_leaked(&self, environment: EnvironmentId, id: TokenId, at: DateTime<Utc>, leak: &LeakDetails) -> Result<Revoked, StoreError> {
                (**self).revoke_leaked(environment, id, at, leak).await
            }
            async fn revoke_leaked_many(&self, leaks: &[(EnvironmentId, TokenId, &LeakDetails)], at: DateTime<Utc>) -> Result<Vec<Option<Revoked>>, StoreError> {
                (**self).revoke_leaked_many(leaks, at).await
            }
            async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError> {
                (**self).rotate(rotation).await
            }
            async fn descends_from(&self, environment: EnvironmentId, id: TokenId, ancestor: TokenId) -> Result<bool, StoreError> {
                (**self).descends_from(environment, id, ancestor).await
            }
            async fn purge(&self, ended_before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
                (**self).purge(ended_before, max).await
            }
            async fn record_last_use(&self, id: TokenId, at: DateTime<Utc>, from: Option<IpAddr>) -> Result<(), StoreError> {
                (**self).record_last_use(id, at, from).await
            }
            async fn prepare(&self, key: KeyFingerprint) -> Result<(), StoreError> {
                (**self).prepare(key).await
            }
            async fn check(&self, key: KeyFingerprint) -> Result<(), StoreError> {
                (**self).check(key).await
            }
            async fn prepare_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
                (**self).prepare_keyring(keys).await
            }
            async fn check_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
                (**self).check_keyring(keys).await
            }
            async fn find_by_any_hash(&self, hashes: &[TokenHash]) -> Result<Option<(usize, Token)>, StoreError> {
                (**self).find_by_any_hash(hashes).await
            }
            fn find_credential_any_now(&self, hashes: &[TokenHash]) -> Option<Option<(usize, Credential)>> {
                (**self).find_credential_any_now(hashes)
            }
            async fn rehash(&self, rehash: &Rehash) -> Result<bool, StoreError> {
                (**self).rehash(rehash).await
            }
            async fn hash_key_usage(&self, at: DateTime<Utc>) -> Result<Vec<KeyUsage>, StoreError> {
                (**self).hash_key_usage(at).await
            }
            async fn retire_hash_key(&self, key: KeyFingerprint, at: DateTime<Utc>, revoke_remaining: Option<Actor>) -> Result<Retired, StoreError> {
                (**self).retire_hash_key(key, at, revoke_remaining).await
            }
            async fn close(&self) {
                (**self).close().await
            }
            async fn events_since(&self, environment: Option<EnvironmentId>, after: EventCursor, limit: u32) -> Result<EventPage, StoreError> {
                (**self).events_since(environment, after, limit).await
            }
            async fn event_head(&self) -> Result<EventCursor, StoreError> {
                (**self).event_head().await
            }
            async fn prune_events(&self, before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
                (**self).prune_events(before, max).await
            }
            async fn forget_leak_details(&self, before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
                (**self).forget_leak_details(before, max).await
            }
            fn watch(&self, after: EventCursor) -> Result<ChangeFeed, StoreError> {
                (**self).watch(after)
            }
        }
    )*};
}

forward_store!(Arc<T>, Box<T>, &T);
