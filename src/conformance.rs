//! The one test suite every [`TokenStore`] must pass (feature `conformance`).
//!
//! Plain `async fn`s over `&dyn TokenStore`, so any store (this crate's or a third
//! party's) runs the same checks from its own tests:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let store = apitoken::MemoryStore::new();
//! apitoken::conformance::run_all(&store).await;
//! # });
//! ```
//!
//! Each check works in fresh random environments, so the checks can share one store (and
//! one database) and run in parallel with other tests; the exception is the event log's
//! pruning check, which prunes every event dated before 2001-01-02. The checks of the
//! event log and its feed need a tokio runtime with time enabled. A failed check panics with a
//! message naming the broken rule, like `assert!`.
//!
//! A store that wraps another (a cache, a router) runs one more check, which needs to
//! hold a look-up of the inner store open while a change runs through the wrapper: put
//! the inner store behind a [`GatedStore`] and call [`racing_lookups_never_undo_a_change`].
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use apitoken::conformance::{self, GatedStore};
//! use apitoken::{CachedStore, MemoryStore};
//! use std::sync::Arc;
//!
//! let gated = Arc::new(GatedStore::new(MemoryStore::new()));
//! let cache = CachedStore::new(gated.clone());
//! conformance::racing_lookups_never_undo_a_change(&gated, &cache).await;
//! # });
//! ```
//!
//! # Gating and stability
//!
//! The module exists only with the feature `conformance`, which a store's crate enables
//! in its `[dev-dependencies]` (`apitoken = { version = "…", features = ["conformance"] }`),
//! so that the suite and its dependencies never reach a production build, as
//! object_store gates its `integration` module.
//!
//! Stable, under semver: [`run_all`] and its signature, [`GatedStore`] and
//! [`racing_lookups_never_undo_a_change`]. A store that passes `run_all` meets the
//! [`TokenStore`] contract as documented. New checks are added to `run_all` in minor
//! releases when the contract is clarified, so a store that relied on unspecified
//! behaviour may start failing: that is the suite doing its job. The checks themselves
//! are private, so that they can be split or renamed; the helpers [`new_environment`],
//! [`base_time`] and [`sample_token`] are for a store's own extra tests and may change in
//! any release.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::cidr::{AllowedCidrs, Cidr, MAX_ALLOWED_CIDRS};
use crate::clock::ManualClock;
use crate::event::{Actor, ChangeFeed, EventCursor, EventPage, FeedMessage, LeakDetails};
use crate::format::TokenFormat;
use crate::hash::{KeyFingerprint, KeyringFingerprints, TokenHash, TokenHasher};
use crate::issuer::TokenIssuer;
use crate::model::{
    Creator, Credential, EnvironmentId, IssueRequest, StoredToken, Token, TokenId, UserId,
};
use crate::note::Note;
use crate::scope::{REFERENCE_SCOPES, Scope, Scopes};
use crate::store::memory::MemoryStore;
use crate::store::{
    Cursor, KeyUsage, Limits, Page, PageRequest, Rehash, Retired, Revoked, Rotation, StoreError,
    TokenStore, UniqueKey,
};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use core::fmt;
use core::future::poll_fn;
use core::num::NonZeroU32;
use core::task::{Poll, Waker};
use core::time::Duration;
use futures_util::future::join_all;
use rand_core::Rng;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use uuid::Uuid;

/// Runs every check, one rule of the [`TokenStore`] contract each: insert and look-ups,
/// unknown ids and hashes, duplicates, environment scoping, field fidelity, revocation
/// (idempotent, linearizable, cascading to descendants and to predecessors in their grace
/// period), the limits (live tokens, tokens per environment, delegation depth and
/// breadth, also under concurrent inserts), concurrent duplicate inserts, paging and its
/// filters, rotation (all-or-nothing, once per token, within the limits), lineage
/// (`descends_from`), purging, last use never moving backwards and keeping its address
/// with its time, address lists kept by the store and by rotation, and what the issuer
/// returns matching what the store keeps. A failure panics with a message naming the
/// broken rule.
pub async fn run_all(store: &dyn TokenStore) {
    insert_find_and_get(store).await;
    unknown_ids_and_hashes_are_none(store).await;
    many_hashes_are_found_at_once(store).await;
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
    rotate_respects_the_live_limit(store).await;
    rotate_happens_once_per_token(store).await;
    record_last_use_never_moves_backwards(store).await;
    last_use_keeps_its_address_with_its_time(store).await;
    allowed_ranges_are_what_authentication_reads(store).await;
    what_the_issuer_returns_is_what_the_store_keeps(store).await;
    revoking_a_token_revokes_what_it_created(store).await;
    a_revoked_creator_creates_nothing(store).await;
    a_rotated_creators_tokens_are_its_successors(store).await;
    revoking_a_successor_ends_its_predecessors_grace(store).await;
    descends_from_follows_creators_and_successors(store).await;
    the_environment_cap_counts_every_token(store).await;
    delegation_is_bounded_in_depth_and_breadth(store).await;
    listing_keeps_what_its_filters_say(store).await;
    purge_deletes_only_what_ended_before_the_cut_off(store).await;
    events::run_all(store).await;
    keyring::run_all(store).await;
}

mod events;
mod keyring;

/// The operator the checks act as.
fn by() -> Actor {
    Actor::User(UserId::from_uuid(Uuid::from_u128(
        0x0190_a5c4_7d3e_7b5a_9c1d_0000_0000_0001,
    )))
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
    let token = Token::new(
        TokenId::generate(created_at, &mut rng),
        environment,
        raw.checksum(),
        Arc::new(Creator::new(UserId::from_uuid(random_uuid()))),
        created_at,
        IssueRequest::new(Note::new("conformance").unwrap())
            .with_scopes([Scope::ENVIRONMENT_API_TOKENS_READ]),
        None,
    );
    StoredToken {
        hash: TokenHasher::unkeyed().hash(raw.expose_secret()),
        hash_key: KeyFingerprint::Unkeyed,
        token,
    }
}

/// At most `n` live tokens per environment, and no other bound.
fn limit(n: u32) -> Limits {
    Limits {
        max_live: NonZeroU32::new(n),
        ..Limits::NONE
    }
}

/// Inserted records are found by hash and by (environment, id), unchanged.
async fn insert_find_and_get(store: &dyn TokenStore) {
    let env = new_environment();
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), Limits::NONE).await.unwrap();
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
async fn unknown_ids_and_hashes_are_none(store: &dyn TokenStore) {
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
        .record_last_use(ghost.token.id, base_time(), Some(ip("192.0.2.1")))
        .await
        .expect("record_last_use ignores unknown ids");
}

/// `find_many_by_hash` answers what `find_by_hash` answers for each hash, in order, one
/// entry per hash (duplicates and misses included), across environments and past one
/// query's worth of hashes; revoked records are found as revoked.
async fn many_hashes_are_found_at_once(store: &dyn TokenStore) {
    assert!(
        store.find_many_by_hash(&[]).await.unwrap().is_empty(),
        "no hashes, no answers"
    );
    let (env, elsewhere) = (new_environment(), new_environment());
    let mut hashes = Vec::new();
    let mut expected = Vec::new();
    for i in 0..600_u32 {
        let at = base_time() + TimeDelta::microseconds(i64::from(i));
        let stored = sample_token(if i % 2 == 0 { env } else { elsewhere }, at);
        if i % 3 == 0 {
            // Never stored: a miss.
            hashes.push(stored.hash);
            expected.push(None);
            continue;
        }
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
        let mut token = stored.token.clone();
        if i % 5 == 0 {
            token = store
                .revoke(token.environment, token.id, at, by())
                .await
                .unwrap()
                .token;
        }
        hashes.push(stored.hash);
        expected.push(Some(token));
    }
    // A hash named twice is answered twice.
    hashes.push(hashes[1]);
    expected.push(expected[1].clone());
    let found = store.find_many_by_hash(&hashes).await.unwrap();
    assert_eq!(found.len(), hashes.len(), "one answer per hash");
    for (i, (found, expected)) in found.iter().zip(&expected).enumerate() {
        assert_eq!(found, expected, "find_many_by_hash, hash {i}");
        assert_eq!(
            found,
            &store.find_by_hash(&hashes[i]).await.unwrap(),
            "find_many_by_hash agrees with find_by_hash, hash {i}"
        );
    }
}

