//! Per-account keyed secure storage for Lanyard.
//!
//! Every account (issuer, subject) keeps its tokens under its own key in the best secret store
//! the machine has: the OS keyring, else an AES-256-GCM vault file, or memory. Non-secret
//! metadata and the active-account pointer live in the profile's account index. This crate
//! never does network I/O.
//!
//! ```
//! use account_store::{AccountId, AccountMeta, AccountStore, BackendChoice, ItemKind, StoreConfig};
//! use secrecy::{ExposeSecret, SecretString};
//!
//! let dir = std::env::temp_dir().join(format!("doc-{}", std::process::id()));
//! let store = AccountStore::open(StoreConfig::new(&dir, "default").backend(BackendChoice::Memory))?;
//! let id = AccountId::new("https://idp.example/acme", "alice")?;
//! let now = time::OffsetDateTime::UNIX_EPOCH;
//! store.save_account(AccountMeta::new(id.clone(), "alice@acme", now), &[(ItemKind::RefreshToken, SecretString::from("rt"))])?;
//! assert_eq!(store.secrets().require(&id.key(), ItemKind::RefreshToken)?.expose_secret(), "rt");
//! store.remove_account(&id.key())?;
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod account;
pub mod error;
mod fsio;
pub mod index;
pub mod item;
pub mod keyring_backend;
pub mod memory;
pub mod secret_store;
pub mod select;
pub mod vault;

use secrecy::SecretString;
use time::OffsetDateTime;

pub use account::{AccountId, AccountKey, Issuer, Subject};
pub use error::StoreError;
/// Crash-safe writes for files beside the store (a CLI's device identity, say).
pub use fsio::write_atomic;
pub use index::{AccountIndex, AccountMeta};
pub use item::{ItemKind, StorageClass};
pub use secret_store::{BackendInfo, SecretStore};
pub use select::{BackendChoice, StoreConfig};

/// A profile's accounts: the index plus the secret backend.
pub struct AccountStore {
    index: AccountIndex,
    secrets: Box<dyn SecretStore>,
    profile: String,
}

impl AccountStore {
    /// Opens the profile in `cfg.dir` with the configured backend.
    pub fn open(cfg: StoreConfig) -> Result<Self, StoreError> {
        fsio::create_private_dir(&cfg.dir)?;
        let secrets = select::open_backend(&cfg)?;
        tracing::debug!(backend = secrets.info().name, profile = %cfg.profile, "account store opened");
        Ok(Self {
            index: AccountIndex::new(&cfg.dir),
            secrets,
            profile: cfg.profile,
        })
    }

    /// Opens with an explicit backend (tests, apps with their own store).
    pub fn with_backend(
        dir: &std::path::Path,
        profile: &str,
        secrets: Box<dyn SecretStore>,
    ) -> Result<Self, StoreError> {
        fsio::create_private_dir(dir)?;
        Ok(Self {
            index: AccountIndex::new(dir),
            secrets,
            profile: profile.to_owned(),
        })
    }

    pub fn profile(&self) -> &str {
        &self.profile
    }

    pub fn index(&self) -> &AccountIndex {
        &self.index
    }

    pub fn secrets(&self) -> &dyn SecretStore {
        self.secrets.as_ref()
    }

    pub fn backend_info(&self) -> BackendInfo {
        self.secrets.info()
    }

    /// Adds or updates an account and stores its items. Secrets are written first, so a crash in
    /// between leaves at worst unindexed secrets, never an indexed account without them.
    pub fn save_account(
        &self,
        meta: AccountMeta,
        items: &[(ItemKind, SecretString)],
    ) -> Result<(), StoreError> {
        for (kind, value) in items {
            self.secrets.set(&meta.key, *kind, value)?;
        }
        self.index.upsert(meta)
    }

    pub fn accounts(&self) -> Result<Vec<AccountMeta>, StoreError> {
        self.index.list()
    }

    pub fn active(&self) -> Result<Option<AccountMeta>, StoreError> {
        self.index.active()
    }

    pub fn set_active(&self, key: &AccountKey, now: OffsetDateTime) -> Result<(), StoreError> {
        self.index.set_active(key, now)
    }

    /// Deletes every item of the account and its index entry, and nothing else.
    pub fn remove_account(&self, key: &AccountKey) -> Result<(), StoreError> {
        self.secrets.delete_account(key)?;
        if !self.index.remove(key)? {
            return Err(StoreError::UnknownAccount(key.to_string()));
        }
        Ok(())
    }

    /// Wipes the profile: every account's items and the index.
    pub fn remove_all(&self) -> Result<usize, StoreError> {
        let accounts = self.index.list()?;
        for a in &accounts {
            self.secrets.delete_account(&a.key)?;
        }
        self.index.clear()?;
        Ok(accounts.len())
    }
}
