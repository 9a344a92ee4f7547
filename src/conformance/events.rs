//! The event log's checks: what each change appends, what a refused change does not,
//! reading in order, pruning and the feed. A store without a log passes them by saying so
//! everywhere ([`StoreError::NoEventLog`]).

use super::{base_time, by, delegated_token, limit, new_environment, sample_token};
use crate::event::{Actor, Event, EventCursor, EventKind, FeedMessage, LeakDetails, LeakReporter};
use crate::model::{EnvironmentId, TokenId};
use crate::store::{Limits, Rotation, StoreError, TokenStore};
use chrono::{DateTime, TimeDelta, Utc};
use core::time::Duration;

/// Runs every check of the log, or, for a store without one, checks that it says so.
pub(super) async fn run_all(store: &dyn TokenStore) {
    match store.event_head().await {
        Err(StoreError::NoEventLog) => {
            no_log_says_so(store).await;
            return;
        }
        Err(e) => panic!("events: event_head failed: {e}"),
        Ok(_) => {}
    }
    every_change_appends_its_events(store).await;
    a_refused_change_appends_nothing(store).await;
    concurrent_changes_number_their_events_in_order(store).await;
    reading_pages_in_sequence_order(store).await;
    a_reader_behind_the_pruned_events_is_told(store).await;
    the_feed_follows_the_log(store).await;
    a_leak_is_logged_with_its_report(store).await;
    a_report_revokes_its_tokens_together(store).await;
}

async fn no_log_says_so(store: &dyn TokenStore) {
    assert!(
        matches!(
            store.events_since(None, EventCursor::START, 10).await,
            Err(StoreError::NoEventLog)
        ),
        "events: a store whose event_head says NoEventLog must say so in events_since too"
    );
    assert!(
        matches!(store.watch(EventCursor::START), Err(StoreError::NoEventLog)),
        "events: a store whose event_head says NoEventLog must say so in watch too"
    );
}

/// Every event of `environment` (checks run in fresh environments, so these are the
/// check's own).
async fn events_of(store: &dyn TokenStore, environment: EnvironmentId) -> Vec<Event> {
    events_after(store, environment, EventCursor::START).await
}

/// Every event of `environment` after `after`.
async fn events_after(
    store: &dyn TokenStore,
    environment: EnvironmentId,
    mut after: EventCursor,
) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let page = store
            .events_since(Some(environment), after, 1000)
            .await
            .unwrap();
        if page.events.is_empty() {
            return events;
        }
        after = page.next;
        events.extend(page.events);
    }
}

fn summary(events: &[Event]) -> Vec<(TokenId, EventKind, Actor)> {
    events.iter().map(|e| (e.token, e.kind, e.actor)).collect()
}