/// A second record with the same id or the same hash is refused, and nothing of it is
/// written.
async fn duplicates_are_rejected(store: &dyn TokenStore) {
    let env = new_environment();
    let first = sample_token(env, base_time());
    store.insert(first.clone(), Limits::NONE).await.unwrap();

    let mut same_id = sample_token(env, base_time());
    same_id.token.id = first.token.id;
    let err = store
        .insert(same_id.clone(), Limits::NONE)
        .await
        .unwrap_err();
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
    let err = store
        .insert(same_hash.clone(), Limits::NONE)
        .await
        .unwrap_err();
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
async fn get_is_scoped_to_environment(store: &dyn TokenStore) {
    let (env, other) = (new_environment(), new_environment());
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), Limits::NONE).await.unwrap();
    assert!(store.get(other, stored.token.id).await.unwrap().is_none());
    let err = store
        .revoke(other, stored.token.id, base_time(), by())
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

/// Every field survives storage exactly: Unicode notes (also one an earlier version
/// accepted and [`Note::new`] now refuses: stores read notes back with
/// [`Note::from_stored`]), every scope, all timestamps at microsecond precision, every
/// creator field, address lists (IPv4, IPv6, both, the longest) in their order, IPv4 and
/// IPv6 last-use addresses.
async fn fields_round_trip(store: &dyn TokenStore) {
    let env = new_environment();
    let notes = [
        "ünïcödé ✓ — 日本語のメモ",
        &"🔑".repeat(100),
        &"漢".repeat(100),
        "'; DROP TABLE tokens; -- \" \\ %_",
        "written\u{200B}before invisible characters were refused",
    ];
    for (i, note) in notes.iter().enumerate() {
        let mut stored = sample_token(env, base_time() + TimeDelta::microseconds(i as i64 * 7 + 1));
        stored.token.note = Note::from_stored(note).unwrap();
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
        stored.token.last_used_ip = Some(match i % 3 {
            0 => ip("203.0.113.9"),
            1 => ip("2001:db8:85a3::8a2e:370:7334"),
            _ => ip("::1"),
        });
        stored.token.allowed_cidrs = Some(match i {
            0 => AllowedCidrs::parse("10.0.0.0/8").unwrap(),
            1 => AllowedCidrs::parse("2001:db8::/32 192.0.2.7 ::/0").unwrap(),
            2 => AllowedCidrs::new(
                (0..MAX_ALLOWED_CIDRS).map(|n| Cidr::parse(&format!("10.{n}.0.0/16")).unwrap()),
            )
            .unwrap(),
            _ => AllowedCidrs::parse("0.0.0.0/0, 198.51.100.0/24").unwrap(),
        });
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
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
    store.insert(bare.clone(), Limits::NONE).await.unwrap();
    assert_eq!(
        store.get(env, bare.token.id).await.unwrap().unwrap(),
        bare.token
    );
}

/// Revoking records when, and revoking again keeps the first time; unknown ids are
/// `NotFound`.
async fn revoke_is_idempotent_and_recorded(store: &dyn TokenStore) {
    let env = new_environment();
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), Limits::NONE).await.unwrap();
    let at = base_time() + TimeDelta::microseconds(1_500_001);
    let revoked = store.revoke(env, stored.token.id, at, by()).await.unwrap();
    assert!(!revoked.token.active);
    assert_eq!(revoked.token.revoked_at, Some(at));
    assert!(revoked.cascade.is_empty(), "nothing else was revoked");
    let again = store
        .revoke(env, stored.token.id, at + TimeDelta::hours(1), by())
        .await
        .unwrap();
    assert_eq!(
        again, revoked,
        "a second revoke keeps the first time and changes nothing"
    );
    assert_eq!(
        store.get(env, stored.token.id).await.unwrap().unwrap(),
        revoked.token
    );
    let ghost = sample_token(env, base_time());
    let err = store
        .revoke(env, ghost.token.id, at, by())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "revoke unknown: {err:?}"
    );
}

