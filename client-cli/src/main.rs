use std::process::ExitCode;

use clap::Parser;
use client_cli::cli::Cli;
use client_cli::commands::prompt;
use client_cli::render::Paint;

fn main() -> ExitCode {
    // `COMPLETE=bash lanyard -- …` (a Tab in a shell with `lanyard completions` installed).
    client_cli::shell_completion::answer_if_asked();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() && prompt::quiet_on_parse_error(std::env::args_os()) => {
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    // The store's "no keyring: using the encrypted vault" warning is the CLI's to say, once per
    // profile (`vault_notice`), not a log line on every command.
    let filter =
        std::env::var("LANYARD_LOG").unwrap_or_else(|_| "warn,account_store::select=error".into());
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .try_init();
    // One thread: every command is a short sequence of awaits (and `watch` two streams), and
    // starting worker threads is start-up time that `lanyard token` in a script pays each run.
    // Store work still goes to tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(client_cli::app::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(client_cli::exit::CliError::Exited { code }) => ExitCode::from(code),
        Err(e) => {
            let paint = Paint::stderr();
            eprintln!("{} {e}", paint.error_label("error:"));
            if let Some(hint) = e.hint() {
                eprintln!("{} {hint}", paint.warn("hint:"));
            }
            ExitCode::from(e.code())
        }
    }
}
