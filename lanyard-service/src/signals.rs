//! The signals that stop a Lanyard server: Ctrl-C (SIGINT) and, on Unix, SIGTERM. One place for
//! the three binaries (mock-idp, session-registry, devstack).
//!
//! Install the handlers before printing the readiness line: a supervisor that reads it and
//! signals at once must get a graceful stop, not the default action of a signal nobody handles
//! yet.

/// Installed signal handlers; [`TerminationSignals::recv`] resolves on each signal received since
/// [`TerminationSignals::install`].
pub struct TerminationSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl TerminationSignals {
    /// Must run inside a Tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the next Ctrl-C or SIGTERM with the signal's name. Cancel-safe.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        let name = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        };
        #[cfg(not(unix))]
        let name = {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        };
        tracing::info!(signal = name, "termination signal received");
        name
    }
}
