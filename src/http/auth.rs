//! [`TokenAuth`], the [`Authenticated`] and [`Authorized`] extractors and their
//! [`Rejection`].

use super::response::error_response;
use crate::error::Error;
use crate::issuer::{TokenIssuer, bearer_token};
use crate::model::EnvironmentId;
use crate::principal::Principal;
use crate::scope::Scope;
use crate::store::TokenStore;
use async_trait::async_trait;
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{PathRejection, RawPathParamsRejection};
use axum::extract::{FromRef, FromRequestParts, Path, RawPathParams};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use core::fmt;
use core::marker::PhantomData;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

/// What the extractors need from an issuer, without its store type.
#[async_trait]
trait Authenticate: Send + Sync + 'static {
    async fn authenticate(&self, token: &str, client: Option<IpAddr>) -> Result<Principal, Error>;
}

#[async_trait]
impl<S: TokenStore + 'static> Authenticate for TokenIssuer<S> {
    async fn authenticate(&self, token: &str, client: Option<IpAddr>) -> Result<Principal, Error> {
        TokenIssuer::authenticate_client(self, token, client).await
    }
}

/// The client's address, which the application puts in each request's extensions for the
/// extractors to authenticate with ([`TokenIssuer::authenticate_from`]): the peer of the
/// connection, or the address a proxy it trusts reports (the library reads neither
/// itself: only the application knows which proxies to believe). Without it, a token with
/// allowed ranges is refused (403 `ip_not_allowed`), as
/// [`TokenIssuer::authenticate`] refuses it.
///
/// With axum's own server, a middleware can insert it from `ConnectInfo<SocketAddr>`
/// (served with `into_make_service_with_connect_info::<SocketAddr>()`); behind a reverse
/// proxy, from the forwarded address once the peer is known to be that proxy.
///
/// ```
/// use apitoken::http::{Authenticated, ClientAddr};
/// use apitoken::{AllowedCidrs, Creator, EnvironmentId, IssueRequest, MemoryStore, Note, TokenIssuer, UserId};
/// use axum::body::Body;
/// use axum::handler::Handler;
/// use axum::http::{Request, StatusCode};
/// use std::sync::Arc;
///
/// async fn whoami(Authenticated(principal): Authenticated) -> String {
///     principal.token_id().to_string()
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let issuer = Arc::new(TokenIssuer::new(MemoryStore::new()));
/// let env = EnvironmentId::from_uuid(uuid::Uuid::from_u128(1));
/// let me = Creator::new(UserId::from_uuid(uuid::Uuid::from_u128(2)));
/// let request = IssueRequest::new(Note::new("office")?).allowed_from(AllowedCidrs::parse("10.0.0.0/8")?);
/// let issued = issuer.issue(env, me, request).await?;
/// let from = |address: Option<&str>| {
///     let mut request = Request::get("/whoami")
///         .header("authorization", format!("Bearer {}", issued.raw.expose_secret()))
///         .body(Body::empty())
///         .unwrap();
///     if let Some(address) = address {
///         request.extensions_mut().insert(ClientAddr(address.parse().unwrap()));
///     }
///     request
/// };
/// let inside = Handler::call(whoami, from(Some("10.1.2.3")), issuer.clone()).await;
/// assert_eq!(inside.status(), StatusCode::OK);
/// let outside = Handler::call(whoami, from(Some("192.0.2.1")), issuer.clone()).await;
/// assert_eq!(outside.status(), StatusCode::FORBIDDEN);
/// let unknown = Handler::call(whoami, from(None), issuer.clone()).await;
/// assert_eq!(unknown.status(), StatusCode::FORBIDDEN);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// A shared [`TokenIssuer`], whatever its store, as the extractors find it in the router's
/// state. Cloning it bumps a reference count.
///
/// A state that is an `Arc<TokenIssuer<S>>` provides it as it is. For an application state,
/// say how to get it:
///
/// ```
/// use apitoken::http::TokenAuth;
/// use apitoken::{MemoryStore, TokenIssuer};
/// use axum::extract::FromRef;
/// use std::sync::Arc;
///
/// #[derive(Clone)]
/// struct AppState {
///     issuer: Arc<TokenIssuer<MemoryStore>>,
///     // …the application's own handles
/// }
///
/// impl FromRef<AppState> for TokenAuth {
///     fn from_ref(state: &AppState) -> TokenAuth {
///         TokenAuth::new(state.issuer.clone())
///     }
/// }
/// ```
#[derive(Clone)]
pub struct TokenAuth {
    issuer: Arc<dyn Authenticate>,
}

