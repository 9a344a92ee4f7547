//! The `metrics` feature: a recorder the application installs receives the counters and
//! the histogram the crate documents, with their labels, as a lifecycle runs on a
//! `CachedStore` over a `MemoryStore`. One binary of its own: the recorder is global.
#![cfg(feature = "metrics")]

use apitoken::{
    CachedStore, Creator, EnvironmentId, IssueRequest, MemoryStore, Note, Scope, TokenFormat,
    TokenIssuer, UserId,
};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// Counts per name and labels (`name{k=v,…}`); a histogram counts its samples.
#[derive(Default)]
struct Counts(Mutex<BTreeMap<String, Arc<Sample>>>);

#[derive(Default)]
struct Sample(AtomicU64);

impl HistogramFn for Sample {
    fn record(&self, value: f64) {
        assert!(value >= 0.0, "a negative latency: {value}");
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Counts {
    fn entry(&self, key: &Key) -> Arc<Sample> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(name).or_default().clone()
    }

    fn get(&self, name: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .map_or(0, |s| s.0.load(Ordering::Relaxed))
    }

    fn names(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }
}

struct Shared(&'static Counts);

impl Recorder for Shared {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let sample = self.0.entry(key);
        // A counter adds to the same atomic a histogram counts samples in.
        Counter::from_arc(Arc::new(CounterOf(sample)))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.0.entry(key))
    }
}

struct CounterOf(Arc<Sample>);

impl metrics::CounterFn for CounterOf {
    fn increment(&self, value: u64) {
        self.0.0.fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.0.0.fetch_max(value, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_lifecycle_is_counted_by_outcome_kind_and_store_call() {
    let counts: &'static Counts = Box::leak(Box::default());
    metrics::set_global_recorder(Shared(counts)).expect("the only recorder");

    let issuer = TokenIssuer::new(CachedStore::new(MemoryStore::new()));
    let environment = EnvironmentId::from_uuid(Uuid::from_u128(1));
    let alice = Creator::new(UserId::from_uuid(Uuid::from_u128(2)));
    let request = IssueRequest::new(Note::new("metrics").unwrap())
        .with_scopes([Scope::ENVIRONMENT_API_TOKENS_READ]);
    let admin = issuer
        .issue(environment, alice.clone(), request.clone())
        .await
        .unwrap();
    let principal = issuer
        .authenticate(admin.raw.expose_secret())
        .await
        .unwrap();
    let child = issuer
        .issue(environment, &principal, request.clone())
        .await
        .unwrap();
    // Twice each: the second is a cache hit.
    for _ in 0..2 {
        issuer
            .authenticate(child.raw.expose_secret())
            .await
            .unwrap();
    }
    let stranger = TokenFormat::dynamic().generate(&mut rand::rng());
    issuer
        .authenticate(stranger.expose_secret())
        .await
        .unwrap_err();
    issuer.authenticate("dyn_short").await.unwrap_err();
    issuer
        .rotate(
            environment,
            alice.clone(),
            child.token.id,
            std::time::Duration::from_secs(3600),
        )
        .await
        .unwrap();
    issuer
        .revoke(environment, alice.clone(), admin.token.id)
        .await
        .unwrap();
    // Revoking it again changes nothing and counts nothing.
    issuer
        .revoke(environment, alice.clone(), admin.token.id)
        .await
        .unwrap();
    issuer
        .authenticate(admin.raw.expose_secret())
        .await
        .unwrap_err();
    // A store error: the token does not exist.
    issuer
        .revoke(environment, alice, stranger_id())
        .await
        .unwrap_err();

    let names = counts.names();
    let expect = |name: &str, n: u64| {
        assert_eq!(counts.get(name), n, "{name} in {names:#?}");
    };
    expect("apitoken_authentications_total{outcome=ok}", 3);
    expect("apitoken_authentications_total{outcome=unknown}", 1);
    expect("apitoken_authentications_total{outcome=malformed}", 1);
    expect("apitoken_authentications_total{outcome=revoked}", 1);
    expect("apitoken_changes_total{kind=issued}", 2);
    expect("apitoken_changes_total{kind=rotated}", 1);
    // The admin, its child's successor and the child (in its grace period).
    expect("apitoken_changes_total{kind=revoked}", 3);
    expect("apitoken_store_errors_total{kind=not_found,op=revoke}", 1);
    expect("apitoken_store_call_seconds{op=insert}", 2);
    expect("apitoken_store_call_seconds{op=revoke}", 3);
    assert!(
        counts.get("apitoken_cache_total{result=hit}") >= 1,
        "{names:#?}"
    );
    assert!(
        counts.get("apitoken_cache_total{result=miss}") >= 3,
        "{names:#?}"
    );
    assert!(
        counts.get("apitoken_cache_total{result=invalidation}") >= 3,
        "{names:#?}"
    );
}

fn stranger_id() -> apitoken::TokenId {
    apitoken::TokenId::from_uuid(Uuid::from_u128(0xdead))
}
