//! What the library tells the application's `tracing` subscriber and, with the `metrics`
//! feature, its `metrics` recorder.
//!
//! Only ids, environments, counts and outcomes: never a raw token, never a hash, never a
//! note or an e-mail address (`tests/tracing_hygiene.rs` scans every field a lifecycle
//! records). Levels a production service can leave on: `debug` for each request
//! (authenticate, authorize, read), `info` for each change (issue, revoke, rotate, purge,
//! leak), `warn` for every failure the library handles itself rather than returning it
//! (a last-use write, a background flush, a cache that drops everything after a store
//! error). Spans (`apitoken.issue`, `apitoken.authenticate`, `apitoken.revoke`,
//! `apitoken.rotate`, `apitoken.store`, …) carry the same fields, so a subscriber that
//! records spans sees which store call belongs to which operation.
//!
//! With no subscriber, each call site costs one relaxed load of tracing's global level,
//! and the `apitoken.store` spans are not made at all: a store call is wrapped (one
//! allocation) only when `debug` is enabled or the `metrics` feature is on. Metric
//! names, all prefixed `apitoken_`:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `apitoken_authentications_total` | counter | `outcome`: `ok`, `malformed`, `unknown`, `revoked`, `expired`, `ip_not_allowed`, `store_error` |
//! | `apitoken_changes_total` | counter | `kind`: `issued`, `revoked` (each token, cascade included), `rotated`, `purged`, `leaked`, `rehashed`, `key_retired` (each token revoked by a key's retirement) |
//! | `apitoken_store_errors_total` | counter | `kind`: a [`StoreError`]'s kind, `op`: the store call |
//! | `apitoken_store_call_seconds` | histogram | `op`: the store call |
//! | `apitoken_cache_total` | counter | `result`: `hit`, `miss`, `invalidation` |

use crate::{EnvironmentId, Error, StoreError, Token, TokenId};
use core::pin::Pin;
use core::task::{Context, Poll};
use std::net::IpAddr;

/// Logs (`debug`) and counts an accepted authentication: the token's id and environment.
#[inline(always)]
pub(crate) fn accepted(id: TokenId, environment: EnvironmentId) {
    count_authentication("ok");
    tracing::debug!(outcome = "ok", token_id = %id, environment = %environment, "authenticated");
}

/// Logs (`debug`) and counts a refused authentication (`outcome`: `malformed`,
/// `unknown`, `revoked`, `expired` or `store_error`), with the token's id when it was
/// found; never anything of what was presented.
/// Out of line, and only called when someone listens: refusing a malformed token costs
/// about 250 instructions in all, and a call 20 of them.
#[inline(always)]
pub(crate) fn refused(outcome: &'static str, id: Option<TokenId>) {
    if cfg!(feature = "metrics") || debug_enabled() {
        refused_slowly(outcome, id);
    }
}

#[inline(never)]
#[cold]
fn refused_slowly(outcome: &'static str, id: Option<TokenId>) {
    count_authentication(outcome);
    match id {
        Some(id) => tracing::debug!(outcome, token_id = %id, "authentication refused"),
        None => tracing::debug!(outcome, "authentication refused"),
    }
}

/// Logs (`info`: someone holds a valid token where it may not be used) and counts an
/// authentication refused for the client's address: the token's id and the address (or
/// that none was given), never the token.
#[cold]
#[inline(never)]
pub(crate) fn refused_place(id: TokenId, client: Option<IpAddr>) {
    count_authentication("ip_not_allowed");
    match client {
        Some(client) => tracing::info!(
            outcome = "ip_not_allowed",
            token_id = %id,
            client = %client,
            "authentication refused: the client's address is not in the token's allowed ranges"
        ),
        None => tracing::info!(
            outcome = "ip_not_allowed",
            token_id = %id,
            "authentication refused: the token has allowed ranges and no client address was given"
        ),
    }
}

