//! [`CachedStore`]: a verification cache in front of a remote store.

use super::{
    KeyUsage, Limits, Page, PageRequest, Rehash, Retired, Revoked, Rotation, StoreError, TokenStore,
};
use crate::clock::{Clock, SystemClock};
use crate::event::{Actor, ChangeFeed, EventCursor, EventPage, FeedMessage, LeakDetails};
use crate::hash::{KeyFingerprint, KeyringFingerprints, TokenHash};
use crate::model::{Credential, EnvironmentId, StoredToken, Token, TokenId, record_use};
use crate::observe;
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use core::fmt;
use core::hash::{BuildHasherDefault, Hasher};
use core::time::Duration;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

const SHARDS: usize = 16;

/// Caches [`find_by_hash`](TokenStore::find_by_hash) in front of a remote store, so that
/// most authentications cost no round trip.
///
/// - **Positive entries** (known tokens) live for `ttl` (default 5 s; 60 s when coherent).
/// - **Negative entries** (well-formed tokens the store does not know) live for
///   `negative_ttl` (default 1 s), so a client retrying a wrong token does not reach the
///   database on every request.
/// - **Bounded**: at most `capacity` entries (default 100,000); when full, expired entries
///   are dropped first, then arbitrary ones.
/// - **Immediate invalidation** for changes made through this cache: `insert`, `revoke`
///   (with every token its cascade revoked), `rotate` and `record_last_use` update or
///   drop the entries before they return, and a
///   look-up that read the store before such a change and answers after it never puts
///   what it read into the cache (each invalidation is stamped with an epoch; a fill
///   older than an invalidation of its token is dropped). So revocation stays
///   linearizable through the cache, and after `rotate` returns the predecessor's
///   shortened expiry applies at once.
///
/// # Changes made by other processes
///
/// A [coherent](CachedStore::coherent) cache follows the store's event log
/// ([`CachedStore::follow`]): each change any process makes drops the entries of the
/// tokens it changed as soon as its event arrives, and an entry is served only while the
/// cache can prove it fresh (read, or vouched for by the feed, within the
/// [staleness bound](CachedStore::staleness_bound), 1 s by default). That is the mode for
/// several processes over one database; `docs/RELIABILITY.md` gives the measured
/// propagation times.
///
/// Without a feed, a change made by *another* process (or directly in the database) is
/// seen here at the latest when the entry expires: a token revoked elsewhere keeps
/// authenticating for up to `ttl`. Cached records carry their expiry, which the issuer
/// checks against the clock on every request; a change to the expiry made elsewhere (a
/// rotation's grace period) applies within `ttl` too. Choose `ttl` as the longest time a
/// revocation elsewhere may take to apply; to apply one at once (e.g. on a pub/sub
/// message), call [`CachedStore::invalidate`] with the token's id,
/// [`CachedStore::invalidate_hash`], or [`CachedStore::invalidate_all`].
///
/// Either way, a token issued elsewhere may be reported unknown for up to `negative_ttl`
/// if it was presented before it existed (events name tokens, never hashes).
///
/// ```
/// use apitoken::{CachedStore, MemoryStore, TokenIssuer};
/// use std::time::Duration;
///
/// let store = CachedStore::new(MemoryStore::new())
///     .ttl(Duration::from_secs(2))
///     .negative_ttl(Duration::from_millis(500))
///     .capacity(50_000);
/// let issuer = TokenIssuer::new(store);
/// ```
pub struct CachedStore<S> {
    inner: S,
    shards: Box<[Mutex<Shard>]>,
    /// Where each cached known token's entry is, for invalidation by id. Locked after a
    /// shard, never before one.
    ids: Mutex<HashMap<TokenId, TokenHash>>,
    /// What fills must not undo. Locked before a shard, never after one.
    invalidations: Mutex<Invalidations>,
    ttl: TimeDelta,
    negative_ttl: TimeDelta,
    capacity_per_shard: usize,
    clock: Arc<dyn Clock>,
    /// Coherent: entries are served only while provably fresh (see `coherent`).
    coherent: bool,
    /// How old, in microseconds, what a coherent cache serves may be.
    staleness_micros: i64,
    /// Until when, by the clock in microseconds, the feed has applied every change:
    /// `i64::MIN` before it first caught up.
    synced_micros: AtomicI64,
    /// Look-ups by hash answered from an entry, and those that read the store.
    hits: AtomicU64,
    misses: AtomicU64,
}

