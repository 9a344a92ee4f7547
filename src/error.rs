//! [`Error`]: what the issuer's operations report.

use crate::format::{Checksum, FormatError};
use crate::model::{EnvironmentId, TokenId};
use crate::scope::Scope;
use crate::store::StoreError;
use chrono::{DateTime, Utc};

/// The single message every authentication failure shows to a client, so that it learns
/// nothing about which check failed.
pub const UNAUTHORIZED_MESSAGE: &str = "invalid or expired API token";

/// Why an issuer operation failed.
///
/// Branch on the variant. The messages are for logs and operators: they never contain a
/// presented token (at most its prefix and checksum). For a client, use [`Error::status`],
/// [`Error::code`] and [`Error::public_message`], which map all four authentication
/// failures (malformed, unknown, revoked, expired) to the same 401 answer.
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
    /// The environment has reached its live-token limit. Reference code
    /// `too_many_api_tokens`.
    #[error(
        "environment {environment} already has {limit} live tokens: revoke one before issuing another"
    )]
    TooManyTokens {
        /// The environment.
        environment: EnvironmentId,
        /// Its limit.
        limit: u32,
    },
    /// The requested expiry is not in the future.
    #[error(
        "expiresAt {expires_at} is not in the future (now is {now}): give a later time or none"
    )]
    InvalidExpiry {
        /// The requested expiry.
        expires_at: DateTime<Utc>,
        /// The issuer's current time.
        now: DateTime<Utc>,
    },
    /// No such token in the environment.
    #[error("no token {id} in environment {environment}")]
    NotFound {
        /// The environment.
        environment: EnvironmentId,
        /// The token asked for.
        id: TokenId,
    },
    /// A revoked or expired token cannot be rotated.
    #[error("token {id} is revoked or expired, so it cannot be rotated: issue a new token instead")]
    NotLive {
        /// The token.
        id: TokenId,
    },
    /// The token was already rotated: each token is replaced at most once, so that it
    /// never has more than one live successor.
    #[error(
        "token {id} has already been rotated, so it cannot be rotated again: {}",
        crate::store::rotate_instead(.successor)
    )]
    AlreadyRotated {
        /// The token.
        id: TokenId,
        /// The token that replaced it, when the store knows.
        successor: Option<TokenId>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
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

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LimitReached { environment, limit } => {
                Error::TooManyTokens { environment, limit }
            }
            StoreError::NotFound { environment, id } => Error::NotFound { environment, id },
            StoreError::NotLive { id } => Error::NotLive { id },
            StoreError::AlreadyRotated { id, successor } => Error::AlreadyRotated { id, successor },
            other => Error::Store(other),
        }
    }
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

    /// True when the token is valid but not allowed: wrong environment or missing scope.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            Error::WrongEnvironment { .. } | Error::MissingScope { .. }
        )
    }

    /// The HTTP status for this error: 401 for every authentication failure, 403, 422,
    /// 404, 409, 503 when the store is unavailable, 500 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Error::Malformed(_)
            | Error::Unknown { .. }
            | Error::Revoked { .. }
            | Error::Expired { .. } => 401,
            Error::WrongEnvironment { .. } | Error::MissingScope { .. } => 403,
            Error::InvalidScopes { .. }
            | Error::TooManyTokens { .. }
            | Error::InvalidExpiry { .. } => 422,
            Error::NotFound { .. } => 404,
            Error::NotLive { .. } | Error::AlreadyRotated { .. } => 409,
            Error::Store(StoreError::Unavailable { .. }) => 503,
            Error::Store(_) => 500,
        }
    }

    /// The reference API's error code, for 422 answers.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Error::InvalidScopes { .. } => Some("invalid_scopes"),
            Error::TooManyTokens { .. } => Some("too_many_api_tokens"),
            Error::InvalidExpiry { .. } => Some("invalid_expires_at"),
            _ => None,
        }
    }

    /// The message to show a client: [`UNAUTHORIZED_MESSAGE`] for every authentication
    /// failure, nothing about the store's internals, the full message otherwise.
    pub fn public_message(&self) -> String {
        match self {
            e if e.is_unauthenticated() => UNAUTHORIZED_MESSAGE.to_owned(),
            Error::Store(StoreError::Unavailable { .. }) => {
                "the token service is temporarily unavailable; retry later".to_owned()
            }
            Error::Store(_) => "internal error in the token service".to_owned(),
            e => e.to_string(),
        }
    }
}
