//! The routes of `/api/v0` and `/openapi.json`.
//!
//! "The calling dashboard user" of the `/user/tokens` routes is the user recorded as the
//! creator of the token that makes the call (`createdBy`), in that token's environment:
//! tokens created through the API record their caller's creator, so a user's tokens are
//! the tokens created, directly or through one another, on their behalf.

use crate::body::{MAX_BODY_BYTES, NewToken, Rotation};
use crate::openapi::{
    ApiDoc, CreatedToken, EnvironmentPath, ErrorBody, EventList, EventsPrunedBody, EventsQuery,
    ForbiddenBody, Health, ListQuery, NotFoundBody, OneToken, PostTokenFields, RotateTokenFields,
    TokenList, TokenPath, UnprocessableBody, Unready,
};
use crate::problem::{ApiError, Problem, ProblemKind};
use crate::storage::Issuer;
use apitoken::http::{
    Authenticated, Authorized, EnvironmentRule, Rejection, Requirement, TokenAuth,
};
use apitoken::{
    Cursor, EnvironmentId, Event, EventCursor, IssuedToken, PageRequest, Principal, Scope,
    StoreError, Token, TokenId, TokenStore as _,
};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRef, OriginalUri, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The base path of every token endpoint.
pub(crate) const BASE_PATH: &str = "/api/v0";

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) issuer: Arc<Issuer>,
    /// The scope `/oauth/introspect` requires of its caller.
    pub(crate) introspection_scope: Scope,
    /// The leak routes' partners, keys and queue.
    pub(crate) leak: Arc<crate::leak::Intake>,
}

impl FromRef<AppState> for TokenAuth {
    fn from_ref(state: &AppState) -> TokenAuth {
        TokenAuth::new(state.issuer.clone())
    }
}

/// `environment.apiTokens.read` in the path's environment.
struct ReadTokens;
impl Requirement for ReadTokens {
    const SCOPES: &'static [Scope] = &[Scope::ENVIRONMENT_API_TOKENS_READ];
    const ENVIRONMENT: EnvironmentRule = EnvironmentRule::Path("environmentId");
}

/// `environment.apiTokens.write` in the path's environment.
struct WriteTokens;
impl Requirement for WriteTokens {
    const SCOPES: &'static [Scope] = &[Scope::ENVIRONMENT_API_TOKENS_WRITE];
    const ENVIRONMENT: EnvironmentRule = EnvironmentRule::Path("environmentId");
}

/// `environment.apiTokens.read`, in the caller's own environment.
struct ReadOwnTokens;
impl Requirement for ReadOwnTokens {
    const SCOPES: &'static [Scope] = &[Scope::ENVIRONMENT_API_TOKENS_READ];
    const ENVIRONMENT: EnvironmentRule = EnvironmentRule::Any;
}

/// `environment.apiTokens.write`, in the caller's own environment.
struct WriteOwnTokens;
impl Requirement for WriteOwnTokens {
    const SCOPES: &'static [Scope] = &[Scope::ENVIRONMENT_API_TOKENS_WRITE];
    const ENVIRONMENT: EnvironmentRule = EnvironmentRule::Any;
}

/// The router, and the OpenAPI description it serves at `/openapi.json`.
pub(crate) fn router(
    issuer: Arc<Issuer>,
    introspection_scope: Scope,
    leak: Arc<crate::leak::Intake>,
    trusted_proxies: crate::client_ip::TrustedProxies,
) -> Router {
    let catalog = issuer.scope_catalog().clone();
    let state = AppState {
        issuer,
        introspection_scope,
        leak,
    };
    // The partners' reports are larger than any other body (1 MiB); the public one holds
    // up to 1,000 tokens.
    let reports = OpenApiRouter::new()
        .routes(routes!(crate::leak::github_report))
        .routes(routes!(crate::leak::gitlab_report))
        .routes(routes!(crate::leak::revoke_tokens))
        .routes(routes!(crate::leak::revocable_token_types))
        .layer(DefaultBodyLimit::max(apitoken::leak::MAX_REPORT_BYTES));
    let public = OpenApiRouter::new()
        .routes(routes!(crate::leak::public_revoke))
        .layer(DefaultBodyLimit::max(crate::leak::MAX_PUBLIC_BODY_BYTES));
    let tokens = OpenApiRouter::new()
        .routes(routes!(create_user_token, list_user_tokens))
        .routes(routes!(get_user_token, delete_user_token))
        .routes(routes!(rotate_user_token))
        .routes(routes!(create_environment_token, list_environment_tokens))
        .routes(routes!(list_environment_events))
        .routes(routes!(get_environment_token, delete_environment_token))
        .routes(routes!(rotate_environment_token))
        .routes(routes!(introspect));
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(BASE_PATH, tokens)
        .routes(routes!(crate::verify::verify))
        .routes(routes!(crate::introspect::introspect))
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .merge(reports)
        .merge(public)
        .split_for_parts();
    let openapi: Arc<str> = match crate::openapi::document(openapi, &catalog) {
        Ok(json) => json.into(),
        Err(e) => {
            tracing::error!("the OpenAPI description could not be written: {e}");
            Arc::from("")
        }
    };
    router
        .route(
            "/openapi.json",
            get(move || {
                let openapi = openapi.clone();
                async move { openapi_json(openapi) }
            }),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            trusted_proxies,
            crate::client_ip::client_addr,
        ))
        .layer(axum::middleware::from_fn(crate::serve::headers_fit))
        .layer(axum::middleware::from_fn(crate::logging::log_request))
        .with_state(state)
}

