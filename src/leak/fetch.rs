//! A [`KeySource`] that fetches the partner's key list over HTTP(S): [`FetchedKeys`].

use super::key::{InvalidKeyId, KeyId, KeyList, KeyListError, ReportKey};
use super::source::{KeySource, KeySourceError};
use crate::clock::{Clock, SystemClock};
use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use core::fmt;
use core::time::Duration;
use reqwest::header::{ACCEPT, AUTHORIZATION, ETAG, HeaderValue, IF_NONE_MATCH};
use reqwest::{StatusCode, Url};
use std::error::Error as StdError;
use std::sync::{Arc, PoisonError, RwLock};
use zeroize::Zeroizing;

/// Where GitHub publishes its secret-scanning keys.
#[cfg_attr(docsrs, doc(cfg(feature = "leak-fetch")))]
pub const GITHUB_KEYS_URL: &str = "https://api.github.com/meta/public_keys/secret_scanning";

/// The largest key list read, in bytes (64 KiB); a partner's list of a few keys is under
/// 2 KiB. A larger answer is refused without reading further, so a hostile or broken key
/// URL cannot exhaust memory.
#[cfg_attr(docsrs, doc(cfg(feature = "leak-fetch")))]
pub const MAX_KEY_LIST_BYTES: usize = 64 * 1024;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_USER_AGENT: &str = concat!("apitoken/", env!("CARGO_PKG_VERSION"));

/// A [`KeySource`] that fetches the partner's key list from its URL (GitHub's is
/// [`GITHUB_KEYS_URL`]; GitLab gives each partner one), and keeps the last good list in
/// memory, exactly as the [`KeySource`] contract says:
///
/// - a known key identifier is answered from memory, without I/O;
/// - an unknown one fetches the list again, at most once per minimum refetch interval
///   (default one minute) whatever the identifiers asked for, so that made-up identifiers
///   cannot make it hammer the partner; concurrent callers share one fetch;
/// - fetches are conditional (`If-None-Match` with the last `ETag`; 304 keeps the list);
///   a list read whole replaces the last good one, so a withdrawn key stops verifying;
/// - a failed fetch (network, timeout, a status other than 2xx and 304, a body over
///   [`MAX_KEY_LIST_BYTES`]) is [`KeySourceError::Unavailable`], a list that cannot be
///   read [`KeySourceError::InvalidKeyList`]; either leaves the last good list in place,
///   and is answered again, without I/O, for unknown identifiers until the next fetch may
///   be tried. After a fetch that succeeded, they are `Ok(None)`.
///
/// Call [`refresh`](FetchedKeys::refresh) at start-up, so that the first report does not
/// wait for the list; a failure there is worth a warning, not an exit, since the first
/// unknown identifier tries again. It needs a Tokio runtime with I/O and timers enabled,
/// and the feature `leak-fetch`.
///
/// ```no_run
/// # async fn handle(key_id: &str, signature: &str, body: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
/// use apitoken::leak::{FetchedKeys, KeySource, VerifyError, verify_with};
/// use std::sync::Arc;
///
/// // At start-up: a token raises GitHub's rate limit, and is optional.
/// let mut builder = FetchedKeys::github();
/// if let Ok(token) = std::env::var("GITHUB_TOKEN") {
///     builder = builder.bearer_token(token);
/// }
/// let keys = builder.build()?;
/// if let Err(err) = keys.refresh().await {
///     eprintln!("warning: {err}");
/// }
/// let keys: Arc<dyn KeySource> = Arc::new(keys);
///
/// // For each report, with its two headers and its body as received:
/// match verify_with(&keys, key_id, signature, body).await {
///     Ok(()) => { /* read the report and act on it, then answer 2xx */ }
///     // The partner sends the report again after a 503.
///     Err(VerifyError::KeySource(err)) => { /* answer 503 */ }
///     Err(err) => { /* answer 400: not the partner's */ }
/// }
/// # Ok(())
/// # }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "leak-fetch")))]
pub struct FetchedKeys {
    client: reqwest::Client,
    url: Url,
    authorization: Option<HeaderValue>,
    user_agent: HeaderValue,
    timeout: Duration,
    min_refetch_interval: Duration,
    clock: Arc<dyn Clock>,
    /// The last good list, read without waiting for a fetch in flight.
    current: RwLock<Option<Arc<KeyList>>>,
    /// Held for as long as a fetch, so that concurrent callers share it.
    state: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    /// The `ETag` of the answer the current list was read from.
    etag: Option<HeaderValue>,
    /// When the last fetch began.
    last_attempt: Option<DateTime<Utc>>,
    /// Why the last fetch failed; `None` when it succeeded (or none was made).
    failure: Option<Failure>,
}

