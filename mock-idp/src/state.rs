//! The server's shared state: tenants by slug, the clock, the admin token, the HTTP client for
//! back-channel logout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use secrecy::{ExposeSecret, SecretString};

use crate::clock::SharedClock;
use crate::config::{IdpConfig, TenantConfig};
use crate::error::OAuthError;
use crate::ids::TenantId;
use crate::random::constant_time_eq;
use crate::tenant::{Tenant, TenantError};

pub struct IdpState {
    tenants: RwLock<BTreeMap<TenantId, Arc<Tenant>>>,
    pub clock: SharedClock,
    pub base_url: String,
    /// `None`: the admin API is off (see `startup::admin_token`).
    admin_token: Option<SecretString>,
    key_dir: Option<PathBuf>,
    pub http: reqwest::Client,
}

impl IdpState {
    pub fn new(
        config: &IdpConfig,
        base_url: String,
        admin_token: Option<SecretString>,
        clock: SharedClock,
    ) -> Result<Self, TenantError> {
        let state = Self {
            tenants: RwLock::new(BTreeMap::new()),
            clock,
            base_url,
            admin_token,
            key_dir: config.key_dir.clone(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        };
        for t in &config.tenants {
            state.add_tenant(t)?;
        }
        Ok(state)
    }

    /// Adds a tenant; refuses a slug already in use.
    pub fn add_tenant(&self, cfg: &TenantConfig) -> Result<Arc<Tenant>, TenantError> {
        if self.tenants.read().contains_key(&cfg.slug) {
            return Err(TenantError::Invalid {
                tenant: cfg.slug.clone(),
                message: "a tenant with this slug exists".into(),
            });
        }
        let tenant = Arc::new(Tenant::from_config(
            cfg,
            &self.base_url,
            self.key_dir.as_deref(),
            Arc::clone(&self.clock),
        )?);
        self.tenants
            .write()
            .insert(cfg.slug.clone(), Arc::clone(&tenant));
        Ok(tenant)
    }

    /// The tenant named by a path segment; unknown or malformed slugs are a 404.
    pub fn tenant(&self, slug: &str) -> Result<Arc<Tenant>, OAuthError> {
        TenantId::parse(slug)
            .ok()
            .and_then(|id| self.tenants.read().get(&id).cloned())
            .ok_or_else(|| {
                OAuthError::not_found(format!("unknown tenant '{}'", slug.escape_default()))
            })
    }

    pub fn tenants(&self) -> Vec<Arc<Tenant>> {
        self.tenants.read().values().cloned().collect()
    }

    /// Whether the admin API is on at all.
    pub fn admin_api_enabled(&self) -> bool {
        self.admin_token.is_some()
    }

    /// Checks an `Authorization: Bearer` header against the admin token, in constant time.
    /// Always false while the admin API is off.
    pub fn is_admin(&self, authorization: Option<&str>) -> bool {
        let Some(admin_token) = &self.admin_token else {
            return false;
        };
        let presented = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        !presented.is_empty()
            && constant_time_eq(presented.as_bytes(), admin_token.expose_secret().as_bytes())
    }

    /// Drops expired grants in every tenant.
    pub fn sweep(&self) {
        for tenant in self.tenants() {
            let now = tenant.now();
            tenant.grants.sweep(now);
            tenant.guest_rate.lock().sweep(now);
            tenant.device_guesses.lock().sweep(now);
        }
    }
}
