//! Prometheus metrics: requests and latencies by route, authenticate outcomes, events published,
//! and how the token lookups were batched (read from the store at each scrape).
//!
//! No gauge of live sessions: an exact count is a scan of every live row (10 M in
//! docs/scaling.md's plan), too dear for each scrape or each minute; Postgres's own statistics
//! (`pg_stat_user_tables`) give the table's size.

use std::sync::{Mutex, PoisonError};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::store::TokenLookupStats;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub authenticate: IntCounterVec,
    pub events: IntCounterVec,
    /// Reads of missed events from the database by event streams, by why (see the help text).
    pub event_stream_reads: IntCounterVec,
    token_lookups_asked: IntCounter,
    token_lookups: IntCounter,
    token_lookup_statements: IntCounter,
    replica_reads: IntCounterVec,
    session_cache: IntCounterVec,
    activity_writes: IntCounter,
    activity_transactions: IntCounter,
    /// Serialises catching the two counters up with the store's.
    token_lookup_sync: Mutex<()>,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("lanyard_registry".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests"),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ],
            ),
            &["route"],
        )?;
        let authenticate = IntCounterVec::new(
            Opts::new("authenticate_total", "authenticate outcomes"),
            &["via", "outcome"],
        )?;
        let events = IntCounterVec::new(
            Opts::new("events_published_total", "session events"),
            &["kind"],
        )?;
        let event_stream_reads = IntCounterVec::new(
            Opts::new(
                "event_stream_database_reads_total",
                "pages of missed events event streams read from the database: a client's Last-Event-ID (replay), an event that arrived with a gap before it (gap), a stream that fell behind its account's channel (behind)",
            ),
            &["reason"],
        )?;
        let token_lookups_asked = IntCounter::new(
            "token_lookups_asked_total",
            "session token lookups asked for (queued for the batching lookup connections; Postgres)",
        )?;
        let token_lookups = IntCounter::new(
            "token_lookups_total",
            "session token lookups sent through the batching lookup connections (Postgres)",
        )?;
        let token_lookup_statements = IntCounter::new(
            "token_lookup_statements_total",
            "statements that carried the token lookups (several lookups share one when batched)",
        )?;
        let replica_reads = IntCounterVec::new(
            Opts::new(
                "replica_reads_total",
                "reads sent to the read replica: answered there (used) or read again on the primary (passed_on)",
            ),
            &["outcome"],
        )?;
        let session_cache = IntCounterVec::new(
            Opts::new(
                "session_cache_total",
                "session-token looks in the session cache: answered from memory (hit) or read from the database because absent, due for its re-check, its account changed, revoked, or the event feed down",
            ),
            &["outcome"],
        )?;
        let activity_writes = IntCounter::new(
            "activity_writes_total",
            "heartbeat activity writes (a session's last activity, once a minute at most)",
        )?;
        let activity_transactions = IntCounter::new(
            "activity_transactions_total",
            "transactions that carried the activity writes (writes due together share one)",
        )?;
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(authenticate.clone()),
            Box::new(events.clone()),
            Box::new(event_stream_reads.clone()),
            Box::new(token_lookups_asked.clone()),
            Box::new(token_lookups.clone()),
            Box::new(token_lookup_statements.clone()),
            Box::new(replica_reads.clone()),
            Box::new(session_cache.clone()),
            Box::new(activity_writes.clone()),
            Box::new(activity_transactions.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(Self {
            registry,
            requests,
            latency,
            authenticate,
            events,
            event_stream_reads,
            token_lookups_asked,
            token_lookups,
            token_lookup_statements,
            replica_reads,
            session_cache,
            activity_writes,
            activity_transactions,
            token_lookup_sync: Mutex::new(()),
        })
    }

    /// Brings the token lookup counters up to the store's figures.
    pub fn observe_token_lookups(&self, stats: TokenLookupStats) {
        let _guard = self
            .token_lookup_sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let catch_up = |counter: &IntCounter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&self.token_lookups_asked, stats.asked);
        catch_up(&self.token_lookups, stats.lookups);
        catch_up(&self.token_lookup_statements, stats.statements);
    }

    /// Brings the replica read counters up to the replica's figures.
    pub fn observe_replica(&self, stats: crate::service::ReplicaStats) {
        let _guard = self
            .token_lookup_sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (outcome, total) in [("used", stats.used), ("passed_on", stats.passed_on)] {
            let counter = self.replica_reads.with_label_values(&[outcome]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Brings the session cache counters up to the cache's figures.
    pub fn observe_session_cache(&self, stats: crate::service::SessionCacheStats) {
        let _guard = self
            .token_lookup_sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (outcome, total) in crate::service::SessionCacheOutcome::ALL.iter().zip(stats.0) {
            let counter = self.session_cache.with_label_values(&[outcome.label()]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// Brings the activity counters up to the writer's figures.
    pub fn observe_activity(&self, stats: crate::service::ActivityStats) {
        let _guard = self
            .token_lookup_sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (counter, total) in [
            (&self.activity_writes, stats.writes),
            (&self.activity_transactions, stats.transactions),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
