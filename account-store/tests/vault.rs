#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The encrypted file vault: round trips, tamper detection, passphrases, crash and
//! multi-process safety.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use account_store::vault::crypto::VaultKey;
use account_store::vault::{VaultKeySource, VaultStore};
use account_store::{ItemKind, SecretStore, StoreError};
use common::*;
use proptest::prelude::*;
use secrecy::ExposeSecret;

/// Byte offsets in a vault holding exactly one entry (see `vault::format`).
const HEADER: usize = 71;
const FIRST_ENTRY: usize = HEADER + 60 + 4;
const FIRST_NONCE: usize = FIRST_ENTRY + 2 + 43 + 1;
const FIRST_CT: usize = FIRST_NONCE + 12 + 4;

fn one_entry_vault() -> (tempfile::TempDir, VaultStore) {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), PASSPHRASE);
    v.set(&key("alice"), ItemKind::RefreshToken, &secret("rt-alice"))
        .unwrap();
    (dir, v)
}

#[test]
fn every_item_kind_round_trips_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), PASSPHRASE);
    for kind in ItemKind::ALL {
        v.set(
            &key("alice"),
            kind,
            &secret(&format!("value-{}", kind.name())),
        )
        .unwrap();
    }
    let reopened = vault(dir.path(), PASSPHRASE);
    for kind in ItemKind::ALL {
        assert_eq!(
            reopened
                .require(&key("alice"), kind)
                .unwrap()
                .expose_secret(),
            format!("value-{}", kind.name())
        );
    }
    reopened
        .delete(&key("alice"), ItemKind::AccessToken)
        .unwrap();
    assert!(reopened
        .get(&key("alice"), ItemKind::AccessToken)
        .unwrap()
        .is_none());
    assert!(matches!(
        reopened.require(&key("alice"), ItemKind::AccessToken),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn nothing_is_stored_in_plaintext() {
    let (dir, _v) = one_entry_vault();
    let bytes = std::fs::read(dir.path().join("vault.bin")).unwrap();
    assert!(!bytes.windows(8).any(|w| w == b"rt-alice"));
}

#[test]
fn each_write_uses_a_fresh_nonce() {
    let (dir, v) = one_entry_vault();
    let path = dir.path().join("vault.bin");
    let before = std::fs::read(&path).unwrap();
    v.set(&key("alice"), ItemKind::RefreshToken, &secret("rt-alice"))
        .unwrap();
    let after = std::fs::read(&path).unwrap();
    assert_ne!(
        before[FIRST_NONCE..FIRST_NONCE + 12],
        after[FIRST_NONCE..FIRST_NONCE + 12]
    );
    assert_ne!(before[FIRST_CT..], after[FIRST_CT..]);
}

fn flip(path: &std::path::Path, at: usize) -> Vec<u8> {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn a_flipped_byte_anywhere_is_refused_as_tampering_and_the_file_is_never_overwritten() {
    let (dir, _) = one_entry_vault();
    let len = std::fs::read(dir.path().join("vault.bin")).unwrap().len();
    let cases = [
        ("header", 20),
        ("header checksum", 50),
        ("nonce", FIRST_NONCE + 3),
        ("ciphertext", FIRST_CT + 1),
        ("tag", len - 1),
    ];
    for (what, at) in cases {
        let (dir, _) = one_entry_vault();
        let path = dir.path().join("vault.bin");
        let tampered = flip(&path, at);
        let v = vault(dir.path(), PASSPHRASE);
        let err = v.get(&key("alice"), ItemKind::RefreshToken).unwrap_err();
        assert!(
            matches!(err, StoreError::Tampered { .. }),
            "{what}: {err:?}"
        );
        assert!(err.to_string().contains("left untouched"), "{err}");
        let err = v
            .set(&key("bob"), ItemKind::RefreshToken, &secret("rt-bob"))
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Tampered { .. }),
            "{what}: write was not refused: {err:?}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            tampered,
            "{what}: the vault was overwritten"
        );
    }
}

#[test]
fn a_damaged_entry_leaves_other_accounts_readable() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), PASSPHRASE);
    let (a, b) = (key("alice"), key("bob"));
    let first_is_alice = a < b;
    v.set(&a, ItemKind::RefreshToken, &secret("rt-alice"))
        .unwrap();
    v.set(&b, ItemKind::RefreshToken, &secret("rt-bob"))
        .unwrap();
    // Entries are written in key order; damage the first one's ciphertext.
    flip(&dir.path().join("vault.bin"), FIRST_CT + 2);
    let (damaged, intact) = if first_is_alice { (a, b) } else { (b, a) };
    assert!(matches!(
        v.get(&damaged, ItemKind::RefreshToken),
        Err(StoreError::Tampered { .. })
    ));
    assert!(v.get(&intact, ItemKind::RefreshToken).unwrap().is_some());
}

#[test]
fn an_item_moved_into_another_accounts_slot_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), PASSPHRASE);
    let (a, b) = (key("alice"), key("bob"));
    v.set(&a, ItemKind::RefreshToken, &secret("rt-alice"))
        .unwrap();
    v.set(&b, ItemKind::RefreshToken, &secret("rt-bob"))
        .unwrap();
    // Swap the two entries' account keys: each ciphertext now sits in the other's slot.
    let path = dir.path().join("vault.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    let first_key = FIRST_ENTRY + 2..FIRST_ENTRY + 2 + 43;
    let entry_len = 2 + 43 + 1 + 12 + 4 + ("rt-alice".len() + 16);
    let second_key = FIRST_ENTRY + entry_len + 2..FIRST_ENTRY + entry_len + 2 + 43;
    let (k1, k2) = (
        bytes[first_key.clone()].to_vec(),
        bytes[second_key.clone()].to_vec(),
    );
    bytes[first_key].copy_from_slice(&k2);
    bytes[second_key].copy_from_slice(&k1);
    std::fs::write(&path, &bytes).unwrap();
    for k in [&a, &b] {
        assert!(matches!(
            v.get(k, ItemKind::RefreshToken),
            Err(StoreError::Tampered { .. })
        ));
    }
    // Moving an item to another item kind of the same account fails the same way.
    let dir = tempfile::tempdir().unwrap();
    let v = vault(dir.path(), PASSPHRASE);
    v.set(&a, ItemKind::AccessToken, &secret("at")).unwrap();
    let path = dir.path().join("vault.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[FIRST_ENTRY + 2 + 43] = ItemKind::RefreshToken.code();
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        v.get(&a, ItemKind::RefreshToken),
        Err(StoreError::Tampered { .. })
    ));
}

