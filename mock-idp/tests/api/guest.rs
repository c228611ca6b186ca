use serde_json::{json, Value};
use test_harness::TestIdp;

use crate::helpers::*;

async fn guest_tokens(idp: &TestIdp) -> Value {
    let client = browser();
    let p = pkce();
    let page = get_authorize(&client, idp, "acme", &auth_params(&p)).await;
    let id = auth_request_id(&page.text().await.unwrap());
    let res = client
        .post(format!("{}/guest", idp.issuer("acme")))
        .form(&[("auth_request", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let code = location(&res).1["code"].clone();
    exchange(idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap()
}

async fn upgrade(idp: &TestIdp, at: &str, body: Value) -> reqwest::Response {
    idp.http
        .post(format!("{}/guest/upgrade", idp.issuer("acme")))
        .bearer_auth(at)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_guest_is_anonymous_and_upgrades_keeping_the_same_subject() {
    let idp = TestIdp::spawn().await;
    let t = guest_tokens(&idp).await;
    let c = claims(t["id_token"].as_str().unwrap());
    assert_eq!(c["is_guest"], true);
    assert!(c.get("email").is_none());
    let sub = c["sub"].clone();

    let res = upgrade(
        &idp,
        t["access_token"].as_str().unwrap(),
        json!({"username": "dana", "password": "correct horse", "email": "dana@acme.example"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["sub"], sub);
    assert_eq!(body["is_guest"], false);

    // The upgraded user signs in with the new credentials and is the same subject.
    let client = browser();
    let p = pkce();
    let page = get_authorize(&client, &idp, "acme", &auth_params(&p)).await;
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"id="user-dana""#));
    let id = auth_request_id(&html);
    let res = post_login(&client, &idp, "acme", &id, "dana", "correct horse").await;
    let code = location(&res).1["code"].clone();
    let t2: Value = exchange(&idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap();
    let c2 = claims(t2["id_token"].as_str().unwrap());
    assert_eq!(c2["sub"], sub);
    assert_eq!(c2["is_guest"], false);
    assert_eq!(c2["email"], "dana@acme.example");
}

#[tokio::test]
async fn upgrades_refuse_taken_names_registered_users_weak_passwords_and_bad_tokens() {
    let idp = TestIdp::spawn().await;
    let g = guest_tokens(&idp).await;
    let at = g["access_token"].as_str().unwrap();
    assert_oauth_error(
        upgrade(
            &idp,
            at,
            json!({"username": "alice", "password": "long enough"}),
        )
        .await,
        409,
        "conflict",
    )
    .await;
    assert_oauth_error(
        upgrade(&idp, at, json!({"username": "erin", "password": "short"})).await,
        400,
        "invalid_request",
    )
    .await;
    let res = upgrade(
        &idp,
        at,
        json!({"username": "bad name!", "password": "long enough"}),
    )
    .await;
    assert_eq!(res.status(), 400);
    let registered = login_tokens(&idp, "acme", "bob").await;
    assert_oauth_error(
        upgrade(
            &idp,
            registered["access_token"].as_str().unwrap(),
            json!({"username": "bobby", "password": "long enough"}),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(
        upgrade(
            &idp,
            "garbage",
            json!({"username": "x", "password": "long enough"})
        )
        .await
        .status(),
        401
    );
    // The guest is still a guest after the refusals.
    let info: Value = idp
        .http
        .get(format!("{}/userinfo", idp.issuer("acme")))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["is_guest"], true);
}

#[tokio::test]
async fn the_guest_endpoint_needs_a_pending_authorization_request() {
    let idp = TestIdp::spawn().await;
    let res = idp
        .http
        .post(format!("{}/guest", idp.issuer("acme")))
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap();
    let desc = assert_oauth_error(res, 400, "invalid_request").await;
    assert!(desc.contains("auth_request"));
    let res = idp
        .http
        .post(format!("{}/guest", idp.issuer("acme")))
        .form(&[("auth_request", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn prompt_create_signs_in_a_new_guest_without_the_form() {
    let idp = TestIdp::spawn().await;
    // Even with an IdP session for bob, `prompt=create` makes a new guest.
    let client = browser();
    let p = pkce();
    let page = get_authorize(&client, &idp, "acme", &auth_params(&p)).await;
    let id = auth_request_id(&page.text().await.unwrap());
    post_login(
        &client,
        &idp,
        "acme",
        &id,
        "bob",
        mock_idp::config::DEV_PASSWORD,
    )
    .await;

    let mut subs = Vec::new();
    for _ in 0..2 {
        let p = pkce();
        let res = get_authorize(
            &client,
            &idp,
            "acme",
            &with(auth_params(&p), &[("prompt", Some("create"))]),
        )
        .await;
        assert_eq!(res.status(), 303, "no login page");
        let code = location(&res).1["code"].clone();
        let t: Value = exchange(&idp, "acme", &code, &p.verifier)
            .await
            .json()
            .await
            .unwrap();
        let c = claims(t["id_token"].as_str().unwrap());
        assert_eq!(c["is_guest"], true);
        subs.push(c["sub"].as_str().unwrap().to_owned());
    }
    assert_ne!(subs[0], subs[1], "each prompt=create is a new guest");

    // prompt=none cannot be combined with it.
    let res = get_authorize(
        &client,
        &idp,
        "acme",
        &with(auth_params(&pkce()), &[("prompt", Some("none create"))]),
    )
    .await;
    assert_eq!(location(&res).1["error"], "invalid_request");
}
