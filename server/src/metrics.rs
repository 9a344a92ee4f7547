//! `/metrics` in the Prometheus text format (0.0.4), on an address of its own
//! (`--metrics-listen`), never on the API's: its counters tell the four kinds of
//! authentication failure apart, which the API's uniform 401 hides from clients on
//! purpose, so it belongs on a port that only the monitoring system reaches.
//!
//! Kept with a few atomics and two small maps under a lock (routes and statuses are
//! bounded sets), without a metrics crate: the server is the only writer and reader.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// One route's latencies.
#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Everything `/metrics` reports, since the process started.
pub(crate) struct Metrics {
    /// (route template, status) → requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Authentication failures by kind: malformed, unknown, revoked, expired.
    auth_failures: [AtomicU64; 4],
    /// Store failures answered 503 (unavailable) and 500 (any other).
    store_unavailable: AtomicU64,
    store_failed: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) connections_stalled: AtomicU64,
    /// Whether a change feed keeps a cache coherent (the feed's metrics are shown only
    /// then).
    feed_followed: AtomicBool,
    /// When, in microseconds since the epoch, the feed last caught up (when it started,
    /// before it first did).
    feed_synced_micros: AtomicI64,
    feed_interruptions: AtomicU64,
    feed_missed: AtomicU64,
    /// The cache authentication reads through, once there is one.
    cache: std::sync::OnceLock<std::sync::Arc<crate::feed::Cache>>,
    /// (reporter, what became of the report) → reports.
    leak_reports: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// (reporter, outcome) → reported tokens.
    leaked_tokens: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

/// The process's metrics.
pub(crate) static METRICS: Metrics = Metrics::new();

