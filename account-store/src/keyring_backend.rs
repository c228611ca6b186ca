//! The OS keyring through the keyring v4 family (`keyring-core` plus one store crate per
//! platform): Secret Service over zbus or kernel keyutils on Linux, Keychain on macOS, Credential
//! Manager on Windows. Entries live under service `lanyard`, user `{profile}/{account key}/{item}`.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use keyring_core::{CredentialStore, Entry, Error as KeyringError};
use secrecy::{ExposeSecret, SecretString};

use crate::account::AccountKey;
use crate::error::StoreError;
use crate::item::ItemKind;
use crate::secret_store::{check_len, BackendInfo, SecretStore};

pub const SERVICE: &str = "lanyard";

/// Which OS store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringKind {
    /// freedesktop Secret Service (GNOME Keyring, KWallet) over D-Bus.
    SecretService,
    /// The Linux kernel key retention service (session-scoped; gone after reboot).
    Keyutils,
    /// macOS Keychain or Windows Credential Manager.
    Native,
}

impl KeyringKind {
    pub fn name(self) -> &'static str {
        match self {
            KeyringKind::SecretService => "secret-service",
            KeyringKind::Keyutils => "keyutils",
            KeyringKind::Native if cfg!(target_os = "macos") => "keychain",
            KeyringKind::Native => "windows-credential-manager",
        }
    }
}

pub struct KeyringStore {
    kind: KeyringKind,
    store: Arc<CredentialStore>,
    profile: String,
}

fn connect(kind: KeyringKind) -> Result<Arc<CredentialStore>, KeyringError> {
    match kind {
        #[cfg(target_os = "linux")]
        KeyringKind::SecretService => Ok(zbus_secret_service_keyring_store::Store::new()?),
        #[cfg(target_os = "linux")]
        KeyringKind::Keyutils => Ok(linux_keyutils_keyring_store::Store::new()?),
        #[cfg(target_os = "macos")]
        KeyringKind::Native => Ok(apple_native_keyring_store::keychain::Store::new()?),
        #[cfg(target_os = "windows")]
        KeyringKind::Native => Ok(windows_native_keyring_store::Store::new()?),
        #[allow(unreachable_patterns)]
        _ => Err(KeyringError::NotSupportedByStore(format!(
            "{} is not available on this platform",
            kind.name()
        ))),
    }
}

fn map_err(kind: KeyringKind, e: KeyringError) -> StoreError {
    let backend = kind.name();
    match e {
        KeyringError::NoStorageAccess(inner) => {
            let detail = inner.to_string();
            let lower = detail.to_lowercase();
            // A locked collection makes the service ask for an unlock prompt; headless, the
            // prompt is dismissed.
            if lower.contains("lock") || lower.contains("prompt dismissed") {
                StoreError::Locked { backend }
            } else {
                StoreError::AccessDenied { backend, detail }
            }
        }
        other => StoreError::BackendUnavailable {
            backend,
            detail: other.to_string(),
        },
    }
}

/// The entry whose presence proves a profile's keyring usable. It is written once, on the first
/// open of the profile; every later open only reads it, so opening the store changes nothing in
/// the keyring (gnome-keyring rewrites its whole keyring file on every change).
const MARKER: &str = "keyring-marker";
const MARKER_VALUE: &str = "lanyard keyring marker v1";

impl KeyringStore {
    /// Connects and proves the store usable, within `timeout` (a hung or locked Secret Service
    /// must not hang the caller). The proof reads the profile's marker entry: an item of a
    /// locked collection cannot be read, so a locked keyring is still reported as
    /// [`StoreError::Locked`]. Only the first open of a profile writes (the marker).
    pub fn probe(kind: KeyringKind, profile: &str, timeout: Duration) -> Result<Self, StoreError> {
        Self::probe_with(kind, profile, timeout, KeyringStore::check_marker).map(|(s, ())| s)
    }

    /// Connects and runs `check` on the new store, both within `timeout`. `check` must prove
    /// the store usable (read or write an entry); its error is the probe's.
    pub fn probe_with<T: Send + 'static>(
        kind: KeyringKind,
        profile: &str,
        timeout: Duration,
        check: impl FnOnce(&KeyringStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<(Self, T), StoreError> {
        let (tx, rx) = mpsc::channel();
        let profile = profile.to_owned();
        std::thread::spawn(move || {
            let result = connect(kind)
                .map_err(|e| map_err(kind, e))
                .and_then(|store| {
                    let s = KeyringStore {
                        kind,
                        store,
                        profile,
                    };
                    let checked = check(&s)?;
                    Ok((s, checked))
                });
            let _ = tx.send(result);
        });
        match rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(_) => Err(StoreError::BackendUnavailable {
                backend: kind.name(),
                detail: format!("no answer within {} ms", timeout.as_millis()),
            }),
        }
    }

