use std::time::Duration;

use serde_json::json;
use test_harness::TestIdp;

use crate::helpers::*;

/// Registers client `rp` at the IdP with the registry as its back-channel logout receiver.
async fn register_rp(idp: &TestIdp, reg: &TestRegistry) {
    let res = idp
        .admin(
            reqwest::Method::POST,
            "tenants/acme/clients",
            Some(json!({
                "client_id": "rp",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "grant_types": ["authorization_code", "refresh_token"],
                "backchannel_logout_uri": reg.url("/v1/backchannel-logout"),
            })),
        )
        .await;
    assert_eq!(res.status(), 201);
}

async fn wait_until_revoked(reg: &TestRegistry, token: &str) {
    for _ in 0..100 {
        if reg.get("/v1/sessions", token).await.0 == 401 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the session was not revoked by the back-channel logout");
}

async fn an_idp_sign_out_ends_the_users_sessions_through_the_back_channel(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    register_rp(&idp, &reg).await;
    let tokens = idp.login("acme", "alice", "rp").await;
    let (status, body) = reg
        .create(tokens["id_token"].as_str().unwrap(), "laptop")
        .await;
    assert_eq!(status, 201, "{body}");
    let alice = body["session_token"].as_str().unwrap().to_owned();
    let (bob, _) = reg.device(&idp, "acme", "bob", "desk").await;

    let res = idp
        .admin(
            reqwest::Method::POST,
            "tenants/acme/users/alice/logout",
            None,
        )
        .await;
    assert_eq!(res.status(), 200);
    wait_until_revoked(&reg, &alice).await;
    assert_eq!(
        reg.admin_sessions("acme")
            .await
            .iter()
            .filter(|s| s["revoked_reason"] == "idp_logout")
            .count(),
        1
    );
    assert_eq!(
        reg.get("/v1/sessions", &bob).await.0,
        200,
        "bob is untouched"
    );
    let delivered = idp.audit("acme").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "backchannel_logout_delivered");
    assert!(delivered);
}
on_both_backends!(an_idp_sign_out_ends_the_users_sessions_through_the_back_channel);

#[tokio::test]
async fn a_bad_logout_token_is_a_400_and_changes_nothing() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (alice, created) = reg.device(&idp, "acme", "alice", "laptop").await;
    let post = |token: String| {
        let http = reg.http.clone();
        let url = reg.url("/v1/backchannel-logout");
        async move {
            http.post(url)
                .form(&[("logout_token", token)])
                .send()
                .await
                .unwrap()
        }
    };
    // An ID token is not a logout token (no events claim, has a nonce).
    let id_token = idp.login("acme", "alice", "lanyard-cli").await["id_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged_sig = {
        let mut parts: Vec<String> = id_token.split('.').map(str::to_owned).collect();
        parts[2] = "AAAA".into();
        parts.join(".")
    };
    for token in [id_token, forged_sig, "garbage".into(), String::new()] {
        let res = post(token.clone()).await;
        assert_eq!(res.status(), 400, "{token}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
    assert_eq!(reg.get("/v1/sessions", &alice).await.0, 200);
    let _ = created;
}
