//! Leak intake: the routes through which a leaked token is reported, and revoked.
//!
//! - `POST /secret-scanning/github` and `POST /secret-scanning/gitlab`: the partners'
//!   signed reports. The signature (ECDSA P-256 over the raw body, the key named by the
//!   `…-Public-Key-Identifier` header, fetched from the partner's key list) is checked
//!   before anything in the body is read: 401 without a valid one, and nothing changes.
//!   The answer is 200 with GitHub's feedback array (`token_hash`, never the token), 2xx
//!   for unknown, foreign and already revoked tokens alike (GitLab resends any report
//!   answered 400 or more), within the deadline GitHub's agreement sets (15 s): a batch
//!   still at work then is answered 202 and finished in the background.
//! - GitLab's self-managed Token Revocation API: `GET /v1/revocable_token_types` and
//!   `POST /v1/revoke_tokens`, authenticated with the token the operator configured.
//! - `POST /api/v0/credentials/revoke`: anyone who found a token posts it. Rate-limited
//!   per client address; the answer (202) is the same whatever the tokens were, and comes
//!   before any of them is looked up, so neither it nor its timing tells whether a token
//!   existed.
//!
//! Every path ends in [`apitoken::TokenIssuer::revoke_leaks`]: one `leaked` event per
//! live token, with the reporter's source, URL and type, which purge forgets after
//! `--leak-retention`. Logs name counts and outcomes, never a token.

use crate::api::{AppState, no_store};
use crate::clients::Client;
use crate::metrics::METRICS;
use crate::problem::{ApiError, Problem};
use apitoken::leak::{
    FetchedKeys, KeySource, MAX_MATCHES, MAX_REPORT_BYTES, Match, Report, VerifyError, verify_with,
};
use apitoken::{LeakDetails, LeakOutcome, LeakReporter};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// The largest body `POST /api/v0/credentials/revoke` reads: 1,000 tokens of at most 87
/// characters, quoted and separated, fit with room to spare.
pub(crate) const MAX_PUBLIC_BODY_BYTES: usize = 128 * 1024;

/// The most distinct clients the public endpoint's rate limiter remembers; past it, a
/// client it has not seen is refused (429) until the others' allowances refill.
const MAX_RATE_CLIENTS: usize = 65_536;

/// Batches of publicly reported tokens waiting to be revoked; past it, 503.
const PUBLIC_QUEUE: usize = 64;

/// A partner whose signed reports are taken.
pub(crate) struct Partner {
    reporter: LeakReporter,
    keys: Arc<dyn KeySource>,
    key_id_header: HeaderName,
    signature_header: HeaderName,
}

impl Partner {
    /// GitHub, with its headers, over `keys`.
    fn github(keys: Arc<dyn KeySource>) -> Partner {
        Partner {
            reporter: LeakReporter::GitHub,
            keys,
            key_id_header: HeaderName::from_static("github-public-key-identifier"),
            signature_header: HeaderName::from_static("github-public-key-signature"),
        }
    }

    /// GitLab, with its headers, over `keys`.
    fn gitlab(keys: Arc<dyn KeySource>) -> Partner {
        Partner {
            reporter: LeakReporter::GitLab,
            keys,
            key_id_header: HeaderName::from_static("gitlab-public-key-identifier"),
            signature_header: HeaderName::from_static("gitlab-public-key-signature"),
        }
    }
}

/// GitLab's self-managed Token Revocation API: the token it must present, and the name of
/// our token type.
pub(crate) struct RevocationApi {
    /// A digest of the configured token: compared in constant time (`blake3::Hash`'s
    /// equality), whatever the length of what a caller sends.
    token: blake3::Hash,
    token_type: String,
}

impl RevocationApi {
    fn new(token: &str, token_type: String) -> RevocationApi {
        RevocationApi {
            token: blake3::hash(token.as_bytes()),
            token_type,
        }
    }

    /// Whether `Authorization` holds the token, alone or after `Bearer ` or `Token `.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let token = [&b"Bearer "[..], b"bearer ", b"Token ", b"token "]
            .iter()
            .find_map(|scheme| value.strip_prefix(*scheme))
            .unwrap_or(value);
        blake3::hash(token) == self.token
    }
}

