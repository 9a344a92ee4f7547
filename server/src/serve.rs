//! The accept loop: one hyper HTTP/1 connection per client (over TLS with `--tls-cert`),
//! at most `max_connections` of them and at most `max_connections_per_client` from one
//! client, each with a watchdog for clients that stall, and a shutdown with a deadline.
//!
//! `axum::serve` has none of these knobs, so this is the loop it runs inside, with them.

use crate::clients::{Client, ClientSlots, Slot};
use crate::metrics::METRICS;
use crate::stall::{self, Activity, Phase, Timeouts, Watched, WatchedBody};
use crate::tls::Tls;
use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service as _;

/// Files the process keeps open besides its connections: the listener, standard streams,
/// the runtime's own, and the database pool (a SQLite connection holds three).
const RESERVED_FILES: u64 = 64;

/// The most bytes of method, request target and header fields (names and values) a
/// request may carry: more is a 431 with the JSON error body ([`headers_fit`]).
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most header fields a request may carry, likewise.
pub(crate) const MAX_HEADERS: usize = 100;
/// hyper's own limits, set well above ours so that it is the server, not hyper, that
/// answers an oversized request, with a body: hyper answers 431 without one, and only
/// past these (a head over 128 KiB, over 200 fields), which also bound what a
/// connection buffers.
const HYPER_MAX_BUF: usize = 128 * 1024;
const HYPER_MAX_HEADERS: usize = 200;

/// What a client answered over the cap (or over its own) reads before the connection
/// closes.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 55\r\n\
\r\n\
{\"error\":\"too many open connections: try again shortly\"}";

/// How the server treats connections.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) timeouts: Timeouts,
    pub(crate) max_connections: usize,
    /// At most this many of them from one [`Client`]; `None`: no such limit.
    pub(crate) max_connections_per_client: Option<NonZeroUsize>,
    pub(crate) shutdown: Duration,
}

/// The connection cap that fits the open-file limit: raises the soft limit as far as the
/// hard one allows, and lowers `wanted` (with a warning) if that is still too low.
pub(crate) fn connection_cap(wanted: usize) -> usize {
    let needed = u64::try_from(wanted)
        .unwrap_or(u64::MAX)
        .saturating_add(RESERVED_FILES);
    match rlimit::increase_nofile_limit(needed) {
        Ok(limit) if limit >= needed => wanted,
        Ok(limit) => {
            let cap = usize::try_from(limit.saturating_sub(RESERVED_FILES))
                .unwrap_or(usize::MAX)
                .max(1);
            tracing::warn!(
                open_file_limit = limit,
                max_connections = cap,
                "the open-file limit is too low for --max-connections {wanted}: raise it (ulimit -n, LimitNOFILE=) or lower --max-connections"
            );
            cap
        }
        Err(e) => {
            tracing::warn!(
                "cannot read or raise the open-file limit ({e}): keeping --max-connections {wanted}"
            );
            wanted
        }
    }
}

/// Serves `app` on `listener` until `signal`, then gives the requests in flight until
/// `limits.shutdown` and cuts what is left.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<Tls>>,
    signal: impl Future<Output = ()>,
) {
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let per_client = limits.max_connections_per_client.map(ClientSlots::new);
    let mut refusals = Refusals::default();
    let mut client_refusals = Refusals::default();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of files or memory: accepting again at once would spin.
                        tracing::warn!("cannot accept a connection: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                while let Some(ended) = connections.try_join_next() {
                    report(ended);
                }
                if connections.len() >= limits.max_connections {
                    refusals.refuse(&stream, peer, Over::Cap(limits.max_connections));
                    continue;
                }
                let slot = match &per_client {
                    None => None,
                    Some(slots) => {
                        let client = Client::of(peer.ip());
                        match slots.acquire(client) {
                            Some(slot) => Some(slot),
                            None => {
                                client_refusals.refuse(
                                    &stream,
                                    peer,
                                    Over::ClientCap(client, slots.limit()),
                                );
                                continue;
                            }
                        }
                    }
                };
                connections.spawn(connection(
                    stream,
                    peer,
                    slot,
                    app.clone(),
                    limits.timeouts,
                    tls.clone(),
                    stopping.clone(),
                ));
            }
            Some(ended) = connections.join_next(), if !connections.is_empty() => report(ended),
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let deadline = tokio::time::sleep(limits.shutdown);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ended = connections.join_next() => match ended {
                Some(ended) => report(ended),
                None => return,
            },
            () = &mut deadline => break,
        }
    }
    let cut = connections.len();
    connections.shutdown().await;
    tracing::warn!(
        connections = cut,
        seconds = limits.shutdown.as_secs(),
        "shutdown deadline passed: cut the connections still open"
    );
}

fn report(ended: Result<(), tokio::task::JoinError>) {
    if let Err(e) = ended
        && e.is_panic()
    {
        tracing::error!("a connection's task panicked: {e}");
    }
}

/// Which cap a refused connection was over.
#[derive(Clone, Copy, Debug)]
enum Over {
    /// `--max-connections`.
    Cap(usize),
    /// `--max-connections-per-client`, which this client holds.
    ClientCap(Client, NonZeroUsize),
}

