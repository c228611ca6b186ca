//! Logging: JSON to stderr (stdout carries only the readiness line), set up as every Lanyard
//! service does (`lanyard-telemetry`: `RUST_LOG`, secret-carrying targets capped).

pub fn init() {
    lanyard_telemetry::init_json();
}
