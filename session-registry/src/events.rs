//! Fan-out of session events to SSE subscribers, and the cache of recent revocations that lets a
//! session JWT be checked without the database. With Postgres, every registry process LISTENs on
//! one channel, so a revoke made on any process reaches subscribers of all; with SQLite, events
//! are published in process.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::store::EventRecord;

pub struct Hub {
    tx: broadcast::Sender<EventRecord>,
    /// (tenant, session id) → revoked at. Entries older than a session JWT's lifetime are dropped.
    revoked: Mutex<HashMap<(String, String), i64>>,
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
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.tx.subscribe()
    }

    pub fn publish(&self, event: EventRecord) {
        if event.kind == "revoked" {
            self.revoked
                .lock()
                .insert((event.tenant.clone(), event.session_id.clone()), event.at);
        }
        let _ = self.tx.send(event);
    }

    pub fn mark_revoked(&self, tenant: &str, session_id: &str, at: i64) {
        self.revoked
            .lock()
            .insert((tenant.to_owned(), session_id.to_owned()), at);
    }

    pub fn is_revoked(&self, tenant: &str, session_id: &str) -> bool {
        self.revoked
            .lock()
            .contains_key(&(tenant.to_owned(), session_id.to_owned()))
    }

    pub fn forget_revocations_before(&self, before: i64) {
        self.revoked.lock().retain(|_, at| *at >= before);
    }
}

/// Relays Postgres notifications into `hub` until the process ends, reconnecting after outages.
pub fn spawn_pg_listener(url: String, hub: Arc<Hub>) {
    tokio::spawn(async move {
        loop {
            match listen(&url, &hub).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "event listener lost its connection; reconnecting")
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
}

async fn listen(url: &str, hub: &Hub) -> Result<(), sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener.listen(crate::store::postgres_channel()).await?;
    loop {
        let n = listener.recv().await?;
        match serde_json::from_str::<EventRecord>(n.payload()) {
            Ok(event) => hub.publish(event),
            Err(e) => tracing::error!(error = %e, "unreadable event notification"),
        }
    }
}
