//! The reference JSON (feature `serde`): what Dynamic's API reads and writes, kept apart
//! from the records so that the records stay plain data and the secret is written only by
//! `IssuedToken`. camelCase; timestamps in RFC 3339 UTC with `Z`; `expiresAt`,
//! `lastUsedAt` and `revokedAt` omitted when empty.

use crate::cidr::AllowedCidrs;
use crate::format::Checksum;
use crate::model::{Creator, EnvironmentId, IssuedToken, Token, TokenId};
use crate::note::Note;
use crate::scope::Scopes;
use crate::secret::RawToken;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::net::IpAddr;
use std::sync::Arc;

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
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_cidrs: Option<&'a AllowedCidrs>,
    #[serde(skip_serializing_if = "Option::is_none", with = "rfc3339::option")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none", with = "rfc3339::option")]
    last_used_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none", with = "rfc3339::option")]
    revoked_at: Option<DateTime<Utc>>,
    #[serde(rename = "createdByTokenId", skip_serializing_if = "Option::is_none")]
    created_by_token: Option<TokenId>,
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
            allowed_cidrs: token.allowed_cidrs.as_ref(),
            expires_at: token.expires_at,
            last_used_at: token.last_used_at,
            last_used_ip: token.last_used_ip,
            revoked_at: token.revoked_at,
            created_by_token: token.created_by_token,
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
    #[serde(default)]
    allowed_cidrs: Option<AllowedCidrs>,
    #[serde(default, with = "rfc3339::option")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default, with = "rfc3339::option")]
    last_used_at: Option<DateTime<Utc>>,
    #[serde(default)]
    last_used_ip: Option<IpAddr>,
    #[serde(default, with = "rfc3339::option")]
    revoked_at: Option<DateTime<Utc>>,
    #[serde(default, rename = "createdByTokenId")]
    created_by_token: Option<TokenId>,
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
            last_used_ip: self.last_used_ip,
            revoked_at: self.revoked_at,
            created_by_token: self.created_by_token,
            allowed_cidrs: self.allowed_cidrs,
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

impl<'de> Deserialize<'de> for RawToken {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        RawToken::parse_any(&s).map_err(de::Error::custom)
    }
}