/// How a [`CachedStore`] has answered look-ups by hash (what authentication does) since
/// it was made: from an entry (`hits`), or by reading the store (`misses`; a look-up that
/// joined one already under way counts as a miss too). For a hit ratio in metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Answered from a cached entry, positive or negative.
    pub hits: u64,
    /// Answered by reading the store.
    pub misses: u64,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<TokenHash, Entry, BuildHasherDefault<HashPrefix>>,
}

struct Entry {
    token: Option<Token>,
    fresh_until: DateTime<Utc>,
    /// When the look-up that read it began, in microseconds.
    read_micros: i64,
}

/// The invalidations that look-ups still in flight might not have seen.
///
/// Every look-up that misses takes a ticket (the epoch when it started) before it asks the
/// store, and may fill the cache only if no invalidation of its hash or of the id it found
/// happened since. Invalidations are kept only while an older look-up is in flight, so the
/// maps stay as small as the number of changes made during the slowest look-up.
#[derive(Default)]
struct Invalidations {
    /// Incremented by every invalidation.
    epoch: u64,
    /// The epochs at which look-ups in flight started, with how many started then.
    in_flight: BTreeMap<u64, usize>,
    /// The epoch of the latest invalidation of each hash...
    hashes: HashMap<TokenHash, u64, BuildHasherDefault<HashPrefix>>,
    /// ...and of each id.
    ids: HashMap<TokenId, u64>,
    /// The epoch of the latest `invalidate_all`.
    all: u64,
}

impl Invalidations {
    /// Records an invalidation of `hash` and `id` at a new epoch.
    fn stamp(&mut self, hash: Option<TokenHash>, id: Option<TokenId>) {
        self.epoch += 1;
        if self.in_flight.is_empty() {
            // No look-up could have read the old state: nothing to remember.
            return;
        }
        if let Some(hash) = hash {
            self.hashes.insert(hash, self.epoch);
        }
        if let Some(id) = id {
            self.ids.insert(id, self.epoch);
        }
    }

    fn begin(&mut self) -> u64 {
        *self.in_flight.entry(self.epoch).or_default() += 1;
        self.epoch
    }

    /// Whether what a look-up that started at `started` found (`hash`, and `id` when
    /// known) may be cached: nothing invalidated it since.
    fn fresh(&self, started: u64, hash: &TokenHash, found: Option<&Token>) -> bool {
        let newer = |at: Option<&u64>| at.is_some_and(|&at| at > started);
        self.all <= started
            && !newer(self.hashes.get(hash))
            && !found.is_some_and(|t| newer(self.ids.get(&t.id)))
    }

    /// Ends the look-up that started at `started`.
    fn end(&mut self, started: u64) {
        if let Some(count) = self.in_flight.get_mut(&started) {
            *count -= 1;
            if *count == 0 {
                self.in_flight.remove(&started);
            }
        }
        // Forget what no look-up still in flight can have missed.
        match self.in_flight.keys().next().copied() {
            None => {
                self.hashes.clear();
                self.ids.clear();
            }
            Some(oldest) if oldest > started => {
                self.hashes.retain(|_, at| *at > oldest);
                self.ids.retain(|_, at| *at > oldest);
            }
            Some(_) => {}
        }
    }
}

/// A look-up in flight. Ended when dropped, so that a look-up cancelled midway (its
/// request timed out, its client went away) does not keep invalidations alive forever.
struct Ticket<'a> {
    invalidations: &'a Mutex<Invalidations>,
    started: u64,
    ended: bool,
}

