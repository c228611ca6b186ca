//! The one interface every backend implements.

use secrecy::SecretString;

use crate::account::AccountKey;
use crate::error::StoreError;
use crate::item::ItemKind;

/// Largest secret any backend accepts (a JWT with many claims fits comfortably).
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// Which backend holds the secrets, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackendInfo {
    /// `secret-service`, `keyutils`, `keychain`, `windows-credential-manager`, `vault`, `memory`.
    pub name: &'static str,
    /// Where: a collection, a file path, "process memory".
    pub location: String,
}

/// Per-account keyed secret storage.
pub trait SecretStore: Send + Sync {
    fn get(&self, account: &AccountKey, item: ItemKind)
        -> Result<Option<SecretString>, StoreError>;
    fn set(
        &self,
        account: &AccountKey,
        item: ItemKind,
        value: &SecretString,
    ) -> Result<(), StoreError>;
    /// Deletes one item; deleting an absent item is not an error.
    fn delete(&self, account: &AccountKey, item: ItemKind) -> Result<(), StoreError>;
    fn info(&self) -> BackendInfo;

    /// Deletes every item of `account` and nothing else.
    fn delete_account(&self, account: &AccountKey) -> Result<(), StoreError> {
        for item in ItemKind::ALL {
            self.delete(account, item)?;
        }
        Ok(())
    }

    /// Like `get`, but absence is [`StoreError::NotFound`].
    fn require(&self, account: &AccountKey, item: ItemKind) -> Result<SecretString, StoreError> {
        self.get(account, item)?
            .ok_or_else(|| StoreError::not_found(item))
    }
}

pub(crate) fn check_len(item: ItemKind, value: &SecretString) -> Result<(), StoreError> {
    use secrecy::ExposeSecret;
    let len = value.expose_secret().len();
    if len > MAX_SECRET_LEN {
        return Err(StoreError::TooLarge {
            item: item.name(),
            len,
            limit: MAX_SECRET_LEN,
        });
    }
    Ok(())
}
