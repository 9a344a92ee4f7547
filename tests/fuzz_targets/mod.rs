//! The bodies of the fuzz targets, shared by `fuzz/fuzz_targets/*.rs` (libFuzzer) and by
//! `tests/fuzz_replay.rs` (every committed corpus and crash file, on the stable toolchain,
//! in every CI run).
//!
//! Each target takes arbitrary bytes, never fails on bad input and panics only when an
//! invariant of the library is broken. The invariants are checked against small
//! independent re-statements of the rules (`reference`), not against the library itself.
// Each fuzz binary calls one target; the replay test calls them all.
#![allow(dead_code)]

mod issuer_state;
mod json;
mod leak_report;
mod note_scope;
mod parse_token;
mod reference;
mod scan_redact;

use apitoken::{Alphabet, TokenFormat};
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

pub(crate) use issuer_state::issuer_state;
pub(crate) use json::json;
pub(crate) use leak_report::leak_report;
pub(crate) use note_scope::note_scope;
pub(crate) use parse_token::parse_token;
pub(crate) use scan_redact::scan_redact;

/// A fuzz target's body.
pub(crate) type Target = fn(&[u8]);

/// Every target by name: the name is its directory under `fuzz/corpus/`.
pub(crate) const TARGETS: [(&str, Target); 6] = [
    ("parse_token", parse_token),
    ("note_scope", note_scope),
    ("json", json),
    ("scan_redact", scan_redact),
    ("issuer_state", issuer_state),
    ("leak_report", leak_report),
];

/// The formats every token-shaped target runs under: the two presets, the longest
/// possible format (16-character prefix, 64 random characters: `MAX_TOKEN_LEN`) and the
/// shortest (1-character prefix, 22 random characters).
pub(crate) fn formats() -> [TokenFormat; 4] {
    [
        TokenFormat::dynamic(),
        TokenFormat::github("ghp").expect("`ghp` is a valid prefix"),
        TokenFormat::new("longprefix16char", Alphabet::GitHub, 64)
            .expect("the longest format is valid"),
        TokenFormat::new("k", Alphabet::Dynamic, 22).expect("the shortest format is valid"),
    ]
}

/// Runs a future that never waits (every `MemoryStore` method is ready at once) to
/// completion with a no-op waker.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    let mut future = pin!(future);
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a MemoryStore operation was pending; it never waits"),
    }
}