impl FetchedKeys {
    /// Starts configuring a source that fetches the key list at `url`, an `https` (or,
    /// for tests, `http`) URL answering `{"public_keys": [...]}`.
    pub fn builder(url: &str) -> FetchedKeysBuilder {
        FetchedKeysBuilder {
            url: url.to_owned(),
            bearer_token: None,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            clock: Arc::new(SystemClock),
        }
    }

    /// Starts configuring a source of GitHub's keys ([`GITHUB_KEYS_URL`]).
    pub fn github() -> FetchedKeysBuilder {
        FetchedKeys::builder(GITHUB_KEYS_URL)
    }

    /// Fetches the key list now, whatever the minimum refetch interval (conditionally,
    /// when a list is known): call it at start-up, or from a timer of your own no more
    /// often than the partner allows. It counts as a fetch for the interval, and callers
    /// of [`key`](KeySource::key) with an unknown identifier wait for it and share it.
    ///
    /// # Errors
    ///
    /// [`KeySourceError::Unavailable`] when the list could not be fetched,
    /// [`KeySourceError::InvalidKeyList`] when it cannot be read. Either way the last good
    /// list stays in place, and the source stays usable: the next unknown identifier after
    /// the interval tries again.
    pub async fn refresh(&self) -> Result<(), KeySourceError> {
        let mut state = self.state.lock().await;
        self.fetch(&mut state).await
    }

    /// The last good key list, `None` until a fetch has read one.
    pub fn keys(&self) -> Option<Arc<KeyList>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lookup(&self, id: &KeyId) -> Option<ReportKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(|keys| keys.get(id.as_str()).cloned())
    }

    /// Whether the minimum interval since the last fetch has passed.
    fn due(&self, state: &mut FetchState) -> bool {
        let Some(last) = state.last_attempt else {
            return true;
        };
        let now = self.clock.now();
        if now < last {
            // The clock went back: wait one interval from now rather than until it catches
            // up with the last fetch, and never fetch more often than the interval allows.
            state.last_attempt = Some(now);
            return false;
        }
        let interval = TimeDelta::from_std(self.min_refetch_interval).unwrap_or(TimeDelta::MAX);
        now.signed_duration_since(last) >= interval
    }

    /// Fetches the list once, and records the outcome in `state`.
    async fn fetch(&self, state: &mut FetchState) -> Result<(), KeySourceError> {
        state.last_attempt = Some(self.clock.now());
        // Stays the answer if the caller goes away before the fetch finishes: the fetch
        // counts, or cancelled requests could fetch without bound.
        state.failure = Some(Failure::Fetch(Arc::new(FetchFailure::Cancelled)));
        match self.get(state.etag.as_ref()).await {
            Ok(Fetched::NotModified) => {
                state.failure = None;
                Ok(())
            }
            Ok(Fetched::List { keys, etag }) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                    Some(Arc::new(keys));
                state.etag = etag;
                state.failure = None;
                Ok(())
            }
            Err(failure) => {
                let answer = failure.answer();
                state.failure = Some(failure);
                Err(answer)
            }
        }
    }

    /// One `GET` of the list, conditional when `etag` is known.
    async fn get(&self, etag: Option<&HeaderValue>) -> Result<Fetched, Failure> {
        let mut request = self
            .client
            .get(self.url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag.clone());
        }
        let mut response = request
            .send()
            .await
            .map_err(|err| self.request_failure(err))?;

        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return if etag.is_some() {
                Ok(Fetched::NotModified)
            } else {
                Err(Failure::fetch(FetchFailure::UnexpectedNotModified))
            };
        }
        if !status.is_success() {
            return Err(Failure::fetch(FetchFailure::Status { status }));
        }
        let new_etag = response.headers().get(ETAG).cloned();

        // Refused before reading when announced, and while reading otherwise.
        if response
            .content_length()
            .is_some_and(|len| len > MAX_KEY_LIST_BYTES as u64)
        {
            return Err(Failure::fetch(FetchFailure::TooLarge));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| self.request_failure(err))?
        {
            if chunk.len() > MAX_KEY_LIST_BYTES - body.len() {
                return Err(Failure::fetch(FetchFailure::TooLarge));
            }
            body.extend_from_slice(&chunk);
        }

        match KeyList::from_json(&body) {
            Ok(keys) => Ok(Fetched::List {
                keys,
                etag: new_etag,
            }),
            Err(err) => Err(Failure::List(StoredListError::from(err))),
        }
    }

    fn request_failure(&self, err: reqwest::Error) -> Failure {
        if err.is_timeout() {
            return Failure::fetch(FetchFailure::Timeout {
                timeout: self.timeout,
            });
        }
        // The URL is left out, as a token in it would be; the causes say what went wrong
        // ("connection refused", a certificate error), so they are part of the message.
        let err = err.without_url();
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !message.ends_with(&cause_text) {
                message.push_str(": ");
                message.push_str(&cause_text);
            }
            source = cause.source();
        }
        Failure::fetch(FetchFailure::Request { message })
    }
}