    /// Reads the marker entry; on the profile's first open (or if it was removed or altered),
    /// writes it and reads it back.
    fn check_marker(&self) -> Result<(), StoreError> {
        let user = format!("{}/{MARKER}", self.profile);
        // Where the store can search (the Secret Service), one SearchItems round trip: a marker
        // found proves the collection readable (one in a locked collection makes the store ask
        // for an unlock, which fails headless: `Locked`). Elsewhere, read it.
        let spec = HashMap::from([("service", SERVICE), ("username", user.as_str())]);
        match self.store.search(&spec) {
            Ok(found) if !found.is_empty() => return Ok(()),
            Ok(_) | Err(KeyringError::NotSupportedByStore(_)) => {}
            Err(e) => return Err(map_err(self.kind, e)),
        }
        let entry = self.entry_named(&user)?;
        match entry.get_password() {
            Ok(v) if v == MARKER_VALUE => return Ok(()),
            // Two processes opening a new profile at once may both have created it; either
            // copy proves the keyring readable.
            Err(KeyringError::Ambiguous(_)) => return Ok(()),
            Ok(_) | Err(KeyringError::NoEntry) => {}
            Err(e) => return Err(map_err(self.kind, e)),
        }
        entry
            .set_password(MARKER_VALUE)
            .map_err(|e| map_err(self.kind, e))?;
        match entry.get_password() {
            Ok(v) if v == MARKER_VALUE => Ok(()),
            Err(KeyringError::Ambiguous(_)) => Ok(()),
            Ok(_) => Err(StoreError::BackendUnavailable {
                backend: self.kind.name(),
                detail: "a written marker entry read back differently".into(),
            }),
            Err(e) => Err(map_err(self.kind, e)),
        }
    }

    fn entry_named(&self, user: &str) -> Result<Entry, StoreError> {
        Entry::new_in_store(&self.store, SERVICE, user).map_err(|e| map_err(self.kind, e))
    }

    fn entry(&self, account: &AccountKey, item: ItemKind) -> Result<Entry, StoreError> {
        self.entry_named(&format!("{}/{}/{}", self.profile, account, item.name()))
    }

    /// Reads or creates a raw secret entry (the vault key, when the vault sits on a keyring).
    pub fn get_or_create_raw(
        &self,
        name: &str,
        create: impl FnOnce() -> Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let entry = self.entry_named(&format!("{}/{name}", self.profile))?;
        match entry.get_secret() {
            Ok(bytes) => Ok(bytes),
            Err(KeyringError::NoEntry) => {
                let bytes = create();
                entry
                    .set_secret(&bytes)
                    .map_err(|e| map_err(self.kind, e))?;
                Ok(bytes)
            }
            Err(e) => Err(map_err(self.kind, e)),
        }
    }

    pub fn kind(&self) -> KeyringKind {
        self.kind
    }
}

impl SecretStore for KeyringStore {
    fn get(
        &self,
        account: &AccountKey,
        item: ItemKind,
    ) -> Result<Option<SecretString>, StoreError> {
        match self.entry(account, item)?.get_password() {
            Ok(v) => Ok(Some(SecretString::from(v))),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(map_err(self.kind, e)),
        }
    }

    fn set(
        &self,
        account: &AccountKey,
        item: ItemKind,
        value: &SecretString,
    ) -> Result<(), StoreError> {
        check_len(item, value)?;
        self.entry(account, item)?
            .set_password(value.expose_secret())
            .map_err(|e| map_err(self.kind, e))
    }

    fn delete(&self, account: &AccountKey, item: ItemKind) -> Result<(), StoreError> {
        match self.entry(account, item)?.delete_credential() {
            Ok(()) | Err(KeyringError::NoEntry) => Ok(()),
            Err(e) => Err(map_err(self.kind, e)),
        }
    }

    fn info(&self) -> BackendInfo {
        let location = match self.kind {
            KeyringKind::SecretService => "the default Secret Service collection".to_owned(),
            KeyringKind::Keyutils => "the kernel session keyring".to_owned(),
            KeyringKind::Native => "the user's login keychain".to_owned(),
        };
        BackendInfo {
            name: self.kind.name(),
            location: format!("{location}, service '{SERVICE}'"),
        }
    }
}