fn openapi_json(openapi: Arc<str>) -> Response {
    if openapi.is_empty() {
        return Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "openapi",
            "the OpenAPI description could not be written: see the server's log",
        )
        .into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi.to_string(),
    )
        .into_response()
}

async fn no_route() -> Problem {
    Problem::not_found(
        "no_route",
        "no such endpoint: the token endpoints are under /api/v0 (see /openapi.json)",
    )
}

/// A path the server has, with a method it does not take (axum adds `Allow`).
async fn no_method() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "no_method",
        "this endpoint does not take that method: the Allow header lists those it takes (see /openapi.json)",
    )
}

/// A page of a list: `{"tokens": [...], "nextCursor": "..."}`, the cursor only when
/// another page follows.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    tokens: Vec<Token>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct One<'a> {
    token: &'a Token,
}

#[derive(Deserialize)]
struct TokenIdParam {
    #[serde(rename = "tokenId")]
    token_id: String,
}

/// The `tokenId` of the path; a 400 for anything but a canonical UUID (bytes that are not
/// UTF-8 included).
fn token_id(param: Result<Path<TokenIdParam>, PathRejection>) -> Result<TokenId, Problem> {
    let parsed = param
        .ok()
        .and_then(|Path(p)| apitoken::http::canonical_uuid(&p.token_id));
    parsed.map(TokenId::from_uuid).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_token_id",
            "the path parameter `tokenId` must be a UUID in lower case with hyphens, such as 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d",
        )
    })
}

/// 201 with the reference JSON, the record as of now; the raw token must not be cached on
/// the way.
fn created(state: &AppState, mut issued: IssuedToken) -> Response {
    issued.token = state.issuer.as_of(issued.token, state.issuer.now());
    let mut response = (StatusCode::CREATED, Json(&issued)).into_response();
    no_store(&mut response);
    response
}

/// Answers that describe tokens are never kept by a cache on the way: they hold who
/// holds which scopes, and a stale copy would show a revoked token as live.
pub(crate) fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The most tokens one page holds unless `limit` asks for fewer.
const DEFAULT_PAGE: u32 = 100;

/// Which page of a list, from the query: `limit` (1 to 1,000, default 100), `cursor` (the
/// `nextCursor` of the page before), `state` (`live`, the default, or `all`).
struct ListParams {
    limit: u32,
    cursor: Option<Cursor>,
    all: bool,
}

impl ListParams {
    fn from_query(query: Result<Query<ListQuery>, QueryRejection>) -> Result<ListParams, Problem> {
        let bad = |message: &str| {
            Problem::new(StatusCode::BAD_REQUEST, "invalid_query", message.to_owned()).logged()
        };
        let Query(query) = query.map_err(|_| {
            bad("the query string must be `limit`, `cursor` and `state` parameters, each at most once")
        })?;
        let limit = match query.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=PageRequest::MAX_LIMIT).contains(n))
                .ok_or_else(|| bad("`limit` must be a whole number from 1 to 1000"))?,
        };
        let cursor = match query.cursor.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<Cursor>().map_err(|e| bad(&e.to_string()))?),
        };
        let all = match query.state.as_deref() {
            None | Some("live") => false,
            Some("all") => true,
            Some(_) => {
                return Err(bad(
                    "`state` must be `live` (tokens that work now, the default) or `all` (revoked and expired ones too)",
                ));
            }
        };
        Ok(ListParams { limit, cursor, all })
    }
}

