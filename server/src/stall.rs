//! Stalled clients: what a connection is waiting for, and a watchdog that says when it has
//! waited too long.
//!
//! hyper's own `header_read_timeout` also runs while a kept-alive connection waits for its
//! next request, so one number would serve as both the header and the idle timeout, and
//! it has no body timeout at all. So the connection's reads, its requests and their bodies
//! report here ([`Watched`], [`WatchedBody`]), and [`stalled`] compares the time spent in
//! the current phase with that phase's limit.

use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How long a connection may wait in each phase.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    /// From connecting, or from a kept-alive connection's next first byte, to the end of
    /// the request's headers.
    pub(crate) header: Duration,
    /// From the end of the headers to the end of the body.
    pub(crate) body: Duration,
    /// From an answer to the next request's first byte.
    pub(crate) idle: Duration,
}

/// What a connection is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The client to finish sending a request's headers.
    Header,
    /// The client to finish sending a request's body.
    Body,
    /// The server to answer: no client deadline.
    Handling,
    /// The client to start its next request (or to read the answer).
    Idle,
}

impl Phase {
    /// The name logged for the timeout of this phase.
    pub(crate) fn timeout_name(self) -> &'static str {
        match self {
            Phase::Header => "header",
            Phase::Body => "body",
            Phase::Handling => "none",
            Phase::Idle => "idle",
        }
    }
}

/// The phase a connection is in, and since when.
#[derive(Debug)]
pub(crate) struct Activity {
    state: Mutex<(Phase, Instant)>,
}

impl Activity {
    /// A connection just accepted: its first request's headers are due.
    pub(crate) fn new() -> Activity {
        Activity {
            state: Mutex::new((Phase::Header, Instant::now())),
        }
    }

    fn get(&self) -> (Phase, Instant) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves to `to` now.
    pub(crate) fn enter(&self, to: Phase) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = (to, Instant::now());
    }

    /// Moves to `to` now if the connection is in `from`.
    fn advance(&self, from: Phase, to: Phase) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0 == from {
            *state = (to, Instant::now());
        }
    }
}

/// A request that the watchdog ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stall {
    pub(crate) phase: Phase,
    pub(crate) limit: Duration,
}

/// Resolves when the connection has spent longer in its current phase than `timeouts`
/// allow. It wakes at the current phase's deadline and, while the server is handling a
/// request, every shortest timeout to see whether that has ended.
pub(crate) async fn stalled(activity: &Activity, timeouts: Timeouts) -> Stall {
    loop {
        let (phase, since) = activity.get();
        let limit = match phase {
            Phase::Header => timeouts.header,
            Phase::Body => timeouts.body,
            Phase::Idle => timeouts.idle,
            Phase::Handling => {
                let shortest = timeouts.header.min(timeouts.body).min(timeouts.idle);
                tokio::time::sleep(shortest).await;
                continue;
            }
        };
        let deadline = since + limit;
        if Instant::now() >= deadline {
            return Stall { phase, limit };
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// A connection's socket: a byte read while idle starts the next request's header phase.
pub(crate) struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Watched<S> {
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.advance(Phase::Idle, Phase::Header);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request's body: its end (or the handler dropping it) ends the body phase.
pub(crate) struct WatchedBody {
    inner: Incoming,
    activity: Arc<Activity>,
}

impl WatchedBody {
    pub(crate) fn new(inner: Incoming, activity: Arc<Activity>) -> WatchedBody {
        WatchedBody { inner, activity }
    }
}

impl Body for WatchedBody {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || this.inner.is_end_stream() {
            this.activity.advance(Phase::Body, Phase::Handling);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.activity.advance(Phase::Body, Phase::Handling);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> Timeouts {
        Timeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(75),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn each_phase_has_its_limit() {
        let activity = Activity::new();
        let stall = stalled(&activity, timeouts()).await;
        assert_eq!(stall.phase, Phase::Header);
        assert_eq!(stall.limit, Duration::from_secs(10));
        activity.enter(Phase::Body);
        assert_eq!(stalled(&activity, timeouts()).await.phase, Phase::Body);
        activity.enter(Phase::Idle);
        let started = Instant::now();
        assert_eq!(stalled(&activity, timeouts()).await.phase, Phase::Idle);
        assert_eq!(started.elapsed(), Duration::from_secs(75));
    }

    #[tokio::test(start_paused = true)]
    async fn handling_has_no_deadline_and_progress_moves_it() {
        let activity = Arc::new(Activity::new());
        activity.enter(Phase::Handling);
        let watched = activity.clone();
        let watchdog = tokio::spawn(async move { stalled(&watched, timeouts()).await });
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(!watchdog.is_finished());
        activity.enter(Phase::Idle);
        let stall = watchdog.await.unwrap();
        assert_eq!(stall.phase, Phase::Idle);
        // Only a phase in progress ends: a body ending while idle changes nothing.
        activity.advance(Phase::Body, Phase::Handling);
        assert_eq!(activity.get().0, Phase::Idle);
    }
}
