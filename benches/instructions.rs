//! The hot paths in a plain loop, for counting instructions with callgrind: counts do not
//! depend on what else the machine is doing, so they compare changes where timings on a
//! shared VM cannot.
//!
//! ```sh
//! cargo bench --bench instructions --no-run      # prints the binary's path
//! B=target/release/deps/instructions-<hash>
//! for n in 1000 11000; do valgrind --tool=callgrind --callgrind-out-file=/dev/null $B live $n; done
//! # instructions per operation = (total at 11000 - total at 1000) / 10000
//! ```
//!
//! Operations: `generate`, `issue_without_store`, `issue` (into a `MemoryStore`), `live`,
//! `unknown`, `wrong_prefix`, `bad_checksum` (authenticate), `parse_bad_checksum`,
//! `cached_live` (authenticate, a hit of a `CachedStore` in front of a `MemoryStore`) and
//! `coherent_live` (the same hit of a coherent one whose feed has caught up),
//! `ring4_current`, `ring4_retired`, `ring4_unknown` (authenticate with a keyring of 4 keys:
//! a token of the current key, one of the first retired key, an unknown one; neither
//! rehashed nor its last use recorded). Under
//! `cargo bench` (no operation given) it runs each once and says how to use it.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use apitoken::{
    CachedStore, Creator, EnvironmentId, EventCursor, FeedMessage, HashKey, HashKeyring,
    IssueRequest, MemoryStore, Note, Scope, Scopes, TokenFormat, TokenHasher, TokenIssuer, UserId,
};
use std::hint::black_box;
use std::sync::Arc;
use uuid::Uuid;

mod common;
use common::{REFERENCE, ready};

const OPERATIONS: [&str; 13] = [
    "generate",
    "issue_without_store",
    "issue",
    "live",
    "unknown",
    "wrong_prefix",
    "bad_checksum",
    "parse_bad_checksum",
    "cached_live",
    "coherent_live",
    "ring4_current",
    "ring4_retired",
    "ring4_unknown",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (operations, n): (Vec<&str>, usize) = match args.first().map(String::as_str) {
        Some(op) if OPERATIONS.contains(&op) => (
            vec![op],
            args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000),
        ),
        _ => {
            println!(
                "instructions: run under valgrind --tool=callgrind; see benches/instructions.rs"
            );
            (OPERATIONS.to_vec(), 1)
        }
    };
    let issuer = TokenIssuer::builder(MemoryStore::new())
        .last_use_interval(None)
        .build();
    let env = EnvironmentId::from_uuid(Uuid::from_u128(1));
    let creator = Arc::new(Creator::new(UserId::from_uuid(Uuid::from_u128(2))));
    let note = Note::new("deploys from CI (prod)").unwrap();
    let scopes = Scopes::from([Scope::ENVIRONMENT_API_TOKENS_READ]);
    let request = || IssueRequest::new(note.clone()).with_scopes(scopes.clone());
    let live = ready(issuer.issue(env, creator.clone(), request())).unwrap();
    let live = live.raw.expose_secret().to_owned();
    let unknown = TokenFormat::dynamic().generate(&mut rand::rng());
    let unknown = unknown.expose_secret().to_owned();
    let wrong_prefix = REFERENCE.replacen("dyn", "ghp", 1);
    let bad_checksum = REFERENCE.replacen("4n3LFC", "4n3LFD", 1);
    let format = TokenFormat::dynamic();
    let hasher = TokenHasher::unkeyed();
    let now = chrono::Utc::now();
    // The same token through a cache, plain and coherent, each filled once.
    let cached = TokenIssuer::builder(CachedStore::new(issuer.store()))
        .last_use_interval(None)
        .build();
    ready(cached.authenticate(&live)).unwrap();
    let coherent = TokenIssuer::builder(CachedStore::new(issuer.store()).coherent())
        .last_use_interval(None)
        .build();
    // A feed that has caught up to well after the loop vouches for every entry.
    coherent.store().apply(&FeedMessage::CaughtUp {
        as_of: now + chrono::TimeDelta::days(1),
        cursor: EventCursor::START,
    });
    ready(coherent.authenticate(&live)).unwrap();
    // A ring of 4 over the same store: `live` (unkeyed) is under its first retired key.
    let key = |byte: u8| TokenHasher::keyed(HashKey::from_bytes([byte; 32]));
    let ring = HashKeyring::new(key(2))
        .with_retired(TokenHasher::unkeyed(), None)
        .and_then(|ring| ring.with_retired(key(3), None))
        .and_then(|ring| ring.with_retired(key(4), None))
        .unwrap();
    let ring4 = TokenIssuer::builder(issuer.store())
        .keyring(ring)
        .last_use_interval(None)
        .rehash_on_use(false)
        .build();
    let current = ready(ring4.issue(env, creator.clone(), request())).unwrap();
    let current = current.raw.expose_secret().to_owned();
    for op in operations {
        for _ in 0..n {
            match op {
                "generate" => drop(black_box(format.generate(&mut rand::rng()))),
                // What benches/core.rs times as issue_without_store/ours.
                "issue_without_store" => drop(black_box(common::issue_without_store(
                    &format, &hasher, now, env, &creator, &note, &scopes,
                ))),
                "issue" => drop(black_box(
                    ready(issuer.issue(env, creator.clone(), request())).unwrap(),
                )),
                "live" => drop(black_box(
                    ready(issuer.authenticate(black_box(&live))).unwrap(),
                )),
                "unknown" => drop(black_box(
                    ready(issuer.authenticate(black_box(&unknown))).unwrap_err(),
                )),
                "wrong_prefix" => drop(black_box(
                    ready(issuer.authenticate(black_box(&wrong_prefix))).unwrap_err(),
                )),
                "bad_checksum" => drop(black_box(
                    ready(issuer.authenticate(black_box(&bad_checksum))).unwrap_err(),
                )),
                "parse_bad_checksum" => drop(black_box(
                    format.parse(black_box(&bad_checksum)).unwrap_err(),
                )),
                "cached_live" => drop(black_box(
                    ready(cached.authenticate(black_box(&live))).unwrap(),
                )),
                "coherent_live" => drop(black_box(
                    ready(coherent.authenticate(black_box(&live))).unwrap(),
                )),
                "ring4_current" => drop(black_box(
                    ready(ring4.authenticate(black_box(&current))).unwrap(),
                )),
                "ring4_retired" => drop(black_box(
                    ready(ring4.authenticate(black_box(&live))).unwrap(),
                )),
                "ring4_unknown" => drop(black_box(
                    ready(ring4.authenticate(black_box(&unknown))).unwrap_err(),
                )),
                _ => unreachable!("checked above"),
            }
        }
    }
}