/// One page of `environment`'s tokens that `created_by` keeps, as seen now (`active`
/// false once revoked or expired), with the next page's cursor in the body and in a
/// `Link: <…>; rel="next"` header.
async fn list_page(
    state: &AppState,
    environment: EnvironmentId,
    created_by: Option<apitoken::UserId>,
    params: ListParams,
    uri: &OriginalUri,
) -> Result<Response, ApiError> {
    let now = state.issuer.now();
    let mut request = PageRequest::first(params.limit);
    request.after = params.cursor;
    if !params.all {
        request = request.live_at(now);
    }
    if let Some(user) = created_by {
        request = request.created_by(user);
    }
    let page = state.issuer.list(environment, request).await?;
    let next_cursor = page.next.map(|cursor| cursor.to_string());
    let link = next_cursor.as_ref().map(|cursor| {
        let state = if params.all { "&state=all" } else { "" };
        format!(
            "<{}?limit={}&cursor={cursor}{state}>; rel=\"next\"",
            uri.path(),
            params.limit
        )
    });
    let tokens = page
        .tokens
        .into_iter()
        .map(|t| state.issuer.as_of(t, now))
        .collect();
    let mut response = Json(Listed {
        tokens,
        next_cursor,
    })
    .into_response();
    no_store(&mut response);
    if let Some(link) = link.and_then(|link| HeaderValue::from_str(&link).ok()) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

async fn issue(
    state: &AppState,
    environment: EnvironmentId,
    caller: Principal,
    NewToken(request): NewToken,
) -> Result<Response, ApiError> {
    let by = caller.token_id();
    let issued = state.issuer.issue(environment, caller, request).await?;
    tracing::info!(
        token_id = %issued.token.id,
        environment = %environment,
        by = %by,
        checksum = %issued.token.checksum,
        "token created"
    );
    Ok(created(state, issued))
}

async fn revoke(
    state: &AppState,
    environment: EnvironmentId,
    id: TokenId,
    caller: &Principal,
) -> Result<StatusCode, ApiError> {
    let revoked = state.issuer.revoke(environment, caller, id).await?;
    tracing::info!(
        token_id = %id,
        environment = %environment,
        by = %caller.token_id(),
        cascade = revoked.cascade.len(),
        "token revoked"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// `{"token": …}` as of now, never cached on the way.
fn one(state: &AppState, token: Token) -> Response {
    let token = state.issuer.as_of(token, state.issuer.now());
    let mut response = Json(One { token: &token }).into_response();
    no_store(&mut response);
    response
}

/// Token `id` of `environment` if the caller may act on it and, for the `/user/tokens`
/// routes (`user` given), the caller's user created it: any other is not found, as if it
/// did not exist.
async fn reachable(
    state: &AppState,
    environment: EnvironmentId,
    caller: &Principal,
    id: TokenId,
    user: Option<apitoken::UserId>,
) -> Result<Token, ApiError> {
    let token = state.issuer.get(environment, caller, id).await?;
    if user.is_some_and(|user| token.created_by.id != user) {
        return Err(
            apitoken::Error::Store(apitoken::StoreError::NotFound { environment, id }).into(),
        );
    }
    Ok(token)
}

async fn rotate(
    state: &AppState,
    environment: EnvironmentId,
    caller: &Principal,
    id: TokenId,
    Rotation(grace): Rotation,
) -> Result<Response, ApiError> {
    let issued = state.issuer.rotate(environment, caller, id, grace).await?;
    tracing::info!(
        token_id = %issued.token.id,
        replaces = %id,
        environment = %environment,
        by = %caller.token_id(),
        grace_seconds = grace.as_secs(),
        checksum = %issued.token.checksum,
        "token rotated"
    );
    Ok(created(state, issued))
}

/// Create a token for the calling dashboard user
///
/// The user is the creator of the calling token; the new token belongs to the caller's
/// environment and may only hold scopes the caller holds.
#[utoipa::path(
    post,
    path = "/user/tokens",
    tag = "tokens",
    request_body(content = PostTokenFields, content_type = "application/json"),
    responses(
        (status = 201, description = "The new token, with its plaintext: the only time it is revealed", body = CreatedToken),
        (status = 400, description = "The body is not a JSON object, or its note is missing, empty, longer than 100 characters or holds a character or a token a note may not", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token lacks `environment.apiTokens.write`, or is as deep in a chain of tokens creating tokens as the server allows; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_scopes`, `invalid_expires_at` (not in the future; later than the calling token's expiry or than now plus the maximum lifetime, `--max-lifetime`; or absent where an expiry is required: the payload's `latest` is the latest allowed instant), `invalid_allowed_cidrs` (a range that cannot be read, or wider than the calling token's) or `too_many_api_tokens` (the environment's live or total tokens, or the calling token's live tokens, at their limit)", body = UnprocessableBody),
    )
)]
async fn create_user_token(
    State(state): State<AppState>,
    auth: Result<Authorized<WriteOwnTokens>, Rejection>,
    body: Result<NewToken, Problem>,
) -> Result<Response, ApiError> {
    // Authentication comes first: a bad body gets a 401 from an unknown caller.
    let auth = auth?;
    let body = body?;
    let environment = auth.environment();
    issue(&state, environment, auth.into_principal(), body).await
}

/// List the calling dashboard user's tokens
///
/// The tokens of the caller's environment created by the caller's user, oldest first, a
/// page at a time (follow `nextCursor`, also in the `Link` header, until it is absent).
/// Only tokens that work now unless `state=all`, which adds revoked and expired ones
/// (`active: false`); never a raw token.
#[utoipa::path(
    get,
    path = "/user/tokens",
    tag = "tokens",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of the tokens", body = TokenList,
            headers(("Link" = String, description = "`<…?cursor=…>; rel=\"next\"` when another page follows"))),
        (status = 400, description = "`limit`, `cursor` or `state` is not one the server takes", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token lacks `environment.apiTokens.read`; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
    )
)]
async fn list_user_tokens(
    State(state): State<AppState>,
    auth: Result<Authorized<ReadOwnTokens>, Rejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    let auth = auth?;
    let params = ListParams::from_query(query)?;
    let user = auth.principal().created_by().id;
    list_page(&state, auth.environment(), Some(user), params, &uri).await
}

