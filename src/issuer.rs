//! [`TokenIssuer`]: issue, authenticate, authorize, list, revoke and rotate tokens.

mod gate;
mod leaked;

pub use leaked::LeakOutcome;

use crate::cidr::AllowedCidrs;
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::event::Actor;
use crate::format::TokenFormat;
use crate::hash::{Candidates, HashKey, HashKeyring, KeyFingerprint, TokenHash, TokenHasher};
use crate::model::{
    Creator, Credential, EnvironmentId, IssueRequest, IssuedToken, StoredToken, Token, TokenId,
};
use crate::observe;
use crate::policy::{LifetimePolicy, PolicyError};
use crate::principal::Principal;
use crate::scope::{Scope, ScopeCatalog};
use crate::secret::RawToken;
use crate::store::{
    KeyUsage, Limits, Page, PageRequest, Rehash, Retired, Revoked, Rotation, StoreError, TokenStore,
};
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use core::fmt;
use core::num::NonZeroU32;
use core::time::Duration;
use rand_core::CryptoRng;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tracing::Instrument as _;

/// Who asks: a person, or an authenticated token.
///
/// Authority follows from who created the caller. A person (an operator, a dashboard
/// user) and a token a person created act on their whole environment, within the token's
/// scopes, which the application checks per route. A token created by a token (a
/// *delegated* token, [`Principal::is_delegated`]) acts only on itself and the tokens
/// it created, directly or not: delegation narrows authority, so such a token can never
/// revoke, rotate or read its creator, its siblings or anything else in the environment.
/// The issuer checks this on [`get`](TokenIssuer::get), [`revoke`](TokenIssuer::revoke)
/// and [`rotate`](TokenIssuer::rotate) ([`Error::OutsideDelegation`]), so every front end
/// inherits it.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A person (an operator, a dashboard user): any scope in the catalog may be granted,
    /// and any token of the environment acted on.
    User(Arc<Creator>),
    /// An authenticated token. A token it issues is created for the same person, in the
    /// same environment, with scopes that must be among the caller's.
    Token(Principal),
}

impl Caller {
    fn creator(&self) -> &Arc<Creator> {
        match self {
            Caller::User(creator) => creator,
            Caller::Token(principal) => principal.created_by(),
        }
    }

    /// Who acts, as the event log records it.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::User(creator) => Actor::User(creator.id),
            Caller::Token(principal) => Actor::Token(principal.token_id()),
        }
    }

    /// The calling token, when a token delegates.
    fn token(&self) -> Option<&Principal> {
        match self {
            Caller::User(_) => None,
            Caller::Token(principal) => Some(principal),
        }
    }
}

impl From<Creator> for Caller {
    fn from(creator: Creator) -> Self {
        Caller::User(Arc::new(creator))
    }
}

impl From<Arc<Creator>> for Caller {
    fn from(creator: Arc<Creator>) -> Self {
        Caller::User(creator)
    }
}

impl From<Principal> for Caller {
    fn from(principal: Principal) -> Self {
        Caller::Token(principal)
    }
}

impl From<&Principal> for Caller {
    fn from(principal: &Principal) -> Self {
        Caller::Token(principal.clone())
    }
}

enum RngSource {
    /// A thread-local ChaCha12 generator seeded, and reseeded every 64 KiB, from the
    /// operating system: no system call per token.
    Thread,
    Custom(Mutex<Box<dyn CryptoRng + Send>>),
}

/// Issues and verifies tokens, keeping their records in a [`TokenStore`].
///
/// Share one per process (`Arc<TokenIssuer<_>>`); every method takes `&self`.
///
/// ```
/// use apitoken::{Creator, EnvironmentId, IssueRequest, MemoryStore, Note, Scope, TokenIssuer, UserId};
/// use uuid::Uuid;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let issuer = TokenIssuer::new(MemoryStore::new());
/// let env = EnvironmentId::from_uuid(Uuid::nil());
/// let me = Creator::new(UserId::from_uuid(Uuid::nil()));
/// let request = IssueRequest::new(Note::new("CI deploys")?)
///     .with_scopes([Scope::ENVIRONMENT_API_TOKENS_READ]);
///
/// let issued = issuer.issue(env, me, request).await?;
/// let secret = issued.raw.expose_secret(); // show this once
///
/// let who = issuer
///     .authorize(secret, env, &[Scope::ENVIRONMENT_API_TOKENS_READ])
///     .await?;
/// assert_eq!(who.token_id(), issued.token.id);
///
/// issuer.revoke(env, who, issued.token.id).await?; // the token revokes itself
/// assert!(issuer.authenticate(secret).await.unwrap_err().is_unauthenticated());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct TokenIssuer<S> {
    store: S,
    format: TokenFormat,
    keyring: HashKeyring,
    catalog: ScopeCatalog,
    clock: Arc<dyn Clock>,
    rng: RngSource,
    limits: Limits,
    last_use_interval: Option<TimeDelta>,
    rehash_on_use: bool,
    lists: gate::Gate,
    event_retention: TimeDelta,
    leak_retention: TimeDelta,
    /// Every environment's lifetime policy but those in `lifetimes`.
    lifetime: LifetimePolicy,
    /// Per-environment lifetime policies, replacing `lifetime` for theirs.
    lifetimes: HashMap<EnvironmentId, LifetimePolicy>,
    /// Whether any policy has an idle expiry: authentication reads no policy otherwise.
    idle_expiry: bool,
}

impl<S: fmt::Debug> fmt::Debug for TokenIssuer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("store", &self.store)
            .field("format", &self.format)
            .field("keyring", &self.keyring)
            .field("catalog", &self.catalog)
            .field("clock", &self.clock)
            .field("limits", &self.limits)
            .field("lists_per_environment", &self.lists.per_environment())
            .field("last_use_interval", &self.last_use_interval)
            .field("rehash_on_use", &self.rehash_on_use)
            .field("lifetime", &self.lifetime)
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

/// Configures a [`TokenIssuer`]; every setting has a sensible default.
pub struct TokenIssuerBuilder<S> {
    issuer: TokenIssuer<S>,
}

impl<S: TokenStore> TokenIssuerBuilder<S> {
    /// The token format (default [`TokenFormat::dynamic`]).
    pub fn format(mut self, format: TokenFormat) -> Self {
        self.issuer.format = format;
        self
    }

    /// Keys the at-rest hash with a server secret (default: unkeyed, derive-key mode): a
    /// keyring of this one key. Changing it later makes every stored token unknown; to
    /// replace a key, keep the old one in a [`keyring`](Self::keyring) as a retired key.
    pub fn hash_key(mut self, key: HashKey) -> Self {
        self.issuer.keyring = HashKeyring::new(TokenHasher::keyed(key));
        self
    }

