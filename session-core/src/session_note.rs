//! What this profile knows of an account's registry session beyond its tokens: when the
//! registry was last asked about it, when it ends, the lifetime the person chose and when it was
//! last extended. One small JSON file per account beside the refresh locks, shared by every
//! process of the profile (so `lanyard token` in one process sees the check another just made).
//!
//! It holds no secret (account-store keeps those) and losing it costs nothing but an extra
//! registry check — but for the mark of a spent refresh token, which is written here because it
//! is needed exactly when the account store refuses writes. Writes are a temporary file renamed over the old one, so a reader never sees
//! half a note; two processes writing at once leave one whole note, which is all a cache needs.

use std::io::Write;
use std::path::{Path, PathBuf};

use account_store::AccountKey;
use serde::{Deserialize, Serialize};

/// The note of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionNote {
    /// This device's session id at the registry (so a revoke of it by id is known to be this
    /// device's own).
    #[serde(default)]
    pub session_id: Option<String>,
    /// When the registry was last asked about the session (answered or not), unix seconds.
    #[serde(default)]
    pub last_checked_at: Option<i64>,
    /// When the session ends unless extended, as the registry last said.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The tenant's absolute limit: no extension goes past it.
    #[serde(default)]
    pub absolute_expires_at: Option<i64>,
    /// The lifetime the person chose at sign-in, in minutes.
    #[serde(default)]
    pub duration_minutes: Option<i64>,
    /// When the manager last extended the session.
    #[serde(default)]
    pub last_extended_at: Option<i64>,
    /// Set when a refresh spent the stored refresh token but could not save the new tokens
    /// (they lived only in that process's memory): the stored one must never be presented
    /// again — the provider would take it for a stolen token and end the whole family — so the
    /// account needs a new sign-in. Cleared when those tokens are saved or at the next sign-in.
    #[serde(default)]
    pub refresh_token_spent_at: Option<i64>,
}

/// Where the notes of a profile live.
#[derive(Debug, Clone)]
pub(crate) struct SessionNotes {
    dir: PathBuf,
}

impl SessionNotes {
    pub(crate) fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn path(&self, account: &AccountKey) -> PathBuf {
        self.dir.join(format!("{account}.session.json"))
    }

    /// The account's note; an absent or unreadable note is an empty one (it is only a cache).
    pub(crate) fn read(&self, account: &AccountKey) -> SessionNote {
        std::fs::read(self.path(account))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Changes the account's note; a failed write is logged, never an error (see the module doc).
    pub(crate) fn update(&self, account: &AccountKey, change: impl FnOnce(&mut SessionNote)) {
        let mut note = self.read(account);
        change(&mut note);
        if let Err(e) = write_atomic(&self.path(account), &note) {
            tracing::warn!(account = %account, error = %e, "could not record the session note");
        }
    }

    pub(crate) fn remove(&self, account: &AccountKey) {
        let _ = std::fs::remove_file(self.path(account));
    }
}

fn write_atomic(path: &Path, note: &SessionNote) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir)?;
    let bytes = serde_json::to_vec(note).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(
        ".{}.{:016x}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        rand::random::<u64>()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