/// Delete (revoke) one of the calling dashboard user's tokens
///
/// From the moment this returns the token is refused, and so is every token it created,
/// directly or not, and every token it replaced in a rotation whose grace period still
/// runs. Deleting a revoked token again succeeds; another user's token, or one of another
/// environment, is not found. A token that another token created acts only on itself and
/// the tokens it created (403 otherwise).
#[utoipa::path(
    delete,
    path = "/user/tokens/{tokenId}",
    tag = "tokens",
    params(TokenPath),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "`tokenId` is not a UUID in lower case with hyphens", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token lacks `environment.apiTokens.write`, or was created by a token and the token to delete is neither it nor one it created; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
        (status = 404, description = "No such token of the caller's user", body = NotFoundBody),
    )
)]
async fn delete_user_token(
    State(state): State<AppState>,
    auth: Result<Authorized<WriteOwnTokens>, Rejection>,
    param: Result<Path<TokenIdParam>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let auth = auth?;
    let id = token_id(param)?;
    let environment = auth.environment();
    let caller = auth.principal();
    let user = Some(caller.created_by().id);
    reachable(&state, environment, caller, id, user).await?;
    revoke(&state, environment, id, caller).await
}

/// One of the calling dashboard user's tokens
///
/// The same token a list shows (`active` false once revoked or expired), never its raw
/// token. Another user's token, or one of another environment, is not found. A token
/// that another token created sees only itself and the tokens it created (403 otherwise).
#[utoipa::path(
    get,
    path = "/user/tokens/{tokenId}",
    tag = "tokens",
    params(TokenPath),
    responses(
        (status = 200, description = "The token, without its plaintext", body = OneToken),
        (status = 400, description = "`tokenId` is not a UUID in lower case with hyphens", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token lacks `environment.apiTokens.read`, or was created by a token and the token asked for is neither it nor one it created; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
        (status = 404, description = "No such token of the caller's user", body = NotFoundBody),
    )
)]
async fn get_user_token(
    State(state): State<AppState>,
    auth: Result<Authorized<ReadOwnTokens>, Rejection>,
    param: Result<Path<TokenIdParam>, PathRejection>,
) -> Result<Response, ApiError> {
    let auth = auth?;
    let id = token_id(param)?;
    let caller = auth.principal();
    let user = Some(caller.created_by().id);
    let token = reachable(&state, auth.environment(), caller, id, user).await?;
    Ok(one(&state, token))
}

