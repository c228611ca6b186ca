//! The encrypted file vault: where no OS keyring answers, secrets live in one file per profile,
//! each item sealed with AES-256-GCM (see [`format`]). The key comes from the OS keyring when
//! one exists ([`VaultKeySource::Key`]), otherwise from a passphrase through Argon2id.
//!
//! A vault that fails its checks is refused and never overwritten: every write first verifies
//! every entry, and refuses if any is damaged. Reads of intact entries still work.

pub mod crypto;
pub mod format;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use self::crypto::{VaultKey, ARGON2_M_COST, ARGON2_P_COST, ARGON2_T_COST};
use self::format::{Header, Image, Kdf};
use crate::account::AccountKey;
use crate::error::StoreError;
use crate::fsio::{read_optional, write_atomic, DirLock};
use crate::item::ItemKind;
use crate::secret_store::{check_len, BackendInfo, SecretStore};

/// Where the vault key comes from.
#[derive(Clone)]
pub enum VaultKeySource {
    /// A random key kept elsewhere (the OS keyring).
    Key(VaultKey),
    /// A passphrase, stretched with Argon2id.
    Passphrase(SecretString),
}

impl std::fmt::Debug for VaultKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VaultKeySource::Key(_) => f.write_str("Key([REDACTED])"),
            VaultKeySource::Passphrase(_) => f.write_str("Passphrase([REDACTED])"),
        }
    }
}

pub struct VaultStore {
    path: PathBuf,
    lock_path: PathBuf,
    source: VaultKeySource,
    /// The derived key for a given header salt: Argon2id runs once per open vault.
    cache: Mutex<Option<([u8; 16], VaultKey)>>,
    /// Argon2id cost for new vaults (tests lower it; files record their own).
    m_cost: u32,
}

impl VaultStore {
    pub fn new(path: impl Into<PathBuf>, source: VaultKeySource) -> Self {
        let path = path.into();
        let lock_path = path.with_extension("lock");
        Self {
            path,
            lock_path,
            source,
            cache: Mutex::new(None),
            m_cost: ARGON2_M_COST,
        }
    }

    /// Uses a cheaper Argon2id memory cost for vaults this store creates (tests only).
    pub fn with_argon2_memory_kib(mut self, m_cost: u32) -> Self {
        self.m_cost = m_cost;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tampered(&self, detail: impl Into<String>) -> StoreError {
        StoreError::Tampered {
            path: self.path.clone(),
            detail: detail.into(),
        }
    }

    fn key_for(&self, header: &Header) -> Result<VaultKey, StoreError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((salt, key)) = cache.as_ref() {
            if *salt == header.salt {
                return Ok(key.clone());
            }
        }
        let key = match (&self.source, header.kdf) {
            (VaultKeySource::Key(k), Kdf::External) => k.clone(),
            (
                VaultKeySource::Passphrase(p),
                Kdf::Argon2id {
                    m_cost,
                    t_cost,
                    p_cost,
                },
            ) => VaultKey::derive(p, &header.salt, m_cost, t_cost, p_cost)
                .map_err(|e| self.tampered(format!("key derivation parameters: {e}")))?,
            (VaultKeySource::Key(_), Kdf::Argon2id { .. }) => {
                return Err(StoreError::BackendUnavailable {
                    backend: "vault",
                    detail: format!(
                        "{} is protected by a passphrase; set LANYARD_VAULT_PASSPHRASE",
                        self.path.display()
                    ),
                })
            }
            (VaultKeySource::Passphrase(_), Kdf::External) => {
                return Err(StoreError::BackendUnavailable {
                    backend: "vault",
                    detail: format!(
                        "{} is protected by a key in the OS keyring, which is not reachable",
                        self.path.display()
                    ),
                })
            }
        };
        *cache = Some((header.salt, key.clone()));
        Ok(key)
    }

    /// Reads and checks the vault: `None` if there is no file yet.
    fn load(&self) -> Result<Option<(Image, VaultKey)>, StoreError> {
        let Some(bytes) = read_optional(&self.path)? else {
            return Ok(None);
        };
        let image = format::decode(&bytes).map_err(|e| self.tampered(e.to_string()))?;
        let key = self.key_for(&image.header)?;
        if key
            .open(&image.keycheck, &format::keycheck_aad(&image.header))
            .is_none()
        {
            // The header checksum held, so the key is wrong rather than the file damaged.
            self.cache.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(match self.source {
                VaultKeySource::Passphrase(_) => StoreError::WrongPassphrase {
                    path: self.path.clone(),
                },
                VaultKeySource::Key(_) => {
                    self.tampered("the vault key in the OS keyring does not open this vault")
                }
            });
        }
        Ok(Some((image, key)))
    }

