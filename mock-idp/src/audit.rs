//! Security events of a tenant (refresh-token reuse, code replay, logout deliveries...) and
//! per-grant counters, exposed through the admin API so tests can see what the IdP saw.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

const CAPACITY: usize = 10_000;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub at: i64,
    pub kind: &'static str,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Audit {
    events: VecDeque<AuditEvent>,
    counters: BTreeMap<String, u64>,
}

impl Audit {
    /// Records an event and logs it as one structured line (never with a secret).
    pub fn record(&mut self, tenant: &str, event: AuditEvent) {
        tracing::info!(
            tenant,
            kind = event.kind,
            sub = event.sub.as_deref(),
            client_id = event.client_id.as_deref(),
            detail = %event.detail,
            "security event"
        );
        if self.events.len() == CAPACITY {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    pub fn count(&mut self, counter: &str) {
        *self.counters.entry(counter.to_owned()).or_default() += 1;
    }

    /// Events held (at most the latest 10,000).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.iter().cloned().collect()
    }

    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.clone()
    }
}