impl<'a> Ticket<'a> {
    fn take(invalidations: &'a Mutex<Invalidations>) -> Ticket<'a> {
        Ticket {
            started: lock_invalidations(invalidations).begin(),
            invalidations,
            ended: false,
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.ended {
            lock_invalidations(self.invalidations).end(self.started);
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("capacity", &(self.capacity_per_shard * SHARDS))
            .field("coherent", &self.coherent)
            .finish_non_exhaustive()
    }
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl<S: TokenStore> CachedStore<S> {
    /// A cache with the defaults: 5 s positive, 1 s negative, 100,000 entries.
    pub fn new(inner: S) -> CachedStore<S> {
        CachedStore {
            inner,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            ids: Mutex::default(),
            invalidations: Mutex::default(),
            ttl: TimeDelta::seconds(5),
            negative_ttl: TimeDelta::seconds(1),
            capacity_per_shard: 100_000 / SHARDS,
            clock: Arc::new(SystemClock),
            coherent: false,
            staleness_micros: 1_000_000,
            synced_micros: AtomicI64::new(i64::MIN),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Makes the cache coherent across processes, for a store with an event log: it
    /// serves an entry only while it can prove the entry fresh, that is, read from the
    /// store at most the [staleness bound](Self::staleness_bound) ago (default 1 s), or
    /// not changed since by any event up to a time within that bound, as the feed it
    /// follows ([`follow`](Self::follow) or [`apply`](Self::apply)) reports. Each event
    /// drops the entry of its token at once. Sets the TTL to 60 s (change it after).
    ///
    /// So a token revoked by any process stops authenticating here as soon as its event
    /// arrives (a few milliseconds on PostgreSQL), and at the latest after the bound when
    /// the feed is interrupted: the cache then re-reads the store instead of trusting old
    /// entries. While the store is down, that means authentication fails after the bound
    /// rather than accepting tokens no one can check.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use apitoken::{CachedStore, MemoryStore, TokenIssuer, TokenStore};
    /// use std::sync::Arc;
    ///
    /// let store = MemoryStore::new();
    /// let head = store.event_head().await?;
    /// let cache = CachedStore::new(store).coherent();
    /// let feed = cache.watch(head)?;
    /// let issuer = Arc::new(TokenIssuer::new(cache));
    /// let follower = issuer.clone();
    /// tokio::spawn(async move { follower.store().follow(feed).await });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn coherent(self) -> Self {
        CachedStore {
            coherent: true,
            ttl: TimeDelta::seconds(60),
            ..self
        }
    }

    /// How old what a [coherent](Self::coherent) cache serves may be when its feed cannot
    /// vouch for it (default 1 s): the longest a revocation elsewhere can take to apply
    /// here while the feed is interrupted.
    pub fn staleness_bound(self, bound: Duration) -> Self {
        CachedStore {
            staleness_micros: i64::try_from(bound.as_micros()).unwrap_or(i64::MAX),
            ..self
        }
    }

    /// Applies a feed's message (for an application that reads the feed itself, to log
    /// it, say): an event drops its token's entry, `CaughtUp` vouches for every entry up
    /// to its time, `Missed` drops everything, `Interrupted` changes nothing (entries age
    /// past the bound). The feed must read the same clock as the cache
    /// ([`ChangeFeed::clock`]).
    pub fn apply(&self, message: &FeedMessage) {
        match message {
            FeedMessage::Event(event) => self.forget(event.token),
            FeedMessage::CaughtUp { as_of, .. } => {
                self.synced_micros
                    .fetch_max(as_of.timestamp_micros(), Ordering::Release);
            }
            FeedMessage::Missed { .. } => {
                tracing::warn!("change feed missed events; cache emptied");
                self.invalidate_all();
            }
            FeedMessage::Interrupted { reason } => {
                tracing::warn!(%reason, "change feed interrupted; entries age past the staleness bound");
            }
        }
    }

    /// Follows `feed` for ever, [applying](Self::apply) each message, with the feed
    /// reading the cache's clock: spawn it beside the application, on a
    /// [coherent](Self::coherent) cache (on another, events still drop entries, but
    /// nothing bounds their age when the feed stops).
    pub async fn follow(&self, feed: ChangeFeed) {
        let mut feed = feed.shared_clock(self.clock.clone());
        while let Some(message) = feed.next().await {
            self.apply(&message);
        }
    }

    /// Until when the feed has applied every change, as its last `CaughtUp` said; `None`
    /// before the first. A coherent cache whose feed is healthy is never more than the
    /// poll interval behind.
    pub fn synced_until(&self) -> Option<DateTime<Utc>> {
        match self.synced_micros.load(Ordering::Acquire) {
            i64::MIN => None,
            micros => DateTime::from_timestamp_micros(micros),
        }
    }

    /// How look-ups by hash were answered since the cache was made: a hit ratio for
    /// metrics.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use apitoken::{CachedStore, MemoryStore, TokenHasher, TokenStore};
    ///
    /// let cache = CachedStore::new(MemoryStore::new());
    /// let hash = TokenHasher::unkeyed().hash("dyn_never_issued");
    /// cache.find_by_hash(&hash).await?; // read from the store: a miss
    /// cache.find_by_hash(&hash).await?; // the negative entry: a hit
    /// let stats = cache.stats();
    /// assert_eq!((stats.hits, stats.misses), (1, 1));
    /// # Ok::<(), apitoken::StoreError>(())
    /// # }).unwrap();
    /// ```
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Drops what a revocation of `id` changed, and passes its result on.
    fn revoked(
        &self,
        id: TokenId,
        result: Result<Revoked, StoreError>,
    ) -> Result<Revoked, StoreError> {
        match &result {
            Ok(revoked) => {
                self.forget(id);
                for &id in &revoked.cascade {
                    self.forget(id);
                }
            }
            // The store may have revoked it, and whatever went with it, before the error.
            Err(error) => {
                tracing::warn!(token_id = %id, %error, "revocation failed; cache emptied");
                self.invalidate_all();
            }
        }
        result
    }

    /// The record of token `id` of `environment` when a coherent cache holds it fresh.
    fn fresh_record(&self, environment: EnvironmentId, id: TokenId) -> Option<Token> {
        if !self.coherent {
            return None;
        }
        let hash = *lock_ids(&self.ids).get(&id)?;
        let now = self.clock.now();
        let shard = lock(self.shard(&hash));
        let entry = shard.entries.get(&hash)?;
        let token = entry.token.as_ref()?;
        (token.id == id
            && token.environment == environment
            && entry.fresh_until > now
            && self.provably_fresh(entry.read_micros, now))
        .then(|| token.clone())
    }

    /// Whether an entry read at `read_micros` may be served at `now`.
    fn provably_fresh(&self, read_micros: i64, now: DateTime<Utc>) -> bool {
        !self.coherent || {
            let vouched = read_micros.max(self.synced_micros.load(Ordering::Acquire));
            vouched >= now.timestamp_micros().saturating_sub(self.staleness_micros)
        }
    }

    /// How long a known token is served from the cache.
    pub fn ttl(self, ttl: Duration) -> Self {
        CachedStore {
            ttl: delta(ttl),
            ..self
        }
    }

    /// How long an unknown token is remembered as unknown (zero disables negative caching).
    pub fn negative_ttl(self, ttl: Duration) -> Self {
        CachedStore {
            negative_ttl: delta(ttl),
            ..self
        }
    }

    /// The most entries kept (at least 16).
    pub fn capacity(self, entries: usize) -> Self {
        CachedStore {
            capacity_per_shard: entries.div_ceil(SHARDS).max(1),
            ..self
        }
    }

    /// The clock the entries' lifetimes are measured with (default: the system clock).
    pub fn clock(self, clock: impl Clock + 'static) -> Self {
        CachedStore {
            clock: Arc::new(clock),
            ..self
        }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Forgets every entry, so the next look-ups go to the store (look-ups already
    /// under way do not fill the cache).
    pub fn invalidate_all(&self) {
        observe::count_cache("invalidation");
        let mut invalidations = lock_invalidations(&self.invalidations);
        invalidations.stamp(None, None);
        invalidations.all = invalidations.epoch;
        for shard in self.shards.iter() {
            lock(shard).entries.clear();
        }
        lock_ids(&self.ids).clear();
    }

    /// Forgets what is cached about token `id` and about every token its revocation may
    /// have taken with it, so that their next look-ups go to the store, and look-ups
    /// already under way do not fill the cache. Call it when the token changed elsewhere
    /// (another process revoked or rotated it) and the cache follows no feed.
    ///
    /// A revocation also revokes the tokens the token created and its rotated
    /// predecessors, which the cache cannot tell apart from others without the store: so
    /// this drops, besides `id`, every cached token created by a token and every cached
    /// token with an expiry (a rotated predecessor has one), and keeps only user-created
    /// tokens without an expiry. (A predecessor cached before it was rotated elsewhere
    /// has no expiry yet: invalidate it when it is rotated.) A [coherent](Self::coherent)
    /// cache needs none of this: the feed names each token revoked.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use apitoken::{CachedStore, MemoryStore, TokenId};
    /// use uuid::Uuid;
    ///
    /// let cache = CachedStore::new(MemoryStore::new());
    /// // On a message from another instance: "token … was revoked".
    /// let revoked = TokenId::from_uuid(Uuid::nil());
    /// cache.invalidate(revoked);
    /// # });
    /// ```
    pub fn invalidate(&self, id: TokenId) {
        observe::count_cache("invalidation");
        let mut invalidations = lock_invalidations(&self.invalidations);
        invalidations.stamp(None, Some(id));
        // Any look-up in flight may be of a token the cascade reached.
        invalidations.all = invalidations.epoch;
        let reached = |token: &Token| {
            token.id == id || token.created_by_token.is_some() || token.expires_at.is_some()
        };
        let mut gone = Vec::new();
        for shard in self.shards.iter() {
            lock(shard).entries.retain(|_, entry| match &entry.token {
                Some(token) if reached(token) => {
                    gone.push(token.id);
                    false
                }
                _ => true,
            });
        }
        let mut ids = lock_ids(&self.ids);
        for id in gone {
            ids.remove(&id);
        }
    }

    /// Forgets what is cached about token `id` alone (an event names every token it
    /// changed), stamping the invalidation so that look-ups in flight do not fill.
    fn forget(&self, id: TokenId) {
        observe::count_cache("invalidation");
        let mut invalidations = lock_invalidations(&self.invalidations);
        let hash = lock_ids(&self.ids).remove(&id);
        invalidations.stamp(hash, Some(id));
        if let Some(hash) = hash {
            self.drop_entry(&hash);
        }
    }

    /// Forgets what is cached about the token with this hash (a known token or a
    /// remembered unknown one), like [`invalidate`](Self::invalidate).
    pub fn invalidate_hash(&self, hash: &TokenHash) {
        observe::count_cache("invalidation");
        let mut invalidations = lock_invalidations(&self.invalidations);
        let id = self.drop_entry(hash);
        invalidations.stamp(Some(*hash), id);
        if let Some(id) = id {
            lock_ids(&self.ids).remove(&id);
        }
    }

    /// How many entries are cached (fresh or not).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).entries.len()).sum()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, hash: &TokenHash) -> &Mutex<Shard> {
        let i = usize::from(hash.as_bytes()[31]) % SHARDS;
        &self.shards[i]
    }

    /// Asks the store, then caches its answer unless the token was invalidated meanwhile.
    async fn fill(
        &self,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<Option<Token>, StoreError> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        observe::count_cache("miss");
        let mut ticket = Ticket::take(&self.invalidations);
        let found = self.inner.find_by_hash(hash).await;
        let mut invalidations = lock_invalidations(&self.invalidations);
        let token = found.as_ref().ok().and_then(Option::as_ref);
        let fresh = invalidations.fresh(ticket.started, hash, token);
        invalidations.end(ticket.started);
        ticket.ended = true;
        let found = found?;
        if fresh {
            // Under the invalidations lock, so no invalidation can slip in between the
            // check and the fill.
            self.remember(*hash, found.clone(), now);
        }
        drop(invalidations);
        Ok(found)
    }

    /// [`fill`](Self::fill) for a keyring's candidates: caches the record under the hash
    /// that found it, or every candidate as unknown, unless invalidated meanwhile.
    async fn fill_any(
        &self,
        hashes: &[TokenHash],
        now: DateTime<Utc>,
    ) -> Result<Option<(usize, Token)>, StoreError> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        observe::count_cache("miss");
        let mut ticket = Ticket::take(&self.invalidations);
        let found = self.inner.find_by_any_hash(hashes).await;
        let mut invalidations = lock_invalidations(&self.invalidations);
        let fresh = match &found {
            Ok(Some((i, token))) => hashes
                .get(*i)
                .is_some_and(|hash| invalidations.fresh(ticket.started, hash, Some(token))),
            Ok(None) => hashes
                .iter()
                .all(|hash| invalidations.fresh(ticket.started, hash, None)),
            Err(_) => false,
        };
        invalidations.end(ticket.started);
        ticket.ended = true;
        let found = found?;
        if fresh {
            match &found {
                Some((i, token)) => {
                    if let Some(hash) = hashes.get(*i) {
                        self.remember(*hash, Some(token.clone()), now);
                    }
                }
                None => {
                    for hash in hashes {
                        self.remember(*hash, None, now);
                    }
                }
            }
        }
        drop(invalidations);
        Ok(found)
    }

    fn remember(&self, hash: TokenHash, token: Option<Token>, now: DateTime<Utc>) {
        let ttl = if token.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        };
        if ttl <= TimeDelta::zero() {
            return;
        }
        let id = token.as_ref().map(|t| t.id);
        let mut evicted = Vec::new();
        let mut shard = lock(self.shard(&hash));
        if shard.entries.len() >= self.capacity_per_shard && !shard.entries.contains_key(&hash) {
            shard.entries.retain(|_, e| {
                let keep = e.fresh_until > now;
                if !keep {
                    evicted.extend(e.token.as_ref().map(|t| t.id));
                }
                keep
            });
            if shard.entries.len() >= self.capacity_per_shard {
                // Still full of fresh entries: drop an arbitrary one.
                if let Some(victim) = shard.entries.keys().next().copied()
                    && let Some(entry) = shard.entries.remove(&victim)
                {
                    evicted.extend(entry.token.map(|t| t.id));
                }
            }
        }
        let fresh_until = now
            .checked_add_signed(ttl)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let read_micros = now.timestamp_micros();
        shard.entries.insert(
            hash,
            Entry {
                token,
                fresh_until,
                read_micros,
            },
        );
        let mut ids = lock_ids(&self.ids);
        for gone in evicted {
            ids.remove(&gone);
        }
        if let Some(id) = id {
            ids.insert(id, hash);
        }
    }

    /// What the entries of `hashes` answer, if they answer: the first candidate with a
    /// fresh entry of a known token, or unknown when every candidate's entry is a fresh
    /// unknown one. `None` sends the look-up to the store.
    fn cached_any<T>(
        &self,
        hashes: &[TokenHash],
        now: DateTime<Utc>,
        answer: impl Fn(&Token) -> T,
    ) -> Option<Option<(usize, T)>> {
        let mut unknown = 0;
        for (i, hash) in hashes.iter().enumerate() {
            let shard = lock(self.shard(hash));
            let Some(entry) = shard.entries.get(hash) else {
                continue;
            };
            if entry.fresh_until <= now || !self.provably_fresh(entry.read_micros, now) {
                continue;
            }
            match &entry.token {
                Some(token) => {
                    let found = answer(token);
                    drop(shard);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    observe::count_cache("hit");
                    return Some(Some((i, found)));
                }
                None => unknown += 1,
            }
        }
        if unknown == hashes.len() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            observe::count_cache("hit");
            return Some(None);
        }
        None
    }

    /// Drops the entry for `hash`; returns the id it held, if any.
    fn drop_entry(&self, hash: &TokenHash) -> Option<TokenId> {
        let entry = lock(self.shard(hash)).entries.remove(hash);
        entry.and_then(|e| e.token.map(|t| t.id))
    }
}

fn lock_invalidations(
    invalidations: &Mutex<Invalidations>,
) -> std::sync::MutexGuard<'_, Invalidations> {
    // Every update leaves the maps consistent, so a poisoned lock is still usable.
    invalidations.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock_ids(
    ids: &Mutex<HashMap<TokenId, TokenHash>>,
) -> std::sync::MutexGuard<'_, HashMap<TokenId, TokenHash>> {
    ids.lock().unwrap_or_else(PoisonError::into_inner)
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // Entries are replaced whole, so a poisoned shard is still consistent.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl<S: TokenStore> TokenStore for CachedStore<S> {
    async fn insert(&self, token: StoredToken, limits: Limits) -> Result<(), StoreError> {
        let hash = token.hash;
        let result = self.inner.insert(token, limits).await;
        // A negative entry for this hash (a guess presented earlier), or a look-up of it
        // still under way, must not hide it.
        self.invalidate_hash(&hash);
        result
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        let now = self.clock.now();
        if let Some(entry) = lock(self.shard(hash)).entries.get(hash)
            && entry.fresh_until > now
            && self.provably_fresh(entry.read_micros, now)
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            observe::count_cache("hit");
            return Ok(entry.token.clone());
        }
        self.fill(hash, now).await
    }

    /// Read from the store, not the cache: the leak path, its one caller, acts on what
    /// it finds, and a cached entry may be up to the staleness bound behind.
    async fn find_many_by_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Vec<Option<Token>>, StoreError> {
        self.inner.find_many_by_hash(hashes).await
    }

    async fn find_credential(&self, hash: &TokenHash) -> Result<Option<Credential>, StoreError> {
        if let Some(found) = self.find_credential_now(hash) {
            return Ok(found);
        }
        let found = self.fill(hash, self.clock.now()).await?;
        Ok(found.as_ref().map(Credential::from))
    }

    fn find_credential_now(&self, hash: &TokenHash) -> Option<Option<Credential>> {
        let now = self.clock.now();
        let shard = lock(self.shard(hash));
        let entry = shard.entries.get(hash)?;
        let found = (entry.fresh_until > now && self.provably_fresh(entry.read_micros, now))
            .then(|| entry.token.as_ref().map(Credential::from));
        if found.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            observe::count_cache("hit");
        }
        found
    }

