//! The one test suite every [`TokenStore`] must pass (feature `conformance`).
//!
//! Plain `async fn`s over `&dyn TokenStore`, so any store (this crate's or a third
//! party's) runs the same checks from its own tests:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = apitoken::MemoryStore::new();
//! apitoken::conformance::run_all(&store).await;
//! # });
//! ```
//!
//! Each check works in fresh random environments, so the checks can share one store (and
//! one database) and run in parallel with other tests. A failed check panics with a
//! message naming the broken rule, like `assert!`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::format::TokenFormat;
use crate::hash::{TokenHash, TokenHasher};
use crate::model::{Creator, Credential, EnvironmentId, StoredToken, Token, TokenId, UserId};
use crate::note::Note;
use crate::scope::{REFERENCE_SCOPES, Scope, Scopes};
use crate::store::{Cursor, PageRequest, Rotation, StoreError, TokenStore, UniqueKey};
use chrono::{DateTime, TimeDelta, Utc};
use core::num::NonZeroU32;
use futures_util::future::join_all;
use rand_core::Rng;
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;

/// Runs every check.
pub async fn run_all(store: &dyn TokenStore) {
    insert_find_and_get(store).await;
    unknown_ids_and_hashes_are_none(store).await;
    duplicates_are_rejected(store).await;
    get_is_scoped_to_environment(store).await;
    fields_round_trip(store).await;
    revoke_is_idempotent_and_recorded(store).await;
    revoked_token_is_never_found_active(store).await;
    live_limit_is_enforced(store).await;
    concurrent_inserts_respect_the_limit(store).await;
    concurrent_duplicate_inserts_accept_one(store).await;
    list_visits_every_token_once_in_creation_order(store).await;
    rotate_is_all_or_nothing(store).await;
    rotate_happens_once_per_token(store).await;
    record_last_use_never_moves_backwards(store).await;
}

/// A fresh environment no other check uses.
pub fn new_environment() -> EnvironmentId {
    EnvironmentId::from_uuid(random_uuid())
}

fn random_uuid() -> Uuid {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A base time with microseconds, as the issuer makes them.
pub fn base_time() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap()
}

/// A realistic record: a real token's hash and checksum, created at `created_at`.
pub fn sample_token(environment: EnvironmentId, created_at: DateTime<Utc>) -> StoredToken {
    let mut rng = rand::rng();
    let raw = TokenFormat::dynamic().generate(&mut rng);
    let token = Token {
        id: TokenId::generate(created_at, &mut rng),
        checksum: raw.checksum(),
        created_by: Arc::new(Creator::new(UserId::from_uuid(random_uuid()))),
        created_at,
        active: true,
        note: Note::new("conformance").unwrap(),
        environment,
        scopes: Scopes::from([Scope::ENVIRONMENT_API_TOKENS_READ]),
        expires_at: None,
        last_used_at: None,
        revoked_at: None,
    };
    StoredToken {
        hash: TokenHasher::unkeyed().hash(raw.expose_secret()),
        token,
    }
}

fn limit(n: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(n)
}

/// Inserted records are found by hash and by (environment, id), unchanged.
pub async fn insert_find_and_get(store: &dyn TokenStore) {
    let env = new_environment();
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), None).await.unwrap();
    let found = store.find_by_hash(&stored.hash).await.unwrap();
    assert_eq!(
        found.as_ref(),
        Some(&stored.token),
        "find_by_hash returns the record"
    );
    let credential = store.find_credential(&stored.hash).await.unwrap();
    assert_eq!(
        credential,
        Some(Credential::from(&stored.token)),
        "find_credential agrees with find_by_hash"
    );
    assert_now_agrees(store, &stored.hash).await;
    let got = store.get(env, stored.token.id).await.unwrap();
    assert_eq!(got.as_ref(), Some(&stored.token), "get returns the record");
}

