//! Events: what changed, in commit order. A store that keeps an event log appends them in
//! the same transaction as the change; [`TokenStore::events_since`] reads the log (the
//! audit trail) and [`TokenStore::watch`] follows it (the change feed a coherent
//! [`CachedStore`](crate::CachedStore) invalidates from).
//!
//! Nothing here is secret: an event names tokens by id, never by hash or raw token.

use crate::clock::{Clock, SystemClock};
use crate::model::{EnvironmentId, Token, TokenId, UserId};
use crate::store::{StoreError, TokenStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use core::fmt;
use core::time::Duration;
use std::collections::VecDeque;
use std::sync::Arc;

/// A position in a store's event log: the sequence number of the last event read, `0`
/// before the first. Sequence numbers grow in commit order, store-wide.
///
/// Its text form is the decimal number, what `apitoken events --after` and the server's
/// `after` parameter take.
///
/// ```
/// use apitoken::EventCursor;
///
/// let cursor: EventCursor = "42".parse().unwrap();
/// assert_eq!(cursor.sequence(), 42);
/// assert_eq!(cursor.to_string(), "42");
/// assert!("-1".parse::<EventCursor>().is_err());
/// assert_eq!(EventCursor::START.sequence(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventCursor(u64);

impl EventCursor {
    /// Before the first event.
    pub const START: EventCursor = EventCursor(0);

    /// The position after the event with this sequence number.
    pub const fn after(sequence: u64) -> EventCursor {
        EventCursor(sequence)
    }

    /// The sequence number of the last event read (0: none).
    pub const fn sequence(self) -> u64 {
        self.0
    }
}

impl fmt::Display for EventCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A text that is not an [`EventCursor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an event cursor: give the sequence number of the last event you read (a whole number, 0 for the start)"
)]
pub struct InvalidEventCursor;

impl core::str::FromStr for EventCursor {
    type Err = InvalidEventCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Digits only: `u64::from_str` would take a leading `+`.
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidEventCursor);
        }
        s.parse().map(EventCursor).map_err(|_| InvalidEventCursor)
    }
}

/// Who made a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Actor {
    /// A person (an operator, a dashboard user).
    User(UserId),
    /// An authenticated token.
    Token(TokenId),
    /// Whoever reported a token leaked: a secret-scanning partner, someone who found it
    /// and used the public revocation endpoint, or an operator's `apitoken scan
    /// --revoke`. The event's [`Event::leak`] says which; there is no id.
    Reporter,
}

impl Actor {
    /// `"user"`, `"token"` or `"reporter"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::Token(_) => "token",
            Actor::Reporter => "reporter",
        }
    }

    /// The user's or the token's id; `None` for a [`Reporter`](Actor::Reporter).
    pub fn id(&self) -> Option<uuid::Uuid> {
        match self {
            Actor::User(user) => Some(*user.as_uuid()),
            Actor::Token(token) => Some(*token.as_uuid()),
            Actor::Reporter => None,
        }
    }

    /// The actor of this kind (`"user"`, `"token"`, `"reporter"`) and id (ignored for a
    /// reporter); `None` for another kind, or a user or token without an id.
    pub fn from_parts(kind: &str, id: Option<uuid::Uuid>) -> Option<Actor> {
        match kind {
            "user" => id.map(|id| Actor::User(UserId::from_uuid(id))),
            "token" => id.map(|id| Actor::Token(TokenId::from_uuid(id))),
            "reporter" => Some(Actor::Reporter),
            _ => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id() {
            Some(id) => write!(f, "{} {id}", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

/// What happened to a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventKind {
    /// It was created (by `insert`, or as a rotation's successor).
    Issued,
    /// It was revoked: by the actor itself (`cause` `None`), or along with the token
    /// `cause` whose revocation took it (a token it descends from, or its successor).
    Revoked {
        /// The token whose revocation revoked this one, if not itself.
        cause: Option<TokenId>,
    },
    /// It was rotated: `successor` replaces it, and its expiry became the end of its
    /// grace period.
    Rotated {
        /// Its replacement.
        successor: TokenId,
    },
    /// It was revoked because it was reported leaked (a secret-scanning partner found it
    /// in public, or someone submitted it for revocation): a revocation, by an
    /// [`Actor::Reporter`], whose [`Event::leak`] says who reported it and where it was
    /// found. What it took with it follows as `Revoked` events caused by it.
    Leaked,
    /// It was revoked because the hash key its hash was made with was retired while it
    /// was still live (`apitoken keys retire --revoke-remaining`,
    /// [`TokenStore::retire_hash_key`](crate::TokenStore::retire_hash_key)). What it took
    /// with it follows as `Revoked` events caused by it.
    KeyRetired,
    /// It was used while its hash was made with a retired key, and its hash was remade with
    /// the current key ([`TokenStore::rehash`](crate::TokenStore::rehash)): nothing else
    /// about it changed. The actor is the token itself.
    Rehashed,
}

impl EventKind {
    /// `"issued"`, `"revoked"`, `"rotated"`, `"leaked"`, `"key_retired"` or
    /// `"rehashed"`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Issued => "issued",
            EventKind::Revoked { .. } => "revoked",
            EventKind::Rotated { .. } => "rotated",
            EventKind::Leaked => "leaked",
            EventKind::KeyRetired => "key_retired",
            EventKind::Rehashed => "rehashed",
        }
    }

    /// Whether the token stopped authenticating for good here: `Revoked`, `Leaked` or
    /// `KeyRetired`.
    pub fn revokes(&self) -> bool {
        matches!(
            self,
            EventKind::Revoked { .. } | EventKind::Leaked | EventKind::KeyRetired
        )
    }

    /// The other token it names: the cause of a revocation, the successor of a rotation.
    pub fn other(&self) -> Option<TokenId> {
        match *self {
            EventKind::Revoked { cause } => cause,
            EventKind::Rotated { successor } => Some(successor),
            EventKind::Issued | EventKind::Leaked | EventKind::KeyRetired | EventKind::Rehashed => {
                None
            }
        }
    }

    /// The kind named `name` (see [`name`](Self::name)) with its other token; `None` for
    /// an unknown name or a rotation without a successor. For stores that keep the name
    /// and the other token in columns.
    pub fn from_parts(name: &str, other: Option<TokenId>) -> Option<EventKind> {
        match name {
            "issued" => Some(EventKind::Issued),
            "revoked" => Some(EventKind::Revoked { cause: other }),
            "rotated" => other.map(|successor| EventKind::Rotated { successor }),
            "leaked" => Some(EventKind::Leaked),
            "key_retired" => Some(EventKind::KeyRetired),
            "rehashed" => Some(EventKind::Rehashed),
            _ => None,
        }
    }
}

/// One change to one token, as the event log keeps it. A change that touches several
/// tokens (a revocation and its cascade, a rotation) writes one event for each, with
/// consecutive sequence numbers, in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Its place in the log: store-wide, growing in commit order.
    pub sequence: u64,
    /// When the change happened (the time the issuer gave the store).
    pub at: DateTime<Utc>,
    /// The token's environment.
    pub environment: EnvironmentId,
    /// The token changed.
    pub token: TokenId,
    /// What happened.
    pub kind: EventKind,
    /// Who did it. For an issued token, its creator (the creating token for a delegated
    /// one); for a cascaded revocation, whoever revoked its cause.
    pub actor: Actor,
    /// For a [`Leaked`](EventKind::Leaked) event, the report; `None` for the others.
    pub leak: Option<LeakDetails>,
}

