//! `lanyard exec [--account A] [--env NAME] -- CMD ARGS…`: runs CMD with a fresh access token of
//! the account in its environment (`LANYARD_ACCESS_TOKEN` unless `--env` names another variable)
//! and `LANYARD_ACCOUNT` set, so nested `lanyard` calls act on the same account. The per-process
//! answer to "the active account is global state" (aws-vault exec, op run): the token is refreshed
//! first when it would expire within the margin, it never appears in argv, and CMD's exit code is
//! passed through.

use std::ffi::OsString;
use std::time::Duration;

use account_store::ItemKind;
use secrecy::ExposeSecret;

use crate::context::{chosen, Context};
use crate::exit::CliError;
use crate::select::label;

/// As `lanyard token`: a session not checked for this long is asked about first (at most 1 s).
const CHECK_INTERVAL: Duration = Duration::from_secs(60);
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// A variable name a shell would accept: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn env_name(s: &str) -> Result<String, String> {
    let mut chars = s.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("'{s}' is not an environment variable name"))
    }
}

pub async fn run(
    ctx: &Context,
    flag: Option<&str>,
    variable: &str,
    command: &[OsString],
) -> Result<(), CliError> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| CliError::usage("no command to run", Some("lanyard exec -- CMD ARGS…")))?;
    let m = ctx.manager()?;
    let (a, _) = chosen(&m, flag).await?;
    if m.store()
        .secrets()
        .get(&a.key, ItemKind::SessionToken)?
        .is_some()
    {
        m.check_session_if_stale(&a.key, CHECK_INTERVAL, CHECK_TIMEOUT)
            .await?;
    }
    let token = m.access_token(Some(&a.key)).await?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .env(variable, token.expose_secret())
        .env("LANYARD_ACCOUNT", label(&a))
        .status()
        .await
        .map_err(|e| {
            CliError::usage(
                format!("cannot run {}: {e}", program.to_string_lossy()),
                Some("the command goes after `--`, e.g. `lanyard exec -- curl …`"),
            )
        })?;
    match exit_code(&status) {
        0 => Ok(()),
        code => Err(CliError::Exited { code }),
    }
}

/// The child's exit code, or 128 + the signal that ended it (as a shell reports it).
fn exit_code(status: &std::process::ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return u8::try_from(128 + signal).unwrap_or(1);
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::env_name;

    #[test]
    fn variable_names_are_what_a_shell_accepts() {
        for good in ["LANYARD_ACCESS_TOKEN", "GITHUB_TOKEN", "_x1"] {
            assert!(env_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1ABC", "A-B", "A B", "TOKEN=x"] {
            assert!(env_name(bad).is_err(), "{bad}");
        }
    }
}