/// Everything the leak routes share; a route whose part is `None` answers 404.
pub(crate) struct Intake {
    github: Option<Partner>,
    gitlab: Option<Partner>,
    revocation_api: Option<RevocationApi>,
    public: Option<PublicIntake>,
    /// How long a partner's report may take before it is answered anyway.
    deadline: Duration,
}

/// The leak routes as the options configure them, and the public endpoint's queue (to
/// spawn [`revoke_public`] on). The partners' key lists are fetched in the
/// background.
pub(crate) fn intake(args: &crate::args::Args) -> Result<(Intake, Option<PublicQueue>), String> {
    let secret = |path: &std::path::Path, what: &str| {
        let (secret, warnings) = apitoken_ops::read_secret_file(path, what)?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        Ok::<_, String>(secret)
    };
    let github = if args.github_keys_url.trim().is_empty() {
        None
    } else {
        let token = match &args.github_token_file {
            Some(path) => Some(secret(path, "the GitHub token file")?),
            None => None,
        };
        let keys = fetched_keys(
            "GitHub",
            args.github_keys_url.trim(),
            token.as_deref().map(String::as_str),
        )
        .map_err(|e| {
            format!(
                "{e}: correct --github-keys-url, or set it empty to take no reports from GitHub"
            )
        })?;
        tokio::spawn(prefetch("github", keys.clone()));
        Some(Partner::github(keys))
    };
    let gitlab = match args.gitlab_keys_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => {
            let keys = fetched_keys("GitLab", url, None)
                .map_err(|e| format!("{e}: correct --gitlab-keys-url"))?;
            tokio::spawn(prefetch("gitlab", keys.clone()));
            Some(Partner::gitlab(keys))
        }
    };
    let revocation_api = match &args.gitlab_revocation_token_file {
        None => None,
        Some(path) => {
            let token = secret(path, "the GitLab revocation token file")?;
            Some(RevocationApi::new(&token, args.gitlab_token_type.clone()))
        }
    };
    let (public, queue) = match args.public_revoke_per_minute {
        0 => (None, None),
        per_minute => {
            let (public, queue) = PublicIntake::new(per_minute, args.public_revoke_burst.get());
            (Some(public), Some(queue))
        }
    };
    tracing::info!(
        github = github.is_some(),
        gitlab = gitlab.is_some(),
        gitlab_revocation_api = revocation_api.is_some(),
        public_revoke_per_minute = args.public_revoke_per_minute,
        "leak intake"
    );
    Ok((
        Intake {
            github,
            gitlab,
            revocation_api,
            public,
            deadline: std::time::Duration::from_millis(u64::from(args.leak_deadline_ms.get())),
        },
        queue,
    ))
}

/// Builds a fetching key source for `url`; `bearer` authenticates to the partner's API
/// (GitHub's rate limits are higher with a token).
fn fetched_keys(
    partner: &str,
    url: &str,
    bearer: Option<&str>,
) -> Result<Arc<FetchedKeys>, String> {
    let mut builder = FetchedKeys::builder(url)
        .user_agent(concat!("apitoken-server/", env!("CARGO_PKG_VERSION")));
    if let Some(token) = bearer {
        builder = builder.bearer_token(token);
    }
    builder
        .build()
        .map(Arc::new)
        .map_err(|e| format!("the {partner} key list URL cannot be used: {e}"))
}