/// `insert` appends `Issued` (by the user, or by the creating token); `revoke` appends
/// `Revoked` for the token and for each token of its cascade, caused by it, in one run of
/// consecutive numbers, and nothing when revoked again; `rotate` appends the successor's
/// `Issued` and the predecessor's `Rotated`. Times and environments are the change's.
async fn every_change_appends_its_events(store: &dyn TokenStore) {
    let env = new_environment();
    let t0 = base_time();
    let a = sample_token(env, t0);
    let b = delegated_token(env, a.token.id, t0 + TimeDelta::seconds(1));
    let c = delegated_token(env, b.token.id, t0 + TimeDelta::seconds(2));
    for stored in [&a, &b, &c] {
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
    }
    let issued = events_of(store, env).await;
    assert_eq!(
        summary(&issued),
        vec![
            (
                a.token.id,
                EventKind::Issued,
                Actor::User(a.token.created_by.id)
            ),
            (b.token.id, EventKind::Issued, Actor::Token(a.token.id)),
            (c.token.id, EventKind::Issued, Actor::Token(b.token.id)),
        ],
        "events: insert appends one Issued event, by the user or by the creating token"
    );
    for (event, stored) in issued.iter().zip([&a, &b, &c]) {
        assert_eq!(
            event.at, stored.token.created_at,
            "events: Issued at created_at"
        );
        assert_eq!(event.environment, env, "events: the token's environment");
    }

    let at = t0 + TimeDelta::seconds(10);
    store.revoke(env, a.token.id, at, by()).await.unwrap();
    let revoked = events_of(store, env).await.split_off(3);
    assert_eq!(
        revoked.len(),
        3,
        "events: revoke appends one Revoked event for the token and one for each token \
         of its cascade: {revoked:?}"
    );
    assert_eq!(
        (revoked[0].token, revoked[0].kind, revoked[0].actor),
        (a.token.id, EventKind::Revoked { cause: None }, by()),
        "events: the revoked token's own event comes first, without a cause"
    );
    let mut cascaded: Vec<_> = revoked[1..].iter().map(|e| e.token).collect();
    cascaded.sort();
    let mut expected = vec![b.token.id, c.token.id];
    expected.sort();
    assert_eq!(
        cascaded, expected,
        "events: one event per token of the cascade"
    );
    for event in &revoked[1..] {
        assert_eq!(
            (event.kind, event.actor, event.at),
            (
                EventKind::Revoked {
                    cause: Some(a.token.id)
                },
                by(),
                at
            ),
            "events: a cascaded revocation names its cause and whoever revoked the cause"
        );
    }
    for pair in revoked.windows(2) {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence + 1,
            "events: one change's events have consecutive sequence numbers"
        );
    }
    assert!(
        revoked[0].sequence > issued[2].sequence,
        "events: later changes have higher sequence numbers"
    );

    store
        .revoke(env, a.token.id, at + TimeDelta::seconds(1), by())
        .await
        .unwrap();
    assert_eq!(
        events_of(store, env).await.len(),
        6,
        "events: revoking a revoked token appends nothing"
    );

    let old = sample_token(env, t0);
    store.insert(old.clone(), Limits::NONE).await.unwrap();
    let successor = sample_token(env, t0 + TimeDelta::seconds(20));
    let rotator = Actor::Token(old.token.id);
    store
        .rotate(Rotation {
            environment: env,
            predecessor: old.token.id,
            predecessor_expires_at: t0 + TimeDelta::seconds(80),
            successor: successor.clone(),
            limits: Limits::NONE,
            actor: rotator,
        })
        .await
        .unwrap();
    let rotated = events_of(store, env).await.split_off(7);
    assert_eq!(
        summary(&rotated),
        vec![
            (successor.token.id, EventKind::Issued, rotator),
            (
                old.token.id,
                EventKind::Rotated {
                    successor: successor.token.id
                },
                rotator
            ),
        ],
        "events: rotate appends the successor's Issued, then the predecessor's Rotated, by \
         whoever rotated"
    );
    assert!(
        rotated.iter().all(|e| e.at == successor.token.created_at),
        "events: a rotation's events are at the successor's creation"
    );
}

/// A refused change (a duplicate, a revoked creator, a second rotation, an unknown token,
/// a full environment) appends no event.
async fn a_refused_change_appends_nothing(store: &dyn TokenStore) {
    let env = new_environment();
    let t0 = base_time();
    let a = sample_token(env, t0);
    store.insert(a.clone(), limit(2)).await.unwrap();
    let before = events_of(store, env).await;
    assert_eq!(before.len(), 1);

    let refused = store.insert(a.clone(), Limits::NONE).await;
    assert!(matches!(refused, Err(StoreError::Duplicate { .. })));
    assert_eq!(
        events_of(store, env).await,
        before,
        "events: a refused insert (Duplicate) appended an event"
    );

    let unknown = TokenId::generate(t0, &mut rand::rng());
    let refused = store.revoke(env, unknown, t0, by()).await;
    assert!(matches!(refused, Err(StoreError::NotFound { .. })));
    let refused = store
        .insert(delegated_token(env, unknown, t0), Limits::NONE)
        .await;
    assert!(matches!(refused, Err(StoreError::NotLive { .. })));
    assert_eq!(
        events_of(store, env).await,
        before,
        "events: a refused revoke (NotFound) or insert (NotLive) appended an event"
    );

    store
        .insert(sample_token(env, t0 + TimeDelta::seconds(1)), limit(2))
        .await
        .unwrap();
    let refused = store
        .insert(sample_token(env, t0 + TimeDelta::seconds(2)), limit(2))
        .await;
    assert!(matches!(refused, Err(StoreError::LimitReached { .. })));
    let full = events_of(store, env).await;
    assert_eq!(
        full.len(),
        2,
        "events: a refused insert (LimitReached) appended an event"
    );

    let rotation = |successor| Rotation {
        environment: env,
        predecessor: a.token.id,
        predecessor_expires_at: t0 + TimeDelta::seconds(60),
        successor,
        limits: Limits::NONE,
        actor: by(),
    };
    store
        .rotate(rotation(sample_token(env, t0 + TimeDelta::seconds(3))))
        .await
        .unwrap();
    let rotated = events_of(store, env).await;
    let refused = store
        .rotate(rotation(sample_token(env, t0 + TimeDelta::seconds(4))))
        .await;
    assert!(matches!(refused, Err(StoreError::AlreadyRotated { .. })));
    assert_eq!(
        events_of(store, env).await,
        rotated,
        "events: a refused rotate (AlreadyRotated) appended an event"
    );
}

