use std::io::Write;

use clap::Parser;
use mock_idp::{readiness_line, telemetry, Application, Settings};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    // `mock-idp healthcheck [--url URL]`: for container healthchecks (no curl in the image).
    if let Some(code) = lanyard_service::run_if_asked(|| {
        let bind = std::env::var("MOCK_IDP_BIND")
            .unwrap_or_else(|_| mock_idp::config::DEFAULT_BIND.to_owned());
        lanyard_service::local_url(&bind, "/healthz")
    })
    .await
    {
        std::process::exit(code);
    }
    telemetry::init();
    let settings = Settings::parse();
    let app = Application::build(&settings)?;
    // Handlers are installed before the readiness line: a signal sent the moment a script sees
    // the line must already find them.
    let mut termination = lanyard_service::TerminationSignals::install()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", readiness_line(app.addr()))?;
    out.flush()?;
    drop(out);
    let handle = app.handle();
    actix_web::rt::spawn(async move {
        termination.recv().await;
        tracing::info!("shutting down gracefully");
        handle.stop(true).await;
    });
    app.run_until_stopped().await?;
    Ok(())
}
