//! Answering HTTP clients: [`status`], [`code`] and [`public_message`] map an
//! [`Error`](crate::Error) to the reference API's answer (always compiled), and, with the
//! feature `axum`, extractors that authenticate axum requests with a shared
//! [`TokenIssuer`](crate::TokenIssuer).
//!
//! - [`Authenticated`] reads `Authorization: Bearer dyn_…` and yields the
//!   [`Principal`](crate::Principal): any valid token will do.
//! - [`Authorized<R>`] also checks the environment and the scopes that the
//!   [`Requirement`] `R` names, before the handler runs.
//! - [`Error`](crate::Error) is an [`IntoResponse`], so a
//!   handler returns `Result<_, apitoken::Error>` and `?` gives the reference answers.
//!
//! A token with allowed ranges is checked against the request's [`ClientAddr`], an
//! extension the application inserts (the connection's peer, or what a proxy it trusts
//! reports); without one such a token is refused.
//!
//! The extractors find the issuer through a [`TokenAuth`], which the router's state
//! provides with axum's [`FromRef`]. A state that *is* an
//! `Arc<TokenIssuer<S>>` provides it already; an application state with more in it
//! implements `FromRef<AppState> for TokenAuth` in three lines.
//!
//! ```
//! use apitoken::http::{Authenticated, Authorized, EnvironmentRule, Requirement};
//! use apitoken::{MemoryStore, Scope, TokenIssuer};
//! use axum::{Router, routing::get};
//! use std::sync::Arc;
//!
//! /// Reading an environment's analytics needs `environment.analytics.read` in the
//! /// environment that the path names.
//! struct ReadAnalytics;
//! impl Requirement for ReadAnalytics {
//!     const SCOPES: &'static [Scope] = &[Scope::ENVIRONMENT_ANALYTICS_READ];
//!     const ENVIRONMENT: EnvironmentRule = EnvironmentRule::Path("environmentId");
//! }
//!
//! async fn analytics(auth: Authorized<ReadAnalytics>) -> String {
//!     format!("analytics of {}", auth.environment())
//! }
//!
//! async fn whoami(Authenticated(principal): Authenticated) -> String {
//!     format!("token {}", principal.token_id())
//! }
//!
//! let issuer = Arc::new(TokenIssuer::new(MemoryStore::new()));
//! let app: Router = Router::new()
//!     .route("/environments/{environmentId}/analytics", get(analytics))
//!     .route("/whoami", get(whoami))
//!     .with_state(issuer.clone());
//! # drop(app);
//! #
//! # // Run the handler as the router would, with and without a valid token.
//! # use apitoken::{Creator, EnvironmentId, IssueRequest, Note, UserId, };
//! # use apitoken::http::UNAUTHORIZED_MESSAGE;
//! # use axum::{body::{Body, to_bytes}, handler::Handler, http::{Request, StatusCode}};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! # let env = EnvironmentId::from_uuid(uuid::Uuid::from_u128(1));
//! # let me = Creator::new(UserId::from_uuid(uuid::Uuid::from_u128(2)));
//! # let issued = issuer.issue(env, me, IssueRequest::new(Note::new("docs")?)).await?;
//! # let request = Request::get("/whoami")
//! #     .header("authorization", format!("Bearer {}", issued.raw.expose_secret()))
//! #     .body(Body::empty())?;
//! # let response = Handler::call(whoami, request, issuer.clone()).await;
//! # assert_eq!(response.status(), StatusCode::OK);
//! # let request = Request::get("/whoami").body(Body::empty())?;
//! # let response = Handler::call(whoami, request, issuer.clone()).await;
//! # assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
//! # let body = to_bytes(response.into_body(), 1024).await?;
//! # assert_eq!(body, format!(r#"{{"error":"{UNAUTHORIZED_MESSAGE}"}}"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # Answers
//!
//! | when | status | body |
//! |---|---|---|
//! | no `Authorization: Bearer` header, or a malformed, unknown, revoked or expired token | 401, with `WWW-Authenticate: Bearer` | `{"error": UNAUTHORIZED_MESSAGE}`, the same for all |
//! | the token belongs to another environment, or lacks a scope | 403 | `{"error": "…"}` |
//! | the token has allowed ranges and the request's [`ClientAddr`] is outside them, or missing | 403 | `{"error": "…", "code": "ip_not_allowed"}` |
//! | the path's environment parameter is not a UUID | 400 | `{"error": "…"}` |
//! | the store is unavailable | 503, with `Retry-After: 5` | `{"error": "…"}` |
//!
//! Every [`Error`](crate::Error) answers with [`status`] and [`public_message`]; the 422
//! errors add [`code`] and a `payload` object:
//! `{"error": "…", "code": "invalid_scopes", "payload": {"unknown": […], "notHeld": […]}}`
//! (at most 10 names in each list; when there were more, `"omitted": {"unknown": n,
//! "notHeld": m}` counts the rest).
//! The response carries the full error in an [`ErrorReport`] extension, for logging
//! middleware: its message tells the four authentication failures apart and never holds
//! a presented token.
//!
// The items of the feature `axum` link to themselves when it is on, and to the
// documentation built with every feature when it is off.
#![cfg_attr(
    feature = "axum",
    doc = "[`Authenticated`]: Authenticated\n[`ClientAddr`]: ClientAddr\n[`Authorized<R>`]: Authorized\n[`Requirement`]: Requirement\n[`TokenAuth`]: TokenAuth\n[`ErrorReport`]: ErrorReport\n[`IntoResponse`]: axum::response::IntoResponse\n[`FromRef`]: axum::extract::FromRef"
)]
#![cfg_attr(
    not(feature = "axum"),
    doc = "[`Authenticated`]: https://docs.rs/apitoken/latest/apitoken/http/struct.Authenticated.html\n[`ClientAddr`]: https://docs.rs/apitoken/latest/apitoken/http/struct.ClientAddr.html\n[`Authorized<R>`]: https://docs.rs/apitoken/latest/apitoken/http/struct.Authorized.html\n[`Requirement`]: https://docs.rs/apitoken/latest/apitoken/http/trait.Requirement.html\n[`TokenAuth`]: https://docs.rs/apitoken/latest/apitoken/http/struct.TokenAuth.html\n[`ErrorReport`]: https://docs.rs/apitoken/latest/apitoken/http/struct.ErrorReport.html\n[`IntoResponse`]: https://docs.rs/axum/0.8/axum/response/trait.IntoResponse.html\n[`FromRef`]: https://docs.rs/axum/0.8/axum/extract/trait.FromRef.html"
)]

mod answer;
#[cfg(feature = "axum")]
mod auth;
mod path;
#[cfg(feature = "axum")]
mod response;

pub use answer::{UNAUTHORIZED_MESSAGE, code, public_message, status};
#[cfg(feature = "axum")]
pub use auth::{
    Authenticated, Authorized, ClientAddr, EnvironmentRule, Rejection, Requirement, TokenAuth,
};
pub use path::canonical_uuid;
#[cfg(feature = "axum")]
pub use response::{ErrorBody, ErrorReport, RETRY_AFTER_SECONDS};