/// Fetches a partner's key list once at start-up, in the background (a report then finds
/// the keys known), and logs how it went; a report with an unknown key fetches again.
async fn prefetch(partner: &'static str, keys: Arc<FetchedKeys>) {
    match keys.refresh().await {
        Ok(()) => tracing::info!(
            partner,
            keys = keys.keys().map_or(0, |list| list.iter().len()),
            "fetched the partner's key list"
        ),
        Err(e) => tracing::warn!(
            partner,
            "{e} (its reports are answered 503, and so sent again, until the list is fetched)"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Partners' signed reports.

/// One entry of GitHub's feedback array.
#[derive(Serialize)]
struct Feedback {
    /// The hex SHA-256 of the token as reported.
    token_hash: String,
    token_type: String,
    /// `true_positive` for our tokens (revoked now or before, or expired),
    /// `false_positive` otherwise.
    label: &'static str,
}

/// Report a leak (GitHub secret scanning)
///
/// GitHub's secret-scanning partner program posts here the tokens it found in public
/// places. The body is read only after its signature (the `Github-Public-Key-Signature`
/// header, by the key `Github-Public-Key-Identifier` names in GitHub's key list) holds
/// over the raw bytes. Each live token of ours is revoked with everything it created, as
/// a `leaked` event holding the report's source, URL and type; tokens that are unknown,
/// foreign or already revoked change nothing, and a report sent twice changes nothing the
/// second time. The answer is GitHub's feedback array. The route answers 404 when the
/// server was started with an empty `--github-keys-url`.
#[utoipa::path(
    post,
    path = "/secret-scanning/github",
    tag = "leaks",
    security(()),
    params(crate::openapi::GitHubSignature),
    request_body(content = Vec<crate::openapi::PartnerMatch>, content_type = "application/json",
        description = "The matches, as GitHub sends them: at most 1,000, in at most 1 MiB"),
    responses(
        (status = 200, description = "Every match acted on: the feedback for each, in order (`true_positive` for our tokens)", body = Vec<crate::openapi::LeakFeedback>),
        (status = 202, description = "Still at work when the deadline (`--leak-deadline-ms`) passed: it finishes in the background; no feedback", body = Vec<crate::openapi::LeakFeedback>),
        (status = 400, description = "Signed, but not a report: not a JSON array of matches, more than 1,000 matches, an empty token, a field too long", body = crate::openapi::ErrorBody),
        (status = 401, description = "A signature header is missing or malformed, the key is not in the partner's list, or the signature does not match the body: nothing was read or changed", body = crate::openapi::ErrorBody),
        (status = 404, description = "This server takes no reports from GitHub", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is larger than 1 MiB", body = crate::openapi::ErrorBody),
    )
)]
pub(crate) async fn github_report(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    partner_report(&state, state.leak.github.as_ref(), &headers, body).await
}

/// Report a leak (GitLab secret detection)
///
/// GitLab's partner intake posts here, signed as GitHub's is (`Gitlab-Public-Key-Identifier`,
/// `Gitlab-Public-Key-Signature`) by a key in the list at `--gitlab-keys-url`; the route
/// answers 404 until that is set. What it does and answers is what
/// `POST /secret-scanning/github` does; matches carry no `source`.
#[utoipa::path(
    post,
    path = "/secret-scanning/gitlab",
    tag = "leaks",
    security(()),
    params(crate::openapi::GitLabSignature),
    request_body(content = Vec<crate::openapi::PartnerMatch>, content_type = "application/json",
        description = "The matches, as GitLab sends them: at most 1,000, in at most 1 MiB"),
    responses(
        (status = 200, description = "Every match acted on: the feedback for each, in order", body = Vec<crate::openapi::LeakFeedback>),
        (status = 202, description = "Still at work when the deadline passed: it finishes in the background", body = Vec<crate::openapi::LeakFeedback>),
        (status = 400, description = "Signed, but not a report", body = crate::openapi::ErrorBody),
        (status = 401, description = "A signature header is missing or malformed, the key is unknown, or the signature does not match the body", body = crate::openapi::ErrorBody),
        (status = 404, description = "This server takes no reports from GitLab (no `--gitlab-keys-url`)", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is larger than 1 MiB", body = crate::openapi::ErrorBody),
    )
)]
pub(crate) async fn gitlab_report(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    partner_report(&state, state.leak.gitlab.as_ref(), &headers, body).await
}

async fn partner_report(
    state: &AppState,
    partner: Option<&Partner>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(partner) = partner else {
        return Err(no_intake().into());
    };
    let reporter = partner.reporter.name();
    // The headers first: a request without them is nobody's report, whatever its body.
    let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(key_id), Some(signature)) = (
        header(&partner.key_id_header),
        header(&partner.signature_header),
    ) else {
        METRICS.leak_report(reporter, "unsigned");
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unsigned_report",
            format!(
                "a report must carry the {} and {} headers: only the partner's signed reports are taken",
                partner.key_id_header, partner.signature_header
            ),
        )
        .logged()
        .into());
    };
    let body = body.map_err(|e| crate::body::unreadable_within(e, MAX_REPORT_BYTES))?;
    match verify_with(&*partner.keys, key_id, signature, &body).await {
        Ok(()) => {}
        Err(VerifyError::KeySource(e)) => {
            METRICS.leak_report(reporter, "keys_unavailable");
            tracing::warn!(partner = reporter, "a report could not be checked: {e}");
            return Err(retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "keys_unavailable",
                "the partner's key list could not be fetched, so the report could not be checked: send it again later",
            )
            .into());
        }
        Err(e) => {
            METRICS.leak_report(reporter, "bad_signature");
            let kind = match e {
                VerifyError::UnknownKey { .. } => "unknown_report_key",
                VerifyError::BadSignature { .. } => "bad_report_signature",
                _ => "malformed_report_signature",
            };
            // The message may repeat the key identifier the client sent: not logged.
            return Err(Problem::new(StatusCode::UNAUTHORIZED, kind, e.to_string()).into());
        }
    }
    let report = match Report::from_json(&body) {
        Ok(report) => report,
        Err(e) => {
            METRICS.leak_report(reporter, "invalid");
            return Err(
                Problem::new(StatusCode::BAD_REQUEST, "invalid_report", e.to_string())
                    .logged()
                    .into(),
            );
        }
    };
    let matches = report.into_matches();
    let found = matches.len();
    let details: Vec<LeakDetails> = matches
        .iter()
        .map(|m| details_of(partner.reporter, m))
        .collect();
    let issuer = state.issuer.clone();
    let by = partner.reporter;
    // Spawned: the revocations finish even if the answer goes out at the deadline, or the
    // partner hangs up.
    let work = tokio::spawn(async move {
        let reported = matches
            .iter()
            .zip(&details)
            .map(|(m, d)| (m.token().expose_secret(), d))
            .collect();
        let outcomes = revoke(&issuer, by, reported).await?;
        let feedback: Vec<Feedback> = matches
            .iter()
            .zip(&outcomes)
            .map(|(m, outcome)| Feedback {
                token_hash: m.token().feedback_hash(),
                token_type: m.kind().to_owned(),
                label: if outcome.is_ours() {
                    "true_positive"
                } else {
                    "false_positive"
                },
            })
            .collect();
        Ok::<_, apitoken::Error>(feedback)
    });
    let done = match tokio::time::timeout(state.leak.deadline, work).await {
        Ok(done) => done,
        Err(_) => {
            METRICS.leak_report(reporter, "deadline");
            tracing::warn!(
                partner = reporter,
                matches = found,
                "a report is still at work past the deadline: answered 202, finishing in the background"
            );
            let mut response = (StatusCode::ACCEPTED, Json(Vec::<Feedback>::new())).into_response();
            no_store(&mut response);
            return Ok(response);
        }
    };
    let feedback = match done {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            METRICS.leak_report(reporter, "store_failed");
            METRICS.error(&e);
            tracing::warn!(
                partner = reporter,
                matches = found,
                "a report could not be acted on: {e}"
            );
            return Err(e.into());
        }
        Err(e) => {
            METRICS.leak_report(reporter, "store_failed");
            return Err(Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "leak_task",
                format!("the report's revocations stopped: {e}; send the report again"),
            )
            .logged()
            .into());
        }
    };
    METRICS.leak_report(reporter, "taken");
    let mut response = Json(feedback).into_response();
    no_store(&mut response);
    Ok(response)
}