    /// A coherent cache answers from a fresh entry when it holds the token (what
    /// `GET /tokens/me` reads right after authenticating); otherwise, and always when not
    /// coherent, it reads the store. A record served so may show a last use older than
    /// one another process recorded (last uses are not events); every other field is as
    /// fresh as authentication's.
    async fn get(
        &self,
        environment: EnvironmentId,
        id: TokenId,
    ) -> Result<Option<Token>, StoreError> {
        if let Some(token) = self.fresh_record(environment, id) {
            return Ok(Some(token));
        }
        self.inner.get(environment, id).await
    }

    async fn list(
        &self,
        environment: EnvironmentId,
        page: PageRequest,
    ) -> Result<Page, StoreError> {
        self.inner.list(environment, page).await
    }

    async fn revoke(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Actor,
    ) -> Result<Revoked, StoreError> {
        let result = self.inner.revoke(environment, id, at, by).await;
        self.revoked(id, result)
    }

    async fn revoke_leaked(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        leak: &LeakDetails,
    ) -> Result<Revoked, StoreError> {
        let result = self.inner.revoke_leaked(environment, id, at, leak).await;
        self.revoked(id, result)
    }

    async fn revoke_leaked_many(
        &self,
        leaks: &[(EnvironmentId, TokenId, &LeakDetails)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Option<Revoked>>, StoreError> {
        let result = self.inner.revoke_leaked_many(leaks, at).await;
        match &result {
            Ok(revoked) => {
                for done in revoked.iter().flatten() {
                    self.forget(done.token.id);
                    for &id in &done.cascade {
                        self.forget(id);
                    }
                }
            }
            // Some may have been revoked, with what went with them, before the error.
            Err(error) => {
                tracing::warn!(%error, "leak revocation failed; cache emptied");
                self.invalidate_all();
            }
        }
        result
    }

    async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError> {
        let predecessor = rotation.predecessor;
        let successor = rotation.successor.hash;
        let result = self.inner.rotate(rotation).await;
        self.forget(predecessor);
        self.invalidate_hash(&successor);
        result
    }

    async fn descends_from(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        ancestor: TokenId,
    ) -> Result<bool, StoreError> {
        self.inner.descends_from(environment, id, ancestor).await
    }

    /// Purges the inner store. Cached entries of purged tokens stay until they expire:
    /// only tokens that ended long ago are purged, and an entry refuses them as the store
    /// would (revoked or expired rather than unknown: the same 401).
    async fn purge(&self, ended_before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        self.inner.purge(ended_before, max).await
    }

    async fn prepare(&self, key: KeyFingerprint) -> Result<(), StoreError> {
        self.inner.prepare(key).await
    }

    async fn check(&self, key: KeyFingerprint) -> Result<(), StoreError> {
        self.inner.check(key).await
    }

    async fn prepare_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        self.inner.prepare_keyring(keys).await
    }

    async fn check_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        self.inner.check_keyring(keys).await
    }