impl Event {
    /// The position after this event.
    pub fn cursor(&self) -> EventCursor {
        EventCursor(self.sequence)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Event {
    /// One flat JSON object, as the audit trail is printed and served:
    /// `{"sequence", "at", "environmentId", "tokenId", "kind", "actorType", "actorId"}`,
    /// with `"cause"` for a cascaded revocation and `"successor"` for a rotation;
    /// `"actorId"` is `null` for a reporter, and a leak adds `"reporter"` and, until they
    /// are [forgotten](crate::TokenIssuerBuilder::leak_retention), `"leakSource"`,
    /// `"leakUrl"` and `"leakType"`.
    fn serialize<Z: serde::Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("sequence", &self.sequence)?;
        map.serialize_entry(
            "at",
            &self.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        )?;
        map.serialize_entry("environmentId", &self.environment)?;
        map.serialize_entry("tokenId", &self.token)?;
        map.serialize_entry("kind", self.kind.name())?;
        map.serialize_entry("actorType", self.actor.kind())?;
        map.serialize_entry("actorId", &self.actor.id())?;
        match self.kind {
            EventKind::Revoked { cause: Some(cause) } => map.serialize_entry("cause", &cause)?,
            EventKind::Rotated { successor } => map.serialize_entry("successor", &successor)?,
            _ => {}
        }
        if let Some(leak) = &self.leak {
            map.serialize_entry("reporter", leak.reporter.name())?;
            for (name, value) in [
                ("leakSource", &leak.source),
                ("leakUrl", &leak.url),
                ("leakType", &leak.token_type),
            ] {
                if let Some(value) = value {
                    map.serialize_entry(name, value)?;
                }
            }
        }
        map.end()
    }
}

/// Who reported a leak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LeakReporter {
    /// GitHub's secret scanning (its partner program).
    GitHub,
    /// GitLab's secret detection: GitLab.com's partner intake, or a self-managed
    /// instance's token revocation API.
    GitLab,
    /// Someone who found it and submitted it to the public revocation endpoint.
    Public,
    /// An operator, for instance with `apitoken scan --revoke`.
    Operator,
}

