use std::io::Write;

use clap::Parser;
use mock_idp::{readiness_line, telemetry, Application, Settings};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let settings = Settings::parse();
    let app = Application::build(&settings)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", readiness_line(app.addr()))?;
    out.flush()?;
    drop(out);
    let handle = app.handle();
    actix_web::rt::spawn(async move {
        wait_for_termination().await;
        tracing::info!("shutting down gracefully");
        handle.stop(true).await;
    });
    app.run_until_stopped().await?;
    Ok(())
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
