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
    // Even with an IdP session for bob, `prompt=create` makes a new guest (once the person
    // confirms that it replaces bob's session).
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
    for round in 0..2 {
        let p = pkce();
        let mut res = get_authorize(
            &client,
            &idp,
            "acme",
            &with(auth_params(&p), &[("prompt", Some("create"))]),
        )
        .await;
        if round == 0 {
            // Over bob's session the person confirms first (login_csrf.rs); no login form.
            assert_eq!(res.status(), 200);
            let page = res.text().await.unwrap();
            assert!(!page.contains(r#"id="password""#), "no login page");
            let csrf = page
                .split(r#"name="csrf_token" value=""#)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap()
                .to_owned();
            res = client
                .post(format!("{}/guest", idp.issuer("acme")))
                .form(&[
                    ("auth_request", auth_request_id(&page).as_str()),
                    ("csrf_token", csrf.as_str()),
                ])
                .send()
                .await
                .unwrap();
        }
        // Over a guest's session (round 1), a new guest at once.
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

/// `prompt=create` from a fresh browser: the redirect's query (a code, or an error).
async fn prompt_create(idp: &TestIdp) -> std::collections::HashMap<String, String> {
    let res = get_authorize(
        &browser(),
        idp,
        "acme",
        &with(auth_params(&pkce()), &[("prompt", Some("create"))]),
    )
    .await;
    assert_eq!(res.status(), 303);
    location(&res).1
}

/// How many guests the tenant has created, by its audit log.
async fn guests_created(idp: &TestIdp) -> usize {
    idp.audit("acme").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "guest_created")
        .count()
}

#[tokio::test]
async fn guests_from_one_address_are_rate_limited_and_a_refusal_creates_nothing() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let per_minute = mock_idp::config::GuestLimits::default().per_address_per_minute;
    for _ in 0..per_minute {
        assert!(prompt_create(&idp).await.contains_key("code"));
    }
    // prompt=create has a client waiting on its redirect: it hears why.
    let q = prompt_create(&idp).await;
    assert_eq!(q["error"], "temporarily_unavailable", "{q:?}");
    assert_eq!(q["state"], "state-123");
    assert!(!q.contains_key("code"));

    // The guest button has a person at the page: a 429 page, and the sign-in form still works.
    let client = browser();
    let p = pkce();
    let page = get_authorize(&client, &idp, "acme", &auth_params(&p)).await;
    let id = auth_request_id(&page.text().await.unwrap());
    let res = client
        .post(format!("{}/guest", idp.issuer("acme")))
        .form(&[("auth_request", id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().get("location").is_none());
    assert!(res.headers().get("retry-after").is_some());
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(res.text().await.unwrap().contains("guest"));
    let res = post_login(&client, &idp, "acme", &id, "alice", PASSWORD).await;
    assert_eq!(res.status(), 303);
    assert!(location(&res).1.contains_key("code"));

    assert_eq!(guests_created(&idp).await, per_minute as usize);
    let refused = idp.audit("acme").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "guest_refused")
        .count();
    assert_eq!(refused, 2);

    // A minute later the address may create guests again.
    clock.advance(time::Duration::seconds(61));
    assert!(prompt_create(&idp).await.contains_key("code"));
}

#[tokio::test]
async fn a_tenant_holds_at_most_its_configured_number_of_guests() {
    let mut config = mock_idp::IdpConfig::defaults();
    config.tenants[0].guests.max_users = 2;
    let idp = TestIdp::spawn_with_config(config).await;
    let first = guest_tokens(&idp).await;
    assert!(prompt_create(&idp).await.contains_key("code"));
    let q = prompt_create(&idp).await;
    assert_eq!(q["error"], "temporarily_unavailable", "{q:?}");
    assert_eq!(guests_created(&idp).await, 2);

    // An upgraded guest is no longer a guest: its place is free again.
    let res = upgrade(
        &idp,
        first["access_token"].as_str().unwrap(),
        json!({"username": "dana", "password": "correct horse"}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(prompt_create(&idp).await.contains_key("code"));
    // Other tenants have their own count.
    let globex = test_harness::idp::guest_login(&idp.issuer("globex"), CLI).await;
    assert!(globex["id_token"].is_string());
}

#[test]
fn guest_limits_are_read_from_the_tenant_config() {
    let c = mock_idp::IdpConfig::from_toml(
        "[[tenants]]\nslug = \"initech\"\n[tenants.guests]\nmax_users = 5\nper_address_per_minute = 2\n",
    )
    .unwrap();
    assert_eq!(c.tenants[0].guests.max_users, 5);
    assert_eq!(c.tenants[0].guests.per_address_per_minute, 2);
    let defaults = mock_idp::config::GuestLimits::default();
    assert_eq!(
        (defaults.max_users, defaults.per_address_per_minute),
        (10_000, 10)
    );
    let err = mock_idp::IdpConfig::from_toml(
        "[[tenants]]\nslug = \"initech\"\n[tenants.guests]\nbogus = 1\n",
    )
    .unwrap_err();
    assert!(err.contains("bogus"), "{err}");
}
