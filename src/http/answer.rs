//! What a client is told about an [`Error`]: the HTTP status, the reference API's code and
//! the public message. Compiled without the `axum` feature too, for applications that
//! answer with another framework.

use crate::error::Error;
use crate::store::StoreError;

/// The single message every authentication failure shows to a client, so that it learns
/// nothing about which check failed.
pub const UNAUTHORIZED_MESSAGE: &str = "invalid or expired API token";

/// The HTTP status for `error`: 401 for every authentication failure, 403 for a wrong
/// environment, a missing scope, a client address the token does not allow, a token
/// outside a delegated caller's reach or a delegation too deep, 422 for the reference API's validation errors and limits, 404 for
/// no such token, 409 for a rotation the token's state refuses, 503 when the store is
/// unavailable, 500 otherwise.
///
/// ```
/// use apitoken::{Error, StoreError, http};
/// # let id = apitoken::TokenId::from_uuid(uuid::Uuid::nil());
/// # let environment = apitoken::EnvironmentId::from_uuid(uuid::Uuid::nil());
/// let e = Error::Store(StoreError::NotFound { environment, id });
/// assert_eq!(http::status(&e), 404);
/// ```
pub fn status(error: &Error) -> u16 {
    match error {
        Error::Malformed(_)
        | Error::Unknown { .. }
        | Error::Revoked { .. }
        | Error::Expired { .. } => 401,
        Error::WrongEnvironment { .. }
        | Error::MissingScope { .. }
        | Error::IpNotAllowed { .. }
        | Error::OutsideDelegation { .. } => 403,
        Error::InvalidScopes { .. }
        | Error::InvalidExpiry { .. }
        | Error::InvalidAllowedCidrs { .. } => 422,
        Error::Store(e) => match e {
            StoreError::LimitReached { .. }
            | StoreError::EnvironmentFull { .. }
            | StoreError::TooManyDelegated { .. } => 422,
            StoreError::DelegationTooDeep { .. } => 403,
            StoreError::NotFound { .. } => 404,
            StoreError::NotLive { .. } | StoreError::AlreadyRotated { .. } => 409,
            StoreError::Unavailable { .. } => 503,
            _ => 500,
        },
        Error::InvalidPolicy(_) => 500,
    }
}

/// The error code an answer carries: the reference API's on a 422 (with a payload),
/// `not_found` on a 404, which Dynamic's client requires (its `NotFound` model has a
/// `code`), and `ip_not_allowed` on the 403 for a client address the token does not
/// allow (the one 403 a client can act on by moving). Other answers have none.
pub fn code(error: &Error) -> Option<&'static str> {
    match error {
        Error::Store(StoreError::NotFound { .. }) => Some("not_found"),
        Error::InvalidScopes { .. } => Some("invalid_scopes"),
        Error::InvalidExpiry { .. } => Some("invalid_expires_at"),
        Error::InvalidAllowedCidrs { .. } => Some("invalid_allowed_cidrs"),
        Error::IpNotAllowed { .. } => Some("ip_not_allowed"),
        Error::Store(
            StoreError::LimitReached { .. }
            | StoreError::EnvironmentFull { .. }
            | StoreError::TooManyDelegated { .. },
        ) => Some("too_many_api_tokens"),
        _ => None,
    }
}

/// The message to show a client: [`UNAUTHORIZED_MESSAGE`] for every authentication
/// failure, nothing about the store's internals, the full message otherwise.
pub fn public_message(error: &Error) -> String {
    match error {
        e if e.is_unauthenticated() => UNAUTHORIZED_MESSAGE.to_owned(),
        Error::Store(e) => match status(error) {
            503 => "the token service is temporarily unavailable; retry later".to_owned(),
            500 => "internal error in the token service".to_owned(),
            _ => e.to_string(),
        },
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EnvironmentId, TokenId};

    #[test]
    fn a_store_kind_answers_as_the_fact_it_names() {
        let environment = EnvironmentId::from_uuid(uuid::Uuid::from_u128(1));
        let id = TokenId::from_uuid(uuid::Uuid::from_u128(2));
        let not_found = Error::from(StoreError::NotFound { environment, id });
        assert_eq!(
            (status(&not_found), code(&not_found)),
            (404, Some("not_found"))
        );
        assert_eq!(
            public_message(&not_found),
            format!("no token {id} in environment {environment}")
        );
        let limit = Error::from(StoreError::LimitReached {
            environment,
            limit: 3,
        });
        assert_eq!(
            (status(&limit), code(&limit)),
            (422, Some("too_many_api_tokens"))
        );
        let rotated = Error::from(StoreError::AlreadyRotated {
            id,
            successor: None,
        });
        assert_eq!(status(&rotated), 409);
        let corrupt = Error::from(StoreError::Corrupt {
            message: "bad row 7".to_owned(),
            source: None,
        });
        assert_eq!(status(&corrupt), 500);
        assert!(!public_message(&corrupt).contains("row 7"));
    }
}
