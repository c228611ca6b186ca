//! The per-process session cache behind token authenticate (the heartbeat): a session read from
//! the database once answers the next heartbeats of its token from memory, for at most
//! [`SESSION_RECHECK`] seconds (the rule the session-JWT path follows), and only while
//!
//! * this process's event feed is connected (else changes made elsewhere may go unheard),
//! * no event of the session's account arrived since it was read (the [`Hub`]'s change numbers:
//!   an extension, a guest upgrade, a new session, a revocation through any process), and
//! * the session is not in the revoked set.
//!
//! So a revoke through any process is refused everywhere as soon as its event arrives. A cached
//! session is only ever trusted to say yes: whatever it would refuse (a timeout) is read again
//! from the database before the answer. Keyed by token hash; a token never enters it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quick_cache::sync::Cache;

use crate::events::Hub;
use crate::store::SessionRecord;

/// Longest a cached session answers without the database, in seconds.
pub const SESSION_RECHECK: i64 = 60;
/// Sessions held at most (each well under 1 KiB).
const CAPACITY: usize = 100_000;

pub(super) struct SessionCache {
    entries: Cache<String, Arc<Entry>>,
    counts: [AtomicU64; Outcome::ALL.len()],
}

/// What a look in the cache came to, counted for `/metrics`
/// (`lanyard_registry_session_cache_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from memory.
    Hit,
    /// Not cached (never read, or evicted).
    Absent,
    /// Cached, but read [`SESSION_RECHECK`] seconds ago or more: read again.
    Recheck,
    /// Cached, but an event of its account arrived since: read again.
    Changed,
    /// Cached, but revoked since: read again.
    Revoked,
    /// Not looked at: the event feed is down.
    FeedDown,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Hit,
        Outcome::Absent,
        Outcome::Recheck,
        Outcome::Changed,
        Outcome::Revoked,
        Outcome::FeedDown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Absent => "absent",
            Outcome::Recheck => "recheck",
            Outcome::Changed => "changed",
            Outcome::Revoked => "revoked",
            Outcome::FeedDown => "feed_down",
        }
    }
}

/// How many looks came to each [`Outcome`], in [`Outcome::ALL`]'s order.
#[derive(Debug, Clone, Copy, Default)]
pub struct SessionCacheStats(pub [u64; Outcome::ALL.len()]);

struct Entry {
    record: Arc<SessionRecord>,
    /// When it was read from the database.
    read_at: i64,
    /// The hub's change number taken before the read.
    mark: u64,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self {
            entries: Cache::new(CAPACITY),
            counts: Default::default(),
        }
    }
}

impl SessionCache {
    /// The cached session of `hash` in `tenant`, if it may still answer at `now`.
    pub(super) fn get(
        &self,
        hub: &Hub,
        tenant: &str,
        hash: &str,
        now: i64,
    ) -> Option<Arc<SessionRecord>> {
        let outcome = self.look(hub, tenant, hash, now);
        self.counts[outcome.0 as usize].fetch_add(1, Ordering::Relaxed);
        outcome.1
    }

    fn look(
        &self,
        hub: &Hub,
        tenant: &str,
        hash: &str,
        now: i64,
    ) -> (Outcome, Option<Arc<SessionRecord>>) {
        if !hub.feed_up() {
            return (Outcome::FeedDown, None);
        }
        let Some(entry) = self.entries.get(hash) else {
            return (Outcome::Absent, None);
        };
        let r = &entry.record;
        let outcome = if r.tenant != tenant {
            Outcome::Absent
        } else if now - entry.read_at >= SESSION_RECHECK || now < entry.read_at {
            Outcome::Recheck
        } else if hub.changed_since(tenant, &r.account_id, entry.mark) {
            Outcome::Changed
        } else if hub.is_revoked(tenant, &r.id) {
            Outcome::Revoked
        } else {
            return (Outcome::Hit, Some(r.clone()));
        };
        self.entries.remove(hash);
        (outcome, None)
    }

    pub(super) fn stats(&self) -> SessionCacheStats {
        SessionCacheStats(std::array::from_fn(|i| {
            self.counts[i].load(Ordering::Relaxed)
        }))
    }

    /// Remembers a live session read from the database at `read_at`, with the hub's change
    /// number `mark` taken before the read.
    pub(super) fn put(&self, hash: &str, record: &Arc<SessionRecord>, read_at: i64, mark: u64) {
        if record.revoked_at.is_some() {
            return;
        }
        self.entries.insert(
            hash.to_owned(),
            Arc::new(Entry {
                record: record.clone(),
                read_at,
                mark,
            }),
        );
    }

    /// Records activity written for a cached session (so the next heartbeat does not write it
    /// again), keeping when it was read.
    pub(super) fn touched(&self, hash: &str, last_authenticated_at: i64) {
        if let Some(entry) = self.entries.get(hash) {
            let mut record = SessionRecord::clone(&entry.record);
            record.last_authenticated_at = last_authenticated_at;
            let record = Arc::new(record);
            self.entries.insert(
                hash.to_owned(),
                Arc::new(Entry {
                    record,
                    read_at: entry.read_at,
                    mark: entry.mark,
                }),
            );
        }
    }

    pub(super) fn forget(&self, hash: &str) {
        self.entries.remove(hash);
    }

    /// Drops the entries that can no longer answer at `now` (read [`SESSION_RECHECK`] seconds
    /// ago or more): the cache otherwise holds every session it ever read — revoked, expired,
    /// its device long gone — until its capacity pushes them out, so its memory followed the
    /// sessions seen since the start, not the live ones (bench/soak.sh).
    pub(super) fn forget_stale(&self, now: i64) {
        self.entries
            .retain(|_, e| now - e.read_at < SESSION_RECHECK && e.read_at <= now);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            tenant: "acme".into(),
            account_id: "a".into(),
            subject: "s".into(),
            email: None,
            is_guest: false,
            device_id: "d".into(),
            device_name: "d".into(),
            device_platform: "linux".into(),
            device_last_seen: 0,
            idp_sid: None,
            created_at: 0,
            last_authenticated_at: 0,
            expires_at: i64::MAX,
            absolute_expires_at: i64::MAX,
            revoked_at: None,
            revoked_reason: None,
            auth_method: "oidc".into(),
            auth_time: 0,
            user_agent: None,
            ip: None,
        }
    }

    #[test]
    fn entries_past_their_recheck_are_collected_and_fresh_ones_kept() {
        let cache = SessionCache::default();
        cache.put("old", &Arc::new(record("s1")), 1_000, 0);
        cache.put("fresh", &Arc::new(record("s2")), 1_050, 0);
        cache.forget_stale(1_059);
        assert_eq!(cache.len(), 2, "both still within their minute");
        cache.forget_stale(1_060);
        assert_eq!(cache.len(), 1, "the one read a minute ago is gone");
        cache.forget_stale(1_110);
        assert_eq!(cache.len(), 0);
    }
}