/// Unknown ids and hashes are `Ok(None)`, not errors.
pub async fn unknown_ids_and_hashes_are_none(store: &dyn TokenStore) {
    let env = new_environment();
    let ghost = sample_token(env, base_time());
    assert!(store.find_by_hash(&ghost.hash).await.unwrap().is_none());
    assert!(store.find_credential(&ghost.hash).await.unwrap().is_none());
    assert_now_agrees(store, &ghost.hash).await;
    assert!(store.get(env, ghost.token.id).await.unwrap().is_none());
    let page = store.list(env, PageRequest::first(10)).await.unwrap();
    assert!(
        page.tokens.is_empty() && page.next.is_none(),
        "an unknown environment lists nothing"
    );
    store
        .record_last_use(ghost.token.id, base_time())
        .await
        .expect("record_last_use ignores unknown ids");
}

/// A second record with the same id or the same hash is refused, and nothing of it is
/// written.
pub async fn duplicates_are_rejected(store: &dyn TokenStore) {
    let env = new_environment();
    let first = sample_token(env, base_time());
    store.insert(first.clone(), None).await.unwrap();

    let mut same_id = sample_token(env, base_time());
    same_id.token.id = first.token.id;
    let err = store.insert(same_id.clone(), None).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate { key: UniqueKey::Id }),
        "duplicate id: {err:?}"
    );
    assert!(
        store.find_by_hash(&same_id.hash).await.unwrap().is_none(),
        "nothing written"
    );

    let mut same_hash = sample_token(env, base_time());
    same_hash.hash = first.hash;
    let err = store.insert(same_hash.clone(), None).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Duplicate {
                key: UniqueKey::Hash
            }
        ),
        "duplicate hash: {err:?}"
    );
    assert!(
        store.get(env, same_hash.token.id).await.unwrap().is_none(),
        "nothing written"
    );
    assert_eq!(
        store.find_by_hash(&first.hash).await.unwrap().as_ref(),
        Some(&first.token),
        "the original is untouched"
    );
}

/// `get` and `revoke` only see a token in its own environment.
pub async fn get_is_scoped_to_environment(store: &dyn TokenStore) {
    let (env, other) = (new_environment(), new_environment());
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), None).await.unwrap();
    assert!(store.get(other, stored.token.id).await.unwrap().is_none());
    let err = store
        .revoke(other, stored.token.id, base_time())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "revoke in another environment: {err:?}"
    );
    assert!(
        store
            .get(env, stored.token.id)
            .await
            .unwrap()
            .unwrap()
            .active
    );
    let page = store.list(other, PageRequest::first(10)).await.unwrap();
    assert!(page.tokens.is_empty(), "listing never crosses environments");
}

/// Every field survives storage exactly: Unicode notes, every scope, all timestamps at
/// microsecond precision, every creator field.
pub async fn fields_round_trip(store: &dyn TokenStore) {
    let env = new_environment();
    let notes = [
        "ünïcödé ✓ — 日本語のメモ",
        &"🔑".repeat(100),
        &"漢".repeat(100),
        "'; DROP TABLE tokens; -- \" \\ %_",
    ];
    for (i, note) in notes.iter().enumerate() {
        let mut stored = sample_token(env, base_time() + TimeDelta::microseconds(i as i64 * 7 + 1));
        stored.token.note = Note::new(note).unwrap();
        stored.token.scopes = REFERENCE_SCOPES
            .iter()
            .cloned()
            .chain(
                [
                    "all.read",
                    "gasless.read",
                    "gasless.write",
                    "x-custom_scope.v2",
                ]
                .map(|s| Scope::new(s).unwrap()),
            )
            .collect();
        stored.token.created_by = Arc::new(Creator {
            id: UserId::from_uuid(random_uuid()),
            alias: Some("jsmith".into()),
            first_name: Some("Jöhn".into()),
            last_name: Some("Smith-Ø".into()),
            email: Some("jsmith@example.com".into()),
        });
        stored.token.expires_at = Some(base_time() + TimeDelta::microseconds(86_400_000_001));
        stored.token.last_used_at = Some(base_time() + TimeDelta::microseconds(3));
        store.insert(stored.clone(), None).await.unwrap();
        let back = store.get(env, stored.token.id).await.unwrap().unwrap();
        assert_eq!(back, stored.token, "record {i} round-trips exactly");
        let back = store.find_by_hash(&stored.hash).await.unwrap().unwrap();
        assert_eq!(
            back, stored.token,
            "record {i} round-trips through find_by_hash"
        );
    }
    let mut bare = sample_token(env, base_time());
    bare.token.scopes = Scopes::empty();
    store.insert(bare.clone(), None).await.unwrap();
    assert_eq!(
        store.get(env, bare.token.id).await.unwrap().unwrap(),
        bare.token
    );
}