    async fn find_by_any_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Option<(usize, Token)>, StoreError> {
        if let [hash] = hashes {
            return Ok(self.find_by_hash(hash).await?.map(|token| (0, token)));
        }
        let now = self.clock.now();
        if let Some(found) = self.cached_any(hashes, now, |token| token.clone()) {
            return Ok(found);
        }
        self.fill_any(hashes, now).await
    }

    /// A hit when one candidate has a fresh entry of a known token, or every candidate
    /// has a fresh entry of an unknown one.
    fn find_credential_any_now(&self, hashes: &[TokenHash]) -> Option<Option<(usize, Credential)>> {
        if let [hash] = hashes {
            return Some(self.find_credential_now(hash)?.map(|found| (0, found)));
        }
        self.cached_any(hashes, self.clock.now(), |token| Credential::from(token))
    }

    /// Moves the token to its new hash in the store, then drops the entries of both
    /// hashes (the old one must not answer for it, the new one may be remembered as
    /// unknown), stamping them so that look-ups in flight do not fill.
    async fn rehash(&self, rehash: &Rehash) -> Result<bool, StoreError> {
        let result = self.inner.rehash(rehash).await;
        self.invalidate_hash(&rehash.from);
        self.invalidate_hash(&rehash.to);
        result
    }

    async fn hash_key_usage(&self, at: DateTime<Utc>) -> Result<Vec<KeyUsage>, StoreError> {
        self.inner.hash_key_usage(at).await
    }

