//! The NATS JetStream feed (`--events nats://…`): connects, makes sure the deployment's stream
//! exists, and consumes it with an ordered consumer (no acks; it re-creates itself from the last
//! stream sequence it saw after a gap, a missed heartbeat or a server restart), handing every
//! event to the [`Hub`] and every key rotation to the key watcher.
//!
//! A process that starts consumes from then on: what happened before, an SSE client replays from
//! the database with `Last-Event-ID`, and the revoked set is seeded from the database at start.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use lanyard_clock::{Clock, SystemClock};
use tokio::sync::Notify;
use tracing::Instrument;

use super::{Hub, Subjects};
use crate::store::EventRecord;

/// How long JetStream keeps an event: a relay publishes within moments, and a consumer that was
/// away longer starts again from the database.
const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Within this window JetStream drops a second publish of the same `Nats-Msg-Id` (a relay that
/// died between publishing a row and deleting it, and the row published again by another).
const DEDUPLICATION_WINDOW: Duration = Duration::from_secs(120);
/// How long the feed waits before consuming again after the ordered consumer gave up.
const RESUBSCRIBE_DELAY: Duration = Duration::from_millis(500);
/// The longest a pull request of the feed's consumer waits at the server. The server deletes a
/// pull consumer that has had no pull request for its inactive threshold (async-nats sets 30 s
/// for an ordered consumer), and async-nats's default expiry is also 30 s: each pull expired just
/// as the server checked, and a process slow to send the next one (a loaded machine, a pause)
/// lost its consumer. The feed then heard nothing until two idle heartbeats were missed (30 s),
/// and every revoke meanwhile reached this process's devices that late (issue #14, seen on 10,000
/// subscribers over 3 processes). Pulls that expire every 5 s keep the last one at most 5 s old,
/// so a process may stall for 25 s without losing the consumer; the idle heartbeat follows the
/// expiry down (half of it), so a consumer lost anyway is re-created within about 5 s.
const PULL_EXPIRY: Duration = Duration::from_secs(5);
/// An event that reaches this process later than this after JetStream stored it is logged: a
/// revoke is meant to reach every process within a fraction of that.
const LATE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    #[error("NATS JetStream: {0}")]
    JetStream(String),
}

/// Connects to NATS at `url` (retrying in the background if it is down at first), creates or
/// opens the deployment's stream, and starts the feed into `hub`. Returns the JetStream context
/// the outbox relay publishes with.
pub async fn connect(
    url: &str,
    subjects: Subjects,
    hub: Arc<Hub>,
) -> Result<jetstream::Context, NatsError> {
    let feed_hub = hub.clone();
    let reconnected = Arc::new(Notify::new());
    let on_connect = reconnected.clone();
    let client = async_nats::ConnectOptions::new()
        .name("session-registry")
        .connection_timeout(Duration::from_secs(3))
        .event_callback(move |event| {
            let hub = feed_hub.clone();
            let on_connect = on_connect.clone();
            async move {
                match event {
                    // The feed is up again once the consumer has been made anew (below).
                    async_nats::Event::Connected => on_connect.notify_one(),
                    async_nats::Event::Disconnected | async_nats::Event::Closed => {
                        hub.set_feed_up(false)
                    }
                    other => tracing::info!(event = %other, "NATS"),
                }
            }
        })
        .connect(url)
        .await
        .map_err(|e| NatsError::Connect {
            url: url.to_owned(),
            message: e.to_string(),
        })?;
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(stream::Config {
            name: subjects.stream().to_owned(),
            subjects: vec![subjects.all()],
            max_age: RETENTION,
            duplicate_window: DEDUPLICATION_WINDOW,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::JetStream(format!("stream {}: {e}", subjects.stream())))?;
    let start = stream
        .get_info()
        .await
        .map_err(|e| NatsError::JetStream(e.to_string()))?
        .state
        .last_sequence;
    let messages = subscribe(&stream, &subjects, start + 1).await?;
    hub.set_feed_up(true);
    tokio::spawn(
        consume(stream, subjects, hub, messages, start, reconnected)
            .instrument(tracing::warn_span!("event_feed", feed = "nats")),
    );
    Ok(js)
}

/// An ordered consumer of the deployment's subjects from stream sequence `from`.
async fn subscribe(
    stream: &stream::Stream,
    subjects: &Subjects,
    from: u64,
) -> Result<consumer::pull::Ordered, NatsError> {
    stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: subjects.all(),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from.max(1),
            },
            max_expires: PULL_EXPIRY,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::JetStream(format!("consumer: {e}")))?
        .messages()
        .await
        .map_err(|e| NatsError::JetStream(format!("consumer: {e}")))
}

/// Hands the stream to `hub` until the process ends; `last` is the last stream sequence seen.
/// After a reconnect the consumer is made anew from `last + 1` at once: the server may have lost
/// it (a restart), and the ordered consumer would notice only after missed heartbeats.
async fn consume(
    stream: stream::Stream,
    subjects: Subjects,
    hub: Arc<Hub>,
    mut messages: consumer::pull::Ordered,
    mut last: u64,
    reconnected: Arc<Notify>,
) {
    loop {
        loop {
            let next = tokio::select! {
                () = reconnected.notified() => break,
                next = messages.next() => next,
            };
            match next {
                Some(Ok(message)) => {
                    if let Ok(info) = message.info() {
                        note_arrival(last, info.stream_sequence, info.published);
                        last = last.max(info.stream_sequence);
                    }
                    deliver(&subjects, &hub, &message.subject, &message.payload);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "NATS event feed"),
                None => {
                    tracing::warn!(after = last, "NATS event feed ended");
                    break;
                }
            }
        }
        loop {
            match subscribe(&stream, &subjects, last + 1).await {
                Ok(m) => {
                    messages = m;
                    hub.set_feed_up(true);
                    tracing::info!(after = last, "NATS event feed consuming again");
                    break;
                }
                Err(e) => tracing::debug!(error = %e, "NATS event feed cannot consume yet"),
            }
            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
        }
    }
}

/// Logs an event that reached this process late (after [`LATE`] in JetStream) or after a jump in
/// the stream's sequence (the ordered consumer re-created itself past what it had).
fn note_arrival(last: u64, sequence: u64, stored: time::OffsetDateTime) {
    // The wall clock, not the registry's `Clock`: the broker stamped the event with its own.
    let lag = SystemClock.now() - stored;
    if lag > LATE {
        tracing::warn!(
            stream_sequence = sequence,
            lag_ms = lag.whole_milliseconds() as i64,
            "event reached this process late"
        );
    }
    if last != 0 && sequence > last + 1 {
        tracing::warn!(
            after = last,
            stream_sequence = sequence,
            "NATS event feed skipped stream sequences"
        );
    }
}

fn deliver(subjects: &Subjects, hub: &Hub, subject: &str, payload: &[u8]) {
    if subjects.is_keys(subject) {
        hub.keys_rotated();
        return;
    }
    match serde_json::from_slice::<EventRecord>(payload) {
        Ok(event) => hub.publish(event),
        Err(e) => tracing::error!(subject, error = %e, "unreadable event on the NATS stream"),
    }
}
