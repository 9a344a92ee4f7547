//! [`MemoryStore`]: the embedded default store, in process memory.

use super::{
    Cursor, KeyUsage, Limits, Page, PageRequest, Rehash, Retired, Revoked, Rotation, StoreError,
    TokenStore, UniqueKey,
};
use crate::cidr::AllowedCidrs;
use crate::event::{
    Actor, ChangeFeed, Event, EventBatch, EventCursor, EventPage, FeedSource, LeakDetails, Revoker,
};
use crate::format::Checksum;
use crate::hash::{KeyFingerprint, KeyringFingerprints, TokenHash};
use crate::model::{Creator, Credential, EnvironmentId, StoredToken, Token, TokenId};
use crate::note::Note;
use crate::scope::Scopes;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use core::fmt;
use core::ops::Bound;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Keeps tokens in memory: for tests, single-process services and as the reference
/// implementation of the [`TokenStore`] contract. Nothing survives the process.
///
/// Safe to share between threads (one reader-writer lock; look-ups only read).
///
/// Built for the authentication look-up, which every request makes: each token's hash and
/// everything authentication reads sit in one 128-byte, cache-line-aligned record, placed
/// in an open-addressed table at the position the hash itself gives, so a look-up among
/// millions of tokens is one memory access (two adjacent cache lines). The note, checksum,
/// creation time and whether the token was rotated live apart.
///
/// Its event log keeps the newest [`MemoryStore::LOG_CAPACITY`] events (and fewer once
/// [pruned](TokenStore::prune_events)); a reader further behind is told it missed some.
///
/// ```
/// use apitoken::{MemoryStore, TokenIssuer};
///
/// let issuer = TokenIssuer::new(MemoryStore::new());
/// ```
#[derive(Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
    /// Apart from the records, so that a feed can hold it; appended to only under the
    /// records' write lock, so sequence order is the order of the changes.
    log: Arc<Log>,
}

/// The event log, and the signal its feeds wait on.
struct Log {
    events: Mutex<LogEvents>,
    /// Changed by every append: each feed's receiver sees a change made since its last
    /// wait, so none is missed.
    grown: tokio::sync::watch::Sender<()>,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            events: Mutex::default(),
            grown: tokio::sync::watch::Sender::new(()),
        }
    }
}

#[derive(Default)]
struct LogEvents {
    events: VecDeque<Event>,
    /// The newest sequence number given.
    last: u64,
    /// Every event up to this one may be gone.
    pruned_through: u64,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogEvents> {
        // Each update leaves the queue consistent.
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, batch: &EventBatch<'_>) {
        if batch.tokens.is_empty() {
            return;
        }
        {
            let mut log = self.lock();
            let first = log.last + 1;
            log.last += batch.tokens.len() as u64;
            log.events.extend(batch.numbered(first));
            while log.events.len() > MemoryStore::LOG_CAPACITY {
                if let Some(gone) = log.events.pop_front() {
                    log.pruned_through = gone.sequence;
                }
            }
        }
        self.grown.send_replace(());
    }

    fn since(
        &self,
        environment: Option<EnvironmentId>,
        after: EventCursor,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        let log = self.lock();
        if after.sequence() < log.pruned_through {
            return Err(StoreError::EventsPruned {
                after,
                resumed: EventCursor::after(log.pruned_through),
            });
        }
        let skip = log
            .events
            .partition_point(|e| e.sequence <= after.sequence());
        let events = log
            .events
            .iter()
            .skip(skip)
            .filter(|e| environment.is_none_or(|env| e.environment == env))
            .take(limit.clamp(1, 1000) as usize)
            .cloned()
            .collect();
        Ok(EventPage::new(events, after))
    }
}

/// A memory store's feed: woken by its appends.
struct MemoryFeed {
    log: Arc<Log>,
    grown: tokio::sync::watch::Receiver<()>,
}

#[async_trait]
impl FeedSource for MemoryFeed {
    async fn read(&mut self, after: EventCursor, limit: u32) -> Result<EventPage, StoreError> {
        self.log.since(None, after, limit)
    }

