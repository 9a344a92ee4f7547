//! The keyring's checks: a token found under any key in one call, a rehash that a
//! revocation always wins against, and a keyring refused when it lacks a key the rows
//! need. A store that records no keys (see "Keyrings" in the [`TokenStore`] docs) passes
//! the last two by saying so.

use super::{base_time, by, new_environment, sample_token};
use crate::event::{Actor, EventKind};
use crate::format::TokenFormat;
use crate::hash::{HashKey, KeyFingerprint, KeyringFingerprints, TokenHash, TokenHasher};
use crate::model::StoredToken;
use crate::store::{Limits, Rehash, StoreError, TokenStore};
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;

/// Runs every keyring check.
pub(super) async fn run_all(store: &dyn TokenStore) {
    a_token_is_found_under_any_of_its_keys(store).await;
    a_rehash_moves_a_live_token_and_nothing_else(store).await;
    a_rehash_racing_a_revocation_never_revives_it(store).await;
    a_ring_that_lacks_a_key_is_refused_until_the_key_is_retired(store).await;
}

/// A hasher with a fresh random key.
fn random_hasher() -> TokenHasher {
    TokenHasher::keyed(HashKey::generate().unwrap())
}

/// A record like [`sample_token`]'s hashed with `hasher`, and its raw token's text.
fn under(hasher: &TokenHasher, created_at: DateTime<Utc>) -> (String, StoredToken) {
    let raw = TokenFormat::dynamic().generate(&mut rand::rng());
    let mut stored = sample_token(new_environment(), created_at);
    stored.hash = hasher.hash(raw.expose_secret());
    stored.hash_key = hasher.fingerprint();
    (raw.expose_secret().to_owned(), stored)
}

/// `find_by_any_hash` finds a token under any candidate, saying which, and nothing when
/// no candidate is known; `find_credential_any_now`, when it answers, answers the same.
async fn a_token_is_found_under_any_of_its_keys(store: &dyn TokenStore) {
    let (current, retired) = (random_hasher(), random_hasher());
    let (raw, stored) = under(&retired, base_time());
    store.insert(stored.clone(), Limits::NONE).await.unwrap();
    let candidates = [current.hash(&raw), retired.hash(&raw)];
    let found = store.find_by_any_hash(&candidates).await.unwrap();
    assert_eq!(
        found.as_ref().map(|(i, token)| (*i, token)),
        Some((1, &stored.token)),
        "keyring: a token hashed with a retired key is found by its candidate, with the candidate's position"
    );
    let three = [
        TokenHasher::unkeyed().hash(&raw),
        candidates[0],
        candidates[1],
    ];
    let found = store.find_by_any_hash(&three).await.unwrap();
    assert_eq!(
        found.map(|(i, token)| (i, token.id)),
        Some((2, stored.token.id)),
        "keyring: the position counts every candidate before it"
    );
    let only = store.find_by_any_hash(&candidates[1..]).await.unwrap();
    assert_eq!(
        only.map(|(i, token)| (i, token.id)),
        Some((0, stored.token.id)),
        "keyring: one candidate is a look-up by hash"
    );
    let (unknown, _) = under(&current, base_time());
    let misses = [current.hash(&unknown), retired.hash(&unknown)];
    assert_eq!(
        store.find_by_any_hash(&misses).await.unwrap(),
        None,
        "keyring: a token no candidate finds is unknown"
    );
    if let Some(now) = store.find_credential_any_now(&candidates) {
        assert_eq!(
            now.map(|(i, credential)| (i, credential.id)),
            Some((1, stored.token.id)),
            "keyring: find_credential_any_now answers what find_by_any_hash does"
        );
    }
    if let Some(now) = store.find_credential_any_now(&misses) {
        assert!(
            now.is_none(),
            "keyring: find_credential_any_now finds no unknown token"
        );
    }
}

/// Whether the store records keys: it counts them, or says it cannot.
async fn records_keys(store: &dyn TokenStore) -> bool {
    match store.hash_key_usage(base_time()).await {
        Ok(_) => true,
        Err(StoreError::NoKeyRecords) => false,
        Err(e) => panic!("keyring: hash_key_usage failed: {e}"),
    }
}