impl LeakReporter {
    /// `"github"`, `"gitlab"`, `"public"` or `"operator"`.
    pub fn name(self) -> &'static str {
        match self {
            LeakReporter::GitHub => "github",
            LeakReporter::GitLab => "gitlab",
            LeakReporter::Public => "public",
            LeakReporter::Operator => "operator",
        }
    }

    /// The reporter named `name` (see [`name`](Self::name)).
    pub fn from_name(name: &str) -> Option<LeakReporter> {
        [
            LeakReporter::GitHub,
            LeakReporter::GitLab,
            LeakReporter::Public,
            LeakReporter::Operator,
        ]
        .into_iter()
        .find(|reporter| reporter.name() == name)
    }
}

impl fmt::Display for LeakReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is known of a leak: who reported it and, as the reporter said, where the token
/// was found. Kept with the revocation in the event log ([`Event::leak`]); `source`,
/// `url` and `token_type` are the partner's data, which GitHub's agreement allows to keep
/// for 30 days: [`TokenIssuer::purge`](crate::TokenIssuer::purge) forgets them after the
/// [leak retention](crate::TokenIssuerBuilder::leak_retention) and keeps the reporter.
///
/// Never the token itself. Values are cut (at a character boundary) to
/// [`MAX_SOURCE_LEN`](Self::MAX_SOURCE_LEN) and [`MAX_URL_LEN`](Self::MAX_URL_LEN)
/// bytes; empty ones are `None`.
///
/// ```
/// use apitoken::{LeakDetails, LeakReporter};
///
/// let leak = LeakDetails::new(LeakReporter::GitHub)
///     .with_source("Commit")
///     .with_url("https://github.com/octo/app/blob/1a2b/config.env")
///     .with_token_type("dynamic_environment_api_token");
/// assert_eq!(leak.reporter, LeakReporter::GitHub);
/// assert_eq!(leak.source.as_deref(), Some("Commit"));
/// assert_eq!(LeakDetails::new(LeakReporter::Public).with_url("").url, None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LeakDetails {
    /// Who reported it.
    pub reporter: LeakReporter,
    /// Where the reporter found it, in its words (GitHub's `source`: `Commit`,
    /// `Issue_comment`, …).
    pub source: Option<String>,
    /// Where it was found: the partner's URL, or a file and line.
    pub url: Option<String>,
    /// The reporter's name for the token's type.
    pub token_type: Option<String>,
}

