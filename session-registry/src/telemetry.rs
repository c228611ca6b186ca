//! Logging: JSON to stderr (stdout carries only the readiness line), set up as every Lanyard
//! service does (`lanyard-service`: `RUST_LOG`, secret-carrying targets capped).

pub fn init() {
    lanyard_service::init_json();
}
