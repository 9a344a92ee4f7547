//! The bodies of a create request, `PostTokenFields`, and of a rotation,
//! `RotateTokenFields`, read and checked field by field so that each mistake gets its own
//! answer.

use crate::problem::Problem;
use apitoken::MAX_LISTED_SCOPES;
use apitoken::MAX_NOTE_CHARS;
use apitoken::MAX_SCOPE_LEN;
use apitoken::{
    AllowedCidrs, Cidr, CidrError, IssueRequest, MAX_ALLOWED_CIDRS, Note, Scope, Scopes,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// The largest request body accepted, in bytes.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024;

/// The most entries `scopes` may have: the catalog is small (14 reference scopes), and an
/// error must not repeat thousands of names.
pub(crate) const MAX_REQUEST_SCOPES: usize = 64;

/// A checked `PostTokenFields` body: `{"note": …, "scopes": […], "expiresAt": …}`.
///
/// - 415 unless the content type is `application/json` (or `application/…+json`);
/// - 413 past [`MAX_BODY_BYTES`];
/// - 400 for anything that is not a JSON object;
/// - 400 for a note that is not what the published contract says (required, a string of 1
///   to 100 characters, no control or invisible characters, no token in it): Dynamic's
///   client decodes a 400 `{"error": …}` as its `BadRequest`, and its 422 codes have no
///   `invalid_note`;
/// - 422 `invalid_scopes`, `invalid_expires_at` or `invalid_allowed_cidrs` for those
///   fields (`allowedCidrs`: an array of 1 to 32 ranges such as `10.0.0.0/8`, read as
///   [`apitoken::Cidr`] reads them). Unknown fields are ignored.
///
/// Whether the scopes are in the catalog and held by the caller is the issuer's check.
#[derive(Debug)]
pub(crate) struct NewToken(pub(crate) IssueRequest);

impl<S: Send + Sync> FromRequest<S> for NewToken {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(request, state).await?;
        parse(&bytes).map(NewToken)
    }
}

/// The bytes of a JSON body: 415 unless the content type says JSON, then [`bytes`].
async fn json_bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, Problem> {
    if !is_json(request.headers().get(header::CONTENT_TYPE)) {
        return Err(not_json());
    }
    bytes(request, state).await
}

pub(crate) fn not_json() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the body must be JSON: send `Content-Type: application/json`",
    )
}

/// The body's bytes: 413 past [`MAX_BODY_BYTES`], 400 if it cannot be read.
async fn bytes<S: Send + Sync>(request: Request, state: &S) -> Result<Bytes, Problem> {
    Bytes::from_request(request, state)
        .await
        .map_err(unreadable)
}

/// Why a body could not be read: 413 past [`MAX_BODY_BYTES`], 400 otherwise.
pub(crate) fn unreadable(e: BytesRejection) -> Problem {
    unreadable_within(e, MAX_BODY_BYTES)
}

/// Why a body could not be read on a route whose limit is `limit` bytes (set with its
/// own `DefaultBodyLimit`): 413 past it, 400 otherwise.
pub(crate) fn unreadable_within(e: BytesRejection, limit: usize) -> Problem {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is too large: at most {limit} bytes"),
        )
    } else {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "unreadable_body",
            "the request body could not be read: send it again",
        )
    }
}

/// The longest grace period a rotation over HTTP may give the token it replaces: 30 days.
pub(crate) const MAX_GRACE_SECONDS: u64 = 30 * 24 * 60 * 60;

/// A checked `RotateTokenFields` body, `{"gracePeriodSeconds": …}`: how long the replaced
/// token keeps working. The body is optional: none (or an empty one, whatever its content
/// type) or a JSON `null` means 0, the old token stops at once, as the CLI's `rotate`
/// does.
///
/// - 415 for a body whose content type is not JSON, 413 past [`MAX_BODY_BYTES`];
/// - 400 for anything that is not a JSON object, and for a `gracePeriodSeconds` that is not
///   a whole number from 0 to [`MAX_GRACE_SECONDS`] (the published contract's bounds).
///   Unknown fields are ignored.
#[derive(Debug)]
pub(crate) struct Rotation(pub(crate) Duration);

impl<S: Send + Sync> FromRequest<S> for Rotation {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = is_json(request.headers().get(header::CONTENT_TYPE));
        let bytes = bytes(request, state).await?;
        if bytes.is_empty() {
            Ok(Rotation(Duration::ZERO))
        } else if !json {
            Err(not_json())
        } else {
            parse_rotation(&bytes).map(Rotation)
        }
    }
}