impl LeakDetails {
    /// The longest `source` and `token_type` kept, in bytes.
    pub const MAX_SOURCE_LEN: usize = 256;
    /// The longest `url` kept, in bytes.
    pub const MAX_URL_LEN: usize = 8_192;

    /// A leak reported by `reporter`, with nothing known of where.
    pub fn new(reporter: LeakReporter) -> LeakDetails {
        LeakDetails {
            reporter,
            source: None,
            url: None,
            token_type: None,
        }
    }

    /// Where the reporter found it, in its words.
    pub fn with_source(mut self, source: impl Into<String>) -> LeakDetails {
        self.source = bounded(source.into(), Self::MAX_SOURCE_LEN);
        self
    }

    /// Where it was found: a URL, or a file and line.
    pub fn with_url(mut self, url: impl Into<String>) -> LeakDetails {
        self.url = bounded(url.into(), Self::MAX_URL_LEN);
        self
    }

    /// The reporter's name for the token's type.
    pub fn with_token_type(mut self, token_type: impl Into<String>) -> LeakDetails {
        self.token_type = bounded(token_type.into(), Self::MAX_SOURCE_LEN);
        self
    }

    /// The same, without what the reporter said (what the retention keeps).
    pub fn forgotten(&self) -> LeakDetails {
        LeakDetails::new(self.reporter)
    }

    /// Whether the reporter's data (source, URL, type) is still here.
    pub fn has_reporter_data(&self) -> bool {
        self.source.is_some() || self.url.is_some() || self.token_type.is_some()
    }
}

/// `value` cut to at most `max` bytes at a character boundary; `None` when empty.
fn bounded(mut value: String, max: usize) -> Option<String> {
    if value.len() > max {
        let mut end = max;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value.truncate(end);
    }
    (!value.is_empty()).then_some(value)
}

/// A page of the event log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventPage {
    /// The events, in sequence order.
    pub events: Vec<Event>,
    /// Where the next read starts: after the last event read here (or where this read
    /// started, when it found none).
    pub next: EventCursor,
}

impl EventPage {
    /// The page of `events` (in sequence order) read after `after`.
    pub fn new(events: Vec<Event>, after: EventCursor) -> EventPage {
        let next = events.last().map_or(after, Event::cursor);
        EventPage { events, next }
    }
}

/// The events a change writes, before the store numbers them: one per token in `tokens`,
/// all of one kind, time, environment and actor. What stores pass to their append.
#[derive(Clone, Debug)]
pub(crate) struct EventBatch<'a> {
    pub(crate) at: DateTime<Utc>,
    pub(crate) environment: EnvironmentId,
    pub(crate) kind: EventKind,
    pub(crate) actor: Actor,
    pub(crate) tokens: &'a [TokenId],
    /// The report, for a `Leaked` batch.
    pub(crate) leak: Option<&'a LeakDetails>,
}

