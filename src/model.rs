//! The records: identifiers, [`Creator`], [`Token`], [`StoredToken`], [`IssuedToken`],
//! [`IssueRequest`] and [`Credential`]. Their JSON is the `wire` module's.

use crate::cidr::AllowedCidrs;
use crate::format::Checksum;
use crate::hash::{KeyFingerprint, TokenHash};
use crate::note::Note;
use crate::scope::Scopes;
use crate::secret::RawToken;
use chrono::{DateTime, Utc};
use core::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize), serde(transparent))]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                $name(uuid)
            }

            /// The UUID.
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// A time-ordered UUID v7 for `at`, its random bits drawn from `rng`.
            pub fn generate<R: rand_core::CryptoRng + ?Sized>(at: DateTime<Utc>, rng: &mut R) -> Self {
                let mut random = [0u8; 10];
                rng.fill_bytes(&mut random);
                let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
                $name(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                $name(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl core::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

id_type! {
    /// Identifies a token (UUID v7: time-ordered).
    TokenId
}
id_type! {
    /// Identifies a project environment: tokens belong to exactly one.
    EnvironmentId
}
id_type! {
    /// Identifies the person (dashboard user) a token was created for.
    UserId
}

/// Who created a token: the reference's `createdBy`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "camelCase")
)]
pub struct Creator {
    /// The user's id.
    pub id: UserId,
    /// A display alias.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub alias: Option<String>,
    /// First name.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub first_name: Option<String>,
    /// Last name.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub last_name: Option<String>,
    /// E-mail address.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub email: Option<String>,
}

impl Creator {
    /// A creator known only by id.
    pub fn new(id: UserId) -> Creator {
        Creator {
            id,
            alias: None,
            first_name: None,
            last_name: None,
            email: None,
        }
    }
}

/// A token's record, without its secret: what listing and introspection return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The token's id.
    pub id: TokenId,
    /// The last 6 characters of the raw token.
    pub checksum: Checksum,
    /// Who created it.
    pub created_by: Arc<Creator>,
    /// When it was created (microsecond precision).
    pub created_at: DateTime<Utc>,
    /// False once revoked: only active tokens authenticate.
    pub active: bool,
    /// What it is for.
    pub note: Note,
    /// The environment it belongs to (`projectEnvironmentId` in JSON).
    pub environment: EnvironmentId,
    /// What it may do.
    pub scopes: Scopes,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last authenticated, recorded at most once per interval.
    pub last_used_at: Option<DateTime<Utc>>,
    /// The client address of that use (`lastUsedIp` in JSON), recorded with its time:
    /// `None` when unknown (never used, or used through
    /// [`authenticate`](crate::TokenIssuer::authenticate), which is given no address).
    pub last_used_ip: Option<IpAddr>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The token that created it, when a token did (`createdByTokenId` in JSON, an
    /// extension of the reference): it expires no later than that token and is revoked
    /// with it. `None` when a user created it.
    pub created_by_token: Option<TokenId>,
    /// The client addresses it authenticates from (`allowedCidrs` in JSON); `None`: any.
    /// See [`TokenIssuer::authenticate_from`](crate::TokenIssuer::authenticate_from).
    pub allowed_cidrs: Option<AllowedCidrs>,
}

/// Records a use at `at` from `from` in `token`, as every store does: the time moves
/// forward only, and the address goes with its time (a use later than the recorded one
/// replaces both, an earlier or equal one changes neither).
pub(crate) fn record_use(token: &mut Token, at: DateTime<Utc>, from: Option<IpAddr>) {
    if token.last_used_at.is_none_or(|last| at > last) {
        token.last_used_at = Some(at);
        token.last_used_ip = from;
    }
}

impl Token {
    /// A new, live token: what `issue` and `rotate` store. The one place a token record is
    /// made from scratch; the stores and the JSON only read back what was made here.
    pub(crate) fn new(
        id: TokenId,
        environment: EnvironmentId,
        checksum: Checksum,
        created_by: Arc<Creator>,
        created_at: DateTime<Utc>,
        request: IssueRequest,
        created_by_token: Option<TokenId>,
    ) -> Token {
        let IssueRequest {
            note,
            scopes,
            expires_at,
            allowed_cidrs,
        } = request;
        Token {
            id,
            checksum,
            created_by,
            created_at,
            active: true,
            note,
            environment,
            scopes,
            expires_at,
            last_used_at: None,
            last_used_ip: None,
            revoked_at: None,
            created_by_token,
            allowed_cidrs,
        }
    }

    /// Whether it authenticates at `now`: active and not expired.
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        self.active && self.expires_at.is_none_or(|at| at > now)
    }

    /// The token as an answer shows it at `now`: `active` is false when it is revoked or
    /// expired by then. The store's record keeps its own facts (`active` only turns false
    /// on revocation; expiry is `expires_at`), so an answer built from a record should go
    /// through this, with the issuer's clock ([`TokenIssuer::now`](crate::TokenIssuer::now)).
    ///
    /// ```
    /// use apitoken::{Creator, EnvironmentId, IssueRequest, MemoryStore, Note, TokenIssuer, UserId};
    /// use chrono::TimeDelta;
    /// use uuid::Uuid;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let issuer = TokenIssuer::new(MemoryStore::new());
    /// let env = EnvironmentId::from_uuid(Uuid::nil());
    /// let me = Creator::new(UserId::from_uuid(Uuid::nil()));
    /// let request = IssueRequest::new(Note::new("for an hour")?)
    ///     .expires_at(issuer.now() + TimeDelta::hours(1));
    /// let token = issuer.issue(env, me, request).await?.token;
    ///
    /// assert!(token.clone().as_of(issuer.now()).active);
    /// let later = token.clone().as_of(issuer.now() + TimeDelta::hours(2));
    /// assert!(!later.active);
    /// assert_eq!(later.expires_at, token.expires_at);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn as_of(mut self, now: DateTime<Utc>) -> Token {
        self.active = self.is_live_at(now);
        self
    }
}

