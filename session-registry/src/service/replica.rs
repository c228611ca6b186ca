//! Reads from a Postgres read replica (`--read-database-url`): token lookups and session lists.
//!
//! A replica lags its primary, and a revoked session must never be accepted because of that
//! lag. The rule: a watcher samples the primary's WAL position every [`SAMPLE_EVERY`], each
//! sample with the [`Hub`]'s change number taken just before it; once the replica has replayed
//! past a sample's position, every change this process had heard of at that moment is on the
//! replica (an event is heard of only after its commit, and a commit before the sample lies
//! before the sampled position). That number is the replica's *watermark*. An answer from the
//! replica is used only when
//!
//! * the event feed is connected (a revoke through another process is heard of),
//! * the watermark is younger than [`MAX_LAG`] (the hub forgets account changes after two
//!   minutes),
//! * the answer is a live session (a miss or a revoked session is read again on the primary: it
//!   may be a session created, or a revoke made, after the replica's position),
//! * no event of the session's account arrived after the watermark, and the session is not in
//!   the revoked set.
//!
//! Only callers that read may use it: resolving a caller who manages sessions (revoke, events,
//! upgrade, re-authentication, an extension) reads the primary. A replica read that takes longer
//! than [`READ_DEADLINE`] or fails is passed on to the primary, never an error.
//!
//! `--read-database-url` must name one standby (not a balancer over several): the watermark is
//! that server's.
//!
//! So a replica answer is never staler than what the event feed has delivered: a revoke is
//! refused on every process as soon as its event arrives, whatever the replica's lag, exactly as
//! the session cache behaves. And like the cache, a replica answer only ever says yes: anything
//! it would refuse is read again on the primary.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::events::Hub;
use crate::store::{PgStore, SessionRecord, Store, StoreError};

/// How often the watcher compares the replica's position with the primary's.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Beyond this lag the replica is not read (the hub keeps account changes for a minute).
pub const MAX_LAG: Duration = Duration::from_secs(10);
/// Longest a replica read may take before the primary is asked instead.
const READ_DEADLINE: Duration = Duration::from_millis(250);
/// Samples kept while the replica catches up (beyond, the oldest go: the watermark then moves
/// later, never earlier than the truth).
const MAX_PENDING: usize = 1024;

pub struct ReadReplica {
    store: Arc<PgStore>,
    /// The newest watermark: the hub's change number and when its sample was taken.
    watermark: Mutex<Option<(u64, Instant)>>,
    /// Reads answered by the replica, and replica reads sent on to the primary.
    used: AtomicU64,
    passed_on: AtomicU64,
}

/// A replica read's outcome, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaStats {
    pub used: u64,
    pub passed_on: u64,
}

impl ReadReplica {
    pub fn new(store: Arc<PgStore>) -> Self {
        Self {
            store,
            watermark: Mutex::new(None),
            used: AtomicU64::new(0),
            passed_on: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> ReplicaStats {
        ReplicaStats {
            used: self.used.load(Ordering::Relaxed),
            passed_on: self.passed_on.load(Ordering::Relaxed),
        }
    }

    /// Follows the replica's position against `primary`'s for as long as the process runs.
    pub fn spawn_watcher(self: &Arc<Self>, primary: Arc<PgStore>, hub: Arc<Hub>) {
        let replica = Arc::clone(self);
        tokio::spawn(async move {
            let mut pending: VecDeque<(u64, u64, Instant)> = VecDeque::new();
            let mut warned = false;
            loop {
                let mark = hub.mark();
                let at = Instant::now();
                match primary.wal_lsn().await {
                    Ok(lsn) => {
                        if pending.len() == MAX_PENDING {
                            pending.pop_front();
                        }
                        pending.push_back((lsn, mark, at));
                    }
                    Err(e) => tracing::debug!(error = %e, "cannot read the primary's WAL position"),
                }
                match replica.store.replayed_lsn().await {
                    Ok(Some(replayed)) => {
                        warned = false;
                        while let Some(&(lsn, mark, at)) = pending.front() {
                            if lsn > replayed {
                                break;
                            }
                            *replica.watermark.lock() = Some((mark, at));
                            pending.pop_front();
                        }
                    }
                    Ok(None) => {
                        if !warned {
                            tracing::warn!("--read-database-url is not a standby (no replay position): it is not read");
                            warned = true;
                        }
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, "cannot read the replica's position: reading the primary");
                            warned = true;
                        }
                    }
                }
                tokio::time::sleep(SAMPLE_EVERY).await;
            }
        });
    }

    /// The change number the replica's answers are good up to, and how old (whole seconds,
    /// rounded up) that is, if they may be used now.
    fn usable_mark(&self, hub: &Hub) -> Option<(u64, i64)> {
        if !hub.feed_up() {
            return None;
        }
        let (mark, at) = (*self.watermark.lock())?;
        let age = at.elapsed();
        (age < MAX_LAG).then(|| (mark, i64::try_from(age.as_secs()).unwrap_or(i64::MAX) + 1))
    }

    /// The live session of a token hash from the replica, with the change number it is good
    /// up to and its age in seconds; `None` when the primary must answer (see the module's
    /// rules).
    pub async fn token_session(
        &self,
        hub: &Hub,
        tenant: &str,
        hash: &str,
    ) -> Option<(SessionRecord, u64, i64)> {
        let (mark, age) = self.usable_mark(hub)?;
        let found = within_deadline(self.store.session_by_token_hash(tenant, hash)).await;
        let answer = self.usable(found, |r| {
            r.tenant == tenant
                && r.revoked_at.is_none()
                && !hub.is_revoked(tenant, &r.id)
                && !hub.changed_since(tenant, &r.account_id, mark)
        });
        answer.map(|r| (r, mark, age))
    }

    /// The account's unrevoked sessions from the replica, or `None` when the primary must answer.
    pub async fn unrevoked_account_sessions(
        &self,
        hub: &Hub,
        tenant: &str,
        account_id: &str,
    ) -> Option<Vec<SessionRecord>> {
        let (mark, _) = self.usable_mark(hub)?;
        if hub.changed_since(tenant, account_id, mark) {
            self.passed_on.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let found = within_deadline(self.store.unrevoked_account_sessions(tenant, account_id))
            .await
            .map(Some);
        // Checked again after the read: an event of the account may have arrived meanwhile.
        self.usable(found, |rows| {
            !hub.changed_since(tenant, account_id, mark)
                && rows
                    .iter()
                    .all(|r| r.revoked_at.is_some() || !hub.is_revoked(tenant, &r.id))
        })
    }

    /// A replica answer if it may be used (read without error, found and `fit`), counted.
    fn usable<T>(
        &self,
        found: Result<Option<T>, StoreError>,
        fit: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let answer = match found {
            Ok(Some(answer)) if fit(&answer) => Some(answer),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e, "replica read failed: reading the primary");
                None
            }
        };
        let counter = if answer.is_some() {
            &self.used
        } else {
            &self.passed_on
        };
        counter.fetch_add(1, Ordering::Relaxed);
        answer
    }
}

/// A replica read, or an error once [`READ_DEADLINE`] has passed (then the primary answers).
async fn within_deadline<T>(
    read: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(READ_DEADLINE, read)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the replica did not answer in time".into(),
            ))
        })
}
