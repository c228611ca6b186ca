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
    let good = provider
        .login_with_browser(&browser("alice"), Duration::from_secs(20))
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
            .login_with_browser(&browser("alice"), Duration::from_secs(20))
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
        Callback::Code { code, .. } => assert_eq!(code, "genuine"),
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
    provider
        .login_with_browser(&browser("alice"), Duration::from_secs(20))
        .await
        .unwrap();
    let res = idp
        .admin(reqwest::Method::POST, "tenants/acme/keys/rotate", None)
        .await;
    assert_eq!(res.status(), 200);
    // The cached JWKS lacks the new kid: one re-fetch, then the login succeeds.
    provider
        .login_with_browser(&browser("alice"), Duration::from_secs(20))
        .await
        .unwrap();
}

/// Plays the browser for `url` but tampers with the authorization response before it reaches
/// the client: `edit` changes the callback URL's query (the `iss` a mix-up attacker would send).
fn tampering_browser(
    user: &'static str,
    edit: impl Fn(&mut Vec<(String, String)>) + Send + Sync + Clone + 'static,
) -> impl Fn(&url::Url) + Send + Sync {
    move |url: &url::Url| {
        let url = url.clone();
        let edit = edit.clone();
        tokio::spawn(async move {
            let browser = test_harness::idp::browser();
            let page = browser
                .get(url.as_str())
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let marker = r#"name="auth_request" value=""#;
            let start = page.find(marker).unwrap() + marker.len();
            let id = &page[start..start + page[start..].find('"').unwrap()];
            let issuer = url.as_str().split("/authorize").next().unwrap().to_owned();
            let res = browser
                .post(format!("{issuer}/login"))
                .form(&[
                    ("auth_request", id),
                    ("username", user),
                    ("password", mock_idp::config::DEV_PASSWORD),
                ])
                .send()
                .await
                .unwrap();
            let mut callback =
                url::Url::parse(res.headers()["location"].to_str().unwrap()).unwrap();
            let mut pairs: Vec<(String, String)> = callback.query_pairs().into_owned().collect();
            edit(&mut pairs);
            callback.query_pairs_mut().clear().extend_pairs(pairs);
            browser.get(callback).send().await.unwrap();
        });
    }
}

/// The tenant's token-endpoint counters: any request at all shows up here.
async fn token_requests(idp: &TestIdp, tenant: &str) -> u64 {
    idp.audit(tenant).await["counters"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("token."))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum()
}

#[tokio::test]
async fn an_authorization_response_from_another_issuer_is_refused_before_any_token_request() {
    // RFC 9207 mix-up defence: the callback names globex though the request went to acme.
    let idp = TestIdp::spawn().await;
    let provider = Provider::discover(&idp.issuer("acme"), "lanyard-cli")
        .await
        .unwrap();
    let globex = idp.issuer("globex");
    let other_issuer = tampering_browser("alice", move |pairs| {
        for (k, v) in pairs.iter_mut() {
            if k == "iss" {
                *v = globex.clone();
            }
        }
    });
    let err = provider
        .login_with_browser(&other_issuer, Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SessionError::IssuerMismatch { found: Some(f), .. } if f == &idp.issuer("globex")),
        "{err:?}"
    );
    // The provider advertises authorization_response_iss_parameter_supported: no iss, no code.
    let no_issuer = tampering_browser("alice", |pairs| pairs.retain(|(k, _)| k != "iss"));
    let err = provider
        .login_with_browser(&no_issuer, Duration::from_secs(20))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SessionError::IssuerMismatch { found: None, .. }),
        "{err:?}"
    );
    assert_eq!(
        token_requests(&idp, "acme").await,
        0,
        "no code was ever redeemed"
    );
    // The genuine response (iss = acme) signs in.
    provider
        .login_with_browser(&tampering_browser("alice", |_| {}), Duration::from_secs(20))
        .await
        .unwrap();
}

#[tokio::test]
async fn id_tokens_issued_long_ago_in_the_future_or_not_yet_valid_are_rejected() {
    let idp = TestIdp::spawn().await;
    let provider = Provider::discover(&idp.issuer("acme"), "lanyard-cli")
        .await
        .unwrap();
    for tamper in ["missing_iat", "iat_week_ago", "iat_future", "nbf_future"] {
        idp.inject_fault("acme", json!({"id_token": tamper, "count": 1}))
            .await;
        let result = provider
            .login_with_browser(&browser("alice"), Duration::from_secs(20))
            .await;
        assert!(
            matches!(result, Err(SessionError::IdTokenInvalid(_))),
            "{tamper}: {result:?}"
        );
    }
}

/// A login at the real IdP checked on a clock `offset_secs` from the wall clock, with `leeway`.
async fn login_with_clock_offset(
    idp: &TestIdp,
    offset_secs: i64,
    leeway: Option<Duration>,
) -> Result<session_core::tokens::TokenSet, SessionError> {
    let clock = std::sync::Arc::new(lanyard_clock::ManualClock::new());
    clock.advance(time::Duration::seconds(offset_secs));
    let mut provider = Provider::discover(&idp.issuer("acme"), "lanyard-cli")
        .await
        .unwrap()
        .with_clock(clock);
    if let Some(l) = leeway {
        provider = provider.with_leeway(l);
    }
    provider
        .login_with_browser(&browser("alice"), Duration::from_secs(20))
        .await
}

#[tokio::test]
async fn id_token_times_are_checked_on_the_given_clock_with_a_leeway_of_60_seconds_capped_at_300() {
    // The mock IdP issues ID tokens valid for 600 s from the wall clock's now.
    let idp = TestIdp::spawn().await;
    let expired = |r: &Result<_, SessionError>| matches!(r, Err(SessionError::IdTokenInvalid(_)));
    // exp 30 s ago on this clock: within the default leeway.
    assert!(login_with_clock_offset(&idp, 630, None).await.is_ok());
    // exp 301 s ago: refused, though the wall clock says it is valid.
    assert!(expired(&login_with_clock_offset(&idp, 901, None).await));
    // Two hours ahead: refused (the clock is the caller's, not the wall clock).
    assert!(expired(&login_with_clock_offset(&idp, 7200, None).await));
    // iat 10 s in the future: accepted; 301 s: refused.
    assert!(login_with_clock_offset(&idp, -10, None).await.is_ok());
    assert!(expired(&login_with_clock_offset(&idp, -301, None).await));
    // A configured leeway is honoured, but never more than 300 s.
    assert!(
        login_with_clock_offset(&idp, 600 + 250, Some(Duration::from_secs(400)))
            .await
            .is_ok()
    );
    assert!(expired(
        &login_with_clock_offset(&idp, 600 + 350, Some(Duration::from_secs(400))).await
    ));
}
