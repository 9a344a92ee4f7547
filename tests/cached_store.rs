//! `CachedStore`: the contract still holds, changes through the cache apply at once, and
//! changes made elsewhere apply within the TTL.
#![cfg(feature = "conformance")]

use apitoken::conformance::{self, GatedStore};
use apitoken::{
    CachedStore, Creator, EnvironmentId, Error, IssueRequest, ManualClock, MemoryStore, Note,
    TokenFormat, TokenIssuer, TokenStore, UserId,
};
use chrono::TimeDelta;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::Counting;

use uuid::Uuid;

mod support;

fn env() -> EnvironmentId {
    EnvironmentId::from_uuid(Uuid::from_u128(1))
}

fn alice() -> Creator {
    Creator::new(UserId::from_uuid(Uuid::from_u128(0xa11ce)))
}

fn request() -> IssueRequest {
    IssueRequest::new(Note::new("cached").unwrap())
}

struct Setup {
    backend: Arc<Counting>,
    clock: ManualClock,
    /// Through the cache, as the application's issuer.
    cached: TokenIssuer<CachedStore<Arc<Counting>>>,
    /// Straight to the store, as another process would.
    elsewhere: TokenIssuer<Arc<Counting>>,
}

fn setup() -> Setup {
    let backend = Arc::new(Counting::default());
    let clock = ManualClock::new("2026-05-01T00:00:00Z".parse().unwrap());
    let cache = CachedStore::new(backend.clone())
        .ttl(Duration::from_secs(5))
        .negative_ttl(Duration::from_secs(1))
        .clock(clock.clone());
    Setup {
        cached: TokenIssuer::builder(cache).clock(clock.clone()).build(),
        elsewhere: TokenIssuer::builder(backend.clone())
            .clock(clock.clone())
            .build(),
        backend,
        clock,
    }
}

