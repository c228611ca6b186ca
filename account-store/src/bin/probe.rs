//! `account-store-probe`: read and write items from the command line. The multi-process and crash
//! tests drive it; it is also a quick way to see what a profile holds.
//!
//! ```text
//! account-store-probe DIR BACKEND set ISSUER SUBJECT ITEM VALUE
//! account-store-probe DIR BACKEND get ISSUER SUBJECT ITEM
//! account-store-probe DIR BACKEND save-loop ISSUER SUBJECT N     # N saves of account + items
//! account-store-probe DIR BACKEND list
//! ```
//! The vault passphrase comes from `LANYARD_VAULT_PASSPHRASE`.

use std::process::ExitCode;

use account_store::{AccountId, AccountMeta, AccountStore, BackendChoice, ItemKind, StoreConfig};
use anyhow::{anyhow, bail, Context};
use secrecy::{ExposeSecret, SecretString};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, backend, cmd, rest @ ..] = args.as_slice() else {
        bail!("usage: account-store-probe DIR BACKEND (get|set|save-loop|list) ...");
    };
    let backend =
        BackendChoice::parse(backend).ok_or_else(|| anyhow!("unknown backend {backend}"))?;
    let mut cfg = StoreConfig::new(dir, "default").backend(backend);
    if let Ok(p) = std::env::var("LANYARD_VAULT_PASSPHRASE") {
        cfg = cfg.passphrase(SecretString::from(p));
    }
    if let Ok(m) = std::env::var("LANYARD_TEST_ARGON2_KIB") {
        cfg.argon2_memory_kib = Some(m.parse().context("LANYARD_TEST_ARGON2_KIB")?);
    }
    let store = AccountStore::open(cfg)?;
    let item = |s: &str| ItemKind::parse(s).ok_or_else(|| anyhow!("unknown item {s}"));
    match (cmd.as_str(), rest) {
        ("get", [iss, sub, it]) => {
            let id = AccountId::new(iss, sub)?;
            let v = store.secrets().require(&id.key(), item(it)?)?;
            println!("{}", v.expose_secret());
        }
        ("set", [iss, sub, it, value]) => {
            let id = AccountId::new(iss, sub)?;
            let now = time::OffsetDateTime::UNIX_EPOCH;
            store.save_account(
                AccountMeta::new(id, sub.clone(), now),
                &[(item(it)?, SecretString::from(value.clone()))],
            )?;
        }
        ("save-loop", [iss, sub, n]) => {
            let id = AccountId::new(iss, sub)?;
            let n: u64 = n.parse()?;
            for i in 0..n {
                let items: Vec<(ItemKind, SecretString)> = ItemKind::ALL
                    .iter()
                    .map(|k| (*k, SecretString::from(format!("{sub}-{}-{i}", k.name()))))
                    .collect();
                store.save_account(
                    AccountMeta::new(id.clone(), sub.clone(), time::OffsetDateTime::UNIX_EPOCH),
                    &items,
                )?;
            }
        }
        ("list", []) => {
            for a in store.accounts()? {
                println!(
                    "{}\t{}\t{}",
                    a.key,
                    a.id.issuer.as_str(),
                    a.id.subject.as_str()
                );
            }
        }
        _ => bail!("bad arguments"),
    }
    Ok(())
}