/// What a partner's match says of where the token was.
fn details_of(reporter: LeakReporter, m: &Match) -> LeakDetails {
    let mut details = LeakDetails::new(reporter).with_token_type(m.kind());
    if let Some(source) = m.source() {
        details = details.with_source(source);
    }
    if let Some(url) = m.url().filter(|url| !url.is_empty()) {
        details = details.with_url(url);
    }
    details
}

/// The body as text: JSON is UTF-8, in the fields a route ignores too (serde_json skips
/// those unchecked when it reads bytes).
fn utf8(body: &[u8]) -> Result<&str, Problem> {
    std::str::from_utf8(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!(
                "the body is not JSON: byte {} is not UTF-8",
                e.valid_up_to()
            ),
        )
        .logged()
    })
}

fn no_intake() -> Problem {
    Problem::not_found(
        "no_leak_intake",
        "this server takes no reports on this route: see the server's leak options (--github-keys-url, --gitlab-keys-url, --gitlab-revocation-token-file, --public-revoke-per-minute)",
    )
}

/// A 503 or 429 with `Retry-After`, as the library answers a store outage.
fn retry_later(status: StatusCode, kind: &'static str, message: &str) -> Problem {
    Problem::new(status, kind, message)
        .logged()
        .retry_after(HeaderValue::from_static(
            apitoken::http::RETRY_AFTER_SECONDS,
        ))
}

