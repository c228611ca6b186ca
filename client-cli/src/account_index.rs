//! The profile's accounts as its on-disk index knows them (`accounts.json`: non-secret metadata
//! and the active pointer), read with no secret store and no network.
//!
//! `lanyard prompt` and shell completion read only this. They run on every command line and on
//! every Tab, where a keyring round trip, an Argon2id key derivation or a network wait would be
//! felt (or a passphrase asked for), and they need nothing secret. The index stays current
//! because account-store writes it alongside the secrets: every sign-in (`save_account`),
//! switch (`set_active`) and sign-out (`remove_account`) of any process of the profile.

use std::path::Path;

use account_store::{AccountIndex, AccountMeta};

use crate::config::{check_profile, Dirs};
use crate::exit::CliError;

/// One read of a profile's index: the accounts and the active one, as they were written together.
#[derive(Debug, Clone, Default)]
pub struct DiskAccounts {
    pub accounts: Vec<AccountMeta>,
    pub active: Option<AccountMeta>,
}

/// Reads the index of `profile` under `home` (or the platform's data directory). A profile that
/// never signed in has no index: no accounts, not an error.
pub fn read(home: Option<&Path>, profile: &str) -> Result<DiskAccounts, CliError> {
    check_profile(profile)?;
    let dirs = Dirs::resolve(home)?;
    let (accounts, active) = AccountIndex::new(&dirs.profile(profile)).snapshot()?;
    let active = active.and_then(|key| accounts.iter().find(|a| a.key == key).cloned());
    Ok(DiskAccounts { accounts, active })
}