/// Once `revoke` has returned, no look-up reports the token active, however many run at
/// once.
async fn revoked_token_is_never_found_active(store: &dyn TokenStore) {
    let env = new_environment();
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), Limits::NONE).await.unwrap();
    // Look-ups racing the revoke may see either state...
    let racing = join_all((0..8).map(|_| store.find_by_hash(&stored.hash)));
    let (revoked, _) = futures_util::join!(
        store.revoke(env, stored.token.id, base_time(), by()),
        racing
    );
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
async fn live_limit_is_enforced(store: &dyn TokenStore) {
    let (env, other) = (new_environment(), new_environment());
    let now = base_time() + TimeDelta::days(1);
    store
        .insert(sample_token(other, now), limit(1))
        .await
        .unwrap();
    let mut expired = sample_token(env, base_time());
    expired.token.expires_at = Some(now);
    store.insert(expired, Limits::NONE).await.unwrap();
    let revoked = sample_token(env, base_time());
    store.insert(revoked.clone(), Limits::NONE).await.unwrap();
    store
        .revoke(env, revoked.token.id, base_time(), by())
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
async fn concurrent_inserts_respect_the_limit(store: &dyn TokenStore) {
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
async fn concurrent_duplicate_inserts_accept_one(store: &dyn TokenStore) {
    let env = new_environment();
    let first = sample_token(env, base_time());
    let copies: Vec<StoredToken> = (0..16)
        .map(|_| {
            let mut t = sample_token(env, base_time());
            t.hash = first.hash;
            t
        })
        .collect();
    let results = join_all(copies.iter().map(|t| store.insert(t.clone(), Limits::NONE))).await;
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
async fn list_visits_every_token_once_in_creation_order(store: &dyn TokenStore) {
    let (env, other) = (new_environment(), new_environment());
    store
        .insert(sample_token(other, base_time()), Limits::NONE)
        .await
        .unwrap();
    let mut inserted = Vec::new();
    // Out of order, with groups of equal timestamps.
    for i in [
        9i64, 3, 7, 0, 12, 5, 5, 5, 1, 11, 2, 8, 6, 4, 10, 13, 0, 13, 3, 9, 1, 6, 2,
    ] {
        let t = sample_token(env, base_time() + TimeDelta::microseconds(i * 1_000_001));
        store.insert(t.clone(), Limits::NONE).await.unwrap();
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

/// A record like [`sample_token`]'s, created by the token `creator` (delegation).
pub fn delegated_token(
    environment: EnvironmentId,
    creator: TokenId,
    created_at: DateTime<Utc>,
) -> StoredToken {
    let mut stored = sample_token(environment, created_at);
    stored.token.created_by_token = Some(creator);
    stored
}

/// Whether the token is revoked (at `at`) or untouched (active, no revocation time).
async fn assert_revoked(
    store: &dyn TokenStore,
    stored: &StoredToken,
    at: Option<DateTime<Utc>>,
    what: &str,
) {
    let env = stored.token.environment;
    let by_id = store.get(env, stored.token.id).await.unwrap().unwrap();
    let by_hash = store.find_by_hash(&stored.hash).await.unwrap().unwrap();
    for found in [by_id, by_hash] {
        assert_eq!(found.active, at.is_none(), "{what}: active");
        assert_eq!(found.revoked_at, at, "{what}: revoked_at");
    }
}

/// Revoking a token revokes, in the same step, every live token it created, directly or
/// through tokens they created (a chain of three), and nothing else: not an unrelated
/// token, not an already expired descendant (its record keeps its own facts). The
/// creating token is recorded and read back.
async fn revoking_a_token_revokes_what_it_created(store: &dyn TokenStore) {
    let env = new_environment();
    let t0 = base_time();
    let a = sample_token(env, t0);
    let b = delegated_token(env, a.token.id, t0 + TimeDelta::seconds(1));
    let c = delegated_token(env, b.token.id, t0 + TimeDelta::seconds(2));
    let mut expired = delegated_token(env, a.token.id, t0 + TimeDelta::seconds(3));
    expired.token.expires_at = Some(t0 + TimeDelta::seconds(4));
    let unrelated = sample_token(env, t0 + TimeDelta::seconds(5));
    for stored in [&a, &b, &c, &expired, &unrelated] {
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
    }
    let found = store.get(env, c.token.id).await.unwrap().unwrap();
    assert_eq!(
        found.created_by_token,
        Some(b.token.id),
        "the creating token round-trips"
    );
    assert_eq!(
        store
            .get(env, a.token.id)
            .await
            .unwrap()
            .unwrap()
            .created_by_token,
        None
    );

    let at = t0 + TimeDelta::minutes(1);
    let revoked = store.revoke(env, a.token.id, at, by()).await.unwrap();
    assert_eq!(
        revoked.token.id, a.token.id,
        "revoke returns the token revoked"
    );
    let mut cascade = revoked.cascade.clone();
    cascade.sort();
    let mut expected = vec![b.token.id, c.token.id];
    expected.sort();
    assert_eq!(
        cascade, expected,
        "the cascade names the live descendants, not the expired one nor the unrelated one"
    );
    assert_revoked(store, &a, Some(at), "the revoked token").await;
    assert_revoked(store, &b, Some(at), "a token it created").await;
    assert_revoked(store, &c, Some(at), "a token created by a token it created").await;
    assert_revoked(store, &expired, None, "an expired descendant").await;
    assert_revoked(store, &unrelated, None, "an unrelated token").await;

    // Revoking a descendant alone touches neither its creator nor its siblings.
    let env = new_environment();
    let parent = sample_token(env, t0);
    let one = delegated_token(env, parent.token.id, t0 + TimeDelta::seconds(1));
    let two = delegated_token(env, parent.token.id, t0 + TimeDelta::seconds(2));
    for stored in [&parent, &one, &two] {
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
    }
    store.revoke(env, one.token.id, at, by()).await.unwrap();
    assert_revoked(store, &one, Some(at), "the revoked child").await;
    assert_revoked(store, &parent, None, "its creator").await;
    assert_revoked(store, &two, None, "its sibling").await;
}

/// A token is never stored under a creator that is revoked, expired or unknown: `insert`
/// fails with `NotLive` naming the creator and writes nothing.
async fn a_revoked_creator_creates_nothing(store: &dyn TokenStore) {
    let env = new_environment();
    let t0 = base_time();
    let creator = sample_token(env, t0);
    let mut expiring = sample_token(env, t0);
    expiring.token.expires_at = Some(t0 + TimeDelta::seconds(10));
    store.insert(creator.clone(), Limits::NONE).await.unwrap();
    store.insert(expiring.clone(), Limits::NONE).await.unwrap();
    store
        .revoke(env, creator.token.id, t0 + TimeDelta::seconds(1), by())
        .await
        .unwrap();
    let unknown = sample_token(env, t0).token.id;
    for (parent, what) in [
        (creator.token.id, "revoked"),
        (expiring.token.id, "expired"),
        (unknown, "unknown"),
    ] {
        let child = delegated_token(env, parent, t0 + TimeDelta::seconds(20));
        let err = store.insert(child.clone(), Limits::NONE).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotLive { id } if id == parent),
            "a child of a {what} creator: {err:?}"
        );
        assert!(
            store.get(env, child.token.id).await.unwrap().is_none(),
            "nothing stored under a {what} creator"
        );
    }
    // Of another environment: as if unknown.
    let elsewhere = delegated_token(
        new_environment(),
        expiring.token.id,
        t0 + TimeDelta::seconds(1),
    );
    assert!(matches!(
        store.insert(elsewhere, Limits::NONE).await,
        Err(StoreError::NotLive { .. })
    ));
}

/// A token created by a rotated predecessor counts as created by its successor:
/// revoking the successor revokes it, and the predecessor itself, in its grace period, is
/// revoked too (the old secret is often the one that leaked). A delegated token whose
/// creator was rotated away rotates as usual, and its successor is revoked with the
/// creator's successor.
async fn a_rotated_creators_tokens_are_its_successors(store: &dyn TokenStore) {
    let env = new_environment();
    let t0 = base_time();
    let old = sample_token(env, t0);
    store.insert(old.clone(), Limits::NONE).await.unwrap();
    let before = delegated_token(env, old.token.id, t0 + TimeDelta::seconds(1));
    store.insert(before.clone(), Limits::NONE).await.unwrap();

    let rotated_at = t0 + TimeDelta::seconds(2);
    let new = sample_token(env, rotated_at);
    store
        .rotate(Rotation {
            environment: env,
            predecessor: old.token.id,
            predecessor_expires_at: rotated_at + TimeDelta::minutes(10),
            successor: new.clone(),
            limits: Limits::NONE,
            actor: by(),
        })
        .await
        .unwrap();
    // The predecessor is live in its grace period, so it may still create tokens.
    let during_grace = delegated_token(env, old.token.id, rotated_at + TimeDelta::seconds(1));
    store
        .insert(during_grace.clone(), Limits::NONE)
        .await
        .unwrap();

    // A child of the predecessor is rotated: its successor keeps the creator.
    let child_rotated_at = rotated_at + TimeDelta::seconds(2);
    let child_successor = delegated_token(env, old.token.id, child_rotated_at);
    store
        .rotate(Rotation {
            environment: env,
            predecessor: during_grace.token.id,
            predecessor_expires_at: child_rotated_at,
            successor: child_successor.clone(),
            limits: Limits::NONE,
            actor: by(),
        })
        .await
        .unwrap();

    let at = rotated_at + TimeDelta::minutes(1);
    let revoked = store.revoke(env, new.token.id, at, by()).await.unwrap();
    assert_revoked(store, &new, Some(at), "the successor").await;
    assert_revoked(
        store,
        &before,
        Some(at),
        "created by the predecessor before",
    )
    .await;
    assert_revoked(
        store,
        &child_successor,
        Some(at),
        "a delegated token's successor",
    )
    .await;
    assert_revoked(
        store,
        &old,
        Some(at),
        "the predecessor in its grace period, which revoking its successor ends",
    )
    .await;
    assert_revoked(
        store,
        &during_grace,
        None,
        "a rotated-away child, expired when the creator was revoked",
    )
    .await;
    let mut cascade = revoked.cascade;
    cascade.sort();
    let mut expected = vec![old.token.id, before.token.id, child_successor.token.id];
    expected.sort();
    assert_eq!(
        cascade, expected,
        "the cascade names what it revoked, and nothing that had expired"
    );
}

/// Revoking a token ends the grace period of every predecessor still in it, through a
/// chain of rotations, in the same step; a predecessor whose grace period is over keeps
/// its facts. Revoking a predecessor leaves its successor alone.
async fn revoking_a_successor_ends_its_predecessors_grace(store: &dyn TokenStore) {
    let env = new_environment();
    let t0 = base_time();
    let rotate = |predecessor: TokenId, successor: &StoredToken, grace_end| Rotation {
        environment: env,
        predecessor,
        predecessor_expires_at: grace_end,
        successor: successor.clone(),
        limits: Limits::NONE,
        actor: by(),
    };
    // first -> second -> third, each rotation with a day of grace; `over` rotated to
    // `after_over` with a grace period that is over by the revocation.
    let first = sample_token(env, t0);
    store.insert(first.clone(), Limits::NONE).await.unwrap();
    let second = sample_token(env, t0 + TimeDelta::hours(1));
    store
        .rotate(rotate(first.token.id, &second, t0 + TimeDelta::days(1)))
        .await
        .unwrap();
    let third = sample_token(env, t0 + TimeDelta::hours(2));
    store
        .rotate(rotate(second.token.id, &third, t0 + TimeDelta::days(1)))
        .await
        .unwrap();
    let over = sample_token(env, t0);
    store.insert(over.clone(), Limits::NONE).await.unwrap();
    let after_over = sample_token(env, t0 + TimeDelta::minutes(1));
    store
        .rotate(rotate(
            over.token.id,
            &after_over,
            t0 + TimeDelta::minutes(2),
        ))
        .await
        .unwrap();

    // Revoking a predecessor leaves its successor working.
    let at = t0 + TimeDelta::hours(3);
    let revoked = store.revoke(env, over.token.id, at, by()).await.unwrap();
    assert!(
        revoked.cascade.is_empty(),
        "a predecessor takes nothing with it"
    );
    assert_revoked(
        store,
        &after_over,
        None,
        "the successor of a revoked predecessor",
    )
    .await;

    let revoked = store.revoke(env, third.token.id, at, by()).await.unwrap();
    assert_revoked(store, &third, Some(at), "the revoked token").await;
    assert_revoked(
        store,
        &second,
        Some(at),
        "its predecessor, in its grace period",
    )
    .await;
    assert_revoked(store, &first, Some(at), "the predecessor's predecessor").await;
    let mut cascade = revoked.cascade;
    cascade.sort();
    let mut expected = vec![first.token.id, second.token.id];
    expected.sort();
    assert_eq!(cascade, expected, "the cascade names both predecessors");

    let revoked = store
        .revoke(env, after_over.token.id, at, by())
        .await
        .unwrap();
    assert!(
        revoked.cascade.is_empty(),
        "a predecessor past its grace period is not revoked again: {:?}",
        revoked.cascade
    );
    let over_now = store.get(env, over.token.id).await.unwrap().unwrap();
    assert_eq!(
        over_now.revoked_at,
        Some(at),
        "it keeps the revocation it had"
    );
}

/// `descends_from` follows creating tokens up, and successors forward (what a rotated
/// token created counts as its successor's, and a successor stands for its
/// predecessors), within one environment, and nothing else: not siblings, not creators
/// (from below), not predecessors (from their successor's side).
async fn descends_from_follows_creators_and_successors(store: &dyn TokenStore) {
    let env = new_environment();
    let t0 = base_time();
    let a = sample_token(env, t0);
    let b = delegated_token(env, a.token.id, t0 + TimeDelta::seconds(1));
    let c = delegated_token(env, b.token.id, t0 + TimeDelta::seconds(2));
    let sibling = delegated_token(env, a.token.id, t0 + TimeDelta::seconds(3));
    let unrelated = sample_token(env, t0 + TimeDelta::seconds(4));
    for stored in [&a, &b, &c, &sibling, &unrelated] {
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
    }
    let b2 = delegated_token(env, a.token.id, t0 + TimeDelta::seconds(5));
    store
        .rotate(Rotation {
            environment: env,
            predecessor: b.token.id,
            predecessor_expires_at: t0 + TimeDelta::hours(1),
            successor: b2.clone(),
            limits: Limits::NONE,
            actor: by(),
        })
        .await
        .unwrap();
    let id = |t: &StoredToken| t.token.id;
    let ghost = sample_token(env, t0).token.id;
    for (token, ancestor, expected, what) in [
        (id(&c), id(&b), true, "a child of its creator"),
        (
            id(&c),
            id(&a),
            true,
            "a grandchild of its creator's creator",
        ),
        (id(&c), id(&c), true, "a token of itself"),
        (
            id(&c),
            id(&b2),
            true,
            "a child of a rotated creator, of its successor",
        ),
        (id(&b), id(&b2), true, "a predecessor, of its successor"),
        (
            id(&b2),
            id(&a),
            true,
            "a successor, of its predecessor's creator",
        ),
        (id(&b2), id(&b), false, "a successor, of its predecessor"),
        (id(&b), id(&c), false, "a creator, of its child"),
        (id(&sibling), id(&b), false, "a sibling"),
        (id(&a), id(&b), false, "the top, of a token below"),
        (id(&unrelated), id(&a), false, "an unrelated token"),
        (ghost, id(&a), false, "an unknown id"),
        (ghost, ghost, false, "an unknown id, of itself"),
    ] {
        assert_eq!(
            store.descends_from(env, token, ancestor).await.unwrap(),
            expected,
            "descends_from: {what}"
        );
    }
    assert!(
        !store
            .descends_from(new_environment(), id(&c), id(&a))
            .await
            .unwrap(),
        "descends_from never crosses environments"
    );
}

/// With `max_total`, every token the environment stores counts, revoked and expired ones
/// included; the cap is atomic under concurrent inserts, applies to rotations, and
/// other environments do not count.
async fn the_environment_cap_counts_every_token(store: &dyn TokenStore) {
    let (env, other) = (new_environment(), new_environment());
    let total = |n: u32| Limits {
        max_total: NonZeroU32::new(n),
        ..Limits::NONE
    };
    let now = base_time() + TimeDelta::days(1);
    store
        .insert(sample_token(other, base_time()), Limits::NONE)
        .await
        .unwrap();
    let mut expired = sample_token(env, base_time());
    expired.token.expires_at = Some(base_time() + TimeDelta::seconds(1));
    let revoked = sample_token(env, base_time());
    let live = sample_token(env, base_time());
    for stored in [&expired, &revoked, &live] {
        store.insert(stored.clone(), total(3)).await.unwrap();
    }
    store
        .revoke(env, revoked.token.id, base_time(), by())
        .await
        .unwrap();
    let refused = sample_token(env, now);
    let err = store.insert(refused.clone(), total(3)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::EnvironmentFull { environment, limit: 3 } if environment == env),
        "a fourth token, the others revoked or expired: {err:?}"
    );
    assert!(
        store.get(env, refused.token.id).await.unwrap().is_none(),
        "nothing written"
    );
    let successor = sample_token(env, now);
    let err = store
        .rotate(Rotation {
            environment: env,
            predecessor: live.token.id,
            predecessor_expires_at: now,
            successor: successor.clone(),
            limits: total(3),
            actor: by(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::EnvironmentFull { limit: 3, .. }),
        "a rotation adds a token: {err:?}"
    );
    assert!(
        store.get(env, successor.token.id).await.unwrap().is_none()
            && store.get(env, live.token.id).await.unwrap().unwrap() == live.token,
        "a rotation refused at the cap changes nothing"
    );
    store
        .insert(sample_token(env, now), total(4))
        .await
        .expect("a higher cap admits one more");

    // Concurrent inserts never go past the cap.
    let crowded = new_environment();
    let tokens: Vec<StoredToken> = (0..16)
        .map(|i| sample_token(crowded, base_time() + TimeDelta::microseconds(i)))
        .collect();
    let results = join_all(tokens.iter().map(|t| store.insert(t.clone(), total(5)))).await;
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::EnvironmentFull { .. }),
                "unexpected: {e:?}"
            );
        }
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    let page = store.list(crowded, PageRequest::first(100)).await.unwrap();
    assert_eq!(page.tokens.len(), 5, "exactly the cap is stored");
}

