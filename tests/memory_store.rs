//! `MemoryStore` passes the conformance suite, also under real multi-threaded load.
#![cfg(feature = "conformance")]

use apitoken::conformance::{self, base_time, new_environment, sample_token};
use apitoken::{Limits, MemoryStore, StoreError, TokenStore};
use chrono::TimeDelta;
use std::num::NonZeroU32;
use std::sync::Arc;

#[tokio::test]
async fn memory_store_passes_the_conformance_suite() {
    conformance::run_all(&MemoryStore::new()).await;
}

#[tokio::test]
async fn the_suite_runs_through_arc_and_box_dyn() {
    let arc: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    conformance::run_all(&arc).await;
    let boxed: Box<dyn TokenStore> = Box::new(MemoryStore::new());
    conformance::run_all(&boxed).await;
}

/// Tasks on several OS threads race inserts against one limit: it is never exceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn threads_racing_inserts_never_exceed_the_limit() {
    let store = Arc::new(MemoryStore::new());
    for round in 0..20 {
        let env = new_environment();
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let t = sample_token(env, base_time() + TimeDelta::microseconds(i));
                    let limits = Limits {
                        max_live: NonZeroU32::new(3),
                        ..Limits::NONE
                    };
                    store.insert(t, limits).await
                })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => accepted += 1,
                Err(StoreError::LimitReached { .. }) => {}
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(accepted, 3, "round {round}");
    }
}

/// Once revoke returns on one thread, no other thread finds the token active.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_is_seen_by_every_thread_at_once() {
    let store = Arc::new(MemoryStore::new());
    for _ in 0..50 {
        let env = new_environment();
        let t = sample_token(env, base_time());
        store.insert(t.clone(), Limits::NONE).await.unwrap();
        let revoked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (store, revoked, hash) = (store.clone(), revoked.clone(), t.hash);
                tokio::spawn(async move {
                    for _ in 0..200 {
                        let was_revoked = revoked.load(std::sync::atomic::Ordering::SeqCst);
                        let found = store.find_by_hash(&hash).await.unwrap().unwrap();
                        assert!(
                            !(was_revoked && found.active),
                            "active after revoke returned"
                        );
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        store
            .revoke(
                env,
                t.token.id,
                base_time(),
                apitoken::Actor::User(apitoken::UserId::from_uuid(uuid::Uuid::nil())),
            )
            .await
            .unwrap();
        revoked.store(true, std::sync::atomic::Ordering::SeqCst);
        for r in readers {
            r.await.unwrap();
        }
    }
}

/// A store whose `find_credential_now` claims every hash is unknown: the suite must notice.
#[derive(Debug, Default)]
struct Forgetful(MemoryStore);

#[apitoken::async_trait] // the re-export: a store needs no async-trait dependency
impl TokenStore for Forgetful {
    async fn insert(&self, t: apitoken::StoredToken, limits: Limits) -> Result<(), StoreError> {
        self.0.insert(t, limits).await
    }
    async fn find_by_hash(
        &self,
        hash: &apitoken::TokenHash,
    ) -> Result<Option<apitoken::Token>, StoreError> {
        self.0.find_by_hash(hash).await
    }
    fn find_credential_now(&self, _: &apitoken::TokenHash) -> Option<Option<apitoken::Credential>> {
        Some(None)
    }
    async fn get(
        &self,
        env: apitoken::EnvironmentId,
        id: apitoken::TokenId,
    ) -> Result<Option<apitoken::Token>, StoreError> {
        self.0.get(env, id).await
    }
    async fn list(
        &self,
        env: apitoken::EnvironmentId,
        page: apitoken::PageRequest,
    ) -> Result<apitoken::Page, StoreError> {
        self.0.list(env, page).await
    }
    async fn revoke(
        &self,
        env: apitoken::EnvironmentId,
        id: apitoken::TokenId,
        at: chrono::DateTime<chrono::Utc>,
        by: apitoken::Actor,
    ) -> Result<apitoken::Revoked, StoreError> {
        self.0.revoke(env, id, at, by).await
    }
    async fn rotate(&self, rotation: apitoken::Rotation) -> Result<apitoken::Token, StoreError> {
        self.0.rotate(rotation).await
    }
    async fn descends_from(
        &self,
        env: apitoken::EnvironmentId,
        id: apitoken::TokenId,
        ancestor: apitoken::TokenId,
    ) -> Result<bool, StoreError> {
        self.0.descends_from(env, id, ancestor).await
    }
    async fn purge(
        &self,
        ended_before: chrono::DateTime<chrono::Utc>,
        max: u32,
    ) -> Result<u32, StoreError> {
        self.0.purge(ended_before, max).await
    }
    async fn record_last_use(
        &self,
        id: apitoken::TokenId,
        at: chrono::DateTime<chrono::Utc>,
        from: Option<std::net::IpAddr>,
    ) -> Result<(), StoreError> {
        self.0.record_last_use(id, at, from).await
    }
}

#[tokio::test]
async fn the_suite_catches_a_fast_path_that_disagrees() {
    let outcome = tokio::spawn(async {
        conformance::run_all(&Forgetful::default()).await;
    })
    .await;
    assert!(
        outcome.is_err_and(|e| e.is_panic()),
        "a find_credential_now that disagrees with find_credential must fail the suite"
    );
}

/// The in-memory store answers authentication without a future, and agrees with itself.
#[tokio::test]
async fn memory_store_answers_credentials_at_once() {
    let store = MemoryStore::new();
    let t = sample_token(new_environment(), base_time());
    assert_eq!(store.find_credential_now(&t.hash), Some(None));
    store.insert(t.clone(), Limits::NONE).await.unwrap();
    assert_eq!(
        store.find_credential_now(&t.hash),
        Some(Some(apitoken::Credential::from(&t.token)))
    );
}

/// `memory:` opens an empty in-memory store; other URLs are refused without repeating
/// what may be a password, naming the scheme only when it looks like one.
#[tokio::test]
async fn open_store_reads_the_url_and_never_repeats_a_password() {
    let store = apitoken::open_store("memory:").await.unwrap();
    let page = store
        .list(new_environment(), apitoken::PageRequest::first(10))
        .await
        .unwrap();
    assert!(page.tokens.is_empty());
    assert!(apitoken::open_store(" memory:// ").await.is_ok());
    for (url, says) in [
        (
            "mysql://app:hunter2@db/app",
            "the scheme `mysql:` is not one",
        ),
        ("hunter2", "it has no scheme"),
        ("memory:hunter2", "a memory store takes no path"),
        ("hunter2 with spaces:x", "it has no scheme"),
        ("", "it has no scheme"),
    ] {
        let err = match apitoken::open_store(url).await {
            Err(err @ StoreError::InvalidUrl { .. }) => err.to_string(),
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        };
        assert!(err.contains(says), "{url}: {err}");
        assert!(!err.contains("hunter2"), "{url}: {err}");
    }
}
