//! [`LifetimePolicy`]: how long an environment's tokens may live, and how long unused.
//! Plain values; the issuer checks them ([`TokenIssuerBuilder::lifetime_policy`]).
//!
//! [`TokenIssuerBuilder::lifetime_policy`]: crate::TokenIssuerBuilder::lifetime_policy

use crate::model::{Token, TokenId};
use chrono::{DateTime, TimeDelta, Utc};
use core::time::Duration;

/// How long an environment's tokens may live, and how long they may go unused.
///
/// - A **maximum lifetime**: an issue asking for a later expiry, or for none, is refused
///   ([`Error::InvalidExpiry`](crate::Error::InvalidExpiry), 422 `invalid_expires_at`,
///   naming the latest allowed instant). A maximum implies an expiry is required.
/// - **Expiry required** (without a maximum): an issue without `expires_at` is refused.
/// - An **idle expiry**: a token unused for this long (since its last recorded use, or
///   its creation when never used) fails to authenticate as expired, and answers show it
///   expired ([`TokenIssuer::as_of`](crate::TokenIssuer::as_of)). Nothing is written when
///   it goes idle: it is judged from the last use the issuer records anyway.
///
/// The default (`LifetimePolicy::default()`) restricts nothing.
///
/// ```
/// use apitoken::LifetimePolicy;
/// use std::time::Duration;
///
/// const DAY: Duration = Duration::from_secs(86_400);
/// let policy = LifetimePolicy::default()
///     .max_lifetime(90 * DAY)
///     .idle_expiry(30 * DAY);
/// assert!(policy.requires_expiry());
/// assert_eq!(policy.validate(Some(Duration::from_secs(60))), Ok(()));
/// ```
///
/// # Precision of the idle expiry
///
/// The issuer records a token's last use at most once per
/// [`last_use_interval`](crate::TokenIssuerBuilder::last_use_interval), so the recorded
/// time may be up to that interval older than the true last use: a token can go idle up
/// to one interval early (plus, behind a [`CachedStore`](crate::CachedStore) shared by
/// several servers, up to the cache's time to live, and on SQLite a second of buffered
/// writes from another process). A token's creation time is read from its id when
/// authenticating, to the millisecond. Hence [`validate`](Self::validate) asks for an idle
/// expiry of at least [`IDLE_EXPIRY_PER_INTERVAL`](Self::IDLE_EXPIRY_PER_INTERVAL) last-use
/// intervals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifetimePolicy {
    max_lifetime: Option<Duration>,
    require_expiry: bool,
    idle_expiry: Option<Duration>,
}

impl LifetimePolicy {
    /// How many last-use intervals an idle expiry must span at least: a token is then
    /// never judged idle more than a tenth of the idle expiry early.
    pub const IDLE_EXPIRY_PER_INTERVAL: u32 = 10;

    /// The same policy with tokens living at most `lifetime` from their creation (and
    /// so required to expire).
    #[must_use]
    pub fn max_lifetime(self, lifetime: Duration) -> LifetimePolicy {
        LifetimePolicy {
            max_lifetime: Some(lifetime),
            ..self
        }
    }

    /// The same policy, requiring (`true`) or not an expiry on every issue. Without a
    /// maximum lifetime, any expiry in the future is accepted.
    #[must_use]
    pub fn require_expiry(self, required: bool) -> LifetimePolicy {
        LifetimePolicy {
            require_expiry: required,
            ..self
        }
    }

    /// The same policy with tokens expiring once unused for `idle`.
    #[must_use]
    pub fn idle_expiry(self, idle: Duration) -> LifetimePolicy {
        LifetimePolicy {
            idle_expiry: Some(idle),
            ..self
        }
    }