impl<'a> EventBatch<'a> {
    fn of(
        at: DateTime<Utc>,
        environment: EnvironmentId,
        actor: Actor,
        kind: EventKind,
        tokens: &'a [TokenId],
    ) -> EventBatch<'a> {
        EventBatch {
            at,
            environment,
            kind,
            actor,
            tokens,
            leak: None,
        }
    }

    /// What inserting `token` writes: its `Issued`, by its creating token when a token
    /// created it, else by the user it was created for.
    pub(crate) fn issue(token: &'a Token) -> EventBatch<'a> {
        let actor = token
            .created_by_token
            .map_or(Actor::User(token.created_by.id), Actor::Token);
        EventBatch {
            at: token.created_at,
            environment: token.environment,
            kind: EventKind::Issued,
            actor,
            tokens: core::slice::from_ref(&token.id),
            leak: None,
        }
    }

    /// What revoking `root` writes: its `Revoked` (`Leaked`, by the reporter, when
    /// `leak` is the report), then its cascade's, caused by it.
    pub(crate) fn revocation(
        at: DateTime<Utc>,
        environment: EnvironmentId,
        by: Revoker<'a>,
        root: &'a TokenId,
        cascade: &'a [TokenId],
    ) -> [EventBatch<'a>; 2] {
        let batch = |kind, tokens| EventBatch::of(at, environment, by.actor(), kind, tokens);
        let first = match by {
            Revoker::Actor(_) => batch(
                EventKind::Revoked { cause: None },
                core::slice::from_ref(root),
            ),
            Revoker::Leak(leak) => EventBatch {
                leak: Some(leak),
                ..batch(EventKind::Leaked, core::slice::from_ref(root))
            },
            Revoker::KeyRetired(_) => batch(EventKind::KeyRetired, core::slice::from_ref(root)),
        };
        [
            first,
            batch(EventKind::Revoked { cause: Some(*root) }, cascade),
        ]
    }

    /// What rehashing token `id` writes: its `Rehashed`, by itself.
    pub(crate) fn rehash(
        at: DateTime<Utc>,
        environment: EnvironmentId,
        id: &'a TokenId,
    ) -> EventBatch<'a> {
        EventBatch::of(
            at,
            environment,
            Actor::Token(*id),
            EventKind::Rehashed,
            core::slice::from_ref(id),
        )
    }

    /// What a rotation writes: the successor's `Issued`, then the predecessor's
    /// `Rotated`.
    pub(crate) fn rotation(
        at: DateTime<Utc>,
        environment: EnvironmentId,
        actor: Actor,
        predecessor: &'a TokenId,
        successor: &'a TokenId,
    ) -> [EventBatch<'a>; 2] {
        let batch = |kind, tokens| EventBatch::of(at, environment, actor, kind, tokens);
        [
            batch(EventKind::Issued, core::slice::from_ref(successor)),
            batch(
                EventKind::Rotated {
                    successor: *successor,
                },
                core::slice::from_ref(predecessor),
            ),
        ]
    }

    /// The events, numbered from `first`.
    pub(crate) fn numbered(&self, first: u64) -> impl Iterator<Item = Event> + '_ {
        self.tokens
            .iter()
            .zip(first..)
            .map(|(&token, sequence)| Event {
                sequence,
                at: self.at,
                environment: self.environment,
                token,
                kind: self.kind,
                actor: self.actor,
                leak: self.leak.cloned(),
            })
    }
}

/// Who revokes, as the stores' revocation takes it: an actor, or a leak report.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Revoker<'a> {
    Actor(Actor),
    Leak(&'a LeakDetails),
    /// The actor retired the hash key that hashed the token.
    KeyRetired(Actor),
}

impl Revoker<'_> {
    /// The actor its events name.
    pub(crate) fn actor(self) -> Actor {
        match self {
            Revoker::Actor(actor) | Revoker::KeyRetired(actor) => actor,
            Revoker::Leak(_) => Actor::Reporter,
        }
    }
}

/// What a [`ChangeFeed`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedMessage {
    /// The next event, in sequence order.
    Event(Event),
    /// Every event committed before `as_of` (by the feed's clock) has been yielded: the
    /// feed is following. A feed says so after every read of the log, at least once per
    /// poll interval while it is in touch with the store.
    CaughtUp {
        /// The time the read began.
        as_of: DateTime<Utc>,
        /// The position after the last event yielded.
        cursor: EventCursor,
    },
    /// The feed lost touch with the store (the connection that carries notifications
    /// broke, or a read of the log failed): until the next `CaughtUp`, events may have
    /// been missed and will arrive late. Nothing is lost: the feed reconnects and reads on
    /// from its cursor.
    Interrupted {
        /// What went wrong.
        reason: String,
    },
    /// The log was pruned past the cursor before these events were read: they are lost.
    /// Drop whatever was derived from the log; the feed goes on from `resumed`.
    Missed {
        /// Where the feed was.
        after: EventCursor,
        /// Where it goes on from: the oldest position the log still holds.
        resumed: EventCursor,
    },
}