/// With `max_depth`, a chain of tokens creating tokens stops at that depth (a token a
/// user created is at depth 0); with `max_per_creator`, a token has at most that many
/// live tokens it created, atomically, and a revoked or expired one frees its place.
/// Rotating a delegated token is not delegating: the bounds do not apply.
async fn delegation_is_bounded_in_depth_and_breadth(store: &dyn TokenStore) {
    let env = new_environment();
    let t0 = base_time();
    let depth = Limits {
        max_depth: NonZeroU32::new(2),
        ..Limits::NONE
    };
    let a = sample_token(env, t0);
    store.insert(a.clone(), depth).await.unwrap();
    let b = delegated_token(env, a.token.id, t0);
    store.insert(b.clone(), depth).await.expect("depth 1 of 2");
    let c = delegated_token(env, b.token.id, t0);
    store.insert(c.clone(), depth).await.expect("depth 2 of 2");
    let d = delegated_token(env, c.token.id, t0);
    let err = store.insert(d.clone(), depth).await.unwrap_err();
    assert!(
        matches!(err, StoreError::DelegationTooDeep { creator, limit: 2 } if creator == c.token.id),
        "depth 3 of 2: {err:?}"
    );
    assert!(
        store.get(env, d.token.id).await.unwrap().is_none(),
        "nothing written"
    );
    let c2 = delegated_token(env, b.token.id, t0 + TimeDelta::seconds(1));
    store
        .rotate(Rotation {
            environment: env,
            predecessor: c.token.id,
            predecessor_expires_at: t0 + TimeDelta::seconds(1),
            successor: c2.clone(),
            limits: depth,
            actor: by(),
        })
        .await
        .expect("a successor takes its predecessor's place in the chain");

    let breadth = Limits {
        max_per_creator: NonZeroU32::new(2),
        ..Limits::NONE
    };
    let parent = sample_token(env, t0);
    store.insert(parent.clone(), breadth).await.unwrap();
    let one = delegated_token(env, parent.token.id, t0);
    let two = delegated_token(env, parent.token.id, t0);
    let mut expired = delegated_token(env, parent.token.id, t0);
    expired.token.expires_at = Some(t0 + TimeDelta::seconds(1));
    for stored in [&expired, &one, &two] {
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
    }
    let later = t0 + TimeDelta::seconds(2);
    let three = delegated_token(env, parent.token.id, later);
    let err = store.insert(three.clone(), breadth).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::TooManyDelegated { environment, creator, limit: 2 }
                if environment == env && creator == parent.token.id
        ),
        "a third live token of one creator: {err:?}"
    );
    assert!(
        store.get(env, three.token.id).await.unwrap().is_none(),
        "nothing written"
    );
    store
        .rotate(Rotation {
            environment: env,
            predecessor: two.token.id,
            predecessor_expires_at: later,
            successor: delegated_token(env, parent.token.id, later),
            limits: breadth,
            actor: by(),
        })
        .await
        .expect("rotating one of them is not creating one more");
    store.revoke(env, one.token.id, later, by()).await.unwrap();
    let after = t0 + TimeDelta::seconds(3);
    store
        .insert(delegated_token(env, parent.token.id, after), breadth)
        .await
        .expect("a revoked token frees its place");

    // Concurrent delegated inserts never go past the bound.
    let crowded = sample_token(env, t0);
    store.insert(crowded.clone(), Limits::NONE).await.unwrap();
    let children: Vec<StoredToken> = (0..12)
        .map(|_| delegated_token(env, crowded.token.id, after))
        .collect();
    let results = join_all(children.iter().map(|t| store.insert(t.clone(), breadth))).await;
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(e, StoreError::TooManyDelegated { .. }),
                "unexpected: {e:?}"
            );
        }
    }
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "exactly the bound is stored"
    );
}

