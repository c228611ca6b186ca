//! `lanyard man [--dir DIR]`: the manual pages, made from the same clap definition as `--help`.
//! Without DIR, `lanyard.1` on stdout (`lanyard man | man -l -`); with DIR, every page —
//! `lanyard.1` and one `lanyard-SUBCOMMAND.1` per subcommand (`lanyard-config-get.1` …) —
//! written there, the folder created if need be.

use std::io::Write as _;
use std::path::Path;

use crate::cli::Cli;
use crate::exit::CliError;

pub fn run(dir: Option<&Path>) -> Result<(), CliError> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(cmd, dir)?;
            eprintln!(
                "Wrote lanyard.1 and lanyard-SUBCOMMAND.1 to {}",
                dir.display()
            );
            Ok(())
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            std::io::stdout().write_all(&page)?;
            Ok(())
        }
    }
}
