//! The admin API's typed request and response bodies (and so its OpenAPI schemas).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::AuditEvent;
use crate::config::SigningAlg;
use crate::faults::{Endpoint, Fault};
use crate::grants::RecordCounts;
use crate::jwt::IdTokenTamper;

/// A tenant as listed or created.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSummary {
    pub slug: String,
    pub issuer: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserCreated {
    pub sub: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClientCreated {
    pub client_id: String,
}

/// A live IdP (browser) session.
#[derive(Debug, Serialize, ToSchema)]
pub struct IdpSessionView {
    pub sid: String,
    pub sub: String,
    /// Absent for a guest.
    pub username: Option<String>,
    pub is_guest: bool,
    /// Unix seconds.
    pub auth_time: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// The clients signed in through this session.
    pub clients: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndedSessions {
    pub ended_sessions: usize,
}

/// The body of a key rotation (optional: ES256 by default).
#[derive(Debug, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(default)]
    #[schema(value_type = Option<crate::config::SigningAlgName>)]
    pub alg: Option<SigningAlg>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    pub kid: String,
    #[schema(value_type = crate::config::SigningAlgName)]
    pub alg: SigningAlg,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ClearedFaults {
    pub cleared: usize,
}

/// What the IdP saw: security events, per-grant counters and how many records it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditReport {
    pub events: Vec<AuditEvent>,
    pub counters: BTreeMap<String, u64>,
    pub records: RecordCounts,
}

/// The records a tenant holds, counted (`GET /admin/tenants/{tenant}/records`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordsReport {
    pub records: RecordCounts,
    /// Events in the audit log (it keeps the latest 10,000).
    pub audit_events: usize,
}

/// Every admin error: RFC 6749 §5.2's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    pub error_description: String,
}

/// An injected fault: what was asked for, its id, and what is left of a `count`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaultView {
    pub id: String,
    pub endpoint: Endpoint,
    pub latency_ms: Option<u64>,
    pub status: Option<u16>,
    pub rate: Option<f64>,
    pub count: Option<u32>,
    pub down: bool,
    pub clock_offset_secs: Option<i64>,
    pub id_token: Option<IdTokenTamper>,
    /// Requests left for a `count` fault.
    pub remaining: Option<u32>,
}

impl From<Fault> for FaultView {
    fn from(f: Fault) -> Self {
        Self {
            id: f.id,
            endpoint: f.spec.endpoint,
            latency_ms: f.spec.latency_ms,
            status: f.spec.status,
            rate: f.spec.rate,
            count: f.spec.count,
            down: f.spec.down,
            clock_offset_secs: f.spec.clock_offset_secs,
            id_token: f.spec.id_token,
            remaining: f.remaining,
        }
    }
}
