use serde_json::{json, Value};
use test_harness::TestIdp;

use crate::helpers::*;

async fn revoke(idp: &TestIdp, token: &str, auth: Option<(&str, &str)>) -> reqwest::Response {
    let mut req = idp.http.post(format!("{}/revoke", idp.issuer("acme")));
    let mut form = vec![("token", token)];
    match auth {
        Some((id, secret)) => req = req.basic_auth(id, Some(secret)),
        None => form.push(("client_id", CLI)),
    }
    req.form(&form).send().await.unwrap()
}

#[tokio::test]
async fn revoking_unknown_or_garbage_tokens_answers_200_with_an_empty_body() {
    let idp = TestIdp::spawn().await;
    for garbage in [
        "unknown",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        &"x".repeat(10_000),
    ] {
        let res = revoke(&idp, garbage, None).await;
        assert_eq!(res.status(), 200);
        assert!(res.text().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn revoking_a_refresh_token_kills_its_access_tokens_too() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    let (at, rt) = (
        t["access_token"].as_str().unwrap(),
        t["refresh_token"].as_str().unwrap(),
    );
    assert_eq!(revoke(&idp, rt, None).await.status(), 200);
    assert_eq!(introspect(&idp, "acme", at).await, json!({"active": false}));
    assert_eq!(introspect(&idp, "acme", rt).await, json!({"active": false}));
    assert_oauth_error(refresh(&idp, "acme", rt).await, 400, "invalid_grant").await;
}

#[tokio::test]
async fn revoking_an_access_token_leaves_the_refresh_token() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    let (at, rt) = (
        t["access_token"].as_str().unwrap(),
        t["refresh_token"].as_str().unwrap(),
    );
    assert_eq!(revoke(&idp, at, None).await.status(), 200);
    assert_eq!(introspect(&idp, "acme", at).await, json!({"active": false}));
    let res = idp
        .http
        .get(format!("{}/userinfo", idp.issuer("acme")))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(refresh(&idp, "acme", rt).await.status(), 200);
}

#[tokio::test]
async fn another_clients_token_is_not_revoked() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    let rt = t["refresh_token"].as_str().unwrap();
    let res = revoke(&idp, rt, Some((REGISTRY, REGISTRY_SECRET))).await;
    assert_eq!(res.status(), 200);
    assert_eq!(introspect(&idp, "acme", rt).await["active"], true);
    assert_eq!(refresh(&idp, "acme", rt).await.status(), 200);
}

#[tokio::test]
async fn introspection_needs_an_authenticated_confidential_client() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    let at = t["access_token"].as_str().unwrap();
    let url = format!("{}/introspect", idp.issuer("acme"));
    let res = idp
        .http
        .post(&url)
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 401, "invalid_client").await;
    let res = idp
        .http
        .post(&url)
        .form(&[("token", at), ("client_id", CLI)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 401, "invalid_client").await;
    let res = idp
        .http
        .post(&url)
        .basic_auth(REGISTRY, Some("wrong"))
        .form(&[("token", at)])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 401, "invalid_client").await;
}

#[tokio::test]
async fn introspection_describes_live_tokens_and_says_only_inactive_otherwise() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    let at = t["access_token"].as_str().unwrap();
    let live = introspect(&idp, "acme", at).await;
    assert_eq!(live["active"], true);
    assert_eq!(live["client_id"], CLI);
    assert_eq!(live["token_type"], "Bearer");
    assert_eq!(live["iss"], idp.issuer("acme"));
    assert!(live["scope"].as_str().unwrap().contains("openid"));
    let rt_live = introspect(&idp, "acme", t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(rt_live["token_type"], "refresh_token");

    for garbage in ["nope", "a.b.c", "x.y"] {
        assert_eq!(introspect(&idp, "acme", garbage).await["active"], false);
    }
    // Expired.
    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(601));
    assert_eq!(introspect(&idp, "acme", at).await, json!({"active": false}));
    // Another tenant's token.
    let g = login_tokens(&idp, "globex", "carol").await;
    assert_eq!(
        introspect(&idp, "acme", g["access_token"].as_str().unwrap()).await,
        json!({"active": false})
    );
}

#[tokio::test]
async fn userinfo_answers_with_the_users_claims_and_refuses_bad_tokens_with_bearer_errors() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "globex", "alice").await;
    let at = t["access_token"].as_str().unwrap();
    let url = format!("{}/userinfo", idp.issuer("globex"));
    let info: Value = idp
        .http
        .get(&url)
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], claims(t["id_token"].as_str().unwrap())["sub"]);
    assert_eq!(info["email"], "alice@globex.example");
    assert_eq!(info["tenant"], "globex");

    // globex's alice is a different subject from acme's alice.
    let acme = login_tokens(&idp, "acme", "alice").await;
    assert_ne!(
        claims(acme["id_token"].as_str().unwrap())["sub"],
        info["sub"]
    );

    for bad in [
        "",
        "garbage",
        "a.b.c",
        acme["access_token"].as_str().unwrap(),
    ] {
        let res = idp
            .http
            .get(&url)
            .header("authorization", format!("Bearer {bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{bad}");
        let challenge = res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with(r#"Bearer error="invalid_token""#),
            "{challenge}"
        );
    }
}

#[tokio::test]
async fn an_id_token_is_no_access_token_at_userinfo_introspection_revocation_or_guest_upgrade() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    let id_token = t["id_token"].as_str().unwrap();
    let res = idp
        .http
        .get(format!("{}/userinfo", idp.issuer("acme")))
        .bearer_auth(id_token)
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 401, "invalid_token").await;
    assert_eq!(
        introspect(&idp, "acme", id_token).await,
        json!({"active": false})
    );
    let res = idp
        .http
        .post(format!("{}/guest/upgrade", idp.issuer("acme")))
        .bearer_auth(id_token)
        .json(&json!({"username": "mallory", "password": "long enough"}))
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 401, "invalid_token").await;
    // Revoking it is a no-op: the access token of the same response stays live.
    let res = idp
        .http
        .post(format!("{}/revoke", idp.issuer("acme")))
        .form(&[("token", id_token), ("client_id", CLI)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let at = introspect(&idp, "acme", t["access_token"].as_str().unwrap()).await;
    assert_eq!(at["active"], true);
}
