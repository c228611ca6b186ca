//! Logging: human-readable lines on stderr (stdout carries only the readiness lines), coloured
//! only when stderr is a terminal.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber once; `RUST_LOG` overrides the default level. Request logs of
/// both services are on at `info`, as when each runs alone.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = fmt()
        .compact()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