/// Changes made at once each get their own numbers, and every one is read, in order.
async fn concurrent_changes_number_their_events_in_order(store: &dyn TokenStore) {
    let env = new_environment();
    let tokens: Vec<_> = (0..16)
        .map(|i| sample_token(env, base_time() + TimeDelta::milliseconds(i)))
        .collect();
    let inserts = tokens.iter().map(|t| store.insert(t.clone(), Limits::NONE));
    for result in futures_util::future::join_all(inserts).await {
        result.unwrap();
    }
    let events = events_of(store, env).await;
    let mut ids: Vec<_> = events.iter().map(|e| e.token).collect();
    ids.sort();
    let mut expected: Vec<_> = tokens.iter().map(|t| t.token.id).collect();
    expected.sort();
    assert_eq!(
        ids, expected,
        "events: each of 16 concurrent inserts appends exactly one event"
    );
    assert!(
        events.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "events: read in strictly increasing sequence order"
    );
}

/// Reading all environments pages in sequence order, each page at most its limit, and
/// `next` goes on where the page ended; the head is at or after every event.
async fn reading_pages_in_sequence_order(store: &dyn TokenStore) {
    let start = store.event_head().await.unwrap();
    let env = new_environment();
    for i in 0..5 {
        store
            .insert(
                sample_token(env, base_time() + TimeDelta::seconds(i)),
                Limits::NONE,
            )
            .await
            .unwrap();
    }
    let head = store.event_head().await.unwrap();
    assert!(
        head.sequence() >= start.sequence() + 5,
        "events: the head moves past every event appended"
    );
    let mut after = start;
    let mut seen = Vec::new();
    while after < head {
        let page = store.events_since(None, after, 2).await.unwrap();
        assert!(
            page.events.len() <= 2,
            "events: a page holds at most its limit"
        );
        assert!(
            !page.events.is_empty(),
            "events: a page before the head is not empty"
        );
        assert!(
            page.events.iter().all(|e| e.sequence > after.sequence()),
            "events: a page starts after its cursor"
        );
        assert_eq!(page.next, page.events.last().unwrap().cursor());
        after = page.next;
        seen.extend(page.events.into_iter().filter(|e| e.environment == env));
    }
    assert_eq!(
        seen.len(),
        5,
        "events: paging all environments finds every event"
    );
    let empty = store.events_since(None, head, 10).await.unwrap();
    assert!(
        empty.events.iter().all(|e| e.sequence > head.sequence()),
        "events: nothing at or before the cursor"
    );
    if empty.events.is_empty() {
        assert_eq!(empty.next, head, "events: an empty page keeps its cursor");
    }
}

/// A time before any other check's events: the prune check deletes everything older.
fn ancient() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(978_307_200_000_000).unwrap() // 2001-01-01
}

