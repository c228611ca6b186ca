//! What every registry process learns of the others' changes, and what it does with it: the
//! [`Hub`] fans events out to SSE subscribers, keeps the recent revocations (a session JWT and a
//! cached session are checked against them without the database) and notes which accounts
//! changed (the session cache drops what it held of them).
//!
//! Where the events come from (one feed per process): with SQLite, from this process itself;
//! with Postgres, from LISTEN/NOTIFY (`pg_listen`, the default on one box) or from NATS
//! JetStream (`--events nats://…`): the store writes each event to an outbox table in the
//! event's transaction, `outbox` publishes it to the stream, and `nats` consumes the stream.

mod nats;
mod outbox;
mod pg_listen;
mod subjects;

pub use nats::{connect as connect_nats, NatsError};
pub use outbox::spawn_relay as spawn_outbox_relay;
pub use pg_listen::spawn_pg_listener;
pub use subjects::Subjects;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use tokio::sync::{broadcast, watch, Notify};

use crate::store::EventRecord;

/// An account's latest change: its number and when it happened.
type Change = (u64, i64);

/// An event as the hub fans it out: one allocation shared by every subscriber, and its wire
/// form made once, by the first stream that sends it, for all the others (with 10,000 streams
/// of one account, one serialisation instead of 10,000).
pub struct Fanned {
    pub event: EventRecord,
    wire: OnceLock<actix_web::web::Bytes>,
}

impl Fanned {
    fn new(event: EventRecord) -> Self {
        Self {
            event,
            wire: OnceLock::new(),
        }
    }

    /// The event's wire form, made by `make` the first time it is asked for.
    pub fn wire(
        &self,
        make: impl FnOnce(&EventRecord) -> actix_web::web::Bytes,
    ) -> actix_web::web::Bytes {
        self.wire.get_or_init(|| make(&self.event)).clone()
    }
}

pub struct Hub {
    tx: broadcast::Sender<Arc<Fanned>>,
    /// tenant → session id → revoked at (nested so a lookup by `&str` allocates nothing). Entries
    /// older than a session JWT's lifetime are dropped.
    revoked: RwLock<HashMap<String, HashMap<String, i64>>>,
    /// tenant → account → (change number, at) of the account's latest event: a cached session
    /// filled before that number is stale. Entries older than the cache's re-check are dropped.
    changed: RwLock<HashMap<String, HashMap<String, Change>>>,
    /// Numbers changes; a cache fill takes the current value first ([`Hub::mark`]).
    changes: AtomicU64,
    /// Whether this process's event feed is connected: while it is not, changes made through
    /// other processes may go unheard, and the session cache is not trusted.
    feed_up: AtomicBool,
    /// Woken when the shared signing keys changed (a rotation through some process).
    keys_changed: Notify,
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
            revoked: RwLock::new(HashMap::new()),
            changed: RwLock::new(HashMap::new()),
            changes: AtomicU64::new(0),
            feed_up: AtomicBool::new(true),
            keys_changed: Notify::new(),
            closing: watch::Sender::new(false),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Fanned>> {
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

    /// An event from the feed: noted (see [`Hub::note`]) and sent to the subscribers.
    pub fn publish(&self, event: EventRecord) {
        self.note(&event);
        let _ = self.tx.send(Arc::new(Fanned::new(event)));
    }

    /// Takes note of an event without sending it to subscribers: a revocation joins the
    /// revoked set, and the account counts as changed. What a process does at once with the
    /// events it caused itself, before its feed brings them back.
    pub fn note(&self, event: &EventRecord) {
        if event.kind == "revoked" {
            self.mark_revoked(&event.tenant, &event.session_id, event.at);
        }
        self.note_change(&event.tenant, &event.account_id, event.at);
    }

    /// Counts the account as changed at `at`: what was cached of it before is read again.
    pub fn note_change(&self, tenant: &str, account_id: &str, at: i64) {
        let number = self.changes.fetch_add(1, Ordering::AcqRel) + 1;
        self.changed
            .write()
            .entry(tenant.to_owned())
            .or_default()
            .insert(account_id.to_owned(), (number, at));
    }

    /// The current change number: take it before reading a session from the database, and
    /// [`Hub::changed_since`] tells whether the account changed after.
    pub fn mark(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// Whether an event of the account arrived after `mark` was taken.
    pub fn changed_since(&self, tenant: &str, account_id: &str, mark: u64) -> bool {
        self.changed
            .read()
            .get(tenant)
            .and_then(|accounts| accounts.get(account_id))
            .is_some_and(|(number, _)| *number > mark)
    }

    /// Whether the event feed is connected (see the field).
    pub fn feed_up(&self) -> bool {
        self.feed_up.load(Ordering::Acquire)
    }

    pub(crate) fn set_feed_up(&self, up: bool) {
        let was = self.feed_up.swap(up, Ordering::AcqRel);
        if was != up {
            tracing::info!(connected = up, "event feed");
        }
    }

    /// Tells the key watcher that the shared signing keys changed.
    pub fn keys_rotated(&self) {
        self.keys_changed.notify_waiters();
    }

    /// Resolves at the next [`Hub::keys_rotated`].
    pub async fn keys_change(&self) {
        self.keys_changed.notified().await;
    }

    pub fn mark_revoked(&self, tenant: &str, session_id: &str, at: i64) {
        self.revoked
            .write()
            .entry(tenant.to_owned())
            .or_default()
            .insert(session_id.to_owned(), at);
    }

    pub fn is_revoked(&self, tenant: &str, session_id: &str) -> bool {
        self.revoked
            .read()
            .get(tenant)
            .is_some_and(|sessions| sessions.contains_key(session_id))
    }

    pub fn forget_revocations_before(&self, before: i64) {
        let mut revoked = self.revoked.write();
        for sessions in revoked.values_mut() {
            sessions.retain(|_, at| *at >= before);
        }
        revoked.retain(|_, sessions| !sessions.is_empty());
    }

    /// Forgets account changes before `before`: safe once every cached session filled before
    /// them is due for its re-check anyway.
    pub fn forget_changes_before(&self, before: i64) {
        let mut changed = self.changed.write();
        for accounts in changed.values_mut() {
            accounts.retain(|_, (_, at)| *at >= before);
        }
        changed.retain(|_, accounts| !accounts.is_empty());
    }
}
