//! `lanyard switch` without an account: an interactive picker when a person is at a terminal
//! (arrow keys, Enter), otherwise a usage error that lists the accounts, so a script never hangs
//! waiting for a key press.

use std::io::IsTerminal;

use account_store::{AccountKey, AccountMeta};

use crate::exit::CliError;
use crate::render::Paint;
use crate::select::label;

/// Whether a person can answer a picker: keys come from stdin, the picker draws on stderr.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// One line per account, as the picker and the usage error show them.
fn item(i: usize, a: &AccountMeta, active: bool) -> String {
    let mut line = format!("{}. {}", i + 1, label(a));
    if let Some(email) = &a.email {
        line.push_str(&format!(" <{email}>"));
    }
    if a.is_guest {
        line.push_str(" (guest)");
    }
    if active {
        line.push_str(" (active)");
    }
    line
}

/// The account the person picks; without a terminal, a usage error listing the candidates.
pub fn pick<'a>(
    accounts: &'a [AccountMeta],
    active: Option<&AccountKey>,
) -> Result<&'a AccountMeta, CliError> {
    if accounts.is_empty() {
        return Err(CliError::signed_out("no account is signed in"));
    }
    let lines: Vec<String> = accounts
        .iter()
        .enumerate()
        .map(|(i, a)| item(i, a, Some(&a.key) == active))
        .collect();
    if !interactive() {
        return Err(CliError::usage(
            format!(
                "give the account to switch to: {}",
                accounts.iter().map(label).collect::<Vec<_>>().join(", ")
            ),
            Some("`lanyard switch ACCOUNT` (user@tenant, email, index or unique prefix); without ACCOUNT only on a terminal"),
        ));
    }
    let default = accounts
        .iter()
        .position(|a| Some(&a.key) == active)
        .unwrap_or(0);
    let colorful = dialoguer::theme::ColorfulTheme::default();
    let plain = dialoguer::theme::SimpleTheme;
    let theme: &dyn dialoguer::theme::Theme = if Paint::stderr().enabled() {
        &colorful
    } else {
        &plain
    };
    let chosen = dialoguer::Select::with_theme(theme)
        .with_prompt("Switch to (↑/↓, Enter; Esc to cancel)")
        .items(&lines)
        .default(default)
        .interact_opt()
        .map_err(|e| CliError::other(format!("the account picker failed: {e}")))?;
    match chosen {
        Some(i) => accounts
            .get(i)
            .ok_or_else(|| CliError::other("the picker returned no account")),
        None => Err(CliError::Other {
            message: "no account chosen; the active account is unchanged".into(),
            hint: None,
        }),
    }
}
