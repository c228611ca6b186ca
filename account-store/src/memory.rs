//! Secrets in process memory: for tests and for apps that want no persistence.

use std::collections::HashMap;
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};

use crate::account::AccountKey;
use crate::error::StoreError;
use crate::item::ItemKind;
use crate::secret_store::{check_len, BackendInfo, SecretStore};

#[derive(Default)]
pub struct MemoryStore {
    items: Mutex<HashMap<(AccountKey, ItemKind), SecretString>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(AccountKey, ItemKind), SecretString>> {
        // A panic while holding the lock cannot leave a half-written map entry: recover it.
        self.items
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl SecretStore for MemoryStore {
    fn get(
        &self,
        account: &AccountKey,
        item: ItemKind,
    ) -> Result<Option<SecretString>, StoreError> {
        Ok(self
            .lock()
            .get(&(account.clone(), item))
            .map(|s| SecretString::from(s.expose_secret().to_owned())))
    }

    fn set(
        &self,
        account: &AccountKey,
        item: ItemKind,
        value: &SecretString,
    ) -> Result<(), StoreError> {
        check_len(item, value)?;
        self.lock().insert(
            (account.clone(), item),
            SecretString::from(value.expose_secret().to_owned()),
        );
        Ok(())
    }

    fn delete(&self, account: &AccountKey, item: ItemKind) -> Result<(), StoreError> {
        self.lock().remove(&(account.clone(), item));
        Ok(())
    }

    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "memory",
            location: "process memory".into(),
        }
    }
}
