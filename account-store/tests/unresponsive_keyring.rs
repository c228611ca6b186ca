#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A Secret Service that accepts the connection and never answers must not hang the caller, and
//! the fallback is the encrypted vault — never plaintext. (Own test binary: it rewires
//! `DBUS_SESSION_BUS_ADDRESS` for the whole process.)

mod common;

use std::os::unix::net::UnixListener;
use std::time::Duration;

use account_store::keyring_backend::{KeyringKind, KeyringStore};
use account_store::{AccountStore, BackendChoice, ItemKind, StoreConfig, StoreError};
use common::*;
use secrecy::ExposeSecret;

fn hung_bus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn); // accept, never answer
        }
    });
    std::env::set_var(
        "DBUS_SESSION_BUS_ADDRESS",
        format!("unix:path={}", path.display()),
    );
    dir
}

#[test]
fn a_hung_keyring_times_out_and_auto_falls_back_to_the_vault_never_to_plaintext() {
    let _bus = hung_bus();
    let err = KeyringStore::probe(
        KeyringKind::SecretService,
        "hung",
        Duration::from_millis(500),
    )
    .err()
    .expect("probe fails");
    assert!(err.to_string().contains("no answer within 500 ms"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path(), "hung");
    cfg.probe_timeout = Duration::from_millis(500);
    cfg.argon2_memory_kib = Some(256);
    let err = AccountStore::open(cfg)
        .err()
        .expect("no passphrase, no store");
    assert!(matches!(err, StoreError::PassphraseRequired), "{err:?}");

    let mut cfg = StoreConfig::new(dir.path(), "hung").passphrase(secret(PASSPHRASE));
    cfg.probe_timeout = Duration::from_millis(500);
    cfg.argon2_memory_kib = Some(256);
    let store = AccountStore::open(cfg).unwrap();
    assert_eq!(store.backend_info().name, "vault");
    store
        .secrets()
        .set(
            &key("alice"),
            ItemKind::RefreshToken,
            &secret("rt-in-vault"),
        )
        .unwrap();
    assert_eq!(
        store
            .secrets()
            .require(&key("alice"), ItemKind::RefreshToken)
            .unwrap()
            .expose_secret(),
        "rt-in-vault"
    );
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        assert!(
            !bytes.windows(11).any(|w| w == b"rt-in-vault"),
            "a secret reached a file in plaintext"
        );
    }
}

#[test]
fn a_forced_keyring_backend_that_does_not_answer_is_an_error_not_a_fallback() {
    let _bus = hung_bus();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StoreConfig::new(dir.path(), "forced").backend(BackendChoice::SecretService);
    cfg.probe_timeout = Duration::from_millis(300);
    let err = AccountStore::open(cfg).err().expect("refused");
    assert!(
        matches!(
            err,
            StoreError::BackendUnavailable {
                backend: "secret-service",
                ..
            }
        ),
        "{err:?}"
    );
}