/// Pruning deletes the old events and never lets a reader skip them silently: a reader
/// whose cursor was before them gets `EventsPruned` (and a feed `Missed`), one after them
/// reads on.
async fn a_reader_behind_the_pruned_events_is_told(store: &dyn TokenStore) {
    let env = new_environment();
    let old = sample_token(env, ancient());
    store.insert(old.clone(), Limits::NONE).await.unwrap();
    store
        .revoke(env, old.token.id, ancient() + TimeDelta::seconds(1), by())
        .await
        .unwrap();
    let recent = sample_token(env, base_time());
    store.insert(recent.clone(), Limits::NONE).await.unwrap();
    let events = events_of(store, env).await;
    assert_eq!(events.len(), 3);
    let before_old = EventCursor::after(events[0].sequence - 1);

    let pruned = store
        .prune_events(ancient() + TimeDelta::days(1), 1000)
        .await
        .unwrap();
    assert!(pruned >= 2, "events: prune_events deletes the old events");
    match store.events_since(Some(env), before_old, 10).await {
        Err(StoreError::EventsPruned { after, resumed }) => {
            assert_eq!(after, before_old);
            assert!(
                resumed.sequence() >= events[1].sequence,
                "events: EventsPruned says where the log now starts"
            );
        }
        other => panic!(
            "events: a reader whose cursor is before pruned events must be told \
             (EventsPruned), not handed what is left: {other:?}"
        ),
    }
    let after_pruned = store
        .events_since(Some(env), events[1].cursor(), 10)
        .await
        .unwrap();
    assert_eq!(
        after_pruned.events,
        events[2..].to_vec(),
        "events: pruning keeps the newer events"
    );

    let mut feed = store.watch(before_old).unwrap();
    match next_message(&mut feed).await {
        FeedMessage::Missed { after, .. } => assert_eq!(after, before_old),
        other => panic!("events: a feed behind pruned events says Missed first: {other:?}"),
    }
    let event = next_event_of(&mut feed, env).await;
    assert_eq!(event, events[2], "events: a feed goes on after Missed");
}

/// A feed started at the head yields what happens next, and says when it has caught up.
async fn the_feed_follows_the_log(store: &dyn TokenStore) {
    let env = new_environment();
    let head = store.event_head().await.unwrap();
    let mut feed = store.watch(head).unwrap();
    let stored = sample_token(env, base_time());
    store.insert(stored.clone(), Limits::NONE).await.unwrap();
    let issued = next_event_of(&mut feed, env).await;
    assert_eq!(
        (issued.token, issued.kind),
        (stored.token.id, EventKind::Issued),
        "events: the feed yields the insert's event"
    );
    store
        .revoke(env, stored.token.id, base_time(), by())
        .await
        .unwrap();
    let revoked = next_event_of(&mut feed, env).await;
    assert_eq!(
        (revoked.token, revoked.kind),
        (stored.token.id, EventKind::Revoked { cause: None }),
        "events: the feed yields the revocation's event"
    );
    loop {
        match next_message(&mut feed).await {
            FeedMessage::CaughtUp { cursor, .. } => {
                assert!(
                    cursor >= revoked.cursor(),
                    "events: CaughtUp after its events"
                );
                break;
            }
            FeedMessage::Event(_) => {}
            other => panic!("events: an undisturbed feed reports {other:?}"),
        }
    }
    assert!(
        feed.cursor() >= revoked.cursor(),
        "events: the feed's cursor follows what it yielded"
    );
}

/// A guard against a feed that never answers: a check fails rather than hangs.
const FEED_PATIENCE: Duration = Duration::from_secs(30);

async fn next_message(feed: &mut crate::event::ChangeFeed) -> FeedMessage {
    tokio::time::timeout(FEED_PATIENCE, feed.next())
        .await
        .expect("events: the feed yielded nothing for 30 s")
        .expect("events: the feed ended")
}

/// The next event of `environment` (other checks' events are skipped).
async fn next_event_of(feed: &mut crate::event::ChangeFeed, environment: EnvironmentId) -> Event {
    loop {
        if let FeedMessage::Event(event) = next_message(feed).await
            && event.environment == environment
        {
            return event;
        }
    }
}

