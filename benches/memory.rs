//! Bytes a `MemoryStore` holds per token, measured with a counting allocator.
//!
//! ```sh
//! cargo bench --bench memory
//! ```
//!
//! Issues 200,000 tokens (20-character note, one scope, a creator with id, alias, names
//! and e-mail, each token its own copy as an application would pass it) and divides the
//! growth of live heap bytes by the count. The map's spare capacity is included: it is
//! what the process pays.
#![allow(missing_docs, unsafe_code, clippy::print_stdout, clippy::unwrap_used)]

use apitoken::{
    Creator, EnvironmentId, IssueRequest, MemoryStore, Note, Scope, TokenIssuer, UserId,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use uuid::Uuid;

mod common;
use common::ready;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap bytes per token after issuing `n` tokens, the creator of token `i` being
/// `creator(i)`.
fn bytes_per_token(n: usize, creator: impl Fn(usize) -> Creator) -> f64 {
    let issuer = TokenIssuer::builder(MemoryStore::new())
        .limits(apitoken::Limits::NONE)
        .build();
    let env = EnvironmentId::from_uuid(Uuid::from_u128(1));
    let before = LIVE.load(Ordering::SeqCst);
    for i in 0..n {
        let request = IssueRequest::new(Note::new("deploys from CI prod").unwrap())
            .with_scopes([Scope::ENVIRONMENT_API_TOKENS_READ]);
        drop(ready(issuer.issue(env, creator(i), request)).unwrap());
    }
    let after = LIVE.load(Ordering::SeqCst);
    assert_eq!(issuer.store().len(), n);
    (after - before) as f64 / n as f64
}

fn main() {
    assert_eq!("deploys from CI prod".chars().count(), 20);
    let creator = |i: usize| Creator {
        alias: Some("jsmith".into()),
        first_name: Some("John".into()),
        last_name: Some("Smith".into()),
        email: Some("jsmith@example.com".into()),
        ..Creator::new(UserId::from_uuid(Uuid::from_u128(i as u128)))
    };
    println!("MemoryStore: 20-character note, one scope, creator with all fields; bytes per token");
    println!("(the table grows at 80% full, so the worst case is just past a growth: 838,861)");
    println!(
        "{:>10} {:>16} {:>18}",
        "tokens", "shared creator", "distinct creators"
    );
    for n in [10_000, 200_000, 838_861, 1_000_000] {
        let shared = bytes_per_token(n, |_| creator(2));
        let distinct = bytes_per_token(n, creator);
        println!("{n:>10} {shared:>16.0} {distinct:>18.0}");
    }
    println!(
        "size_of::<Token>() = {} bytes",
        std::mem::size_of::<apitoken::Token>()
    );
}
