//! Logging: human-readable lines on stderr (stdout carries only the readiness lines), coloured
//! only when stderr is a terminal.

use std::io::IsTerminal;

use tracing_subscriber::fmt;

/// Installs the global subscriber once; `RUST_LOG` overrides the default level. Request logs of
/// both services are on at `info`, as when each runs alone; the targets whose debug lines carry
/// secrets are capped as in every Lanyard service (`lanyard-service`).
pub fn init() {
    let filter = lanyard_service::filter(std::env::var("RUST_LOG").ok().as_deref());
    let _ = fmt()
        .compact()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