    async fn retire_hash_key(
        &self,
        key: KeyFingerprint,
        at: DateTime<Utc>,
        revoke_remaining: Option<Actor>,
    ) -> Result<Retired, StoreError> {
        let result = self.inner.retire_hash_key(key, at, revoke_remaining).await;
        match &result {
            Ok(retired) => {
                for &id in &retired.revoked {
                    self.forget(id);
                }
            }
            // Some may have been revoked before the error.
            Err(_) if revoke_remaining.is_some() => self.invalidate_all(),
            Err(_) => {}
        }
        result
    }

    async fn close(&self) {
        self.inner.close().await
    }

    async fn events_since(
        &self,
        environment: Option<EnvironmentId>,
        after: EventCursor,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        self.inner.events_since(environment, after, limit).await
    }

    async fn event_head(&self) -> Result<EventCursor, StoreError> {
        self.inner.event_head().await
    }

    async fn prune_events(&self, before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        self.inner.prune_events(before, max).await
    }

    async fn forget_leak_details(
        &self,
        before: DateTime<Utc>,
        max: u32,
    ) -> Result<u32, StoreError> {
        self.inner.forget_leak_details(before, max).await
    }

    fn watch(&self, after: EventCursor) -> Result<ChangeFeed, StoreError> {
        self.inner.watch(after)
    }

