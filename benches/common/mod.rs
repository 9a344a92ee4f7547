//! Shared by the benches (each uses part of it): the executor for the in-memory store's
//! futures, and "issue without a store" as `core` times it and `instructions` counts it.
#![allow(dead_code)]

use apitoken::{
    Creator, EnvironmentId, Note, RawToken, Scopes, Token, TokenFormat, TokenHash, TokenHasher,
    TokenId,
};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// The reference token of Dynamic's documentation.
pub(crate) const REFERENCE: &str = "dyn_aGLjTe3TUN40vSE75sTtgUx9AjIe0q4n3LFC";

/// Runs a future that never waits (the in-memory store's), without an executor's cost.
pub(crate) fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory store never waits"),
    }
}

/// Issue without a store: generate, hash and build the record, as the issuer does.
#[inline(always)]
pub(crate) fn issue_without_store(
    format: &TokenFormat,
    hasher: &TokenHasher,
    now: DateTime<Utc>,
    environment: EnvironmentId,
    created_by: &Arc<Creator>,
    note: &Note,
    scopes: &Scopes,
) -> (RawToken, TokenHash, Token) {
    let mut rng = rand::rng();
    let raw = format.generate(&mut rng);
    let hash = hasher.hash_token(&raw);
    let token = Token {
        id: TokenId::generate(now, &mut rng),
        checksum: raw.checksum(),
        created_by: created_by.clone(),
        created_at: now,
        active: true,
        note: note.clone(),
        environment,
        scopes: scopes.clone(),
        expires_at: None,
        last_used_at: None,
        last_used_ip: None,
        revoked_at: None,
        created_by_token: None,
        allowed_cidrs: None,
    };
    (raw, hash, token)
}