impl FeedMessage {
    /// Whether the feed may have missed events here: `Interrupted` or `Missed`.
    pub fn may_have_missed(&self) -> bool {
        matches!(
            self,
            FeedMessage::Interrupted { .. } | FeedMessage::Missed { .. }
        )
    }
}

/// Where a [`ChangeFeed`] reads: a store's log, and a signal that it may have grown. A
/// store implements [`TokenStore::watch`] by handing the feed one of these.
#[async_trait]
pub trait FeedSource: Send + 'static {
    /// Up to `limit` events after `after` (as [`TokenStore::events_since`]).
    async fn read(&mut self, after: EventCursor, limit: u32) -> Result<EventPage, StoreError>;

    /// Returns when the log may have grown: on a notification, or at the latest after
    /// the poll interval. The first call after an error (re)connects whatever carries
    /// notifications, then returns at once, so that the feed reads what it missed. An
    /// error means notifications are lost until the next call.
    async fn wait(&mut self) -> Result<(), StoreError>;
}

/// A [`FeedSource`] that polls: `wait` sleeps for the interval (or until a local write
/// wakes it). What SQLite uses, and a third-party store with a log but no notifications
/// can use.
pub struct PollingSource<S> {
    store: S,
    interval: Duration,
    wake: Option<tokio::sync::watch::Receiver<()>>,
}

impl<S: TokenStore + 'static> PollingSource<S> {
    /// Polls `store`'s log every `interval`.
    pub fn new(store: S, interval: Duration) -> PollingSource<S> {
        PollingSource {
            store,
            interval,
            wake: None,
        }
    }

    /// Also wakes when `wake` changes (the store's own writes, in this process): a
    /// change since the last wait wakes the next one at once, so none is missed.
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "sqlite-unbundled")),
        allow(dead_code)
    )]
    pub(crate) fn waking_on(self, wake: tokio::sync::watch::Receiver<()>) -> PollingSource<S> {
        PollingSource {
            wake: Some(wake),
            ..self
        }
    }
}

#[async_trait]
impl<S: TokenStore + 'static> FeedSource for PollingSource<S> {
    async fn read(&mut self, after: EventCursor, limit: u32) -> Result<EventPage, StoreError> {
        self.store.events_since(None, after, limit).await
    }

    async fn wait(&mut self) -> Result<(), StoreError> {
        match &mut self.wake {
            Some(wake) => {
                let _ = tokio::time::timeout(self.interval, wake.changed()).await;
            }
            None => tokio::time::sleep(self.interval).await,
        }
        Ok(())
    }
}

/// A stream of a store's events from a cursor on, with a signal whenever continuity is
/// not proven ([`FeedMessage::Interrupted`], [`FeedMessage::Missed`]). Pull it with
/// [`next`](Self::next); it reads the log only while pulled, and holds at most one page.
/// It needs a tokio runtime with time enabled.
///
/// The log is the truth: notifications (PostgreSQL's `LISTEN`, a local write) only wake
/// the feed, which then reads the log from its cursor, so a lost notification delays an
/// event by at most the poll interval and never loses it.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use apitoken::{Creator, EventCursor, FeedMessage, IssueRequest, MemoryStore, Note, TokenIssuer, TokenStore, UserId};
/// use std::sync::Arc;
/// use uuid::Uuid;
///
/// let store = Arc::new(MemoryStore::new());
/// let mut feed = store.watch(EventCursor::START)?;
/// let issuer = TokenIssuer::new(store.clone());
/// let me = Creator::new(UserId::from_uuid(Uuid::nil()));
/// let env = apitoken::EnvironmentId::from_uuid(Uuid::nil());
/// let issued = issuer.issue(env, me, IssueRequest::new(Note::new("ci")?)).await?;
/// loop {
///     if let Some(FeedMessage::Event(event)) = feed.next().await {
///         assert_eq!(event.token, issued.token.id);
///         break;
///     }
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct ChangeFeed {
    source: Box<dyn FeedSource>,
    cursor: EventCursor,
    clock: Arc<dyn Clock>,
    pending: VecDeque<FeedMessage>,
    /// Whether the next step waits for the source before reading (after a read that
    /// found the end of the log).
    waiting: bool,
    /// Whether the last step failed (so the next `Interrupted` is not repeated).
    interrupted: bool,
    retry: Duration,
}

