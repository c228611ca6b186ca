use std::io::Write;

use clap::Parser;
use mock_idp::{readiness_line, telemetry, Application, Settings};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let settings = Settings::parse();
    let app = Application::build(&settings)?;
    // Handlers are installed before the readiness line: a signal sent the moment a script sees
    // the line must already find them.
    let termination = Termination::install()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", readiness_line(app.addr()))?;
    out.flush()?;
    drop(out);
    let handle = app.handle();
    actix_web::rt::spawn(async move {
        termination.wait().await;
        tracing::info!("shutting down gracefully");
        handle.stop(true).await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
struct Termination {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Termination {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
