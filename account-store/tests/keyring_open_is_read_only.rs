#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Opening a store on the Secret Service reads and never writes once the profile has been opened
//! before: gnome-keyring rewrites its whole keyring file on every change, which made each
//! `lanyard` invocation slower the more the keyring held. (Own test binary: the keyring file
//! must see no other test's writes.)

mod common;

use std::time::SystemTime;

use account_store::{AccountStore, BackendChoice, ItemKind, StoreConfig};
use common::*;
use secrecy::ExposeSecret;
use test_harness::secret_service::SecretService;

fn keyring_file_state(ss: &SecretService) -> (SystemTime, Vec<u8>) {
    let path = ss.login_keyring_file();
    let modified = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (modified, std::fs::read(&path).unwrap())
}

#[test]
fn reopening_a_profile_on_the_secret_service_writes_nothing_to_the_keyring() {
    let ss = SecretService::shared();
    let dir = tempfile::tempdir().unwrap();
    let open = |backend| {
        AccountStore::open(StoreConfig::new(dir.path(), "read-only").backend(backend)).unwrap()
    };
    // First opens: the profile's marker entry and the vault key are created.
    let store = open(BackendChoice::SecretService);
    store
        .secrets()
        .set(&key("alice"), ItemKind::AccessToken, &secret("at"))
        .unwrap();
    open(BackendChoice::Vault)
        .secrets()
        .set(&key("alice"), ItemKind::RefreshToken, &secret("rt"))
        .unwrap();
    let before = keyring_file_state(ss);

    for backend in [
        BackendChoice::Auto,
        BackendChoice::SecretService,
        BackendChoice::Vault,
        BackendChoice::Auto,
    ] {
        let store = open(backend);
        let item = if backend == BackendChoice::Vault {
            ItemKind::RefreshToken
        } else {
            ItemKind::AccessToken
        };
        assert!(store.secrets().require(&key("alice"), item).is_ok());
    }
    assert!(
        keyring_file_state(ss) == before,
        "opening the store again changed the keyring file"
    );
    assert_eq!(
        open(BackendChoice::Auto)
            .secrets()
            .require(&key("alice"), ItemKind::AccessToken)
            .unwrap()
            .expose_secret(),
        "at"
    );
}