/// `revoke_leaked` revokes as `revoke` does, logging the token's event as `Leaked`, by the
/// reporter, holding the report (kept exactly), and its cascade's as `Revoked` caused by
/// it; reported again, nothing. `forget_leak_details` empties what the reporter said of
/// leaks older than its cut-off, keeping the event and the reporter, and leaves newer
/// ones alone.
async fn a_leak_is_logged_with_its_report(store: &dyn TokenStore) {
    // After the pruning check's events, before every other check's.
    let t0 = ancient() + TimeDelta::days(10);
    let env = new_environment();
    // The pruning check has pruned the log's start.
    let start = store.event_head().await.unwrap();
    let a = sample_token(env, t0);
    let b = delegated_token(env, a.token.id, t0 + TimeDelta::seconds(1));
    let later = sample_token(env, t0 + TimeDelta::seconds(2));
    for stored in [&a, &b, &later] {
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
    }
    let leak = LeakDetails::new(LeakReporter::GitHub)
        .with_source("Commit")
        .with_url(format!(
            "https://github.com/octo/app/blob/f\u{f8}o/.env#L3?{}",
            "x".repeat(LeakDetails::MAX_URL_LEN)
        ))
        .with_token_type("dynamic_environment_api_token");
    assert_eq!(
        leak.url.as_ref().map(String::len),
        Some(LeakDetails::MAX_URL_LEN)
    );

    let at = t0 + TimeDelta::seconds(10);
    let revoked = store
        .revoke_leaked(env, a.token.id, at, &leak)
        .await
        .unwrap();
    assert_eq!(
        (
            revoked.token.active,
            revoked.token.revoked_at,
            revoked.cascade.clone()
        ),
        (false, Some(at), vec![b.token.id]),
        "events: revoke_leaked revokes the token and its cascade as revoke does"
    );
    let events = events_after(store, env, start).await.split_off(3);
    assert_eq!(
        summary(&events),
        vec![
            (a.token.id, EventKind::Leaked, Actor::Reporter),
            (
                b.token.id,
                EventKind::Revoked {
                    cause: Some(a.token.id)
                },
                Actor::Reporter
            ),
        ],
        "events: a leak appends Leaked for the token, by the reporter, then Revoked for \
         its cascade, caused by it"
    );
    assert_eq!(
        events[0].leak.as_ref(),
        Some(&leak),
        "events: the Leaked event keeps the report exactly"
    );
    assert_eq!(
        events[1].leak, None,
        "events: only the Leaked event holds the report"
    );

    let again = store
        .revoke_leaked(env, a.token.id, at + TimeDelta::seconds(1), &leak)
        .await
        .unwrap();
    assert_eq!(
        (again.token.revoked_at, again.cascade.len()),
        (Some(at), 0),
        "events: a leak reported again changes nothing"
    );
    assert_eq!(
        events_after(store, env, start).await.len(),
        5,
        "events: a leak reported again appends nothing"
    );
    let unknown = TokenId::from_uuid(uuid::Uuid::from_u128(0x1eac));
    assert!(
        matches!(
            store.revoke_leaked(env, unknown, at, &leak).await,
            Err(StoreError::NotFound { .. })
        ),
        "events: revoke_leaked of an unknown token is NotFound"
    );

    let newer_leak = LeakDetails::new(LeakReporter::Public).with_url("https://example.com/x");
    store
        .revoke_leaked(env, later.token.id, t0 + TimeDelta::days(2), &newer_leak)
        .await
        .unwrap();
    let forgotten = store
        .forget_leak_details(t0 + TimeDelta::days(1), 1000)
        .await
        .unwrap();
    assert!(
        forgotten >= 1,
        "events: forget_leak_details says how many it emptied"
    );
    let events = events_after(store, env, start).await;
    assert_eq!(
        events[3].leak,
        Some(LeakDetails::new(LeakReporter::GitHub)),
        "events: forgetting a leak's details keeps its event and reporter, nothing else"
    );
    assert_eq!(
        (events[3].token, events[3].kind, events[3].at),
        (a.token.id, EventKind::Leaked, at),
        "events: forgetting a leak's details keeps its event"
    );
    assert_eq!(
        events[5].leak.as_ref(),
        Some(&newer_leak),
        "events: forget_leak_details leaves leaks newer than its cut-off alone"
    );
}

