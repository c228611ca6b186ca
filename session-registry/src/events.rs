//! Fan-out of session events to SSE subscribers, and the cache of recent revocations that lets a
//! session JWT be checked without the database. With Postgres, every registry process LISTENs on
//! one channel, so a revoke made on any process reaches subscribers of all; with SQLite, events
//! are published in process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, watch};

use crate::store::{EventRecord, PgStore, StoreError};

pub struct Hub {
    tx: broadcast::Sender<EventRecord>,
    /// tenant → session id → revoked at (nested so a lookup by `&str` allocates nothing). Entries
    /// older than a session JWT's lifetime are dropped.
    revoked: Mutex<HashMap<String, HashMap<String, i64>>>,
    /// Turns true when the server shuts down: event streams then end, so their clients resume
    /// (with `Last-Event-ID`) elsewhere instead of holding the shutdown until its timeout.
    closing: watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Self {
            tx,
            revoked: Mutex::new(HashMap::new()),
            closing: watch::Sender::new(false),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.tx.subscribe()
    }

    /// How many event streams (and other subscribers) are attached in this process.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Ends every event stream, now and opened from now on.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Hub::close`] has been called (at once if it already has).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            // An error means the hub is gone, which ends its streams just the same.
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }

    pub fn publish(&self, event: EventRecord) {
        if event.kind == "revoked" {
            self.mark_revoked(&event.tenant, &event.session_id, event.at);
        }
        let _ = self.tx.send(event);
    }

    pub fn mark_revoked(&self, tenant: &str, session_id: &str, at: i64) {
        self.revoked
            .lock()
            .entry(tenant.to_owned())
            .or_default()
            .insert(session_id.to_owned(), at);
    }

    pub fn is_revoked(&self, tenant: &str, session_id: &str) -> bool {
        self.revoked
            .lock()
            .get(tenant)
            .is_some_and(|sessions| sessions.contains_key(session_id))
    }

    pub fn forget_revocations_before(&self, before: i64) {
        let mut revoked = self.revoked.lock();
        for sessions in revoked.values_mut() {
            sessions.retain(|_, at| *at >= before);
        }
        revoked.retain(|_, sessions| !sessions.is_empty());
    }
}

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
    tokio::spawn(relay_forever(store, hub, listener, cursor));
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
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
        match reattach(&store, &hub, &mut cursor).await {
            Ok(l) => {
                tracing::info!(
                    after_event = cursor,
                    "event listener reconnected and caught up"
                );
                listener = Some(l);
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
