//! `max_age` (OIDC Core §3.1.2.1) and `auth_time` in every ID token, whichever grant issued it;
//! and every token's `typ`: the registry refuses anything but `JWT` (or none) as an ID token.

use serde_json::Value;
use test_harness::TestIdp;

use crate::helpers::*;

fn assert_typed(tokens: &Value, path: &str) {
    let at = tokens["access_token"].as_str().unwrap();
    assert_eq!(header(at)["typ"], "at+jwt", "{path}: access token");
    let id = tokens["id_token"].as_str().unwrap();
    let typ = header(id).get("typ").cloned();
    assert!(
        typ.is_none() || typ == Some(Value::from("JWT")),
        "{path}: ID token typed {typ:?}"
    );
}

fn auth_time(tokens: &Value) -> i64 {
    let c = claims(tokens["id_token"].as_str().unwrap());
    c["auth_time"]
        .as_i64()
        .unwrap_or_else(|| panic!("no auth_time in {c}"))
}

#[tokio::test]
async fn every_id_token_carries_auth_time_and_every_token_its_type() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let signed_in_at = mock_idp::clock::unix(lanyard_now(&idp));

    // Authorization code.
    let code = login_tokens(&idp, "acme", "alice").await;
    assert_typed(&code, "code");
    assert_eq!(auth_time(&code), signed_in_at);

    // Refresh: the original sign-in time, not the refresh's.
    clock.advance(time::Duration::minutes(5));
    let res = refresh(&idp, "acme", code["refresh_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 200);
    let refreshed: Value = res.json().await.unwrap();
    assert_typed(&refreshed, "refresh");
    assert_eq!(auth_time(&refreshed), signed_in_at);

    // Device grant: when the person approved on the device page.
    let d: Value = idp
        .http
        .post(format!("{}/device_authorization", idp.issuer("acme")))
        .form(&[("client_id", CLI), ("scope", "openid offline_access")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let approved_at = mock_idp::clock::unix(lanyard_now(&idp));
    let res = idp
        .http
        .post(format!("{}/device", idp.issuer("acme")))
        .form(&[
            ("user_code", d["user_code"].as_str().unwrap()),
            ("username", "bob"),
            ("password", PASSWORD),
            ("action", "approve"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    clock.advance(time::Duration::seconds(30));
    let device: Value = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", d["device_code"].as_str().unwrap()),
            ("client_id", CLI),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_typed(&device, "device");
    assert_eq!(auth_time(&device), approved_at);

    // Guest (prompt=create): when the guest was created.
    let created_at = mock_idp::clock::unix(lanyard_now(&idp));
    let p = pkce();
    let res = get_authorize(
        &browser(),
        &idp,
        "acme",
        &with(auth_params(&p), &[("prompt", Some("create"))]),
    )
    .await;
    let code = location(&res).1["code"].clone();
    let guest: Value = exchange(&idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_typed(&guest, "guest");
    assert_eq!(auth_time(&guest), created_at);
}

fn lanyard_now(idp: &TestIdp) -> time::OffsetDateTime {
    use mock_idp::clock::Clock;
    idp.clock.as_ref().unwrap().now()
}

#[tokio::test]
async fn max_age_zero_forces_a_fresh_login_even_with_a_live_idp_session() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let (_, _, browser) = login_code(&idp, "acme", "alice").await;
    // The same instant as the sign-in: the session is live and zero seconds old.
    let res = get_authorize(
        &browser,
        &idp,
        "acme",
        &with(auth_params(&pkce()), &[("max_age", Some("0"))]),
    )
    .await;
    assert_eq!(res.status(), 200, "the login form, not a code");
    assert!(res.text().await.unwrap().contains(r#"type="password""#));
    // And prompt=none cannot satisfy it.
    let res = get_authorize(
        &browser,
        &idp,
        "acme",
        &with(
            auth_params(&pkce()),
            &[("max_age", Some("0")), ("prompt", Some("none"))],
        ),
    )
    .await;
    assert_eq!(location(&res).1["error"], "login_required");
}

#[tokio::test]
async fn an_idp_session_older_than_max_age_needs_a_fresh_login_and_auth_time_says_when() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let (_, _, browser) = login_code(&idp, "acme", "alice").await;
    let first = mock_idp::clock::unix(lanyard_now(&idp));
    clock.advance(time::Duration::seconds(120));

    // Young enough: a code at once, carrying the first sign-in's time.
    let p = pkce();
    let res = get_authorize(
        &browser,
        &idp,
        "acme",
        &with(auth_params(&p), &[("max_age", Some("600"))]),
    )
    .await;
    assert_eq!(res.status(), 303);
    let code = location(&res).1["code"].clone();
    let t: Value = exchange(&idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(auth_time(&t), first);

    // Too old: the form again, and the new sign-in's time in the ID token.
    let p = pkce();
    let res = get_authorize(
        &browser,
        &idp,
        "acme",
        &with(auth_params(&p), &[("max_age", Some("60"))]),
    )
    .await;
    assert_eq!(res.status(), 200);
    let id = auth_request_id(&res.text().await.unwrap());
    let res = post_login(&browser, &idp, "acme", &id, "alice", PASSWORD).await;
    let code = location(&res).1["code"].clone();
    let t: Value = exchange(&idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(auth_time(&t), first + 120);
}

#[tokio::test]
async fn a_max_age_that_is_not_a_number_of_seconds_is_an_invalid_request() {
    let idp = TestIdp::spawn().await;
    let (_, _, browser) = login_code(&idp, "acme", "alice").await;
    for bad in ["soon", "-1", "1.5", "1e3", "+5"] {
        let res = get_authorize(
            &browser,
            &idp,
            "acme",
            &with(auth_params(&pkce()), &[("max_age", Some(bad))]),
        )
        .await;
        assert_eq!(res.status(), 303, "max_age={bad:?}");
        let (_, q) = location(&res);
        assert_eq!(q["error"], "invalid_request", "max_age={bad:?}: {q:?}");
        assert_eq!(q["state"], "state-123");
        assert!(!q.contains_key("code"));
    }
}
