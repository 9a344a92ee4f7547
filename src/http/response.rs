//! The reference API's answer for every [`Error`], and [`ErrorReport`] for logs.

use crate::cidr::{AllowedCidrs, Cidr};
use crate::error::{Error, MAX_LISTED_SCOPES};
use crate::model::EnvironmentId;
use crate::scope::Scope;
use crate::store::StoreError;
use crate::wire::rfc3339;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;

/// The error behind an error response, kept in the response's extensions so that logging
/// middleware can record why a request failed.
///
/// ```
/// # use apitoken::http::ErrorReport;
/// # fn log(response: &axum::response::Response) {
/// if let Some(report) = response.extensions().get::<ErrorReport>() {
///     eprintln!("{} failed: {}", response.status(), report.error());
/// }
/// # }
/// ```
///
/// The message tells malformed, unknown, revoked and expired tokens apart (the answer
/// does not) and never contains a presented token, at most its checksum.
#[derive(Clone, Debug)]
pub struct ErrorReport(Arc<Error>);

impl ErrorReport {
    /// The error.
    pub fn error(&self) -> &Error {
        &self.0
    }
}

/// The body of every error answer: `{"error": message}`, plus `code` and a `payload`
/// object on a 422, and `code` on a 404, as the reference API gives them. An application
/// that answers failures of its own can use it to keep the same shape.
///
/// ```
/// use apitoken::http::ErrorBody;
/// use axum::http::StatusCode;
/// use serde_json::json;
///
/// let response = ErrorBody::new("the body is not JSON").into_response(StatusCode::BAD_REQUEST);
/// assert_eq!(response.status(), 400);
///
/// let payload = json!({"maxLength": 255});
/// let body = ErrorBody::new("the note is too long").with_details("invalid_note", &payload);
/// assert_eq!(
///     serde_json::to_value(&body).unwrap(),
///     json!({"error": "the note is too long", "code": "invalid_note", "payload": {"maxLength": 255}})
/// );
/// ```
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ErrorBody<'a, P = ()> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<P>,
}

