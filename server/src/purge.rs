//! Deleting tokens that ended long ago, old events, and what reporters said of old leaks,
//! on a schedule: what `apitoken purge` does by hand.

use crate::storage::Issuer;
use std::sync::Arc;
use std::time::Duration;

/// How often the server purges. Several servers over one database may all purge: each
/// batch is a short transaction, and a batch another server deleted first is simply found
/// gone.
const EVERY: Duration = Duration::from_secs(3600);

/// Purges at once, then every [`EVERY`], the tokens that ended more than `after` ago
/// (none for `Duration::MAX`), and the events and leak details past their retention.
/// A failure (the database is down, say) is logged and tried again at the next round.
pub(crate) async fn periodically(issuer: Arc<Issuer>, after: Duration) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match issuer.purge(after).await {
            Ok(purged) if purged.tokens == 0 && purged.events == 0 && purged.leak_details == 0 => {
                tracing::debug!("purge: nothing to delete");
            }
            Ok(purged) => tracing::info!(
                purged = purged.tokens,
                ended_before = %purged.ended_before,
                events = purged.events,
                leak_details = purged.leak_details,
                "purged tokens revoked or expired long ago, events past their retention and what reporters said of old leaks"
            ),
            Err(e) => tracing::warn!("purge failed, trying again in an hour: {e}"),
        }
    }
}