/// The grace period in a rotation's body. The messages repeat nothing the client sent.
pub(crate) fn parse_rotation(bytes: &[u8]) -> Result<Duration, Problem> {
    let value = json(bytes)?;
    let mut fields = match value {
        Value::Object(fields) => fields,
        // The document's schema is the object or null, as for an absent body.
        Value::Null => return Ok(Duration::ZERO),
        _ => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed_json",
                r#"the body must be a JSON object such as {"gracePeriodSeconds": 3600}, or absent"#,
            ));
        }
    };
    match fields.remove("gracePeriodSeconds") {
        None | Some(Value::Null) => Ok(Duration::ZERO),
        // A whole number written as 3600.0 is an integer to JSON Schema too.
        Some(Value::Number(n)) => match n.as_u64().or_else(|| whole(n.as_f64())) {
            Some(seconds) if seconds <= MAX_GRACE_SECONDS => Ok(Duration::from_secs(seconds)),
            _ => Err(invalid_grace()),
        },
        Some(_) => Err(invalid_grace()),
    }
}

fn whole(n: Option<f64>) -> Option<u64> {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    n.filter(|n| n.fract() == 0.0 && (0.0..=MAX_GRACE_SECONDS as f64).contains(n))
        .map(|n| n as u64)
}

fn invalid_grace() -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid_grace_period",
        format!(
            "gracePeriodSeconds must be a whole number of seconds from 0 (the old token stops at once) to {MAX_GRACE_SECONDS} (30 days)"
        ),
    )
    .logged()
}

pub(crate) fn is_json(content_type: Option<&header::HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype
                .get(subtype.len().saturating_sub(5)..)
                .is_some_and(|end| end.eq_ignore_ascii_case("+json")))
}

/// The JSON value in `bytes`; a 400 `malformed_json` otherwise (serde_json's messages give
/// only a position and what was expected).
fn json(bytes: &[u8]) -> Result<Value, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// The request in `bytes`. The messages never repeat a value the client sent, except the
/// scope names (which the reference's answer lists too).
pub(crate) fn parse(bytes: &[u8]) -> Result<IssueRequest, Problem> {
    let value = json(bytes)?;
    let Value::Object(mut fields) = value else {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            r#"the body must be a JSON object such as {"note": "CI deploys", "scopes": ["environment.apiTokens.read"]}"#,
        ));
    };
    let note = note(fields.remove("note"))?;
    let scopes = scopes(fields.remove("scopes"))?;
    let mut request = IssueRequest::new(note).with_scopes(scopes);
    if let Some(at) = expires_at(&mut fields)? {
        request = request.expires_at(at);
    }
    if let Some(ranges) = allowed_cidrs(fields.remove("allowedCidrs"))? {
        request = request.allowed_from(ranges);
    }
    Ok(request)
}

/// `invalid_allowed_cidrs` with the payload the issuer gives for a range wider than the
/// creating token's: here `notCovered` is empty and `allowed` null (no range was read).
fn invalid_allowed_cidrs(message: impl Into<String>) -> Problem {
    Problem::unprocessable(
        "invalid_allowed_cidrs",
        message,
        json!({ "notCovered": [], "allowed": null }),
    )
}

fn allowed_cidrs(value: Option<Value>) -> Result<Option<AllowedCidrs>, Problem> {
    let shape = || {
        invalid_allowed_cidrs(format!(
            "allowedCidrs must be an array of 1 to {MAX_ALLOWED_CIDRS} IP ranges such as [\"10.0.0.0/8\", \"2001:db8::/32\"], or absent for a token usable from any address"
        ))
    };
    let values = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(values)) => values,
        Some(_) => return Err(shape()),
    };
    if values.len() > MAX_ALLOWED_CIDRS {
        return Err(invalid_allowed_cidrs(
            CidrError::TooMany {
                max: MAX_ALLOWED_CIDRS,
            }
            .to_string(),
        ));
    }
    let mut ranges = Vec::with_capacity(values.len());
    for value in values {
        let Value::String(text) = value else {
            return Err(shape());
        };
        ranges.push(Cidr::parse(&text).map_err(|e| invalid_allowed_cidrs(e.to_string()))?);
    }
    AllowedCidrs::new(ranges)
        .map(Some)
        .map_err(|e| invalid_allowed_cidrs(e.to_string()))
}

fn note(value: Option<Value>) -> Result<Note, Problem> {
    // The kind names it in the log; the message repeats nothing the client sent.
    let invalid =
        |message: String| Problem::new(StatusCode::BAD_REQUEST, "invalid_note", message).logged();
    match value {
        None | Some(Value::Null) => Err(invalid(
            "note is required: give 1 to 100 characters that say what the token is for".into(),
        )),
        // The limit holds for the string as sent, as the OpenAPI document's maxLength says
        // (the library counts after trimming surrounding whitespace).
        Some(Value::String(s)) if s.chars().count() > MAX_NOTE_CHARS => Err(invalid(format!(
            "note too long: at most {MAX_NOTE_CHARS} characters, surrounding spaces included"
        ))),
        Some(Value::String(s)) => Note::new(&s).map_err(|e| invalid(e.to_string())),
        Some(_) => Err(invalid(
            "note must be a string of 1 to 100 characters".into(),
        )),
    }
}

