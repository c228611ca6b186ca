use serde_json::{json, Value};
use test_harness::TestIdp;

use crate::helpers::*;

async fn an_id_token_opens_a_device_session_with_token_and_jwt(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (token, body) = reg.device(&idp, "acme", "alice", "laptop").await;
    assert!(token.starts_with("lyst_acme_"), "{token}");
    let s = &body["session"];
    assert_eq!(s["tenant"], "acme");
    assert_eq!(s["device"]["id"], "laptop");
    assert_eq!(s["email"], "alice@acme.example");
    assert_eq!(s["current"], true);

    // The session JWT verifies offline against the registry's JWKS.
    let jwt = body["session_jwt"].as_str().unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = reg
        .http
        .get(reg.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_issuer(&[reg.base_url.as_str()]);
    v.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &v).unwrap().claims;
    for c in [
        "iss",
        "sub",
        "tenant",
        "sid",
        "device_id",
        "is_guest",
        "iat",
        "exp",
    ] {
        assert!(!claims[c].is_null(), "session JWT lacks {c}");
    }
    assert_eq!(claims["sid"], s["session_id"]);
    assert!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 300);
}
on_both_backends!(an_id_token_opens_a_device_session_with_token_and_jwt);

async fn a_second_login_on_the_same_device_is_a_new_session_of_the_same_account(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    let (t1, b1) = reg.device(&idp, "acme", "bob", "desk").await;
    let (t2, b2) = reg.device(&idp, "acme", "bob", "desk").await;
    assert_ne!(t1, t2, "every login issues a new token");
    assert_ne!(b1["session"]["session_id"], b2["session"]["session_id"]);
    assert_eq!(b1["session"]["account_id"], b2["session"]["account_id"]);
}
on_both_backends!(a_second_login_on_the_same_device_is_a_new_session_of_the_same_account);

async fn bad_id_tokens_are_401_and_create_nothing(backend: Backend) {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, backend).await;
    for tamper in [
        "invalid_signature",
        "alg_none",
        "hs256_public_key",
        "wrong_iss",
        "wrong_aud",
        "expired",
        "unknown_kid",
        "missing_sub",
    ] {
        idp.inject_fault("acme", json!({"id_token": tamper, "count": 1}))
            .await;
        let tokens = idp.login("acme", "alice", "lanyard-cli").await;
        let (status, body) = reg.create(tokens["id_token"].as_str().unwrap(), "d").await;
        assert_eq!(status, 401, "{tamper}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("id_token")
                || body["error"] == "untrusted_issuer",
            "{tamper}: {body}"
        );
    }
    let (status, body) = reg.create("not-a-jwt", "d").await;
    assert_eq!(status, 401, "{body}");
    assert!(
        reg.admin_sessions("acme").await.is_empty(),
        "nothing was created"
    );
}
on_both_backends!(bad_id_tokens_are_401_and_create_nothing);

#[tokio::test]
async fn an_id_token_past_its_expiry_by_the_registry_clock_is_refused() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let tokens = idp.login("acme", "alice", "lanyard-cli").await;
    reg.advance(601 + 61);
    let (status, body) = reg.create(tokens["id_token"].as_str().unwrap(), "d").await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

#[tokio::test]
async fn a_rotated_idp_key_is_picked_up_with_one_jwks_refetch() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    reg.device(&idp, "acme", "alice", "one").await;
    let res = idp
        .admin(reqwest::Method::POST, "tenants/acme/keys/rotate", None)
        .await;
    assert_eq!(res.status(), 200);
    // The new kid is unknown to the cached JWKS: one refetch, then success.
    reg.advance(11);
    reg.device(&idp, "acme", "alice", "two").await;
}

#[tokio::test]
async fn device_fields_and_durations_are_validated() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let tokens = idp.login("acme", "alice", "lanyard-cli").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    for body in [
        json!({"id_token": id_token, "device": {"id": "", "name": "n", "platform": "p"}}),
        json!({"id_token": id_token, "device": {"id": "x".repeat(200), "name": "n", "platform": "p"}}),
        json!({"id_token": id_token, "device": {"id": "d", "name": "n", "platform": "p"}, "session_duration_minutes": 4}),
        json!({"id_token": id_token, "device": {"id": "d", "name": "n", "platform": "p"}, "session_duration_minutes": 525_601}),
        json!({"id_token": id_token}),
        json!({"id_token": id_token, "device": {"id": "d", "name": "n", "platform": "p"}, "surprise": true}),
    ] {
        let res = reg
            .http
            .post(reg.url("/v1/sessions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body}");
    }
    assert!(reg.admin_sessions("acme").await.is_empty());
}
