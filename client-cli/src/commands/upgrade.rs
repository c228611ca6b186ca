//! `lanyard upgrade`: turns a guest account (`lanyard login --guest`) into a registered one,
//! keeping the account (same key and subject) and its sessions.

use std::io::IsTerminal;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use session_core::{UpgradeError, UpgradeRequest};

use crate::context::{chosen, Context};
use crate::exit::CliError;
use crate::render::account_json;
use crate::select::label;

/// Where `lanyard upgrade` reads the new password from when it is not asked on a terminal.
const PASSWORD_ENV: &str = "LANYARD_UPGRADE_PASSWORD";

/// `lanyard upgrade`: registers the chosen (by default the active) guest account.
pub async fn run(
    ctx: &Context,
    flag: Option<&str>,
    username: String,
    email: Option<String>,
    name: Option<String>,
) -> Result<(), CliError> {
    let m = ctx.manager()?;
    let (account, _) = chosen(&m, flag).await?;
    if !account.is_guest {
        return Err(not_a_guest(&label(&account)));
    }
    let password = new_password()?;
    let before = label(&account);
    let done = m
        .upgrade_guest(
            &account.key,
            UpgradeRequest {
                username: username.clone(),
                password,
                email,
                name,
            },
        )
        .await
        .map_err(|e| upgrade_error(e, &username))?;
    let active = m.active().await?.map(|a| a.key) == Some(done.account.key.clone());
    let mut out = account_json(&done.account, active);
    out["session_id"] = json!(done.session_id);
    out["username"] = json!(done.username.clone().unwrap_or(username));
    ctx.output.print(
        || {
            format!(
                "Upgraded {before} to the registered account {} (same account{})",
                label(&done.account),
                done.session_id
                    .as_deref()
                    .map(|s| format!(", session {s} kept"))
                    .unwrap_or_default()
            )
        },
        out,
    )
}

fn not_a_guest(account: &str) -> CliError {
    CliError::usage(
        format!("{account} is not a guest account"),
        Some(
            "`lanyard upgrade` registers a guest (`lanyard login --guest`); see `lanyard accounts`",
        ),
    )
}

fn upgrade_error(e: UpgradeError, username: &str) -> CliError {
    match e {
        UpgradeError::NotAGuest { account } => not_a_guest(&account),
        UpgradeError::UsernameTaken { .. } => CliError::Other {
            message: e.to_string(),
            hint: Some(format!(
                "choose another --username than '{username}' and try again"
            )),
        },
        UpgradeError::Refused { .. } => CliError::Other {
            message: e.to_string(),
            hint: Some("fix the username, email or password and try again".into()),
        },
        UpgradeError::StillAGuest => CliError::other(e),
        UpgradeError::Session(inner) => inner.into(),
    }
}

/// The new password: from `LANYARD_UPGRADE_PASSWORD`, else asked twice on the terminal (never
/// echoed), else a usage error. Never a flag: flags end up in shell history and `ps`.
fn new_password() -> Result<SecretString, CliError> {
    if let Some(p) = std::env::var_os(PASSWORD_ENV) {
        let p = p
            .into_string()
            .map_err(|_| CliError::usage(format!("{PASSWORD_ENV} is not valid UTF-8"), None))?;
        if p.is_empty() {
            return Err(CliError::usage(format!("{PASSWORD_ENV} is empty"), None));
        }
        return Ok(SecretString::from(p));
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::usage(
            "no password: set LANYARD_UPGRADE_PASSWORD or run on a terminal to be asked",
            None,
        ));
    }
    let first = SecretString::from(rpassword::prompt_password("New password: ")?);
    let again = SecretString::from(rpassword::prompt_password("Repeat the password: ")?);
    if first.expose_secret() != again.expose_secret() {
        return Err(CliError::usage("the passwords do not match", None));
    }
    if first.expose_secret().is_empty() {
        return Err(CliError::usage("the password is empty", None));
    }
    Ok(first)
}