#[async_trait]
impl KeySource for FetchedKeys {
    async fn key(&self, id: &KeyId) -> Result<Option<ReportKey>, KeySourceError> {
        if let Some(key) = self.lookup(id) {
            return Ok(Some(key));
        }
        let mut state = self.state.lock().await;
        // A fetch may have brought the key while this caller waited for it.
        if let Some(key) = self.lookup(id) {
            return Ok(Some(key));
        }
        if !self.due(&mut state) {
            return match &state.failure {
                None => Ok(None),
                Some(failure) => Err(failure.answer()),
            };
        }
        self.fetch(&mut state).await?;
        Ok(self.lookup(id))
    }
}

impl fmt::Debug for FetchedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchedKeys")
            .field("url", &RedactedUrl(&self.url))
            .field(
                "bearer_token",
                &self.authorization.as_ref().map(|_| Redacted),
            )
            .field("user_agent", &self.user_agent)
            .field("timeout", &self.timeout)
            .field("min_refetch_interval", &self.min_refetch_interval)
            .field("clock", &self.clock)
            .field("keys", &self.keys().map(|keys| keys.iter().count()))
            .finish_non_exhaustive()
    }
}

/// Configures a [`FetchedKeys`]; every setting but the URL has a default.
#[cfg_attr(docsrs, doc(cfg(feature = "leak-fetch")))]
pub struct FetchedKeysBuilder {
    url: String,
    bearer_token: Option<Zeroizing<String>>,
    user_agent: String,
    timeout: Duration,
    min_refetch_interval: Duration,
    clock: Arc<dyn Clock>,
}

