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
}

struct Entry {
    record: SessionRecord,
    /// When it was read from the database.
    read_at: i64,
    /// The hub's change number taken before the read.
    mark: u64,
}

impl Default for SessionCache {
    fn default() -> Self {
        Self {
            entries: Cache::new(CAPACITY),
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
    ) -> Option<SessionRecord> {
        if !hub.feed_up() {
            return None;
        }
        let entry = self.entries.get(hash)?;
        let r = &entry.record;
        let fresh = r.tenant == tenant
            && now - entry.read_at < SESSION_RECHECK
            && now >= entry.read_at
            && !hub.changed_since(tenant, &r.account_id, entry.mark)
            && !hub.is_revoked(tenant, &r.id);
        if fresh {
            Some(r.clone())
        } else {
            self.entries.remove(hash);
            None
        }
    }

    /// Remembers a live session read from the database at `read_at`, with the hub's change
    /// number `mark` taken before the read.
    pub(super) fn put(&self, hash: &str, record: &SessionRecord, read_at: i64, mark: u64) {
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
            let mut record = entry.record.clone();
            record.last_authenticated_at = last_authenticated_at;
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
}