impl<'a> ErrorBody<'a> {
    /// `{"error": error}`.
    pub fn new(error: &'a str) -> ErrorBody<'a> {
        ErrorBody {
            error,
            code: None,
            payload: None,
        }
    }
}

impl<'a, P: Serialize> ErrorBody<'a, P> {
    /// The same with a code and no payload, as a 404 has it (`not_found`).
    pub fn with_code(self, code: &'a str) -> ErrorBody<'a, P> {
        ErrorBody {
            code: Some(code),
            ..self
        }
    }

    /// The same with a code and a payload, as a 422 has them.
    pub fn with_details<Q: Serialize>(self, code: &'a str, payload: Q) -> ErrorBody<'a, Q> {
        ErrorBody {
            error: self.error,
            code: Some(code),
            payload: Some(payload),
        }
    }

    /// The JSON response with `status`.
    pub fn into_response(self, status: StatusCode) -> Response {
        (status, Json(self)).into_response()
    }
}

/// The details of a 422, for programs.
#[derive(Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    #[serde(rename_all = "camelCase")]
    Scopes {
        unknown: &'a [Scope],
        not_held: &'a [Scope],
        /// How many names each list left out (present only when some were).
        #[serde(skip_serializing_if = "Omitted::is_none")]
        omitted: Omitted,
    },
    #[serde(rename_all = "camelCase")]
    Limit {
        project_environment_id: EnvironmentId,
        limit: u32,
    },
    #[serde(rename_all = "camelCase")]
    Expiry {
        /// The requested expiry, `null` when none was given and one is required.
        #[serde(with = "rfc3339::option")]
        expires_at: Option<DateTime<Utc>>,
        #[serde(with = "rfc3339")]
        now: DateTime<Utc>,
        /// The latest expiry allowed when one is (the creating token's expiry, the
        /// environment's maximum lifetime from now, whichever is earlier), else `null`:
        /// the keys are always there, so the payload has one shape.
        #[serde(with = "rfc3339::option")]
        latest: Option<DateTime<Utc>>,
    },
    #[serde(rename_all = "camelCase")]
    Cidrs {
        not_covered: &'a [Cidr],
        allowed: &'a AllowedCidrs,
    },
    Empty {},
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Omitted {
    unknown: usize,
    not_held: usize,
}

impl Omitted {
    fn is_none(&self) -> bool {
        self.unknown == 0 && self.not_held == 0
    }
}

fn payload(e: &Error) -> Payload<'_> {
    match e {
        Error::InvalidScopes { unknown, not_held } => {
            let listed = |scopes: &[Scope]| scopes.len().min(MAX_LISTED_SCOPES);
            Payload::Scopes {
                unknown: &unknown[..listed(unknown)],
                not_held: &not_held[..listed(not_held)],
                omitted: Omitted {
                    unknown: unknown.len() - listed(unknown),
                    not_held: not_held.len() - listed(not_held),
                },
            }
        }
        Error::Store(
            StoreError::LimitReached { environment, limit }
            | StoreError::EnvironmentFull { environment, limit }
            | StoreError::TooManyDelegated {
                environment, limit, ..
            },
        ) => Payload::Limit {
            project_environment_id: *environment,
            limit: *limit,
        },
        Error::InvalidExpiry {
            expires_at,
            now,
            latest,
        } => Payload::Expiry {
            expires_at: *expires_at,
            now: *now,
            latest: *latest,
        },
        Error::InvalidAllowedCidrs {
            not_covered,
            allowed,
        } => Payload::Cidrs {
            not_covered,
            allowed,
        },
        _ => Payload::Empty {},
    }
}

/// `{"error": message}` with `status`.
pub(super) fn error_response(status: StatusCode, message: &str) -> Response {
    ErrorBody::new(message).into_response(status)
}

/// How long a client should wait before retrying a 503, in seconds (`Retry-After`).
pub const RETRY_AFTER_SECONDS: &str = "5";

/// `{"error": …}` with [`status`](super::status) and [`public_message`](super::public_message): one identical 401
/// for every authentication failure (with `WWW-Authenticate: Bearer`), 403, 404, 409, 503
/// when the store is unavailable (with `Retry-After: 5`), 500 for other store failures;
/// 404 answers add `"code": "not_found"`, the 403 for a client address the token does
/// not allow `"code": "ip_not_allowed"`; 422 answers add `code` and a `payload` object
/// (`invalid_scopes` lists at most
/// [`MAX_LISTED_SCOPES`] names of each kind, and says in
/// `omitted` how many it left out). The error itself goes along in an [`ErrorReport`]
/// extension.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(super::status(&self)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = super::public_message(&self);
        let code = super::code(&self);
        // Only a 422 explains itself to programs; a 404's code names the kind alone.
        let payload = (status == StatusCode::UNPROCESSABLE_ENTITY).then(|| payload(&self));
        let body = ErrorBody {
            error: &message,
            code,
            payload,
        };
        let mut response = body.into_response(status);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The store's pool waits up to a few seconds for the database on each try, so
            // an immediate retry only adds load.
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
            .extensions_mut()
            .insert(ErrorReport(Arc::new(self)));
        response
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::http::UNAUTHORIZED_MESSAGE;
    use crate::model::{EnvironmentId, TokenId};
    use crate::scope::Scope;
    use crate::store::StoreError;
    use axum::body::to_bytes;
    use axum::response::IntoResponse;
    use uuid::Uuid;