impl TokenAuth {
    /// The handle on `issuer`.
    pub fn new<S: TokenStore + 'static>(issuer: Arc<TokenIssuer<S>>) -> TokenAuth {
        TokenAuth { issuer }
    }

    /// Authenticates a raw token without the client's address (see
    /// [`TokenIssuer::authenticate`]).
    pub async fn authenticate(&self, token: &str) -> Result<Principal, Error> {
        self.issuer.authenticate(token, None).await
    }

    /// Authenticates a raw token presented from `client` (see
    /// [`TokenIssuer::authenticate_from`]).
    pub async fn authenticate_from(&self, token: &str, client: IpAddr) -> Result<Principal, Error> {
        self.issuer.authenticate(token, Some(client)).await
    }

    /// The principal of the request's bearer token, authenticated once per request from
    /// the request's [`ClientAddr`], if any: the result is kept in the request's
    /// extensions for the next extractor.
    async fn principal(&self, parts: &mut Parts) -> Result<Principal, Error> {
        if let Some(CachedPrincipal(principal)) = parts.extensions.get::<CachedPrincipal>() {
            return Ok(principal.clone());
        }
        let client = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        let principal = self.issuer.authenticate(bearer(parts), client).await?;
        parts.extensions.insert(CachedPrincipal(principal.clone()));
        Ok(principal)
    }
}

impl fmt::Debug for TokenAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenAuth").finish_non_exhaustive()
    }
}

impl<S: TokenStore + 'static> From<Arc<TokenIssuer<S>>> for TokenAuth {
    fn from(issuer: Arc<TokenIssuer<S>>) -> TokenAuth {
        TokenAuth::new(issuer)
    }
}

impl<S: TokenStore + 'static> FromRef<Arc<TokenIssuer<S>>> for TokenAuth {
    fn from_ref(issuer: &Arc<TokenIssuer<S>>) -> TokenAuth {
        TokenAuth::new(issuer.clone())
    }
}

/// A principal already authenticated for this request. Private, so that nothing else can
/// put one in the extensions.
#[derive(Clone)]
struct CachedPrincipal(Principal);

/// The token of the request's one `Authorization: Bearer <token>` header (read by
/// [`bearer_token`]); the empty string, which never authenticates, for anything else (no
/// header, several, another scheme, bytes that are not text).
fn bearer(parts: &Parts) -> &str {
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return "";
    };
    value
        .to_str()
        .ok()
        .and_then(bearer_token)
        .unwrap_or_default()
}

/// Any valid token: well-formed, known, not revoked, not expired, and used from an
/// address it allows (the request's [`ClientAddr`]).
///
/// Rejects with a 401, or a 403 `ip_not_allowed` (see the [module documentation](super)
/// for every answer). Use
/// [`Authorized`] to check the environment and scopes too, or check them in the handler
/// with [`Principal::authorize`].
#[derive(Clone, Debug)]
pub struct Authenticated(pub Principal);

impl<St> FromRequestParts<St> for Authenticated
where
    TokenAuth: FromRef<St>,
    St: Send + Sync,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        TokenAuth::from_ref(state)
            .principal(parts)
            .await
            .map(Authenticated)
    }
}

/// Which environment a token must belong to, for [`Requirement::ENVIRONMENT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvironmentRule {
    /// The environment the route's path parameter of this name holds, such as
    /// `"environmentId"` for `/environments/{environmentId}/tokens`. A value that is not a
    /// UUID is answered with a 400 (after authentication); a route without the parameter
    /// is a programming error, answered with a 500.
    Path(&'static str),
    /// This environment: a service that serves one.
    Fixed(EnvironmentId),
    /// The token's own, whichever it is: for routes that act in the caller's environment
    /// (such as `/user/tokens`) and never take one from the request.
    Any,
}

/// What a route requires of a token, as a type for [`Authorized`].
///
/// ```
/// use apitoken::http::{EnvironmentRule, Requirement};
/// use apitoken::Scope;
///
/// /// Create and delete tokens in the environment of the path.
/// struct WriteTokens;
/// impl Requirement for WriteTokens {
///     const SCOPES: &'static [Scope] = &[Scope::ENVIRONMENT_API_TOKENS_WRITE];
///     const ENVIRONMENT: EnvironmentRule = EnvironmentRule::Path("environmentId");
/// }
/// ```
pub trait Requirement: Send + Sync + 'static {
    /// Every scope the token must hold.
    const SCOPES: &'static [Scope];
    /// The environment it must belong to.
    const ENVIRONMENT: EnvironmentRule;
}

/// A valid token of the environment that `R` names, holding every scope `R` names.
///
/// Rejects with a 401 when authentication fails, a 403 for another environment or a
/// missing scope (see the [module documentation](super)). Authentication comes first, so
/// a caller without a valid token learns nothing about the route.
pub struct Authorized<R> {
    principal: Principal,
    environment: EnvironmentId,
    requirement: PhantomData<fn() -> R>,
}

impl<R> Authorized<R> {
    /// Who the token is.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The environment the request acts in (the token's own).
    pub fn environment(&self) -> EnvironmentId {
        self.environment
    }

    /// The principal, for passing on (to [`TokenIssuer::issue`] as the caller, say).
    pub fn into_principal(self) -> Principal {
        self.principal
    }
}

impl<R> Clone for Authorized<R> {
    fn clone(&self) -> Self {
        Authorized {
            principal: self.principal.clone(),
            environment: self.environment,
            requirement: PhantomData,
        }
    }
}

