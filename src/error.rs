//! [`Error`]: what the issuer's operations report.

use crate::cidr::{AllowedCidrs, Cidr};
use crate::format::{Checksum, FormatError};
use crate::model::{EnvironmentId, TokenId};
use crate::policy::PolicyError;
use crate::scope::Scope;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use std::net::IpAddr;

/// Why an issuer operation failed.
///
/// Branch on the variant. The messages are for logs and operators: they never contain a
/// presented token (at most its prefix and checksum). For a client, the
/// [`http`](crate::http) module gives the status, the reference code and the public
/// message ([`http::status`](crate::http::status), [`http::code`](crate::http::code),
/// [`http::public_message`](crate::http::public_message)), which map all four
/// authentication failures (malformed, unknown, revoked, expired) to the same 401 answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The presented value is not a token of the issuer's format.
    #[error("malformed token: {0}")]
    Malformed(#[from] FormatError),
    /// Well-formed, but no such token exists.
    #[error("unknown token …{checksum}: no token with this value exists in the store")]
    Unknown {
        /// The presented token's checksum.
        checksum: Checksum,
    },
    /// The token was revoked.
    #[error("token {id} is revoked")]
    Revoked {
        /// The token.
        id: TokenId,
        /// When, if recorded.
        revoked_at: Option<DateTime<Utc>>,
    },
    /// The token expired (or its rotation grace period ended).
    #[error("token {id} expired at {expired_at}")]
    Expired {
        /// The token.
        id: TokenId,
        /// When.
        expired_at: DateTime<Utc>,
    },
    /// The token belongs to another environment.
    #[error(
        "token {id} belongs to environment {token_environment}, not to environment {requested}"
    )]
    WrongEnvironment {
        /// The token.
        id: TokenId,
        /// Its environment.
        token_environment: EnvironmentId,
        /// The environment asked for.
        requested: EnvironmentId,
    },
    /// The token lacks a required scope.
    #[error("token {id} lacks the scope `{scope}` this operation requires")]
    MissingScope {
        /// The token.
        id: TokenId,
        /// The first missing scope.
        scope: Scope,
    },
    /// A token created by a token asked to act (get, revoke, rotate) on a token that is
    /// neither itself nor one it created, directly or not: delegation narrows authority.
    #[error(
        "token {caller} was created by another token, so it acts only on itself and the tokens it created: token {id} is not one of them; use a token a user created"
    )]
    OutsideDelegation {
        /// The calling token.
        caller: TokenId,
        /// The token it asked to act on.
        id: TokenId,
    },
    /// Requested scopes are not in the catalog, or (when a token creates a token) not held
    /// by the caller. Reference code `invalid_scopes`. The message names at most
    /// [`MAX_LISTED_SCOPES`] of each list, with a count of the rest.
    #[error(
        "invalid scopes:{}{}",
        list(" not in the catalog", unknown),
        list(" not held by the calling token", not_held)
    )]
    InvalidScopes {
        /// Scopes the issuer's catalog does not contain.
        unknown: Vec<Scope>,
        /// Scopes the calling token does not hold (no privilege escalation).
        not_held: Vec<Scope>,
    },
    /// The requested expiry is not in the future; or later than allowed: than the
    /// creating token's own expiry (when a token creates a token), or than the
    /// environment's maximum lifetime ([`LifetimePolicy`](crate::LifetimePolicy)); or
    /// absent where the environment's policy requires one. Reference code
    /// `invalid_expires_at`.
    #[error("{}", expiry_message(*.expires_at, *.now, *.latest))]
    InvalidExpiry {
        /// The requested expiry; `None` when none was asked for and one is required.
        expires_at: Option<DateTime<Utc>>,
        /// The issuer's current time.
        now: DateTime<Utc>,
        /// The latest expiry allowed, when bounded: the earlier of the creating token's
        /// expiry and the environment's maximum lifetime from now.
        latest: Option<DateTime<Utc>>,
    },
    /// The issuer's configuration does not hold together (from
    /// [`TokenIssuerBuilder::prepare`](crate::TokenIssuerBuilder::prepare)): fix the
    /// configuration.
    #[error("invalid lifetime policy: {0}")]
    InvalidPolicy(#[from] PolicyError),
    /// The token is valid, but has allowed ranges ([`Token::allowed_cidrs`](crate::Token::allowed_cidrs))
    /// and the client's address is in none of them, or no address was given
    /// ([`TokenIssuer::authenticate`](crate::TokenIssuer::authenticate) is given none: use
    /// [`authenticate_from`](crate::TokenIssuer::authenticate_from)). 403, code
    /// `ip_not_allowed`: the token was right, the place was not.
    #[error("{}", place_message(*.id, *.client))]
    IpNotAllowed {
        /// The token.
        id: TokenId,
        /// The client's address (IPv4-mapped IPv6 addresses as IPv4), if one was given.
        client: Option<IpAddr>,
    },
    /// A token creating a token asked for allowed ranges wider than its own: each range of
    /// the new token must lie inside one of the creating token's (delegation narrows,
    /// never widens). Reference-style code `invalid_allowed_cidrs` (422). Without
    /// `allowedCidrs` the new token takes the creating token's list.
    #[error(
        "allowedCidrs may only narrow the creating token's ranges ({allowed}): {} not inside any of them; give ranges inside them, or none to take them as they are",
        cidr_list(not_covered)
    )]
    InvalidAllowedCidrs {
        /// The requested ranges outside the creating token's (at most
        /// [`MAX_ALLOWED_CIDRS`](crate::MAX_ALLOWED_CIDRS)).
        not_covered: Vec<Cidr>,
        /// The creating token's ranges.
        allowed: AllowedCidrs,
    },
    /// The store refused or failed: no such token ([`StoreError::NotFound`]), a limit
    /// ([`StoreError::LimitReached`], [`StoreError::EnvironmentFull`],
    /// [`StoreError::TooManyDelegated`]: reference code `too_many_api_tokens`;
    /// [`StoreError::DelegationTooDeep`]: 403), a
    /// rotation of a token that is not live or was already rotated, or an outage
    /// ([`StoreError::Unavailable`]). One name per fact: the issuer passes the store's
    /// kind on as it is.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn place_message(id: TokenId, client: Option<IpAddr>) -> String {
    match client {
        Some(client) => format!(
            "token {id} may not be used from {client}: the address is outside the ranges the token allows; use it from an allowed network, or issue a token that allows this one"
        ),
        None => format!(
            "token {id} may only be used from the ranges it allows, and the client's address is not known: pass it (TokenIssuer::authenticate_from, or the ClientAddr request extension for the axum extractors)"
        ),
    }
}