/// Rotate one of the calling dashboard user's tokens
///
/// Issues a successor with the same note, scopes, creator and lifetime length, and
/// answers it with its plaintext, the only time it is revealed. The replaced token keeps
/// working for `gracePeriodSeconds` (none: it stops at once), then fails as expired. A
/// token is rotated once: to rotate again, rotate its successor (409 otherwise, as for a
/// revoked or expired token). Another user's token is not found; a token that another
/// token created rotates only itself and the tokens it created (403 otherwise).
#[utoipa::path(
    post,
    path = "/user/tokens/{tokenId}/rotate",
    tag = "tokens",
    params(TokenPath),
    request_body(content = Option<RotateTokenFields>, content_type = "application/json"),
    responses(
        (status = 201, description = "The successor, with its plaintext: the only time it is revealed", body = CreatedToken),
        (status = 400, description = "`tokenId` is not a UUID in lower case with hyphens, the body is not a JSON object, or `gracePeriodSeconds` is not a whole number from 0 to 2592000", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token lacks `environment.apiTokens.write`, or was created by a token and the token to rotate is neither it nor one it created; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
        (status = 404, description = "No such token of the caller's user", body = NotFoundBody),
        (status = 409, description = "The token was rotated before, or is revoked or expired", body = ErrorBody),
        (status = 422, description = "`too_many_api_tokens`: the environment's live or total tokens, or the creating token's live tokens, at their limit; `invalid_expires_at` (`expiresAt` and `latest` null): the server requires an expiry (`--require-expiry`) without a maximum lifetime and the token never expires, so no successor complies: issue a new token with an expiry. Under `--max-lifetime` the successor's expiry is capped at now plus the maximum instead", body = UnprocessableBody),
    )
)]
async fn rotate_user_token(
    State(state): State<AppState>,
    auth: Result<Authorized<WriteOwnTokens>, Rejection>,
    param: Result<Path<TokenIdParam>, PathRejection>,
    body: Result<Rotation, Problem>,
) -> Result<Response, ApiError> {
    let auth = auth?;
    let id = token_id(param)?;
    let body = body?;
    let environment = auth.environment();
    let caller = auth.principal();
    let user = Some(caller.created_by().id);
    reachable(&state, environment, caller, id, user).await?;
    rotate(&state, environment, caller, id, body).await
}

/// Create a token in an environment
///
/// The calling token must belong to the environment and hold
/// `environment.apiTokens.write`; the new token records the caller's creator and may only
/// hold scopes the caller holds.
#[utoipa::path(
    post,
    path = "/environments/{environmentId}/tokens",
    tag = "tokens",
    params(EnvironmentPath),
    request_body(content = PostTokenFields, content_type = "application/json"),
    responses(
        (status = 201, description = "The new token, with its plaintext: the only time it is revealed", body = CreatedToken),
        (status = 400, description = "The body is not a JSON object, its note is missing, empty, longer than 100 characters or holds a character or a token a note may not, or `environmentId` is not a UUID in lower case with hyphens", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token belongs to another environment, lacks `environment.apiTokens.write`, or is as deep in a chain of tokens creating tokens as the server allows; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_scopes`, `invalid_expires_at` (not in the future; later than the calling token's expiry or than now plus the maximum lifetime, `--max-lifetime`; or absent where an expiry is required: the payload's `latest` is the latest allowed instant), `invalid_allowed_cidrs` (a range that cannot be read, or wider than the calling token's) or `too_many_api_tokens` (the environment's live or total tokens, or the calling token's live tokens, at their limit)", body = UnprocessableBody),
    )
)]
async fn create_environment_token(
    State(state): State<AppState>,
    auth: Result<Authorized<WriteTokens>, Rejection>,
    body: Result<NewToken, Problem>,
) -> Result<Response, ApiError> {
    // Authentication comes first: a bad body gets a 401 from an unknown caller.
    let auth = auth?;
    let body = body?;
    let environment = auth.environment();
    issue(&state, environment, auth.into_principal(), body).await
}

/// List an environment's tokens
///
/// Oldest first, a page at a time (follow `nextCursor`, also in the `Link` header, until
/// it is absent). Only tokens that work now unless `state=all`, which adds revoked and
/// expired ones (`active: false`); never a raw token.
#[utoipa::path(
    get,
    path = "/environments/{environmentId}/tokens",
    tag = "tokens",
    params(EnvironmentPath, ListQuery),
    responses(
        (status = 200, description = "A page of the tokens", body = TokenList,
            headers(("Link" = String, description = "`<…?cursor=…>; rel=\"next\"` when another page follows"))),
        (status = 400, description = "`environmentId` is not a UUID in lower case with hyphens, or `limit`, `cursor` or `state` is not one the server takes", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token belongs to another environment or lacks `environment.apiTokens.read`; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
    )
)]
async fn list_environment_tokens(
    State(state): State<AppState>,
    auth: Result<Authorized<ReadTokens>, Rejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
    uri: OriginalUri,
) -> Result<Response, ApiError> {
    let auth = auth?;
    let params = ListParams::from_query(query)?;
    list_page(&state, auth.environment(), None, params, &uri).await
}

