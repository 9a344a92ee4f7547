//! The answers the server gives itself (the library answers for [`apitoken::Error`]), in
//! the library's [`ErrorBody`]: `{"error": …}`, plus `code` and `payload` for a 422.

use apitoken::http::ErrorBody;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A failure of the request itself: its body, its content type, a path id.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    /// A fixed name for the kind of failure: what the logs show.
    kind: &'static str,
    error: String,
    /// The code the answer carries (a 422's, or `not_found`).
    code: Option<&'static str>,
    /// A 422's payload. Boxed: a Value with ordered keys is large, and a Problem travels
    /// in `Result`s.
    payload: Option<Box<serde_json::Value>>,
    /// Whether the log line gives the message as the reason (only for messages that
    /// repeat nothing the client sent).
    logged: bool,
    /// Seconds to wait before asking again, for a 429 or 503.
    retry_after: Option<HeaderValue>,
}

/// The kind of a [`Problem`], in the response's extensions for the request log (fixed
/// strings: nothing the client sent), and the reason to log with it, if any.
#[derive(Clone, Debug)]
pub(crate) struct ProblemKind(pub(crate) &'static str, pub(crate) Option<String>);

impl Problem {
    /// `{"error": …}` with `status`.
    pub(crate) fn new(status: StatusCode, kind: &'static str, error: impl Into<String>) -> Problem {
        Problem {
            status,
            kind,
            error: error.into(),
            code: None,
            payload: None,
            logged: false,
            retry_after: None,
        }
    }

    /// A 404, with the code Dynamic's client requires.
    pub(crate) fn not_found(kind: &'static str, error: impl Into<String>) -> Problem {
        Problem {
            code: Some("not_found"),
            ..Problem::new(StatusCode::NOT_FOUND, kind, error)
        }
    }

    /// The same, with the message logged as the reason: only for messages written by the
    /// server alone.
    pub(crate) fn logged(self) -> Problem {
        Problem {
            logged: true,
            ..self
        }
    }

    /// A 422 with `code` (also the kind) and `payload`.
    pub(crate) fn unprocessable(
        code: &'static str,
        error: impl Into<String>,
        payload: serde_json::Value,
    ) -> Problem {
        Problem::detailed(StatusCode::UNPROCESSABLE_ENTITY, code, error, payload)
    }

    /// `status` with `code` (also the kind) and `payload`, in the shape of a 422: for an
    /// answer a program acts on (a 410's cursor to resume from).
    pub(crate) fn detailed(
        status: StatusCode,
        code: &'static str,
        error: impl Into<String>,
        payload: serde_json::Value,
    ) -> Problem {
        Problem {
            status,
            kind: code,
            error: error.into(),
            code: Some(code),
            payload: Some(Box::new(payload)),
            logged: false,
            retry_after: None,
        }
    }

    /// The same, answered with `Retry-After: seconds`.
    pub(crate) fn retry_after(self, seconds: HeaderValue) -> Problem {
        Problem {
            retry_after: Some(seconds),
            ..self
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(&self.error);
        let mut response = match (self.code, &self.payload) {
            (Some(code), Some(payload)) => body
                .with_details(code, payload.as_ref())
                .into_response(self.status),
            (Some(code), None) => body.with_code(code).into_response(self.status),
            (None, _) => body.into_response(self.status),
        };
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        let reason = self.logged.then(|| self.error.clone());
        response
            .extensions_mut()
            .insert(ProblemKind(self.kind, reason));
        response
    }
}

/// What a handler fails with.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// The library's errors, answered by its own mapping.
    Token(apitoken::Error),
    /// The server's.
    Problem(Problem),
}

impl From<apitoken::Error> for ApiError {
    fn from(e: apitoken::Error) -> Self {
        ApiError::Token(e)
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError::Problem(p)
    }
}

/// What the [`Authorized`](apitoken::http::Authorized) extractor refused: the library's
/// errors answered as the library does; a path parameter that is not a UUID with a 400
/// naming it, and logged with its reason.
impl From<apitoken::http::Rejection> for ApiError {
    fn from(rejection: apitoken::http::Rejection) -> Self {
        use apitoken::http::Rejection;
        match rejection {
            Rejection::Token(e) => ApiError::Token(e),
            other @ Rejection::InvalidPathParameter { .. } => ApiError::Problem(
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_path_parameter",
                    other.to_string(),
                )
                .logged(),
            ),
            other => ApiError::Problem(
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "route",
                    other.to_string(),
                )
                .logged(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Token(e) => e.into_response(),
            ApiError::Problem(p) => p.into_response(),
        }
    }
}