/// The payload of `invalid_scopes`, keys in the library's order: `unknown`, `notHeld`, and
/// `omitted` when names were left out.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScopesPayload {
    unknown: Vec<String>,
    not_held: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    omitted: Option<Omitted>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Omitted {
    unknown: usize,
    not_held: usize,
}

fn invalid_scopes(message: impl Into<String>, unknown: Vec<String>, omitted: usize) -> Problem {
    let payload = ScopesPayload {
        unknown,
        not_held: Vec::new(),
        omitted: (omitted > 0).then_some(Omitted {
            unknown: omitted,
            not_held: 0,
        }),
    };
    Problem::unprocessable(
        "invalid_scopes",
        message,
        serde_json::to_value(payload).unwrap_or_else(|_| json!({})),
    )
}

/// A string that is not a scope, as the payload lists it: cut to the longest scope there
/// can be.
fn shown(s: &str) -> String {
    match s.char_indices().nth(MAX_SCOPE_LEN) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

fn scopes(value: Option<Value>) -> Result<Scopes, Problem> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Scopes::empty()),
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(invalid_scopes(
                r#"scopes must be an array of scope names, such as ["environment.apiTokens.read"]"#,
                Vec::new(),
                0,
            ));
        }
    };
    if items.len() > MAX_REQUEST_SCOPES {
        return Err(invalid_scopes(
            format!(
                "scopes has {} entries: give at most {MAX_REQUEST_SCOPES} (see the server's scopes in /openapi.json)",
                items.len()
            ),
            Vec::new(),
            0,
        ));
    }
    let mut scopes = Vec::with_capacity(items.len());
    let mut invalid = Vec::new();
    let mut first_reason = None;
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) => match Scope::new(s) {
                Ok(scope) => scopes.push(scope),
                Err(e) => {
                    first_reason.get_or_insert_with(|| format!("scopes[{i}] is not a scope: {e}"));
                    invalid.push(s.as_str());
                }
            },
            _ => {
                first_reason
                    .get_or_insert_with(|| format!("scopes[{i}] must be a string (a scope name)"));
            }
        }
    }
    match first_reason {
        None => Ok(scopes.into_iter().collect()),
        Some(reason) => {
            let listed = invalid.len().min(MAX_LISTED_SCOPES);
            Err(invalid_scopes(
                format!("invalid scopes: {reason}"),
                invalid[..listed].iter().map(|s| shown(s)).collect(),
                invalid.len() - listed,
            ))
        }
    }
}