/// What every leak route does with a report: [`revoke_leaks`](apitoken::TokenIssuer::revoke_leaks),
/// then each outcome counted in the metrics and one log line with how many of each
/// (never a token). `reported` is collected by the caller: an iterator of closures held
/// across the await would not be `Send` for every lifetime.
async fn revoke(
    issuer: &crate::storage::Issuer,
    reporter: LeakReporter,
    reported: Vec<(&str, &LeakDetails)>,
) -> Result<Vec<LeakOutcome>, apitoken::Error> {
    let outcomes = issuer.revoke_leaks(reported).await?;
    let reporter = reporter.name();
    for outcome in &outcomes {
        METRICS.leaked_token(reporter, outcome.name());
    }
    let count = |name: &str| outcomes.iter().filter(|o| o.name() == name).count();
    tracing::info!(
        reporter,
        found = outcomes.len(),
        revoked = count("revoked"),
        already_revoked = count("already_revoked"),
        expired = count("expired"),
        unknown = count("unknown"),
        not_ours = count("not_ours"),
        "leak report taken"
    );
    Ok(outcomes)
}

// ---------------------------------------------------------------------------------------
// GitLab's self-managed Token Revocation API.

/// What `GET /v1/revocable_token_types` answers.
#[derive(Serialize)]
struct TokenTypes<'a> {
    types: [&'a str; 1],
}

/// The token types this server revokes (GitLab Token Revocation API)
///
/// A self-managed GitLab asks which token types it may send to `POST /v1/revoke_tokens`.
/// Authenticated with the token in `--gitlab-revocation-token-file` (in `Authorization`,
/// alone or after `Bearer `); 404 until that is set.
#[utoipa::path(
    get,
    path = "/v1/revocable_token_types",
    tag = "leaks",
    security(("gitlabRevocationToken" = [])),
    responses(
        (status = 200, description = "The one type of this server's tokens (`--gitlab-token-type`)", body = crate::openapi::RevocableTokenTypes),
        (status = 401, description = "`Authorization` does not hold the configured token", body = crate::openapi::ErrorBody),
        (status = 404, description = "This server takes no revocations from GitLab", body = crate::openapi::ErrorBody),
    )
)]
pub(crate) async fn revocable_token_types(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let api = revocation_api(&state, &headers)?;
    let mut response = Json(TokenTypes {
        types: [api.token_type.as_str()],
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}

/// One token a self-managed GitLab found.
#[derive(Deserialize)]
struct Revocation {
    #[serde(rename = "type")]
    token_type: String,
    token: String,
    #[serde(default)]
    location: Option<String>,
}

/// Revoke leaked tokens (GitLab Token Revocation API)
///
/// A self-managed GitLab posts the tokens of our type its secret detection found, each
/// with where (`location`). Each live one is revoked as a `leaked` event by `gitlab` with
/// the location as its URL; others change nothing, and entries of other types are
/// ignored. Authenticated as `GET /v1/revocable_token_types` is.
#[utoipa::path(
    post,
    path = "/v1/revoke_tokens",
    tag = "leaks",
    security(("gitlabRevocationToken" = [])),
    request_body(content = Vec<crate::openapi::GitLabRevocation>, content_type = "application/json",
        description = "At most 1,000 tokens, in at most 1 MiB"),
    responses(
        (status = 204, description = "Accepted: every live token of ours in it is revoked (or, past the deadline, being revoked)"),
        (status = 400, description = "Not a JSON array of `{type, token, location}`, or more than 1,000 of them: do not retry", body = crate::openapi::ErrorBody),
        (status = 401, description = "`Authorization` does not hold the configured token", body = crate::openapi::ErrorBody),
        (status = 404, description = "This server takes no revocations from GitLab", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is larger than 1 MiB", body = crate::openapi::ErrorBody),
        (status = 429, description = "The token store is unreachable: retry later (`Retry-After`)", body = crate::openapi::ErrorBody),
    )
)]
pub(crate) async fn revoke_tokens(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let api = revocation_api(&state, &headers)?;
    let body = body.map_err(|e| crate::body::unreadable_within(e, MAX_REPORT_BYTES))?;
    let entries: Vec<Revocation> = serde_json::from_str(utf8(&body)?).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_revocation",
            format!(
                "the body must be a JSON array of {{\"type\": …, \"token\": …, \"location\": …}} (at line {}, column {}): do not retry it",
                e.line(),
                e.column()
            ),
        )
        .logged()
    })?;
    if entries.len() > MAX_MATCHES {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_revocation",
            format!("at most {MAX_MATCHES} tokens a request: send them in smaller batches"),
        )
        .logged()
        .into());
    }
    let ours: Vec<Revocation> = entries
        .into_iter()
        .filter(|e| e.token_type == api.token_type)
        .collect();
    let details: Vec<LeakDetails> = ours
        .iter()
        .map(|e| {
            let details = LeakDetails::new(LeakReporter::GitLab).with_token_type(&e.token_type);
            match e.location.as_deref().filter(|l| !l.is_empty()) {
                Some(location) => details.with_url(location),
                None => details,
            }
        })
        .collect();
    let issuer = state.issuer.clone();
    let work = tokio::spawn(async move {
        let tokens: Vec<Zeroizing<String>> =
            ours.into_iter().map(|e| Zeroizing::new(e.token)).collect();
        let reported = tokens
            .iter()
            .zip(&details)
            .map(|(t, d)| (t.as_str(), d))
            .collect();
        revoke(&issuer, LeakReporter::GitLab, reported).await?;
        Ok::<_, apitoken::Error>(())
    });
    match tokio::time::timeout(state.leak.deadline, work).await {
        // Accepted; past the deadline it finishes in the background.
        Ok(Ok(Ok(()))) | Err(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(Ok(Err(e))) => {
            METRICS.error(&e);
            tracing::warn!("a GitLab revocation could not be acted on: {e}");
            Err(retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "store_unavailable",
                "the token store could not be reached: send the tokens again later",
            )
            .into())
        }
        Ok(Err(e)) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "leak_task",
            format!("the revocations stopped: {e}"),
        )
        .logged()
        .into()),
    }
}