/// Revoking records when, and revoking again keeps the first time; unknown ids are
/// `NotFound`.
pub async fn revoke_is_idempotent_and_recorded(store: &dyn TokenStore) {
    let env = new_environment();
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), None).await.unwrap();
    let at = base_time() + TimeDelta::microseconds(1_500_001);
    let revoked = store.revoke(env, stored.token.id, at).await.unwrap();
    assert!(!revoked.active);
    assert_eq!(revoked.revoked_at, Some(at));
    let again = store
        .revoke(env, stored.token.id, at + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at),
        "a second revoke keeps the first time"
    );
    assert_eq!(
        store.get(env, stored.token.id).await.unwrap().unwrap(),
        revoked
    );
    let ghost = sample_token(env, base_time());
    let err = store.revoke(env, ghost.token.id, at).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "revoke unknown: {err:?}"
    );
}

/// Once `revoke` has returned, no look-up reports the token active, however many run at
/// once.
pub async fn revoked_token_is_never_found_active(store: &dyn TokenStore) {
    let env = new_environment();
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), None).await.unwrap();
    // Look-ups racing the revoke may see either state...
    let racing = join_all((0..8).map(|_| store.find_by_hash(&stored.hash)));
    let (revoked, _) = futures_util::join!(store.revoke(env, stored.token.id, base_time()), racing);
    revoked.unwrap();
    // ...but none after it has returned.
    for found in join_all((0..16).map(|_| store.find_by_hash(&stored.hash))).await {
        assert!(
            !found.unwrap().unwrap().active,
            "found active after revoke returned"
        );
    }
    for found in join_all((0..16).map(|_| store.find_credential(&stored.hash))).await {
        assert!(
            !found.unwrap().unwrap().active,
            "credential active after revoke returned"
        );
    }
    assert_now_agrees(store, &stored.hash).await;
}

/// Where the store answers `find_credential_now`, the answer is `find_credential`'s.
async fn assert_now_agrees(store: &dyn TokenStore, hash: &TokenHash) {
    if let Some(now) = store.find_credential_now(hash) {
        let later = store.find_credential(hash).await.unwrap();
        assert_eq!(
            now, later,
            "find_credential_now agrees with find_credential"
        );
    }
}

/// With a limit, the store counts only the environment's live tokens: revoked and expired
/// ones, and other environments', do not count.
pub async fn live_limit_is_enforced(store: &dyn TokenStore) {
    let (env, other) = (new_environment(), new_environment());
    let now = base_time() + TimeDelta::days(1);
    store
        .insert(sample_token(other, now), limit(1))
        .await
        .unwrap();
    let mut expired = sample_token(env, base_time());
    expired.token.expires_at = Some(now);
    store.insert(expired, None).await.unwrap();
    let revoked = sample_token(env, base_time());
    store.insert(revoked.clone(), None).await.unwrap();
    store
        .revoke(env, revoked.token.id, base_time())
        .await
        .unwrap();
    for i in 0..3 {
        store
            .insert(
                sample_token(env, now + TimeDelta::microseconds(i)),
                limit(3),
            )
            .await
            .unwrap_or_else(|e| panic!("live token {i} of 3 refused: {e}"));
    }
    let refused = sample_token(env, now + TimeDelta::seconds(1));
    let err = store.insert(refused.clone(), limit(3)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::LimitReached { limit: 3, .. }),
        "fourth live token: {err:?}"
    );
    assert!(
        store.get(env, refused.token.id).await.unwrap().is_none(),
        "nothing written"
    );
    store
        .insert(sample_token(env, now), limit(4))
        .await
        .expect("a higher limit admits one more");
}