    fn new_image(&self) -> Result<(Image, VaultKey), StoreError> {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let kdf = match self.source {
            VaultKeySource::Key(_) => Kdf::External,
            VaultKeySource::Passphrase(_) => Kdf::Argon2id {
                m_cost: self.m_cost,
                t_cost: ARGON2_T_COST,
                p_cost: ARGON2_P_COST,
            },
        };
        let header = Header { kdf, salt };
        let key = self.key_for(&header)?;
        let keycheck = key.seal(&[0u8; 32], &format::keycheck_aad(&header));
        Ok((
            Image {
                header,
                keycheck,
                entries: Default::default(),
            },
            key,
        ))
    }

    /// Read-modify-write under the lock; refuses if any existing entry is damaged.
    fn modify(&self, f: impl FnOnce(&mut Image, &VaultKey) -> bool) -> Result<(), StoreError> {
        let _lock = DirLock::exclusive(&self.lock_path)?;
        let (mut image, key) = match self.load()? {
            Some(loaded) => loaded,
            None => self.new_image()?,
        };
        for ((account, item), sealed) in &image.entries {
            if key
                .open(sealed, &format::entry_aad(account, *item))
                .is_none()
            {
                return Err(self.tampered(format!(
                    "the {} of account {account} fails authentication; refusing to write",
                    item.name()
                )));
            }
        }
        if f(&mut image, &key) {
            write_atomic(&self.path, &format::encode(&image))?;
        }
        Ok(())
    }

    /// Every account with at least one item (for "remove all" and diagnostics).
    pub fn accounts(&self) -> Result<Vec<AccountKey>, StoreError> {
        let mut keys: Vec<AccountKey> = match self.load()? {
            Some((image, _)) => image.entries.keys().map(|(a, _)| a.clone()).collect(),
            None => Vec::new(),
        };
        keys.dedup();
        Ok(keys)
    }
}

impl SecretStore for VaultStore {
    fn get(
        &self,
        account: &AccountKey,
        item: ItemKind,
    ) -> Result<Option<SecretString>, StoreError> {
        let Some((image, key)) = self.load()? else {
            return Ok(None);
        };
        let Some(sealed) = image.entries.get(&(account.clone(), item)) else {
            return Ok(None);
        };
        let plain = key
            .open(sealed, &format::entry_aad(account, item))
            .ok_or_else(|| {
                self.tampered(format!(
                    "the {} of account {account} fails authentication",
                    item.name()
                ))
            })?;
        let text =
            std::str::from_utf8(&plain).map_err(|_| self.tampered("an entry is not UTF-8"))?;
        Ok(Some(SecretString::from(text.to_owned())))
    }

    fn set(
        &self,
        account: &AccountKey,
        item: ItemKind,
        value: &SecretString,
    ) -> Result<(), StoreError> {
        check_len(item, value)?;
        self.modify(|image, key| {
            let sealed = key.seal(
                value.expose_secret().as_bytes(),
                &format::entry_aad(account, item),
            );
            image.entries.insert((account.clone(), item), sealed);
            true
        })
    }

    fn delete(&self, account: &AccountKey, item: ItemKind) -> Result<(), StoreError> {
        if !self.path.exists() {
            return Ok(());
        }
        self.modify(|image, _| image.entries.remove(&(account.clone(), item)).is_some())
    }

    fn delete_account(&self, account: &AccountKey) -> Result<(), StoreError> {
        if !self.path.exists() {
            return Ok(());
        }
        self.modify(|image, _| {
            let before = image.entries.len();
            image.entries.retain(|(a, _), _| a != account);
            before != image.entries.len()
        })
    }

    fn info(&self) -> BackendInfo {
        let how = match self.source {
            VaultKeySource::Key(_) => "key in the OS keyring",
            VaultKeySource::Passphrase(_) => "passphrase",
        };
        BackendInfo {
            name: "vault",
            location: format!("{} (AES-256-GCM, {how})", self.path.display()),
        }
    }
}
