//! The answers the server gives itself (the library answers for [`apitoken::Error`]), in
//! the same shapes: `{"error": …}`, plus `code` and `payload` for a 422.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A failure of the request itself: its body, its content type, a path id.
#[derive(Debug)]
pub(crate) struct Problem {
    status: StatusCode,
    /// A fixed name for the kind of failure: what the logs show.
    kind: &'static str,
    error: String,
    code: Option<&'static str>,
    payload: Option<serde_json::Value>,
}

/// The kind of a [`Problem`], in the response's extensions for the request log. Fixed
/// strings: nothing the client sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProblemKind(pub(crate) &'static str);

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a serde_json::Value>,
}

impl Problem {
    /// `{"error": …}` with `status`.
    pub(crate) fn new(status: StatusCode, kind: &'static str, error: impl Into<String>) -> Problem {
        Problem {
            status,
            kind,
            error: error.into(),
            code: None,
            payload: None,
        }
    }

    /// A 422 with `code` (also the kind) and `payload`.
    pub(crate) fn unprocessable(
        code: &'static str,
        error: impl Into<String>,
        payload: serde_json::Value,
    ) -> Problem {
        Problem {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: code,
            error: error.into(),
            code: Some(code),
            payload: Some(payload),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.error,
            code: self.code,
            payload: self.payload.as_ref(),
        };
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(ProblemKind(self.kind));
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Token(e) => e.into_response(),
            ApiError::Problem(p) => p.into_response(),
        }
    }
}
