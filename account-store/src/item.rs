//! The secrets kept per account, and how strongly each is kept.
//!
//! | item | class | Apple (`kSecAttrAccessible…`) | Linux Secret Service / keyutils | Windows | vault |
//! |---|---|---|---|---|---|
//! | refresh token | `DeviceOnly` | `AfterFirstUnlockThisDeviceOnly` (never in backups or iCloud) | stored with attribute `lanyard.class=device-only`; no sync exists | `CRED_PERSIST_LOCAL_MACHINE` | encrypted with a key that never leaves the machine |
//! | session token | `DeviceOnly` | same | same | same | same |
//! | session JWT | `AfterFirstUnlock` | `AfterFirstUnlock` | `lanyard.class=after-first-unlock` | same | same |
//! | access token | `AfterFirstUnlock` | same | same | same | same |
//! | ID token | `AfterFirstUnlock` | same | same | same | same |
//!
//! Secret Service collections unlock as a whole at login, so the nearest Linux equivalent of both
//! classes is "readable once the login keyring is unlocked"; the class is recorded so a stricter
//! backend can honour it.

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
