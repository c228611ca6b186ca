use std::io::Write;

use clap::Parser;
use session_registry::{readiness_line, telemetry, Application, Settings};

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
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
