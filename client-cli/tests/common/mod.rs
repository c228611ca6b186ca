//! Shared by the `lanyard` end-to-end tests: the real mock IdP and registry (embedded SQLite,
//! tenants `acme` and `globex`), a home folder per test, and the binary run in it with a
//! passphrase vault and nothing from the developer's environment.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use test_harness::TestIdp;
use tokio::io::{AsyncBufReadExt, BufReader};

pub struct Stack {
    pub idp: TestIdp,
    pub registry: String,
    pub home: tempfile::TempDir,
    _db: tempfile::TempDir,
}

pub async fn stack() -> Stack {
    stack_with(TestIdp::spawn().await).await
}

pub async fn stack_with(idp: TestIdp) -> Stack {
    let db = tempfile::tempdir().unwrap();
    let registry = session_registry::startup::Application::spawn_for_tests(
        &format!("sqlite://{}/r.db", db.path().display()),
        &[
            ("acme", idp.issuer("acme")),
            ("globex", idp.issuer("globex")),
        ],
    )
    .await
    .unwrap();
    Stack {
        idp,
        registry,
        home: tempfile::tempdir().unwrap(),
        _db: db,
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lanyard"))
}

impl Stack {
    /// The test's home and services for a `lanyard` process, and nothing of the developer's
    /// (account pin, keyring bus, colour settings, upgrade password).
    pub fn isolate<'c>(
        &self,
        c: &'c mut tokio::process::Command,
    ) -> &'c mut tokio::process::Command {
        c.env("LANYARD_HOME", self.home.path())
            .env("LANYARD_NO_BROWSER", "1")
            .env("LANYARD_STORE_BACKEND", "vault")
            .env("LANYARD_VAULT_PASSPHRASE", "test passphrase")
            .env("LANYARD_IDP", &self.idp.base_url)
            .env("LANYARD_REGISTRY", &self.registry)
            .env_remove("LANYARD_ACCOUNT")
            .env_remove("LANYARD_UPGRADE_PASSWORD")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CLICOLOR")
            .current_dir(self.home.path())
            .kill_on_drop(true)
    }

    pub fn cmd(&self, profile: &str, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(bin());
        c.args(["--profile", profile]).args(args);
        self.isolate(&mut c);
        c
    }

    pub async fn run(&self, profile: &str, args: &[&str]) -> Output {
        self.cmd(profile, args).output().await.unwrap()
    }
}

/// The authorization URL `lanyard login` prints (the rest of its stderr is drained).
pub async fn read_url(stderr: tokio::process::ChildStderr) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("Open this URL to sign in: ") {
                return url.to_owned();
            }
        }
        panic!("lanyard login printed no URL")
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
