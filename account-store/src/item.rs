//! The secrets kept per account, and how strongly each is kept.
//!
//! | item | class | Apple (`kSecAttrAccessible…`) | Windows Credential Manager | Linux Secret Service / keyutils | vault |
//! |---|---|---|---|---|---|
//! | refresh token | `DeviceOnly` | `AfterFirstUnlockThisDeviceOnly`: never in backups or iCloud Keychain | `CRED_PERSIST_LOCAL_MACHINE`: not roamed | readable while the collection is unlocked; neither backend syncs | sealed with a key that never leaves the machine |
//! | session token | `DeviceOnly` | same | same | same | same |
//! | session JWT | `AfterFirstUnlock` | `AfterFirstUnlock` | same | same | same |
//! | access token | `AfterFirstUnlock` | same | same | same | same |
//! | ID token | `AfterFirstUnlock` | same | same | same | same |
//!
//! Linux has no per-item accessibility: a Secret Service collection unlocks as a whole at login
//! and the kernel keyring is per user, so both classes map to "readable once the user's keyring is
//! unlocked", and "device only" holds because neither store syncs anywhere. The class travels with
//! the type so the Keychain store can be given the matching attribute; this workspace is built
//! and tested on Linux only, where the class changes nothing.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    RefreshToken,
    SessionToken,
    SessionJwt,
    AccessToken,
    IdToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageClass {
    /// Long-lived credentials: never leave this device.
    DeviceOnly,
    /// Short-lived tokens: readable after the first unlock.
    AfterFirstUnlock,
}

impl ItemKind {
    pub const ALL: [ItemKind; 5] = [
        ItemKind::RefreshToken,
        ItemKind::SessionToken,
        ItemKind::SessionJwt,
        ItemKind::AccessToken,
        ItemKind::IdToken,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ItemKind::RefreshToken => "refresh_token",
            ItemKind::SessionToken => "session_token",
            ItemKind::SessionJwt => "session_jwt",
            ItemKind::AccessToken => "access_token",
            ItemKind::IdToken => "id_token",
        }
    }

    /// Stable one-byte code used in the vault format.
    pub fn code(self) -> u8 {
        match self {
            ItemKind::RefreshToken => 1,
            ItemKind::SessionToken => 2,
            ItemKind::SessionJwt => 3,
            ItemKind::AccessToken => 4,
            ItemKind::IdToken => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn storage_class(self) -> StorageClass {
        match self {
            ItemKind::RefreshToken | ItemKind::SessionToken => StorageClass::DeviceOnly,
            _ => StorageClass::AfterFirstUnlock,
        }
    }
}

impl StorageClass {
    pub fn attribute(self) -> &'static str {
        match self {
            StorageClass::DeviceOnly => "device-only",
            StorageClass::AfterFirstUnlock => "after-first-unlock",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for k in ItemKind::ALL {
            assert_eq!(ItemKind::from_code(k.code()), Some(k));
            assert_eq!(ItemKind::parse(k.name()), Some(k));
        }
        assert_eq!(
            ItemKind::RefreshToken.storage_class(),
            StorageClass::DeviceOnly
        );
        assert_eq!(
            ItemKind::SessionToken.storage_class(),
            StorageClass::DeviceOnly
        );
        assert_eq!(
            ItemKind::IdToken.storage_class(),
            StorageClass::AfterFirstUnlock
        );
    }
}