#[test]
fn a_wrong_passphrase_has_its_own_error() {
    let (dir, _) = one_entry_vault();
    let before = std::fs::read(dir.path().join("vault.bin")).unwrap();
    let v = vault(dir.path(), "not the passphrase");
    let err = v.get(&key("alice"), ItemKind::RefreshToken).unwrap_err();
    assert!(matches!(err, StoreError::WrongPassphrase { .. }), "{err:?}");
    assert!(err.to_string().contains("LANYARD_VAULT_PASSPHRASE"));
    assert!(matches!(
        v.set(&key("bob"), ItemKind::IdToken, &secret("x")),
        Err(StoreError::WrongPassphrase { .. })
    ));
    assert_eq!(std::fs::read(dir.path().join("vault.bin")).unwrap(), before);
}

#[test]
fn a_keyring_keyed_vault_refuses_another_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.bin");
    let v = VaultStore::new(&path, VaultKeySource::Key(VaultKey::random()));
    v.set(&key("alice"), ItemKind::SessionToken, &secret("st"))
        .unwrap();
    let other = VaultStore::new(&path, VaultKeySource::Key(VaultKey::random()));
    assert!(matches!(
        other.get(&key("alice"), ItemKind::SessionToken),
        Err(StoreError::Tampered { .. })
    ));
    let pass = vault(dir.path(), PASSPHRASE);
    assert!(matches!(
        pass.get(&key("alice"), ItemKind::SessionToken),
        Err(StoreError::BackendUnavailable { .. })
    ));
}

#[test]
fn garbage_and_truncated_files_are_refused() {
    for bytes in [b"hello".to_vec(), Vec::new(), vec![0u8; 200]] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vault.bin"), &bytes).unwrap();
        let v = vault(dir.path(), PASSPHRASE);
        assert!(matches!(
            v.get(&key("a"), ItemKind::IdToken),
            Err(StoreError::Tampered { .. })
        ));
    }
    let (dir, _) = one_entry_vault();
    let path = dir.path().join("vault.bin");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(matches!(
        vault(dir.path(), PASSPHRASE).get(&key("alice"), ItemKind::RefreshToken),
        Err(StoreError::Tampered { .. })
    ));
}

#[test]
fn a_child_killed_mid_write_leaves_a_consistent_vault() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..12u64 {
        let mut child = Command::new(probe_bin())
            .args([
                dir.path().to_str().unwrap(),
                "vault",
                "save-loop",
                "https://idp.example/acme",
                "crashy",
                "100000",
            ])
            .env("LANYARD_VAULT_PASSPHRASE", PASSPHRASE)
            .env("LANYARD_TEST_ARGON2_KIB", "256")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(40 + (round * 37) % 150));
        child.kill().unwrap();
        child.wait().unwrap();
        let v = vault(dir.path(), PASSPHRASE);
        for kind in ItemKind::ALL {
            if let Some(value) = v.get(&key("crashy"), kind).unwrap() {
                assert!(
                    value
                        .expose_secret()
                        .starts_with(&format!("crashy-{}-", kind.name())),
                    "round {round}"
                );
            }
        }
        // Leftover temp files never shadow the vault.
        assert!(std::fs::read_dir(dir.path())
            .unwrap()
            .all(|e| e.unwrap().file_name() != "vault.bin.tmp"));
    }
}

#[test]
fn processes_writing_different_accounts_at_once_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let users = ["p1", "p2", "p3", "p4"];
    let children: Vec<_> = users
        .iter()
        .map(|u| {
            Command::new(probe_bin())
                .args([
                    dir.path().to_str().unwrap(),
                    "vault",
                    "save-loop",
                    "https://idp.example/acme",
                    u,
                    "15",
                ])
                .env("LANYARD_VAULT_PASSPHRASE", PASSPHRASE)
                .env("LANYARD_TEST_ARGON2_KIB", "256")
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v = vault(dir.path(), PASSPHRASE);
    for u in users {
        for kind in ItemKind::ALL {
            assert_eq!(
                v.require(&key(u), kind).unwrap().expose_secret(),
                format!("{u}-{}-14", kind.name())
            );
        }
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("accounts.json")).unwrap()).unwrap();
    assert_eq!(index["accounts"].as_array().unwrap().len(), 4);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn odd_account_ids_round_trip_in_the_vault(
        issuer in "https://[\\PC]{1,60}",
        subject in "[\\PC/\\\\.]{1,60}",
        value in "[\\PC]{0,500}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let v = VaultStore::new(dir.path().join("vault.bin"), VaultKeySource::Key(VaultKey::random()));
        let k = account_store::AccountId::new(&issuer, &subject).unwrap().key();
        for kind in ItemKind::ALL {
            v.set(&k, kind, &secret(&value)).unwrap();
            let got = v.require(&k, kind).unwrap();
            prop_assert_eq!(got.expose_secret(), value.as_str());
        }
    }
}
