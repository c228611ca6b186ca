//! `lanyard completions`: the shell completion script on stdout.

use crate::cli::Cli;
use crate::exit::CliError;

pub fn run(shell: clap_complete::Shell) -> Result<(), CliError> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    clap_complete::generate(shell, &mut cmd, "lanyard", &mut std::io::stdout());
    Ok(())
}