impl<R> fmt::Debug for Authorized<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorized")
            .field("principal", &self.principal)
            .field("environment", &self.environment)
            .finish()
    }
}

impl<St, R> FromRequestParts<St> for Authorized<R>
where
    TokenAuth: FromRef<St>,
    St: Send + Sync,
    R: Requirement,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        let principal = TokenAuth::from_ref(state).principal(parts).await?;
        let environment = match R::ENVIRONMENT {
            EnvironmentRule::Path(name) => path_environment(parts, name).await?,
            EnvironmentRule::Fixed(environment) => environment,
            EnvironmentRule::Any => principal.environment(),
        };
        principal.authorize(environment, R::SCOPES)?;
        Ok(Authorized {
            principal,
            environment,
            requirement: PhantomData,
        })
    }
}

async fn path_environment(
    parts: &mut Parts,
    name: &'static str,
) -> Result<EnvironmentId, Rejection> {
    let params = match RawPathParams::from_request_parts(parts, &()).await {
        Ok(params) => params,
        // Percent-encoded bytes that are not UTF-8: not a UUID either. They may be in
        // another parameter of the route (`…/tokens/%FF`): blame that one.
        Err(RawPathParamsRejection::InvalidUtf8InPathParam(_)) => {
            let name = invalid_utf8_parameter(parts)
                .await
                .map_or(Cow::Borrowed(name), Cow::Owned);
            return Err(Rejection::InvalidPathParameter { name });
        }
        Err(_) => return Err(Rejection::MissingPathParameter { name }),
    };
    let value = params
        .iter()
        .find_map(|(key, value)| (key == name).then_some(value))
        .ok_or(Rejection::MissingPathParameter { name })?;
    super::canonical_uuid(value)
        .map(EnvironmentId::from_uuid)
        .ok_or(Rejection::InvalidPathParameter {
            name: Cow::Borrowed(name),
        })
}

/// The first path parameter whose percent-decoded bytes are not UTF-8.
async fn invalid_utf8_parameter(parts: &mut Parts) -> Option<String> {
    match Path::<Vec<(String, String)>>::from_request_parts(parts, &()).await {
        Err(PathRejection::FailedToDeserializePathParams(e)) => match e.into_kind() {
            ErrorKind::InvalidUtf8InPathParam { key } => Some(key),
            _ => None,
        },
        _ => None,
    }
}

/// Why [`Authorized`] refused a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Rejection {
    /// Authentication or authorization failed: 401 or 403 (503 or 500 when the store
    /// failed), answered as the error itself is.
    Token(Error),
    /// A path parameter is not a UUID: 400. Usually the one naming the environment; another
    /// of the route's parameters when its bytes are not even UTF-8 (nothing can be read
    /// from the path then).
    InvalidPathParameter {
        /// The parameter's name.
        name: Cow<'static, str>,
    },
    /// The route has no path parameter of the name its [`Requirement`] gives: a mistake
    /// in the application, answered with a 500.
    MissingPathParameter {
        /// The parameter's name.
        name: &'static str,
    },
}

impl From<Error> for Rejection {
    fn from(e: Error) -> Self {
        Rejection::Token(e)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Token(e) => fmt::Display::fmt(e, f),
            Rejection::InvalidPathParameter { name } => write!(
                f,
                "the path parameter `{name}` must be a UUID in lower case with hyphens, such as 0190a5c4-7d3e-7b5a-9c1d-2e3f4a5b6c7d"
            ),
            Rejection::MissingPathParameter { name } => write!(
                f,
                "this route has no path parameter `{name}`, which its requirement names: fix the route or the requirement's EnvironmentRule"
            ),
        }
    }
}

impl std::error::Error for Rejection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Rejection::Token(e) => Some(e),
            _ => None,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Rejection::Token(e) => e.into_response(),
            other @ Rejection::InvalidPathParameter { .. } => {
                error_response(StatusCode::BAD_REQUEST, &other.to_string())
            }
            other @ Rejection::MissingPathParameter { .. } => {
                error_response(StatusCode::INTERNAL_SERVER_ERROR, &other.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bearer;
    use axum::http::Request;

    fn parts(headers: &[&[u8]]) -> axum::http::request::Parts {
        let mut request = Request::builder();
        for value in headers {
            request = request.header("authorization", *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_one_bearer_header_is_read() {
        assert_eq!(bearer(&parts(&[b"Bearer dyn_x"])), "dyn_x");
        assert_eq!(bearer(&parts(&[b"bearer \t dyn_x "])), "dyn_x");
        assert_eq!(bearer(&parts(&[b"BEARER dyn_x"])), "dyn_x");
        assert_eq!(bearer(&parts(&[])), "");
        assert_eq!(bearer(&parts(&[b"dyn_x"])), "");
        assert_eq!(bearer(&parts(&[b"Basic dyn_x"])), "");
        assert_eq!(bearer(&parts(&[b"Bearer"])), "");
        assert_eq!(bearer(&parts(&[b"Bearer dyn_x", b"Bearer dyn_y"])), "");
        assert_eq!(bearer(&parts(&[b"Bearer dyn_\xff"])), "");
    }
}
