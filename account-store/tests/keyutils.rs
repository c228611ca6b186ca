#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The kernel keyutils backend, in fresh session keyrings (`keyctl session -`): items are
//! shared by the processes of a session and, through the user's persistent keyring that the
//! store links them to, by later sessions too.

mod common;

use std::process::Command;

use common::*;

#[test]
fn keyutils_items_are_shared_by_processes_and_later_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let probe = probe_bin();
    let d = dir.path().display();
    let p = probe.display();
    let sub = format!("ku-{}", std::process::id());
    let script = format!(
        "{p} {d} keyutils set https://idp.example/acme {sub} refresh_token ku-value && \
         {p} {d} keyutils get https://idp.example/acme {sub} refresh_token"
    );
    let out = Command::new("keyctl")
        .args(["session", "-", "sh", "-c", &script])
        .output()
        .expect("keyctl (Debian package keyutils) is needed for this test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ku-value");
    // A later session finds it through the persistent keyring.
    let get = format!("{p} {d} keyutils get https://idp.example/acme {sub} refresh_token");
    let out = Command::new("keyctl")
        .args(["session", "-", "sh", "-c", &get])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ku-value");
}