    /// The hash keys (default: unkeyed alone): new tokens are hashed with the current key,
    /// and tokens hashed with a retired key still authenticate, in the same one store
    /// look-up, and are rehashed to the current key when used (at most once per
    /// [last-use interval](Self::last_use_interval) while the store refuses). A ring of
    /// one key is exactly [`hash_key`](Self::hash_key), or the unkeyed default.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use apitoken::{HashKey, HashKeyring, MemoryStore, TokenHasher, TokenIssuer};
    ///
    /// let new = HashKey::from_hex(&"cd".repeat(32))?;
    /// let ring = HashKeyring::new(TokenHasher::keyed(new))
    ///     .with_retired(TokenHasher::unkeyed(), None)?;
    /// let issuer = TokenIssuer::builder(MemoryStore::new()).keyring(ring).prepare().await?;
    /// assert_eq!(issuer.keyring().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn keyring(mut self, keyring: HashKeyring) -> Self {
        self.issuer.keyring = keyring;
        self
    }

    /// The scopes the issuer grants (default: the 14 reference scopes).
    pub fn scope_catalog(mut self, catalog: ScopeCatalog) -> Self {
        self.issuer.catalog = catalog;
        self
    }

    /// Where time comes from (default: the system clock).
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.issuer.clock = Arc::new(clock);
        self
    }

    /// The random generator (default: a thread-local generator seeded from the operating
    /// system). Tests and benchmarks pass a seeded one; it is used under a lock.
    pub fn rng(mut self, rng: impl CryptoRng + Send + 'static) -> Self {
        self.issuer.rng = RngSource::Custom(Mutex::new(Box::new(rng)));
        self
    }

    /// At most `limit` live tokens per environment: a shorthand for setting
    /// [`Limits::max_live`] alone (default: no bound).
    pub fn max_live_tokens_per_environment(mut self, limit: NonZeroU32) -> Self {
        self.issuer.limits.max_live = Some(limit);
        self
    }

    /// The bounds every issue and rotation respects, which the store checks atomically
    /// (default [`Limits::default`]: no bound on live tokens, 100,000 tokens per
    /// environment, delegation 8 deep, 1,000 live tokens per creating token).
    ///
    /// ```
    /// use apitoken::{Limits, MemoryStore, TokenIssuer};
    /// use core::num::NonZeroU32;
    ///
    /// let issuer = TokenIssuer::builder(MemoryStore::new())
    ///     .limits(Limits { max_live: NonZeroU32::new(50), ..Limits::default() })
    ///     .build();
    /// assert_eq!(issuer.limits().max_live, NonZeroU32::new(50));
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.issuer.limits = limits;
        self
    }

    /// At most `n` of [`list`](TokenIssuer::list)'s reads of one environment at once
    /// (default 2; `None`: no bound); more wait their turn. Paging through a large
    /// environment with many clients at once then takes two connections and two cores at
    /// most, whatever the number of clients, and other environments' requests are served
    /// beside them.
    pub fn lists_per_environment(mut self, n: Option<NonZeroU32>) -> Self {
        self.issuer.lists = gate::Gate::new(n);
        self
    }

    /// Records a token's last use at most once per `interval` (default one minute);
    /// `None` never records it. An idle expiry must span at least ten intervals (see
    /// [`LifetimePolicy::validate`]).
    pub fn last_use_interval(mut self, interval: Option<Duration>) -> Self {
        self.issuer.last_use_interval =
            interval.map(|d| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX));
        self
    }

    /// Whether a token found under a retired key of the [`keyring`](Self::keyring) is
    /// rehashed to the current key when it authenticates (default true). Turn it off for
    /// an issuer that must write nothing when it authenticates (a read-only check, as the
    /// CLI's `verify`), with [`last_use_interval`](Self::last_use_interval) `None`.
    pub fn rehash_on_use(mut self, rehash: bool) -> Self {
        self.issuer.rehash_on_use = rehash;
        self
    }

    /// How long [`purge`](TokenIssuer::purge) keeps events in the store's event log
    /// (default 30 days): older ones are deleted, and a reader whose cursor they were
    /// after is told to resynchronise ([`StoreError::EventsPruned`]).
    pub fn event_retention(mut self, retention: Duration) -> Self {
        self.issuer.event_retention = TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX);
        self
    }

    /// How long [`purge`](TokenIssuer::purge) keeps what a reporter said of a leak
    /// (default 30 days, what GitHub's partner agreement allows): the source, URL and
    /// token type of [`LeakDetails`](crate::LeakDetails) in `Leaked` events older than
    /// this are forgotten; the event, its reporter and the revocation stay (for the
    /// [event retention](Self::event_retention)).
    pub fn leak_retention(mut self, retention: Duration) -> Self {
        self.issuer.leak_retention = TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX);
        self
    }

    /// The lifetime policy of every environment that has none of its own (default:
    /// [`LifetimePolicy::default`], no restriction).
    ///
    /// ```
    /// use apitoken::{EnvironmentId, LifetimePolicy, MemoryStore, TokenIssuer};
    /// use std::time::Duration;
    /// use uuid::Uuid;
    ///
    /// const DAY: Duration = Duration::from_secs(86_400);
    /// let strict = EnvironmentId::from_uuid(Uuid::from_u128(1));
    /// let issuer = TokenIssuer::builder(MemoryStore::new())
    ///     .lifetime_policy(LifetimePolicy::default().max_lifetime(90 * DAY))
    ///     .environment_lifetime_policy(strict, LifetimePolicy::default()
    ///         .max_lifetime(7 * DAY)
    ///         .idle_expiry(DAY))
    ///     .try_build()?;
    /// assert_eq!(issuer.lifetime_policy(strict).max_lifetime_limit(), Some(7 * DAY));
    /// let other = EnvironmentId::from_uuid(Uuid::from_u128(2));
    /// assert_eq!(issuer.lifetime_policy(other).max_lifetime_limit(), Some(90 * DAY));
    /// # Ok::<(), apitoken::PolicyError>(())
    /// ```
    pub fn lifetime_policy(mut self, policy: LifetimePolicy) -> Self {
        self.issuer.lifetime = policy;
        self
    }

    /// The lifetime policy of `environment`, replacing the
    /// [default one](Self::lifetime_policy) for it (a tenant's own terms, say). Set as many
    /// as there are environments with terms of their own; the issuer looks one up per
    /// issue, rotation and listing, and per authentication when some policy has an idle
    /// expiry.
    pub fn environment_lifetime_policy(
        mut self,
        environment: EnvironmentId,
        policy: LifetimePolicy,
    ) -> Self {
        self.issuer.lifetimes.insert(environment, policy);
        self
    }

    /// The configured issuer, on a store that is ready as it is: [`MemoryStore`](crate::MemoryStore),
    /// or a database [`prepare`](Self::prepare) has made ready before. Nothing checks the
    /// hash key here; for SQLite and PostgreSQL use [`prepare`](Self::prepare).
    ///
    /// Nor are the lifetime policies checked: [`try_build`](Self::try_build) and
    /// [`prepare`](Self::prepare) refuse one that fails [`LifetimePolicy::validate`]. Here
    /// it applies as given, which refuses more, never less (a zero maximum lifetime
    /// refuses every issue; a short idle expiry ends tokens early).
    pub fn build(mut self) -> TokenIssuer<S> {
        let idle_expiry = self
            .issuer
            .policies()
            .any(|p| p.idle_expiry_limit().is_some());
        self.issuer.idle_expiry = idle_expiry;
        self.issuer
    }

    /// The configured issuer, as [`build`](Self::build) makes it, once every lifetime
    /// policy passes [`LifetimePolicy::validate`] with the configured
    /// [last-use interval](Self::last_use_interval).
    pub fn try_build(self) -> Result<TokenIssuer<S>, PolicyError> {
        let issuer = self.build();
        issuer.validate_policies()?;
        Ok(issuer)
    }

    /// The configured issuer, after making its store ready
    /// ([`TokenStore::prepare_keyring`]): the database's schema is created or upgraded and
    /// bound to this issuer's hash keys, and a database holding tokens hashed with a key
    /// the issuer lacks is refused ([`StoreError::HashKeyMismatch`] for one key,
    /// [`StoreError::KeyringLacksKey`] for a keyring), so that a wrong key cannot make
    /// tokens unknown. Running it at every start is cheap and changes nothing the second
    /// time.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use apitoken::{Error, HashKey, StoreError, SqliteStore, TokenIssuer};
    ///
    /// let path = std::env::temp_dir().join(format!("apitoken-prepare-{}.db", std::process::id()));
    /// let key = HashKey::from_hex(&"ab".repeat(32))?;
    /// let issuer = TokenIssuer::builder(SqliteStore::open(&path).await?)
    ///     .hash_key(key)
    ///     .prepare()
    ///     .await?;
    /// # apitoken::TokenStore::close(issuer.store()).await;
    ///
    /// // Opened again with another key (or none), the database is refused.
    /// let refused = TokenIssuer::builder(SqliteStore::open(&path).await?).prepare().await;
    /// assert!(matches!(refused, Err(Error::Store(StoreError::HashKeyMismatch { .. }))));
    /// # for suffix in ["", "-wal", "-shm"] { let _ = std::fs::remove_file(format!("{}{suffix}", path.display())); }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// Every lifetime policy is checked first, as [`try_build`](Self::try_build) does
    /// ([`Error::InvalidPolicy`]).
    pub async fn prepare(self) -> Result<TokenIssuer<S>, Error> {
        let issuer = self.try_build()?;
        issuer
            .store
            .prepare_keyring(&issuer.keyring.fingerprints())
            .await?;
        Ok(issuer)
    }
}