    async fn wait(&mut self) -> Result<(), StoreError> {
        // At least four times a second, so that a coherent cache (bound 1 s) can tell
        // the feed is alive.
        let grown = self.grown.changed();
        let _ = tokio::time::timeout(core::time::Duration::from_millis(250), grown).await;
        Ok(())
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A million records are no use in a log line.
        f.debug_struct("MemoryStore")
            .field("tokens", &self.len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    table: Table,
    cold: ColdRecords,
    ids: HashMap<TokenId, Slot>,
    /// Each environment's tokens in creation order (the listing order).
    by_env: HashMap<EnvironmentId, BTreeMap<Cursor, Slot>>,
    /// Creators and scope sets are shared by many tokens: each distinct one is kept once.
    creators: HashSet<Arc<Creator>>,
    scope_sets: HashSet<Scopes>,
    /// Each rotated token's successor, by the rotated token's slot: only `rotate` reads
    /// it, and only rotated tokens pay for it.
    successors: HashMap<Slot, TokenId>,
    /// The other way: each successor's predecessor, for a revocation's walk.
    predecessors: HashMap<TokenId, Slot>,
    /// The tokens each token created, and each delegated token's creator, by slot:
    /// only delegated tokens pay for them.
    children: HashMap<TokenId, Vec<Slot>>,
    creator_tokens: HashMap<Slot, TokenId>,
    /// The hash keys the records need: every current key it was prepared with, until
    /// retired.
    hash_keys: HashSet<KeyFingerprint>,
}

/// A record's number while it is stored: its place among the cold parts, in `ids` and in
/// `by_env`. A purged record's slot is given to a later one. Below 2³⁰.
type Slot = u32;

/// What authentication reads, in two aligned cache lines: the hash it is compared
/// against, then the credential, flattened so that it fits.
#[derive(Clone, Debug)]
#[repr(C, align(64))]
struct Hot {
    hash: TokenHash,
    id: TokenId,
    environment: EnvironmentId,
    scopes: Scopes,
    created_by: Arc<Creator>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    /// The slot, `active` in the top bit and whether a token created it in the next.
    slot_active: u32,
}

const ACTIVE: u32 = 1 << 31;
/// A token created it (its creator is in `Inner::creator_tokens`): authentication reads
/// the flag, not the map.
const DELEGATED: u32 = 1 << 30;
/// It has an address list, kept with the cold part: authentication reads the list only
/// for a token that has one (a token without one costs nothing more).
const RESTRICTED: u32 = 1 << 29;

impl Hot {
    fn slot(&self) -> Slot {
        self.slot_active & !(ACTIVE | DELEGATED | RESTRICTED)
    }

    fn delegated(&self) -> bool {
        self.slot_active & DELEGATED != 0
    }

    fn restricted(&self) -> bool {
        self.slot_active & RESTRICTED != 0
    }

    fn active(&self) -> bool {
        self.slot_active & ACTIVE != 0
    }

    fn set_active(&mut self, active: bool) {
        self.slot_active = (self.slot_active & !ACTIVE) | if active { ACTIVE } else { 0 };
    }

    fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        self.active() && self.expires_at.is_none_or(|at| at > now)
    }

    /// What authentication reads; `cold` is read only for a token with an address list.
    fn credential(&self, cold: &ColdRecords) -> Credential {
        let allowed_cidrs = if self.restricted() {
            cold.get(self.slot()).and_then(|c| c.allowed_cidrs.clone())
        } else {
            None
        };
        Credential {
            id: self.id,
            environment: self.environment,
            scopes: self.scopes.clone(),
            created_by: self.created_by.clone(),
            active: self.active(),
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            revoked_at: self.revoked_at,
            delegated: self.delegated(),
            allowed_cidrs,
        }
    }

    fn token(&self, cold: &Cold, created_by_token: Option<TokenId>) -> Token {
        Token {
            id: self.id,
            checksum: cold.checksum,
            created_by: self.created_by.clone(),
            created_at: cold.created_at,
            active: self.active(),
            note: cold.note.clone(),
            environment: self.environment,
            scopes: self.scopes.clone(),
            expires_at: self.expires_at,
            last_used_at: self.last_used_at,
            last_used_ip: cold.last_used_ip,
            revoked_at: self.revoked_at,
            created_by_token,
            allowed_cidrs: cold.allowed_cidrs.clone(),
        }
    }
}

/// The records by hash, directly: open addressing with linear probing over [`Hot`]
/// records, at most 80% full, the home position taken from the hash's first bytes (a
/// token hash is already uniformly random). A look-up fetches the two cache lines at
/// the home position and usually stops there: one memory access where a hash index in
/// front of the records would cost two in a row. Records only move when the table grows.
#[derive(Default)]
struct Table {
    entries: Vec<Option<Hot>>,
    len: usize,
}

impl Table {
    fn home(hash: &TokenHash, mask: usize) -> usize {
        let [a, b, c, d, e, f, g, h, ..] = *hash.as_bytes();
        u64::from_le_bytes([a, b, c, d, e, f, g, h]) as usize & mask
    }

    /// The position of the record with this hash.
    fn find(&self, hash: &TokenHash) -> Option<usize> {
        let mask = self.entries.len().checked_sub(1)?;
        let mut at = Table::home(hash, mask);
        loop {
            let hot = self.entries.get(at)?.as_ref()?;
            if hot.hash == *hash {
                return Some(at);
            }
            at = (at + 1) & mask;
        }
    }

    fn get(&self, at: usize) -> Option<&Hot> {
        self.entries.get(at)?.as_ref()
    }

    fn get_mut(&mut self, at: usize) -> Option<&mut Hot> {
        self.entries.get_mut(at)?.as_mut()
    }

    /// Adds a record whose hash is absent; tells `cold` where every moved record is now.
    fn insert(&mut self, hot: Hot, cold: &mut ColdRecords) {
        if (self.len + 1) * 5 > self.entries.len() * 4 {
            let size = (self.entries.len() * 2).max(64);
            let old = core::mem::take(&mut self.entries);
            self.entries.resize_with(size, || None);
            for hot in old.into_iter().flatten() {
                let slot = hot.slot();
                let at = self.place(hot);
                cold.set_position(slot, at);
            }
        }
        let slot = hot.slot();
        let at = self.place(hot);
        cold.set_position(slot, at);
        self.len += 1;
    }