/// The most events one answer holds unless `limit` asks for fewer.
const DEFAULT_EVENTS: u32 = 100;

/// The most events one answer holds: what `TokenStore::events_since` reads at once.
const MAX_EVENTS: u32 = 1000;

/// The largest `after` taken: JSON numbers are exact up to 2^53 − 1 in every client
/// (JavaScript's among them), and no log comes near it, so the document can say exactly
/// what is accepted.
const MAX_AFTER: u64 = (1 << 53) - 1;

/// Which events, from the query: `after` (a sequence number, default 0) and `limit` (1 to
/// 1,000, default 100).
struct EventParams {
    after: EventCursor,
    limit: u32,
}

impl EventParams {
    fn from_query(
        query: Result<Query<EventsQuery>, QueryRejection>,
    ) -> Result<EventParams, Problem> {
        let bad = |message: &str| {
            Problem::new(StatusCode::BAD_REQUEST, "invalid_query", message.to_owned()).logged()
        };
        let Query(query) = query.map_err(|_| {
            bad("the query string must be `after` and `limit` parameters, each at most once")
        })?;
        let limit = match query.limit.as_deref() {
            None => DEFAULT_EVENTS,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_EVENTS).contains(n))
                .ok_or_else(|| bad("`limit` must be a whole number from 1 to 1000"))?,
        };
        let after = match query.after.as_deref() {
            None => EventCursor::START,
            Some(text) => text
                .parse::<EventCursor>()
                .ok()
                .filter(|cursor| cursor.sequence() <= MAX_AFTER)
                .ok_or_else(|| {
                    bad("`after` must be the sequence number of the last event read, a whole number from 0 (the start of the log) to 9007199254740991: pass back the `nextCursor` of the answer before")
                })?,
        };
        Ok(EventParams { after, limit })
    }
}

/// A page of events: `{"events": [...], "nextCursor": "..."}`, the cursor always.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Events {
    events: Vec<Event>,
    next_cursor: String,
}

/// An environment's event log
///
/// What happened to the environment's tokens, oldest first: each creation, each
/// revocation (one event per token it took, with the `cause` for those that went with
/// another) and each rotation (with its `successor`), when, and who did it. Answers at
/// most `limit` events after `after`; pass `nextCursor` back as `after` for the next ones
/// (it is there even when no event is, so a client polls with it and sees every change
/// once, in order). Events older than the log's retention (30 days) are pruned when the
/// server purges (`--purge-after`): a cursor from before them is a 410 that says where to
/// resume.
#[utoipa::path(
    get,
    path = "/environments/{environmentId}/tokens/events",
    tag = "tokens",
    params(EnvironmentPath, EventsQuery),
    responses(
        (status = 200, description = "The events after `after`, with the cursor to read on from", body = EventList),
        (status = 400, description = "`environmentId` is not a UUID in lower case with hyphens, or `after` or `limit` is not one the server takes", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token belongs to another environment or lacks `environment.apiTokens.read`; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
        (status = 410, description = "`events_pruned`: events after `after` were pruned before they were read, so what was derived from them may be stale. Resynchronise (list the tokens with `state=all`), then read on with `payload.resumeAfter` as `after`", body = EventsPrunedBody),
        (status = 501, description = "The server's token store keeps no event log (SQLite and PostgreSQL always do): asking again will not help", body = ErrorBody),
    )
)]
async fn list_environment_events(
    State(state): State<AppState>,
    auth: Result<Authorized<ReadTokens>, Rejection>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let auth = auth?;
    let params = EventParams::from_query(query)?;
    let read = state
        .issuer
        .store()
        .events_since(Some(auth.environment()), params.after, params.limit)
        .await;
    let page = match read {
        Ok(page) => page,
        Err(StoreError::EventsPruned { after, resumed }) => {
            return Err(Problem::detailed(
                StatusCode::GONE,
                "events_pruned",
                format!(
                    "the events after {after} were pruned before they were read (the log keeps them for a set time): what you derived from them may be stale; resynchronise (list the tokens with state=all), then read on with after={resumed}"
                ),
                serde_json::json!({ "resumeAfter": resumed.to_string() }),
            )
            .logged()
            .into());
        }
        // 501, not 503: the store will not gain a log by waiting, so a retry cannot help.
        Err(StoreError::NoEventLog) => {
            return Err(Problem::new(
                StatusCode::NOT_IMPLEMENTED,
                "no_event_log",
                "this server's token store keeps no event log: run the server over SQLite or PostgreSQL, which keep one",
            )
            .logged()
            .into());
        }
        Err(e) => return Err(apitoken::Error::Store(e).into()),
    };
    let mut response = Json(Events {
        events: page.events,
        next_cursor: page.next.to_string(),
    })
    .into_response();
    no_store(&mut response);
    Ok(response)
}