/// A rehash moves a live token from the hash read to the new one, once, with a
/// `Rehashed` event by the token; it leaves alone a token whose hash changed, a revoked
/// token and an expired one.
async fn a_rehash_moves_a_live_token_and_nothing_else(store: &dyn TokenStore) {
    let (current, retired) = (random_hasher(), random_hasher());
    let at = base_time() + TimeDelta::minutes(5);
    let (raw, stored) = under(&retired, base_time());
    store.insert(stored.clone(), Limits::NONE).await.unwrap();
    let head = store.event_head().await.ok();
    let rehash = Rehash {
        id: stored.token.id,
        environment: stored.token.environment,
        from: stored.hash,
        to: current.hash(&raw),
        key: current.fingerprint(),
        at,
    };
    if !records_keys(store).await {
        assert!(
            !store.rehash(&rehash).await.unwrap(),
            "keyring: a store that records no keys rehashes nothing"
        );
        return;
    }
    assert!(
        store.rehash(&rehash).await.unwrap(),
        "keyring: a live token read under its hash is rehashed"
    );
    let found = store.find_by_hash(&rehash.to).await.unwrap();
    assert_eq!(
        found.as_ref(),
        Some(&stored.token),
        "keyring: after a rehash the token is found by its new hash, unchanged otherwise"
    );
    assert_eq!(
        store.find_by_hash(&stored.hash).await.unwrap(),
        None,
        "keyring: after a rehash the old hash finds nothing"
    );
    assert!(
        !store.rehash(&rehash).await.unwrap(),
        "keyring: a rehash of a hash that changed since it was read changes nothing"
    );
    if let Some(head) = head {
        let events = store
            .events_since(Some(stored.token.environment), head, 100)
            .await
            .unwrap()
            .events;
        let kinds: Vec<(EventKind, Actor)> = events.iter().map(|e| (e.kind, e.actor)).collect();
        assert_eq!(
            kinds,
            [(EventKind::Rehashed, Actor::Token(stored.token.id))],
            "keyring: a rehash appends one Rehashed event by the token, and a refused one none"
        );
    }

    // Revoked, then rehashed: nothing changes.
    let (raw, revoked) = under(&retired, base_time());
    let environment = revoked.token.environment;
    store.insert(revoked.clone(), Limits::NONE).await.unwrap();
    store
        .revoke(environment, revoked.token.id, at, by())
        .await
        .unwrap();
    let refused = Rehash {
        id: revoked.token.id,
        environment,
        from: revoked.hash,
        to: current.hash(&raw),
        key: current.fingerprint(),
        at,
    };
    assert!(
        !store.rehash(&refused).await.unwrap(),
        "keyring: a revoked token is not rehashed"
    );
    let still = store.find_by_hash(&revoked.hash).await.unwrap().unwrap();
    assert!(
        !still.active && still.revoked_at == Some(at),
        "keyring: a revoked token stays revoked under its old hash"
    );

    // Expired at the time of use: nothing changes.
    let (raw, mut expired) = under(&retired, base_time());
    expired.token.expires_at = Some(at);
    store.insert(expired.clone(), Limits::NONE).await.unwrap();
    let late = Rehash {
        id: expired.token.id,
        environment: expired.token.environment,
        from: expired.hash,
        to: current.hash(&raw),
        key: current.fingerprint(),
        at,
    };
    assert!(
        !store.rehash(&late).await.unwrap(),
        "keyring: a token expired at the time of use is not rehashed"
    );
}

/// Rehashes and revocations of the same tokens, all at once: whichever runs first, every
/// token ends revoked (at the revocation's time), found by exactly one of its hashes.
async fn a_rehash_racing_a_revocation_never_revives_it(store: &dyn TokenStore) {
    if !records_keys(store).await {
        return;
    }
    let (current, retired) = (random_hasher(), random_hasher());
    let at = base_time() + TimeDelta::minutes(5);
    let mut tokens = Vec::new();
    for _ in 0..8 {
        let (raw, stored) = under(&retired, base_time());
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
        let new: TokenHash = current.hash(&raw);
        tokens.push((stored, new));
    }
    let key = current.fingerprint();
    let races = tokens.iter().map(|(stored, new)| async move {
        let rehash = Rehash {
            id: stored.token.id,
            environment: stored.token.environment,
            from: stored.hash,
            to: *new,
            key,
            at,
        };
        let revoke = store.revoke(stored.token.environment, stored.token.id, at, by());
        let (rehashed, revoked) = futures_util::join!(store.rehash(&rehash), revoke);
        rehashed.unwrap();
        revoked.unwrap();
    });
    join_all(races).await;
    for (stored, new) in &tokens {
        let old = store.find_by_hash(&stored.hash).await.unwrap();
        let moved = store.find_by_hash(new).await.unwrap();
        assert!(
            old.is_some() != moved.is_some(),
            "keyring: a token racing a rehash is found by exactly one of its hashes"
        );
        let token = old.or(moved).unwrap();
        assert!(
            !token.active && token.revoked_at == Some(at),
            "keyring: a revocation racing a rehash wins: the token stays revoked"
        );
    }
}

