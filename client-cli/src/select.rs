//! Which account a command acts on, without touching global state:
//! `--account` > `LANYARD_ACCOUNT` (both arrive as the flag) > `.lanyard.toml` in the current
//! directory or a parent > the profile's active account.

use account_store::AccountMeta;

use crate::exit::CliError;

/// Why this account was chosen (`lanyard status` says it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Flag,
    PinFile(String),
    Active,
}

/// `user@tenant` for display and matching.
pub fn label(a: &AccountMeta) -> String {
    format!("{}@{}", user_of(a), a.tenant.as_deref().unwrap_or("?"))
}

/// The user part of [`label`]: the email's local part, else the subject.
pub fn user_of(a: &AccountMeta) -> &str {
    a.email
        .as_deref()
        .and_then(|e| e.split('@').next())
        .unwrap_or(a.id.subject.as_str())
}

/// Finds one account by user@tenant, email, 1-based index, or unique prefix of either.
pub fn find<'a>(accounts: &'a [AccountMeta], query: &str) -> Result<&'a AccountMeta, CliError> {
    if let Ok(i) = query.parse::<usize>() {
        if (1..=accounts.len()).contains(&i) {
            return Ok(&accounts[i - 1]);
        }
    }
    let exact: Vec<&AccountMeta> = accounts
        .iter()
        .filter(|a| label(a) == query || a.email.as_deref() == Some(query))
        .collect();
    if let [one] = exact.as_slice() {
        return Ok(one);
    }
    let prefix: Vec<&AccountMeta> = accounts
        .iter()
        .filter(|a| {
            label(a).starts_with(query) || a.email.as_deref().is_some_and(|e| e.starts_with(query))
        })
        .collect();
    match prefix.as_slice() {
        [one] => Ok(one),
        [] => Err(CliError::usage(
            format!("no account matches '{query}'"),
            Some("see `lanyard accounts`"),
        )),
        many => Err(CliError::usage(
            format!(
                "'{query}' matches several accounts: {}",
                many.iter().map(|a| label(a)).collect::<Vec<_>>().join(", ")
            ),
            Some("use more of the name, or the index from `lanyard accounts`"),
        )),
    }
}

pub fn choose(
    accounts: &[AccountMeta],
    flag: Option<&str>,
    active: Option<&AccountMeta>,
) -> Result<(AccountMeta, Rule), CliError> {
    if let Some(q) = flag {
        return Ok((find(accounts, q)?.clone(), Rule::Flag));
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Some((path, pin)) = crate::config::find_pin(&cwd) {
            return Ok((
                find(accounts, &pin.account)?.clone(),
                Rule::PinFile(path.display().to_string()),
            ));
        }
    }
    match active {
        Some(a) => Ok((a.clone(), Rule::Active)),
        None => Err(CliError::signed_out("no account is signed in")),
    }
}
