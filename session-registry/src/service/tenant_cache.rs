//! Tenants' settings, served from memory for [`TENANT_CACHE_TTL`] (other registry processes may
//! change them). Unknown tenants are not remembered: the next request asks the database again.
//!
//! Once an entry is due, one request starts reading it again in the background and every
//! request, that one included, goes on with the settings it has: a heartbeat answered from the
//! session cache then never waits for the database. Every request that found it due used to read
//! it at once, and under load that burst waited for the pool (tens of milliseconds, every ten
//! seconds, for every heartbeat in flight); later the one request that read it waited alone, and
//! a database or pool that stalled for the pool's 3 s answered that heartbeat 503. Settings are
//! never served older than [`TENANT_CACHE_MAX_AGE`]: past it, requests wait for the database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use tracing::Instrument;

use crate::error::ApiError;
use crate::refusal::Refusal;
use crate::store::{Store, TenantRecord};

/// How long a tenant's settings are served from memory before they are read again.
const TENANT_CACHE_TTL: Duration = Duration::from_secs(10);
/// The oldest settings ever served (while reads in the background fail or take this long): the
/// minute after which a cached session is checked against the database too.
const TENANT_CACHE_MAX_AGE: Duration = Duration::from_secs(60);

/// What an entry of a given age may do.
#[derive(Debug, PartialEq, Eq)]
enum Age {
    /// Served as it is.
    Fresh,
    /// Served, and read again in the background.
    Due,
    /// Too old to serve: the request reads it.
    Expired,
}

fn age(elapsed: Duration) -> Age {
    if elapsed < TENANT_CACHE_TTL {
        Age::Fresh
    } else if elapsed < TENANT_CACHE_MAX_AGE {
        Age::Due
    } else {
        Age::Expired
    }
}

type Entries = Arc<RwLock<HashMap<String, Entry>>>;

#[derive(Default)]
pub(super) struct TenantCache {
    entries: Entries,
}

struct Entry {
    read_at: Instant,
    /// Shared with every request it answers: a heartbeat copies no settings.
    tenant: Arc<TenantRecord>,
    /// Whether a request is reading this tenant again.
    refreshing: Arc<AtomicBool>,
}

/// Clears the refreshing flag however the read ends (failed or dropped included).
struct Refreshing(Arc<AtomicBool>);

impl Drop for Refreshing {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl TenantCache {
    /// `slug`'s settings; an unknown tenant is a refusal.
    pub(super) async fn get(
        &self,
        store: &Arc<dyn Store>,
        slug: &str,
    ) -> Result<Arc<TenantRecord>, ApiError> {
        if let Some(e) = self.entries.read().get(slug) {
            match age(e.read_at.elapsed()) {
                Age::Fresh => return Ok(e.tenant.clone()),
                Age::Due => {
                    self.refresh_in_background(e, store, slug);
                    return Ok(e.tenant.clone());
                }
                Age::Expired => {}
            }
        }
        read(&self.entries, store.as_ref(), slug).await
    }

    /// Starts reading `slug` again, unless a read of `entry` is already under way.
    fn refresh_in_background(&self, entry: &Entry, store: &Arc<dyn Store>, slug: &str) {
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let refreshing = Refreshing(entry.refreshing.clone());
        let (entries, store, slug) = (self.entries.clone(), store.clone(), slug.to_owned());
        let span = tracing::warn_span!("tenant_refresh", tenant = %slug);
        tokio::spawn(
            async move {
                if let Err(error) = read(&entries, store.as_ref(), &slug).await {
                    tracing::warn!(
                        tenant = %slug,
                        error = %error,
                        "cannot read the tenant's settings again; serving those read before"
                    );
                }
                drop(refreshing);
            }
            .instrument(span),
        );
    }
}

/// Reads `slug`'s settings into `entries` (an unknown tenant out of them), unless a read begun
/// after this one landed first: a slow read in the background must not put back what a later
/// read replaced (or removed).
async fn read(
    entries: &Entries,
    store: &dyn Store,
    slug: &str,
) -> Result<Arc<TenantRecord>, ApiError> {
    let began = Instant::now();
    let found = store.tenant(slug).await?;
    let mut entries = entries.write();
    let newer = entries.get(slug).is_some_and(|e| e.read_at > began);
    let Some(tenant) = found.map(Arc::new) else {
        if !newer {
            entries.remove(slug);
        }
        return Err(Refusal::UnknownTenant(slug.escape_default().to_string()).into());
    };
    if !newer {
        entries.insert(
            slug.to_owned(),
            Entry {
                read_at: began,
                tenant: tenant.clone(),
                refreshing: Arc::new(AtomicBool::new(false)),
            },
        );
    }
    Ok(tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_served_then_read_in_the_background_then_never_older_than_a_minute() {
        assert_eq!(age(Duration::ZERO), Age::Fresh);
        assert_eq!(age(TENANT_CACHE_TTL - Duration::from_millis(1)), Age::Fresh);
        assert_eq!(age(TENANT_CACHE_TTL), Age::Due);
        assert_eq!(
            age(TENANT_CACHE_MAX_AGE - Duration::from_millis(1)),
            Age::Due
        );
        assert_eq!(age(TENANT_CACHE_MAX_AGE), Age::Expired);
        assert_eq!(age(Duration::from_secs(3600)), Age::Expired);
    }
}