/// Listing keeps what its filters say, and paging through a filtered listing visits
/// each kept token once, in creation order: live tokens only (revoked and expired ones
/// left out), live tokens used (or created) after a time only, one user's tokens only,
/// and combinations.
async fn listing_keeps_what_its_filters_say(store: &dyn TokenStore) {
    let env = new_environment();
    let users = [
        UserId::from_uuid(random_uuid()),
        UserId::from_uuid(random_uuid()),
    ];
    let now = base_time() + TimeDelta::hours(1);
    let mut all = Vec::new();
    for i in 0..24_i64 {
        let mut stored = sample_token(
            env,
            base_time() + TimeDelta::microseconds((i % 7) * 1_000_001),
        );
        stored.token.created_by = Arc::new(Creator::new(users[(i % 2) as usize]));
        if i % 3 == 0 {
            stored.token.expires_at = Some(now - TimeDelta::seconds(1));
        }
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
        if i % 5 == 0 {
            store.revoke(env, stored.token.id, now, by()).await.unwrap();
        }
        if i % 4 == 1 {
            store
                .record_last_use(stored.token.id, now - TimeDelta::minutes(i), None)
                .await
                .unwrap();
        }
        all.push(store.get(env, stored.token.id).await.unwrap().unwrap());
    }
    all.sort_by_key(Cursor::after);
    // Created within the first 7 s; some used since.
    let idle_cut = base_time() + TimeDelta::seconds(3);
    let requests = [
        ("live", PageRequest::first(1).live_at(now)),
        (
            "live and used after a time",
            PageRequest::first(1).live_at(now).used_after(idle_cut),
        ),
        (
            "one user's live and used after a time",
            PageRequest::first(1)
                .live_at(now)
                .created_by(users[0])
                .used_after(idle_cut),
        ),
        ("one user's", PageRequest::first(1).created_by(users[0])),
        (
            "one user's live",
            PageRequest::first(1).live_at(now).created_by(users[1]),
        ),
    ];
    for (what, request) in requests {
        let expected: Vec<TokenId> = all
            .iter()
            .filter(|t| request.keeps(t))
            .map(|t| t.id)
            .collect();
        assert!(
            !expected.is_empty() && expected.len() < all.len(),
            "the {what} filter keeps some and leaves some"
        );
        for page_size in [1u32, 3, 100] {
            let mut seen = Vec::new();
            let mut request = PageRequest {
                limit: page_size,
                ..request
            };
            loop {
                let page = store.list(env, request).await.unwrap();
                assert!(page.tokens.len() <= page_size as usize);
                seen.extend(page.tokens.iter().map(|t| t.id));
                match page.next {
                    Some(cursor) => request = request.after(cursor),
                    None => break,
                }
                assert!(seen.len() <= expected.len(), "paging does not end");
            }
            assert_eq!(
                seen, expected,
                "{what} tokens, in pages of {page_size}: each once, in order"
            );
        }
    }
    // A cursor from before any time a store keeps (an HTTP client may send any) is the
    // first page, not an error.
    let before_all = Cursor {
        created_at: DateTime::<Utc>::MIN_UTC,
        id: TokenId::from_uuid(Uuid::nil()),
    };
    let page = store
        .list(env, PageRequest::first(100).after(before_all))
        .await
        .expect("a cursor before every time is the first page");
    assert_eq!(page.tokens.len(), all.len());
}

/// `purge` deletes tokens that ended (revoked, or expired) before the cut-off, in
/// batches, and nothing else: never a live token, never one that ended after the
/// cut-off, never a token an unrevoked token names as its creator (until that one is
/// gone; a revoked child does not keep its creator), never a rotated token's live
/// successor. A purged token is unknown by hash and by id, and no longer counts against
/// the environment's cap.
///
/// Its times are five centuries back, so that the purge reaches no other check's tokens.
async fn purge_deletes_only_what_ended_before_the_cut_off(store: &dyn TokenStore) {
    let env = new_environment();
    let t0 = DateTime::from_timestamp_micros(-14_831_769_600_000_000).unwrap(); // 1500-01-01
    let cut = t0 + TimeDelta::days(60);
    let day = TimeDelta::days(1);
    let ending = |expires: DateTime<Utc>| {
        let mut stored = sample_token(env, t0);
        stored.token.expires_at = Some(expires);
        stored
    };
    let revoked_before = sample_token(env, t0);
    let expired_before = ending(t0 + day * 2);
    let revoked_after = sample_token(env, t0);
    let expired_after = ending(cut + day);
    let live = sample_token(env, t0);
    let pinned = ending(t0 + day * 3);
    let pinning = {
        let mut child = delegated_token(env, pinned.token.id, t0 + TimeDelta::seconds(1));
        child.token.expires_at = Some(cut + day);
        child
    };
    let parent = ending(t0 + day * 3);
    let child = {
        let mut child = delegated_token(env, parent.token.id, t0 + TimeDelta::seconds(1));
        child.token.expires_at = Some(t0 + day * 2);
        child
    };
    let rotated = sample_token(env, t0);
    let forsaken = ending(t0 + day * 3);
    let revoked_child = delegated_token(env, forsaken.token.id, t0 + TimeDelta::seconds(1));
    for stored in [
        &forsaken,
        &revoked_child,
        &revoked_before,
        &expired_before,
        &revoked_after,
        &expired_after,
        &live,
        &pinned,
        &pinning,
        &parent,
        &child,
        &rotated,
    ] {
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
    }
    store
        .revoke(env, revoked_before.token.id, t0 + day, by())
        .await
        .unwrap();
    store
        .revoke(env, revoked_after.token.id, cut + day, by())
        .await
        .unwrap();
    store
        .revoke(env, revoked_child.token.id, cut + day, by())
        .await
        .unwrap();
    let successor = sample_token(env, t0 + day);
    store
        .rotate(Rotation {
            environment: env,
            predecessor: rotated.token.id,
            predecessor_expires_at: t0 + day + TimeDelta::hours(1),
            successor: successor.clone(),
            limits: Limits::NONE,
            actor: by(),
        })
        .await
        .unwrap();

    let mut purged = 0;
    let mut calls = 0;
    loop {
        calls += 1;
        assert!(calls < 100, "purge does not end");
        match store.purge(cut, 2).await.unwrap() {
            0 => break,
            n => {
                assert!(n <= 2, "a batch is at most max: {n}");
                purged += n;
            }
        }
    }
    assert!(
        purged >= 6,
        "the six tokens that ended before the cut-off: {purged}"
    );
    for (stored, gone, what) in [
        (&revoked_before, true, "revoked before the cut-off"),
        (&expired_before, true, "expired before the cut-off"),
        (&parent, true, "a creator, once its child is gone"),
        (&child, true, "a child that ended before the cut-off"),
        (&rotated, true, "a rotated predecessor whose grace ended"),
        (&revoked_after, false, "revoked after the cut-off"),
        (&expired_after, false, "expired after the cut-off"),
        (&live, false, "a live token"),
        (&pinned, false, "a creator whose child is still stored"),
        (&pinning, false, "that child, which ended after the cut-off"),
        (&successor, false, "a purged predecessor's live successor"),
        (&forsaken, true, "a creator whose only child is revoked"),
        (
            &revoked_child,
            false,
            "that child, revoked after the cut-off",
        ),
    ] {
        let by_id = store.get(env, stored.token.id).await.unwrap();
        let by_hash = store.find_by_hash(&stored.hash).await.unwrap();
        assert_eq!(by_id.is_none(), gone, "purge: {what} (by id)");
        assert_eq!(by_hash.is_none(), gone, "purge: {what} (by hash)");
    }
    let successor_now = store.get(env, successor.token.id).await.unwrap().unwrap();
    assert!(successor_now.active, "the successor works on");
    let revoked = store
        .revoke(env, successor.token.id, cut + day * 2, by())
        .await
        .unwrap();
    assert!(
        revoked.cascade.is_empty(),
        "revoking it finds no purged predecessor"
    );

    // Seven tokens are left; the cap counts them, not the purged ones.
    let cap = Limits {
        max_total: NonZeroU32::new(8),
        ..Limits::NONE
    };
    store
        .insert(sample_token(env, cut), cap)
        .await
        .expect("purged tokens no longer count against the cap");
    let err = store.insert(sample_token(env, cut), cap).await.unwrap_err();
    assert!(
        matches!(err, StoreError::EnvironmentFull { limit: 8, .. }),
        "the cap counts what is left: {err:?}"
    );
}