/// Logs (`warn`) a last-use write that failed: the token was accepted all the same.
#[inline(never)]
pub(crate) fn last_use_recorded(id: TokenId, recorded: Result<(), StoreError>) {
    if let Err(error) = recorded {
        tracing::warn!(token_id = %id, %error, "last use not recorded; the token was accepted");
    }
}

/// Logs a rehash on use (`info` when the token moved to the current key, `debug` when it
/// had changed meanwhile, `warn` when the store failed): the token's id and the keys'
/// fingerprints, never a hash.
#[inline(never)]
pub(crate) fn rehashed(
    id: TokenId,
    from: crate::KeyFingerprint,
    to: crate::KeyFingerprint,
    outcome: Result<bool, StoreError>,
) {
    match outcome {
        Ok(true) => {
            count_changes("rehashed", 1);
            tracing::info!(token_id = %id, from_key = %from, to_key = %to, "token rehashed to the current hash key");
        }
        Ok(false) => {
            tracing::debug!(token_id = %id, from_key = %from, "token not rehashed: revoked, expired or rehashed meanwhile");
        }
        Err(error) => {
            tracing::warn!(token_id = %id, from_key = %from, %error, "token not rehashed (tried again after the last-use interval); the token was accepted");
        }
    }
}

/// Logs (`info`) and counts an issued token.
#[inline(never)]
pub(crate) fn issued(token: &Token) {
    count_changes("issued", 1);
    tracing::info!(
        token_id = %token.id,
        environment = %token.environment,
        created_by_token = token.created_by_token.map(tracing::field::display),
        scopes = token.scopes.len(),
        expires = token.expires_at.is_some(),
        "token issued"
    );
}

/// Logs (`debug`) an issue that was refused, and why.
#[cold]
#[inline(never)]
pub(crate) fn issue_refused(environment: EnvironmentId, error: &Error) {
    // The kind, not the message: a refused scope is the client's text, which may be
    // anything (a token too).
    tracing::debug!(environment = %environment, kind = error_kind(error), "issue refused");
}

/// Whether a `debug` event may be recorded: tracing's global level, one relaxed load.
#[inline(always)]
fn debug_enabled() -> bool {
    use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
    tracing::Level::DEBUG <= STATIC_MAX_LEVEL && tracing::Level::DEBUG <= LevelFilter::current()
}

/// An error's kind, as logged where its message may repeat what a client sent (the
/// variant's name in snake case; a store error's own kind).
pub(crate) fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Malformed(_) => "malformed",
        Error::Unknown { .. } => "unknown",
        Error::Revoked { .. } => "revoked",
        Error::Expired { .. } => "expired",
        Error::WrongEnvironment { .. } => "wrong_environment",
        Error::MissingScope { .. } => "missing_scope",
        Error::OutsideDelegation { .. } => "outside_delegation",
        Error::InvalidScopes { .. } => "invalid_scopes",
        Error::InvalidExpiry { .. } => "invalid_expiry",
        Error::InvalidPolicy(_) => "invalid_policy",
        Error::IpNotAllowed { .. } => "ip_not_allowed",
        Error::InvalidAllowedCidrs { .. } => "invalid_allowed_cidrs",
        Error::Store(error) => store_error_kind(error),
    }
}

/// A store error's kind, as counted (the variant's name, in snake case).
pub(crate) fn store_error_kind(error: &StoreError) -> &'static str {
    match error {
        StoreError::Duplicate { .. } => "duplicate",
        StoreError::NotFound { .. } => "not_found",
        StoreError::LimitReached { .. } => "limit_reached",
        StoreError::EnvironmentFull { .. } => "environment_full",
        StoreError::TooManyDelegated { .. } => "too_many_delegated",
        StoreError::DelegationTooDeep { .. } => "delegation_too_deep",
        StoreError::NotLive { .. } => "not_live",
        StoreError::AlreadyRotated { .. } => "already_rotated",
        StoreError::Unavailable { .. } => "unavailable",
        StoreError::Tls { .. } => "tls",
        StoreError::Corrupt { .. } => "corrupt",
        StoreError::HashKeyMismatch { .. } => "hash_key_mismatch",
        StoreError::KeyringLacksKey { .. } => "keyring_lacks_key",
        StoreError::HashKeyInUse { .. } => "hash_key_in_use",
        StoreError::CurrentHashKey { .. } => "current_hash_key",
        StoreError::NoKeyRecords => "no_key_records",
        StoreError::InvalidUrl { .. } => "invalid_url",
        StoreError::SchemaTooNew { .. } => "schema_too_new",
        StoreError::NotPrepared { .. } => "not_prepared",
        StoreError::NoEventLog => "no_event_log",
        StoreError::EventsPruned { .. } => "events_pruned",
        StoreError::Backend { .. } => "backend",
        StoreError::Full { .. } => "full",
    }
}