const AUTH_KINDS: [&str; 4] = ["malformed", "unknown", "revoked", "expired"];

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// All zero.
    const fn new() -> Metrics {
        Metrics {
            requests: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(BTreeMap::new()),
            auth_failures: [const { AtomicU64::new(0) }; 4],
            store_unavailable: AtomicU64::new(0),
            store_failed: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_stalled: AtomicU64::new(0),
            feed_followed: AtomicBool::new(false),
            feed_synced_micros: AtomicI64::new(0),
            feed_interruptions: AtomicU64::new(0),
            feed_missed: AtomicU64::new(0),
            cache: std::sync::OnceLock::new(),
            leak_reports: Mutex::new(BTreeMap::new()),
            leaked_tokens: Mutex::new(BTreeMap::new()),
        }
    }

    /// A change feed started following the event log at `at`.
    pub(crate) fn feed_started(&self, at: DateTime<Utc>) {
        self.feed_synced_micros
            .store(at.timestamp_micros(), Ordering::Relaxed);
        self.feed_followed.store(true, Ordering::Relaxed);
    }

    /// The feed caught up with every change committed before `as_of`.
    pub(crate) fn feed_caught_up(&self, as_of: DateTime<Utc>) {
        self.feed_synced_micros
            .fetch_max(as_of.timestamp_micros(), Ordering::Relaxed);
    }

    /// The feed lost touch with the store (once per interruption).
    pub(crate) fn feed_interrupted(&self) {
        self.feed_interruptions.fetch_add(1, Ordering::Relaxed);
    }

    /// Events were pruned before the feed read them.
    pub(crate) fn feed_missed(&self) {
        self.feed_missed.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports `cache`'s hits and misses from now on.
    pub(crate) fn cache(&self, cache: std::sync::Arc<crate::feed::Cache>) {
        let _ = self.cache.set(cache);
    }

    /// A leak report from `reporter` was `what` (taken, unsigned, bad_signature, …).
    pub(crate) fn leak_report(&self, reporter: &'static str, what: &'static str) {
        *lock(&self.leak_reports)
            .entry((reporter, what))
            .or_default() += 1;
    }

    /// A token `reporter` reported turned out `outcome` (`LeakOutcome::name`).
    pub(crate) fn leaked_token(&self, reporter: &'static str, outcome: &'static str) {
        *lock(&self.leaked_tokens)
            .entry((reporter, outcome))
            .or_default() += 1;
    }

    /// A request answered: its route template, status and time.
    pub(crate) fn request(&self, route: &str, status: u16, took: Duration) {
        *lock(&self.requests)
            .entry((route.to_owned(), status))
            .or_default() += 1;
        let seconds = took.as_secs_f64();
        let mut latency = lock(&self.latency);
        let histogram = latency.entry(route.to_owned()).or_default();
        for (bound, count) in BUCKETS.iter().zip(histogram.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// What the library's error says about authentication and the store.
    pub(crate) fn error(&self, error: &apitoken::Error) {
        let kind = match error {
            apitoken::Error::Malformed(_) => Some(0),
            apitoken::Error::Unknown { .. } => Some(1),
            apitoken::Error::Revoked { .. } => Some(2),
            apitoken::Error::Expired { .. } => Some(3),
            _ => None,
        };
        if let Some(kind) = kind {
            self.auth_failures[kind].fetch_add(1, Ordering::Relaxed);
        }
        match apitoken::http::status(error) {
            503 => self.store_unavailable.fetch_add(1, Ordering::Relaxed),
            500 => self.store_failed.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// The text format, as of now.
    pub(crate) fn render(&self) -> String {
        self.render_at(DateTime::from(std::time::SystemTime::now()))
    }

    /// The text format, with the feed's lag as of `now`.
    fn render_at(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP apitoken_http_requests_total Requests answered, by route template and status."
        );
        let _ = writeln!(out, "# TYPE apitoken_http_requests_total counter");
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "apitoken_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        let _ = writeln!(
            out,
            "# HELP apitoken_http_request_duration_seconds Time to answer, by route template."
        );
        let _ = writeln!(
            out,
            "# TYPE apitoken_http_request_duration_seconds histogram"
        );
        for (route, h) in lock(&self.latency).iter() {
            let route = escape(route);
            for (bound, count) in BUCKETS.iter().zip(h.counts.iter()) {
                let _ = writeln!(
                    out,
                    "apitoken_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "apitoken_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "apitoken_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "apitoken_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP apitoken_authentication_failures_total Refused tokens, by why (every kind is the same 401 to clients)."
        );
        let _ = writeln!(out, "# TYPE apitoken_authentication_failures_total counter");
        for (kind, n) in AUTH_KINDS.iter().zip(&self.auth_failures) {
            let _ = writeln!(
                out,
                "apitoken_authentication_failures_total{{kind=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP apitoken_store_errors_total Requests the token store failed: unavailable (503) or failed (500)."
        );
        let _ = writeln!(out, "# TYPE apitoken_store_errors_total counter");
        for (kind, n) in [
            ("unavailable", &self.store_unavailable),
            ("failed", &self.store_failed),
        ] {
            let _ = writeln!(
                out,
                "apitoken_store_errors_total{{kind=\"{kind}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        for (name, kind, help, value) in [
            (
                "apitoken_connections_open",
                "gauge",
                "Client connections open now.",
                &self.connections_open,
            ),
            (
                "apitoken_connections_refused_total",
                "counter",
                "Connections refused over --max-connections or --max-connections-per-client.",
                &self.connections_refused,
            ),
            (
                "apitoken_connections_stalled_total",
                "counter",
                "Connections closed because the client stalled.",
                &self.connections_stalled,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        if self.feed_followed.load(Ordering::Relaxed) {
            let synced = self.feed_synced_micros.load(Ordering::Relaxed);
            let lag = now.timestamp_micros().saturating_sub(synced).max(0) as f64 / 1e6;
            let _ = writeln!(
                out,
                "# HELP apitoken_event_feed_lag_seconds Seconds since the change feed last caught up with the event log (since it started, before it first did): about the poll interval while it is healthy; past --cache-staleness-ms the cache reads the store again."
            );
            let _ = writeln!(out, "# TYPE apitoken_event_feed_lag_seconds gauge");
            let _ = writeln!(out, "apitoken_event_feed_lag_seconds {lag}");
            for (name, help, value) in [
                (
                    "apitoken_event_feed_interruptions_total",
                    "Times the change feed lost touch with the store.",
                    &self.feed_interruptions,
                ),
                (
                    "apitoken_event_feed_missed_total",
                    "Times events were pruned before the change feed read them (each dropped the cache).",
                    &self.feed_missed,
                ),
            ] {
                let _ = writeln!(out, "# HELP {name} {help}");
                let _ = writeln!(out, "# TYPE {name} counter");
                let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
            }
        }
        if let Some(cache) = self.cache.get() {
            let stats = cache.stats();
            let _ = writeln!(
                out,
                "# HELP apitoken_cache_lookups_total Token look-ups by hash (authentication) answered from the cache (hit) or by reading the store (miss)."
            );
            let _ = writeln!(out, "# TYPE apitoken_cache_lookups_total counter");
            let _ = writeln!(
                out,
                "apitoken_cache_lookups_total{{result=\"hit\"}} {}",
                stats.hits
            );
            let _ = writeln!(
                out,
                "apitoken_cache_lookups_total{{result=\"miss\"}} {}",
                stats.misses
            );
        }
        for (name, help, label, counts) in [
            (
                "apitoken_leak_reports_total",
                "Leak reports by reporter and what became of them: taken, unsigned, bad_signature, invalid, keys_unavailable, store_failed, deadline (answered before the work ended), rate_limited, queue_full.",
                "result",
                &self.leak_reports,
            ),
            (
                "apitoken_leaked_tokens_total",
                "Tokens reported leaked, by reporter and outcome: revoked, already_revoked, expired, unknown, not_ours.",
                "outcome",
                &self.leaked_tokens,
            ),
        ] {
            let counts = lock(counts);
            if counts.is_empty() {
                continue;
            }
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            for ((reporter, what), n) in counts.iter() {
                let _ = writeln!(
                    out,
                    "{name}{{reporter=\"{reporter}\",{label}=\"{what}\"}} {n}"
                );
            }
        }
        out
    }
}

/// A label value as the text format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serves `/metrics` on `listener` until the process ends.
pub(crate) async fn serve(listener: tokio::net::TcpListener) {
    use axum::http::header;
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(|| async {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                METRICS.render(),
            )
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("the metrics listener stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_holds_what_was_recorded() {
        let metrics = Metrics::new();
        metrics.connections_open.store(3, Ordering::Relaxed);
        metrics.request("/api/v0/tokens/me", 200, Duration::from_micros(700));
        metrics.request("/api/v0/tokens/me", 401, Duration::from_millis(30));
        let text = metrics.render();
        for line in [
            "apitoken_http_requests_total{route=\"/api/v0/tokens/me\",status=\"200\"} 1",
            "apitoken_http_requests_total{route=\"/api/v0/tokens/me\",status=\"401\"} 1",
            "apitoken_http_request_duration_seconds_bucket{route=\"/api/v0/tokens/me\",le=\"0.0005\"} 0",
            "apitoken_http_request_duration_seconds_bucket{route=\"/api/v0/tokens/me\",le=\"0.001\"} 1",
            "apitoken_http_request_duration_seconds_bucket{route=\"/api/v0/tokens/me\",le=\"0.05\"} 2",
            "apitoken_http_request_duration_seconds_bucket{route=\"/api/v0/tokens/me\",le=\"+Inf\"} 2",
            "apitoken_http_request_duration_seconds_count{route=\"/api/v0/tokens/me\"} 2",
            "apitoken_authentication_failures_total{kind=\"revoked\"} 0",
            "apitoken_connections_open 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_feed_is_shown_once_followed_with_its_lag() {
        let metrics = Metrics::new();
        assert!(
            !metrics.render().contains("event_feed"),
            "no feed, no lines"
        );
        let start: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        metrics.feed_started(start);
        let text = metrics.render_at(start + chrono::TimeDelta::milliseconds(2500));
        assert!(
            text.lines()
                .any(|l| l == "apitoken_event_feed_lag_seconds 2.5"),
            "{text}"
        );
        metrics.feed_caught_up(start + chrono::TimeDelta::seconds(2));
        // An older CaughtUp (of another read) never moves it back.
        metrics.feed_caught_up(start + chrono::TimeDelta::seconds(1));
        metrics.feed_interrupted();
        let text = metrics.render_at(start + chrono::TimeDelta::milliseconds(2500));
        for line in [
            "apitoken_event_feed_lag_seconds 0.5",
            "apitoken_event_feed_interruptions_total 1",
            "apitoken_event_feed_missed_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }
}
