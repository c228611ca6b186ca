//! One error type for the store's public boundary. Every variant tells the user what to do.

use std::path::PathBuf;

use crate::item::ItemKind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no {item} is stored for this account")]
    NotFound { item: &'static str },
    #[error("the {backend} is locked; unlock it (log in to your desktop session or run `gnome-keyring-daemon --unlock`) and try again")]
    Locked { backend: &'static str },
    #[error("the {backend} refused access: {detail}")]
    AccessDenied {
        backend: &'static str,
        detail: String,
    },
    #[error("the vault at {path} has been tampered with or is corrupt ({detail}); it was left untouched — restore it from a backup or remove it and log in again")]
    Tampered { path: PathBuf, detail: String },
    #[error("wrong vault passphrase for {path}; set LANYARD_VAULT_PASSPHRASE to the passphrase used when the vault was created")]
    WrongPassphrase { path: PathBuf },
    #[error("no vault passphrase: set LANYARD_VAULT_PASSPHRASE or run interactively to be asked for one")]
    PassphraseRequired,
    #[error("the {backend} is unavailable: {detail}")]
    BackendUnavailable {
        backend: &'static str,
        detail: String,
    },
    #[error("no space left to write {path} ({source}): nothing was changed, the previous file is intact and readable; free some space and try again")]
    DiskFull {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the account index at {path} is unreadable ({detail}); it was left untouched")]
    CorruptIndex { path: PathBuf, detail: String },
    #[error("no account {0} in this profile")]
    UnknownAccount(String),
    #[error("the {item} is too large to store ({len} bytes; the limit is {limit})")]
    TooLarge {
        item: &'static str,
        len: usize,
        limit: usize,
    },
}

impl StoreError {
    pub fn not_found(item: ItemKind) -> Self {
        StoreError::NotFound { item: item.name() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// A failure writing the new content of `path` before it replaced the old one
    /// (`fsio::write_atomic`): a full disk or an exhausted quota is told apart, because the user
    /// can act on it and nothing was changed.
    pub fn writing(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match source.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => StoreError::DiskFull {
                path: path.into(),
                source,
            },
            _ => StoreError::io(path, source),
        }
    }
}
