use std::io::Write;

use clap::Parser;
use session_registry::{readiness_line, telemetry, Application, Settings};

/// jemalloc, not glibc's malloc: see docs/reliability.md ("Memory in the soak").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    // `session-registry healthcheck [--url URL]`: for container healthchecks (no curl in the
    // image); ready means the database answers too.
    if let Some(code) = lanyard_service::run_if_asked(|| {
        let bind = std::env::var("SESSION_REGISTRY_BIND")
            .unwrap_or_else(|_| session_registry::config::DEFAULT_BIND.to_owned());
        lanyard_service::local_url(&bind, "/readyz")
    })
    .await
    {
        std::process::exit(code);
    }
    telemetry::init();
    let settings = Settings::parse();
    let app = Application::build(&settings).await?;
    let addr = app.addr();
    app.run_until_signalled(|| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", readiness_line(addr))?;
        out.flush()
    })
    .await?;
    Ok(())
}
