//! Structured logs on standard error, with nothing secret in them.
//!
//! Nothing the server logs comes from a request's body, and from its headers only a
//! request id: a request is logged by its method (one of the standard nine, or `OTHER`),
//! its route *template* (`/api/v0/environments/{environmentId}/tokens`, never the path or
//! the query string as sent), its status and its duration, and a failure by the library's
//! message, which never holds a presented token. Every line a request causes is in a
//! `request` span with its id ([`RequestId`]) and the client's address. As a second line
//! of defence every line passes through [`apitoken::scan::redact`] on its way out, so that
//! a well-formed token that reached a message anyway shows as `dyn_…4n3LFC`.

use crate::args::LogFormat;
use crate::metrics::METRICS;
use crate::problem::ProblemKind;
use apitoken::TokenFormat;
use apitoken::http::ErrorReport;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::Instrument as _;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Installs the global subscriber.
pub(crate) fn init(format: LogFormat, level: LevelFilter) {
    let writer = RedactingStderr {
        format: TokenFormat::dynamic(),
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer);
    // Only fails when a subscriber is already installed, which nothing else does.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Standard error, with tokens redacted.
struct RedactingStderr {
    format: TokenFormat,
}

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            format: &self.format,
        }
    }
}

/// Writes each event (the formatter hands over one whole line at a time) redacted.
struct RedactingWriter<'a> {
    format: &'a TokenFormat,
}

impl Write for RedactingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let redacted = apitoken::scan::redact(self.format, &text);
        io::stderr().lock().write_all(redacted.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Logs one line per request: method, route template, status, duration, and why it
/// failed when it did.
pub(crate) async fn log_request(request: Request, next: Next) -> Response {
    let method = logged_method(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = route.as_deref().unwrap_or("(no route)");
    let id = RequestId::of(request.headers());
    let client = request.extensions().get::<Peer>().map(|peer| peer.0);
    let span = tracing::info_span!(
        "request",
        id = id.as_str(),
        client = client.map(tracing::field::display)
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    response.headers_mut().insert(X_REQUEST_ID, id.0);
    span.in_scope(|| log_response(method, route, started, &response));
    response
}

/// The header that carries a request's id, both ways.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client's address, which the accept loop puts in each request's extensions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// A request's id: the client's (or its proxy's) `X-Request-Id` when it is well formed, 1
/// to 128 characters among ASCII letters, digits and `-_.:/+=` (a UUID, a ULID, a
/// trace id) and no token, else 32 new random hex digits. Answered in `X-Request-Id` and
/// logged with every line the request causes, so that a client's report and the log meet.
pub(crate) struct RequestId(HeaderValue);

impl RequestId {
    const MAX_LEN: usize = 128;

    fn of(headers: &HeaderMap) -> RequestId {
        let mut given = headers.get_all(X_REQUEST_ID).iter();
        match (given.next(), given.next()) {
            (Some(value), None) if Self::well_formed(value.as_bytes()) => RequestId(value.clone()),
            _ => RequestId::new(),
        }
    }

    fn new() -> RequestId {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // Unique within the process at least, should the system's source ever fail.
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            bytes[8..].copy_from_slice(&n.to_be_bytes());
        }
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Hex digits are always a valid header value.
        RequestId(HeaderValue::from_str(&hex).unwrap_or(HeaderValue::from_static("-")))
    }

    /// Within the length and the characters, and holding no token (a client that sent
    /// one there would find it in every log line of the request).
    fn well_formed(id: &[u8]) -> bool {
        (1..=Self::MAX_LEN).contains(&id.len())
            && id
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=".contains(b))
            && core::str::from_utf8(id)
                .is_ok_and(|id| apitoken::scan::redact(&TokenFormat::dynamic(), id) == id)
    }

    fn as_str(&self) -> &str {
        // Checked or generated as ASCII.
        self.0.to_str().unwrap_or("-")
    }
}

/// The request's line, in the request's span.
fn log_response(method: &'static str, route: &str, started: Instant, response: &Response) {
    let status = response.status().as_u16();
    let took = started.elapsed();
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    let report = response
        .extensions()
        .get::<ErrorReport>()
        .map(ErrorReport::error);
    METRICS.request(route, status, took);
    if let Some(e) = report {
        METRICS.error(e);
    }
    // Probes come every few seconds: logged when they succeed only at `debug`.
    if matches!(route, "/healthz" | "/readyz") && status < 400 {
        tracing::debug!(%method, route, status, micros, "request");
        return;
    }
    if let Some(ProblemKind(kind, reason)) = response.extensions().get::<ProblemKind>() {
        match reason {
            Some(reason) if status >= 500 => {
                tracing::error!(%method, route, status, micros, kind, reason, "request");
            }
            Some(reason) => tracing::info!(%method, route, status, micros, kind, reason, "request"),
            None => tracing::info!(%method, route, status, micros, kind, "request"),
        }
        return;
    }
    match report {
        // A 422 message repeats what the client sent (its scopes): log the code only.
        Some(e) if status == 422 => {
            tracing::info!(%method, route, status, micros, code = apitoken::http::code(e), "request");
        }
        Some(e) if status >= 500 => {
            tracing::error!(%method, route, status, micros, reason = %e, "request");
        }
        Some(e) => tracing::info!(%method, route, status, micros, reason = %e, "request"),
        None => tracing::info!(%method, route, status, micros, "request"),
    }
}

/// The method as logged: the standard ones by name, any other as `OTHER`. hyper takes any
/// token as a method, as long as the request head allows, and sending one needs no token:
/// logged as sent, it would let anyone write what they like, at any length, to the log.
fn logged_method(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_are_logged_by_name_and_others_as_other() {
        for name in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ] {
            let method = Method::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(logged_method(&method), name);
        }
        let long = "X".repeat(100_000);
        for other in ["FOO", "get", "PROPFIND", "OTHER", long.as_str()] {
            let method = Method::from_bytes(other.as_bytes()).unwrap();
            assert_eq!(
                logged_method(&method),
                "OTHER",
                "{}",
                &other[..other.len().min(16)]
            );
        }
    }
}
