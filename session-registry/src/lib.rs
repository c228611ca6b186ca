//! The multi-tenant registry of device sessions: an ID token from a tenant's IdP is traded for a
//! device session (an opaque session token and a short-lived session JWT); sessions are listed
//! across devices, revoked from anywhere, and revocations are pushed to every device.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod events;
pub mod jwt;
pub mod jwt_cache;
pub mod metrics;
pub mod oidc;
pub mod refusal;
mod routes;
pub mod service;
pub mod shared_keys;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod upgrade;

pub use config::Settings;
pub use startup::{register_tenants, Application};

/// Constant-time equality.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The readiness line printed on stdout once the server accepts connections.
pub fn readiness_line(addr: std::net::SocketAddr) -> String {
    format!("session-registry listening on http://{addr}")
}