impl FetchedKeysBuilder {
    /// Sends `Authorization: Bearer {token}` with every fetch (default: no
    /// `Authorization`). GitHub serves its key list without one, but allows more requests
    /// to a token; a GitLab partner URL may need one. The token never appears in `Debug`
    /// output or error messages.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(Zeroizing::new(token.into()));
        self
    }

    /// The `User-Agent` sent (default `apitoken/{version}`). GitHub refuses requests
    /// without one, and asks for the application's name in it.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// How long a fetch may take, from connecting to the last byte of the body (default
    /// 10 s). Partners expect an answer to a report within seconds (GitHub: 15), and a
    /// report waits for the fetch its unknown key identifier causes.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The least time between two fetches caused by unknown key identifiers (default one
    /// minute, what the [`KeySource`] contract asks). Partners rate-limit their key
    /// endpoints, and anyone can send a report naming a made-up key: a shorter interval
    /// lets such reports cause as many more fetches.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// Where time comes from for the refetch interval (default: the system clock). Tests
    /// pass a [`ManualClock`](crate::ManualClock) and advance it.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The configured source. Nothing is fetched yet: see
    /// [`refresh`](FetchedKeys::refresh).
    ///
    /// # Errors
    ///
    /// See [`FetchConfigError`]: a URL that is not an absolute `http` or `https` URL, a
    /// token or `User-Agent` that an HTTP header cannot carry, or an HTTP client that could
    /// not be set up.
    pub fn build(self) -> Result<FetchedKeys, FetchConfigError> {
        let url = Url::parse(&self.url).map_err(|err| FetchConfigError::InvalidUrl {
            source: Box::new(err),
        })?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(FetchConfigError::UnsupportedScheme {
                scheme: url.scheme().to_owned(),
            });
        }
        let authorization = match &self.bearer_token {
            None => None,
            Some(token) => {
                let mut value = HeaderValue::try_from(
                    Zeroizing::new(format!("Bearer {}", token.as_str())).as_str(),
                )
                .map_err(|_| FetchConfigError::InvalidBearerToken)?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let user_agent = HeaderValue::try_from(self.user_agent.as_str())
            .map_err(|_| FetchConfigError::InvalidUserAgent)?;
        let client = reqwest::Client::builder()
            .user_agent(user_agent.clone())
            .timeout(self.timeout)
            .build()
            .map_err(|err| FetchConfigError::Client {
                source: Box::new(err),
            })?;
        Ok(FetchedKeys {
            client,
            url,
            authorization,
            user_agent,
            timeout: self.timeout,
            min_refetch_interval: self.min_refetch_interval,
            clock: self.clock,
            current: RwLock::new(None),
            state: tokio::sync::Mutex::new(FetchState::default()),
        })
    }
}

impl fmt::Debug for FetchedKeysBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = Url::parse(&self.url);
        let mut debug = f.debug_struct("FetchedKeysBuilder");
        match &url {
            Ok(url) => debug.field("url", &RedactedUrl(url)),
            Err(_) => debug.field("url", &"<not a URL>"),
        };
        debug
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| Redacted),
            )
            .field("user_agent", &self.user_agent)
            .field("timeout", &self.timeout)
            .field("min_refetch_interval", &self.min_refetch_interval)
            .field("clock", &self.clock)
            .finish()
    }
}

/// Why a [`FetchedKeysBuilder`] could not build its source.
#[cfg_attr(docsrs, doc(cfg(feature = "leak-fetch")))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchConfigError {
    /// The key list URL cannot be parsed.
    #[error(
        "the key list URL is not an absolute URL ({source}): give the partner's key list URL in full, such as {GITHUB_KEYS_URL}"
    )]
    InvalidUrl {
        /// Why.
        #[source]
        source: crate::store::BoxError,
    },
    /// The key list URL is neither `https` nor `http`.
    #[error("the key list URL's scheme is {scheme:?}: use an https URL")]
    UnsupportedScheme {
        /// The scheme given.
        scheme: String,
    },
    /// The bearer token holds characters an HTTP header cannot carry.
    #[error(
        "the bearer token holds characters an HTTP header cannot carry (only visible ASCII and spaces): check that the whole token, and nothing else, was given"
    )]
    InvalidBearerToken,
    /// The `User-Agent` holds characters an HTTP header cannot carry.
    #[error(
        "the User-Agent holds characters an HTTP header cannot carry: use visible ASCII and spaces only"
    )]
    InvalidUserAgent,
    /// The HTTP client could not be set up (its TLS configuration).
    #[error("the HTTP client for the key list could not be set up ({source})")]
    Client {
        /// Why.
        #[source]
        source: crate::store::BoxError,
    },
}

