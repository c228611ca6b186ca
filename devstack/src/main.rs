use std::io::Write;

use clap::Parser;
use devstack::{telemetry, Devstack, Options, ShutdownSignals};

// A plain Tokio runtime, not an actix System: actix-server stops the System after a signal it
// handles itself (mock-idp's server does), which would cut the registry's graceful drain short.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let options = Options::parse();
    let mut signals = ShutdownSignals::install()?;
    // Ctrl-C while waiting on a slow database still stops at once.
    let stack = tokio::select! {
        stack = Devstack::start(&options) => stack?,
        _ = signals.recv() => return Ok(()),
    };
    let mut out = std::io::stdout().lock();
    for line in stack.readiness_lines() {
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    drop(out);
    eprint!("{}", stack.banner());
    stack
        .run_until(async move {
            signals.recv().await;
            Ok(())
        })
        .await?;
    Ok(())
}
