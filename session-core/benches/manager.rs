//! `SessionManager::access_token` when the stored access token is fresh (no network):
//!
//! * warm: one manager over a memory store, asked again and again;
//! * cold start: what a CLI invocation does before any network, a new store (vault file keyed
//!   from the OS keyring, so no key derivation) and a new manager per iteration, then
//!   `access_token(None)` for the active account;
//! * cold start with a passphrase vault: the same, but the vault key comes from a passphrase
//!   through Argon2id at the default cost, as when no OS keyring answers.
//!
//! `bench/core.sh` runs these and prints the table.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a panic is a report
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use account_store::memory::MemoryStore;
use account_store::vault::crypto::VaultKey;
use account_store::vault::{VaultKeySource, VaultStore};
use account_store::{AccountId, AccountMeta, AccountStore, ItemKind};
use criterion::{criterion_group, criterion_main, Criterion};
use secrecy::{ExposeSecret, SecretString};
use session_core::{DeviceIdentity, ManagerOptions, SessionManager};

const ISSUER: &str = "https://idp.example/acme";

fn options(dir: &Path) -> ManagerOptions {
    ManagerOptions::new(
        DeviceIdentity {
            id: "dev-bench".into(),
            name: "bench".into(),
            platform: std::env::consts::OS.into(),
        },
        Arc::new(lanyard_clock::SystemClock),
        dir.join("locks"),
    )
}

/// Signs `alice` in directly through the store: a fresh access token (expiring in a day), a
/// refresh token and an ID token of realistic sizes, and makes her the active account.
fn seed(store: &AccountStore) {
    let now = lanyard_clock::Clock::now(&lanyard_clock::SystemClock);
    let id = AccountId::new(ISSUER, "alice").unwrap();
    let key = id.key();
    let mut meta = AccountMeta::new(id, "alice@acme.example", now);
    meta.email = Some("alice@acme.example".into());
    meta.tenant = Some("acme".into());
    meta.client_id = Some("lanyard-cli".into());
    meta.access_token_expires_at = Some(now.unix_timestamp() + 86_400);
    let items = [
        (ItemKind::AccessToken, SecretString::from("a".repeat(700))),
        (ItemKind::RefreshToken, SecretString::from("r".repeat(43))),
        (ItemKind::IdToken, SecretString::from("i".repeat(900))),
    ];
    store.save_account(meta, &items).unwrap();
    store.set_active(&key, now).unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn warm(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store =
        AccountStore::with_backend(dir.path(), "default", Box::new(MemoryStore::new())).unwrap();
    seed(&store);
    let m = SessionManager::new(store, options(dir.path()));
    assert_eq!(
        rt.block_on(m.access_token(None))
            .unwrap()
            .expose_secret()
            .len(),
        700
    );
    c.bench_function("manager/access_token warm (memory store)", |b| {
        b.iter(|| black_box(rt.block_on(m.access_token(None)).unwrap()))
    });
}

fn vault_store(dir: &Path, source: VaultKeySource) -> AccountStore {
    let vault = VaultStore::new(dir.join("vault.bin"), source);
    AccountStore::with_backend(dir, "default", Box::new(vault)).unwrap()
}

fn cold(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let source = VaultKeySource::Key(VaultKey::random());
    seed(&vault_store(dir.path(), source.clone()));
    c.bench_function("manager/cold start (vault, key given)", |b| {
        b.iter(|| {
            let store = vault_store(dir.path(), source.clone());
            let m = SessionManager::new(store, options(dir.path()));
            black_box(rt.block_on(m.access_token(None)).unwrap())
        })
    });
}

fn cold_passphrase(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    // The default Argon2id cost (19 MiB, 2 passes), as `lanyard` uses without an OS keyring.
    let source = VaultKeySource::Passphrase(SecretString::from("bench"));
    let store = vault_store(dir.path(), source.clone());
    seed(&store);
    // The first read derives the key; a new store derives it again.
    assert!(store
        .secrets()
        .get(
            &AccountId::new(ISSUER, "alice").unwrap().key(),
            ItemKind::AccessToken
        )
        .unwrap()
        .is_some());
    let mut g = c.benchmark_group("manager-argon2");
    g.sample_size(10);
    g.bench_function("cold start (vault, passphrase)", |b| {
        b.iter(|| {
            let store = vault_store(dir.path(), source.clone());
            let m = SessionManager::new(store, options(dir.path()));
            black_box(rt.block_on(m.access_token(None)).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, warm, cold, cold_passphrase);
criterion_main!(benches);