    /// Removes the record at `at`, shifting back the records after it that probed past
    /// it (so every record stays reachable from its home without tombstones); tells
    /// `cold` where every moved record is now.
    fn remove(&mut self, at: usize, cold: &mut ColdRecords) -> Option<Hot> {
        let removed = self.entries.get_mut(at)?.take()?;
        self.len -= 1;
        let mask = self.entries.len() - 1;
        let mut hole = at;
        let mut next = (at + 1) & mask;
        while let Some(hot) = self.entries.get(next).and_then(Option::as_ref) {
            let home = Table::home(&hot.hash, mask);
            // The record may fill the hole if its home is not cyclically in (hole, next].
            let reachable = if hole <= next {
                home <= hole || home > next
            } else {
                home <= hole && home > next
            };
            if reachable {
                let moved = self.entries.get_mut(next).and_then(Option::take);
                if let Some(moved) = moved {
                    cold.set_position(moved.slot(), hole);
                    if let Some(entry) = self.entries.get_mut(hole) {
                        *entry = Some(moved);
                    }
                }
                hole = next;
            }
            next = (next + 1) & mask;
        }
        Some(removed)
    }

    fn place(&mut self, hot: Hot) -> usize {
        let mask = self.entries.len() - 1;
        let mut at = Table::home(&hot.hash, mask);
        while self.entries.get(at).is_some_and(Option::is_some) {
            at = (at + 1) & mask;
        }
        if let Some(entry) = self.entries.get_mut(at) {
            *entry = Some(hot);
        }
        at
    }
}

/// The rest of a record, and where its hot part is in the table.
#[derive(Clone, Debug)]
struct Cold {
    position: u32,
    /// The key that made the record's hash.
    hash_key: KeyFingerprint,
    checksum: Checksum,
    created_at: DateTime<Utc>,
    note: Note,
    allowed_cidrs: Option<AllowedCidrs>,
    /// The address of the use `Hot::last_used_at` records.
    last_used_ip: Option<IpAddr>,
}

/// Cold parts by slot, in fixed-size chunks: growing never moves or over-allocates them.
/// Purged records' slots are reused first.
#[derive(Default)]
struct ColdRecords {
    chunks: Vec<Vec<Cold>>,
    len: usize,
    free: Vec<Slot>,
}

const CHUNK: usize = 4096;

impl ColdRecords {
    fn get(&self, slot: Slot) -> Option<&Cold> {
        let slot = slot as usize;
        self.chunks.get(slot / CHUNK)?.get(slot % CHUNK)
    }

    fn get_mut(&mut self, slot: Slot) -> Option<&mut Cold> {
        let slot = slot as usize;
        self.chunks.get_mut(slot / CHUNK)?.get_mut(slot % CHUNK)
    }

    fn set_position(&mut self, slot: Slot, at: usize) {
        if let Some(cold) = self.get_mut(slot) {
            cold.position = at as u32;
        }
    }

    /// Stores a cold part in a free slot or a new one; its slot, or `None` when 2²⁹ − 1
    /// are taken.
    fn push(&mut self, cold: Cold) -> Option<Slot> {
        if let Some(slot) = self.free.pop() {
            if let Some(entry) = self.get_mut(slot) {
                *entry = cold;
            }
            return Some(slot);
        }
        let slot = Slot::try_from(self.len)
            .ok()
            .filter(|s| *s < RESTRICTED - 1)?;
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks.last_mut()?.push(cold);
        self.len += 1;
        Some(slot)
    }
}

impl MemoryStore {
    /// The most events its log keeps.
    pub const LOG_CAPACITY: usize = 100_000;

    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// How many tokens it holds, revoked and expired included.
    pub fn len(&self) -> usize {
        self.read().table.len
    }

    /// True when it holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    // The lock guards plain maps whose updates cannot panic half-way, so a poisoned lock
    // still guards consistent data.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// The table position of token `id` of `environment`.
    fn position(&self, environment: EnvironmentId, id: TokenId) -> Option<usize> {
        let cold = self.cold.get(*self.ids.get(&id)?)?;
        let at = cold.position as usize;
        (self.table.get(at)?.environment == environment).then_some(at)
    }

    fn token_at(&self, at: usize) -> Option<Token> {
        let hot = self.table.get(at)?;
        let created_by_token = self.creator_tokens.get(&hot.slot()).copied();
        Some(hot.token(self.cold.get(hot.slot())?, created_by_token))
    }

    fn token_in_slot(&self, slot: Slot) -> Option<Token> {
        self.token_at(self.cold.get(slot)?.position as usize)
    }

    /// The id of the token in `slot`.
    fn id_of(&self, slot: Slot) -> Option<TokenId> {
        let cold = self.cold.get(slot)?;
        Some(self.table.get(cold.position as usize)?.id)
    }

