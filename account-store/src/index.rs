//! The account index of a profile: non-secret metadata per account and the active-account
//! pointer, in `accounts.json`. Writes are atomic and serialised across processes; a read that
//! fails to parse refuses every later write, so a damaged index is never overwritten.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::account::{AccountId, AccountKey};
use crate::error::StoreError;
use crate::fsio::{read_optional, write_atomic, DirLock};

/// What the index knows of an account. Nothing here is secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountMeta {
    pub id: AccountId,
    pub key: AccountKey,
    pub display_name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub registry_url: Option<String>,
    /// The OAuth client the account signed in through.
    #[serde(default)]
    pub client_id: Option<String>,
    /// When the stored access token expires (unix seconds), if known.
    #[serde(default)]
    pub access_token_expires_at: Option<i64>,
    #[serde(default)]
    pub is_guest: bool,
    /// The last sign-in brought no refresh token (the provider ignored `offline_access`): the
    /// account cannot refresh and must sign in again when its access token expires.
    #[serde(default)]
    pub no_refresh_token: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_used_at: OffsetDateTime,
}

impl AccountMeta {
    pub fn new(id: AccountId, display_name: impl Into<String>, now: OffsetDateTime) -> Self {
        Self {
            key: id.key(),
            id,
            display_name: display_name.into(),
            email: None,
            tenant: None,
            registry_url: None,
            client_id: None,
            access_token_expires_at: None,
            is_guest: false,
            no_refresh_token: false,
            added_at: now,
            last_used_at: now,
        }
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IndexFile {
    version: u32,
    accounts: Vec<AccountMeta>,
    #[serde(default)]
    active: Option<AccountKey>,
}

const INDEX_VERSION: u32 = 1;

pub struct AccountIndex {
    path: PathBuf,
    lock_path: PathBuf,
}

impl AccountIndex {
    pub fn new(profile_dir: &Path) -> Self {
        Self {
            path: profile_dir.join("accounts.json"),
            lock_path: profile_dir.join("accounts.lock"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<IndexFile, StoreError> {
        let Some(bytes) = read_optional(&self.path)? else {
            return Ok(IndexFile {
                version: INDEX_VERSION,
                ..Default::default()
            });
        };
        let file: IndexFile =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::CorruptIndex {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
        if file.version != INDEX_VERSION {
            return Err(StoreError::CorruptIndex {
                path: self.path.clone(),
                detail: format!("unsupported index version {}", file.version),
            });
        }
        Ok(file)
    }

    fn update<R>(
        &self,
        f: impl FnOnce(&mut IndexFile) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let _lock = DirLock::exclusive(&self.lock_path)?;
        let mut file = self.read()?;
        let result = f(&mut file)?;
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| StoreError::CorruptIndex {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        write_atomic(&self.path, &bytes)?;
        Ok(result)
    }

    pub fn list(&self) -> Result<Vec<AccountMeta>, StoreError> {
        Ok(self.read()?.accounts)
    }

    /// The accounts and the active pointer from one read, so the two always agree (a watcher
    /// comparing snapshots sees a switch and a refresh as they were written).
    pub fn snapshot(&self) -> Result<(Vec<AccountMeta>, Option<AccountKey>), StoreError> {
        let file = self.read()?;
        Ok((file.accounts, file.active))
    }

    pub fn get(&self, key: &AccountKey) -> Result<Option<AccountMeta>, StoreError> {
        Ok(self.read()?.accounts.into_iter().find(|a| &a.key == key))
    }

    /// Adds an account, or updates it if (issuer, subject) is known: a second login never
    /// duplicates an account. `added_at` survives the update.
    pub fn upsert(&self, meta: AccountMeta) -> Result<(), StoreError> {
        self.update(|file| {
            match file.accounts.iter_mut().find(|a| a.key == meta.key) {
                Some(existing) => {
                    let added_at = existing.added_at;
                    *existing = meta;
                    existing.added_at = added_at;
                }
                None => file.accounts.push(meta),
            }
            Ok(())
        })
    }

    /// Removes an account; clears the active pointer if it pointed there. Returns whether it existed.
    pub fn remove(&self, key: &AccountKey) -> Result<bool, StoreError> {
        self.update(|file| {
            let before = file.accounts.len();
            file.accounts.retain(|a| &a.key != key);
            if file.active.as_ref() == Some(key) {
                file.active = None;
            }
            Ok(before != file.accounts.len())
        })
    }

    pub fn clear(&self) -> Result<Vec<AccountMeta>, StoreError> {
        self.update(|file| {
            file.active = None;
            Ok(std::mem::take(&mut file.accounts))
        })
    }

    pub fn active(&self) -> Result<Option<AccountMeta>, StoreError> {
        let file = self.read()?;
        Ok(file
            .active
            .and_then(|k| file.accounts.into_iter().find(|a| a.key == k)))
    }

    pub fn set_active(&self, key: &AccountKey, now: OffsetDateTime) -> Result<(), StoreError> {
        self.update(|file| {
            let account = file
                .accounts
                .iter_mut()
                .find(|a| &a.key == key)
                .ok_or_else(|| StoreError::UnknownAccount(key.to_string()))?;
            account.last_used_at = now;
            file.active = Some(key.clone());
            Ok(())
        })
    }

    pub fn touch(&self, key: &AccountKey, now: OffsetDateTime) -> Result<(), StoreError> {
        self.update(|file| {
            if let Some(a) = file.accounts.iter_mut().find(|a| &a.key == key) {
                a.last_used_at = now;
            }
            Ok(())
        })
    }
}
