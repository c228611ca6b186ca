#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The account index and the store facade: accounts, the active pointer, removal.

mod common;

use account_store::memory::MemoryStore;
use account_store::{AccountMeta, AccountStore, ItemKind, StoreError};
use common::*;
use proptest::prelude::*;
use secrecy::ExposeSecret;
use time::OffsetDateTime;

fn t(secs: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(secs)
}

fn memory_store(dir: &std::path::Path) -> AccountStore {
    AccountStore::with_backend(dir, "default", Box::new(MemoryStore::new())).unwrap()
}

fn vault_store(dir: &std::path::Path) -> AccountStore {
    AccountStore::with_backend(dir, "default", Box::new(vault(dir, PASSPHRASE))).unwrap()
}

fn all_items(tag: &str) -> Vec<(ItemKind, secrecy::SecretString)> {
    ItemKind::ALL
        .iter()
        .map(|k| (*k, secret(&format!("{tag}-{}", k.name()))))
        .collect()
}

#[test]
fn a_second_login_updates_the_account_instead_of_duplicating_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = memory_store(dir.path());
    s.save_account(
        AccountMeta::new(id("alice"), "Alice", t(1)),
        &all_items("v1"),
    )
    .unwrap();
    let mut again = AccountMeta::new(id("alice"), "Alice A.", t(50));
    again.email = Some("alice@acme.example".into());
    s.save_account(again, &all_items("v2")).unwrap();
    let accounts = s.accounts().unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].display_name, "Alice A.");
    assert_eq!(accounts[0].added_at, t(1), "added_at survives");
    assert_eq!(
        s.secrets()
            .require(&key("alice"), ItemKind::RefreshToken)
            .unwrap()
            .expose_secret(),
        "v2-refresh_token"
    );
}

#[test]
fn the_active_pointer_follows_switches_and_clears_on_removal() {
    let dir = tempfile::tempdir().unwrap();
    let s = memory_store(dir.path());
    for u in ["alice", "bob"] {
        s.save_account(AccountMeta::new(id(u), u, t(1)), &all_items(u))
            .unwrap();
    }
    assert!(s.active().unwrap().is_none());
    s.set_active(&key("bob"), t(10)).unwrap();
    let active = s.active().unwrap().unwrap();
    assert_eq!(active.key, key("bob"));
    assert_eq!(active.last_used_at, t(10));
    assert!(matches!(
        s.set_active(&key("nobody"), t(11)),
        Err(StoreError::UnknownAccount(_))
    ));
    assert_eq!(
        s.active().unwrap().unwrap().key,
        key("bob"),
        "a failed switch changes nothing"
    );
    s.remove_account(&key("bob")).unwrap();
    assert!(s.active().unwrap().is_none());
}

#[test]
fn removing_an_account_deletes_all_of_its_items_and_nothing_else() {
    for make in [
        memory_store as fn(&std::path::Path) -> AccountStore,
        vault_store,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let s = make(dir.path());
        for u in ["alice", "bob"] {
            s.save_account(AccountMeta::new(id(u), u, t(1)), &all_items(u))
                .unwrap();
        }
        s.remove_account(&key("alice")).unwrap();
        for kind in ItemKind::ALL {
            assert!(s.secrets().get(&key("alice"), kind).unwrap().is_none());
            assert_eq!(
                s.secrets()
                    .require(&key("bob"), kind)
                    .unwrap()
                    .expose_secret(),
                format!("bob-{}", kind.name())
            );
        }
        assert_eq!(s.accounts().unwrap().len(), 1);
        assert!(matches!(
            s.remove_account(&key("alice")),
            Err(StoreError::UnknownAccount(_))
        ));
    }
}

#[test]
fn remove_all_wipes_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    let s = vault_store(dir.path());
    for u in ["a", "b", "c"] {
        s.save_account(AccountMeta::new(id(u), u, t(1)), &all_items(u))
            .unwrap();
    }
    s.set_active(&key("b"), t(2)).unwrap();
    assert_eq!(s.remove_all().unwrap(), 3);
    assert!(s.accounts().unwrap().is_empty() && s.active().unwrap().is_none());
    for u in ["a", "b", "c"] {
        assert!(s
            .secrets()
            .get(&key(u), ItemKind::RefreshToken)
            .unwrap()
            .is_none());
    }
}

#[test]
fn a_corrupt_index_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let s = memory_store(dir.path());
    s.save_account(AccountMeta::new(id("alice"), "a", t(1)), &[])
        .unwrap();
    let path = dir.path().join("accounts.json");
    std::fs::write(&path, b"{ not json").unwrap();
    assert!(matches!(s.accounts(), Err(StoreError::CorruptIndex { .. })));
    let err = s
        .save_account(AccountMeta::new(id("bob"), "b", t(1)), &[])
        .unwrap_err();
    assert!(err.to_string().contains("left untouched"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"{ not json");
}

#[test]
fn nothing_secret_reaches_debug_or_the_index_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = vault_store(dir.path());
    s.save_account(
        AccountMeta::new(id("alice"), "a", t(1)),
        &all_items("hunter2"),
    )
    .unwrap();
    let index = std::fs::read_to_string(dir.path().join("accounts.json")).unwrap();
    assert!(!index.contains("hunter2"));
    let value = s
        .secrets()
        .require(&key("alice"), ItemKind::RefreshToken)
        .unwrap();
    assert!(!format!("{value:?}").contains("hunter2"));
    let source = account_store::vault::VaultKeySource::Passphrase(secret("hunter2"));
    assert!(!format!("{source:?}").contains("hunter2"));
}

#[test]
fn oversized_secrets_are_refused_by_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let big = secret(&"x".repeat(70 * 1024));
    for s in [memory_store(dir.path()), vault_store(dir.path())] {
        assert!(matches!(
            s.secrets().set(&key("a"), ItemKind::IdToken, &big),
            Err(StoreError::TooLarge { .. })
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn odd_account_ids_round_trip_in_memory_and_the_index(
        issuer in "https://[\\PC]{1,100}",
        subject in "[\\PC/\\\\.:]{1,60}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let s = memory_store(dir.path());
        let id = account_store::AccountId::new(&issuer, &subject).unwrap();
        s.save_account(AccountMeta::new(id.clone(), subject.clone(), t(1)), &all_items("p")).unwrap();
        let listed = s.accounts().unwrap();
        prop_assert_eq!(&listed[0].id, &id);
        for kind in ItemKind::ALL {
            let got = s.secrets().require(&id.key(), kind).unwrap();
            prop_assert_eq!(got.expose_secret(), format!("p-{}", kind.name()));
        }
    }
}
