//! Tenants' settings, served from memory for [`TENANT_CACHE_TTL`] (other registry processes may
//! change them). Unknown tenants are not remembered: the next request asks the database again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::error::ApiError;
use crate::refusal::Refusal;
use crate::store::{Store, TenantRecord};

/// How long a tenant's settings are served from memory before they are read again.
const TENANT_CACHE_TTL: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct TenantCache {
    entries: RwLock<HashMap<String, (Instant, TenantRecord)>>,
}

impl TenantCache {
    /// `slug`'s settings; an unknown tenant is a refusal.
    pub(super) async fn get(
        &self,
        store: &dyn Store,
        slug: &str,
    ) -> Result<TenantRecord, ApiError> {
        if let Some((at, t)) = self.entries.read().get(slug) {
            if at.elapsed() < TENANT_CACHE_TTL {
                return Ok(t.clone());
            }
        }
        let tenant = store
            .tenant(slug)
            .await?
            .ok_or_else(|| Refusal::UnknownTenant(slug.escape_default().to_string()))?;
        self.entries
            .write()
            .insert(slug.to_owned(), (Instant::now(), tenant.clone()));
        Ok(tenant)
    }
}