impl fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeFeed")
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

/// How many events a feed reads at once.
const FEED_PAGE: u32 = 500;

impl ChangeFeed {
    /// A feed of `source`'s events after `after`.
    pub fn new(source: impl FeedSource, after: EventCursor) -> ChangeFeed {
        ChangeFeed {
            source: Box::new(source),
            cursor: after,
            clock: Arc::new(SystemClock),
            pending: VecDeque::new(),
            waiting: false,
            interrupted: false,
            retry: Duration::from_millis(100),
        }
    }

    /// The clock `CaughtUp` times are read from (default: the system clock). A cache
    /// following the feed compares them with its own clock: give both the same one.
    pub fn clock(self, clock: impl Clock + 'static) -> ChangeFeed {
        ChangeFeed {
            clock: Arc::new(clock),
            ..self
        }
    }

    pub(crate) fn shared_clock(self, clock: Arc<dyn Clock>) -> ChangeFeed {
        ChangeFeed { clock, ..self }
    }

    /// The position after the last event yielded.
    pub fn cursor(&self) -> EventCursor {
        self.cursor
    }

    /// The next message. Never ends (`None` is kept for a source that cannot go on);
    /// errors become `Interrupted`, after which the feed retries, waiting a little longer
    /// each time (up to 5 s).
    pub async fn next(&mut self) -> Option<FeedMessage> {
        loop {
            if let Some(message) = self.pending.pop_front() {
                if let FeedMessage::Event(event) = &message {
                    self.cursor = event.cursor();
                }
                return Some(message);
            }
            if self.waiting {
                if let Err(e) = self.source.wait().await {
                    if let Some(message) = self.interrupt(e).await {
                        return Some(message);
                    }
                    continue;
                }
                self.waiting = false;
            }
            let as_of = self.clock.now();
            match self.source.read(self.cursor, FEED_PAGE).await {
                Ok(page) => {
                    self.interrupted = false;
                    self.retry = Duration::from_millis(100);
                    let full = page.events.len() >= FEED_PAGE as usize;
                    let next = page.next;
                    self.pending
                        .extend(page.events.into_iter().map(FeedMessage::Event));
                    if !full {
                        // Read to the end: everything committed before the read began
                        // is in hand.
                        self.pending.push_back(FeedMessage::CaughtUp {
                            as_of,
                            cursor: next,
                        });
                        self.waiting = true;
                    }
                }
                Err(StoreError::EventsPruned { after, resumed }) => {
                    self.cursor = resumed;
                    return Some(FeedMessage::Missed { after, resumed });
                }
                Err(e) => {
                    if let Some(message) = self.interrupt(e).await {
                        return Some(message);
                    }
                }
            }
        }
    }

    /// After a failure: `Interrupted` the first time, then a pause before the next try.
    async fn interrupt(&mut self, e: StoreError) -> Option<FeedMessage> {
        // The next step reads (what was missed), after the source reconnects.
        self.waiting = true;
        if !self.interrupted {
            self.interrupted = true;
            return Some(FeedMessage::Interrupted {
                reason: e.to_string(),
            });
        }
        tokio::time::sleep(self.retry).await;
        self.retry = (self.retry * 2).min(Duration::from_secs(5));
        None
    }
}
