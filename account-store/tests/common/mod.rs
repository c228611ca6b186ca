#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use account_store::vault::{VaultKeySource, VaultStore};
use account_store::{AccountId, AccountKey};
use secrecy::SecretString;

pub const PASSPHRASE: &str = "correct horse battery staple";

pub fn key(sub: &str) -> AccountKey {
    AccountId::new("https://idp.example/acme", sub)
        .unwrap()
        .key()
}

pub fn id(sub: &str) -> AccountId {
    AccountId::new("https://idp.example/acme", sub).unwrap()
}

pub fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// A passphrase vault with a cheap Argon2id cost (the file records its own parameters).
pub fn vault(dir: &Path, passphrase: &str) -> VaultStore {
    VaultStore::new(
        dir.join("vault.bin"),
        VaultKeySource::Passphrase(secret(passphrase)),
    )
    .with_argon2_memory_kib(256)
}

pub fn probe_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_account-store-probe"))
}
