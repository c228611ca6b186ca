//! The device page (RFC 8628 §3.3) as a person meets it: approving or denying a device needs a
//! signed-in person (the browser's IdP session, or the sign-in form on the page), and wrong
//! guesses are bounded per client address and per device grant (§5.1), a refusal changing
//! nothing.

use serde_json::Value;
use test_harness::TestIdp;

use crate::helpers::*;

async fn start(idp: &TestIdp) -> Value {
    let res = idp
        .http
        .post(format!("{}/device_authorization", idp.issuer("acme")))
        .form(&[("client_id", CLI), ("scope", "openid offline_access")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn poll_error(idp: &TestIdp, d: &Value) -> String {
    let res = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", d["device_code"].as_str().unwrap()),
            ("client_id", CLI),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    body["error"].as_str().unwrap_or("none").to_owned()
}

async fn poll_tokens(idp: &TestIdp, d: &Value) -> Value {
    let res = idp
        .http
        .post(format!("{}/token", idp.issuer("acme")))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", d["device_code"].as_str().unwrap()),
            ("client_id", CLI),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn post_device(
    client: &reqwest::Client,
    idp: &TestIdp,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(format!("{}/device", idp.issuer("acme")))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// The value of the hidden input `name` of a page, if any.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

#[tokio::test]
async fn nobody_denies_a_device_without_signing_in() {
    let idp = TestIdp::spawn().await;
    let d = start(&idp).await;
    let code = d["user_code"].as_str().unwrap();
    for (username, password) in [("", ""), ("alice", "wrong password")] {
        let res = post_device(
            &idp.http,
            &idp,
            &[
                ("user_code", code),
                ("username", username),
                ("password", password),
                ("action", "deny"),
            ],
        )
        .await;
        assert_eq!(res.status(), 401, "deny as '{username}'");
        assert!(res.text().await.unwrap().contains(r#"id="password""#));
    }
    assert_eq!(poll_error(&idp, &d).await, "authorization_pending");
    let denied = idp.audit("acme").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "device_denied")
        .count();
    assert_eq!(denied, 0);
}

#[tokio::test]
async fn a_signed_in_browser_approves_a_device_with_its_session_and_this_pages_csrf_token() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let (_, _, browser) = login_code(&idp, "acme", "bob").await;
    let d = start(&idp).await;
    let page = browser
        .get(d["verification_uri_complete"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("bob"), "the page names who approves: {page}");
    assert!(!page.contains(r#"id="password""#), "no password needed");
    let csrf = hidden(&page, "csrf_token").expect("a CSRF token");
    let code = d["user_code"].as_str().unwrap();

    // A cross-site post carries the cookie (at most) but not the token: nothing changes.
    let res = post_device(
        &browser,
        &idp,
        &[("user_code", code), ("action", "approve")],
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = post_device(
        &browser,
        &idp,
        &[
            ("user_code", code),
            ("action", "deny"),
            ("csrf_token", "forged"),
        ],
    )
    .await;
    assert_eq!(res.status(), 403);
    assert_eq!(poll_error(&idp, &d).await, "authorization_pending");

    let res = post_device(
        &browser,
        &idp,
        &[
            ("user_code", code),
            ("action", "approve"),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Device connected"));
    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(11));
    let tokens = poll_tokens(&idp, &d).await;
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["preferred_username"],
        "bob"
    );
}

#[tokio::test]
async fn a_signed_in_browser_denies_a_device() {
    let idp = TestIdp::spawn().await;
    let (_, _, browser) = login_code(&idp, "acme", "bob").await;
    let d = start(&idp).await;
    let page = browser
        .get(format!("{}/device", idp.issuer("acme")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&page, "csrf_token").expect("a CSRF token");
    let res = post_device(
        &browser,
        &idp,
        &[
            ("user_code", d["user_code"].as_str().unwrap()),
            ("action", "deny"),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Device denied"));
    assert_eq!(poll_error(&idp, &d).await, "access_denied");
}

#[tokio::test]
async fn wrong_user_codes_from_one_address_are_limited_and_a_refusal_changes_nothing() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let d = start(&idp).await;
    let code = d["user_code"].as_str().unwrap();
    for guess in [
        "BBBB-BBBB",
        "CCCC-CCCC",
        "DDDD-DDDD",
        "FFFF-FFFF",
        "GGGG-GGGG",
    ] {
        let res = post_device(
            &idp.http,
            &idp,
            &[
                ("user_code", guess),
                ("username", "alice"),
                ("password", PASSWORD),
                ("action", "approve"),
            ],
        )
        .await;
        assert_eq!(res.status(), 400, "{guess}");
    }
    // The sixth try in the minute is refused before the code is even looked at: even the right
    // code, with the right password, approves nothing.
    let right = [
        ("user_code", code),
        ("username", "alice"),
        ("password", PASSWORD),
        ("action", "approve"),
    ];
    let res = post_device(&idp.http, &idp, &right).await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("retry-after").is_some());
    assert_eq!(poll_error(&idp, &d).await, "authorization_pending");

    clock.advance(time::Duration::seconds(61));
    let res = post_device(&idp.http, &idp, &right).await;
    assert_eq!(res.status(), 200);
    let tokens = poll_tokens(&idp, &d).await;
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["preferred_username"],
        "alice"
    );
}

#[tokio::test]
async fn failed_sign_ins_against_one_device_grant_are_limited_and_a_refusal_changes_nothing() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let d = start(&idp).await;
    let code = d["user_code"].as_str().unwrap();
    for _ in 0..5 {
        let res = post_device(
            &idp.http,
            &idp,
            &[
                ("user_code", code),
                ("username", "alice"),
                ("password", "not the password"),
                ("action", "approve"),
            ],
        )
        .await;
        assert_eq!(res.status(), 401);
    }
    let right = [
        ("user_code", code),
        ("username", "alice"),
        ("password", PASSWORD),
        ("action", "approve"),
    ];
    let res = post_device(&idp.http, &idp, &right).await;
    assert_eq!(res.status(), 429);
    assert_eq!(poll_error(&idp, &d).await, "authorization_pending");

    clock.advance(time::Duration::seconds(61));
    assert_eq!(post_device(&idp.http, &idp, &right).await.status(), 200);
}

#[tokio::test]
async fn a_device_asking_for_max_age_gets_a_fresh_sign_in_not_an_older_browser_session() {
    use mock_idp::clock::Clock;
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let (_, _, browser) = login_code(&idp, "acme", "bob").await;
    clock.advance(time::Duration::minutes(10));

    let start_with = |max_age: &'static str| {
        let idp = &idp;
        async move {
            idp.http
                .post(format!("{}/device_authorization", idp.issuer("acme")))
                .form(&[
                    ("client_id", CLI),
                    ("scope", "openid"),
                    ("max_age", max_age),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    for bad in ["soon", "-1", "1.5"] {
        assert_oauth_error(start_with(bad).await, 400, "invalid_request").await;
    }
    let d: Value = start_with("60").await.json().await.unwrap();
    let code = d["user_code"].as_str().unwrap();

    // The session is ten minutes old: the page asks for the password instead of offering it.
    let page = browser
        .get(d["verification_uri_complete"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"id="password""#), "{page}");
    // Posting with the session anyway (a CSRF token from a page without the code) is refused.
    let page = browser
        .get(format!("{}/device", idp.issuer("acme")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&page, "csrf_token").expect("a CSRF token");
    let res = post_device(
        &browser,
        &idp,
        &[
            ("user_code", code),
            ("action", "approve"),
            ("csrf_token", &csrf),
        ],
    )
    .await;
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains(r#"id="password""#));
    assert_eq!(poll_error(&idp, &d).await, "authorization_pending");

    // Signing in on the page approves, and the ID token says the sign-in was just now.
    let signed_in_at = clock.now().unix_timestamp();
    let res = post_device(
        &browser,
        &idp,
        &[
            ("user_code", code),
            ("username", "bob"),
            ("password", PASSWORD),
            ("action", "approve"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    clock.advance(time::Duration::seconds(11));
    let tokens = poll_tokens(&idp, &d).await;
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["auth_time"],
        signed_in_at
    );

    // Without max_age, the same browser session still approves on its own.
    let d = start(&idp).await;
    let page = browser
        .get(d["verification_uri_complete"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains(r#"id="password""#), "{page}");
}