/// A store refuses (in `prepare_keyring` and `check_keyring`) a ring that lacks a key a
/// live token needs, naming it; counts the key's tokens; refuses to retire it while they
/// are live; retires it after revoking them (`KeyRetired` events); then takes the ring.
async fn a_ring_that_lacks_a_key_is_refused_until_the_key_is_retired(store: &dyn TokenStore) {
    if !records_keys(store).await {
        assert!(
            matches!(
                store
                    .retire_hash_key(KeyFingerprint::Unkeyed, base_time(), None)
                    .await,
                Err(StoreError::NoKeyRecords)
            ),
            "keyring: a store that counts no keys retires none, saying so"
        );
        return;
    }
    // Whole microseconds, as the issuer gives every time.
    let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap();
    // The keys the store needs already, whatever it was prepared with: each refusal of a
    // ring names one, which joins the ring.
    let new = random_hasher();
    let mut needed: Vec<KeyFingerprint> = Vec::new();
    let with_new = loop {
        let keys = ring(new.fingerprint(), &needed);
        match store.prepare_keyring(&keys).await {
            Ok(()) => break keys,
            Err(StoreError::KeyringLacksKey { missing, .. })
            | Err(StoreError::HashKeyMismatch {
                stored: missing, ..
            }) if needed.len() < crate::hash::MAX_RETIRED_KEYS && !needed.contains(&missing) => {
                needed.push(missing);
            }
            Err(e) => {
                panic!("keyring: preparing a ring with every key the store named failed: {e}")
            }
        }
    };
    store.check_keyring(&with_new).await.unwrap();
    let (_, stored) = under(&new, now - TimeDelta::minutes(1));
    store.insert(stored.clone(), Limits::NONE).await.unwrap();

    let (current, rest) = match needed.split_first() {
        Some((first, rest)) => (*first, rest.to_vec()),
        None => (KeyFingerprint::Unkeyed, Vec::new()),
    };
    let without = ring(current, &rest);
    for refused in [
        store.prepare_keyring(&without).await,
        store.check_keyring(&without).await,
    ] {
        match refused {
            Err(StoreError::KeyringLacksKey { missing, .. })
            | Err(StoreError::HashKeyMismatch {
                stored: missing, ..
            }) => assert_eq!(
                missing,
                new.fingerprint(),
                "keyring: the refusal names the key the rows need"
            ),
            other => panic!(
                "keyring: a ring that lacks a key live tokens need is refused, got {other:?}"
            ),
        }
    }
    let usage = store.hash_key_usage(now).await.unwrap();
    let counted = usage.iter().find(|u| u.key == new.fingerprint());
    assert_eq!(
        counted.map(|u| (u.live, u.never_expiring, u.latest_expiry)),
        Some((1, 1, None)),
        "keyring: a key's live tokens are counted"
    );
    match store.retire_hash_key(new.fingerprint(), now, None).await {
        Err(StoreError::HashKeyInUse { key, live }) => assert_eq!(
            (key, live),
            (new.fingerprint(), 1),
            "keyring: retiring a key in use is refused, naming it and its live tokens"
        ),
        other => panic!("keyring: retiring a key live tokens need is refused, got {other:?}"),
    }
    let head = store.event_head().await.ok();
    let retired = store
        .retire_hash_key(new.fingerprint(), now, Some(by()))
        .await
        .unwrap();
    assert_eq!(
        retired.revoked,
        [stored.token.id],
        "keyring: retiring a key with revoke_remaining revokes its live tokens"
    );
    let revoked = store
        .get(stored.token.environment, stored.token.id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !revoked.active && revoked.revoked_at == Some(now),
        "keyring: a token revoked with its key is revoked at that time"
    );
    if let Some(head) = head {
        let events = store
            .events_since(Some(stored.token.environment), head, 100)
            .await
            .unwrap()
            .events;
        let kinds: Vec<(EventKind, Actor)> = events.iter().map(|e| (e.kind, e.actor)).collect();
        assert_eq!(
            kinds,
            [(EventKind::KeyRetired, by())],
            "keyring: a token revoked with its key has a KeyRetired event by whoever retired it"
        );
    }
    store.prepare_keyring(&without).await.unwrap();
    store.check_keyring(&without).await.unwrap();
    assert!(
        store
            .retire_hash_key(new.fingerprint(), now, None)
            .await
            .is_ok(),
        "keyring: retiring a key no longer recorded changes nothing"
    );
}

/// A ring's fingerprints: `current`, then `retired`.
fn ring(current: KeyFingerprint, retired: &[KeyFingerprint]) -> KeyringFingerprints {
    retired
        .iter()
        .filter(|&&key| key != current)
        .fold(KeyringFingerprints::single(current), |keys, &key| {
            keys.with_retired(key)
        })
}