    async fn answer(e: Error) -> (u16, Option<String>, String) {
        let response = e.into_response();
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(response.headers()["content-type"], "application/json");
        let body = to_bytes(response.into_body(), 4096).await.unwrap();
        (status, challenge, String::from_utf8(body.to_vec()).unwrap())
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn every_error_has_its_reference_answer() {
        block_on(async {
            let id = TokenId::from_uuid(Uuid::from_u128(7));
            let environment = EnvironmentId::from_uuid(Uuid::from_u128(1));
            let unauthorized = format!(r#"{{"error":"{UNAUTHORIZED_MESSAGE}"}}"#);
            for e in [
                Error::Revoked {
                    id,
                    revoked_at: None,
                },
                Error::Expired {
                    id,
                    expired_at: chrono::DateTime::UNIX_EPOCH,
                },
            ] {
                assert_eq!(
                    answer(e).await,
                    (401, Some("Bearer".to_owned()), unauthorized.clone())
                );
            }
            let (status, challenge, body) = answer(Error::MissingScope {
                id,
                scope: Scope::ENVIRONMENT_API_TOKENS_WRITE,
            })
            .await;
            assert_eq!((status, challenge), (403, None));
            assert!(body.starts_with(r#"{"error":"token "#), "{body}");

            let (status, challenge, body) = answer(Error::IpNotAllowed {
                id,
                client: Some("192.0.2.1".parse().unwrap()),
            })
            .await;
            assert_eq!((status, challenge), (403, None));
            assert!(
                body.contains("may not be used from 192.0.2.1")
                    && body.ends_with(r#","code":"ip_not_allowed"}"#),
                "{body}"
            );
            let (status, _, body) = answer(Error::InvalidAllowedCidrs {
                not_covered: vec!["192.0.2.0/24".parse().unwrap()],
                allowed: crate::cidr::AllowedCidrs::parse("10.0.0.0/8").unwrap(),
            })
            .await;
            assert_eq!(status, 422);
            assert!(
                body.ends_with(
                    r#""code":"invalid_allowed_cidrs","payload":{"notCovered":["192.0.2.0/24"],"allowed":["10.0.0.0/8"]}}"#
                ),
                "{body}"
            );

            let (status, _, body) = answer(Error::InvalidScopes {
                unknown: vec![Scope::new("gasless.read").unwrap()],
                not_held: vec![],
            })
            .await;
            assert_eq!(status, 422);
            assert!(
                body.ends_with(
                    r#""code":"invalid_scopes","payload":{"unknown":["gasless.read"],"notHeld":[]}}"#
                ),
                "{body}"
            );
            let (status, _, body) = answer(Error::Store(StoreError::LimitReached {
                environment,
                limit: 3,
            }))
            .await;
            assert_eq!(status, 422);
            assert!(
                body.ends_with(r#""code":"too_many_api_tokens","payload":{"projectEnvironmentId":"00000000-0000-0000-0000-000000000001","limit":3}}"#),
                "{body}"
            );
            let (status, _, body) =
                answer(Error::Store(StoreError::NotFound { environment, id })).await;
            assert_eq!(status, 404);
            assert_eq!(
                body,
                format!(
                    r#"{{"error":"no token {id} in environment {environment}","code":"not_found"}}"#
                ),
                "a 404 names its kind, as Dynamic's client requires, without a payload"
            );
            let (status, _, body) = answer(Error::Store(StoreError::Unavailable {
                source: "connection refused at 10.0.0.1".into(),
            }))
            .await;
            assert_eq!(status, 503);
            assert_eq!(
                body,
                r#"{"error":"the token service is temporarily unavailable; retry later"}"#
            );
        });
    }

    #[test]
    fn a_store_outage_says_when_to_retry() {
        let response = Error::Store(StoreError::Unavailable {
            source: "connection refused".into(),
        })
        .into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(
            response.headers()["retry-after"],
            super::RETRY_AFTER_SECONDS
        );
        let other = Error::Store(StoreError::Backend {
            source: "syntax error".into(),
        })
        .into_response();
        assert!(other.headers().get("retry-after").is_none());
    }

    #[test]
    fn many_bad_scopes_get_a_short_answer() {
        let many = |prefix: &str| -> Vec<Scope> {
            (0..1_000)
                .map(|i| Scope::new(&format!("{prefix}.s{i}")).unwrap())
                .collect()
        };
        let error = Error::InvalidScopes {
            unknown: many("unknown"),
            not_held: many("held"),
        };
        let message = error.to_string();
        assert!(message.len() < 600, "{} bytes: {message}", message.len());
        assert!(message.contains("`unknown.s9` and 990 more;"), "{message}");
        assert!(!message.contains("unknown.s10`"), "{message}");
        let (status, _, body) = block_on(answer(error));
        assert_eq!(status, 422);
        assert!(body.len() < 1_500, "{} bytes: {body}", body.len());
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let payload = &json["payload"];
        assert_eq!(payload["unknown"].as_array().unwrap().len(), 10);
        assert_eq!(payload["notHeld"].as_array().unwrap().len(), 10);
        assert_eq!(
            payload["omitted"],
            serde_json::json!({"unknown": 990, "notHeld": 990})
        );
    }

    #[test]
    fn the_error_goes_along_for_logs() {
        let response = Error::Store(StoreError::NotFound {
            environment: EnvironmentId::from_uuid(Uuid::nil()),
            id: TokenId::from_uuid(Uuid::nil()),
        })
        .into_response();
        let report = response.extensions().get::<super::ErrorReport>().unwrap();
        assert!(matches!(
            report.error(),
            Error::Store(StoreError::NotFound { .. })
        ));
    }
}