/// Delete (revoke) a token of an environment
///
/// From the moment this returns the token is refused, and so is every token it created,
/// directly or not, and every token it replaced in a rotation whose grace period still
/// runs. Deleting a revoked token again succeeds. A token that another token created acts
/// only on itself and the tokens it created (403 otherwise).
#[utoipa::path(
    delete,
    path = "/environments/{environmentId}/tokens/{tokenId}",
    tag = "tokens",
    params(EnvironmentPath, TokenPath),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "`environmentId` or `tokenId` is not a UUID in lower case with hyphens", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token belongs to another environment, lacks `environment.apiTokens.write`, or was created by a token and the token to delete is neither it nor one it created; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
        (status = 404, description = "No such token in the environment", body = NotFoundBody),
    )
)]
async fn delete_environment_token(
    State(state): State<AppState>,
    auth: Result<Authorized<WriteTokens>, Rejection>,
    param: Result<Path<TokenIdParam>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let auth = auth?;
    let id = token_id(param)?;
    revoke(&state, auth.environment(), id, auth.principal()).await
}

/// One token of an environment
///
/// The same token a list shows (`active` false once revoked or expired), never its raw
/// token. A token that another token created sees only itself and the tokens it created
/// (403 otherwise).
#[utoipa::path(
    get,
    path = "/environments/{environmentId}/tokens/{tokenId}",
    tag = "tokens",
    params(EnvironmentPath, TokenPath),
    responses(
        (status = 200, description = "The token, without its plaintext", body = OneToken),
        (status = 400, description = "`environmentId` or `tokenId` is not a UUID in lower case with hyphens", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token belongs to another environment, lacks `environment.apiTokens.read`, or was created by a token and the token asked for is neither it nor one it created; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
        (status = 404, description = "No such token in the environment", body = NotFoundBody),
    )
)]
async fn get_environment_token(
    State(state): State<AppState>,
    auth: Result<Authorized<ReadTokens>, Rejection>,
    param: Result<Path<TokenIdParam>, PathRejection>,
) -> Result<Response, ApiError> {
    let auth = auth?;
    let id = token_id(param)?;
    let token = reachable(&state, auth.environment(), auth.principal(), id, None).await?;
    Ok(one(&state, token))
}

/// Rotate a token of an environment
///
/// Issues a successor with the same note, scopes, creator and lifetime length, and
/// answers it with its plaintext, the only time it is revealed. The replaced token keeps
/// working for `gracePeriodSeconds` (none: it stops at once), then fails as expired. A
/// token is rotated once: to rotate again, rotate its successor (409 otherwise, as for a
/// revoked or expired token). A token that another token created rotates only itself and
/// the tokens it created (403 otherwise).
#[utoipa::path(
    post,
    path = "/environments/{environmentId}/tokens/{tokenId}/rotate",
    tag = "tokens",
    params(EnvironmentPath, TokenPath),
    request_body(content = Option<RotateTokenFields>, content_type = "application/json"),
    responses(
        (status = 201, description = "The successor, with its plaintext: the only time it is revealed", body = CreatedToken),
        (status = 400, description = "`environmentId` or `tokenId` is not a UUID in lower case with hyphens, the body is not a JSON object, or `gracePeriodSeconds` is not a whole number from 0 to 2592000", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token belongs to another environment, lacks `environment.apiTokens.write`, or was created by a token and the token to rotate is neither it nor one it created; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = ForbiddenBody),
        (status = 404, description = "No such token in the environment", body = NotFoundBody),
        (status = 409, description = "The token was rotated before, or is revoked or expired", body = ErrorBody),
        (status = 422, description = "`too_many_api_tokens`: the environment's live or total tokens, or the creating token's live tokens, at their limit; `invalid_expires_at` (`expiresAt` and `latest` null): the server requires an expiry (`--require-expiry`) without a maximum lifetime and the token never expires, so no successor complies: issue a new token with an expiry. Under `--max-lifetime` the successor's expiry is capped at now plus the maximum instead", body = UnprocessableBody),
    )
)]
async fn rotate_environment_token(
    State(state): State<AppState>,
    auth: Result<Authorized<WriteTokens>, Rejection>,
    param: Result<Path<TokenIdParam>, PathRejection>,
    body: Result<Rotation, Problem>,
) -> Result<Response, ApiError> {
    let auth = auth?;
    let id = token_id(param)?;
    let body = body?;
    rotate(&state, auth.environment(), auth.principal(), id, body).await
}