    /// The record in `slot`.
    fn hot_in(&self, slot: Slot) -> Option<&Hot> {
        self.table.get(self.cold.get(slot)?.position as usize)
    }

    /// What revoking `root` at `at` revokes besides it: the tokens live at `at` that it
    /// created, directly or through live tokens they created, counting what its rotated
    /// predecessors created as its own, and those predecessors, live or not (their
    /// children may be). The walk the SQL stores make with a recursive query. Each slot
    /// once; `root` itself is not among them.
    fn cascade(&self, root: TokenId, at: DateTime<Utc>) -> Vec<Slot> {
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if let Some(&predecessor) = self.predecessors.get(&id)
                && let Some(predecessor_id) = self.id_of(predecessor)
                && seen.insert(predecessor)
            {
                found.push(predecessor);
                stack.push(predecessor_id);
            }
            for &child in self.children.get(&id).into_iter().flatten() {
                if let Some(hot) = self.hot_in(child)
                    && hot.is_live_at(at)
                    && seen.insert(child)
                {
                    found.push(child);
                    stack.push(hot.id);
                }
            }
        }
        found
    }

    /// Whether `id` is `ancestor` or descends from it, along creating tokens and
    /// successors (see [`TokenStore::descends_from`]).
    fn descends_from(&self, environment: EnvironmentId, id: TokenId, ancestor: TokenId) -> bool {
        let Some(at) = self.position(environment, id) else {
            return false;
        };
        let mut seen = HashSet::new();
        let mut stack = vec![at];
        while let Some(at) = stack.pop() {
            let Some(hot) = self.table.get(at) else {
                continue;
            };
            if hot.id == ancestor {
                return true;
            }
            let slot = hot.slot();
            let creator = self.creator_tokens.get(&slot);
            let successor = self.successors.get(&slot);
            for next in creator.into_iter().chain(successor) {
                if let Some(next_at) = self.position(environment, *next)
                    && seen.insert(next_at)
                {
                    stack.push(next_at);
                }
            }
        }
        false
    }

    fn credential(&self, hash: &TokenHash) -> Option<Credential> {
        Some(
            self.table
                .get(self.table.find(hash)?)?
                .credential(&self.cold),
        )
    }

    /// The position of the record with the first of `hashes` found, and which one: every
    /// hash is probed, found or not, so that a miss costs what a hit does.
    fn find_any(&self, hashes: &[TokenHash]) -> Option<(usize, usize)> {
        let mut found = None;
        for (i, hash) in hashes.iter().enumerate() {
            if let Some(at) = self.table.find(hash) {
                found = found.or(Some((i, at)));
            }
        }
        found
    }

    /// The key that made the hash of the record at `at`.
    fn hash_key_at(&self, at: usize) -> Option<KeyFingerprint> {
        Some(self.cold.get(self.table.get(at)?.slot())?.hash_key)
    }

    /// The live records under `key` at `at`, and the keys' usage.
    fn key_usage(&self, at: DateTime<Utc>) -> Vec<KeyUsage> {
        let mut usage: HashMap<KeyFingerprint, KeyUsage> = self
            .hash_keys
            .iter()
            .map(|&key| {
                let none = KeyUsage {
                    key,
                    live: 0,
                    never_expiring: 0,
                    latest_expiry: None,
                };
                (key, none)
            })
            .collect();
        for (position, hot) in self.table.entries.iter().enumerate() {
            let Some(hot) = hot.as_ref().filter(|hot| hot.is_live_at(at)) else {
                continue;
            };
            let Some(key) = self.hash_key_at(position) else {
                continue;
            };
            let entry = usage.entry(key).or_insert(KeyUsage {
                key,
                live: 0,
                never_expiring: 0,
                latest_expiry: None,
            });
            entry.live += 1;
            match hot.expires_at {
                None => entry.never_expiring += 1,
                Some(expires) => {
                    entry.latest_expiry = entry.latest_expiry.max(Some(expires));
                }
            }
        }
        usage.into_values().collect()
    }

    /// The environment and id of every record hashed with `key` live at `at`.
    fn live_under(&self, key: KeyFingerprint, at: DateTime<Utc>) -> Vec<(EnvironmentId, TokenId)> {
        self.table
            .entries
            .iter()
            .enumerate()
            .filter_map(|(position, hot)| {
                let hot = hot.as_ref().filter(|hot| hot.is_live_at(at))?;
                (self.hash_key_at(position)? == key).then_some((hot.environment, hot.id))
            })
            .collect()
    }

    /// Fails when `keys` lacks a key the records need.
    fn check_keys(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        let mut needed: Vec<&KeyFingerprint> = self.hash_keys.iter().collect();
        // The same key named first every time, whatever the set's order.
        needed.sort_by_key(|key| key.to_string());
        for &key in needed {
            super::check_needed(key, keys)?;
        }
        Ok(())
    }