#[tokio::test]
async fn a_cached_store_passes_the_conformance_suite() {
    conformance::run_all(&CachedStore::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn a_lookup_overtaken_by_a_change_never_fills_the_cache_with_the_old_state() {
    let gated = Arc::new(GatedStore::new(MemoryStore::new()));
    let cache = CachedStore::new(gated.clone());
    conformance::racing_lookups_never_undo_a_change(&gated, &cache).await;
}

#[tokio::test]
async fn a_lookup_overtaken_by_an_event_never_fills_the_cache_with_the_old_state() {
    let gated = Arc::new(GatedStore::new(MemoryStore::new()));
    let cache = CachedStore::new(gated.clone()).coherent();
    conformance::racing_lookups_never_undo_an_event(&gated, &cache, &|m| cache.apply(m)).await;
}

#[tokio::test]
async fn a_coherent_cache_passes_the_conformance_suite() {
    conformance::run_all(&CachedStore::new(MemoryStore::new()).coherent()).await;
}

/// A delegated token issued by `creator`, through `issuer`.
async fn delegated(
    issuer: &TokenIssuer<CachedStore<Arc<Counting>>>,
    creator: &apitoken::IssuedToken,
) -> apitoken::IssuedToken {
    let principal = issuer
        .authenticate(creator.raw.expose_secret())
        .await
        .unwrap();
    issuer.issue(env(), principal, request()).await.unwrap()
}

/// The defect found from outside: invalidating a creator revoked elsewhere left the
/// tokens it created, revoked in the same step, authenticating from the cache.
#[tokio::test]
async fn invalidating_a_creator_revoked_elsewhere_stops_what_it_created() {
    let s = setup();
    let creator = s.cached.issue(env(), alice(), request()).await.unwrap();
    let child = delegated(&s.cached, &creator).await;
    let grandchild = delegated(&s.cached, &child).await;
    let bystander = s.cached.issue(env(), alice(), request()).await.unwrap();
    for issued in [&creator, &child, &grandchild, &bystander] {
        s.cached
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();
    }
    s.elsewhere
        .revoke(env(), support::operator(), creator.token.id)
        .await
        .unwrap();
    s.cached.store().invalidate(creator.token.id);
    for issued in [&creator, &child, &grandchild] {
        assert!(
            matches!(
                s.cached.authenticate(issued.raw.expose_secret()).await,
                Err(Error::Revoked { .. })
            ),
            "a token the creator's revocation took still authenticates from the cache"
        );
    }
    // A user's token without an expiry cannot have been reached: it stays cached.
    let reads = s.backend.finds.load(Ordering::SeqCst);
    s.cached
        .authenticate(bystander.raw.expose_secret())
        .await
        .unwrap();
    assert_eq!(s.backend.finds.load(Ordering::SeqCst), reads);
}

/// A coherent cache over the setup's store, and a feed of that store read with the
/// same clock, pulled by hand so that the test decides when messages apply.
fn coherent(
    s: &Setup,
) -> (
    TokenIssuer<CachedStore<Arc<Counting>>>,
    apitoken::ChangeFeed,
) {
    let cache = CachedStore::new(s.backend.clone())
        .coherent()
        .staleness_bound(Duration::from_secs(1))
        .clock(s.clock.clone());
    let feed = s
        .backend
        .watch(apitoken::EventCursor::START)
        .unwrap()
        .clock(s.clock.clone());
    (
        TokenIssuer::builder(cache).clock(s.clock.clone()).build(),
        feed,
    )
}

/// Applies the feed's messages until it has caught up.
async fn catch_up(cache: &CachedStore<Arc<Counting>>, feed: &mut apitoken::ChangeFeed) {
    loop {
        let message = feed.next().await.unwrap();
        cache.apply(&message);
        if matches!(message, apitoken::FeedMessage::CaughtUp { .. }) {
            return;
        }
    }
}

#[tokio::test]
async fn a_coherent_cache_refuses_a_token_revoked_elsewhere_once_its_event_applies() {
    let s = setup();
    let (cached, mut feed) = coherent(&s);
    let creator = cached.issue(env(), alice(), request()).await.unwrap();
    let child = delegated(&cached, &creator).await;
    catch_up(cached.store(), &mut feed).await;
    for issued in [&creator, &child] {
        cached
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();
    }
    // Long after the bound, a feed that keeps catching up vouches for the entries: no
    // store read.
    let reads = s.backend.finds.load(Ordering::SeqCst);
    s.clock.advance(TimeDelta::seconds(30));
    catch_up(cached.store(), &mut feed).await;
    cached
        .authenticate(creator.raw.expose_secret())
        .await
        .unwrap();
    assert_eq!(
        s.backend.finds.load(Ordering::SeqCst),
        reads,
        "served from the cache"
    );

    s.elsewhere
        .revoke(env(), support::operator(), creator.token.id)
        .await
        .unwrap();
    catch_up(cached.store(), &mut feed).await;
    for issued in [&creator, &child] {
        assert!(
            matches!(
                cached.authenticate(issued.raw.expose_secret()).await,
                Err(Error::Revoked { .. })
            ),
            "the revocation's events reached the cache: every token it took is refused"
        );
    }
}

#[tokio::test]
async fn a_coherent_cache_whose_feed_is_silent_serves_nothing_older_than_the_bound() {
    let s = setup();
    let (cached, mut feed) = coherent(&s);
    let issued = cached.issue(env(), alice(), request()).await.unwrap();
    let secret = issued.raw.expose_secret();
    catch_up(cached.store(), &mut feed).await;
    cached.authenticate(secret).await.unwrap();
    s.elsewhere
        .revoke(env(), support::operator(), issued.token.id)
        .await
        .unwrap();
    // The feed is cut off: nothing more is applied. Within the bound the entry is
    // served...
    s.clock.advance(TimeDelta::milliseconds(1_000));
    cached.authenticate(secret).await.unwrap();
    // ...past it, the cache reads the store again and finds the revocation.
    s.clock.advance(TimeDelta::milliseconds(1));
    assert!(matches!(
        cached.authenticate(secret).await,
        Err(Error::Revoked { .. })
    ));
    assert!(
        cached.store().synced_until().is_some(),
        "the feed had caught up once"
    );
}

#[tokio::test]
async fn a_coherent_cache_trusts_nothing_old_before_its_feed_first_catches_up() {
    let s = setup();
    let (cached, _feed) = coherent(&s);
    let issued = cached.issue(env(), alice(), request()).await.unwrap();
    let secret = issued.raw.expose_secret();
    cached.authenticate(secret).await.unwrap();
    let reads = s.backend.finds.load(Ordering::SeqCst);
    s.clock.advance(TimeDelta::milliseconds(1_001));
    cached.authenticate(secret).await.unwrap();
    assert_eq!(
        s.backend.finds.load(Ordering::SeqCst),
        reads + 1,
        "an entry older than the bound, with no feed to vouch for it, is read again"
    );
}

/// What `GET /tokens/me` does after authenticating: a coherent cache answers the record
/// from the entry authentication filled, and from the store again once an event dropped
/// it; a cache that is not coherent always reads the store.
#[tokio::test]
async fn a_coherent_cache_answers_get_from_a_fresh_entry() {
    let s = setup();
    let (cached, mut feed) = coherent(&s);
    let issued = cached.issue(env(), alice(), request()).await.unwrap();
    catch_up(cached.store(), &mut feed).await;
    let principal = cached
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap();
    let gets = s.backend.gets.load(Ordering::SeqCst);
    let token = cached
        .get(env(), principal.clone(), issued.token.id)
        .await
        .unwrap();
    let stored = s.backend.inner.get(env(), issued.token.id).await.unwrap();
    assert_eq!(Some(token), stored, "the cached record is the store's");
    assert_eq!(s.backend.gets.load(Ordering::SeqCst), gets, "no store read");

    s.elsewhere
        .revoke(env(), support::operator(), issued.token.id)
        .await
        .unwrap();
    catch_up(cached.store(), &mut feed).await;
    let token = cached
        .get(env(), support::operator(), issued.token.id)
        .await
        .unwrap();
    assert!(
        !token.active,
        "after the event, the record comes from the store"
    );
    assert_eq!(s.backend.gets.load(Ordering::SeqCst), gets + 1);

    // Not coherent: always the store.
    s.cached
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap_err();
    let gets = s.backend.gets.load(Ordering::SeqCst);
    s.cached
        .get(env(), support::operator(), issued.token.id)
        .await
        .unwrap();
    assert_eq!(s.backend.gets.load(Ordering::SeqCst), gets + 1);
}

#[tokio::test]
async fn missed_events_drop_every_entry() {
    let s = setup();
    let (cached, _feed) = coherent(&s);
    let issued = cached.issue(env(), alice(), request()).await.unwrap();
    cached
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap();
    assert!(!cached.store().is_empty());
    cached.store().apply(&apitoken::FeedMessage::Missed {
        after: apitoken::EventCursor::START,
        resumed: apitoken::EventCursor::after(10),
    });
    assert!(cached.store().is_empty());
}

#[tokio::test]
async fn invalidating_one_token_applies_a_change_made_elsewhere_at_once() {
    let s = setup();
    let (a, b) = (
        s.cached.issue(env(), alice(), request()).await.unwrap(),
        s.cached.issue(env(), alice(), request()).await.unwrap(),
    );
    for issued in [&a, &b] {
        s.cached
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();
    }
    s.elsewhere
        .revoke(env(), support::operator(), a.token.id)
        .await
        .unwrap();
    s.elsewhere
        .revoke(env(), support::operator(), b.token.id)
        .await
        .unwrap();
    // The feed says: a was revoked (by id), b too (by hash).
    s.cached.store().invalidate(a.token.id);
    s.cached
        .store()
        .invalidate_hash(&s.cached.hasher().hash(b.raw.expose_secret()));
    for issued in [&a, &b] {
        assert!(matches!(
            s.cached.authenticate(issued.raw.expose_secret()).await,
            Err(Error::Revoked { .. })
        ));
    }
}

#[tokio::test]
async fn invalidating_a_token_stops_a_lookup_under_way_from_filling_the_cache() {
    let gated = Arc::new(GatedStore::new(MemoryStore::new()));
    let cache = CachedStore::new(gated.clone());
    let issuer = TokenIssuer::new(&cache);
    let issued = issuer.issue(env(), alice(), request()).await.unwrap();
    let hash = issuer.hasher().hash(issued.raw.expose_secret());
    gated.hold_next_lookup(hash);
    let lookup = async { cache.find_by_hash(&hash).await.unwrap() };
    let elsewhere = async {
        gated.until_held().await;
        // Another instance revokes it and tells this one.
        gated
            .inner()
            .revoke(
                env(),
                issued.token.id,
                conformance::base_time(),
                apitoken::Actor::User(apitoken::UserId::from_uuid(uuid::Uuid::nil())),
            )
            .await
            .unwrap();
        cache.invalidate(issued.token.id);
        gated.release();
    };
    let (seen, ()) = tokio::join!(lookup, elsewhere);
    assert!(
        seen.unwrap().active,
        "the held look-up read before the revoke"
    );
    assert!(matches!(
        issuer.authenticate(issued.raw.expose_secret()).await,
        Err(Error::Revoked { .. })
    ));
}

#[tokio::test]
async fn repeated_authentication_reads_the_store_once_per_ttl() {
    let s = setup();
    let issued = s.cached.issue(env(), alice(), request()).await.unwrap();
    for _ in 0..100 {
        s.cached
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();
    }
    assert_eq!(s.backend.finds.load(Ordering::SeqCst), 1);
    assert_eq!(
        s.backend.last_use_writes.load(Ordering::SeqCst),
        1,
        "the cached copy carries the recorded last use"
    );
    s.clock.advance(TimeDelta::seconds(5));
    s.cached
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap();
    assert_eq!(
        s.backend.finds.load(Ordering::SeqCst),
        2,
        "expired entries are refreshed"
    );
}

#[tokio::test]
async fn a_revocation_through_the_same_issuer_applies_at_once() {
    let s = setup();
    let issued = s.cached.issue(env(), alice(), request()).await.unwrap();
    s.cached
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap();
    s.cached
        .revoke(env(), support::operator(), issued.token.id)
        .await
        .unwrap();
    assert!(matches!(
        s.cached.authenticate(issued.raw.expose_secret()).await,
        Err(Error::Revoked { .. })
    ));
}

/// Revoking a token through the cache revokes the tokens it created in the store, and
/// the cache forgets its copies of them at once: a cached child is not served.
#[tokio::test]
async fn revoking_a_creator_through_the_cache_stops_its_cached_tokens_at_once() {
    let s = setup();
    let parent = s.cached.issue(env(), alice(), request()).await.unwrap();
    let principal = s
        .cached
        .authenticate(parent.raw.expose_secret())
        .await
        .unwrap();
    let child = s.cached.issue(env(), &principal, request()).await.unwrap();
    let unrelated = s.cached.issue(env(), alice(), request()).await.unwrap();
    for issued in [&child, &unrelated] {
        s.cached
            .authenticate(issued.raw.expose_secret())
            .await
            .unwrap();
    }
    let finds = s.backend.finds.load(Ordering::SeqCst);
    s.cached
        .revoke(env(), support::operator(), parent.token.id)
        .await
        .unwrap();
    assert!(matches!(
        s.cached.authenticate(child.raw.expose_secret()).await,
        Err(Error::Revoked { .. })
    ));
    s.cached
        .authenticate(unrelated.raw.expose_secret())
        .await
        .unwrap();
    assert_eq!(
        s.backend.finds.load(Ordering::SeqCst),
        finds + 1,
        "only the delegated token was read again; the user's token stayed cached"
    );
}

/// A look-up of a delegated token that read the store before its creator's revocation
/// does not fill the cache with the old, live record.
#[tokio::test]
async fn a_lookup_under_way_never_caches_a_token_its_creators_revocation_revoked() {
    let gated = Arc::new(GatedStore::new(MemoryStore::new()));
    let cache = CachedStore::new(gated.clone());
    let issuer = TokenIssuer::new(&cache);
    let parent = issuer.issue(env(), alice(), request()).await.unwrap();
    let principal = issuer
        .authenticate(parent.raw.expose_secret())
        .await
        .unwrap();
    let child = issuer.issue(env(), &principal, request()).await.unwrap();
    let hash = issuer.hasher().hash(child.raw.expose_secret());
    gated.hold_next_lookup(hash);
    let lookup = async { cache.find_by_hash(&hash).await.unwrap() };
    let revoke = async {
        gated.until_held().await;
        issuer
            .revoke(env(), support::operator(), parent.token.id)
            .await
            .unwrap();
        gated.release();
    };
    let (seen, ()) = tokio::join!(lookup, revoke);
    assert!(
        seen.unwrap().active,
        "the held look-up read before the revoke"
    );
    assert!(matches!(
        issuer.authenticate(child.raw.expose_secret()).await,
        Err(Error::Revoked { .. })
    ));
}

#[tokio::test]
async fn a_rotation_through_the_same_issuer_applies_at_once() {
    let s = setup();
    let old = s.cached.issue(env(), alice(), request()).await.unwrap();
    s.cached
        .authenticate(old.raw.expose_secret())
        .await
        .unwrap();
    let new = s
        .cached
        .rotate(env(), support::operator(), old.token.id, Duration::ZERO)
        .await
        .unwrap();
    assert!(matches!(
        s.cached.authenticate(old.raw.expose_secret()).await,
        Err(Error::Expired { .. })
    ));
    s.cached
        .authenticate(new.raw.expose_secret())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_revocation_elsewhere_applies_within_the_ttl() {
    let s = setup();
    let issued = s.cached.issue(env(), alice(), request()).await.unwrap();
    let secret = issued.raw.expose_secret();
    s.cached.authenticate(secret).await.unwrap();
    s.elsewhere
        .revoke(env(), support::operator(), issued.token.id)
        .await
        .unwrap();
    // The documented staleness: still served from the cache...
    s.clock.advance(TimeDelta::milliseconds(4_999));
    s.cached.authenticate(secret).await.unwrap();
    // ...and refused once the entry's TTL has passed.
    s.clock.advance(TimeDelta::milliseconds(1));
    assert!(matches!(
        s.cached.authenticate(secret).await,
        Err(Error::Revoked { .. })
    ));
}

#[tokio::test]
async fn expiry_is_checked_on_every_request_even_from_the_cache() {
    let s = setup();
    let at = "2026-05-01T00:00:01Z".parse().unwrap();
    let issued = s
        .cached
        .issue(env(), alice(), request().expires_at(at))
        .await
        .unwrap();
    s.cached
        .authenticate(issued.raw.expose_secret())
        .await
        .unwrap();
    s.clock.set(at);
    assert!(matches!(
        s.cached.authenticate(issued.raw.expose_secret()).await,
        Err(Error::Expired { .. })
    ));
    assert_eq!(
        s.backend.finds.load(Ordering::SeqCst),
        1,
        "served from the cache"
    );
}

#[tokio::test]
async fn unknown_tokens_are_remembered_briefly() {
    let s = setup();
    let guess = TokenFormat::dynamic().generate(&mut rand::rng());
    for _ in 0..10 {
        assert!(matches!(
            s.cached.authenticate(guess.expose_secret()).await,
            Err(Error::Unknown { .. })
        ));
    }
    assert_eq!(s.backend.finds.load(Ordering::SeqCst), 1);
    s.clock.advance(TimeDelta::seconds(1));
    let _ = s.cached.authenticate(guess.expose_secret()).await;
    assert_eq!(s.backend.finds.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_insert_through_the_cache_clears_a_negative_entry() {
    let s = setup();
    let raw = TokenFormat::dynamic().generate(&mut rand::rng());
    let hash = s.cached.hasher().hash(raw.expose_secret());
    assert!(
        s.cached
            .store()
            .find_by_hash(&hash)
            .await
            .unwrap()
            .is_none()
    );
    let mut stored = conformance::sample_token(env(), conformance::base_time());
    stored.hash = hash;
    s.cached
        .store()
        .insert(stored.clone(), apitoken::Limits::NONE)
        .await
        .unwrap();
    assert_eq!(
        s.cached.store().find_by_hash(&hash).await.unwrap(),
        Some(stored.token)
    );
}

#[tokio::test]
async fn the_cache_is_bounded() {
    let cache = CachedStore::new(MemoryStore::new()).capacity(64);
    let hasher = apitoken::TokenHasher::unkeyed();
    for _ in 0..2_000 {
        let raw = TokenFormat::dynamic().generate(&mut rand::rng());
        cache
            .find_by_hash(&hasher.hash(raw.expose_secret()))
            .await
            .unwrap();
    }
    assert!(cache.len() <= 64, "{} entries", cache.len());
    assert!(!cache.is_empty());
    cache.invalidate_all();
    assert!(cache.is_empty());
}
