//! Logging: structured JSON to stderr (stdout carries only the readiness line).

/// Installs the global subscriber once, as every Lanyard service does (`lanyard-service`);
/// `RUST_LOG` overrides the default `info` level.
pub fn init() {
    lanyard_service::init_json();
}
