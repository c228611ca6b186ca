#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The OIDC client against the real mock IdP's misbehaviour switches: every defective ID token
//! is rejected before anything is stored; the loopback listener's rules.

use std::time::Duration;

use serde_json::json;
use session_core::loopback::{Callback, LoopbackListener};
use session_core::oidc::Provider;
use session_core::SessionError;
use test_harness::TestIdp;

fn browser(user: &'static str) -> impl Fn(&url::Url) + Send + Sync {
    move |url: &url::Url| {
        let url = url.to_string();
        tokio::spawn(async move { test_harness::idp::sign_in_at(&url, user).await });
    }
}

#[tokio::test]
async fn every_defective_id_token_is_rejected() {
    let idp = TestIdp::spawn().await;
    let provider = Provider::discover(&idp.issuer("acme"), "lanyard-cli")
        .await
        .unwrap();
    let now = lanyard_clock::Clock::now(&lanyard_clock::SystemClock).unix_timestamp();
    let good = provider
        .login_with_browser(&browser("alice"), Duration::from_secs(20), now)
        .await
        .unwrap();
    assert!(good.refresh_token.is_some());
    for tamper in [
        "invalid_signature",
        "alg_none",
        "hs256_public_key",
        "wrong_iss",
        "missing_iss",
        "wrong_aud",
        "missing_aud",
        "extra_aud",
        "wrong_azp",
        "expired",
        "missing_exp",
        "wrong_nonce",
        "missing_nonce",
        "wrong_at_hash",
        "unknown_kid",
        "missing_sub",
    ] {
        idp.inject_fault("acme", json!({"id_token": tamper, "count": 1}))
            .await;
        let result = provider
            .login_with_browser(&browser("alice"), Duration::from_secs(20), now)
            .await;
        assert!(
            matches!(result, Err(SessionError::IdTokenInvalid(_))),
            "{tamper}: {result:?}"
        );
    }
}

#[tokio::test]
async fn discovery_refuses_an_issuer_that_does_not_match_and_unknown_tenants() {
    let idp = TestIdp::spawn().await;
    let err = Provider::discover(&format!("{}/", idp.issuer("acme")), "lanyard-cli")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SessionError::Discovery { .. }), "{err:?}");
    let err = Provider::discover(&idp.issuer("nope"), "lanyard-cli")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SessionError::Discovery { .. }));
}

#[tokio::test]
async fn the_loopback_listener_binds_127_0_0_1_and_keeps_waiting_after_a_wrong_state() {
    let listener = LoopbackListener::bind().await.unwrap();
    assert!(listener.addr().ip().is_loopback());
    assert_ne!(listener.addr().port(), 0);
    assert!(
        listener.redirect_uri().starts_with("http://127.0.0.1:"),
        "an IP literal, not localhost"
    );
    let uri = listener.redirect_uri();
    let waiting = tokio::spawn(listener.wait("the-state", Duration::from_secs(10)));
    let http = reqwest::Client::new();
    let res = http
        .get(format!("{uri}?code=stolen&state=wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "a wrong state is refused");
    let res = http.get(format!("{uri}?code=stolen")).send().await.unwrap();
    assert_eq!(res.status(), 400, "a missing state is refused");
    let res = http
        .get(format!("{uri}?code=genuine&state=the-state"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    match waiting.await.unwrap().unwrap() {
        Callback::Code(c) => assert_eq!(c, "genuine"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_error_callback_is_reported_and_a_silent_one_times_out() {
    let listener = LoopbackListener::bind().await.unwrap();
    let uri = listener.redirect_uri();
    let waiting = tokio::spawn(listener.wait("s", Duration::from_secs(10)));
    reqwest::get(format!(
        "{uri}?error=access_denied&error_description=no&state=s&code=ignored"
    ))
    .await
    .unwrap();
    assert!(
        matches!(waiting.await.unwrap().unwrap(), Callback::Error { error, .. } if error == "access_denied")
    );
    let listener = LoopbackListener::bind().await.unwrap();
    let err = listener
        .wait("s", Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::LoginTimeout(_)));
}

#[tokio::test]
async fn a_rotated_signing_key_is_picked_up_with_one_jwks_refetch() {
    let idp = TestIdp::spawn().await;
    let provider = Provider::discover(&idp.issuer("acme"), "lanyard-cli")
        .await
        .unwrap();
    let now = lanyard_clock::Clock::now(&lanyard_clock::SystemClock).unix_timestamp();
    provider
        .login_with_browser(&browser("alice"), Duration::from_secs(20), now)
        .await
        .unwrap();
    let res = idp
        .admin(reqwest::Method::POST, "tenants/acme/keys/rotate", None)
        .await;
    assert_eq!(res.status(), 200);
    // The cached JWKS lacks the new kid: one re-fetch, then the login succeeds.
    provider
        .login_with_browser(&browser("alice"), Duration::from_secs(20), now)
        .await
        .unwrap();
}
