//! What every registry process learns of the others' changes, and what it does with it: the
//! [`Hub`] fans each event out to the SSE subscribers of its account (and only to them), keeps
//! the recent revocations (a session JWT and a cached session are checked against them without
//! the database) and notes which accounts changed (the session cache drops what it held of them).
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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

/// Events an account's channel holds for a subscriber that has not read them yet. A subscriber
/// that falls further behind is told so (`Lagged`) and reads what it missed from the database.
/// Small because every account with an open stream has one: about 2.5 KiB each.
const ACCOUNT_CHANNEL: usize = 64;

type Sender = broadcast::Sender<Arc<Fanned>>;

/// The open event streams of this process, by account: tenant → account id → the account's
/// channel (nested so a lookup by `&str` allocates nothing). An account's channel exists while
/// it has a subscriber.
///
/// Why by account and not one channel for the process: with one channel every event woke every
/// stream of the process, whatever its account, and each stream threw away all but its own
/// account's events. At a million devices, tens of thousands of streams per process and
/// hundreds of events a second, that is millions of wake-ups a second for nothing; and a burst
/// of other accounts' events (a mass sign-out) filled the one channel, so streams that had
/// nothing to receive were cut off as lagging. By account, an event costs one hash lookup plus
/// its own account's streams.
#[derive(Default)]
struct Streams {
    accounts: RwLock<HashMap<String, HashMap<String, Sender>>>,
    /// Subscriptions alive, all accounts together.
    count: AtomicUsize,
}

impl Streams {
    /// The account's channel, if it has subscribers.
    fn sender(&self, tenant: &str, account_id: &str) -> Option<Sender> {
        self.accounts
            .read()
            .get(tenant)
            .and_then(|accounts| accounts.get(account_id))
            .cloned()
    }

    /// Drops the account's channel once it has no subscriber left. Receivers are made only under
    /// the write lock (in [`Hub::subscribe`]), so a count of zero seen under it stays zero.
    fn forget_if_unused(&self, tenant: &str, account_id: &str) {
        let mut all = self.accounts.write();
        let Some(accounts) = all.get_mut(tenant) else {
            return;
        };
        if accounts
            .get(account_id)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            accounts.remove(account_id);
        }
        if accounts.is_empty() {
            all.remove(tenant);
        }
    }
}

/// One event stream's subscription to its account's events (see [`Hub::subscribe`]).
pub struct Subscription {
    rx: Option<broadcast::Receiver<Arc<Fanned>>>,
    streams: Arc<Streams>,
    tenant: String,
    account_id: String,
}

impl Subscription {
    /// The account's next event; `Lagged` when this subscriber fell more than the channel holds
    /// behind (what it missed is in the database).
    pub async fn recv(&mut self) -> Result<Arc<Fanned>, broadcast::error::RecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver goes first, so the count below no longer includes it.
        drop(self.rx.take());
        self.streams.count.fetch_sub(1, Ordering::AcqRel);
        self.streams
            .forget_if_unused(&self.tenant, &self.account_id);
    }
}

