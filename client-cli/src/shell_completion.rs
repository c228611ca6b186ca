//! Shell completion that knows the profile's account names, through clap_complete's dynamic
//! completion: the script `lanyard completions SHELL` prints (clap_complete's registration)
//! runs `COMPLETE=SHELL lanyard -- WORDS…` on every Tab, and `main` answers that before anything
//! else. Subcommands and flags come from the clap definition; account names (`--account`,
//! `switch`, `pin`) from the profile's on-disk index (`account_index`), never the secret store or
//! the network: a Tab must not wait on a keyring or a server, nor ask for a passphrase.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::CommandFactory as _;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{CompleteEnv, Shells};

use crate::account_index;
use crate::cli::Cli;
use crate::exit::CliError;
use crate::select::label;

/// The variable that makes a `lanyard` run a completion request: `COMPLETE=bash lanyard` prints
/// the registration script, `COMPLETE=bash lanyard -- lanyard switch a` the candidates.
pub const COMPLETE_VAR: &str = "COMPLETE";

/// Answers a completion request and exits, if this run is one; otherwise returns at once.
/// `main` calls it before anything writes to stdout.
pub fn answer_if_asked() {
    CompleteEnv::with_factory(Cli::command)
        .var(COMPLETE_VAR)
        .bin("lanyard")
        .complete();
}

/// The registration script for `shell` (what `COMPLETE=SHELL lanyard` prints), calling back the
/// `lanyard` that runs now: by name when it was found on PATH, else by its absolute path.
pub fn write_registration(
    shell: clap_complete::Shell,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let name = shell.to_string();
    let shells = Shells::builtins();
    let completer = shells.completer(&name).ok_or_else(|| {
        CliError::usage(
            format!("no dynamic completion for {name}"),
            Some("use `lanyard completions --static SHELL`"),
        )
    })?;
    let callback = callback_path();
    completer.write_registration(COMPLETE_VAR, "lanyard", "lanyard", &callback, out)?;
    Ok(())
}

fn callback_path() -> String {
    let argv0 = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("lanyard"));
    if argv0.components().count() > 1 {
        if let Ok(cwd) = std::env::current_dir() {
            return cwd.join(argv0).to_string_lossy().into_owned();
        }
    }
    argv0.to_string_lossy().into_owned()
}

/// The account names of the profile the command line being completed names (`--profile`,
/// `--home`, else `LANYARD_PROFILE`, `LANYARD_HOME`, else the defaults), from its on-disk index.
/// Nothing (not an error) when there is no index or it cannot be read: a Tab never prints errors.
pub fn account_candidates() -> Vec<CompletionCandidate> {
    // The words being completed follow `--` (`COMPLETE=bash lanyard -- lanyard switch a`).
    let words: Vec<OsString> = std::env::args_os()
        .skip_while(|a| a != "--")
        .skip(1)
        .collect();
    let (home, profile) = profile_of(words);
    let Ok(disk) = account_index::read(home.as_deref(), &profile) else {
        return Vec::new();
    };
    disk.accounts
        .iter()
        .map(|a| {
            let active = disk.active.as_ref().is_some_and(|x| x.key == a.key);
            let mut help = a.email.clone().unwrap_or_default();
            if active {
                help.push_str(if help.is_empty() {
                    "active"
                } else {
                    " (active)"
                });
            }
            CompletionCandidate::new(label(a)).help((!help.is_empty()).then(|| help.into()))
        })
        .collect()
}

/// `--home` and `--profile` of a partial command line, read by clap itself (so `=`, environment
/// and defaults are as for a real run), errors ignored: the line is still being typed.
fn profile_of(words: Vec<OsString>) -> (Option<PathBuf>, String) {
    let words = if words.is_empty() {
        vec![OsString::from("lanyard")]
    } else {
        words
    };
    match Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(words)
    {
        Ok(m) => (
            m.get_one::<PathBuf>("home").cloned(),
            m.get_one::<String>("profile")
                .cloned()
                .unwrap_or_else(|| "default".into()),
        ),
        Err(_) => (None, "default".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::profile_of;
    use std::ffi::OsString;
    use std::path::PathBuf;

    fn words(line: &str) -> Vec<OsString> {
        line.split(' ').map(OsString::from).collect()
    }

    #[test]
    fn the_profile_and_home_of_a_half_typed_line_are_read_wherever_they_stand() {
        let (home, profile) = profile_of(words("lanyard --profile work --home /h switch a"));
        assert_eq!(
            (home, profile.as_str()),
            (Some(PathBuf::from("/h")), "work")
        );
        let (_, profile) = profile_of(words("lanyard switch --profile=phone "));
        assert_eq!(profile, "phone");
        let (_, profile) = profile_of(words("lanyard --store-backend floppy token --account "));
        assert_eq!(profile, "default", "a bad value elsewhere does not matter");
    }
}
