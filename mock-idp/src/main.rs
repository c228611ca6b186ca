use std::io::Write;

use clap::Parser;
use mock_idp::{readiness_line, telemetry, Application, Settings};

/// jemalloc, not glibc's malloc: each password check (Argon2id, 19 MiB) allocates a block that
/// glibc, having raised its mmap threshold after the first one was freed, then serves from a
/// thread's arena and keeps resident; the soak's IdP grew by 13 MiB in its last minutes, when
/// step-up sign-ins begin (docs/reliability.md, "Memory in the soak"; the registry's the same).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