/// `revoke_leaked_many` answers, in order, what `revoke_leaked` would for each item: live
/// tokens revoked with their cascades, across environments and across the store's
/// transactions (more than a hundred items), a revoked one as it is, an unknown one
/// `None`, one named twice revoked once; each live token's event is `Leaked` with its own
/// report.
async fn a_report_revokes_its_tokens_together(store: &dyn TokenStore) {
    let t0 = ancient() + TimeDelta::days(20);
    let start = store.event_head().await.unwrap();
    let (env, other_env, big_env) = (new_environment(), new_environment(), new_environment());
    let a = sample_token(env, t0);
    let b = delegated_token(env, a.token.id, t0 + TimeDelta::seconds(1));
    let c = sample_token(env, t0 + TimeDelta::seconds(2));
    let d = sample_token(env, t0 + TimeDelta::seconds(3));
    let e = sample_token(other_env, t0);
    for stored in [&a, &b, &c, &d, &e] {
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
    }
    let earlier = t0 + TimeDelta::seconds(5);
    store.revoke(env, d.token.id, earlier, by()).await.unwrap();
    let many: Vec<_> = (0..150)
        .map(|i| sample_token(big_env, t0 + TimeDelta::milliseconds(i)))
        .collect();
    for stored in &many {
        store.insert(stored.clone(), Limits::NONE).await.unwrap();
    }
    let report = |n: usize| {
        LeakDetails::new(LeakReporter::GitLab).with_url(format!("https://gitlab.example/{n}"))
    };
    let (one, two, three) = (report(1), report(2), report(3));
    let unknown = TokenId::from_uuid(uuid::Uuid::from_u128(0x0001_eac2));
    let at = t0 + TimeDelta::seconds(10);
    let mut leaks = vec![
        (env, a.token.id, &one),
        (other_env, e.token.id, &two),
        (env, d.token.id, &one),
        (env, unknown, &one),
        (env, a.token.id, &one),
        (env, c.token.id, &three),
    ];
    leaks.extend(many.iter().map(|stored| (big_env, stored.token.id, &three)));
    let revoked = store.revoke_leaked_many(&leaks, at).await.unwrap();
    assert_eq!(revoked.len(), leaks.len(), "events: one answer per item");
    let summary: Vec<_> = revoked
        .iter()
        .take(6)
        .map(|r| {
            r.as_ref()
                .map(|r| (r.token.id, r.token.revoked_at, r.cascade.clone()))
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            Some((a.token.id, Some(at), vec![b.token.id])),
            Some((e.token.id, Some(at), vec![])),
            Some((d.token.id, Some(earlier), vec![])),
            None,
            Some((a.token.id, Some(at), vec![])),
            Some((c.token.id, Some(at), vec![])),
        ],
        "events: revoke_leaked_many answers, in order, each item as revoke_leaked would \
         (revoked with its cascade, a revoked one as it is, an unknown one None, one named \
         twice revoked once)"
    );
    assert!(
        revoked[6..].iter().zip(&many).all(|(r, stored)| r
            .as_ref()
            .is_some_and(|r| r.token.id == stored.token.id && r.token.revoked_at == Some(at))),
        "events: revoke_leaked_many revokes every item, however many"
    );
    let leaked: Vec<_> = [env, other_env]
        .into_iter()
        .map(|environment| async move { events_after(store, environment, start).await })
        .collect();
    let mut events = Vec::new();
    for read in leaked {
        events.extend(read.await);
    }
    let leaks_logged: Vec<_> = events
        .iter()
        .filter(|e| e.kind.revokes() && e.at == at)
        .map(|e| (e.token, e.kind, e.leak.clone()))
        .collect();
    assert_eq!(
        leaks_logged,
        vec![
            (a.token.id, EventKind::Leaked, Some(one.clone())),
            (
                b.token.id,
                EventKind::Revoked {
                    cause: Some(a.token.id)
                },
                None
            ),
            (c.token.id, EventKind::Leaked, Some(three.clone())),
            (e.token.id, EventKind::Leaked, Some(two.clone())),
        ],
        "events: each live token is logged once, as Leaked with its own report"
    );
    let big = events_after(store, big_env, start).await;
    assert_eq!(
        big.iter().filter(|e| e.kind == EventKind::Leaked).count(),
        many.len(),
        "events: every token of a large report is logged once"
    );
}
