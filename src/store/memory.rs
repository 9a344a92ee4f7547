//! [`MemoryStore`]: the embedded default store, in process memory.

use super::{Cursor, Page, PageRequest, Rotation, StoreError, TokenStore, UniqueKey};
use crate::hash::TokenHash;
use crate::model::{Creator, Credential, EnvironmentId, StoredToken, Token, TokenId};
use crate::scope::Scopes;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use core::hash::{BuildHasherDefault, Hasher};
use core::num::NonZeroU32;
use core::ops::Bound;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Keeps tokens in memory: for tests, single-process services and as the reference
/// implementation of the [`TokenStore`] contract. Nothing survives the process.
///
/// Safe to share between threads (one reader-writer lock; look-ups only read). Look-up by
/// hash is one hash-map probe.
///
/// ```
/// use apitoken::{MemoryStore, TokenIssuer};
///
/// let issuer = TokenIssuer::new(MemoryStore::new());
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_hash: HashMap<TokenHash, Token, BuildHasherDefault<HashPrefix>>,
    ids: HashMap<TokenId, TokenHash>,
    by_env: HashMap<EnvironmentId, BTreeSet<Cursor>>,
    /// Creators and scope sets are shared by many tokens: each distinct one is kept once.
    creators: HashSet<Arc<Creator>>,
    scope_sets: HashSet<Scopes>,
}

/// A token hash is already uniformly random, and only the issuer chooses which hashes are
/// inserted, so its first 8 bytes are a fine hash-map hash (no SipHash needed).
#[derive(Default)]
pub(crate) struct HashPrefix(u64);

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

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// How many tokens it holds, revoked and expired included.
    pub fn len(&self) -> usize {
        self.read().by_hash.len()
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
    fn token(&self, environment: EnvironmentId, id: TokenId) -> Option<&Token> {
        let token = self.by_hash.get(self.ids.get(&id)?)?;
        (token.environment == environment).then_some(token)
    }

    fn token_mut(&mut self, environment: EnvironmentId, id: TokenId) -> Option<&mut Token> {
        let hash = self.ids.get(&id)?;
        let token = self.by_hash.get_mut(hash)?;
        (token.environment == environment).then_some(token)
    }

    fn check_insert(
        &self,
        new: &StoredToken,
        max_live: Option<NonZeroU32>,
        replacing: Option<TokenId>,
    ) -> Result<(), StoreError> {
        if self.ids.contains_key(&new.token.id) {
            return Err(StoreError::Duplicate { key: UniqueKey::Id });
        }
        if self.by_hash.contains_key(&new.hash) {
            return Err(StoreError::Duplicate {
                key: UniqueKey::Hash,
            });
        }
        let Some(limit) = max_live else {
            return Ok(());
        };
        let environment = new.token.environment;
        let now = new.token.created_at;
        let live = self.by_env.get(&environment).map_or(0, |tokens| {
            tokens
                .iter()
                .filter_map(|c| self.by_hash.get(self.ids.get(&c.id)?))
                .filter(|t| Some(t.id) != replacing && t.is_live_at(now))
                .count()
        });
        if live >= limit.get() as usize {
            return Err(StoreError::LimitReached {
                environment,
                limit: limit.get(),
            });
        }
        Ok(())
    }

    fn insert_unchecked(&mut self, new: StoredToken) {
        let StoredToken { mut token, hash } = new;
        token.created_by = intern(&mut self.creators, token.created_by);
        token.scopes = intern(&mut self.scope_sets, token.scopes);
        self.ids.insert(token.id, hash);
        self.by_env
            .entry(token.environment)
            .or_default()
            .insert(Cursor::after(&token));
        self.by_hash.insert(hash, token);
    }
}

/// The shared copy of `value`, which becomes the shared copy if it is the first.
fn intern<T: Clone + Eq + core::hash::Hash>(set: &mut HashSet<T>, value: T) -> T {
    match set.get(&value) {
        Some(shared) => shared.clone(),
        None => {
            set.insert(value.clone());
            value
        }
    }
}

#[async_trait]
impl TokenStore for MemoryStore {
    async fn insert(
        &self,
        token: StoredToken,
        max_live: Option<NonZeroU32>,
    ) -> Result<(), StoreError> {
        let mut inner = self.write();
        inner.check_insert(&token, max_live, None)?;
        inner.insert_unchecked(token);
        Ok(())
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        Ok(self.read().by_hash.get(hash).cloned())
    }

    async fn find_credential(&self, hash: &TokenHash) -> Result<Option<Credential>, StoreError> {
        // Leaves the note alone: it is a separate allocation, a cache miss per look-up.
        Ok(self.read().by_hash.get(hash).map(Credential::from))
    }

    async fn get(
        &self,
        environment: EnvironmentId,
        id: TokenId,
    ) -> Result<Option<Token>, StoreError> {
        Ok(self.read().token(environment, id).cloned())
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
            .take(limit + 1)
            .filter_map(|c| inner.by_hash.get(inner.ids.get(&c.id)?).cloned())
            .collect();
        Ok(Page::from_overfetch(tokens, limit as u32))
    }

    async fn revoke(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
    ) -> Result<Token, StoreError> {
        let mut inner = self.write();
        let token = inner
            .token_mut(environment, id)
            .ok_or(StoreError::NotFound { environment, id })?;
        token.active = false;
        token.revoked_at.get_or_insert(at);
        Ok(token.clone())
    }

    async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError> {
        let Rotation {
            environment,
            predecessor,
            predecessor_expires_at,
            successor,
            max_live,
        } = rotation;
        let mut inner = self.write();
        let now = successor.token.created_at;
        let old = inner
            .token(environment, predecessor)
            .ok_or(StoreError::NotFound {
                environment,
                id: predecessor,
            })?;
        if !old.is_live_at(now) {
            return Err(StoreError::NotLive { id: predecessor });
        }
        inner.check_insert(&successor, max_live, Some(predecessor))?;
        inner.insert_unchecked(successor);
        let old = inner
            .token_mut(environment, predecessor)
            .ok_or(StoreError::NotFound {
                environment,
                id: predecessor,
            })?;
        old.expires_at = Some(
            old.expires_at
                .map_or(predecessor_expires_at, |at| at.min(predecessor_expires_at)),
        );
        Ok(old.clone())
    }

    async fn record_last_use(&self, id: TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut inner = self.write();
        let Some(hash) = inner.ids.get(&id).copied() else {
            return Ok(());
        };
        if let Some(token) = inner.by_hash.get_mut(&hash) {
            token.last_used_at = Some(token.last_used_at.map_or(at, |last| last.max(at)));
        }
        Ok(())
    }
}