/// What a store keeps: the record and the hash of the raw token, never the raw token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredToken {
    /// The record.
    pub token: Token,
    /// The hash a presented token is looked up by.
    pub hash: TokenHash,
    /// The fingerprint of the key that made `hash` (see [`HashKeyring`](crate::HashKeyring)):
    /// the store records it, so that it knows which keys its rows need.
    pub hash_key: KeyFingerprint,
}

/// A newly issued token: the raw token, shown this once, and its record.
///
/// Serializes as the reference's `{"token": {…, "rawToken": "dyn_…"}}`; this and
/// [`RawToken::expose_secret`] are the only ways the secret leaves the library.
#[derive(Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The plaintext: give it to the caller once, then drop it.
    pub raw: RawToken,
    /// The record (also returned by `get` and `list`).
    pub token: Token,
}

/// What `issue` needs from the caller: the reference's `PostTokenFields`, plus an optional
/// expiry and an optional list of the client addresses it may be used from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "camelCase")
)]
pub struct IssueRequest {
    /// Required: what the token is for.
    pub note: Note,
    /// The scopes to grant; absent means none.
    #[cfg_attr(feature = "serde", serde(default))]
    pub scopes: Scopes,
    /// When the token stops working; absent means never.
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "crate::wire::rfc3339::option"
        )
    )]
    pub expires_at: Option<DateTime<Utc>>,
    /// The client addresses the token may be used from (`allowedCidrs`); absent means
    /// any, or, when a token creates the token, the creating token's list.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub allowed_cidrs: Option<AllowedCidrs>,
}

impl IssueRequest {
    /// A request with a note, no scopes, no expiry and no address list.
    pub fn new(note: Note) -> IssueRequest {
        IssueRequest {
            note,
            scopes: Scopes::empty(),
            expires_at: None,
            allowed_cidrs: None,
        }
    }

    /// The same request for a token that authenticates only from an address in one of
    /// `ranges` (see [`TokenIssuer::authenticate_from`](crate::TokenIssuer::authenticate_from)).
    pub fn allowed_from(self, ranges: AllowedCidrs) -> IssueRequest {
        IssueRequest {
            allowed_cidrs: Some(ranges),
            ..self
        }
    }

    /// The same request granting `scopes`.
    pub fn with_scopes(self, scopes: impl Into<Scopes>) -> IssueRequest {
        IssueRequest {
            scopes: scopes.into(),
            ..self
        }
    }

    /// The same request expiring at `at`.
    pub fn expires_at(self, at: DateTime<Utc>) -> IssueRequest {
        IssueRequest {
            expires_at: Some(at),
            ..self
        }
    }
}

/// The part of a record that authentication reads: everything but the note and the
/// checksum. Stores may answer [`TokenStore::find_credential`](crate::TokenStore::find_credential)
/// without reading the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The token's id.
    pub id: TokenId,
    /// Its environment.
    pub environment: EnvironmentId,
    /// Its scopes.
    pub scopes: Scopes,
    /// Who created it.
    pub created_by: Arc<Creator>,
    /// False once revoked.
    pub active: bool,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it last authenticated.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether a token created it ([`Token::created_by_token`] is set): such a token acts
    /// only on itself and its descendants. A flag, not the creator's id, so that the
    /// record authentication copies stays small.
    pub delegated: bool,
    /// The client addresses it authenticates from; `None`: any.
    pub allowed_cidrs: Option<AllowedCidrs>,
}

impl From<&Token> for Credential {
    fn from(token: &Token) -> Self {
        Credential {
            id: token.id,
            environment: token.environment,
            scopes: token.scopes.clone(),
            created_by: token.created_by.clone(),
            active: token.active,
            expires_at: token.expires_at,
            last_used_at: token.last_used_at,
            revoked_at: token.revoked_at,
            delegated: token.created_by_token.is_some(),
            allowed_cidrs: token.allowed_cidrs.clone(),
        }
    }
}

impl From<Token> for Credential {
    fn from(token: Token) -> Self {
        Credential::from(&token)
    }
}