/// Refused connections of one kind, logged at most once a second. Each cap counts its own,
/// so that a flood over one does not hide the other.
#[derive(Default)]
struct Refusals {
    since_logged: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    /// Answers 503 if the socket takes it at once (a fresh one does), and closes.
    fn refuse(&mut self, stream: &TcpStream, peer: SocketAddr, over: Over) {
        let _ = stream.try_write(OVER_CAPACITY);
        METRICS.connections_refused.fetch_add(1, Ordering::Relaxed);
        self.since_logged += 1;
        if self
            .logged_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            let refused = self.since_logged;
            match over {
                Over::Cap(cap) => tracing::warn!(
                    %peer,
                    max_connections = cap,
                    refused,
                    "refused connections over the cap (503)"
                ),
                Over::ClientCap(client, cap) => tracing::warn!(
                    %peer,
                    %client,
                    max_connections_per_client = cap.get(),
                    refused,
                    "refused connections over the per-client cap (503)"
                ),
            }
            self.since_logged = 0;
            self.logged_at = Some(Instant::now());
        }
    }
}

/// Serves one client until it closes, stalls, or the server stops: over TLS when `tls`
/// is set, after a handshake that must end within the header timeout. `_slot`, its
/// client's count, is part of the task: it is given back when the task ends or is
/// dropped.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    _slot: Option<Slot>,
    app: Router,
    timeouts: Timeouts,
    tls: Option<Arc<Tls>>,
    stopping: watch::Receiver<bool>,
) {
    let _open = OpenConnection::new();
    let activity = Arc::new(Activity::new());
    let watched = Watched::new(stream, activity.clone());
    let Some(tls) = tls else {
        return http(
            TokioIo::new(watched),
            peer,
            app,
            timeouts,
            activity,
            stopping,
        )
        .await;
    };
    match tokio::time::timeout(timeouts.header, tls.acceptor().accept(watched)).await {
        Ok(Ok(stream)) => {
            http(
                TokioIo::new(stream),
                peer,
                app,
                timeouts,
                activity,
                stopping,
            )
            .await;
        }
        // A scanner, a plain-HTTP client, a client that does not trust the certificate:
        // the client's doing, and frequent.
        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
        Err(_) => {
            METRICS.connections_stalled.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                %peer,
                timeout = "header",
                seconds = timeouts.header.as_secs(),
                "closed a connection that stalled in its TLS handshake"
            );
        }
    }
}

/// HTTP/1 over `io` until the client closes, stalls, or the server stops.
async fn http<I>(
    io: I,
    peer: SocketAddr,
    app: Router,
    timeouts: Timeouts,
    activity: Arc<Activity>,
    mut stopping: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = {
        let activity = activity.clone();
        service_fn(move |request| handle(app.clone(), activity.clone(), peer, request))
    };
    // The watchdog keeps the time instead: hyper's header timeout would cover idling too.
    let connection = http1::Builder::new()
        .header_read_timeout(None)
        .max_buf_size(HYPER_MAX_BUF)
        .max_headers(HYPER_MAX_HEADERS)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let watchdog = stall::stalled(&activity, timeouts);
    tokio::pin!(watchdog);
    let mut draining = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                return;
            }
            stall = &mut watchdog => {
                METRICS.connections_stalled.fetch_add(1, Ordering::Relaxed);
                // The client's doing, like a 4xx: info, as request lines are.
                tracing::info!(
                    %peer,
                    timeout = stall.phase.timeout_name(),
                    seconds = stall.limit.as_secs(),
                    "closed a stalled connection"
                );
                return;
            }
            _ = stopping.wait_for(|stop| *stop), if !draining => {
                // Finishes the request in progress, then closes; an idle one closes now.
                draining = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Counts a connection as open while it lives.
struct OpenConnection;

impl OpenConnection {
    fn new() -> OpenConnection {
        METRICS.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        METRICS.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request through the router, moving the connection through its phases.
async fn handle(
    mut app: Router,
    activity: Arc<Activity>,
    peer: SocketAddr,
    mut request: hyper::Request<Incoming>,
) -> Result<Response, Infallible> {
    request.extensions_mut().insert(crate::logging::Peer(peer));
    activity.enter(if request.body().is_end_stream() {
        Phase::Handling
    } else {
        Phase::Body
    });
    let request: Request =
        request.map(|body| axum::body::Body::new(WatchedBody::new(body, activity.clone())));
    let response = app.call(request).await;
    activity.enter(Phase::Idle);
    response
}

/// Middleware: a request whose method, target and headers are larger than
/// [`MAX_HEADER_BYTES`], or whose headers are more than [`MAX_HEADERS`] fields, is answered
/// 431 with the JSON error body, and logged, before anything reads it.
pub(crate) async fn headers_fit(request: Request, next: axum::middleware::Next) -> Response {
    let headers = request.headers();
    // hyper takes any token as a method, of any length, and no route needs a token to see
    // one: it counts like the rest of the head.
    let method = request.method().as_str().len();
    // The request target as sent (origin form): no copy of it is made.
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    let bytes = method
        + target
        + headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum::<usize>();
    if bytes > MAX_HEADER_BYTES || headers.len() > MAX_HEADERS {
        use axum::response::IntoResponse as _;
        return crate::problem::Problem::new(
            axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request's headers are too large: at most {} KiB with the method and the target, and {MAX_HEADERS} fields; send fewer or smaller headers (cookies, for instance)",
                MAX_HEADER_BYTES / 1024
            ),
        )
        .logged()
        .into_response();
    }
    next.run(request).await
}