/// Many inserts at once never leave more live tokens than the limit.
pub async fn concurrent_inserts_respect_the_limit(store: &dyn TokenStore) {
    let env = new_environment();
    let tokens: Vec<StoredToken> = (0..24)
        .map(|i| sample_token(env, base_time() + TimeDelta::microseconds(i)))
        .collect();
    let results = join_all(tokens.iter().map(|t| store.insert(t.clone(), limit(5)))).await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::LimitReached { .. }),
                "unexpected error: {e:?}"
            );
        }
    }
    assert_eq!(accepted, 5, "exactly the limit is accepted");
    let page = store.list(env, PageRequest::first(100)).await.unwrap();
    assert_eq!(page.tokens.len(), 5, "exactly the limit is stored");
}

/// Many inserts of one hash at once: exactly one succeeds.
pub async fn concurrent_duplicate_inserts_accept_one(store: &dyn TokenStore) {
    let env = new_environment();
    let first = sample_token(env, base_time());
    let copies: Vec<StoredToken> = (0..16)
        .map(|_| {
            let mut t = sample_token(env, base_time());
            t.hash = first.hash;
            t
        })
        .collect();
    let results = join_all(copies.iter().map(|t| store.insert(t.clone(), None))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "one insert wins"
    );
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    StoreError::Duplicate {
                        key: UniqueKey::Hash
                    }
                ),
                "unexpected: {e:?}"
            );
        }
    }
    let page = store.list(env, PageRequest::first(100)).await.unwrap();
    assert_eq!(page.tokens.len(), 1);
}

/// Paging through a listing visits every token of the environment exactly once, in
/// `(created_at, id)` order, whatever the insertion order and with ties in time.
pub async fn list_visits_every_token_once_in_creation_order(store: &dyn TokenStore) {
    let (env, other) = (new_environment(), new_environment());
    store
        .insert(sample_token(other, base_time()), None)
        .await
        .unwrap();
    let mut inserted = Vec::new();
    // Out of order, with groups of equal timestamps.
    for i in [
        9i64, 3, 7, 0, 12, 5, 5, 5, 1, 11, 2, 8, 6, 4, 10, 13, 0, 13, 3, 9, 1, 6, 2,
    ] {
        let t = sample_token(env, base_time() + TimeDelta::microseconds(i * 1_000_001));
        store.insert(t.clone(), None).await.unwrap();
        inserted.push(t.token);
    }
    let mut expected: Vec<Cursor> = inserted.iter().map(Cursor::after).collect();
    expected.sort();
    for page_size in [1u32, 4, 5, 23, 100] {
        let mut seen = Vec::new();
        let mut request = PageRequest::first(page_size);
        loop {
            let page = store.list(env, request).await.unwrap();
            assert!(
                page.tokens.len() <= page_size as usize,
                "page larger than its limit"
            );
            seen.extend(page.tokens.iter().map(Cursor::after));
            match page.next {
                Some(cursor) => {
                    assert_eq!(
                        Some(&cursor),
                        seen.last(),
                        "next is the last token's position"
                    );
                    request = request.after(cursor);
                }
                None => break,
            }
            assert!(seen.len() <= expected.len(), "paging does not end");
        }
        assert_eq!(
            seen, expected,
            "pages of {page_size} visit each token once, in order"
        );
    }
    let ids: HashSet<TokenId> = inserted.iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), inserted.len());
}

