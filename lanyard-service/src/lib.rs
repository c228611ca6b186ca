//! What every Lanyard server binary shares: one logging set-up (JSON to stderr, `RUST_LOG`, the
//! targets whose debug output carries secrets capped at `info`), the request span, whose target
//! is written with every sensitive query value replaced by `[redacted]`, and the termination
//! signals that stop a server gracefully.
#![forbid(unsafe_code)]

mod healthcheck;
pub mod methods;
mod redact;
mod request_span;
mod signals;

pub use healthcheck::{local_url, probe, run_if_asked, HealthError, HealthcheckArgs};
pub use redact::{is_sensitive_parameter, redact_query, redact_target, RedactedTarget, REDACTED};
pub use request_span::RedactedRootSpan;
pub use signals::TerminationSignals;

use tracing_subscriber::{fmt, EnvFilter};

/// Targets whose debug output carries secrets, capped at `info` whatever `RUST_LOG` says:
/// tokio-postgres logs every statement's parameters at debug level (the registry's token lookup
/// binds token hashes).
const CAPPED: &[&str] = &["tokio_postgres=info"];

/// Installs the global subscriber once: JSON lines on stderr (stdout carries only readiness
/// lines), level from `RUST_LOG` (default `info`).
pub fn init_json() {
    let _ = fmt()
        .json()
        .with_env_filter(filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// `RUST_LOG` (default `info`) with the secret-carrying targets capped.
pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    let mut filter = rust_log
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for capped in CAPPED {
        if let Ok(directive) = capped.parse() {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokio_postgres_debug_lines_stay_off_even_when_asked_for() {
        for spec in [
            None,
            Some("debug"),
            Some("trace"),
            Some("tokio_postgres=trace,info"),
        ] {
            let shown = filter(spec).to_string();
            assert!(
                shown.contains("tokio_postgres=info") && !shown.contains("tokio_postgres=trace"),
                "{spec:?} gave {shown}"
            );
        }
    }
}
