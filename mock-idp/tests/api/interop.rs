//! Interop with a certified relying party: panva's `openid-client` (v6, Node) runs the whole
//! flow against an in-process IdP — discovery, code + PKCE, ID token validation, UserInfo,
//! refresh rotation, introspection, revocation, and rejection of a rotated-out refresh token.
//! Needs Node 20+ and `npm ci --prefix mock-idp/interop`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use test_harness::TestIdp;

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop")
}

#[tokio::test]
async fn openid_client_completes_the_whole_flow() {
    let dir = interop_dir();
    let script = dir.join("openid-client-flow.mjs");
    assert!(script.is_file(), "missing {}", script.display());
    if !dir
        .join("node_modules/openid-client/package.json")
        .is_file()
    {
        panic!(
            "openid-client is not installed in {}: run `npm ci --prefix mock-idp/interop` (Node 20+) first",
            dir.display()
        );
    }

    let idp = TestIdp::spawn().await;
    let issuer = idp.issuer("acme");
    // tokio's Command, so this runtime keeps serving the in-process IdP while node runs.
    let child = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&issuer)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("could not start `node` (is Node 20+ on PATH?): {e}"));
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the openid-client flow finishes within 60s")
        .expect("node ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "openid-client flow failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
        output.status
    );

    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no output; stderr: {stderr}"));
    let r: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["issuer"], issuer.as_str(), "{r}");
    assert_eq!(r["id_token_alg"], "ES256", "{r}");

    // The subject is alice's, as the IdP's own directory knows her.
    let alice = idp
        .state
        .tenant("acme")
        .expect("acme exists")
        .directory
        .read()
        .user_by_name("alice")
        .map(|u| u.sub.clone())
        .expect("alice exists");
    assert_eq!(r["sub"], alice.as_str(), "{r}");
    assert_eq!(r["userinfo_sub"], alice.as_str(), "{r}");
    assert_eq!(r["preferred_username"], "alice", "{r}");
    assert_eq!(r["id_token_aud"], "lanyard-cli", "{r}");
    assert_eq!(r["id_token_nonce_matched"], true, "{r}");
    assert_eq!(r["at_hash_verified"], true, "{r}");

    assert_eq!(r["refresh_rotated"], true, "{r}");
    assert_eq!(r["introspection_active"], true, "{r}");
    assert_eq!(r["introspection_client_id"], "lanyard-cli", "{r}");
    assert_eq!(r["old_refresh_introspection_active"], false, "{r}");
    assert_eq!(
        r["refresh_introspection_active_before_revocation"], true,
        "{r}"
    );
    assert_eq!(
        r["refresh_introspection_active_after_revocation"], false,
        "{r}"
    );
    assert_eq!(r["old_refresh_token_error"], "invalid_grant", "{r}");
    assert_eq!(r["revoked_refresh_token_error"], "invalid_grant", "{r}");
}