    /// How many tokens up the chain of creating tokens `creator` is: 0 for one a user
    /// created. Counts at most `bound + 1`.
    fn depth(&self, environment: EnvironmentId, creator: TokenId, bound: u32) -> u32 {
        let mut depth = 0;
        let mut at = creator;
        while depth <= bound {
            let parent = self
                .ids
                .get(&at)
                .filter(|_| self.position(environment, at).is_some())
                .and_then(|slot| self.creator_tokens.get(slot));
            match parent {
                Some(&parent) => {
                    depth += 1;
                    at = parent;
                }
                None => break,
            }
        }
        depth
    }

    fn check_insert(
        &self,
        new: &StoredToken,
        limits: Limits,
        replacing: Option<TokenId>,
    ) -> Result<(), StoreError> {
        if self.ids.contains_key(&new.token.id) {
            return Err(StoreError::Duplicate { key: UniqueKey::Id });
        }
        if self.table.find(&new.hash).is_some() {
            return Err(StoreError::Duplicate {
                key: UniqueKey::Hash,
            });
        }
        let environment = new.token.environment;
        let now = new.token.created_at;
        // A rotation's successor inherits its predecessor's creator, which may have been
        // rotated away since, and takes its place: its delegation was checked when the
        // predecessor was made.
        if let Some(creator) = new.token.created_by_token.filter(|_| replacing.is_none()) {
            let live = self
                .position(environment, creator)
                .and_then(|at| self.table.get(at))
                .is_some_and(|hot| hot.is_live_at(now));
            if !live {
                return Err(StoreError::NotLive { id: creator });
            }
            if let Some(limit) = limits.max_depth
                && self.depth(environment, creator, limit.get()) >= limit.get()
            {
                return Err(StoreError::DelegationTooDeep {
                    creator,
                    limit: limit.get(),
                });
            }
            if let Some(limit) = limits.max_per_creator {
                let live = self
                    .children
                    .get(&creator)
                    .into_iter()
                    .flatten()
                    .filter(|&&child| self.hot_in(child).is_some_and(|hot| hot.is_live_at(now)))
                    .count();
                if live >= limit.get() as usize {
                    return Err(StoreError::TooManyDelegated {
                        environment,
                        creator,
                        limit: limit.get(),
                    });
                }
            }
        }
        let tokens = self.by_env.get(&environment);
        if let Some(limit) = limits.max_live {
            let live = tokens.map_or(0, |tokens| {
                tokens
                    .values()
                    .filter_map(|slot| self.hot_in(*slot))
                    .filter(|hot| Some(hot.id) != replacing && hot.is_live_at(now))
                    .count()
            });
            if live >= limit.get() as usize {
                return Err(StoreError::LimitReached {
                    environment,
                    limit: limit.get(),
                });
            }
        }
        if let Some(limit) = limits.max_total
            && tokens.map_or(0, BTreeMap::len) >= limit.get() as usize
        {
            return Err(StoreError::EnvironmentFull {
                environment,
                limit: limit.get(),
            });
        }
        Ok(())
    }

    /// Adds a checked record. Fails, changing nothing, only when the store is full.
    fn insert_checked(&mut self, new: StoredToken) -> Result<(), StoreError> {
        let StoredToken {
            token,
            hash,
            hash_key,
        } = new;
        let restricted = token.allowed_cidrs.is_some();
        let slot = self
            .cold
            .push(Cold {
                position: 0,
                hash_key,
                checksum: token.checksum,
                created_at: token.created_at,
                note: token.note,
                allowed_cidrs: token.allowed_cidrs,
                last_used_ip: token.last_used_ip,
            })
            .ok_or_else(|| StoreError::Backend {
                source: "the in-memory store is full (2^29 - 1 tokens)".into(),
            })?;
        let flags = if token.active { ACTIVE } else { 0 }
            | if token.created_by_token.is_some() {
                DELEGATED
            } else {
                0
            }
            | if restricted { RESTRICTED } else { 0 };
        let hot = Hot {
            hash,
            id: token.id,
            environment: token.environment,
            scopes: intern(&mut self.scope_sets, token.scopes),
            created_by: intern(&mut self.creators, token.created_by),
            expires_at: token.expires_at,
            last_used_at: token.last_used_at,
            revoked_at: token.revoked_at,
            slot_active: slot | flags,
        };
        self.table.insert(hot, &mut self.cold);
        self.ids.insert(token.id, slot);
        if let Some(creator) = token.created_by_token {
            self.children.entry(creator).or_default().push(slot);
            self.creator_tokens.insert(slot, creator);
        }
        self.by_env.entry(token.environment).or_default().insert(
            Cursor {
                created_at: token.created_at,
                id: token.id,
            },
            slot,
        );
        Ok(())
    }

    /// Whether token `id` created a token that is not revoked.
    fn created_active(&self, id: TokenId) -> bool {
        self.children
            .get(&id)
            .into_iter()
            .flatten()
            .any(|&child| self.hot_in(child).is_some_and(Hot::active))
    }

