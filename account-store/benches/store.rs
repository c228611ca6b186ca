//! Read and write of one item per backend; vault open + read of 1 of 50 accounts.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a report
use std::hint::black_box;

use account_store::memory::MemoryStore;
use account_store::vault::crypto::VaultKey;
use account_store::vault::{VaultKeySource, VaultStore};
use account_store::{AccountId, ItemKind, SecretStore};
use criterion::{criterion_group, criterion_main, Criterion};
use secrecy::SecretString;

fn value() -> SecretString {
    SecretString::from("x".repeat(700))
}

fn memory(c: &mut Criterion) {
    let s = MemoryStore::new();
    let key = AccountId::new("https://idp.example/acme", "alice")
        .unwrap()
        .key();
    c.bench_function("memory/write", |b| {
        b.iter(|| s.set(&key, ItemKind::AccessToken, &value()).unwrap())
    });
    c.bench_function("memory/read", |b| {
        b.iter(|| black_box(s.get(&key, ItemKind::AccessToken).unwrap()))
    });
}

fn vault(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let s = VaultStore::new(
        dir.path().join("vault.bin"),
        VaultKeySource::Key(VaultKey::random()),
    );
    let keys: Vec<_> = (0..50)
        .map(|i| {
            AccountId::new("https://idp.example/acme", &format!("user{i}"))
                .unwrap()
                .key()
        })
        .collect();
    for k in &keys {
        for item in ItemKind::ALL {
            s.set(k, item, &value()).unwrap();
        }
    }
    c.bench_function("vault/write (50 accounts present)", |b| {
        b.iter(|| s.set(&keys[7], ItemKind::AccessToken, &value()).unwrap())
    });
    c.bench_function("vault/open+read 1 of 50 accounts (key unlocked)", |b| {
        b.iter(|| black_box(s.get(&keys[31], ItemKind::RefreshToken).unwrap()))
    });
}

fn keyring(c: &mut Criterion) {
    // Only where a Secret Service answers (bench/store.sh starts one).
    let Ok(s) = account_store::keyring_backend::KeyringStore::probe(
        account_store::keyring_backend::KeyringKind::SecretService,
        "bench",
        std::time::Duration::from_secs(3),
    ) else {
        eprintln!("no Secret Service: skipping keyring benches");
        return;
    };
    let key = AccountId::new("https://idp.example/acme", "bench")
        .unwrap()
        .key();
    // What opening a store on the Secret Service costs each process: connect to the bus, then
    // the probe (read the profile's marker entry; only a profile's first open writes it).
    c.bench_function("secret-service/open (connect + probe)", |b| {
        b.iter(|| {
            black_box(
                account_store::keyring_backend::KeyringStore::probe(
                    account_store::keyring_backend::KeyringKind::SecretService,
                    "bench",
                    std::time::Duration::from_secs(3),
                )
                .unwrap(),
            )
        })
    });
    c.bench_function("secret-service/write", |b| {
        b.iter(|| s.set(&key, ItemKind::AccessToken, &value()).unwrap())
    });
    c.bench_function("secret-service/read", |b| {
        b.iter(|| black_box(s.get(&key, ItemKind::AccessToken).unwrap()))
    });
    s.delete_account(&key).unwrap();
}

criterion_group!(benches, memory, vault, keyring);
criterion_main!(benches);
