#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A locked Secret Service collection gives the `Locked` error, and `auto` reports it instead of
//! silently switching to an empty vault. (Own test binary: the collection stays locked.)

mod common;

use std::time::Duration;

use account_store::keyring_backend::{KeyringKind, KeyringStore};
use account_store::{AccountStore, StoreConfig, StoreError};
use common::*;
use test_harness::secret_service::SecretService;

#[test]
fn a_locked_collection_is_reported_as_locked_with_what_to_do() {
    let ss = SecretService::shared();
    KeyringStore::probe(
        KeyringKind::SecretService,
        "before",
        Duration::from_secs(10),
    )
    .expect("unlocked at first");
    ss.lock_login_collection();

    let err = KeyringStore::probe(KeyringKind::SecretService, "after", Duration::from_secs(10))
        .err()
        .expect("locked");
    assert!(
        matches!(
            err,
            StoreError::Locked {
                backend: "secret-service"
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("unlock"), "{err}");

    // A profile opened before holds its marker entry: the read-only probe of a known marker
    // meets the lock too.
    let err = KeyringStore::probe(
        KeyringKind::SecretService,
        "before",
        Duration::from_secs(10),
    )
    .err()
    .expect("locked, even with the marker in place");
    assert!(
        matches!(
            err,
            StoreError::Locked {
                backend: "secret-service"
            }
        ),
        "{err:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let err =
        AccountStore::open(StoreConfig::new(dir.path(), "auto").passphrase(secret(PASSPHRASE)))
            .err()
            .expect("not silently a vault");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(!dir.path().join("vault.bin").exists());
}
