//! Tenants' settings, served from memory for [`TENANT_CACHE_TTL`] (other registry processes may
//! change them). Unknown tenants are not remembered: the next request asks the database again.
//!
//! Once an entry is due, one request reads it again while the others go on with the settings
//! they have (stale by at most the time that read takes): every request that found it due used
//! to read it at once, and under load that burst waited for the pool — tens of milliseconds,
//! every ten seconds, for every heartbeat in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::error::ApiError;
use crate::refusal::Refusal;
use crate::store::{Store, TenantRecord};

/// How long a tenant's settings are served from memory before they are read again.
const TENANT_CACHE_TTL: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct TenantCache {
    entries: RwLock<HashMap<String, Entry>>,
}

struct Entry {
    read_at: Instant,
    tenant: TenantRecord,
    /// Whether a request is reading this tenant again.
    refreshing: Arc<AtomicBool>,
}

/// Clears the refreshing flag however the read ends (a dropped request included).
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
        store: &dyn Store,
        slug: &str,
    ) -> Result<TenantRecord, ApiError> {
        let mut refreshing = None;
        if let Some(e) = self.entries.read().get(slug) {
            if e.read_at.elapsed() < TENANT_CACHE_TTL {
                return Ok(e.tenant.clone());
            }
            if e.refreshing.swap(true, Ordering::AcqRel) {
                // Another request is reading it again: go on with these.
                return Ok(e.tenant.clone());
            }
            refreshing = Some(Refreshing(e.refreshing.clone()));
        }
        let Some(tenant) = store.tenant(slug).await? else {
            self.entries.write().remove(slug);
            return Err(Refusal::UnknownTenant(slug.escape_default().to_string()).into());
        };
        self.entries.write().insert(
            slug.to_owned(),
            Entry {
                read_at: Instant::now(),
                tenant: tenant.clone(),
                refreshing: Arc::new(AtomicBool::new(false)),
            },
        );
        drop(refreshing);
        Ok(tenant)
    }
}
