//! The records: identifiers, [`Creator`], [`Token`], [`StoredToken`], [`IssuedToken`],
//! [`IssueRequest`] and [`Principal`].
//!
//! With the `serde` feature they read and write exactly the JSON of Dynamic's API
//! (camelCase; timestamps in RFC 3339 UTC with `Z`; `expiresAt`, `lastUsedAt` and
//! `revokedAt` omitted when empty).

use crate::format::Checksum;
use crate::hash::TokenHash;
use crate::note::Note;
use crate::scope::Scopes;
use crate::secret::RawToken;
use chrono::{DateTime, Utc};
use core::fmt;
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
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `last` moved forward to a use at `at`, never backwards: how every store records a use.
pub(crate) fn later_use(last: Option<DateTime<Utc>>, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(last.map_or(at, |last| last.max(at)))
}

impl Token {
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
/// expiry.
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
            with = "rfc3339::option"
        )
    )]
    pub expires_at: Option<DateTime<Utc>>,
}

impl IssueRequest {
    /// A request with a note, no scopes and no expiry.
    pub fn new(note: Note) -> IssueRequest {
        IssueRequest {
            note,
            scopes: Scopes::empty(),
            expires_at: None,
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
        }
    }
}

impl From<Token> for Credential {
    fn from(token: Token) -> Self {
        Credential {
            id: token.id,
            environment: token.environment,
            scopes: token.scopes,
            created_by: token.created_by,
            active: token.active,
            expires_at: token.expires_at,
            last_used_at: token.last_used_at,
            revoked_at: token.revoked_at,
        }
    }
}

/// Who a presented token is: the result of authentication. Cloning copies a few words
/// and bumps two reference counts.
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
}

impl Principal {
    pub(crate) fn from_credential(credential: Credential) -> Principal {
        Principal {
            token_id: credential.id,
            environment: credential.environment,
            scopes: credential.scopes,
            expires_at: credential.expires_at,
            created_by: credential.created_by,
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
}

#[cfg(feature = "serde")]
pub(crate) mod rfc3339 {
    //! Timestamps as RFC 3339 in UTC with `Z`, fractional seconds only when present.
    use chrono::{DateTime, Datelike, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de};
    use std::borrow::Cow;

    pub(crate) fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <Cow<'de, str>>::deserialize(d)?;
        let at = DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| de::Error::custom(format_args!("expected an RFC 3339 timestamp: {e}")))?;
        // RFC 3339 has four-digit years: refuse what could not be written back.
        if !(0..=9999).contains(&at.year()) {
            return Err(de::Error::custom(
                "timestamp out of range: the year in UTC must be 0000 to 9999",
            ));
        }
        Ok(at)
    }

    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            at: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(with = "super")] DateTime<Utc>);
            Ok(Option::<Wrap>::deserialize(d)?.map(|Wrap(at)| at))
        }
    }
}

#[cfg(feature = "serde")]
mod wire {
    //! The reference JSON shapes, kept apart from the records so that the records stay
    //! plain data and the secret is written only by `IssuedToken`.
    use super::*;
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

    #[derive(Serialize, Deserialize)]
    struct ProjectEnvironment {
        id: EnvironmentId,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct TokenOut<'a> {
        id: TokenId,
        #[serde(skip_serializing_if = "Option::is_none")]
        raw_token: Option<&'a str>,
        checksum: Checksum,
        created_by: &'a Creator,
        #[serde(with = "rfc3339")]
        created_at: DateTime<Utc>,
        active: bool,
        note: &'a Note,
        project_environment_id: EnvironmentId,
        project_environment: ProjectEnvironment,
        scopes: &'a Scopes,
        #[serde(skip_serializing_if = "Option::is_none", with = "rfc3339::option")]
        expires_at: Option<DateTime<Utc>>,
        #[serde(skip_serializing_if = "Option::is_none", with = "rfc3339::option")]
        last_used_at: Option<DateTime<Utc>>,
        #[serde(skip_serializing_if = "Option::is_none", with = "rfc3339::option")]
        revoked_at: Option<DateTime<Utc>>,
    }

    impl<'a> TokenOut<'a> {
        fn new(token: &'a Token, raw_token: Option<&'a str>) -> Self {
            TokenOut {
                id: token.id,
                raw_token,
                checksum: token.checksum,
                created_by: &token.created_by,
                created_at: token.created_at,
                active: token.active,
                note: &token.note,
                project_environment_id: token.environment,
                project_environment: ProjectEnvironment {
                    id: token.environment,
                },
                scopes: &token.scopes,
                expires_at: token.expires_at,
                last_used_at: token.last_used_at,
                revoked_at: token.revoked_at,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct TokenIn {
        id: TokenId,
        #[serde(default)]
        raw_token: Option<RawToken>,
        checksum: Checksum,
        created_by: Creator,
        #[serde(with = "rfc3339")]
        created_at: DateTime<Utc>,
        active: bool,
        note: Note,
        #[serde(default)]
        project_environment_id: Option<EnvironmentId>,
        #[serde(default)]
        project_environment: Option<ProjectEnvironment>,
        #[serde(default)]
        scopes: Scopes,
        #[serde(default, with = "rfc3339::option")]
        expires_at: Option<DateTime<Utc>>,
        #[serde(default, with = "rfc3339::option")]
        last_used_at: Option<DateTime<Utc>>,
        #[serde(default, with = "rfc3339::option")]
        revoked_at: Option<DateTime<Utc>>,
    }

    impl TokenIn {
        fn into_parts<E: de::Error>(self) -> Result<(Option<RawToken>, Token), E> {
            let environment = match (self.project_environment_id, self.project_environment) {
                (Some(a), Some(ProjectEnvironment { id: b })) if a != b => {
                    return Err(E::custom(
                        "projectEnvironmentId and projectEnvironment.id differ",
                    ));
                }
                (Some(id), _) | (None, Some(ProjectEnvironment { id })) => id,
                (None, None) => {
                    return Err(E::custom(
                        "missing field `projectEnvironmentId` (or `projectEnvironment.id`)",
                    ));
                }
            };
            if let Some(raw) = &self.raw_token
                && raw.checksum() != self.checksum
            {
                return Err(E::custom(
                    "`checksum` is not the last 6 characters of `rawToken`",
                ));
            }
            let token = Token {
                id: self.id,
                checksum: self.checksum,
                created_by: Arc::new(self.created_by),
                created_at: self.created_at,
                active: self.active,
                note: self.note,
                environment,
                scopes: self.scopes,
                expires_at: self.expires_at,
                last_used_at: self.last_used_at,
                revoked_at: self.revoked_at,
            };
            Ok((self.raw_token, token))
        }
    }

    impl Serialize for Token {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            TokenOut::new(self, None).serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for Token {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Ok(TokenIn::deserialize(d)?.into_parts()?.1)
        }
    }

    #[derive(Serialize)]
    struct IssuedOut<'a> {
        token: TokenOut<'a>,
    }

    #[derive(Deserialize)]
    struct IssuedIn {
        token: TokenIn,
    }

    impl Serialize for IssuedToken {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            IssuedOut {
                token: TokenOut::new(&self.token, Some(self.raw.expose_secret())),
            }
            .serialize(s)
        }
    }

    impl<'de> Deserialize<'de> for IssuedToken {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            match IssuedIn::deserialize(d)?.token.into_parts()? {
                (Some(raw), token) => Ok(IssuedToken { raw, token }),
                (None, _) => Err(de::Error::missing_field("rawToken")),
            }
        }
    }
}