/// The API's settings when `Authorization` holds its token; 404 without the API, 401
/// without the token.
fn revocation_api<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<&'a RevocationApi, Problem> {
    let api = state.leak.revocation_api.as_ref().ok_or_else(no_intake)?;
    if api.admits(headers) {
        Ok(api)
    } else {
        Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "gitlab_token_refused",
            "Authorization must hold the token configured with --gitlab-revocation-token-file",
        )
        .logged())
    }
}

// ---------------------------------------------------------------------------------------
// The public endpoint.

/// Where publicly reported tokens wait for [`revoke_public`], a batch a request.
pub(crate) type PublicQueue = mpsc::Receiver<Vec<Zeroizing<String>>>;

/// The public endpoint's rate limit and the queue its tokens wait in.
pub(crate) struct PublicIntake {
    limiter: RateLimiter,
    queue: mpsc::Sender<Vec<Zeroizing<String>>>,
}

impl PublicIntake {
    /// The endpoint, and the queue's receiving end for [`revoke_public`].
    fn new(per_minute: u32, burst: u32) -> (PublicIntake, PublicQueue) {
        let (queue, received) = mpsc::channel(PUBLIC_QUEUE);
        (
            PublicIntake {
                limiter: RateLimiter::new(per_minute, burst),
                queue,
            },
            received,
        )
    }
}

