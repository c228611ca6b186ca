//! The outbox relay (`--events nats://…`): publishes the rows the store wrote to the outbox in
//! each change's transaction to JetStream, then deletes them. Every process runs one; a batch is
//! claimed with `FOR UPDATE SKIP LOCKED`, so relays share the work without electing a leader and
//! a row is deleted only after JetStream acknowledged it. A relay that dies between the two
//! leaves the row to be published again; the `Nats-Msg-Id` makes JetStream drop the repeat.
//! Rows wait while NATS is down and go out when it is back: nothing committed is lost.
//!
//! A relay wakes when its own process wrote an event (the handle [`spawn_relay`] returns) and otherwise polls, so
//! rows of a process that died before relaying them are picked up by the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::HeaderMap;
use tokio::sync::Notify;
use tracing::Instrument;

use crate::store::{PgStore, StoreError};

/// Rows published per batch.
const BATCH: i64 = 256;
/// How often a relay looks for rows it was not woken for.
const POLL: Duration = Duration::from_millis(250);
/// The wait after a failed batch (NATS or the database away).
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// A batch that takes longer than this from claim to delete is logged with where the time went:
/// its events reach the other processes only after it.
const SLOW_BATCH: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("publishing to JetStream: {0}")]
    Publish(String),
}

/// Starts the relay; the returned handle wakes it.
pub fn spawn_relay(store: Arc<PgStore>, js: jetstream::Context) -> Arc<Notify> {
    let nudge = Arc::new(Notify::new());
    tokio::spawn(run(store, js, nudge.clone()).instrument(tracing::warn_span!("outbox_relay")));
    nudge
}

async fn run(store: Arc<PgStore>, js: jetstream::Context, nudge: Arc<Notify>) {
    loop {
        tokio::select! {
            () = nudge.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
        loop {
            match relay_batch(&store, &js).await {
                Ok(0) => break,
                Ok(n) => tracing::trace!(published = n, "outbox relayed"),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay failed; retrying");
                    tokio::time::sleep(RETRY_DELAY).await;
                    break;
                }
            }
        }
    }
}

/// Publishes one claimed batch; answers how many rows went out.
async fn relay_batch(store: &PgStore, js: &jetstream::Context) -> Result<usize, RelayError> {
    let started = Instant::now();
    let (claim, rows) = store.claim_outbox(BATCH).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let claimed = started.elapsed();
    // Sent back to back in order, then every acknowledgement awaited.
    let mut acks = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", row.msg_id.as_str());
        let ack = js
            .publish_with_headers(row.subject.clone(), headers, row.payload.clone().into())
            .await
            .map_err(|e| RelayError::Publish(e.to_string()))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await.map_err(|e| RelayError::Publish(e.to_string()))?;
    }
    let acknowledged = started.elapsed();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    store.outbox_done(claim, &ids).await?;
    let done = started.elapsed();
    if done > SLOW_BATCH {
        tracing::warn!(
            rows = rows.len(),
            claim_ms = claimed.as_millis() as u64,
            publish_ms = (acknowledged - claimed).as_millis() as u64,
            delete_ms = (done - acknowledged).as_millis() as u64,
            "slow outbox batch"
        );
    }
    Ok(rows.len())
}
