//! The routes of `/api/v0` and `/openapi.json`.
//!
//! "The calling dashboard user" of the `/user/tokens` routes is the user recorded as the
//! creator of the token that makes the call (`createdBy`), in that token's environment:
//! tokens created through the API record their caller's creator, so a user's tokens are
//! the tokens created, directly or through one another, on their behalf.

use crate::body::{MAX_BODY_BYTES, NewToken};
use crate::openapi::{
    ApiDoc, CreatedToken, EnvironmentPath, ErrorBody, OneToken, PostTokenFields, TokenList,
    TokenPath, UnprocessableBody,
};
use crate::problem::{ApiError, Problem};
use crate::storage::Issuer;
use apitoken::http::{
    Authenticated, Authorized, EnvironmentRule, Rejection, Requirement, TokenAuth,
};
use apitoken::{EnvironmentId, IssuedToken, PageRequest, Principal, Scope, Token, TokenId};
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, FromRef, Path, State};
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
    issuer: Arc<Issuer>,
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
pub(crate) fn router(issuer: Issuer) -> Router {
    let catalog = issuer.scope_catalog().clone();
    let state = AppState {
        issuer: Arc::new(issuer),
    };
    let tokens = OpenApiRouter::new()
        .routes(routes!(create_user_token, list_user_tokens))
        .routes(routes!(delete_user_token))
        .routes(routes!(create_environment_token, list_environment_tokens))
        .routes(routes!(delete_environment_token))
        .routes(routes!(introspect));
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(BASE_PATH, tokens)
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
    Problem::new(
        StatusCode::NOT_FOUND,
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

#[derive(Serialize)]
struct Listed {
    tokens: Vec<Token>,
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

/// The `tokenId` of the path; a 400 for anything but a UUID (bytes that are not UTF-8
/// included).
fn token_id(param: Result<Path<TokenIdParam>, PathRejection>) -> Result<TokenId, Problem> {
    let parsed = param.ok().and_then(|Path(p)| p.token_id.parse().ok());
    parsed.ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_token_id",
            "the path parameter `tokenId` must be a UUID such as 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d",
        )
    })
}