/// Revokes what the public endpoint queued, batch after batch, until the queue closes. A
/// batch the store could not take is tried again three times (1, 2, 4 s apart), then
/// dropped with a warning: the submitter was already answered, and may send it again.
pub(crate) async fn revoke_public(issuer: Arc<crate::storage::Issuer>, mut received: PublicQueue) {
    let details = LeakDetails::new(LeakReporter::Public);
    while let Some(batch) = received.recv().await {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=4 {
            let reported = batch.iter().map(|t| (t.as_str(), &details)).collect();
            match revoke(&issuer, LeakReporter::Public, reported).await {
                Ok(_) => break,
                Err(e) if attempt < 4 => {
                    tracing::warn!(
                        tokens = batch.len(),
                        "publicly reported tokens could not be revoked ({e}); trying again in {} s",
                        wait.as_secs()
                    );
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => tracing::error!(
                    tokens = batch.len(),
                    "publicly reported tokens were not revoked after 4 attempts: {e}"
                ),
            }
        }
    }
}

/// What the public endpoint reads.
#[derive(Deserialize)]
struct Credentials {
    credentials: Vec<String>,
}

/// What the public endpoint answers: the same whatever the tokens were.
#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}

/// Report leaked tokens (anyone)
///
/// Anyone who found a token of ours (in a paste, a log, a public repository) posts it
/// here, like GitHub's credential revocation API: up to 1,000 tokens a request. The
/// answer is 202 whatever they were, and is given before any of them is looked up: it
/// says nothing about whether a token existed. Each live one is then revoked with
/// everything it created, as a `leaked` event by `public`. No token needed; rate-limited
/// per client address (an IPv4 address, an IPv6 /64): `--public-revoke-per-minute` and
/// `--public-revoke-burst`.
#[utoipa::path(
    post,
    path = "/api/v0/credentials/revoke",
    tag = "leaks",
    security(()),
    request_body(content = crate::openapi::CredentialsRevocation, content_type = "application/json"),
    responses(
        (status = 202, description = "Taken: the live tokens of ours among them are revoked in moments (the same answer whatever they were)", body = crate::openapi::CredentialsAccepted),
        (status = 400, description = "Not `{\"credentials\": [strings]}`, or more than 1,000 of them", body = crate::openapi::ErrorBody),
        (status = 404, description = "This server takes no public reports (`--public-revoke-per-minute 0`)", body = crate::openapi::ErrorBody),
        (status = 413, description = "The body is larger than 128 KiB", body = crate::openapi::ErrorBody),
        (status = 415, description = "The body is not JSON", body = crate::openapi::ErrorBody),
        (status = 429, description = "This client sent too many reports: wait `Retry-After` seconds", body = crate::openapi::ErrorBody),
    )
)]
pub(crate) async fn public_revoke(
    State(state): State<AppState>,
    peer: Option<axum::Extension<crate::logging::Peer>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(public) = state.leak.public.as_ref() else {
        return Err(no_intake().into());
    };
    // The allowance first: a client over it costs no parsing.
    if let Some(axum::Extension(peer)) = peer
        && let Err(wait) = public.limiter.take(Client::of(peer.0.ip()), Instant::now())
    {
        METRICS.leak_report("public", "rate_limited");
        let seconds = wait.as_secs().max(1);
        return Err(Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many reports from this address: send the next one in {seconds} s"),
        )
        .retry_after(HeaderValue::from(seconds))
        .into());
    }
    if !crate::body::is_json(headers.get(header::CONTENT_TYPE)) {
        return Err(crate::body::not_json().into());
    }
    let body = body.map_err(|e| crate::body::unreadable_within(e, MAX_PUBLIC_BODY_BYTES))?;
    let Credentials { credentials } = serde_json::from_str(utf8(&body)?).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_credentials",
            format!(
                "the body must be {{\"credentials\": [\"dyn_…\", …]}} (at line {}, column {})",
                e.line(),
                e.column()
            ),
        )
        .logged()
    })?;
    if credentials.len() > MAX_MATCHES {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_credentials",
            format!("at most {MAX_MATCHES} tokens a request: send them in smaller batches"),
        )
        .logged()
        .into());
    }
    let accepted = credentials.len();
    let credentials: Vec<Zeroizing<String>> = credentials.into_iter().map(Zeroizing::new).collect();
    if accepted > 0 && public.queue.try_send(credentials).is_err() {
        METRICS.leak_report("public", "queue_full");
        return Err(retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "leak_queue_full",
            "too many reports are waiting to be acted on: send it again later",
        )
        .into());
    }
    METRICS.leak_report("public", "taken");
    let mut response = (StatusCode::ACCEPTED, Json(Accepted { accepted })).into_response();
    no_store(&mut response);
    Ok(response)
}