    /// The longest lifetime, if bounded.
    pub fn max_lifetime_limit(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// Whether every token must expire: required, or bounded by a maximum lifetime.
    pub fn requires_expiry(&self) -> bool {
        self.require_expiry || self.max_lifetime.is_some()
    }

    /// How long a token may go unused, if bounded.
    pub fn idle_expiry_limit(&self) -> Option<Duration> {
        self.idle_expiry
    }

    /// Whether the policy holds together with an issuer that records last use at most
    /// once per `last_use_interval` (`None`: never records it). Durations must not be
    /// zero, and an idle expiry must span at least
    /// [`IDLE_EXPIRY_PER_INTERVAL`](Self::IDLE_EXPIRY_PER_INTERVAL) intervals. With no
    /// interval (a read-only tool beside a server that records last use) any idle expiry
    /// is accepted: the issuer judges by what others record.
    pub fn validate(&self, last_use_interval: Option<Duration>) -> Result<(), PolicyError> {
        if self.max_lifetime.is_some_and(|d| d.is_zero()) {
            return Err(PolicyError::ZeroMaxLifetime);
        }
        let Some(idle) = self.idle_expiry else {
            return Ok(());
        };
        if idle.is_zero() {
            return Err(PolicyError::ZeroIdleExpiry);
        }
        if let Some(interval) = last_use_interval
            && idle < interval.saturating_mul(Self::IDLE_EXPIRY_PER_INTERVAL)
        {
            return Err(PolicyError::IdleExpiryTooShort {
                idle_expiry: idle,
                last_use_interval: interval,
            });
        }
        Ok(())
    }

    /// The latest expiry a token created at `now` may have, if bounded.
    pub(crate) fn latest_expiry(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.max_lifetime.map(|d| add(now, d))
    }

    /// When `token` went, or goes, idle: its last use (its creation, when never used) plus
    /// the idle expiry. `None` without an idle expiry.
    pub(crate) fn idle_end(&self, token: &Token) -> Option<DateTime<Utc>> {
        let idle = self.idle_expiry?;
        let since = token
            .last_used_at
            .map_or(token.created_at, |at| at.max(token.created_at));
        Some(add(since, idle))
    }

    /// As [`idle_end`](Self::idle_end), for authentication, which reads no creation
    /// time: a never-used token's creation is read from its id (UUID v7, milliseconds).
    /// An id without a time (not made by this library) counts as created at the Unix
    /// epoch, so that such a token is judged by its last use alone.
    pub(crate) fn idle_end_of(
        &self,
        id: TokenId,
        last_used_at: Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        let idle = self.idle_expiry?;
        let since = last_used_at.unwrap_or_else(|| created_from_id(id));
        Some(add(since, idle))
    }
}

fn created_from_id(id: TokenId) -> DateTime<Utc> {
    id.as_uuid()
        .get_timestamp()
        .and_then(|ts| {
            let (secs, nanos) = ts.to_unix();
            DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
        })
        .unwrap_or(DateTime::UNIX_EPOCH)
}

fn add(at: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A [`LifetimePolicy`] that does not hold together (see [`LifetimePolicy::validate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A maximum lifetime of zero would refuse every token.
    #[error(
        "the maximum lifetime is zero, which refuses every token: give a positive duration, or none for no maximum"
    )]
    ZeroMaxLifetime,
    /// An idle expiry of zero would expire every token at once.
    #[error(
        "the idle expiry is zero, which expires every token at once: give a positive duration, or none for no idle expiry"
    )]
    ZeroIdleExpiry,
    /// The idle expiry is too short for how often last use is recorded.
    #[error(
        "the idle expiry ({idle_expiry:?}) is shorter than {} last-use intervals ({last_use_interval:?} each): last use is recorded at most once per interval, so tokens would go idle too early; lengthen the idle expiry or shorten the last-use interval",
        LifetimePolicy::IDLE_EXPIRY_PER_INTERVAL
    )]
    IdleExpiryTooShort {
        /// The idle expiry.
        idle_expiry: Duration,
        /// How often last use is recorded at most.
        last_use_interval: Duration,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn validation_refuses_zero_and_short_idle_expiries() {
        let ok = LifetimePolicy::default()
            .max_lifetime(MINUTE)
            .idle_expiry(10 * MINUTE);
        assert_eq!(ok.validate(Some(MINUTE)), Ok(()));
        assert_eq!(ok.validate(None), Ok(()));
        assert_eq!(
            LifetimePolicy::default()
                .max_lifetime(Duration::ZERO)
                .validate(None),
            Err(PolicyError::ZeroMaxLifetime)
        );
        assert_eq!(
            LifetimePolicy::default()
                .idle_expiry(Duration::ZERO)
                .validate(None),
            Err(PolicyError::ZeroIdleExpiry)
        );
        let short = LifetimePolicy::default().idle_expiry(10 * MINUTE - Duration::from_secs(1));
        assert!(matches!(
            short.validate(Some(MINUTE)),
            Err(PolicyError::IdleExpiryTooShort { .. })
        ));
        assert!(!LifetimePolicy::default().requires_expiry());
        assert!(
            LifetimePolicy::default()
                .require_expiry(true)
                .requires_expiry()
        );
    }

    #[test]
    fn creation_is_read_from_a_v7_id_to_the_millisecond() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default();
        let id = TokenId::generate(at, &mut rand::rng());
        let ms = DateTime::from_timestamp_micros(1_700_000_000_123_000).unwrap_or_default();
        assert_eq!(created_from_id(id), ms);
        assert_eq!(
            created_from_id(TokenId::from_uuid(uuid::Uuid::nil())),
            DateTime::UNIX_EPOCH
        );
    }
}
