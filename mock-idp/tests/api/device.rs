use serde_json::Value;
use test_harness::TestIdp;

use crate::helpers::*;

async fn start(idp: &TestIdp) -> Value {
    let res = idp
        .http
        .post(format!("{}/device_authorization", idp.issuer("acme")))
        .form(&[
            ("client_id", CLI),
            ("scope", "openid profile offline_access"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn poll(idp: &TestIdp, device_code: &str) -> reqwest::Response {
    idp.http
        .post(format!("{}/token", idp.issuer("acme")))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", CLI),
        ])
        .send()
        .await
        .unwrap()
}

async fn submit(
    idp: &TestIdp,
    user_code: &str,
    username: &str,
    password: &str,
    action: &str,
) -> reqwest::Response {
    idp.http
        .post(format!("{}/device", idp.issuer("acme")))
        .form(&[
            ("user_code", user_code),
            ("username", username),
            ("password", password),
            ("action", action),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_device_flow_goes_pending_slow_down_then_tokens_after_approval() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let d = start(&idp).await;
    assert_eq!(
        d["verification_uri"],
        format!("{}/device", idp.issuer("acme"))
    );
    assert_eq!(d["interval"], 5);
    let device_code = d["device_code"].as_str().unwrap();
    let user_code = d["user_code"].as_str().unwrap();

    assert_oauth_error(poll(&idp, device_code).await, 400, "authorization_pending").await;
    let desc = assert_oauth_error(poll(&idp, device_code).await, 400, "slow_down").await;
    assert!(desc.contains("10 seconds"), "interval grows by 5 s: {desc}");

    // The page from verification_uri_complete carries the code.
    let page = idp
        .http
        .get(d["verification_uri_complete"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(user_code));
    // A lowercase code without the dash is accepted.
    let typed = user_code.replace('-', " ").to_lowercase();
    let res = submit(&idp, &typed, "bob", PASSWORD, "approve").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Device connected"));

    clock.advance(time::Duration::seconds(11));
    let res = poll(&idp, device_code).await;
    assert_eq!(res.status(), 200);
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["preferred_username"],
        "bob"
    );
    assert!(tokens["refresh_token"].is_string());
    clock.advance(time::Duration::seconds(11));
    assert_oauth_error(poll(&idp, device_code).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn a_denied_device_gets_access_denied() {
    let idp = TestIdp::spawn().await;
    let d = start(&idp).await;
    // Denying needs a signed-in person too (device_page.rs: nobody denies without signing in).
    let res = submit(
        &idp,
        d["user_code"].as_str().unwrap(),
        "bob",
        PASSWORD,
        "deny",
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_oauth_error(
        poll(&idp, d["device_code"].as_str().unwrap()).await,
        400,
        "access_denied",
    )
    .await;
}

#[tokio::test]
async fn an_unapproved_device_code_expires() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let d = start(&idp).await;
    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(601));
    assert_oauth_error(
        poll(&idp, d["device_code"].as_str().unwrap()).await,
        400,
        "expired_token",
    )
    .await;
    // The user can no longer approve it either.
    let res = submit(
        &idp,
        d["user_code"].as_str().unwrap(),
        "alice",
        PASSWORD,
        "approve",
    )
    .await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn the_device_page_refuses_wrong_passwords_and_unknown_codes() {
    let idp = TestIdp::spawn().await;
    let d = start(&idp).await;
    let res = submit(
        &idp,
        d["user_code"].as_str().unwrap(),
        "alice",
        "nope",
        "approve",
    )
    .await;
    assert_eq!(res.status(), 401);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("Wrong username or password"));
    let res = submit(&idp, "BBBB-BBBB", "alice", PASSWORD, "approve").await;
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("unknown, expired or already used"));
    assert_oauth_error(
        poll(&idp, d["device_code"].as_str().unwrap()).await,
        400,
        "authorization_pending",
    )
    .await;
}

#[tokio::test]
async fn a_client_without_the_device_grant_cannot_start_one() {
    let idp = TestIdp::spawn().await;
    let res = idp
        .http
        .post(format!("{}/device_authorization", idp.issuer("acme")))
        .basic_auth(REGISTRY, Some(REGISTRY_SECRET))
        .form(&[("scope", "openid")])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 400, "unauthorized_client").await;
}

/// A device approved in a sign-in that has ended (the person signed out) before the device
/// fetched its tokens gets none: the grant would outlive the sign-out.
#[tokio::test]
async fn a_device_approved_in_a_sign_in_that_ended_gets_no_tokens() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let before = idp.audit("acme").await["records"].clone();
    let d = start(&idp).await;
    let device_code = d["device_code"].as_str().unwrap();
    let user_code = d["user_code"].as_str().unwrap();
    let res = submit(&idp, user_code, "bob", PASSWORD, "approve").await;
    assert_eq!(res.status(), 200);
    let res = idp
        .admin(reqwest::Method::POST, "tenants/acme/users/bob/logout", None)
        .await;
    assert_eq!(res.status(), 200);
    clock.advance(time::Duration::seconds(6));
    let desc = assert_oauth_error(poll(&idp, device_code).await, 400, "access_denied").await;
    assert!(desc.contains("has ended"), "{desc}");
    let after = idp.audit("acme").await["records"].clone();
    assert_eq!(after["families"], before["families"], "no grant: {after}");
}