pub struct Hub {
    streams: Arc<Streams>,
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
        Self {
            streams: Arc::new(Streams::default()),
            revoked: RwLock::new(HashMap::new()),
            changed: RwLock::new(HashMap::new()),
            changes: AtomicU64::new(0),
            feed_up: AtomicBool::new(true),
            keys_changed: Notify::new(),
            closing: watch::Sender::new(false),
        }
    }

    /// Subscribes to the events of one account, from now on.
    pub fn subscribe(&self, tenant: &str, account_id: &str) -> Subscription {
        let rx = {
            let mut all = self.streams.accounts.write();
            let accounts = all.entry(tenant.to_owned()).or_default();
            match accounts.get(account_id) {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = broadcast::channel(ACCOUNT_CHANNEL);
                    accounts.insert(account_id.to_owned(), tx);
                    rx
                }
            }
        };
        self.streams.count.fetch_add(1, Ordering::AcqRel);
        Subscription {
            rx: Some(rx),
            streams: self.streams.clone(),
            tenant: tenant.to_owned(),
            account_id: account_id.to_owned(),
        }
    }

    /// How many event streams are attached in this process, all accounts together.
    pub fn subscribers(&self) -> usize {
        self.streams.count.load(Ordering::Acquire)
    }

    /// How many accounts have an event stream attached in this process.
    pub fn subscribed_accounts(&self) -> usize {
        self.streams
            .accounts
            .read()
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// Ends every event stream, now and opened from now on.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Whether [`Hub::close`] has been called.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Resolves once [`Hub::close`] has been called (at once if it already has).
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + 'static {
        let mut closing = self.closing.subscribe();
        async move {
            // An error means the hub is gone, which ends its streams just the same.
            let _ = closing.wait_for(|closing| *closing).await;
        }
    }

    /// An event from the feed: noted (see [`Hub::note`]) and sent to its account's subscribers.
    ///
    /// Sent outside the lock, so streams of other accounts can open and close while thousands of
    /// this account's streams are woken. A subscriber that opens meanwhile on a channel made
    /// anew after the last one closed cannot miss the event: the event was committed before it
    /// reached the hub, and a stream reads the account's latest event number (or its backlog)
    /// from the database after subscribing, so it starts past this event.
    pub fn publish(&self, event: EventRecord) {
        self.note(&event);
        if let Some(tx) = self.streams.sender(&event.tenant, &event.account_id) {
            let _ = tx.send(Arc::new(Fanned::new(event)));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tenant: &str, account: &str, seq: i64) -> EventRecord {
        EventRecord {
            id: seq,
            seq,
            tenant: tenant.into(),
            account_id: account.into(),
            session_id: format!("s-{account}-{seq}"),
            kind: "created".into(),
            at: 1_700_000_000,
        }
    }

    /// A burst of other accounts' events, far more than a channel holds, while this subscriber is
    /// not reading: its own account's next event is the first thing it gets, nothing reported
    /// lost. (Seen failing on one channel for the process: `Lagged`.)
    #[tokio::test]
    async fn other_accounts_events_never_make_a_subscriber_fall_behind() {
        let hub = Hub::new();
        let mut alice = hub.subscribe("acme", "alice");
        let _bob = hub.subscribe("acme", "bob");
        for seq in 1..=10_000 {
            hub.publish(event("acme", "bob", seq));
        }
        hub.publish(event("acme", "alice", 1));
        let got = alice.recv().await.expect("nothing lost");
        assert_eq!(got.event.session_id, "s-alice-1");
    }

    /// An event goes to the subscribers of its account in its tenant, every one of them, and to
    /// no one else: not another account, not the same account id in another tenant.
    #[tokio::test]
    async fn an_event_reaches_its_own_accounts_subscribers_and_no_one_else() {
        let hub = Hub::new();
        let mut laptop = hub.subscribe("acme", "alice");
        let mut desktop = hub.subscribe("acme", "alice");
        let mut bob = hub.subscribe("acme", "bob");
        let mut namesake = hub.subscribe("globex", "alice");
        hub.publish(event("acme", "alice", 7));
        for sub in [&mut laptop, &mut desktop] {
            let got = sub.recv().await.expect("delivered");
            assert_eq!((got.event.tenant.as_str(), got.event.seq), ("acme", 7));
        }
        for sub in [&mut bob, &mut namesake] {
            let rx = sub.rx.as_mut().expect("subscribed");
            assert!(
                matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Empty)),
                "another account's event reached this subscriber"
            );
        }
    }

    /// An account's channel lives as long as its last subscriber: a process's memory follows its
    /// open streams, not every account that ever had one. An event of an account with no stream
    /// costs nothing and opens nothing.
    #[tokio::test]
    async fn an_accounts_channel_goes_with_its_last_subscriber() {
        let hub = Hub::new();
        let laptop = hub.subscribe("acme", "alice");
        let desktop = hub.subscribe("acme", "alice");
        let bob = hub.subscribe("globex", "bob");
        assert_eq!((hub.subscribers(), hub.subscribed_accounts()), (3, 2));
        drop(laptop);
        assert_eq!((hub.subscribers(), hub.subscribed_accounts()), (2, 2));
        drop(desktop);
        drop(bob);
        assert_eq!((hub.subscribers(), hub.subscribed_accounts()), (0, 0));
        assert!(
            hub.streams.accounts.read().is_empty(),
            "no tenant left behind"
        );
        hub.publish(event("acme", "carol", 1));
        assert_eq!(hub.subscribed_accounts(), 0);
        // A subscriber after the channel went gets a new one, and the next event.
        let mut again = hub.subscribe("acme", "alice");
        hub.publish(event("acme", "alice", 2));
        assert_eq!(again.recv().await.expect("delivered").event.seq, 2);
    }
}