/// `invalid_expires_at` with the payload the issuer gives too: `expiresAt` (null when the
/// value is not a timestamp), the server's `now` and `latest` (null here: only the issuer
/// knows the creating token's expiry).
pub(crate) fn invalid_expires_at(
    message: impl Into<String>,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Problem {
    let instant = |at: DateTime<Utc>| at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    Problem::unprocessable(
        "invalid_expires_at",
        message,
        json!({ "expiresAt": expires_at.map(instant), "now": instant(now), "latest": null }),
    )
}

fn expires_at(fields: &mut Map<String, Value>) -> Result<Option<DateTime<Utc>>, Problem> {
    let invalid = || {
        invalid_expires_at(
            "expiresAt must be an RFC 3339 timestamp in the future such as 2030-01-01T00:00:00Z, or absent for a token that never expires",
            None,
            Utc::now(),
        )
    };
    match fields.remove("expiresAt") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(&s)
            .map(|at| Some(at.with_timezone(&Utc)))
            .map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A problem's status and kind, as the answer and the log show them.
    fn answer(p: Problem) -> (u16, Option<&'static str>) {
        let response = axum::response::IntoResponse::into_response(p);
        let kind = response
            .extensions()
            .get::<crate::problem::ProblemKind>()
            .map(|k| k.0);
        (response.status().as_u16(), kind)
    }

    fn kind(bytes: &[u8]) -> (u16, Option<&'static str>) {
        parse(bytes).map_or_else(answer, |_| (200, None))
    }

    #[test]
    fn each_mistake_has_its_answer() {
        assert_eq!(kind(br#"{"note": "ci"}"#), (200, None));
        assert_eq!(
            kind(br#"{"note": "ci", "scopes": null, "expiresAt": null, "other": 1}"#),
            (200, None)
        );
        assert_eq!(kind(br#"{"note": "ci""#), (400, Some("malformed_json")));
        assert_eq!(kind(b"[]"), (400, Some("malformed_json")));
        assert_eq!(kind(b""), (400, Some("malformed_json")));
        assert_eq!(kind(br#"{}"#), (400, Some("invalid_note")));
        assert_eq!(kind(br#"{"note": "  "}"#), (400, Some("invalid_note")));
        assert_eq!(kind(br#"{"note": 5}"#), (400, Some("invalid_note")));
        let long = format!(r#"{{"note": "{}"}}"#, "x".repeat(101));
        assert_eq!(kind(long.as_bytes()), (400, Some("invalid_note")));
        assert_eq!(
            kind(br#"{"note": "ci", "scopes": "a.b"}"#),
            (422, Some("invalid_scopes"))
        );
        assert_eq!(
            kind(br#"{"note": "ci", "scopes": ["a..b"]}"#),
            (422, Some("invalid_scopes"))
        );
        assert_eq!(
            kind(br#"{"note": "ci", "scopes": [1]}"#),
            (422, Some("invalid_scopes"))
        );
        assert_eq!(
            kind(br#"{"note": "ci", "expiresAt": "tomorrow"}"#),
            (422, Some("invalid_expires_at"))
        );
        assert_eq!(
            kind(br#"{"note": "ci", "allowedCidrs": null}"#),
            (200, None)
        );
        let read = parse(br#"{"note": "ci", "allowedCidrs": ["10.0.0.0/8", "2001:db8::7"]}"#);
        assert_eq!(
            read.unwrap().allowed_cidrs.unwrap().to_string(),
            "10.0.0.0/8 2001:db8::7/128"
        );
        for bad in [
            r#""10.0.0.0/8""#.to_owned(),
            "[]".to_owned(),
            "[8]".to_owned(),
            r#"["10.0.0.1/8"]"#.to_owned(),
            r#"["10.0.0.0/33"]"#.to_owned(),
            r#"["example.com"]"#.to_owned(),
            format!("[{}]", vec![r#""10.0.0.0/8""#; 33].join(",")),
        ] {
            let body = format!(r#"{{"note": "ci", "allowedCidrs": {bad}}}"#);
            assert_eq!(
                kind(body.as_bytes()),
                (422, Some("invalid_allowed_cidrs")),
                "{bad}"
            );
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(kind(deep.as_bytes()), (400, Some("malformed_json")));
    }

    fn grace(bytes: &[u8]) -> Result<u64, (u16, Option<&'static str>)> {
        parse_rotation(bytes).map(|d| d.as_secs()).map_err(answer)
    }

    #[test]
    fn a_rotation_takes_a_grace_period_within_bounds() {
        assert_eq!(grace(br#"{}"#), Ok(0));
        assert_eq!(grace(b"null"), Ok(0));
        assert_eq!(grace(br#"{"gracePeriodSeconds": null, "other": 1}"#), Ok(0));
        assert_eq!(grace(br#"{"gracePeriodSeconds": 0}"#), Ok(0));
        assert_eq!(grace(br#"{"gracePeriodSeconds": 3600}"#), Ok(3600));
        assert_eq!(grace(br#"{"gracePeriodSeconds": 2592000}"#), Ok(2_592_000));
        assert_eq!(grace(br#"{"gracePeriodSeconds": 60.0}"#), Ok(60));
        let invalid = Err((400, Some("invalid_grace_period")));
        for bad in [
            &br#"{"gracePeriodSeconds": 2592001}"#[..],
            br#"{"gracePeriodSeconds": -1}"#,
            br#"{"gracePeriodSeconds": 1.5}"#,
            br#"{"gracePeriodSeconds": 1e300}"#,
            br#"{"gracePeriodSeconds": "60"}"#,
            br#"{"gracePeriodSeconds": 18446744073709551616}"#,
        ] {
            assert_eq!(grace(bad), invalid, "{}", String::from_utf8_lossy(bad));
        }
        let malformed = Err((400, Some("malformed_json")));
        assert_eq!(grace(b"[]"), malformed);
        assert_eq!(grace(b"60"), malformed);
        assert_eq!(grace(br#"{"gracePeriodSeconds": "#), malformed);
    }

    #[test]
    fn content_types() {
        let check = |v: &str| is_json(Some(&header::HeaderValue::from_str(v).unwrap()));
        assert!(check("application/json"));
        assert!(check("Application/JSON; charset=utf-8"));
        assert!(check("application/merge-patch+json"));
        assert!(!check("text/plain"));
        assert!(!check("application/x-www-form-urlencoded"));
        assert!(!check("json"));
        assert!(!check("application/é"));
        assert!(!is_json(None));
    }
}