/// Counts an authentication by outcome (feature `metrics`).
#[inline]
pub(crate) fn count_authentication(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("apitoken_authentications_total", "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// Counts `n` changes of one kind (feature `metrics`).
#[inline]
pub(crate) fn count_changes(kind: &'static str, n: u64) {
    #[cfg(feature = "metrics")]
    metrics::counter!("apitoken_changes_total", "kind" => kind).increment(n);
    #[cfg(not(feature = "metrics"))]
    let _ = (kind, n);
}

/// Counts a cache look-up's result or an invalidation (feature `metrics`).
#[inline]
pub(crate) fn count_cache(result: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("apitoken_cache_total", "result" => result).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = result;
}

/// A store method's future, as `async_trait` boxes it.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One store call inside an `apitoken.store` span (`op` names the call; its parent is
/// the span current when the call is made). A store error is logged at `debug` (the
/// caller decides what it means) and, with the `metrics` feature, the call's latency is
/// recorded and its error counted by kind.
///
/// Only when someone listens (`debug` enabled, or the `metrics` feature): otherwise the
/// store's own future is returned untouched. Every layer of future is moved whole, and
/// a span held across the await makes the caller's future bigger: issuing into a
/// `MemoryStore` cost 5 % more instructions with the span always there (callgrind,
/// `benches/instructions.rs`), and costs nothing more this way.
#[inline(always)]
pub(crate) fn store_call<'a, T: 'a>(
    op: &'static str,
    call: BoxFuture<'a, Result<T, StoreError>>,
) -> BoxFuture<'a, Result<T, StoreError>> {
    if cfg!(feature = "metrics") || debug_enabled() {
        observed(op, call)
    } else {
        call
    }
}

#[inline(never)]
fn observed<'a, T: 'a>(
    op: &'static str,
    call: BoxFuture<'a, Result<T, StoreError>>,
) -> BoxFuture<'a, Result<T, StoreError>> {
    Box::pin(StoreCall {
        call,
        op,
        span: tracing::debug_span!("apitoken.store", op),
        #[cfg(feature = "metrics")]
        started: std::time::Instant::now(),
    })
}

/// The future [`store_call`] returns when someone listens.
struct StoreCall<F> {
    call: F,
    op: &'static str,
    span: tracing::Span,
    #[cfg(feature = "metrics")]
    started: std::time::Instant,
}

impl<F, T> Future for StoreCall<F>
where
    F: Future<Output = Result<T, StoreError>> + Unpin,
{
    type Output = Result<T, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = {
            let _entered = this.span.enter();
            core::task::ready!(Pin::new(&mut this.call).poll(cx))
        };
        let op = this.op;
        #[cfg(feature = "metrics")]
        metrics::histogram!("apitoken_store_call_seconds", "op" => op)
            .record(this.started.elapsed().as_secs_f64());
        if let Err(error) = &result {
            failed(op, error);
        }
        Poll::Ready(result)
    }
}

/// Logs and counts a store call's error.
#[cold]
#[inline(never)]
fn failed(op: &'static str, error: &StoreError) {
    let kind = store_error_kind(error);
    tracing::debug!(op, kind, %error, "store call failed");
    #[cfg(feature = "metrics")]
    metrics::counter!("apitoken_store_errors_total", "kind" => kind, "op" => op).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = kind;
}