fn cidr_list(ranges: &[Cidr]) -> String {
    let names: Vec<String> = ranges.iter().map(Cidr::to_string).collect();
    names.join(", ")
}

fn expiry_message(
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    latest: Option<DateTime<Utc>>,
) -> String {
    match (expires_at, latest) {
        (None, Some(latest)) => format!(
            "expiresAt is required here: give a time after {now} and no later than {latest}"
        ),
        (None, None) => format!("expiresAt is required here: give a time after {now}"),
        (Some(expires_at), Some(latest)) if expires_at > now => format!(
            "expiresAt {expires_at} is later than allowed (the creating token's own expiry, or the environment's maximum lifetime from now): give {latest} or earlier"
        ),
        (Some(expires_at), _) => {
            format!("expiresAt {expires_at} is not in the future (now is {now}): give a later time")
        }
    }
}

/// The most scope names an error repeats per list, in its message and in an HTTP answer's
/// payload: a request naming thousands of bad scopes gets a short answer, not an echo.
pub const MAX_LISTED_SCOPES: usize = 10;

fn list(label: &str, scopes: &[Scope]) -> String {
    if scopes.is_empty() {
        return String::new();
    }
    let names: Vec<String> = scopes
        .iter()
        .take(MAX_LISTED_SCOPES)
        .map(|s| format!("`{s}`"))
        .collect();
    let more = match scopes.len().saturating_sub(MAX_LISTED_SCOPES) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    format!("{label}: {}{more};", names.join(", "))
}

impl Error {
    /// True for the four authentication failures: malformed, unknown, revoked, expired.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            Error::Malformed(_)
                | Error::Unknown { .. }
                | Error::Revoked { .. }
                | Error::Expired { .. }
        )
    }

    /// True when the token is valid but not allowed: wrong environment, missing scope,
    /// a client address outside the token's ranges, a token outside a delegated caller's
    /// reach, or a delegation deeper than allowed.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Error::WrongEnvironment { .. }
                | Error::MissingScope { .. }
                | Error::IpNotAllowed { .. }
                | Error::OutsideDelegation { .. }
                | Error::Store(StoreError::DelegationTooDeep { .. })
        )
    }
}
