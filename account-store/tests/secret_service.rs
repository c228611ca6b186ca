#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The keyring backend against a real Secret Service (gnome-keyring on a private D-Bus).

mod common;

use std::process::Command;
use std::time::Duration;

use account_store::keyring_backend::{KeyringKind, KeyringStore};
use account_store::{AccountMeta, AccountStore, BackendChoice, ItemKind, SecretStore, StoreConfig};
use common::*;
use secrecy::ExposeSecret;
use test_harness::secret_service::SecretService;

fn store(profile: &str) -> KeyringStore {
    SecretService::shared();
    KeyringStore::probe(KeyringKind::SecretService, profile, Duration::from_secs(10))
        .expect("the Secret Service answers")
}

#[test]
fn every_item_kind_round_trips_through_the_secret_service() {
    let s = store("roundtrip");
    for kind in ItemKind::ALL {
        s.set(&key("alice"), kind, &secret(&format!("ss-{}", kind.name())))
            .unwrap();
    }
    for kind in ItemKind::ALL {
        assert_eq!(
            s.require(&key("alice"), kind).unwrap().expose_secret(),
            format!("ss-{}", kind.name())
        );
    }
    assert_eq!(s.info().name, "secret-service");
}

#[test]
fn a_stored_item_is_readable_by_a_second_process() {
    SecretService::shared();
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig::new(dir.path(), "default").backend(BackendChoice::SecretService);
    let store = AccountStore::open(cfg).unwrap();
    store
        .save_account(
            AccountMeta::new(id("second-process"), "x", time::OffsetDateTime::UNIX_EPOCH),
            &[(ItemKind::SessionToken, secret("from-process-one"))],
        )
        .unwrap();
    let out = Command::new(probe_bin())
        .args([
            dir.path().to_str().unwrap(),
            "secret-service",
            "get",
            "https://idp.example/acme",
            "second-process",
            "session_token",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "from-process-one"
    );
    // And the other way round.
    let out = Command::new(probe_bin())
        .args([
            dir.path().to_str().unwrap(),
            "secret-service",
            "set",
            "https://idp.example/acme",
            "second-process",
            "id_token",
            "from-process-two",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        store
            .secrets()
            .require(&key("second-process"), ItemKind::IdToken)
            .unwrap()
            .expose_secret(),
        "from-process-two"
    );
}

#[test]
fn removing_an_account_deletes_its_items_only() {
    let s = store("remove");
    for kind in ItemKind::ALL {
        s.set(&key("gone"), kind, &secret("g")).unwrap();
        s.set(&key("stays"), kind, &secret("s")).unwrap();
    }
    s.delete_account(&key("gone")).unwrap();
    for kind in ItemKind::ALL {
        assert!(s.get(&key("gone"), kind).unwrap().is_none());
        assert_eq!(s.require(&key("stays"), kind).unwrap().expose_secret(), "s");
    }
    s.delete(&key("gone"), ItemKind::IdToken).unwrap();
}

#[test]
fn profiles_do_not_see_each_others_items() {
    let (a, b) = (store("profile-a"), store("profile-b"));
    a.set(&key("alice"), ItemKind::RefreshToken, &secret("a"))
        .unwrap();
    assert!(b
        .get(&key("alice"), ItemKind::RefreshToken)
        .unwrap()
        .is_none());
}

#[test]
fn auto_picks_the_secret_service_when_it_answers() {
    SecretService::shared();
    let dir = tempfile::tempdir().unwrap();
    let store = AccountStore::open(StoreConfig::new(dir.path(), "auto")).unwrap();
    assert_eq!(store.backend_info().name, "secret-service");
    assert!(!dir.path().join("vault.bin").exists());
}

#[test]
fn a_forced_vault_keeps_its_key_in_the_keyring() {
    SecretService::shared();
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        AccountStore::open(
            StoreConfig::new(dir.path(), "vault-on-keyring").backend(BackendChoice::Vault),
        )
        .unwrap()
    };
    let store = open();
    assert!(
        store
            .backend_info()
            .location
            .contains("key in the OS keyring"),
        "{:?}",
        store.backend_info()
    );
    store
        .secrets()
        .set(&key("alice"), ItemKind::RefreshToken, &secret("rt"))
        .unwrap();
    assert!(dir.path().join("vault.bin").exists());
    // A later open (same keyring key) reads it back; no passphrase was ever needed.
    assert_eq!(
        open()
            .secrets()
            .require(&key("alice"), ItemKind::RefreshToken)
            .unwrap()
            .expose_secret(),
        "rt"
    );
}