    /// Deletes at most `max` records that ended before `ended_before` and created no
    /// unrevoked token.
    fn purge(&mut self, ended_before: DateTime<Utc>, max: u32) -> u32 {
        let ended = |hot: &Hot| {
            (!hot.active() && hot.revoked_at.is_some_and(|at| at < ended_before))
                || hot.expires_at.is_some_and(|at| at < ended_before)
        };
        let doomed: Vec<usize> = self
            .table
            .entries
            .iter()
            .enumerate()
            .filter_map(|(at, hot)| Some((at, hot.as_ref()?)))
            .filter(|(_, hot)| ended(hot) && !self.created_active(hot.id))
            .map(|(at, _)| at)
            .take(max as usize)
            .collect();
        // Removing shifts records back, so each is found again by its id.
        let ids: Vec<(EnvironmentId, TokenId)> = doomed
            .iter()
            .filter_map(|&at| self.table.get(at).map(|hot| (hot.environment, hot.id)))
            .collect();
        let mut purged = 0;
        for (environment, id) in ids {
            if self.remove(environment, id) {
                purged += 1;
            }
        }
        purged
    }

    /// Removes token `id` and every reference to its slot, which a later record reuses.
    fn remove(&mut self, environment: EnvironmentId, id: TokenId) -> bool {
        let Some(at) = self.position(environment, id) else {
            return false;
        };
        let Some(hot) = self.table.remove(at, &mut self.cold) else {
            return false;
        };
        let slot = hot.slot();
        self.ids.remove(&id);
        if let Some(cold) = self.cold.get(slot) {
            let cursor = Cursor {
                created_at: cold.created_at,
                id,
            };
            if let Some(tokens) = self.by_env.get_mut(&environment) {
                tokens.remove(&cursor);
                if tokens.is_empty() {
                    self.by_env.remove(&environment);
                }
            }
        }
        if let Some(creator) = self.creator_tokens.remove(&slot)
            && let Some(siblings) = self.children.get_mut(&creator)
        {
            siblings.retain(|&s| s != slot);
            if siblings.is_empty() {
                self.children.remove(&creator);
            }
        }
        self.children.remove(&id);
        // Its successor no longer walks back to it; a predecessor keeps the successor's
        // id, so that it stays rotated.
        if let Some(successor) = self.successors.remove(&slot)
            && self.predecessors.get(&successor) == Some(&slot)
        {
            self.predecessors.remove(&successor);
        }
        self.predecessors.remove(&id);
        if let Some(cold) = self.cold.get_mut(slot) {
            // Drop the note and the list now rather than when the slot is reused.
            cold.note = Note::placeholder();
            cold.allowed_cidrs = None;
        }
        self.cold.free.push(slot);
        true
    }
}

/// The shared copy of `value`, which becomes the shared copy if it is the first.
/// A rotation's checks on its predecessor, in the order the [`TokenStore`] contract gives
/// (found, not rotated yet, live, and a successor not born expired), shared by every
/// store: `found` is the predecessor's record and its successor if it has one.
/// `resuming` is the successor of an earlier attempt of this same rotation that may have
/// committed: a predecessor rotated to it passes, with `true` (that attempt did the
/// rotation).
pub(crate) fn check_predecessor<T>(
    environment: EnvironmentId,
    predecessor: TokenId,
    successor: &Token,
    found: Option<(T, Option<TokenId>)>,
    is_live_at: impl FnOnce(&T, DateTime<Utc>) -> bool,
    resuming: Option<TokenId>,
) -> Result<(T, bool), StoreError> {
    let (old, replaced_by) = found.ok_or(StoreError::NotFound {
        environment,
        id: predecessor,
    })?;
    if let Some(replaced_by) = replaced_by {
        if resuming == Some(replaced_by) {
            return Ok((old, true));
        }
        return Err(StoreError::AlreadyRotated {
            id: predecessor,
            successor: Some(replaced_by),
        });
    }
    // A successor born expired would be useless: only a predecessor that is not live (or
    // a clock that moved back) leads to one, and it is refused as the predecessor is.
    if !is_live_at(&old, successor.created_at) || !successor.is_live_at(successor.created_at) {
        return Err(StoreError::NotLive { id: predecessor });
    }
    Ok((old, false))
}

fn intern<T: Clone + Eq + core::hash::Hash>(set: &mut HashSet<T>, value: T) -> T {
    match set.get(&value) {
        Some(shared) => shared.clone(),
        None => {
            set.insert(value.clone());
            value
        }
    }
}

