//! The Postgres LISTEN/NOTIFY feed (`--events postgres`, the default): one connection per
//! process listens on one channel, and the events are replayed from the log after every
//! reconnect.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tracing::Instrument;

use super::Hub;
use crate::store::{EventRecord, PgStore, StoreError};

/// How long the relay waits between attempts to get its connection back.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// Relays Postgres notifications into `hub` until the process ends. Returns once the first
/// `LISTEN` is in place, so nothing committed after start-up goes unheard.
///
/// NOTIFY is fire-and-forget: whatever is committed while the relay has no connection (a database
/// restart, a dropped socket) is never announced to it. So after every reconnect, once `LISTEN`
/// is in place again, the relay replays the event log from the last event it relayed; SSE streams
/// skip ids they have already sent, so an event both replayed and notified is delivered once.
pub async fn spawn_pg_listener(store: Arc<PgStore>, hub: Arc<Hub>) -> Result<(), StoreError> {
    let listener = store.listener().await?;
    let cursor = store.last_event_id().await?;
    hub.set_feed_up(true);
    tokio::spawn(
        relay_forever(store, hub, listener, cursor)
            .instrument(tracing::warn_span!("event_feed", feed = "postgres")),
    );
    Ok(())
}

async fn relay_forever(store: Arc<PgStore>, hub: Arc<Hub>, first: PgListener, mut cursor: i64) {
    let mut listener = Some(first);
    loop {
        if let Some(l) = listener.take() {
            match relay(l, &hub, &mut cursor).await {
                Some(e) => tracing::warn!(error = %e, "event listener failed; reconnecting"),
                None => tracing::warn!("event listener lost its connection; reconnecting"),
            }
            hub.set_feed_up(false);
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
        match reattach(&store, &hub, &mut cursor).await {
            Ok(l) => {
                tracing::info!(
                    after_event = cursor,
                    "event listener reconnected and caught up"
                );
                listener = Some(l);
                hub.set_feed_up(true);
            }
            Err(e) => tracing::debug!(error = %e, "event listener cannot reconnect yet"),
        }
    }
}

/// Listens again, then replays what was committed since `cursor` (listening first, so nothing
/// falls between the replay and the first notification).
async fn reattach(store: &PgStore, hub: &Hub, cursor: &mut i64) -> Result<PgListener, StoreError> {
    let listener = store.listener().await?;
    for event in store.events_after_id(*cursor).await? {
        *cursor = (*cursor).max(event.id);
        hub.publish(event);
    }
    Ok(listener)
}

/// Publishes notifications until the connection is lost; returns the error, if there was one.
async fn relay(mut listener: PgListener, hub: &Hub, cursor: &mut i64) -> Option<sqlx::Error> {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match serde_json::from_str::<EventRecord>(n.payload()) {
                Ok(event) => {
                    *cursor = (*cursor).max(event.id);
                    hub.publish(event);
                }
                Err(e) => tracing::error!(error = %e, "unreadable event notification"),
            },
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}