/// Rotation inserts the successor and sets the predecessor's expiry together, or does
/// neither.
async fn rotate_is_all_or_nothing(store: &dyn TokenStore) {
    let env = new_environment();
    let now = base_time() + TimeDelta::hours(1);
    let grace_end = now + TimeDelta::minutes(10);
    let old = sample_token(env, base_time());
    store.insert(old.clone(), Limits::NONE).await.unwrap();
    let rotation = |successor: StoredToken, limits| Rotation {
        environment: env,
        predecessor: old.token.id,
        predecessor_expires_at: grace_end,
        successor,
        limits,
        actor: by(),
    };

    // A successor whose hash is taken: nothing changes.
    let mut clash = sample_token(env, now);
    clash.hash = old.hash;
    let err = store
        .rotate(rotation(clash.clone(), Limits::NONE))
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
            ..rotation(orphan.clone(), Limits::NONE)
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
            ..rotation(orphan.clone(), Limits::NONE)
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
    store.insert(short.clone(), Limits::NONE).await.unwrap();
    let updated = store
        .rotate(Rotation {
            predecessor: short.token.id,
            ..rotation(sample_token(env, now), Limits::NONE)
        })
        .await
        .unwrap();
    assert_eq!(
        updated.expires_at,
        Some(short_end),
        "an earlier expiry is kept"
    );

    // A successor that would be born expired is refused as the predecessor would be, and
    // nothing changes.
    let mut stillborn = sample_token(env, now);
    stillborn.token.expires_at = Some(now);
    let mut fresh = sample_token(env, base_time());
    fresh.token.expires_at = Some(now + TimeDelta::days(1));
    store.insert(fresh.clone(), Limits::NONE).await.unwrap();
    let err = store
        .rotate(Rotation {
            predecessor: fresh.token.id,
            ..rotation(stillborn.clone(), Limits::NONE)
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotLive { id } if id == fresh.token.id),
        "a successor born expired: {err:?}"
    );
    assert!(
        store.find_by_hash(&stillborn.hash).await.unwrap().is_none()
            && store.get(env, fresh.token.id).await.unwrap().unwrap() == fresh.token,
        "nothing changed"
    );

    // A revoked predecessor cannot be rotated, and nothing is inserted.
    let revoked = sample_token(env, base_time());
    store.insert(revoked.clone(), Limits::NONE).await.unwrap();
    store
        .revoke(env, revoked.token.id, now, by())
        .await
        .unwrap();
    let late = sample_token(env, now);
    let err = store
        .rotate(Rotation {
            predecessor: revoked.token.id,
            ..rotation(late.clone(), Limits::NONE)
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
    store.insert(expired.clone(), Limits::NONE).await.unwrap();
    let after = sample_token(env, now);
    let err = store
        .rotate(Rotation {
            predecessor: expired.token.id,
            ..rotation(after.clone(), Limits::NONE)
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
async fn rotate_happens_once_per_token(store: &dyn TokenStore) {
    let env = new_environment();
    let now = base_time() + TimeDelta::hours(1);
    let grace_end = now + TimeDelta::minutes(10);
    let old = sample_token(env, base_time());
    store.insert(old.clone(), Limits::NONE).await.unwrap();
    let first = sample_token(env, now);
    let rotated = store
        .rotate(Rotation {
            environment: env,
            predecessor: old.token.id,
            predecessor_expires_at: grace_end,
            successor: first.clone(),
            limits: Limits::NONE,
            actor: by(),
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
            limits: Limits::NONE,
            actor: by(),
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
            limits: Limits::NONE,
            actor: by(),
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
            limits: Limits::NONE,
            actor: by(),
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
    store.insert(contested.clone(), Limits::NONE).await.unwrap();
    let successors: Vec<StoredToken> = (0..16).map(|_| sample_token(env, now)).collect();
    let results = join_all(successors.iter().map(|successor| {
        store.rotate(Rotation {
            environment: env,
            predecessor: contested.token.id,
            predecessor_expires_at: grace_end,
            successor: successor.clone(),
            limits: Limits::NONE,
            actor: by(),
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
async fn record_last_use_never_moves_backwards(store: &dyn TokenStore) {
    let env = new_environment();
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), Limits::NONE).await.unwrap();
    let later = base_time() + TimeDelta::microseconds(90_000_001);
    store
        .record_last_use(stored.token.id, later, None)
        .await
        .unwrap();
    store
        .record_last_use(stored.token.id, base_time(), None)
        .await
        .unwrap();
    let token = store.get(env, stored.token.id).await.unwrap().unwrap();
    assert_eq!(token.last_used_at, Some(later));
    let found = store.find_by_hash(&stored.hash).await.unwrap().unwrap();
    assert_eq!(found.last_used_at, Some(later));
}

/// An address (the checks' addresses are all documentation ranges).
fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A use later than the recorded one sets its time and its address together (an unknown
/// address clears the old one); an earlier or equal one changes neither. What `get`,
/// `find_by_hash` and `list` return agree.
async fn last_use_keeps_its_address_with_its_time(store: &dyn TokenStore) {
    let env = new_environment();
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), Limits::NONE).await.unwrap();
    let id = stored.token.id;
    let at = |micros: i64| base_time() + TimeDelta::microseconds(micros);
    let seen = async |what: &str| {
        let got = store.get(env, id).await.unwrap().unwrap();
        let found = store.find_by_hash(&stored.hash).await.unwrap().unwrap();
        let listed = store.list(env, PageRequest::first(10)).await.unwrap();
        let last = (got.last_used_at, got.last_used_ip);
        assert_eq!(
            (found.last_used_at, found.last_used_ip),
            last,
            "{what}: find_by_hash agrees with get"
        );
        assert_eq!(
            listed
                .tokens
                .iter()
                .map(|t| (t.last_used_at, t.last_used_ip))
                .collect::<Vec<_>>(),
            [last],
            "{what}: list agrees with get"
        );
        last
    };
    assert_eq!(seen("never used").await, (None, None));
    store
        .record_last_use(id, at(60_000_001), Some(ip("198.51.100.7")))
        .await
        .unwrap();
    assert_eq!(
        seen("a first use").await,
        (Some(at(60_000_001)), Some(ip("198.51.100.7")))
    );
    store
        .record_last_use(id, at(30_000_000), Some(ip("2001:db8::1")))
        .await
        .unwrap();
    store
        .record_last_use(id, at(60_000_001), Some(ip("2001:db8::2")))
        .await
        .unwrap();
    assert_eq!(
        seen("an earlier and an equal use").await,
        (Some(at(60_000_001)), Some(ip("198.51.100.7"))),
        "an earlier or equal use changes neither the time nor the address"
    );
    store
        .record_last_use(id, at(120_000_002), Some(ip("2001:db8::3")))
        .await
        .unwrap();
    assert_eq!(
        seen("a later use from IPv6").await,
        (Some(at(120_000_002)), Some(ip("2001:db8::3")))
    );
    store
        .record_last_use(id, at(180_000_003), None)
        .await
        .unwrap();
    assert_eq!(
        seen("a later use from an unknown address").await,
        (Some(at(180_000_003)), None),
        "the address of an older use is not shown beside a newer use's time"
    );
}

/// A token's address list is what `find_credential` (what authentication reads) answers,
/// a token without one has none there, and a rotation's successor keeps its
/// predecessor's list.
async fn allowed_ranges_are_what_authentication_reads(store: &dyn TokenStore) {
    let env = new_environment();
    let mut restricted = sample_token(env, base_time());
    let ranges = AllowedCidrs::parse("10.0.0.0/8 2001:db8::/32").unwrap();
    restricted.token.allowed_cidrs = Some(ranges.clone());
    let open = sample_token(env, base_time() + TimeDelta::microseconds(1));
    store
        .insert(restricted.clone(), Limits::NONE)
        .await
        .unwrap();
    store.insert(open.clone(), Limits::NONE).await.unwrap();
    let credential = store
        .find_credential(&restricted.hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        credential.allowed_cidrs.as_ref(),
        Some(&ranges),
        "find_credential carries the list"
    );
    assert_now_agrees(store, &restricted.hash).await;
    let credential = store.find_credential(&open.hash).await.unwrap().unwrap();
    assert_eq!(
        credential.allowed_cidrs, None,
        "a token without a list has none"
    );
    assert_now_agrees(store, &open.hash).await;

    let clock = ManualClock::new(base_time() + TimeDelta::hours(1));
    let issuer = TokenIssuer::builder(store).clock(clock).build();
    let successor = issuer
        .rotate(
            env,
            restricted.token.created_by.clone(),
            restricted.token.id,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(successor.token.allowed_cidrs.as_ref(), Some(&ranges));
    let kept = store.get(env, successor.token.id).await.unwrap().unwrap();
    assert_eq!(
        kept.allowed_cidrs.as_ref(),
        Some(&ranges),
        "the successor keeps its predecessor's list"
    );
    let credential = store
        .find_credential(&issuer.hasher().hash(successor.raw.expose_secret()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(credential.allowed_cidrs.as_ref(), Some(&ranges));
}

/// `rotate` applies the live-token limit: the environment's other live tokens count, the
/// predecessor does not; refused, it changes nothing.
async fn rotate_respects_the_live_limit(store: &dyn TokenStore) {
    let env = new_environment();
    let now = base_time() + TimeDelta::hours(1);
    let old = sample_token(env, base_time());
    let other = sample_token(env, base_time() + TimeDelta::microseconds(1));
    store.insert(old.clone(), Limits::NONE).await.unwrap();
    store.insert(other.clone(), Limits::NONE).await.unwrap();
    let rotation = |successor: StoredToken, limits| Rotation {
        environment: env,
        predecessor: old.token.id,
        predecessor_expires_at: now + TimeDelta::minutes(10),
        successor,
        limits,
        actor: by(),
    };

    let refused = sample_token(env, now);
    let err = store
        .rotate(rotation(refused.clone(), limit(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LimitReached { limit: 1, .. }),
        "rotation past the limit (another token is live): {err:?}"
    );
    assert!(
        store.find_by_hash(&refused.hash).await.unwrap().is_none(),
        "a rotation refused at the limit inserts nothing"
    );
    assert_eq!(
        store.get(env, old.token.id).await.unwrap().as_ref(),
        Some(&old.token),
        "a rotation refused at the limit leaves the predecessor unchanged"
    );

    let admitted = sample_token(env, now);
    store
        .rotate(rotation(admitted.clone(), limit(2)))
        .await
        .expect("the predecessor does not count: two live tokens fit a limit of two");
    assert!(
        store.find_by_hash(&admitted.hash).await.unwrap().is_some(),
        "successor inserted"
    );
}

/// What the issuer returns (from `issue`, `rotate` and `revoke`) is what the store gives
/// back later, to the microsecond: the issuer cuts every time it hands the store to whole
/// microseconds, the precision every store keeps, even when the clock, a caller's expiry or
/// a grace period carry nanoseconds.
async fn what_the_issuer_returns_is_what_the_store_keeps(store: &dyn TokenStore) {
    let env = new_environment();
    let clock = ManualClock::new(base_time() + TimeDelta::nanoseconds(789));
    let issuer = TokenIssuer::builder(store).clock(clock.clone()).build();
    let creator = Creator::new(UserId::from_uuid(random_uuid()));
    let expires_at = base_time() + TimeDelta::days(90) + TimeDelta::nanoseconds(123_456_789);
    let request = IssueRequest::new(Note::new("precision").unwrap()).expires_at(expires_at);
    let creator = Arc::new(creator);
    let issued = issuer.issue(env, creator.clone(), request).await.unwrap();
    assert_whole_micros(&issued.token, "issue");
    let kept = store.get(env, issued.token.id).await.unwrap();
    assert_eq!(
        kept.as_ref(),
        Some(&issued.token),
        "get returns what issue returned"
    );

    clock.advance(TimeDelta::nanoseconds(1_000_000_321));
    let grace = core::time::Duration::from_nanos(60_000_000_555);
    let successor = issuer
        .rotate(env, creator.clone(), issued.token.id, grace)
        .await
        .unwrap();
    assert_whole_micros(&successor.token, "rotate's successor");
    assert_eq!(
        store.get(env, successor.token.id).await.unwrap().as_ref(),
        Some(&successor.token),
        "get returns the successor rotate returned"
    );
    let predecessor = store.get(env, issued.token.id).await.unwrap().unwrap();
    assert_whole_micros(&predecessor, "the rotated predecessor");

    clock.advance(TimeDelta::nanoseconds(1_000_000_321));
    let revoked = issuer
        .revoke(env, creator, successor.token.id)
        .await
        .unwrap();
    assert_whole_micros(&revoked.token, "revoke");
    assert_eq!(
        store.get(env, successor.token.id).await.unwrap().as_ref(),
        Some(&revoked.token),
        "get returns what revoke returned"
    );
}

fn assert_whole_micros(token: &Token, what: &str) {
    for (field, at) in [
        ("created_at", Some(token.created_at)),
        ("expires_at", token.expires_at),
        ("last_used_at", token.last_used_at),
        ("revoked_at", token.revoked_at),
    ] {
        if let Some(at) = at {
            assert_eq!(
                at.nanosecond() % 1_000,
                0,
                "{what}: {field} {at:?} has a finer part than microseconds"
            );
        }
    }
}

/// A store that can hold a chosen look-up open, to test what a wrapper around it does when
/// a change overtakes a look-up.
///
/// After [`hold_next_lookup`](Self::hold_next_lookup), the next
/// [`find_by_hash`](TokenStore::find_by_hash) or
/// [`find_credential`](TokenStore::find_credential) of that hash reads the inner store at
/// once and then waits, holding what it read, until [`release`](Self::release). Everything
/// else goes straight to the inner store.
pub struct GatedStore<S = MemoryStore> {
    inner: S,
    gate: Mutex<Gate>,
}

#[derive(Default)]
struct Gate {
    /// The next look-up of this hash is held.
    armed: Option<TokenHash>,
    /// The held look-up has read and is waiting.
    holding: bool,
    /// Released: held look-ups answer.
    open: bool,
    wakers: Vec<Waker>,
}

impl Gate {
    fn wake(&mut self) {
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for GatedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatedStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: TokenStore> GatedStore<S> {
    /// Wraps `inner`; nothing is held until [`hold_next_lookup`](Self::hold_next_lookup).
    pub fn new(inner: S) -> GatedStore<S> {
        GatedStore {
            inner,
            gate: Mutex::default(),
        }
    }

    /// The store behind the gate.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Holds the next look-up of `hash`, after it has read, until [`release`](Self::release).
    pub fn hold_next_lookup(&self, hash: TokenHash) {
        *self.gate() = Gate {
            armed: Some(hash),
            ..Gate::default()
        };
    }

    /// Waits until the armed look-up has read and is being held. Returns false instead if
    /// [`disarm`](Self::disarm) was called first (the look-up never reached this store).
    pub async fn until_held(&self) -> bool {
        poll_fn(|cx| {
            let mut gate = self.gate();
            if gate.holding {
                Poll::Ready(true)
            } else if gate.armed.is_none() {
                Poll::Ready(false)
            } else {
                gate.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Lets the held look-up answer.
    pub fn release(&self) {
        let mut gate = self.gate();
        gate.open = true;
        gate.wake();
    }

    /// Holds no look-up from now on (a held one stays held until released).
    pub fn disarm(&self) {
        let mut gate = self.gate();
        gate.armed = None;
        gate.wake();
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds the caller if this look-up of `hash` is the armed one.
    async fn maybe_hold(&self, hash: &TokenHash) {
        {
            let mut gate = self.gate();
            if gate.armed != Some(*hash) {
                return;
            }
            gate.armed = None;
            gate.holding = true;
            gate.wake();
        }
        poll_fn(|cx| {
            let mut gate = self.gate();
            if gate.open {
                Poll::Ready(())
            } else {
                gate.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for GatedStore<S> {
    async fn insert(&self, token: StoredToken, limits: Limits) -> Result<(), StoreError> {
        self.inner.insert(token, limits).await
    }

    async fn find_by_hash(&self, hash: &TokenHash) -> Result<Option<Token>, StoreError> {
        let found = self.inner.find_by_hash(hash).await;
        self.maybe_hold(hash).await;
        found
    }

    async fn find_many_by_hash(
        &self,
        hashes: &[TokenHash],
    ) -> Result<Vec<Option<Token>>, StoreError> {
        self.inner.find_many_by_hash(hashes).await
    }

    async fn find_credential(&self, hash: &TokenHash) -> Result<Option<Credential>, StoreError> {
        let found = self.inner.find_credential(hash).await;
        self.maybe_hold(hash).await;
        found
    }

    async fn get(
        &self,
        environment: EnvironmentId,
        id: TokenId,
    ) -> Result<Option<Token>, StoreError> {
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
        self.inner.revoke(environment, id, at, by).await
    }

    async fn revoke_leaked(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        at: DateTime<Utc>,
        leak: &LeakDetails,
    ) -> Result<Revoked, StoreError> {
        self.inner.revoke_leaked(environment, id, at, leak).await
    }

    async fn revoke_leaked_many(
        &self,
        leaks: &[(EnvironmentId, TokenId, &LeakDetails)],
        at: DateTime<Utc>,
    ) -> Result<Vec<Option<Revoked>>, StoreError> {
        self.inner.revoke_leaked_many(leaks, at).await
    }

    async fn rotate(&self, rotation: Rotation) -> Result<Token, StoreError> {
        self.inner.rotate(rotation).await
    }

    async fn descends_from(
        &self,
        environment: EnvironmentId,
        id: TokenId,
        ancestor: TokenId,
    ) -> Result<bool, StoreError> {
        self.inner.descends_from(environment, id, ancestor).await
    }

    async fn purge(&self, ended_before: DateTime<Utc>, max: u32) -> Result<u32, StoreError> {
        self.inner.purge(ended_before, max).await
    }

    async fn record_last_use(
        &self,
        id: TokenId,
        at: DateTime<Utc>,
        from: Option<IpAddr>,
    ) -> Result<(), StoreError> {
        self.inner.record_last_use(id, at, from).await
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
        let found = self.inner.find_by_any_hash(hashes).await;
        if let Some(first) = hashes.first() {
            self.maybe_hold(first).await;
        }
        found
    }

    async fn rehash(&self, rehash: &Rehash) -> Result<bool, StoreError> {
        self.inner.rehash(rehash).await
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
        self.inner.retire_hash_key(key, at, revoke_remaining).await
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
}

/// For a store `wrapper` built around `gated`: a look-up that read the inner store before
/// a change and answers after the change has returned never makes the wrapper show the old
/// state afterwards. A token revoked through the wrapper stays revoked, a rotated
/// predecessor keeps its shortened expiry, and a token inserted while a look-up of its hash
/// was finding nothing is found, by every later look-up (`find_by_hash`,
/// `find_credential`, `find_credential_now`), whichever look-up was held.
pub async fn racing_lookups_never_undo_a_change<S: TokenStore>(
    gated: &GatedStore<S>,
    wrapper: &dyn TokenStore,
) {
    for held_credential in [false, true] {
        let lookup = Lookup {
            gated,
            wrapper,
            credential: held_credential,
        };

        // Revoke.
        let env = new_environment();
        let stored = sample_token(env, base_time());
        wrapper.insert(stored.clone(), Limits::NONE).await.unwrap();
        lookup
            .overtaken_by(&stored.hash, async {
                wrapper
                    .revoke(env, stored.token.id, base_time(), by())
                    .await
                    .unwrap();
            })
            .await;
        for token in lookup.everything(&stored.hash).await {
            assert!(
                !token.expect("revoked token still known").active,
                "a look-up that began before revoke returned made the token active again \
                 (held: {})",
                lookup.held()
            );
        }

        // Rotate: the predecessor's new expiry applies at once.
        let old = sample_token(env, base_time());
        wrapper.insert(old.clone(), Limits::NONE).await.unwrap();
        let grace_end = base_time() + TimeDelta::minutes(10);
        lookup
            .overtaken_by(&old.hash, async {
                wrapper
                    .rotate(Rotation {
                        environment: env,
                        predecessor: old.token.id,
                        predecessor_expires_at: grace_end,
                        successor: sample_token(env, base_time() + TimeDelta::seconds(1)),
                        limits: Limits::NONE,
                        actor: by(),
                    })
                    .await
                    .unwrap();
            })
            .await;
        for token in lookup.everything(&old.hash).await {
            assert_eq!(
                token.expect("rotated token still known").expires_at,
                Some(grace_end),
                "a look-up that began before rotate returned restored the old expiry \
                 (held: {})",
                lookup.held()
            );
        }

        // Insert: a look-up that found nothing does not hide the new token.
        let late = sample_token(env, base_time());
        lookup
            .overtaken_by(&late.hash, async {
                wrapper.insert(late.clone(), Limits::NONE).await.unwrap();
            })
            .await;
        for token in lookup.everything(&late.hash).await {
            assert!(
                token.is_some(),
                "a look-up that began before insert returned hid the new token (held: {})",
                lookup.held()
            );
        }
    }
}

/// For a cache `wrapper` built around `gated` that follows `gated`'s feed through
/// `apply` (as [`CachedStore::apply`](crate::CachedStore::apply)): a look-up that read the
/// inner store before a change made *elsewhere* (straight in `gated`) and answers after
/// the change's event was applied never makes the wrapper show the old state afterwards,
/// for a revocation (and the token its cascade took) and a rotation.
pub async fn racing_lookups_never_undo_an_event<S: TokenStore>(
    gated: &GatedStore<S>,
    wrapper: &dyn TokenStore,
    apply: &(dyn Fn(&FeedMessage) + Sync),
) {
    for held_credential in [false, true] {
        let lookup = Lookup {
            gated,
            wrapper,
            credential: held_credential,
        };
        let env = new_environment();
        let mut feed = gated.watch(gated.event_head().await.unwrap()).unwrap();

        // Revoke a creator elsewhere: its delegated token goes with it.
        let creator = sample_token(env, base_time());
        let delegated = delegated_token(env, creator.token.id, base_time());
        for stored in [&creator, &delegated] {
            gated.insert(stored.clone(), Limits::NONE).await.unwrap();
        }
        // The creator is cached; the delegated token's look-up is the one held.
        wrapper.find_by_hash(&creator.hash).await.unwrap();
        lookup
            .overtaken_by(&delegated.hash, async {
                gated
                    .revoke(env, creator.token.id, base_time(), by())
                    .await
                    .unwrap();
                apply_through(&mut feed, delegated.token.id, apply).await;
            })
            .await;
        for stored in [&creator, &delegated] {
            for token in lookup.everything(&stored.hash).await {
                assert!(
                    !token.expect("revoked token still known").active,
                    "a look-up that began before a revocation's event was applied made a \
                     token active again (held: {})",
                    lookup.held()
                );
            }
        }

        // Rotate elsewhere: the predecessor's new expiry applies once its event has.
        let old = sample_token(env, base_time());
        gated.insert(old.clone(), Limits::NONE).await.unwrap();
        let grace_end = base_time() + TimeDelta::minutes(10);
        lookup
            .overtaken_by(&old.hash, async {
                gated
                    .rotate(Rotation {
                        environment: env,
                        predecessor: old.token.id,
                        predecessor_expires_at: grace_end,
                        successor: sample_token(env, base_time() + TimeDelta::seconds(1)),
                        limits: Limits::NONE,
                        actor: by(),
                    })
                    .await
                    .unwrap();
                apply_through(&mut feed, old.token.id, apply).await;
            })
            .await;
        for token in lookup.everything(&old.hash).await {
            assert_eq!(
                token.expect("rotated token still known").expires_at,
                Some(grace_end),
                "a look-up that began before a rotation's event was applied restored the \
                 old expiry (held: {})",
                lookup.held()
            );
        }
    }
}

/// Pulls `feed`, applying each message, until the event of `token` has been applied.
async fn apply_through(
    feed: &mut ChangeFeed,
    token: TokenId,
    apply: &(dyn Fn(&FeedMessage) + Sync),
) {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), feed.next())
            .await
            .expect("events: the feed yielded nothing for 30 s")
            .expect("events: the feed ended");
        apply(&message);
        if matches!(&message, FeedMessage::Event(e) if e.token == token) {
            return;
        }
    }
}

/// One kind of held look-up through a wrapper, and what every look-up sees.
struct Lookup<'a, S> {
    gated: &'a GatedStore<S>,
    wrapper: &'a dyn TokenStore,
    credential: bool,
}

impl<S: TokenStore> Lookup<'_, S> {
    fn held(&self) -> &'static str {
        if self.credential {
            "find_credential"
        } else {
            "find_by_hash"
        }
    }

    /// Starts a look-up of `hash`, holds it once it has read the inner store, runs
    /// `change` to completion, then lets the look-up answer.
    async fn overtaken_by(&self, hash: &TokenHash, change: impl Future<Output = ()>) {
        self.gated.hold_next_lookup(*hash);
        let lookup = async {
            if self.credential {
                self.wrapper.find_credential(hash).await.unwrap();
            } else {
                self.wrapper.find_by_hash(hash).await.unwrap();
            }
            // Answered without reaching the inner store: nothing to hold.
            self.gated.disarm();
        };
        let control = async {
            self.gated.until_held().await;
            change.await;
            self.gated.release();
        };
        futures_util::join!(lookup, control);
    }

    /// What every kind of look-up sees of `hash` now, as credentials.
    async fn everything(&self, hash: &TokenHash) -> Vec<Option<Credential>> {
        let mut seen = vec![
            self.wrapper
                .find_by_hash(hash)
                .await
                .unwrap()
                .as_ref()
                .map(Credential::from),
            self.wrapper.find_credential(hash).await.unwrap(),
        ];
        seen.extend(self.wrapper.find_credential_now(hash));
        seen
    }
}