impl MemoryStore {
    /// [`TokenStore::revoke`], by an actor or for a leak.
    fn revoke_by(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Revoker<'_>,
    ) -> Result<Revoked, StoreError> {
        let mut inner = self.write();
        let not_found = || StoreError::NotFound { environment, id };
        let position = inner.position(environment, id).ok_or_else(not_found)?;
        let was_active = inner.table.get(position).is_some_and(Hot::active);
        let mut cascade = Vec::new();
        if was_active {
            if let Some(hot) = inner.table.get_mut(position) {
                hot.set_active(false);
                hot.revoked_at.get_or_insert(at);
            }
            for slot in inner.cascade(id, at) {
                let Some(at_position) = inner.cold.get(slot).map(|c| c.position as usize) else {
                    continue;
                };
                if let Some(hot) = inner.table.get_mut(at_position)
                    && hot.is_live_at(at)
                {
                    hot.set_active(false);
                    hot.revoked_at = Some(at);
                    cascade.push(hot.id);
                }
            }
        }
        let token = inner.token_at(position).ok_or_else(not_found)?;
        if was_active {
            for batch in EventBatch::revocation(at, environment, by, &id, &cascade) {
                self.log.append(&batch);
            }
        }
        Ok(Revoked { token, cascade })
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn insert(&self, token: StoredToken, limits: Limits) -> Result<(), StoreError> {
        let mut inner = self.write();
        inner.check_insert(&token, limits, None)?;
        let id = [token.token.id];
        let issued = EventBatch::issue(&token.token);
        let batch = EventBatch {
            at: issued.at,
            environment: issued.environment,
            kind: issued.kind,
            actor: issued.actor,
            tokens: &id,
            leak: None,
        };
        inner.insert_checked(token)?;
        self.log.append(&batch);
        Ok(())
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        let inner = self.read();
        Ok(inner.table.find(hash).and_then(|at| inner.token_at(at)))
    }

    async fn find_many_by_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Vec<Option<Token>>, StoreError> {
        let inner = self.read();
        Ok(hashes
            .iter()
            .map(|hash| inner.table.find(hash).and_then(|at| inner.token_at(at)))
            .collect())
    }

    async fn find_credential(&self, hash: &TokenHash) -> Result<Option<Credential>, StoreError> {
        Ok(self.read().credential(hash))
    }

    fn find_credential_now(&self, hash: &TokenHash) -> Option<Option<Credential>> {
        Some(self.read().credential(hash))
    }

    async fn get(
        &self,
        environment: EnvironmentId,
        id: TokenId,
    ) -> Result<Option<Token>, StoreError> {
        let inner = self.read();
        Ok(inner
            .position(environment, id)
            .and_then(|at| inner.token_at(at)))
    }

    async fn list(
        &self,
        environment: EnvironmentId,
        page: PageRequest,
    ) -> Result<Page, StoreError> {
        let inner = self.read();
        let Some(tokens) = inner.by_env.get(&environment) else {
            return Ok(Page {
                tokens: Vec::new(),
                next: None,
            });
        };
        let start = page.after.map_or(Bound::Unbounded, Bound::Excluded);
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT) as usize;
        let tokens: Vec<Token> = tokens
            .range((start, Bound::Unbounded))
            .filter_map(|(_, slot)| inner.token_in_slot(*slot))
            .filter(|token| page.keeps(token))
            .take(limit + 1)
            .collect();
        Ok(Page::from_overfetch(tokens, limit as u32))
    }

    async fn revoke(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        by: Actor,
    ) -> Result<Revoked, StoreError> {
        self.revoke_by(environment, id, at, Revoker::Actor(by))
    }

    async fn revoke_leaked(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        leak: &LeakDetails,
    ) -> Result<Revoked, StoreError> {
        self.revoke_by(environment, id, at, Revoker::Leak(leak))
    }

    async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError> {
        let Rotation {
            environment,
            predecessor,
            predecessor_expires_at,
            successor,
            limits,
            actor,
        } = rotation;
        let not_found = || StoreError::NotFound {
            environment,
            id: predecessor,
        };
        let mut inner = self.write();
        let found = inner
            .position(environment, predecessor)
            .and_then(|at| inner.table.get(at))
            .map(|hot| (hot, inner.successors.get(&hot.slot()).copied()));
        let is_live_at = |hot: &&Hot, now| hot.is_live_at(now);
        let (hot, _) = check_predecessor(
            environment,
            predecessor,
            &successor.token,
            found,
            is_live_at,
            None,
        )?;
        let slot = hot.slot();
        let successor_id = successor.token.id;
        let at = successor.token.created_at;
        inner.check_insert(&successor, limits, Some(predecessor))?;
        inner.insert_checked(successor)?;
        inner.successors.insert(slot, successor_id);
        inner.predecessors.insert(successor_id, slot);
        // The insert may have grown the table and moved the predecessor.
        let old = inner
            .position(environment, predecessor)
            .ok_or_else(not_found)?;
        if let Some(hot) = inner.table.get_mut(old) {
            hot.expires_at = Some(
                hot.expires_at
                    .map_or(predecessor_expires_at, |at| at.min(predecessor_expires_at)),
            );
        }
        for batch in EventBatch::rotation(at, environment, actor, &predecessor, &successor_id) {
            self.log.append(&batch);
        }
        inner.token_at(old).ok_or_else(not_found)
    }

    async fn descends_from(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        ancestor: TokenId,
    ) -> Result<bool, StoreError> {
        Ok(self.read().descends_from(environment, id, ancestor))
    }

    async fn purge(&self, ended_before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        Ok(self.write().purge(ended_before, max))
    }

