use serde_json::Value;
use test_harness::TestIdp;

use crate::helpers::*;

#[tokio::test]
async fn bodies_over_64_kib_are_refused_with_an_oauth_error() {
    let idp = TestIdp::spawn().await;
    let big = format!(
        "grant_type=refresh_token&client_id=lanyard-cli&refresh_token={}",
        "x".repeat(70 * 1024)
    );
    let res = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
    let big_json = serde_json::json!({"slug": "x".repeat(70 * 1024)});
    let res = idp
        .admin(reqwest::Method::POST, "tenants", Some(big_json))
        .await;
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn malformed_token_requests_name_the_problem() {
    let idp = TestIdp::spawn().await;
    let url = format!("{}/token", idp.issuer("acme"));
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "grant_type=password&username=alice&password=lanyard-dev&client_id=lanyard-cli",
            "unsupported_grant_type",
            "password grant",
        ),
        (
            "grant_type=magic&client_id=lanyard-cli",
            "unsupported_grant_type",
            "magic",
        ),
        ("client_id=lanyard-cli", "invalid_request", "grant_type"),
        (
            "grant_type=authorization_code&code=a&code=b&client_id=lanyard-cli",
            "invalid_request",
            "repeated",
        ),
        (
            "grant_type=refresh_token&client_id=lanyard-cli",
            "invalid_request",
            "refresh_token",
        ),
        (
            "grant_type=refresh_token&refresh_token=zzz&client_id=lanyard-cli",
            "invalid_grant",
            "unknown",
        ),
        (
            "grant_type=refresh_token&refresh_token=zzz&client_id=lanyard-cli&scope=%22bad",
            "invalid_scope",
            "forbids",
        ),
    ];
    for (body, error, needle) in cases {
        let res = idp
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let desc = assert_oauth_error(res, 400, error).await;
        assert!(desc.contains(needle), "{body}: {desc}");
    }
    let res = idp
        .http
        .post(&url)
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    let desc = assert_oauth_error(res, 400, "invalid_request").await;
    assert!(desc.contains("x-www-form-urlencoded"));
    let res = idp
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_oauth_error(res, 400, "invalid_request").await;
}

#[tokio::test]
async fn hostile_bearer_tokens_are_401_never_500() {
    let idp = TestIdp::spawn().await;
    let url = format!("{}/userinfo", idp.issuer("acme"));
    let header_kid = |kid: &str| {
        use base64::Engine;
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"ES256","kid":"{kid}","jku":"http://127.0.0.1:9/x"}}"#
        ));
        format!("{h}.e30.AAAA")
    };
    for token in [
        "x".repeat(20_000),
        "' OR '1'='1".to_owned(),
        header_kid("../../etc/passwd"),
        header_kid(&"k".repeat(10_000)),
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".to_owned(),
    ] {
        let res = idp
            .http
            .get(&url)
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await;
        if let Ok(res) = res {
            assert!(
                res.status() == 401 || res.status() == 431 || res.status() == 400,
                "{}",
                res.status()
            );
        }
    }
    // Still serving.
    assert_eq!(
        idp.http
            .get(format!("{}/jwks", idp.issuer("acme")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn a_token_minted_by_one_tenant_is_refused_by_another_tenants_userinfo() {
    let idp = TestIdp::spawn().await;
    let t = login_tokens(&idp, "acme", "alice").await;
    let res = idp
        .http
        .get(format!("{}/userinfo", idp.issuer("globex")))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn malformed_admin_json_is_a_400_with_the_reason() {
    let idp = TestIdp::spawn().await;
    let res = idp
        .http
        .post(format!("{}/admin/tenants", idp.base_url))
        .bearer_auth("lanyard-dev-admin")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}
