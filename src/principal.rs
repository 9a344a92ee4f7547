//! [`Principal`]: who a presented token is, and what it may do.

use crate::cidr::AllowedCidrs;
use crate::error::Error;
use crate::model::{Creator, Credential, EnvironmentId, TokenId};
use crate::scope::{Scope, Scopes};
use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Who a presented token is: the result of authentication. Cloning copies a few words
/// and bumps two reference counts (three for a token with allowed ranges).
///
/// Only authentication makes one, so passing it to `issue` as the caller is proof that
/// the caller holds these scopes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    token_id: TokenId,
    environment: EnvironmentId,
    scopes: Scopes,
    expires_at: Option<DateTime<Utc>>,
    created_by: Arc<Creator>,
    delegated: bool,
    allowed_cidrs: Option<AllowedCidrs>,
}

impl Principal {
    pub(crate) fn from_credential(credential: Credential) -> Principal {
        Principal {
            token_id: credential.id,
            environment: credential.environment,
            scopes: credential.scopes,
            expires_at: credential.expires_at,
            created_by: credential.created_by,
            delegated: credential.delegated,
            allowed_cidrs: credential.allowed_cidrs,
        }
    }

    /// The authenticated token's id.
    pub fn token_id(&self) -> TokenId {
        self.token_id
    }

    /// The environment the token belongs to.
    pub fn environment(&self) -> EnvironmentId {
        self.environment
    }

    /// The token's scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.scopes
    }

    /// When the token expires, if ever.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    /// Who created the token; tokens it creates are recorded as created by them too.
    pub fn created_by(&self) -> &Arc<Creator> {
        &self.created_by
    }

    /// The client addresses the token authenticates from (`None`: any). A token it
    /// creates gets these, or ranges inside them.
    pub fn allowed_cidrs(&self) -> Option<&AllowedCidrs> {
        self.allowed_cidrs.as_ref()
    }

    /// Whether a token created this one. Such a token is delegated: it acts (gets,
    /// revokes, rotates) only on itself and the tokens it created, directly or not, while a
    /// token a user created acts on its whole environment. Which token created it is its
    /// record's [`created_by_token`](crate::Token::created_by_token).
    pub fn is_delegated(&self) -> bool {
        self.delegated
    }

    /// Checks that this token belongs to `environment` and holds every scope in
    /// `required`. Allocates nothing unless it fails.
    pub fn authorize(&self, environment: EnvironmentId, required: &[Scope]) -> Result<(), Error> {
        let authorized = self.check(environment, required);
        match &authorized {
            Ok(()) => {
                tracing::debug!(token_id = %self.token_id(), environment = %environment, "authorized")
            }
            Err(error) => {
                tracing::debug!(token_id = %self.token_id(), environment = %environment, %error, "not authorized")
            }
        }
        authorized
    }

    fn check(&self, environment: EnvironmentId, required: &[Scope]) -> Result<(), Error> {
        if self.environment() != environment {
            return Err(Error::WrongEnvironment {
                id: self.token_id(),
                token_environment: self.environment(),
                requested: environment,
            });
        }
        match self.scopes().first_missing(required) {
            Some(scope) => Err(Error::MissingScope {
                id: self.token_id(),
                scope: scope.clone(),
            }),
            None => Ok(()),
        }
    }
}