    async fn record_last_use(
        &self,
        id: TokenId,
        at: DateTime<Utc>,
        from: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        let mut inner = self.write();
        let inner = &mut *inner;
        let Some(&slot) = inner.ids.get(&id) else {
            return Ok(());
        };
        let Some(cold) = inner.cold.get_mut(slot) else {
            return Ok(());
        };
        if let Some(hot) = inner.table.get_mut(cold.position as usize)
            && hot.last_used_at.is_none_or(|last| at > last)
        {
            // The address goes with its time (see `model::record_use`).
            hot.last_used_at = Some(at);
            cold.last_used_ip = from;
        }
        Ok(())
    }

    /// Records nothing across restarts, but keeps the set of keys its records need, so
    /// that an issuer with a keyring is refused as a database would refuse it.
    async fn prepare(&self, key: KeyFingerprint) -> Result<(), StoreError> {
        self.prepare_keyring(&KeyringFingerprints::single(key))
            .await
    }

    async fn prepare_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        let mut inner = self.write();
        inner.check_keys(keys)?;
        inner.hash_keys.insert(keys.current());
        Ok(())
    }

    async fn check_keyring(&self, keys: &KeyringFingerprints) -> Result<(), StoreError> {
        self.read().check_keys(keys)
    }

    async fn find_by_any_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Option<(usize, Token)>, StoreError> {
        let inner = self.read();
        Ok(inner
            .find_any(hashes)
            .and_then(|(i, at)| Some((i, inner.token_at(at)?))))
    }

    fn find_credential_any_now(&self, hashes: &[TokenHash]) -> Option<Option<(usize, Credential)>> {
        let inner = self.read();
        Some(
            inner
                .find_any(hashes)
                .and_then(|(i, at)| Some((i, inner.table.get(at)?.credential(&inner.cold)))),
        )
    }

    async fn rehash(&self, rehash: &Rehash) -> Result<bool, StoreError> {
        let mut inner = self.write();
        let Some(at) = inner.table.find(&rehash.from) else {
            return Ok(false);
        };
        let matches = inner
            .table
            .get(at)
            .is_some_and(|hot| hot.id == rehash.id && hot.is_live_at(rehash.at));
        if !matches || inner.table.find(&rehash.to).is_some() {
            return Ok(false);
        }
        let inner = &mut *inner;
        let Some(mut hot) = inner.table.remove(at, &mut inner.cold) else {
            return Ok(false);
        };
        let (slot, environment) = (hot.slot(), hot.environment);
        hot.hash = rehash.to;
        inner.table.insert(hot, &mut inner.cold);
        if let Some(cold) = inner.cold.get_mut(slot) {
            cold.hash_key = rehash.key;
        }
        self.log
            .append(&EventBatch::rehash(rehash.at, environment, &rehash.id));
        Ok(true)
    }

    async fn hash_key_usage(&self, at: DateTime<Utc>) -> Result<Vec<KeyUsage>, StoreError> {
        Ok(self.read().key_usage(at))
    }

    async fn retire_hash_key(
        &self,
        key: KeyFingerprint,
        at: DateTime<Utc>,
        revoke_remaining: Option<Actor>,
    ) -> Result<Retired, StoreError> {
        let mut revoked = Vec::new();
        if let Some(by) = revoke_remaining {
            let remaining = self.read().live_under(key, at);
            for (environment, id) in remaining {
                let done = self.revoke_by(environment, id, at, Revoker::KeyRetired(by))?;
                if done.token.revoked_at == Some(at) && !revoked.contains(&id) {
                    revoked.push(id);
                    revoked.extend(done.cascade);
                }
            }
        }
        let mut inner = self.write();
        let live = inner.live_under(key, at).len() as u64;
        if live > 0 {
            return Err(StoreError::HashKeyInUse { key, live });
        }
        inner.hash_keys.remove(&key);
        Ok(Retired { key, revoked })
    }

    async fn events_since(
        &self,
        environment: Option<EnvironmentId>,
        after: EventCursor,
        limit: u32,
    ) -> Result<EventPage, StoreError> {
        self.log.since(environment, after, limit)
    }

    async fn event_head(&self) -> Result<EventCursor, StoreError> {
        Ok(EventCursor::after(self.log.lock().last))
    }

    async fn prune_events(&self, before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        let mut log = self.log.lock();
        let mut pruned = 0;
        let mut through = log.pruned_through;
        log.events.retain(|e| {
            let prune = pruned < max && e.at < before;
            if prune {
                pruned += 1;
                through = through.max(e.sequence);
            }
            !prune
        });
        log.pruned_through = through;
        Ok(pruned)
    }

    async fn forget_leak_details(
        &self,
        before: DateTime<Utc>,
        max: u32,
    ) -> Result<u32, StoreError> {
        let mut log = self.log.lock();
        let mut forgotten = 0;
        for event in log.events.iter_mut() {
            if forgotten >= max {
                break;
            }
            if event.at >= before {
                continue;
            }
            if let Some(leak) = event.leak.as_mut().filter(|leak| leak.has_reporter_data()) {
                *leak = leak.forgotten();
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }

    fn watch(&self, after: EventCursor) -> Result<ChangeFeed, StoreError> {
        let log = self.log.clone();
        let grown = log.grown.subscribe();
        Ok(ChangeFeed::new(MemoryFeed { log, grown }, after))
    }
}
