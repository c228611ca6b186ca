#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `lanyard login --guest` and `lanyard upgrade` end to end: the real binary against the real
//! mock IdP and registry, with a passphrase vault per test home (as in `cli.rs`).

use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;
mod common;

use common::{read_url, stack, stderr, Stack};

impl Stack {
    async fn json(&self, args: &[&str]) -> Value {
        let out = self.run("default", args).await;
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `lanyard login --guest`, the browser played by following `prompt=create` back to the
    /// loopback listener.
    async fn login_guest(&self) -> Output {
        let mut child = self
            .cmd(
                "default",
                &["login", "--tenant", "acme", "--guest", "--json"],
            )
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let url = read_url(child.stderr.take().unwrap()).await;
        assert!(url.contains("prompt=create"), "{url}");
        test_harness::idp::continue_as_guest_at(&url).await;
        tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap()
            .unwrap()
    }
}

#[tokio::test]
async fn a_guest_signs_in_and_upgrades_keeping_the_account_and_its_session() {
    let s = stack().await;
    let out = s.login_guest().await;
    assert!(out.status.success(), "{}", stderr(&out));

    let accounts = s.json(&["accounts", "--json"]).await;
    let accounts = accounts.as_array().unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["guest"], true);
    assert_eq!(accounts[0]["active"], true);
    let key = accounts[0]["key"].as_str().unwrap().to_owned();
    let subject = accounts[0]["subject"].as_str().unwrap().to_owned();
    let devices = s.json(&["devices", "--json"]).await;
    assert_eq!(devices.as_array().unwrap().len(), 1);
    let session_id = devices[0]["session_id"].as_str().unwrap().to_owned();
    assert_eq!(devices[0]["is_guest"], true);

    // No password anywhere: a usage error that changes nothing.
    let out = s.run("default", &["upgrade", "--username", "dana"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("LANYARD_UPGRADE_PASSWORD"),
        "{}",
        stderr(&out)
    );

    let out = s
        .cmd(
            "default",
            &[
                "upgrade",
                "--username",
                "dana",
                "--email",
                "dana@acme.example",
                "--name",
                "Dana",
                "--json",
            ],
        )
        .env("LANYARD_UPGRADE_PASSWORD", "correct horse battery")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let done: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["guest"], false);
    assert_eq!(done["key"], key.as_str());
    assert_eq!(done["subject"], subject.as_str());
    assert_eq!(done["session_id"], session_id.as_str());
    assert_eq!(done["account"], "dana@acme");
    assert_eq!(done["username"], "dana");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("correct horse")
            && !stderr(&out).contains("correct horse"),
        "the password is never printed"
    );

    let accounts = s.json(&["accounts", "--json"]).await;
    let accounts = accounts.as_array().unwrap();
    assert_eq!(accounts.len(), 1, "the same account, not a second one");
    assert_eq!(accounts[0]["guest"], false);
    assert_eq!(accounts[0]["key"], key.as_str());
    assert_eq!(accounts[0]["email"], "dana@acme.example");
    let devices = s.json(&["devices", "--json"]).await;
    assert_eq!(devices.as_array().unwrap().len(), 1);
    assert_eq!(devices[0]["session_id"], session_id.as_str());
    assert_eq!(devices[0]["is_guest"], false);

    // A registered account cannot be upgraded: a usage error.
    let out = s
        .cmd("default", &["upgrade", "--username", "dana2"])
        .env("LANYARD_UPGRADE_PASSWORD", "correct horse battery")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a guest"), "{}", stderr(&out));
}

#[tokio::test]
async fn guest_and_device_code_do_not_mix_and_a_taken_username_is_reported() {
    let s = stack().await;
    let out = s
        .run(
            "default",
            &["login", "--tenant", "acme", "--guest", "--device-code"],
        )
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = s.login_guest().await;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s
        .cmd("default", &["upgrade", "--username", "alice"])
        .env("LANYARD_UPGRADE_PASSWORD", "correct horse battery")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("already taken"), "{}", stderr(&out));
    let accounts = s.json(&["accounts", "--json"]).await;
    assert_eq!(accounts[0]["guest"], true, "still a guest");
}