/// Rotation inserts the successor and sets the predecessor's expiry together, or does
/// neither.
pub async fn rotate_is_all_or_nothing(store: &dyn TokenStore) {
    let env = new_environment();
    let now = base_time() + TimeDelta::hours(1);
    let grace_end = now + TimeDelta::minutes(10);
    let old = sample_token(env, base_time());
    store.insert(old.clone(), None).await.unwrap();
    let rotation = |successor: StoredToken, max_live| Rotation {
        environment: env,
        predecessor: old.token.id,
        predecessor_expires_at: grace_end,
        successor,
        max_live,
    };

    // A successor whose hash is taken: nothing changes.
    let mut clash = sample_token(env, now);
    clash.hash = old.hash;
    let err = store
        .rotate(rotation(clash.clone(), None))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate { .. }),
        "clashing successor: {err:?}"
    );
    assert!(
        store.get(env, clash.token.id).await.unwrap().is_none(),
        "successor not inserted"
    );
    assert_eq!(
        store
            .get(env, old.token.id)
            .await
            .unwrap()
            .unwrap()
            .expires_at,
        None,
        "predecessor unchanged"
    );

    // Unknown predecessor, or one in another environment: NotFound, nothing inserted.
    let orphan = sample_token(env, now);
    let err = store
        .rotate(Rotation {
            predecessor: sample_token(env, now).token.id,
            ..rotation(orphan.clone(), None)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "unknown predecessor: {err:?}"
    );
    let err = store
        .rotate(Rotation {
            environment: new_environment(),
            ..rotation(orphan.clone(), None)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "foreign predecessor: {err:?}"
    );
    assert!(
        store.find_by_hash(&orphan.hash).await.unwrap().is_none(),
        "nothing inserted"
    );

    // At the limit, the predecessor does not count: rotation replaces it.
    let successor = sample_token(env, now);
    let updated = store
        .rotate(rotation(successor.clone(), limit(1)))
        .await
        .unwrap();
    assert_eq!(updated.expires_at, Some(grace_end));
    assert!(
        updated.active,
        "the predecessor stays active through the grace period"
    );
    assert_eq!(
        store.get(env, old.token.id).await.unwrap().unwrap(),
        updated
    );
    assert_eq!(
        store.get(env, successor.token.id).await.unwrap().as_ref(),
        Some(&successor.token)
    );

    // A predecessor that expires before the grace period would end keeps its expiry.
    let mut short = sample_token(env, base_time());
    let short_end = grace_end - TimeDelta::minutes(5);
    short.token.expires_at = Some(short_end);
    store.insert(short.clone(), None).await.unwrap();
    let updated = store
        .rotate(Rotation {
            predecessor: short.token.id,
            ..rotation(sample_token(env, now), None)
        })
        .await
        .unwrap();
    assert_eq!(
        updated.expires_at,
        Some(short_end),
        "an earlier expiry is kept"
    );

    // A revoked predecessor cannot be rotated, and nothing is inserted.
    let revoked = sample_token(env, base_time());
    store.insert(revoked.clone(), None).await.unwrap();
    store.revoke(env, revoked.token.id, now).await.unwrap();
    let late = sample_token(env, now);
    let err = store
        .rotate(Rotation {
            predecessor: revoked.token.id,
            ..rotation(late.clone(), None)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotLive { .. }),
        "revoked predecessor: {err:?}"
    );
    assert!(
        store.find_by_hash(&late.hash).await.unwrap().is_none(),
        "nothing inserted"
    );

    // Nor can one that expired, never rotated: the store is the only check (the issuer
    // leaves it to the store's atomic step).
    let mut expired = sample_token(env, base_time());
    expired.token.expires_at = Some(now - TimeDelta::seconds(1));
    store.insert(expired.clone(), None).await.unwrap();
    let after = sample_token(env, now);
    let err = store
        .rotate(Rotation {
            predecessor: expired.token.id,
            ..rotation(after.clone(), None)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotLive { id } if id == expired.token.id),
        "expired predecessor: {err:?}"
    );
    assert!(
        store.find_by_hash(&after.hash).await.unwrap().is_none(),
        "nothing inserted"
    );
}

/// A token is rotated at most once: a second rotation, even in the grace period, fails
/// with `AlreadyRotated`, which names the successor, and changes nothing (after the grace
/// period too: being rotated is checked before being live), while the successor can be
/// rotated in turn.
/// Of many concurrent rotations of one token, exactly one succeeds.
pub async fn rotate_happens_once_per_token(store: &dyn TokenStore) {
    let env = new_environment();
    let now = base_time() + TimeDelta::hours(1);
    let grace_end = now + TimeDelta::minutes(10);
    let old = sample_token(env, base_time());
    store.insert(old.clone(), None).await.unwrap();
    let first = sample_token(env, now);
    let rotated = store
        .rotate(Rotation {
            environment: env,
            predecessor: old.token.id,
            predecessor_expires_at: grace_end,
            successor: first.clone(),
            max_live: None,
        })
        .await
        .unwrap();
    assert!(
        rotated.is_live_at(now),
        "the predecessor is in its grace period"
    );

    // Again, in the grace period, with an earlier grace end that would otherwise
    // shorten it: refused, and neither token changes.
    let later = now + TimeDelta::seconds(1);
    let second = sample_token(env, later);
    let err = store
        .rotate(Rotation {
            environment: env,
            predecessor: old.token.id,
            predecessor_expires_at: later + TimeDelta::minutes(1),
            successor: second.clone(),
            max_live: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::AlreadyRotated { id, successor }
                if id == old.token.id && successor == Some(first.token.id)
        ),
        "second rotation of one token: refused, naming the token that replaced it: {err:?}"
    );
    assert!(
        store.get(env, second.token.id).await.unwrap().is_none()
            && store.find_by_hash(&second.hash).await.unwrap().is_none(),
        "no second successor inserted"
    );
    assert_eq!(
        store.get(env, old.token.id).await.unwrap().as_ref(),
        Some(&rotated),
        "the predecessor, its expiry included, is unchanged"
    );
    let page = store.list(env, PageRequest::first(10)).await.unwrap();
    assert_eq!(page.tokens.len(), 2, "the predecessor and one successor");

    // After its grace period it is no longer live, and still refused as rotated: the
    // successor is what to rotate.
    let after_grace = grace_end + TimeDelta::seconds(1);
    let err = store
        .rotate(Rotation {
            environment: env,
            predecessor: old.token.id,
            predecessor_expires_at: after_grace + TimeDelta::minutes(1),
            successor: sample_token(env, after_grace),
            max_live: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadyRotated { successor, .. } if successor == Some(first.token.id)),
        "rotated and past its grace period: refused as rotated, not as expired: {err:?}"
    );

    // The successor is a token like any other: it can be rotated, once.
    let third = sample_token(env, later);
    let updated = store
        .rotate(Rotation {
            environment: env,
            predecessor: first.token.id,
            predecessor_expires_at: later + TimeDelta::minutes(10),
            successor: third.clone(),
            max_live: None,
        })
        .await
        .expect("the successor can be rotated");
    assert_eq!(updated.expires_at, Some(later + TimeDelta::minutes(10)));
    assert_eq!(
        store.get(env, third.token.id).await.unwrap().as_ref(),
        Some(&third.token)
    );

    // Concurrent rotations of one token: one wins, the rest are refused.
    let contested = sample_token(env, base_time());
    store.insert(contested.clone(), None).await.unwrap();
    let successors: Vec<StoredToken> = (0..16).map(|_| sample_token(env, now)).collect();
    let results = join_all(successors.iter().map(|successor| {
        store.rotate(Rotation {
            environment: env,
            predecessor: contested.token.id,
            predecessor_expires_at: grace_end,
            successor: successor.clone(),
            max_live: None,
        })
    }))
    .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "one concurrent rotation wins"
    );
    let winner = results
        .iter()
        .zip(&successors)
        .find_map(|(r, successor)| r.is_ok().then_some(successor.token.id));
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::AlreadyRotated { successor, .. } if *successor == winner),
                "concurrent rotation: refused, naming the winner: {e:?}"
            );
        }
    }
    let page = store.list(env, PageRequest::first(100)).await.unwrap();
    assert_eq!(
        page.tokens.len(),
        5,
        "old, its successor and the successor's, the contested token and one successor"
    );
}

/// `last_used_at` only moves forward.
pub async fn record_last_use_never_moves_backwards(store: &dyn TokenStore) {
    let env = new_environment();
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), None).await.unwrap();
    let later = base_time() + TimeDelta::microseconds(90_000_001);
    store.record_last_use(stored.token.id, later).await.unwrap();
    store
        .record_last_use(stored.token.id, base_time())
        .await
        .unwrap();
    let token = store.get(env, stored.token.id).await.unwrap().unwrap();
    assert_eq!(token.last_used_at, Some(later));
    let found = store.find_by_hash(&stored.hash).await.unwrap().unwrap();
    assert_eq!(found.last_used_at, Some(later));
}