    async fn record_last_use(
        &self,
        id: TokenId,
        at: DateTime<Utc>,
        from: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        self.inner.record_last_use(id, at, from).await?;
        // Keep the cached copy in step, so the issuer's once-per-interval check sees it.
        let hash = lock_ids(&self.ids).get(&id).copied();
        if let Some(hash) = hash
            && let Some(entry) = lock(self.shard(&hash)).entries.get_mut(&hash)
            && let Some(token) = entry.token.as_mut().filter(|t| t.id == id)
        {
            record_use(token, at, from);
        }
        Ok(())
    }
}

/// A token hash is a BLAKE3 output: uniformly random, and no one presenting tokens can
/// steer it, so its first 8 bytes are a fine hash-map hash (no SipHash needed).
#[derive(Default)]
struct HashPrefix(u64);

impl Hasher for HashPrefix {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    /// A store whose look-ups never answer.
    #[derive(Debug, Default)]
    struct Stalled(MemoryStore);

    #[async_trait]
    impl TokenStore for Stalled {
        async fn insert(&self, t: StoredToken, limits: Limits) -> Result<(), StoreError> {
            self.0.insert(t, limits).await
        }
        async fn find_by_hash(&self, _: &TokenHash) -> Result<Option<Token>, StoreError> {
            core::future::pending().await
        }
        async fn get(&self, e: EnvironmentId, id: TokenId) -> Result<Option<Token>, StoreError> {
            self.0.get(e, id).await
        }
        async fn list(&self, e: EnvironmentId, p: PageRequest) -> Result<Page, StoreError> {
            self.0.list(e, p).await
        }
        async fn revoke(
            &self,
            e: EnvironmentId,
            id: TokenId,
            at: DateTime<Utc>,
            by: Actor,
        ) -> Result<Revoked, StoreError> {
            self.0.revoke(e, id, at, by).await
        }
        async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError> {
            self.0.rotate(rotation).await
        }
        async fn descends_from(
            &self,
            e: EnvironmentId,
            id: TokenId,
            ancestor: TokenId,
        ) -> Result<bool, StoreError> {
            self.0.descends_from(e, id, ancestor).await
        }
        async fn purge(&self, before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
            self.0.purge(before, max).await
        }
        async fn record_last_use(
            &self,
            id: TokenId,
            at: DateTime<Utc>,
            from: Option<std::net::IpAddr>,
        ) -> Result<(), StoreError> {
            self.0.record_last_use(id, at, from).await
        }
    }

    #[tokio::test]
    async fn a_cancelled_lookup_leaves_nothing_in_flight() {
        let cache = CachedStore::new(Stalled::default());
        let hash = crate::hash::TokenHasher::unkeyed().hash("dyn_anything");
        tokio::select! {
            biased;
            _ = cache.find_by_hash(&hash) => unreachable!("the store never answers"),
            () = core::future::ready(()) => {}
        }
        cache.invalidate_hash(&hash);
        let invalidations = lock_invalidations(&cache.invalidations);
        assert!(
            invalidations.in_flight.is_empty(),
            "the dropped look-up ended"
        );
        assert!(
            invalidations.hashes.is_empty(),
            "with nothing in flight, no invalidation is kept"
        );
    }
}