/// The token that makes the call
///
/// Any valid token may introspect itself; no scope is needed.
#[utoipa::path(
    get,
    path = "/tokens/me",
    tag = "tokens",
    responses(
        (status = 200, description = "The calling token, without its plaintext", body = OneToken),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known", body = ForbiddenBody),
    )
)]
async fn introspect(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let token = state
        .issuer
        .get(principal.environment(), &principal, principal.token_id())
        .await?;
    Ok(one(&state, token))
}

/// How long `/readyz` waits for the store before it answers 503: less than the usual
/// probe timeout (Kubernetes' default is 1 s, most set a few), and far less than the
/// pool's own acquire timeout (5 s).
const READY_WITHIN: std::time::Duration = std::time::Duration::from_millis(900);

/// The process is up
///
/// Answers as long as the process serves requests at all; never reads the store. For a
/// liveness probe. Logged only at the `debug` level.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "The process is up: `{\"status\": \"ok\"}`", body = Health),
    )
)]
async fn healthz() -> Response {
    status_answer("ok")
}

/// The server can serve requests now
///
/// Reads the store (one or two small reads, at most 0.9 s): it answers, holds the schema
/// this server writes, and was created with this server's hash key. For a readiness
/// probe, or a load balancer's health check. Logged only at the `debug` level when ready;
/// when not, the full reason goes to the server's log at `error`, and the answer says
/// only which check failed.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`", body = Health),
        (status = 503, description = "Not ready, with the check that failed in `code`: `store_unavailable` (the store did not answer in time or cannot be reached), `schema_not_prepared` (no schema, or an older one: start the server, or run a writing CLI command, with this version), `schema_too_new` (upgrade the server), `hash_key_mismatch` (the database was created with another hash key), `store_failed` (any other failure; the log says which)", body = Unready,
            headers(("Retry-After" = u32, description = "Seconds to wait before asking again"))),
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    let keys = state.issuer.keyring().fingerprints();
    let checked =
        tokio::time::timeout(READY_WITHIN, state.issuer.store().check_keyring(&keys)).await;
    let failure = match checked {
        Ok(Ok(())) => return status_answer("ready"),
        Ok(Err(e)) => e,
        Err(_) => {
            return unready(
                "store_unavailable",
                "the token store did not answer in time",
                format!(
                    "the token store did not answer within {} ms",
                    READY_WITHIN.as_millis()
                ),
            );
        }
    };
    let reason = failure.to_string();
    match failure {
        apitoken::StoreError::Unavailable { .. } | apitoken::StoreError::Tls { .. } => unready(
            "store_unavailable",
            "the token store cannot be reached",
            reason,
        ),
        apitoken::StoreError::NotPrepared { .. } => unready(
            "schema_not_prepared",
            "the database holds no schema, or an older one than this server writes",
            reason,
        ),
        apitoken::StoreError::SchemaTooNew { .. } => unready(
            "schema_too_new",
            "the database schema is newer than this server: upgrade the server",
            reason,
        ),
        apitoken::StoreError::HashKeyMismatch { .. }
        | apitoken::StoreError::KeyringLacksKey { .. } => unready(
            "hash_key_mismatch",
            "the database was created with another hash key than this server's",
            reason,
        ),
        _ => unready("store_failed", "the token store failed its check", reason),
    }
}

/// 200 `{"status": …}`, never cached on the way.
fn status_answer(said: &'static str) -> Response {
    let mut response = Json(serde_json::json!({ "status": said })).into_response();
    no_store(&mut response);
    response
}

/// A 503 from `/readyz`: which check failed (`code`) and a fixed sentence for the client,
/// who needs no token to ask; the full `reason` only for the log.
fn unready(code: &'static str, error: &'static str, reason: String) -> Response {
    let body = serde_json::json!({ "status": "unready", "error": error, "code": code });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    no_store(&mut response);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(apitoken::http::RETRY_AFTER_SECONDS),
    );
    response
        .extensions_mut()
        .insert(ProblemKind("unready", Some(reason)));
    response
}