/// 201 with the reference JSON; the raw token must not be cached on the way.
fn created(issued: &IssuedToken) -> Response {
    let mut response = (StatusCode::CREATED, Json(issued)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn issue(
    state: &AppState,
    environment: EnvironmentId,
    caller: Principal,
    NewToken(request): NewToken,
) -> Result<Response, ApiError> {
    let by = caller.token_id();
    let mut issued = state.issuer.issue(environment, caller, request).await?;
    issued.token = issued.token.as_of(state.issuer.now());
    tracing::info!(
        token_id = %issued.token.id,
        environment = %environment,
        by = %by,
        checksum = %issued.token.checksum,
        "token created"
    );
    Ok(created(&issued))
}

/// Every token of `environment` that `keep` keeps, oldest first, as seen now (`active`
/// false once revoked or expired).
async fn all_tokens(
    state: &AppState,
    environment: EnvironmentId,
    keep: impl Fn(&Token) -> bool,
) -> Result<Vec<Token>, ApiError> {
    let tokens = state
        .issuer
        .list_all(environment, usize::MAX, PageRequest::MAX_LIMIT)
        .await?;
    let now = state.issuer.now();
    Ok(tokens
        .into_iter()
        .filter(|t| keep(t))
        .map(|t| t.as_of(now))
        .collect())
}

async fn revoke(
    state: &AppState,
    environment: EnvironmentId,
    id: TokenId,
    by: TokenId,
) -> Result<StatusCode, ApiError> {
    state.issuer.revoke(environment, id).await?;
    tracing::info!(token_id = %id, environment = %environment, by = %by, "token revoked");
    Ok(StatusCode::NO_CONTENT)
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
        (status = 400, description = "The body is not a JSON object", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token lacks `environment.apiTokens.write`", body = ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_note`, `invalid_scopes`, `invalid_expires_at` or `too_many_api_tokens`", body = UnprocessableBody),
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
/// The tokens of the caller's environment created by the caller's user, oldest first,
/// revoked and expired ones included (`active: false`); never a raw token.
#[utoipa::path(
    get,
    path = "/user/tokens",
    tag = "tokens",
    responses(
        (status = 200, description = "The tokens", body = TokenList),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token lacks `environment.apiTokens.read`", body = ErrorBody),
    )
)]
async fn list_user_tokens(
    State(state): State<AppState>,
    auth: Result<Authorized<ReadOwnTokens>, Rejection>,
) -> Result<Json<Listed>, ApiError> {
    let auth = auth?;
    let user = auth.principal().created_by().id;
    let tokens = all_tokens(&state, auth.environment(), |t| t.created_by.id == user).await?;
    Ok(Json(Listed { tokens }))
}

/// Delete (revoke) one of the calling dashboard user's tokens
///
/// From the moment this returns the token is refused, and so is every token it created,
/// directly or not. Deleting a revoked token again succeeds; another user's token, or one
/// of another environment, is not found.
#[utoipa::path(
    delete,
    path = "/user/tokens/{tokenId}",
    tag = "tokens",
    params(TokenPath),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "`tokenId` is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token lacks `environment.apiTokens.write`", body = ErrorBody),
        (status = 404, description = "No such token of the caller's user", body = ErrorBody),
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
    let token = state.issuer.get(environment, id).await?;
    if token.created_by.id != auth.principal().created_by().id {
        return Err(
            apitoken::Error::Store(apitoken::StoreError::NotFound { environment, id }).into(),
        );
    }
    revoke(&state, environment, id, auth.principal().token_id()).await
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
        (status = 400, description = "The body is not a JSON object, or `environmentId` is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token belongs to another environment or lacks `environment.apiTokens.write`", body = ErrorBody),
        (status = 413, description = "The body is larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "The body is not `application/json`", body = ErrorBody),
        (status = 422, description = "`invalid_note`, `invalid_scopes`, `invalid_expires_at` or `too_many_api_tokens`", body = UnprocessableBody),
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
/// Oldest first, revoked and expired ones included (`active: false`); never a raw token.
#[utoipa::path(
    get,
    path = "/environments/{environmentId}/tokens",
    tag = "tokens",
    params(EnvironmentPath),
    responses(
        (status = 200, description = "The tokens", body = TokenList),
        (status = 400, description = "`environmentId` is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token belongs to another environment or lacks `environment.apiTokens.read`", body = ErrorBody),
    )
)]
async fn list_environment_tokens(
    State(state): State<AppState>,
    auth: Result<Authorized<ReadTokens>, Rejection>,
) -> Result<Json<Listed>, ApiError> {
    let auth = auth?;
    let tokens = all_tokens(&state, auth.environment(), |_| true).await?;
    Ok(Json(Listed { tokens }))
}

/// Delete (revoke) a token of an environment
///
/// From the moment this returns the token is refused, and so is every token it created,
/// directly or not. Deleting a revoked token again succeeds.
#[utoipa::path(
    delete,
    path = "/environments/{environmentId}/tokens/{tokenId}",
    tag = "tokens",
    params(EnvironmentPath, TokenPath),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "`environmentId` or `tokenId` is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = ErrorBody),
        (status = 403, description = "The token belongs to another environment or lacks `environment.apiTokens.write`", body = ErrorBody),
        (status = 404, description = "No such token in the environment", body = ErrorBody),
    )
)]
async fn delete_environment_token(
    State(state): State<AppState>,
    auth: Result<Authorized<WriteTokens>, Rejection>,
    param: Result<Path<TokenIdParam>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let auth = auth?;
    let id = token_id(param)?;
    revoke(&state, auth.environment(), id, auth.principal().token_id()).await
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
    )
)]
async fn introspect(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, ApiError> {
    let token = state
        .issuer
        .get(principal.environment(), principal.token_id())
        .await?
        .as_of(state.issuer.now());
    Ok(Json(One { token: &token }).into_response())
}
