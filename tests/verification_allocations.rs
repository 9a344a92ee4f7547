//! Authentication from an address allocates nothing, for a token with ranges or without:
//! counted by an allocator that counts this thread's allocations.
#![allow(unsafe_code)]

use apitoken::{
    AllowedCidrs, Creator, EnvironmentId, IssueRequest, MemoryStore, Note, TokenIssuer, UserId,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use uuid::Uuid;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts calls (a
// const thread-local `Cell` needs no allocation nor destructor).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Polls `future` once: a memory store answers without waiting.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a memory store answers at once"),
    }
}

fn allocations_in<T>(f: impl FnOnce() -> T) -> (usize, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let output = f();
    (ALLOCATIONS.with(Cell::get) - before, output)
}

#[test]
fn authenticating_from_an_address_allocates_nothing() {
    // Without last-use writes, which are a store call once a minute.
    let issuer = TokenIssuer::builder(MemoryStore::new())
        .last_use_interval(None)
        .build();
    let env = EnvironmentId::from_uuid(Uuid::from_u128(1));
    let me = Creator::new(UserId::from_uuid(Uuid::from_u128(2)));
    let open = ready(issuer.issue(
        env,
        me.clone(),
        IssueRequest::new(Note::new("open").unwrap()),
    ))
    .unwrap();
    let ranges = AllowedCidrs::parse("192.0.2.0/24 10.0.0.0/8 2001:db8::/32").unwrap();
    let restricted = ready(issuer.issue(
        env,
        me,
        IssueRequest::new(Note::new("restricted").unwrap()).allowed_from(ranges),
    ))
    .unwrap();
    // The counter counts: one allocation is seen.
    let (count, boxed) = allocations_in(|| Box::new(7_u64));
    assert_eq!((count, *boxed), (1, 7));
    let inside: IpAddr = "10.1.2.3".parse().unwrap();
    let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
    let mut counts = Vec::new();
    for (what, secret, from) in [
        ("a token without ranges", open.raw.expose_secret(), inside),
        (
            "a token with ranges, from inside",
            restricted.raw.expose_secret(),
            inside,
        ),
        (
            "a token with ranges, from a mapped address",
            restricted.raw.expose_secret(),
            mapped,
        ),
    ] {
        // Once to warm anything lazily made on first use (tracing's callsites).
        drop(ready(issuer.authenticate_from(secret, from)).unwrap());
        let (count, principal) = allocations_in(|| ready(issuer.authenticate_from(secret, from)));
        drop(principal.unwrap());
        counts.push((what, count));
    }
    // The `metrics` facade builds each counter's key (with its labels) on the heap, on
    // every path alike; without it, nothing is allocated at all.
    let baseline = if cfg!(feature = "metrics") {
        counts[0].1
    } else {
        0
    };
    for (what, count) in counts {
        assert_eq!(count, baseline, "{what}: {count} allocations");
    }
    // A refusal builds an error (and may allocate): it is not the path that must be free.
    let outside: IpAddr = "198.51.100.1".parse().unwrap();
    assert!(ready(issuer.authenticate_from(restricted.raw.expose_secret(), outside)).is_err());
}
