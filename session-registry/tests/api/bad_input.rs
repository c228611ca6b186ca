use serde_json::json;
use test_harness::TestIdp;

use crate::helpers::*;

#[tokio::test]
async fn forged_malformed_and_hostile_bearers_are_401_never_500() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (good, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let unknown = session_registry::token::SessionToken::generate("acme");
    let cases = vec![
        unknown.expose().to_owned(),
        "lyst_acme_' OR '1'='1".to_owned(),
        "x".repeat(64 * 1024 - 100),
        "lyst_".to_owned(),
        "eyJhbGciOiJub25lIn0.eyJ0ZW5hbnQiOiJhY21lIn0.".to_owned(),
        format!("{good}x"),
    ];
    for bad in cases {
        let res = reg
            .http
            .get(reg.url("/v1/sessions"))
            .header("authorization", format!("Bearer {bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{}", &bad[..bad.len().min(40)]);
        assert!(res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with(r#"Bearer error="invalid_token""#));
    }
    for header in ["Bearer ", "Basic abc", ""] {
        let res = reg
            .http
            .get(reg.url("/v1/sessions"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    assert_eq!(
        reg.admin_sessions("acme").await.len(),
        1,
        "no session was adopted or created"
    );
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_400s_with_a_reason() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let big = json!({"session_token": "x".repeat(70 * 1024)});
    let res = reg
        .http
        .post(reg.url("/v1/sessions/authenticate"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "body_too_large");
    let res = reg
        .http
        .post(reg.url("/v1/sessions"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn repeated_failed_authenticates_from_one_address_are_rate_limited() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (good, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let unknown = session_registry::token::SessionToken::generate("acme");
    let mut limited = false;
    for _ in 0..40 {
        let (status, _, _) = reg
            .authenticate(json!({"session_token": unknown.expose()}))
            .await;
        if status == 429 {
            limited = true;
            break;
        }
        assert_eq!(status, 401);
    }
    assert!(limited, "40 failures in a minute were not limited");
    let (status, _, _) = reg.authenticate(json!({"session_token": good})).await;
    assert_eq!(status, 429, "the address stays limited for the window");
    reg.advance(61);
    let (status, _, _) = reg.authenticate(json!({"session_token": good})).await;
    assert_eq!(status, 200);
}
