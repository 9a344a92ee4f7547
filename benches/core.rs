#![allow(missing_docs)]
//! Generation and verification on the hot paths, without storage.
//!
//! `cargo bench --bench core`

use apitoken::{
    Creator, EnvironmentId, Note, Scope, Scopes, Token, TokenFormat, TokenHasher, TokenId, UserId,
};
use chrono::Utc;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;
use std::sync::Arc;
use uuid::Uuid;

const REFERENCE: &str = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC";

fn generate(c: &mut Criterion) {
    let format = TokenFormat::dynamic();
    let mut g = c.benchmark_group("generate");
    g.throughput(Throughput::Elements(1));
    let mut seeded = StdRng::seed_from_u64(1);
    g.bench_function("seeded_chacha12", |b| {
        b.iter(|| format.generate(&mut seeded))
    });
    g.bench_function("thread_rng", |b| {
        b.iter(|| format.generate(&mut rand::rng()))
    });
    g.finish();
}

fn issue_without_store(c: &mut Criterion) {
    let format = TokenFormat::dynamic();
    let hasher = TokenHasher::unkeyed();
    let environment = EnvironmentId::from_uuid(Uuid::from_u128(1));
    let creator = Arc::new(Creator::new(UserId::from_uuid(Uuid::from_u128(2))));
    let note = Note::new("benchmark").unwrap();
    let scopes = Scopes::from([Scope::ENVIRONMENT_API_TOKENS_READ]);
    let mut g = c.benchmark_group("issue_without_store");
    g.throughput(Throughput::Elements(1));
    g.bench_function("generate_hash_build", |b| {
        b.iter_batched(
            Utc::now,
            |now| {
                let mut rng = rand::rng();
                let raw = format.generate(&mut rng);
                let id = TokenId::generate(now, &mut rng);
                let hash = hasher.hash(raw.expose_secret());
                let token = Token {
                    id,
                    checksum: raw.checksum(),
                    created_by: creator.clone(),
                    created_at: now,
                    active: true,
                    note: note.clone(),
                    environment,
                    scopes: scopes.clone(),
                    expires_at: None,
                    last_used_at: None,
                    revoked_at: None,
                };
                (raw, hash, token)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let format = TokenFormat::dynamic();
    let hasher = TokenHasher::unkeyed();
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| b.iter(|| format.parse(black_box(REFERENCE))));
    g.bench_function("parse_and_hash", |b| {
        b.iter(|| {
            let parsed = format.parse(black_box(REFERENCE)).unwrap();
            hasher.hash(parsed.expose_secret())
        })
    });
    g.finish();
}

criterion_group!(benches, generate, issue_without_store, verify);
criterion_main!(benches);
