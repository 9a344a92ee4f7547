//! `GET /verify`: a yes or no for a gateway in front of other services (nginx's
//! `auth_request`, Envoy's `ext_authz` in HTTP mode, Traefik's `forwardAuth`).
//!
//! The gateway sends the client's `Authorization` header and, optionally, what the route
//! requires: scopes (`scope` in the query, repeated or comma-separated, or an
//! `X-Required-Scopes` header, space- or comma-separated) and an environment
//! (`environment` in the query or `X-Required-Environment`). The answer is 200 with who
//! the token is in headers the gateway can pass on (`X-Token-Id`, `X-Environment-Id`,
//! `X-Token-Scopes`, `X-Created-By`), the same 401 as every route for a bad token, 403 for
//! a missing scope or another environment (and for a required scope that is not a scope
//! name, which no token holds), 400 for a required environment that is not one.

use crate::problem::{ApiError, Problem};
use apitoken::http::Authenticated;
use apitoken::{EnvironmentId, Scope};
use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

const REQUIRED_SCOPES: HeaderName = HeaderName::from_static("x-required-scopes");
const REQUIRED_ENVIRONMENT: HeaderName = HeaderName::from_static("x-required-environment");
const TOKEN_ID: HeaderName = HeaderName::from_static("x-token-id");
const ENVIRONMENT_ID: HeaderName = HeaderName::from_static("x-environment-id");
const TOKEN_SCOPES: HeaderName = HeaderName::from_static("x-token-scopes");
const CREATED_BY: HeaderName = HeaderName::from_static("x-created-by");

/// The most scopes a requirement may name.
const MAX_REQUIRED: usize = 64;

/// What a route behind the gateway requires.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Requirement {
    pub(crate) scopes: Vec<Scope>,
    /// Each must be the token's: two different ones are a requirement no token meets.
    pub(crate) environments: Vec<EnvironmentId>,
}

/// The requirement in the query and the headers: a 400 for an environment that is not
/// one; a 403 for scopes that no token can hold (a name that is not a scope name, more
/// than [`MAX_REQUIRED`]): a requirement that cannot be met refuses everyone, and the
/// log says why.
pub(crate) fn requirement(
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Requirement, Problem> {
    let bad = |message: String| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid_requirement", message).logged()
    };
    let unmet = |message: String| {
        Problem::new(
            StatusCode::FORBIDDEN,
            "unsatisfiable_requirement",
            format!(
                "{message}: no token can meet this requirement; correct the gateway's configuration"
            ),
        )
        .logged()
    };
    let mut names: Vec<&str> = Vec::new();
    let mut environments: Vec<&str> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "scope" => names.extend(value.split(',')),
            "environment" => environments.push(value),
            // A gateway may pass its own parameters along; they are not ours to refuse.
            _ => {}
        }
    }
    for value in headers.get_all(REQUIRED_SCOPES) {
        let value = value.to_str().map_err(|_| {
            unmet("X-Required-Scopes holds characters no scope name has".to_owned())
        })?;
        names.extend(value.split([' ', ',']));
    }
    for value in headers.get_all(REQUIRED_ENVIRONMENT) {
        environments.push(value.to_str().unwrap_or("?"));
    }
    let names: Vec<&str> = names
        .into_iter()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.len() > MAX_REQUIRED {
        return Err(unmet(format!(
            "a requirement names at most {MAX_REQUIRED} scopes; this one names {}",
            names.len()
        )));
    }
    let mut scopes = Vec::with_capacity(names.len());
    for name in names {
        // Scope names hold no character that needs percent-encoding; an encoded one is
        // refused rather than read two ways.
        let scope =
            Scope::new(name).map_err(|e| unmet(format!("a required scope is not a scope: {e}")))?;
        scopes.push(scope);
    }
    if environments.len() > 2 {
        return Err(bad(
            "name the required environment once, in the query or in the header".to_owned(),
        ));
    }
    let mut required = Vec::with_capacity(environments.len());
    for value in environments {
        let environment = apitoken::http::canonical_uuid(value)
            .map(EnvironmentId::from_uuid)
            .ok_or_else(|| {
                bad("the required environment must be a UUID in lower case with hyphens".to_owned())
            })?;
        if !required.contains(&environment) {
            required.push(environment);
        }
    }
    Ok(Requirement {
        scopes,
        environments: required,
    })
}

/// Who the token is, as `/verify` answers it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Verified<'a> {
    token_id: String,
    environment_id: String,
    scopes: Vec<&'a str>,
    created_by: String,
}