/// What one fetch brought.
enum Fetched {
    /// 304: the current list stands.
    NotModified,
    /// A list read whole.
    List {
        keys: KeyList,
        etag: Option<HeaderValue>,
    },
}

/// Why the last fetch failed, kept to answer every caller until the next fetch may be
/// tried. [`KeySourceError`] is not `Clone`, hence a copy of its parts that can make it
/// again.
#[derive(Debug)]
enum Failure {
    Fetch(Arc<FetchFailure>),
    List(StoredListError),
}

impl Failure {
    fn fetch(failure: FetchFailure) -> Failure {
        Failure::Fetch(Arc::new(failure))
    }

    fn answer(&self) -> KeySourceError {
        match self {
            Failure::Fetch(failure) => KeySourceError::Unavailable {
                source: Box::new(Arc::clone(failure)),
            },
            Failure::List(err) => KeySourceError::InvalidKeyList(err.to_error()),
        }
    }
}

/// Why a key list could not be fetched: the source of [`KeySourceError::Unavailable`].
#[derive(Debug, thiserror::Error)]
enum FetchFailure {
    #[error("{}", status_message(*.status))]
    Status { status: StatusCode },
    #[error(
        "the key list is larger than {MAX_KEY_LIST_BYTES} bytes, the most read (a partner's list of a few keys is under 2 KiB)"
    )]
    TooLarge,
    #[error("no complete answer within {timeout:?}")]
    Timeout { timeout: Duration },
    #[error("{message}")]
    Request { message: String },
    #[error("the key list URL answered 304 Not Modified to a request that was not conditional")]
    UnexpectedNotModified,
    #[error("the last fetch was cancelled before it finished (its caller went away)")]
    Cancelled,
}

fn status_message(status: StatusCode) -> String {
    let hint = match status.as_u16() {
        401 => ": check the bearer token",
        403 | 429 => ": refused or rate-limited (GitHub allows more requests with a bearer token)",
        404 | 410 => ": check the key list URL",
        _ => "",
    };
    format!("the key list URL answered {status}{hint}")
}

/// A [`KeyListError`] kept to be made again.
#[derive(Debug)]
enum StoredListError {
    Malformed {
        line: usize,
        column: usize,
    },
    InvalidKeyId {
        index: usize,
        source: InvalidKeyId,
    },
    MalformedKey {
        id: KeyId,
        source: Arc<dyn StdError + Send + Sync>,
    },
    DuplicateKey {
        id: KeyId,
    },
    Empty,
}

impl From<KeyListError> for StoredListError {
    fn from(err: KeyListError) -> StoredListError {
        match err {
            KeyListError::Malformed { line, column } => StoredListError::Malformed { line, column },
            KeyListError::InvalidKeyId { index, source } => {
                StoredListError::InvalidKeyId { index, source }
            }
            KeyListError::MalformedKey { id, source } => StoredListError::MalformedKey {
                id,
                source: Arc::from(source),
            },
            KeyListError::DuplicateKey { id } => StoredListError::DuplicateKey { id },
            KeyListError::Empty => StoredListError::Empty,
        }
    }
}

impl StoredListError {
    fn to_error(&self) -> KeyListError {
        match self {
            StoredListError::Malformed { line, column } => KeyListError::Malformed {
                line: *line,
                column: *column,
            },
            StoredListError::InvalidKeyId { index, source } => KeyListError::InvalidKeyId {
                index: *index,
                source: *source,
            },
            StoredListError::MalformedKey { id, source } => KeyListError::MalformedKey {
                id: id.clone(),
                source: Box::new(Arc::clone(source)),
            },
            StoredListError::DuplicateKey { id } => KeyListError::DuplicateKey { id: id.clone() },
            StoredListError::Empty => KeyListError::Empty,
        }
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A URL for `Debug`, without a password or query (either may hold a secret).
struct RedactedUrl<'a>(&'a Url);

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Only fails for URLs that cannot have one.
            let _ = url.set_password(Some("redacted"));
        }
        if url.query().is_some() {
            url.set_query(Some("redacted"));
        }
        fmt::Debug::fmt(url.as_str(), f)
    }
}
