//! Following the database's event log, so that the authentication cache drops a token as
//! soon as any process (another server, the CLI) changes it, and logging the feed's
//! health when it changes: the feed says it caught up after every poll, which is news
//! only after an interruption.

use crate::metrics::METRICS;
use apitoken::{CachedStore, ChangeFeed, DynTokenStore, FeedMessage};
use std::sync::Arc;
use std::time::Duration;

/// The cache in front of the database.
pub(crate) type Cache = CachedStore<DynTokenStore>;

/// What a message changed about the feed's health, when it changed anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// It lost touch with the store (the first `Interrupted` of a run of them).
    Interrupted,
    /// It caught up after an interruption.
    Recovered,
    /// Events were pruned before it read them (each time: each drops the cache).
    Missed,
}

/// Whether the feed is interrupted, from the messages seen so far.
#[derive(Debug, Default)]
struct Health {
    interrupted: bool,
}

impl Health {
    fn on(&mut self, message: &FeedMessage) -> Option<Change> {
        match message {
            FeedMessage::Interrupted { .. } => {
                (!std::mem::replace(&mut self.interrupted, true)).then_some(Change::Interrupted)
            }
            FeedMessage::CaughtUp { .. } => {
                std::mem::replace(&mut self.interrupted, false).then_some(Change::Recovered)
            }
            FeedMessage::Missed { .. } => Some(Change::Missed),
            _ => None,
        }
    }
}

/// Applies every message of `feed` to `cache`, for as long as the process runs; `bound`
/// is the cache's staleness bound, for the log. The feed and the cache both read the
/// system clock, as `CachedStore::apply` requires.
pub(crate) async fn follow(cache: Arc<Cache>, mut feed: ChangeFeed, bound: Duration) {
    METRICS.feed_started(std::time::SystemTime::now().into());
    let mut health = Health::default();
    while let Some(message) = feed.next().await {
        cache.apply(&message);
        if let FeedMessage::CaughtUp { as_of, .. } = &message {
            METRICS.feed_caught_up(*as_of);
        }
        match (health.on(&message), &message) {
            (Some(Change::Interrupted), FeedMessage::Interrupted { reason }) => {
                METRICS.feed_interrupted();
                tracing::warn!(
                    "event feed interrupted: {reason}; cached entries are trusted for at most {} until it catches up",
                    shown(bound)
                );
            }
            (Some(Change::Recovered), _) => tracing::info!("event feed caught up again"),
            (Some(Change::Missed), FeedMessage::Missed { after, resumed }) => {
                METRICS.feed_missed();
                tracing::warn!(
                    %after,
                    %resumed,
                    "events were pruned before they were read: cache dropped"
                );
            }
            _ => {}
        }
    }
    // A feed ends only when its source cannot go on; entries then age past the bound
    // and are read again, so revocations still apply within it.
    tracing::error!(
        "the event feed ended: cached entries are trusted for at most {} after each read; restart the server to follow the log again",
        shown(bound)
    );
}

/// `1 s`, `1500 ms`.
fn shown(bound: Duration) -> String {
    if bound.subsec_millis() == 0 {
        format!("{} s", bound.as_secs())
    } else {
        format!("{} ms", bound.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apitoken::EventCursor;

    #[test]
    fn only_changes_of_health_are_reported() {
        let caught_up = FeedMessage::CaughtUp {
            as_of: chrono::Utc::now(),
            cursor: EventCursor::START,
        };
        let interrupted = FeedMessage::Interrupted {
            reason: "connection refused".to_owned(),
        };
        let missed = FeedMessage::Missed {
            after: EventCursor::after(3),
            resumed: EventCursor::after(9),
        };
        let mut health = Health::default();
        let seen: Vec<_> = [
            &caught_up,
            &caught_up,
            &interrupted,
            &interrupted,
            &caught_up,
            &caught_up,
            &missed,
            &missed,
            &interrupted,
        ]
        .into_iter()
        .map(|message| health.on(message))
        .collect();
        assert_eq!(
            seen,
            [
                None,
                None,
                Some(Change::Interrupted),
                None,
                Some(Change::Recovered),
                None,
                Some(Change::Missed),
                Some(Change::Missed),
                Some(Change::Interrupted),
            ]
        );
    }

    #[test]
    fn the_bound_is_shown_in_its_unit() {
        assert_eq!(shown(Duration::from_secs(1)), "1 s");
        assert_eq!(shown(Duration::from_millis(1500)), "1500 ms");
        assert_eq!(shown(Duration::from_millis(200)), "200 ms");
    }
}
