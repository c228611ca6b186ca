//! `lanyard completions SHELL`: the shell completion script on stdout. By default the dynamic
//! one (`shell_completion`): a few lines that call `lanyard` back on every Tab, so subcommands,
//! flags and the profile's account names are always those of the installed binary and profile.
//! `--static` prints clap_complete's self-contained script instead (no account names).

use crate::cli::Cli;
use crate::exit::CliError;
use crate::shell_completion;

pub fn run(shell: clap_complete::Shell, static_script: bool) -> Result<(), CliError> {
    let mut out = std::io::stdout();
    if static_script {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut cmd, "lanyard", &mut out);
        return Ok(());
    }
    shell_completion::write_registration(shell, &mut out)
}