impl<S: TokenStore> TokenIssuer<S> {
    /// An issuer with every default: Dynamic's format, unkeyed hashing, the reference
    /// scopes, the system clock, the default [`Limits`].
    pub fn new(store: S) -> TokenIssuer<S> {
        TokenIssuer::builder(store).build()
    }

    /// Starts configuring an issuer.
    pub fn builder(store: S) -> TokenIssuerBuilder<S> {
        TokenIssuerBuilder {
            issuer: TokenIssuer {
                store,
                format: TokenFormat::dynamic(),
                keyring: HashKeyring::new(TokenHasher::unkeyed()),
                catalog: ScopeCatalog::reference(),
                clock: Arc::new(SystemClock),
                rng: RngSource::Thread,
                limits: Limits::default(),
                last_use_interval: Some(TimeDelta::minutes(1)),
                rehash_on_use: true,
                lists: gate::Gate::new(NonZeroU32::new(DEFAULT_LISTS_PER_ENVIRONMENT)),
                event_retention: TimeDelta::days(30),
                leak_retention: TimeDelta::days(30),
                lifetime: LifetimePolicy::default(),
                lifetimes: HashMap::new(),
                idle_expiry: false,
            },
        }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The token format.
    pub fn format(&self) -> &TokenFormat {
        &self.format
    }

    /// The hasher of the current key, which hashes new tokens.
    pub fn hasher(&self) -> &TokenHasher {
        self.keyring.current()
    }

    /// The hash keys.
    pub fn keyring(&self) -> &HashKeyring {
        &self.keyring
    }

    /// The scope catalog.
    pub fn scope_catalog(&self) -> &ScopeCatalog {
        &self.catalog
    }

    /// The bounds issues and rotations respect.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The lifetime policy of `environment`: its own, or the default one.
    pub fn lifetime_policy(&self, environment: EnvironmentId) -> &LifetimePolicy {
        if self.lifetimes.is_empty() {
            return &self.lifetime;
        }
        self.lifetimes.get(&environment).unwrap_or(&self.lifetime)
    }

    fn policies(&self) -> impl Iterator<Item = &LifetimePolicy> {
        core::iter::once(&self.lifetime).chain(self.lifetimes.values())
    }

    fn validate_policies(&self) -> Result<(), PolicyError> {
        let interval = self.last_use_interval.and_then(|d| d.to_std().ok());
        self.policies().try_for_each(|p| p.validate(interval))
    }

    /// `token` as an answer shows it at `now` under its environment's lifetime policy:
    /// [`with_idle_expiry`](Self::with_idle_expiry), then [`Token::as_of`] (`active`
    /// false once revoked, expired or idle). Build answers from records with this rather
    /// than [`Token::as_of`] alone.
    #[must_use]
    pub fn as_of(&self, token: Token, now: DateTime<Utc>) -> Token {
        self.with_idle_expiry(token, now).as_of(now)
    }

    /// The record, with `expires_at` brought forward to when the token went idle if its
    /// environment's idle expiry ended it by `now` (a token that is not revoked, unused
    /// since then): an idle token then reads as expired, with the instant it expired,
    /// exactly as authentication refuses it. A token still in use keeps its own
    /// `expires_at`: the idle end moves with every use, so it is not shown.
    #[must_use]
    pub fn with_idle_expiry(&self, mut token: Token, now: DateTime<Utc>) -> Token {
        if token.active
            && let Some(end) = self.lifetime_policy(token.environment).idle_end(&token)
            && end <= now
            && token.expires_at.is_none_or(|at| end < at)
        {
            token.expires_at = Some(end);
        }
        token
    }

    /// Issues a token in `environment` for `caller`.
    ///
    /// Fails with [`Error::InvalidScopes`] (`invalid_scopes`) when a scope is not in the
    /// catalog or, for a token caller, not among its scopes; [`Error::WrongEnvironment`]
    /// when a token caller belongs to another environment; [`Error::InvalidExpiry`] for an
    /// expiry not in the future; [`StoreError::LimitReached`], [`StoreError::EnvironmentFull`]
    /// and [`StoreError::TooManyDelegated`] (`too_many_api_tokens`) and
    /// [`StoreError::DelegationTooDeep`] at the bounds of the issuer's [`Limits`]. Nothing
    /// is stored on failure.
    ///
    /// The environment's [`LifetimePolicy`] bounds the expiry: with a maximum lifetime, an
    /// expiry later than now plus the maximum, or none, fails with
    /// [`Error::InvalidExpiry`] naming the latest allowed instant; where an expiry is
    /// required, none fails the same way.
    ///
    /// A token caller delegates: the new token records it as
    /// [`created_by_token`](Token::created_by_token), expires no later than it (without an
    /// `expires_at`, when it does; a later one fails with [`Error::InvalidExpiry`] naming
    /// the latest allowed instant), is used only from the caller's allowed ranges
    /// ([`Principal::allowed_cidrs`]; without `allowed_cidrs` it takes them, and a range
    /// outside them fails with [`Error::InvalidAllowedCidrs`]), and is revoked with it. A caller revoked in the
    /// meantime fails with [`Error::Revoked`] and nothing is stored, however the two race.
    pub async fn issue(
        &self,
        environment: EnvironmentId,
        caller: impl Into<Caller>,
        request: IssueRequest,
    ) -> Result<IssuedToken, Error> {
        let caller = caller.into();
        // The span is entered where no await is: around the checks, and to make the
        // store call (whose own span it parents). No `Instrumented` layer: see
        // `observe::store_call`.
        let span = tracing::info_span!("apitoken.issue", environment = %environment, caller = %caller.actor());
        let now = self.now();
        let creator_token = caller.token().map(Principal::token_id);
        // A delegated token lives no longer than its creator: without an expiry it takes
        // the creator's.
        let expires_at = request
            .expires_at
            .or_else(|| caller.token().and_then(Principal::expires_at));
        // Nor is it used from more places: without a list it takes the creator's.
        let allowed_cidrs = request
            .allowed_cidrs
            .or_else(|| caller.token().and_then(Principal::allowed_cidrs).cloned());
        let request = IssueRequest {
            expires_at: expires_at.map(whole_micros),
            allowed_cidrs,
            ..request
        };
        if let Err(error) = self.check_request(environment, &caller, &request, now) {
            span.in_scope(|| observe::issue_refused(environment, &error));
            return Err(error);
        }
        let (raw, stored) = self.mint(
            environment,
            caller.creator().clone(),
            request,
            creator_token,
            now,
        );
        let token = stored.token.clone();
        let insert =
            span.in_scope(|| observe::store_call("insert", self.store.insert(stored, self.limits)));
        // Not held across the await (a bigger future costs every issue); the events after
        // it carry the environment themselves.
        drop(span);
        let error = match insert.await {
            Ok(()) => {
                observe::issued(&token);
                return Ok(IssuedToken { raw, token });
            }
            // The creating token was revoked (or expired) after it authenticated.
            Err(StoreError::NotLive { id }) if Some(id) == creator_token => Error::Revoked {
                id,
                revoked_at: None,
            },
            Err(e) => e.into(),
        };
        observe::issue_refused(environment, &error);
        Err(error)
    }

    fn check_request(
        &self,
        environment: EnvironmentId,
        caller: &Caller,
        request: &IssueRequest,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        if let Caller::Token(principal) = caller {
            principal.authorize(environment, &[])?;
        }
        let unknown: Vec<Scope> = self.catalog.unknown(&request.scopes).cloned().collect();
        let not_held: Vec<Scope> = match caller {
            Caller::Token(principal) => request
                .scopes
                .iter()
                .filter(|s| !principal.scopes().contains(s))
                .cloned()
                .collect(),
            Caller::User(_) => Vec::new(),
        };
        if !unknown.is_empty() || !not_held.is_empty() {
            return Err(Error::InvalidScopes { unknown, not_held });
        }
        let policy = self.lifetime_policy(environment);
        let latest = match (
            caller.token().and_then(Principal::expires_at),
            policy.latest_expiry(now).map(whole_micros),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let refused = match request.expires_at {
            None => policy.requires_expiry(),
            Some(expires_at) => {
                expires_at <= now || latest.is_some_and(|latest| expires_at > latest)
            }
        };
        if refused {
            return Err(Error::InvalidExpiry {
                expires_at: request.expires_at,
                now,
                latest,
            });
        }
        if let (Some(allowed), Some(asked)) = (
            caller.token().and_then(Principal::allowed_cidrs),
            &request.allowed_cidrs,
        ) {
            let not_covered = allowed.not_covered(asked);
            if !not_covered.is_empty() {
                return Err(Error::InvalidAllowedCidrs {
                    not_covered,
                    allowed: allowed.clone(),
                });
            }
        }
        Ok(())
    }

    fn mint(
        &self,
        environment: EnvironmentId,
        created_by: Arc<Creator>,
        request: IssueRequest,
        created_by_token: Option<TokenId>,
        now: DateTime<Utc>,
    ) -> (RawToken, StoredToken) {
        let (raw, id) = self.with_rng(|rng| {
            let raw = self.format.generate(rng);
            (raw, TokenId::generate(now, rng))
        });
        let hasher = self.keyring.current();
        let (hash, hash_key) = (hasher.hash_token(&raw), hasher.fingerprint());
        let token = Token::new(
            id,
            environment,
            raw.checksum(),
            created_by,
            now,
            request,
            created_by_token,
        );
        (
            raw,
            StoredToken {
                token,
                hash,
                hash_key,
            },
        )
    }

    fn with_rng<T>(&self, f: impl FnOnce(&mut dyn CryptoRng) -> T) -> T {
        match &self.rng {
            RngSource::Thread => f(&mut rand::rng()),
            RngSource::Custom(rng) => {
                let mut rng = rng.lock().unwrap_or_else(PoisonError::into_inner);
                f(&mut **rng)
            }
        }
    }

    /// The issuer's current time (its [`Clock`]), at the microsecond precision every
    /// store keeps: the instant to judge a record by, e.g. with [`Token::as_of`].
    pub fn now(&self) -> DateTime<Utc> {
        whole_micros(self.clock.now())
    }

    /// Authenticates a raw token, exactly as presented (for an `Authorization` header
    /// value, see [`authenticate_header`](Self::authenticate_header)), without the
    /// client's address: for a caller that has none (a job, a test). A token with
    /// allowed ranges then fails closed, with [`Error::IpNotAllowed`]; wherever there is a
    /// client, use [`authenticate_from`](Self::authenticate_from).
    ///
    /// Malformed input is rejected before any hashing or store access. The error tells
    /// malformed, unknown, revoked and expired apart for logs; all four map to the same
    /// 401 answer ([`http::status`](crate::http::status), [`http::public_message`](crate::http::public_message)). Last use is recorded at
    /// most once per configured interval; a failure to record it does not fail
    /// authentication.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, Error> {
        self.authenticate_client(token, None).await
    }

    /// Authenticates a raw token as [`authenticate`](Self::authenticate) does, presented
    /// by a client at `client` (the peer of the connection, or the address a trusted proxy
    /// reports: the library never reads one itself). A token with allowed ranges
    /// ([`Token::allowed_cidrs`]) is refused from an address outside them with
    /// [`Error::IpNotAllowed`] (403 `ip_not_allowed`: the token was right, the place was
    /// not), after the checks that make a token invalid (an expired token from anywhere is
    /// a 401). An IPv4-mapped IPv6 address (`::ffff:192.0.2.7`) counts as the IPv4 address.
    /// The address is recorded with the last use ([`Token::last_used_ip`]). For a token
    /// without ranges the check costs a branch, and nothing is allocated.
    ///
    /// ```
    /// use apitoken::{AllowedCidrs, Creator, EnvironmentId, Error, IssueRequest, MemoryStore, Note, TokenIssuer, UserId};
    /// use std::net::IpAddr;
    /// use uuid::Uuid;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let issuer = TokenIssuer::new(MemoryStore::new());
    /// let env = EnvironmentId::from_uuid(Uuid::nil());
    /// let me = Creator::new(UserId::from_uuid(Uuid::nil()));
    /// let request = IssueRequest::new(Note::new("office only")?)
    ///     .allowed_from(AllowedCidrs::parse("10.0.0.0/8, 2001:db8::/32")?);
    /// let issued = issuer.issue(env, me, request).await?;
    /// let secret = issued.raw.expose_secret();
    ///
    /// let office: IpAddr = "10.1.2.3".parse()?;
    /// assert!(issuer.authenticate_from(secret, office).await.is_ok());
    /// let cafe: IpAddr = "192.0.2.1".parse()?;
    /// let refused = issuer.authenticate_from(secret, cafe).await.unwrap_err();
    /// assert!(matches!(refused, Error::IpNotAllowed { .. }));
    /// assert_eq!(apitoken::http::status(&refused), 403);
    /// // Without an address, a token with ranges fails closed.
    /// assert!(matches!(issuer.authenticate(secret).await, Err(Error::IpNotAllowed { client: None, .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn authenticate_from(&self, token: &str, client: IpAddr) -> Result<Principal, Error> {
        self.authenticate_client(token, Some(client)).await
    }

