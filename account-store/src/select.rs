//! Choosing the backend: the OS keyring if it answers (within a timeout), else the encrypted
//! vault. It can be forced. Nothing ever falls back to plaintext.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::error::StoreError;
use crate::keyring_backend::{KeyringKind, KeyringStore};
use crate::memory::MemoryStore;
use crate::secret_store::SecretStore;
use crate::vault::crypto::VaultKey;
use crate::vault::{VaultKeySource, VaultStore};

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// The platform keyring if it answers, else the vault.
    #[default]
    Auto,
    SecretService,
    Keyutils,
    /// macOS Keychain / Windows Credential Manager.
    Native,
    Vault,
    Memory,
}

impl BackendChoice {
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::from(s)).ok()
    }
}

/// Asks the user for the vault passphrase (the CLI prompts on a TTY).
pub type PassphrasePrompt = Box<dyn Fn() -> Option<SecretString> + Send + Sync>;

/// How to open a profile's store.
pub struct StoreConfig {
    /// The profile's directory (index, vault, locks).
    pub dir: PathBuf,
    pub profile: String,
    pub backend: BackendChoice,
    /// How long the keyring may take to answer the probe.
    pub probe_timeout: Duration,
    /// The vault passphrase, if known (the CLI fills it from `LANYARD_VAULT_PASSPHRASE`).
    pub passphrase: Option<SecretString>,
    pub prompt: Option<PassphrasePrompt>,
    /// Argon2id memory cost for a new vault (KiB); lowered only in tests.
    pub argon2_memory_kib: Option<u32>,
}

impl StoreConfig {
    pub fn new(dir: impl Into<PathBuf>, profile: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            profile: profile.into(),
            backend: BackendChoice::Auto,
            probe_timeout: Duration::from_secs(3),
            passphrase: None,
            prompt: None,
            argon2_memory_kib: None,
        }
    }

    pub fn backend(mut self, b: BackendChoice) -> Self {
        self.backend = b;
        self
    }

    pub fn passphrase(mut self, p: SecretString) -> Self {
        self.passphrase = Some(p);
        self
    }

    pub fn vault_path(&self) -> PathBuf {
        self.dir.join("vault.bin")
    }
}

fn platform_keyring() -> KeyringKind {
    if cfg!(target_os = "linux") {
        KeyringKind::SecretService
    } else {
        KeyringKind::Native
    }
}

fn passphrase_vault(cfg: &StoreConfig) -> Result<VaultStore, StoreError> {
    let passphrase = cfg
        .passphrase
        .clone()
        .or_else(|| cfg.prompt.as_ref().and_then(|p| p()))
        .ok_or(StoreError::PassphraseRequired)?;
    let mut vault = VaultStore::new(cfg.vault_path(), VaultKeySource::Passphrase(passphrase));
    if let Some(m) = cfg.argon2_memory_kib {
        vault = vault.with_argon2_memory_kib(m);
    }
    Ok(vault)
}

/// A vault whose key lives in the platform keyring. Reading (or, the first time, creating) the
/// key is itself the keyring's probe: a separate marker read would be one more round trip.
fn keyring_keyed_vault(cfg: &StoreConfig) -> Result<VaultStore, StoreError> {
    let kind = platform_keyring();
    let (_, raw) = KeyringStore::probe_with(kind, &cfg.profile, cfg.probe_timeout, |keyring| {
        keyring.get_or_create_raw("vault-key", || VaultKey::random().as_bytes().to_vec())
    })?;
    let key = VaultKey::from_bytes(&raw).ok_or_else(|| StoreError::BackendUnavailable {
        backend: kind.name(),
        detail: "the stored vault key has the wrong length".into(),
    })?;
    Ok(VaultStore::new(cfg.vault_path(), VaultKeySource::Key(key)))
}

/// Opens the backend `cfg` asks for.
pub fn open_backend(cfg: &StoreConfig) -> Result<Box<dyn SecretStore>, StoreError> {
    let probe = |kind| KeyringStore::probe(kind, &cfg.profile, cfg.probe_timeout);
    Ok(match cfg.backend {
        BackendChoice::Memory => Box::new(MemoryStore::new()),
        BackendChoice::SecretService => Box::new(probe(KeyringKind::SecretService)?),
        BackendChoice::Keyutils => Box::new(probe(KeyringKind::Keyutils)?),
        BackendChoice::Native => Box::new(probe(KeyringKind::Native)?),
        BackendChoice::Vault => match keyring_keyed_vault(cfg) {
            Ok(vault) => Box::new(vault),
            Err(e) => {
                tracing::info!(error = %e, "no keyring for the vault key; using a passphrase");
                Box::new(passphrase_vault(cfg)?)
            }
        },
        BackendChoice::Auto => match probe(platform_keyring()) {
            Ok(keyring) => Box::new(keyring),
            // A locked keyring holds the user's items: say so rather than silently switching
            // to an empty vault.
            Err(e @ StoreError::Locked { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "the OS keyring did not answer; using the encrypted vault");
                Box::new(passphrase_vault(cfg)?)
            }
        },
    })
}
