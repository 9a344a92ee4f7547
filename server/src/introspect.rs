//! `POST /oauth/introspect`: OAuth 2.0 token introspection (RFC 7662), which API gateways
//! (Envoy, Kong, otoroshi, agentgateway) speak.
//!
//! The caller, a resource server or a gateway, authenticates with its own token, which
//! must hold the server's introspection scope (`--introspection-scope`, by default
//! `environment.apiTokens.read`). The form field `token` is the token to check. A token
//! of the caller's environment that works now is `{"active": true, …}`; anything else
//! (malformed, unknown, revoked, expired, another environment's) is exactly
//! `{"active": false}`, after the same work: every answer hashes what it was given and
//! looks the hash up once, so that neither the answer nor its time tells why.

use crate::api::AppState;
use crate::problem::{ApiError, Problem};
use apitoken::http::Authenticated;
use apitoken::{Principal, Scope};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The answer: RFC 7662 §2.2's members that apply, or `active` alone.
#[derive(Serialize, Default)]
pub(crate) struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// The user the token acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    /// The token's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
    /// The token's environment (an extension: RFC 7662 allows more members).
    #[serde(skip_serializing_if = "Option::is_none")]
    environment_id: Option<String>,
}

/// The value of the first `token` field of a form body, percent-decoded; `None` when
/// there is none or it cannot be decoded.
pub(crate) fn token_field(body: &[u8]) -> Option<String> {
    let body = core::str::from_utf8(body).ok()?;
    let value = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))?;
    percent_decode(value)
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = core::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Introspect a token (RFC 7662)
///
/// For gateways and resource servers: the caller authenticates with its own token, which
/// must hold the server's introspection scope (`--introspection-scope`, by default
/// `environment.apiTokens.read`), and sends `token=…` as a form. A token of the caller's
/// environment that works now is `active` with its scopes (`scope`, space-separated), the
/// user it acts for (`sub`), its id (`jti`), `iat`, `exp` when it expires, `token_type`
/// and `environment_id`; anything else is exactly `{"active": false}`, after the same
/// work.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "gateway",
    request_body(content = crate::openapi::IntrospectionRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Whether the token is active, and if so what it is", body = crate::openapi::IntrospectionAnswer),
        (status = 400, description = "The form has no `token` field, or it cannot be decoded", body = crate::openapi::ErrorBody),
        (status = 401, description = "The caller's own token is missing, malformed, unknown, revoked or expired", body = crate::openapi::ErrorBody),
        (status = 403, description = "The caller's token lacks the introspection scope; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = crate::openapi::ForbiddenBody),
    )
)]
pub(crate) async fn introspect(
    State(state): State<AppState>,
    auth: Result<Authenticated, apitoken::Error>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Authenticated(caller) = auth?;
    caller.authorize(
        caller.environment(),
        core::slice::from_ref(&state.introspection_scope),
    )?;
    if !is_form(&headers) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be a form: send `Content-Type: application/x-www-form-urlencoded` and `token=…`",
        )
        .into());
    }
    let body = body.map_err(crate::body::unreadable)?;
    let token = token_field(&body).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the form must have a `token` field, percent-encoded as UTF-8",
        )
        .logged()
    })?;
    let answer = match state.issuer.authenticate(&token).await {
        Ok(principal) if principal.environment() == caller.environment() => {
            active(&state, principal).await
        }
        Ok(_) => Introspection::default(),
        // Introspection carries no address of the token's client: a token with allowed
        // ranges is answered inactive (fail closed).
        Err(apitoken::Error::IpNotAllowed { .. }) => Introspection::default(),
        Err(e) if e.is_unauthenticated() => {
            if matches!(e, apitoken::Error::Malformed(_)) {
                // The work a well-formed unknown token costs: one hash, one look-up.
                let hash = state.issuer.hasher().hash(&token);
                let _ = state.issuer.store().find_credential(&hash).await;
            }
            Introspection::default()
        }
        // The store failed: not an answer about the token.
        Err(e) => return Err(e.into()),
    };
    let mut response = Json(answer).into_response();
    crate::api::no_store(&mut response);
    Ok(response)
}

async fn active(state: &AppState, principal: Principal) -> Introspection {
    let record = state
        .issuer
        .store()
        .get(principal.environment(), principal.token_id())
        .await
        .ok()
        .flatten();
    let scopes: Vec<&str> = principal.scopes().iter().map(Scope::as_str).collect();
    Introspection {
        active: true,
        scope: Some(scopes.join(" ")),
        sub: Some(principal.created_by().id.to_string()),
        exp: principal.expires_at().map(|at| at.timestamp()),
        iat: record.map(|t| t.created_at.timestamp()),
        jti: Some(principal.token_id().to_string()),
        token_type: Some("dyn_api_token"),
        environment_id: Some(principal.environment().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_field_is_read_and_decoded() {
        assert_eq!(token_field(b"token=dyn_abc").as_deref(), Some("dyn_abc"));
        assert_eq!(
            token_field(b"token_type_hint=access_token&token=dyn%5Fab+c").as_deref(),
            Some("dyn_ab c")
        );
        assert_eq!(token_field(b"token=").as_deref(), Some(""));
        assert_eq!(token_field(b"token=a%2"), None);
        assert_eq!(token_field(b"token=a%zz"), None);
        assert_eq!(token_field(b"token=%ff"), None);
        assert_eq!(token_field(b"other=1"), None);
        assert_eq!(token_field(b"\xff"), None);
    }
}
