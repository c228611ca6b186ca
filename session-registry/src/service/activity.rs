//! Group commit for the heartbeats' activity writes.
//!
//! A plain authenticate writes a session's activity (`last_authenticated_at`, the device's
//! `last_seen`) when the recorded time is [`TOUCH_INTERVAL`](super::TOUCH_INTERVAL) old. One
//! transaction per write costs a durable commit each; when many sessions come due at once (a
//! process restarted, a fleet waking up, 10 M sessions heartbeating once a minute), the writes
//! queue for the pool's connections and every heartbeat behind them waits. Here each write is
//! handed to one writer task that takes everything queued, writes it per tenant in one
//! transaction ([`Store::record_activity`]) and answers every waiter: the caller still answers
//! only after its activity is durable (nothing about the semantics changes), but N writes share
//! one commit.
//!
//! On Postgres the writer has a thread of its own, with its own runtime and its own connection
//! ([`ActivityWriter::on_own_thread`]): a task on an actix worker's single-threaded runtime, on
//! connections that runtime drives, waits a turn of that worker's whole queue for each round
//! trip, and under load (bench/registry.sh's token run) each first heartbeat of a session, which
//! waits for its write, took tens of milliseconds and its tail a second. Otherwise the writer
//! runs on the runtime of the first caller and is started again by the next caller if that
//! runtime has ended (a channel whose receiver is gone refuses the send).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::store::{Store, StoreError};

/// Most writes one transaction carries.
const MAX_BATCH: usize = 512;

struct Touch {
    tenant: String,
    session_id: String,
    at: i64,
    done: oneshot::Sender<Result<(), StoreError>>,
}

#[derive(Default)]
pub(super) struct ActivityWriter {
    queue: Mutex<Option<mpsc::UnboundedSender<Touch>>>,
    counts: Arc<Counts>,
    /// The store the writer's own thread writes through (its connections are made, and driven,
    /// there), if it has one.
    own_thread: Option<Arc<dyn Store>>,
}

/// For `/metrics`: writes asked for, and the transactions that carried them.
#[derive(Default)]
struct Counts {
    writes: AtomicU64,
    transactions: AtomicU64,
}

/// Activity writes asked for and the transactions that carried them, since the start.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivityStats {
    pub writes: u64,
    pub transactions: u64,
}

impl ActivityWriter {
    /// A writer on a thread of its own, writing through `store` — a store of its own, whose
    /// connections are made on first use, so on that thread.
    pub(super) fn on_own_thread(store: Arc<dyn Store>) -> Self {
        Self {
            own_thread: Some(store),
            ..Self::default()
        }
    }

    /// Records `session_id`'s activity at `at`, durably, sharing a commit with the writes queued
    /// alongside it.
    pub(super) async fn record(
        &self,
        store: &Arc<dyn Store>,
        tenant: &str,
        session_id: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
        let (done, answer) = oneshot::channel();
        let mut touch = Touch {
            tenant: tenant.to_owned(),
            session_id: session_id.to_owned(),
            at,
            done,
        };
        // Twice at most: the second time on a writer started just now.
        for _ in 0..2 {
            let sender = self.sender(store);
            match sender.send(touch) {
                Ok(()) => {
                    return answer.await.unwrap_or_else(|_| {
                        Err(StoreError::Unavailable(
                            "the activity writer stopped before answering".into(),
                        ))
                    })
                }
                Err(mpsc::error::SendError(back)) => {
                    touch = back;
                    let mut queue = self.queue.lock();
                    if queue.as_ref().is_some_and(|q| q.same_channel(&sender)) {
                        *queue = None;
                    }
                }
            }
        }
        // No runtime keeps a writer alive: write it alone.
        self.counts.transactions.fetch_add(1, Ordering::Relaxed);
        store
            .record_activity(&touch.tenant, &[(touch.session_id, touch.at)])
            .await
    }

    pub(super) fn stats(&self) -> ActivityStats {
        ActivityStats {
            writes: self.counts.writes.load(Ordering::Relaxed),
            transactions: self.counts.transactions.load(Ordering::Relaxed),
        }
    }

    /// The writer's queue, starting the writer if there is none.
    fn sender(&self, store: &Arc<dyn Store>) -> mpsc::UnboundedSender<Touch> {
        let mut queue = self.queue.lock();
        if let Some(q) = queue.as_ref().filter(|q| !q.is_closed()) {
            return q.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let counts = self.counts.clone();
        match &self.own_thread {
            Some(own) => {
                let own = own.clone();
                let started = std::thread::Builder::new()
                    .name("activity-writer".into())
                    .spawn(move || {
                        match tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                        {
                            Ok(rt) => rt.block_on(
                                write_batches(own, rx, counts)
                                    .instrument(tracing::warn_span!("activity_writer")),
                            ),
                            // The receiver is dropped: callers write alone (see `record`).
                            Err(e) => {
                                tracing::error!(error = %e, "no runtime for the activity writer")
                            }
                        }
                    });
                if let Err(e) = started {
                    // The closure and its receiver are gone: the send fails and the caller
                    // writes alone.
                    tracing::error!(error = %e, "no thread for the activity writer");
                }
            }
            None => {
                tokio::spawn(
                    write_batches(store.clone(), rx, counts)
                        .instrument(tracing::warn_span!("activity_writer")),
                );
            }
        }
        *queue = Some(tx.clone());
        tx
    }
}

/// The writer: takes what is queued (at most [`MAX_BATCH`]), one transaction per tenant,
/// answers each caller with its tenant's outcome, and goes on until every sender is gone.
async fn write_batches(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Touch>,
    counts: Arc<Counts>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut by_tenant: BTreeMap<String, Vec<Touch>> = BTreeMap::new();
        for touch in batch.drain(..) {
            by_tenant
                .entry(touch.tenant.clone())
                .or_default()
                .push(touch);
        }
        for (tenant, touches) in by_tenant {
            // In session-id order, once each (the latest time): transactions that lock the same
            // rows lock them in the same order, so two writers cannot deadlock on them.
            let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
            for t in &touches {
                let at = latest.entry(t.session_id.as_str()).or_insert(t.at);
                *at = (*at).max(t.at);
            }
            let rows: Vec<(String, i64)> = latest
                .into_iter()
                .map(|(id, at)| (id.to_owned(), at))
                .collect();
            counts.transactions.fetch_add(1, Ordering::Relaxed);
            let outcome = store.record_activity(&tenant, &rows).await;
            if let Err(e) = &outcome {
                tracing::warn!(tenant, writes = rows.len(), error = %e, "activity not recorded");
            }
            for touch in touches {
                let _ = touch.done.send(outcome.clone());
            }
        }
    }
}