/// A token bucket per client: `burst` requests at once, refilled at `per_minute`.
pub(crate) struct RateLimiter {
    per_minute: u32,
    burst: u32,
    /// Client → (allowance left, as of when), and when full allowances were last
    /// forgotten. Its hasher is the standard library's randomly keyed one: clients choose
    /// their addresses.
    buckets: Mutex<(Buckets, Option<Instant>)>,
}

/// Each client's allowance left, and as of when.
type Buckets = HashMap<Client, (f64, Instant)>;

/// How often, at most, a full rate limiter looks for clients to forget: each look reads
/// every entry, and new clients must not be able to make every request pay for one.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

impl RateLimiter {
    pub(crate) fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_minute,
            burst: burst.max(1),
            buckets: Mutex::new((HashMap::new(), None)),
        }
    }

    /// Takes one request from `client`'s allowance; when it has none, how long until it
    /// has.
    pub(crate) fn take(&self, client: Client, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.per_minute) / 60.0;
        let burst = f64::from(self.burst);
        let refilled = |(left, at): (f64, Instant)| {
            (left + now.saturating_duration_since(at).as_secs_f64() * rate).min(burst)
        };
        let mut guard = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let (buckets, swept) = &mut *guard;
        if buckets.len() >= MAX_RATE_CLIENTS && !buckets.contains_key(&client) {
            if swept.is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY) {
                // A full allowance is what an absent client has: forget those.
                buckets.retain(|_, bucket| refilled(*bucket) < burst);
                *swept = Some(now);
            }
            if buckets.len() >= MAX_RATE_CLIENTS {
                return Err(Duration::from_secs(60));
            }
        }
        let left = buckets
            .get(&client)
            .map_or(burst, |bucket| refilled(*bucket));
        if left >= 1.0 {
            buckets.insert(client, (left - 1.0, now));
            Ok(())
        } else {
            let wait = if rate > 0.0 {
                Duration::from_secs_f64((1.0 - left) / rate)
            } else {
                Duration::from_secs(60)
            };
            Err(wait)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn client(last: u8) -> Client {
        Client::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)))
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(6, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(client(1), start), Ok(()));
        }
        let wait = limiter.take(client(1), start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        // Another client is not held back.
        assert_eq!(limiter.take(client(2), start), Ok(()));
        // Six a minute: one more after ten seconds, not before.
        assert!(
            limiter
                .take(client(1), start + Duration::from_secs(9))
                .is_err()
        );
        assert_eq!(
            limiter.take(client(1), start + Duration::from_secs(10)),
            Ok(())
        );
        assert!(
            limiter
                .take(client(1), start + Duration::from_secs(11))
                .is_err()
        );
        // A long pause refills the burst, no more.
        let later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(limiter.take(client(1), later), Ok(()));
        }
        assert!(limiter.take(client(1), later).is_err());
    }

    #[test]
    fn a_full_limiter_refuses_new_clients_until_others_refill() {
        let limiter = RateLimiter::new(60, 1);
        let start = Instant::now();
        let v6 = |n: u64| {
            Client::of(IpAddr::V6(std::net::Ipv6Addr::from_bits(
                u128::from(n) << 64,
            )))
        };
        for n in 0..MAX_RATE_CLIENTS as u64 {
            assert_eq!(limiter.take(v6(n), start), Ok(()));
        }
        // Full, and every client's allowance spent: a new one waits.
        assert!(limiter.take(client(1), start).is_err());
        // A second later the allowances have refilled and are forgotten at once.
        let later = start + Duration::from_secs(1);
        assert_eq!(limiter.take(client(1), later), Ok(()));
        let (buckets, _) = &*limiter.buckets.lock().unwrap();
        assert_eq!(buckets.len(), 1);
    }

    #[test]
    fn the_revocation_api_admits_its_token_only() {
        let api = RevocationApi::new("s3cret", "dyn_api_token".to_owned());
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            api.admits(&headers)
        };
        assert!(with("s3cret"));
        assert!(with("Bearer s3cret"));
        assert!(with("Token s3cret"));
        assert!(!with("Bearer s3cre"));
        assert!(!with("Bearer s3cret "));
        assert!(!with("Basic s3cret"));
        assert!(!api.admits(&HeaderMap::new()));
    }
}