    pub(crate) async fn authenticate_client(
        &self,
        token: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, Error> {
        // Each answer is logged and counted where it is returned, before it is built, in
        // one state machine: wrapping the body in a future of its own (`Instrumented`)
        // cost 310 instructions per call in memory copies (callgrind,
        // `benches/instructions.rs`), 17 % of a cache hit, and building the answer
        // before logging it cost 30 to 60 more. So `apitoken.authenticate` is a span
        // around the store calls only, the parent of their `apitoken.store` spans (made
        // when `debug` is on, see `observe::store_call`), and an answer from memory is
        // one event.
        //
        // Parsed inline (a helper function returning both measured slower on the reject
        // path); only the hash and the checksum are used past this point.
        let parsed = match self.format.parse(token) {
            Ok(parsed) => parsed,
            Err(e) => {
                observe::refused("malformed", None);
                return Err(e.into());
            }
        };
        // A keyring finds the token under any of its keys, one hash each, in one look-up:
        // apart, so that a single key's path stays as it was.
        if self.keyring.len() > 1 {
            return Box::pin(self.authenticate_in_ring(
                parsed.expose_secret(),
                parsed.checksum(),
                client,
            ))
            .await;
        }
        let (hash, checksum) = (
            self.keyring.current().hash(parsed.expose_secret()),
            parsed.checksum(),
        );
        // In-memory stores and cache hits answer at once, without a boxed future.
        let found = match self.store.find_credential_now(&hash) {
            Some(found) => found,
            None => match self.find_credential_observed(&hash).await {
                Ok(found) => found,
                Err(e) => {
                    observe::refused("store_error", None);
                    return Err(e.into());
                }
            },
        };
        // (`ok_or_else` and `?`: a `let … else` here made the future 96 bytes bigger.)
        let token = found.ok_or_else(|| {
            observe::refused("unknown", None);
            Error::Unknown { checksum }
        })?;
        not_revoked(&token)?;
        // The clock is read only when an answer depends on it: it costs as much as the
        // format check (about 40 ns on a VM).
        if token.expires_at.is_none() && self.last_use_interval.is_none() && !self.idle_expiry {
            check_place(&token, client)?;
            observe::accepted(token.id, token.environment);
            return Ok(Principal::from_credential(token));
        }
        let now = self.now();
        self.admit_at(&token, now, client)?;
        if let Some(interval) = self.last_use_interval
            && token
                .last_used_at
                .is_none_or(|last| now.signed_duration_since(last) >= interval)
        {
            // Bookkeeping only: the token is valid whether or not this write succeeds.
            let from = client.map(|ip| ip.to_canonical());
            let recorded = self.record_last_use_observed(token.id, now, from).await;
            observe::last_use_recorded(token.id, recorded);
        }
        observe::accepted(token.id, token.environment);
        Ok(Principal::from_credential(token))
    }

    /// [`authenticate`](Self::authenticate) of a well-formed token under a keyring: the
    /// token's hash under every key (current first) looked up in one store call, then the
    /// same checks, and a token found under a retired key rehashed to the current key
    /// (at most once per last-use interval, like the last use: see [`TokenStore::rehash`]).
    async fn authenticate_in_ring(
        &self,
        token: &str,
        checksum: crate::format::Checksum,
        client: Option<IpAddr>,
    ) -> Result<Principal, Error> {
        let now = self.now();
        let dated = self.keyring.has_end_dates().then_some(now);
        let candidates = self.keyring.candidates(token.as_bytes(), dated);
        let found = match self.store.find_credential_any_now(&candidates) {
            Some(found) => found,
            None => match self.find_any_observed(&candidates).await {
                Ok(found) => found.map(|(i, token)| (i, Credential::from(token))),
                Err(e) => {
                    observe::refused("store_error", None);
                    return Err(e.into());
                }
            },
        };
        let (index, token) = found.ok_or_else(|| {
            observe::refused("unknown", None);
            Error::Unknown { checksum }
        })?;
        not_revoked(&token)?;
        self.admit_at(&token, now, client)?;
        // Throttled as the last use is: a token whose last use was recorded less than an
        // interval ago (one minute when last use is not recorded) is not rehashed again.
        let interval = self.last_use_interval.unwrap_or(TimeDelta::minutes(1));
        let due = token
            .last_used_at
            .is_none_or(|last| now.signed_duration_since(last) >= interval);
        if due
            && index > 0
            && self.rehash_on_use
            && let (Some(&from), Some(&to), Some(from_key)) = (
                candidates.get(index),
                candidates.first(),
                candidates.key(index),
            )
        {
            let to_key = self.keyring.current().fingerprint();
            let rehash = Rehash {
                id: token.id,
                environment: token.environment,
                from,
                to,
                key: to_key,
                at: now,
            };
            let outcome = observe::store_call("rehash", self.store.rehash(&rehash)).await;
            observe::rehashed(token.id, from_key, to_key, outcome);
        }
        if due && self.last_use_interval.is_some() {
            let from = client.map(|ip| ip.to_canonical());
            let recorded = self.record_last_use_observed(token.id, now, from).await;
            observe::last_use_recorded(token.id, recorded);
        }
        observe::accepted(token.id, token.environment);
        Ok(Principal::from_credential(token))
    }

    /// What a token found and not revoked must pass at `now`, from `client`: its expiry,
    /// the idle expiry of its environment's policy (judged from the recorded last use,
    /// nothing written) and its allowed ranges.
    #[inline]
    fn admit_at(
        &self,
        token: &Credential,
        now: DateTime<Utc>,
        client: Option<IpAddr>,
    ) -> Result<(), Error> {
        if let Some(expired_at) = token.expires_at
            && expired_at <= now
        {
            observe::refused("expired", Some(token.id));
            return Err(Error::Expired {
                id: token.id,
                expired_at,
            });
        }
        // Idle: judged from the recorded last use, and nothing written.
        if self.idle_expiry
            && let Some(idle_end) = self
                .lifetime_policy(token.environment)
                .idle_end_of(token.id, token.last_used_at)
            && idle_end <= now
        {
            observe::refused("expired", Some(token.id));
            return Err(Error::Expired {
                id: token.id,
                expired_at: idle_end,
            });
        }
        check_place(token, client)
    }

    /// The store's keyring look-up, its span the child of an `apitoken.authenticate` span.
    fn find_any_observed<'a>(
        &'a self,
        candidates: &'a Candidates,
    ) -> observe::BoxFuture<'a, Result<Option<(usize, Token)>, StoreError>> {
        tracing::debug_span!("apitoken.authenticate").in_scope(|| {
            observe::store_call("find_by_any_hash", self.store.find_by_any_hash(candidates))
        })
    }

    /// The live tokens each hash key hashed (see [`TokenStore::hash_key_usage`]): the
    /// keyring's keys first, current first, each once (with zero counts when the store
    /// holds none of its tokens), then any other key the store records.
    pub async fn hash_key_usage(&self) -> Result<Vec<KeyUsage>, Error> {
        let now = self.now();
        let mut recorded =
            observe::store_call("hash_key_usage", self.store.hash_key_usage(now)).await?;
        let ring = self.keyring.fingerprints();
        let mut usage = Vec::with_capacity(recorded.len() + ring.retired().len() + 1);
        for key in core::iter::once(ring.current()).chain(ring.retired().iter().copied()) {
            let position = recorded.iter().position(|u| u.key == key);
            usage.push(match position {
                Some(i) => recorded.swap_remove(i),
                None => KeyUsage {
                    key,
                    live: 0,
                    never_expiring: 0,
                    latest_expiry: None,
                },
            });
        }
        recorded.sort_by_key(|u| u.key.to_string());
        usage.extend(recorded);
        Ok(usage)
    }

    /// Retires the hash key `key` for good (see [`TokenStore::retire_hash_key`]): refused
    /// for the current key ([`StoreError::CurrentHashKey`]) and while tokens it hashed are
    /// live ([`StoreError::HashKeyInUse`]), unless `revoke_remaining` names who revokes
    /// them, in which case they are revoked first, each with a
    /// [`KeyRetired`](crate::EventKind::KeyRetired) event. Then drop the key from the
    /// keyring's configuration: [`prepare`](TokenIssuerBuilder::prepare) no longer asks
    /// for it.
    pub async fn retire_hash_key(
        &self,
        key: KeyFingerprint,
        revoke_remaining: Option<Caller>,
    ) -> Result<Retired, Error> {
        if key == self.keyring.current().fingerprint() {
            return Err(StoreError::CurrentHashKey { key }.into());
        }
        let now = self.now();
        let by = revoke_remaining.as_ref().map(Caller::actor);
        let retired =
            observe::store_call("retire_hash_key", self.store.retire_hash_key(key, now, by))
                .await?;
        observe::count_changes("key_retired", retired.revoked.len() as u64);
        tracing::info!(key = %key, revoked = retired.revoked.len(), "hash key retired");
        Ok(retired)
    }

    /// The store's look-up for [`authenticate`](Self::authenticate), its span the child
    /// of an `apitoken.authenticate` span.
    fn find_credential_observed<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> observe::BoxFuture<'a, Result<Option<Credential>, StoreError>> {
        tracing::debug_span!("apitoken.authenticate")
            .in_scope(|| observe::store_call("find_credential", self.store.find_credential(hash)))
    }

    /// The store's last-use write for [`authenticate`](Self::authenticate), the same way.
    fn record_last_use_observed(
        &self,
        id: TokenId,
        at: DateTime<Utc>,
        from: Option<IpAddr>,
    ) -> observe::BoxFuture<'_, Result<(), StoreError>> {
        tracing::debug_span!("apitoken.authenticate", token_id = %id).in_scope(|| {
            observe::store_call("record_last_use", self.store.record_last_use(id, at, from))
        })
    }

    /// Authenticates the token of an `Authorization` header value, `Bearer <token>` (see
    /// [`bearer_token`]); a value without the scheme is malformed. Without the client's
    /// address, as [`authenticate`](Self::authenticate) is.
    pub async fn authenticate_header(&self, value: &str) -> Result<Principal, Error> {
        self.authenticate(bearer_token(value).unwrap_or_default())
            .await
    }

    /// Authenticates the token of an `Authorization` header value as
    /// [`authenticate_header`](Self::authenticate_header) does, presented from `client`
    /// (see [`authenticate_from`](Self::authenticate_from)).
    pub async fn authenticate_header_from(
        &self,
        value: &str,
        client: IpAddr,
    ) -> Result<Principal, Error> {
        self.authenticate_from(bearer_token(value).unwrap_or_default(), client)
            .await
    }

    /// Authenticates a raw token as [`authenticate`](Self::authenticate) does, then checks
    /// that it belongs to `environment` and holds every scope in `required`
    /// ([`Error::WrongEnvironment`], [`Error::MissingScope`]: 403).
    pub async fn authorize(
        &self,
        token: &str,
        environment: EnvironmentId,
        required: &[Scope],
    ) -> Result<Principal, Error> {
        let principal = self.authenticate(token).await?;
        principal.authorize(environment, required)?;
        Ok(principal)
    }

    /// Authenticates a raw token presented from `client` as
    /// [`authenticate_from`](Self::authenticate_from) does, then checks the environment
    /// and the scopes as [`authorize`](Self::authorize) does.
    pub async fn authorize_from(
        &self,
        token: &str,
        client: IpAddr,
        environment: EnvironmentId,
        required: &[Scope],
    ) -> Result<Principal, Error> {
        let principal = self.authenticate_from(token, client).await?;
        principal.authorize(environment, required)?;
        Ok(principal)
    }

    /// The token `id` of `environment`, for `caller` (see [`Caller`]: a delegated token
    /// reads only itself and its descendants).
    pub async fn get(
        &self,
        environment: EnvironmentId,
        caller: impl Into<Caller>,
        id: TokenId,
    ) -> Result<Token, Error> {
        self.check_authority(environment, &caller.into(), id)
            .await?;
        tracing::debug!(token_id = %id, environment = %environment, "token read");
        observe::store_call("get", self.store.get(environment, id))
            .await?
            .ok_or(Error::Store(StoreError::NotFound { environment, id }))
    }

    /// Whether `caller` may act on token `id` of `environment`: a token of the
    /// environment, and for a delegated token, itself or a descendant. Checked before
    /// the token is looked up, so that an id outside a delegated token's reach is
    /// refused whether or not it exists.
    async fn check_authority(
        &self,
        environment: EnvironmentId,
        caller: &Caller,
        id: TokenId,
    ) -> Result<(), Error> {
        let Caller::Token(principal) = caller else {
            return Ok(());
        };
        principal.authorize(environment, &[])?;
        let caller_id = principal.token_id();
        if !principal.is_delegated() || caller_id == id {
            return Ok(());
        }
        if observe::store_call(
            "descends_from",
            self.store.descends_from(environment, id, caller_id),
        )
        .await?
        {
            Ok(())
        } else {
            tracing::debug!(caller = %caller_id, token_id = %id, environment = %environment, "outside the caller's delegation");
            Err(Error::OutsideDelegation {
                caller: caller_id,
                id,
            })
        }
    }

    /// A page of `environment`'s tokens in creation order (never raw tokens), filtered as
    /// `page` says. At most two pages of one environment are read at once (see
    /// [`TokenIssuerBuilder::lists_per_environment`]); more wait their turn.
    ///
    /// A live-only page ([`PageRequest::live_at`]) also leaves out the tokens the
    /// environment's idle expiry has ended ([`PageRequest::used_after`]). The records are
    /// as stored: see [`as_of`](Self::as_of) for an answer.
    pub async fn list(
        &self,
        environment: EnvironmentId,
        mut page: PageRequest,
    ) -> Result<Page, Error> {
        if let (Some(at), Some(idle)) = (
            page.live_at,
            self.lifetime_policy(environment).idle_expiry_limit(),
        ) {
            let after = TimeDelta::from_std(idle)
                .ok()
                .and_then(|idle| at.checked_sub_signed(idle))
                .unwrap_or(DateTime::<Utc>::MIN_UTC);
            page.used_after = Some(page.used_after.map_or(after, |given| given.max(after)));
        }
        let _turn = self.lists.enter(environment).await;
        let page = observe::store_call("list", self.store.list(environment, page)).await?;
        tracing::debug!(environment = %environment, tokens = page.tokens.len(), "page listed");
        Ok(page)
    }

    /// Up to `max` of `environment`'s tokens in creation order, read [`list`](Self::list)
    /// page by page, each of at most `page_size` tokens (clamped as
    /// [`PageRequest::first`] does). The records are as stored: see
    /// [`as_of`](Self::as_of) for an answer.
    pub async fn list_all(
        &self,
        environment: EnvironmentId,
        max: usize,
        page_size: u32,
    ) -> Result<Vec<Token>, Error> {
        let mut tokens = Vec::new();
        let mut after = None;
        while tokens.len() < max {
            let remaining = u32::try_from(max - tokens.len()).unwrap_or(u32::MAX);
            let mut request = PageRequest::first(page_size.min(remaining));
            request.after = after;
            let page = self.list(environment, request).await?;
            tokens.extend(page.tokens);
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(tokens)
    }

    /// Revokes a token for `caller` (see [`Caller`]): from when this returns, it never
    /// authenticates again, nor does any token it created, directly or not, nor any of its
    /// rotated predecessors still in their grace period ([`Revoked::cascade`] names them).
    /// Revoking a revoked token succeeds and changes nothing.
    pub async fn revoke(
        &self,
        environment: EnvironmentId,
        caller: impl Into<Caller>,
        id: TokenId,
    ) -> Result<Revoked, Error> {
        let caller = caller.into();
        let actor = caller.actor();
        let span = tracing::info_span!("apitoken.revoke", token_id = %id, environment = %environment, caller = %actor);
        async {
            self.check_authority(environment, &caller, id).await?;
            let now = self.now();
            let revoked =
                observe::store_call("revoke", self.store.revoke(environment, id, now, actor))
                    .await?;
            if revoked.token.revoked_at == Some(now) {
                observe::count_changes("revoked", 1 + revoked.cascade.len() as u64);
                tracing::info!(
                    token_id = %id,
                    environment = %environment,
                    cascade = revoked.cascade.len(),
                    "token revoked"
                );
            } else {
                tracing::debug!(token_id = %id, environment = %environment, "token was revoked already");
            }
            Ok(revoked)
        }
        .instrument(span)
        .await
    }

    /// Deletes the tokens that ended (were revoked, or expired) more than `older_than`
    /// ago, in short batches, and says how many and before when. Live tokens are never
    /// deleted, nor a token that created one not revoked (it goes once that one has). A
    /// deleted token authenticates as unknown: the same 401 as a revoked one. Then deletes
    /// the events older than the [event retention](TokenIssuerBuilder::event_retention)
    /// from the store's log, and forgets what reporters said of leaks older than the
    /// [leak retention](TokenIssuerBuilder::leak_retention).
    pub async fn purge(&self, older_than: Duration) -> Result<Purged, Error> {
        /// Each batch is one short transaction.
        const BATCH: u32 = 1_000;
        let older_than = TimeDelta::from_std(older_than).unwrap_or(TimeDelta::MAX);
        let ended_before = whole_micros(
            self.now()
                .checked_sub_signed(older_than)
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        );
        let mut tokens = 0_u64;
        // A batch that deleted tokens may have freed their creators: go on until none is
        // left.
        loop {
            match observe::store_call("purge", self.store.purge(ended_before, BATCH)).await? {
                0 => break,
                n => tokens += u64::from(n),
            }
        }
        let events_before = self
            .now()
            .checked_sub_signed(self.event_retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut events = 0_u64;
        loop {
            match observe::store_call(
                "prune_events",
                self.store.prune_events(events_before, BATCH),
            )
            .await?
            {
                0 => break,
                n => events += u64::from(n),
            }
        }
        let leaks_before = self
            .now()
            .checked_sub_signed(self.leak_retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut leak_details = 0_u64;
        loop {
            match observe::store_call(
                "forget_leak_details",
                self.store.forget_leak_details(leaks_before, BATCH),
            )
            .await?
            {
                0 => break,
                n => leak_details += u64::from(n),
            }
        }
        observe::count_changes("purged", tokens);
        tracing::info!(
            tokens,
            %ended_before,
            events,
            leak_details,
            "purged"
        );
        Ok(Purged {
            tokens,
            ended_before,
            events,
            leak_details,
        })
    }

    /// Replaces a live token with a new one with the same note, scopes, creator and
    /// lifetime length, for `caller` (see [`Caller`]); the old one keeps working for
    /// `grace`, then fails as expired. Both changes happen in one atomic store step, or
    /// neither does.
    ///
    /// A token is rotated at most once: rotating it again, during its grace period or
    /// after, fails with [`StoreError::AlreadyRotated`] (409), which names the successor to
    /// rotate instead, and changes nothing. A revoked or expired token that was never
    /// rotated fails with [`StoreError::NotLive`] (409). So a token never has two live
    /// successors, and of concurrent rotations of one token exactly one succeeds.
    ///
    /// The environment's [`LifetimePolicy`] bounds the successor as it bounds an issue,
    /// but a rotation is not refused for it where it can comply: with a maximum lifetime,
    /// the successor's expiry is capped at now plus the maximum (a token from before the
    /// policy, or that never expires, gets a successor that does), so rotating is how a
    /// client moves onto the policy. Where an expiry is required without a maximum, a
    /// token that never expires has no compliant successor: rotating it fails with
    /// [`Error::InvalidExpiry`] (`invalid_expires_at`); issue a new token with an expiry.
    pub async fn rotate(
        &self,
        environment: EnvironmentId,
        caller: impl Into<Caller>,
        id: TokenId,
        grace: Duration,
    ) -> Result<IssuedToken, Error> {
        let caller = caller.into();
        let span = tracing::info_span!("apitoken.rotate", token_id = %id, environment = %environment, caller = %caller.actor());
        self.rotate_for(environment, caller, id, grace)
            .instrument(span)
            .await
    }

    async fn rotate_for(
        &self,
        environment: EnvironmentId,
        caller: Caller,
        id: TokenId,
        grace: Duration,
    ) -> Result<IssuedToken, Error> {
        self.check_authority(environment, &caller, id).await?;
        let now = self.now();
        // Whether it is live is the store's to say, in the same step that checks whether
        // it was rotated before: a rotated token past its grace period is refused as
        // rotated, naming its successor, rather than as expired.
        let old = observe::store_call("get", self.store.get(environment, id))
            .await?
            .ok_or(Error::Store(StoreError::NotFound { environment, id }))?;
        let lifetime = old
            .expires_at
            .map(|at| at.signed_duration_since(old.created_at));
        let mut expires_at = lifetime.map(|d| add_saturating(now, d));
        // A delegated token's successor keeps the end it had, which its creator's expiry
        // bounds: rotation replaces the secret, it never extends a delegation. A successor
        // that would be born expired (the predecessor is not live, or was rotated) is the
        // store's to refuse, in the order its checks give.
        if old.created_by_token.is_some()
            && let (Some(new), Some(end)) = (expires_at, old.expires_at)
        {
            expires_at = Some(new.min(end));
        }
        let policy = self.lifetime_policy(environment);
        if let Some(latest) = policy.latest_expiry(now).map(whole_micros) {
            expires_at = Some(expires_at.map_or(latest, |at| at.min(latest)));
        } else if expires_at.is_none() && policy.requires_expiry() {
            return Err(Error::InvalidExpiry {
                expires_at: None,
                now,
                latest: None,
            });
        }
        // The successor keeps the predecessor's ranges: rotation replaces the secret,
        // never where it may be used.
        let request = IssueRequest {
            note: old.note,
            scopes: old.scopes,
            expires_at,
            allowed_cidrs: old.allowed_cidrs,
        };
        let (raw, successor) = self.mint(
            environment,
            old.created_by,
            request,
            old.created_by_token,
            now,
        );
        let token = successor.token.clone();
        let grace = TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
        let predecessor_expires_at = add_saturating(now, grace);
        let rotation = Rotation {
            environment,
            predecessor: id,
            predecessor_expires_at,
            successor,
            limits: self.limits,
            actor: caller.actor(),
        };
        observe::store_call("rotate", self.store.rotate(rotation)).await?;
        observe::count_changes("rotated", 1);
        tracing::info!(
            token_id = %id,
            successor = %token.id,
            environment = %environment,
            %predecessor_expires_at,
            "token rotated"
        );
        Ok(IssuedToken { raw, token })
    }
}

/// What [`TokenIssuer::purge`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Purged {
    /// How many tokens it deleted.
    pub tokens: u64,
    /// The cut-off: it deleted tokens that ended (were revoked, or expired) before this.
    pub ended_before: DateTime<Utc>,
    /// How many events it deleted from the store's log (older than the retention).
    pub events: u64,
    /// Of how many leaks it forgot what the reporter said (older than the
    /// [leak retention](TokenIssuerBuilder::leak_retention)).
    pub leak_details: u64,
}

/// How many of one environment's list reads run at once by default.
const DEFAULT_LISTS_PER_ENVIRONMENT: u32 = 2;

fn add_saturating(at: DateTime<Utc>, by: TimeDelta) -> DateTime<Utc> {
    whole_micros(
        at.checked_add_signed(by)
            .unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
}

/// `at` cut to whole microseconds, the precision every store keeps: every time the issuer
/// hands a store goes through here, so that what `issue` and `rotate` return is exactly
/// what the store gives back later.
fn whole_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    // Setting the fraction directly is cheaper than `trunc_subsecs`, which goes through
    // date arithmetic (this runs on the authentication path).
    let naive = at.naive_utc();
    naive
        .with_nanosecond(naive.nanosecond() / 1_000 * 1_000)
        .map_or(at, |truncated| truncated.and_utc())
}

/// Refuses a revoked token (`Revoked`), logged and counted.
#[inline]
fn not_revoked(token: &Credential) -> Result<(), Error> {
    if !token.active {
        observe::refused("revoked", Some(token.id));
        Err(Error::Revoked {
            id: token.id,
            revoked_at: token.revoked_at,
        })
    } else {
        Ok(())
    }
}

/// Whether the client may use `token` from where it is: always for a token without
/// ranges; for one with ranges, only from an address in one of them. Inline, so that a
/// token without ranges costs one branch.
#[inline(always)]
fn check_place(token: &Credential, client: Option<IpAddr>) -> Result<(), Error> {
    match &token.allowed_cidrs {
        None => Ok(()),
        Some(allowed) => check_ranges(token.id, allowed, client),
    }
}

#[inline(never)]
fn check_ranges(id: TokenId, allowed: &AllowedCidrs, client: Option<IpAddr>) -> Result<(), Error> {
    if client.is_some_and(|ip| allowed.contains(ip)) {
        return Ok(());
    }
    let client = client.map(|ip| ip.to_canonical());
    observe::refused_place(id, client);
    Err(Error::IpNotAllowed { id, client })
}

/// The token of an `Authorization` header value: `Bearer` in any case, then spaces or
/// tabs, then the token; `None` for another scheme or no scheme.
///
/// Surrounding ASCII whitespace is ignored. HTTP's own is spaces and tabs (a header value
/// holds no line breaks); other whitespace, such as a vertical tab or U+00A0, stays
/// and makes the token malformed.
///
/// ```
/// use apitoken::bearer_token;
///
/// assert_eq!(bearer_token("Bearer dyn_x"), Some("dyn_x"));
/// assert_eq!(bearer_token(" bearer \t dyn_x "), Some("dyn_x"));
/// assert_eq!(bearer_token("dyn_x"), None);
/// assert_eq!(bearer_token("Basic dyn_x"), None);
/// ```
pub fn bearer_token(value: &str) -> Option<&str> {
    // ASCII whitespace only: cheaper than Unicode trimming, and a token never contains any.
    let value = value.trim_ascii();
    match (value.get(..6), value.get(6..)) {
        (Some(scheme), Some(rest))
            if scheme.eq_ignore_ascii_case("bearer")
                && rest.starts_with(|c: char| c.is_ascii_whitespace()) =>
        {
            Some(rest.trim_ascii_start())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn bearer_is_stripped_in_any_case_with_any_spacing() {
        for value in [
            "Bearer dyn_x",
            "bearer dyn_x",
            "BEARER \t dyn_x  ",
            " BeArEr dyn_x",
            "Bearer dyn_x\r\n",
        ] {
            assert_eq!(bearer_token(value), Some("dyn_x"), "{value:?}");
        }
        for value in [
            "dyn_x",
            "  dyn_x\n",
            "Bearerdyn_x",
            "Basic dyn_x",
            "Bearer",
            "é",
        ] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer \x0bdyn_x"), Some("\x0bdyn_x"));
    }
}
