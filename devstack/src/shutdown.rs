//! The signals that stop the stack: Ctrl-C (SIGINT) and, on Unix, SIGTERM.
//!
//! Handlers are installed before the readiness lines are printed: a supervisor that reads them
//! and signals at once must get a graceful stop, not the default action of a signal nobody
//! handles yet.

/// Installed signal handlers; [`ShutdownSignals::recv`] resolves on the first signal received
/// since [`ShutdownSignals::install`].
pub struct ShutdownSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
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

    /// Resolves on the first Ctrl-C or SIGTERM. Cancel-safe.
    pub async fn recv(&mut self) -> std::io::Result<()> {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("Ctrl-C received"),
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await?;
            tracing::info!("Ctrl-C received");
        }
        Ok(())
    }
}