/// Check a token for a gateway
///
/// Authenticates the `Authorization` header and checks what the route behind the gateway
/// requires: the scopes in `scope` (repeated or comma-separated) or `X-Required-Scopes`
/// (space- or comma-separated), and the environment in `environment` or
/// `X-Required-Environment` (by default, the token's own). 200 says who the token is, in
/// the body and in `X-Token-Id`, `X-Environment-Id`, `X-Token-Scopes` (space-separated) and
/// `X-Created-By` for the gateway to pass on; a revoked token is refused from the moment
/// its revocation returns. For nginx, point `auth_request` at it with `proxy_method GET`
/// (see the README).
#[utoipa::path(
    get,
    path = "/verify",
    tag = "gateway",
    params(crate::openapi::VerifyQuery, crate::openapi::VerifyHeaders),
    responses(
        (status = 200, description = "The token is valid and holds what the route requires", body = crate::openapi::VerifiedToken,
            headers(
                ("X-Token-Id" = String, description = "The token's id"),
                ("X-Environment-Id" = String, description = "The token's environment"),
                ("X-Token-Scopes" = String, description = "The token's scopes, separated by spaces"),
                ("X-Created-By" = String, description = "The id of the user the token acts for"),
            )),
        (status = 400, description = "A required environment is not a UUID in lower case with hyphens, or more than two are named", body = crate::openapi::ErrorBody),
        (status = 401, description = "Missing, malformed, unknown, revoked or expired token", body = crate::openapi::ErrorBody),
        (status = 403, description = "The token lacks a required scope, or belongs to another environment than one required; or the requirement names something that is not a scope name, or more than 64 scopes, which no token meets; or (`ip_not_allowed`: the token allows other client addresses than this one, or the client's address is not known)", body = crate::openapi::ForbiddenBody),
    )
)]
pub(crate) async fn verify(
    auth: Result<Authenticated, apitoken::Error>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Authenticated(principal) = auth?;
    let required = requirement(uri.query(), &headers)?;
    principal.authorize(principal.environment(), &required.scopes)?;
    for environment in required.environments {
        principal.authorize(environment, &[])?;
    }
    let scopes: Vec<&str> = principal.scopes().iter().map(Scope::as_str).collect();
    let verified = Verified {
        token_id: principal.token_id().to_string(),
        environment_id: principal.environment().to_string(),
        created_by: principal.created_by().id.to_string(),
        scopes,
    };
    let mut response = Json(&verified).into_response();
    crate::api::no_store(&mut response);
    let answer = response.headers_mut();
    for (name, value) in [
        (TOKEN_ID, verified.token_id.clone()),
        (ENVIRONMENT_ID, verified.environment_id.clone()),
        (TOKEN_SCOPES, verified.scopes.join(" ")),
        (CREATED_BY, verified.created_by.clone()),
    ] {
        // Ids and scope names are ASCII; an empty scope list is an empty value.
        if let Ok(value) = HeaderValue::from_str(&value) {
            answer.insert(name, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(query: &str, headers: &[(&'static str, &str)]) -> Result<Requirement, u16> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        let query = (!query.is_empty()).then_some(query);
        requirement(query, &map).map_err(|p| p.into_response().status().as_u16())
    }

    fn names(r: &Requirement) -> Vec<&str> {
        r.scopes.iter().map(Scope::as_str).collect()
    }

    #[test]
    fn requirements_come_from_the_query_and_the_headers() {
        assert_eq!(read("", &[]), Ok(Requirement::default()));
        let r = read(
            "scope=a.read&scope=b.write,c&other=1",
            &[("x-required-scopes", "d e,f")],
        )
        .unwrap();
        assert_eq!(names(&r), ["a.read", "b.write", "c", "d", "e", "f"]);
        let env = "0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d";
        let envs = |r: Requirement| -> Vec<String> {
            r.environments.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            envs(read(&format!("environment={env}"), &[]).unwrap()),
            [env]
        );
        assert_eq!(
            envs(read("", &[("x-required-environment", env)]).unwrap()),
            [env]
        );
        // Named twice alike is once; two different ones are both required.
        let both = read(
            &format!("environment={env}"),
            &[("x-required-environment", env)],
        );
        assert_eq!(envs(both.unwrap()), [env]);
        let other = "0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7e";
        let two = read(&format!("environment={env}&environment={other}"), &[]);
        assert_eq!(envs(two.unwrap()), [env, other]);
        for unmet in [
            "scope=a%2Eb".to_owned(),
            "scope=a..b".to_owned(),
            format!("scope={}", "a".repeat(101)),
            vec!["scope=a"; 65].join("&"),
        ] {
            assert_eq!(read(&unmet, &[]), Err(403), "{unmet}");
        }
        assert_eq!(read("", &[("x-required-scopes", "a b!")]), Err(403));
        for bad in [
            format!("environment={}", env.to_uppercase()),
            format!("environment={env}&environment={env}&environment={env}"),
            "environment=".to_owned(),
        ] {
            assert_eq!(read(&bad, &[]), Err(400), "{bad}");
        }
    }
}
