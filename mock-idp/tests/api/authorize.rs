use test_harness::TestIdp;

use crate::helpers::*;

#[tokio::test]
async fn the_login_page_lists_only_this_tenants_users_with_a_password_form() {
    let idp = TestIdp::spawn().await;
    let res = get_authorize(&browser(), &idp, "acme", &auth_params(&pkce())).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="user-alice""#) && html.contains(r#"id="user-bob""#));
    assert!(
        !html.contains("carol"),
        "globex's user leaked into acme's page"
    );
    assert!(html.contains(r#"type="password""#));
    assert!(html.contains(r#"id="continue-as-guest""#));
    assert!(!html.contains("<script"), "the page needs no JavaScript");
}

#[tokio::test]
async fn redirect_uris_match_exactly_except_the_loopback_port() {
    let idp = TestIdp::spawn().await;
    let p = pkce();
    for good in [
        "http://127.0.0.1:1/callback",
        "http://127.0.0.1:65535/callback",
        "http://127.0.0.1/callback",
    ] {
        let res = get_authorize(
            &browser(),
            &idp,
            "acme",
            &with(auth_params(&p), &[("redirect_uri", Some(good))]),
        )
        .await;
        assert_eq!(res.status(), 200, "{good} refused");
    }
    for bad in [
        "http://127.0.0.1:5000/other",
        "http://127.0.0.1:5000/callback?x=1",
        "http://127.0.0.1:5000/callback#f",
        "http://127.0.0.1.evil.example/callback",
        "http://127.0.0.1@evil.example/callback",
        "http://127.0.0.1:5000/%63allback",
        "http://127.0.0.1:5000/CALLBACK",
        "https://evil.example/callback",
        "http://localhost:5000/callback",
    ] {
        let res = get_authorize(
            &browser(),
            &idp,
            "acme",
            &with(auth_params(&p), &[("redirect_uri", Some(bad))]),
        )
        .await;
        assert_eq!(res.status(), 400, "{bad} accepted");
        assert!(
            res.headers().get("location").is_none(),
            "{bad} was redirected to"
        );
        let html = res.text().await.unwrap();
        assert!(html.contains("is not registered"), "{bad}: {html}");
    }
}

#[tokio::test]
async fn unknown_clients_and_ambiguous_redirects_get_an_error_page_not_a_redirect() {
    let idp = TestIdp::spawn().await;
    let p = pkce();
    let res = get_authorize(
        &browser(),
        &idp,
        "acme",
        &with(auth_params(&p), &[("client_id", Some("nobody"))]),
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    assert!(res.text().await.unwrap().contains("unknown client_id"));

    let res = idp
        .admin(
            reqwest::Method::POST,
            "tenants/acme/clients",
            Some(serde_json::json!({
                "client_id": "two-uris",
                "redirect_uris": ["http://127.0.0.1/a", "http://127.0.0.1/b"],
                "grant_types": ["authorization_code"],
            })),
        )
        .await;
    assert_eq!(res.status(), 201);
    let params = with(
        auth_params(&p),
        &[("client_id", Some("two-uris")), ("redirect_uri", None)],
    );
    let res = get_authorize(&browser(), &idp, "acme", &params).await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("redirect_uri is required"));

    // With a single registered URI, omitting it is fine (RFC 6749 §3.1.2.3).
    let res = get_authorize(
        &browser(),
        &idp,
        "acme",
        &with(auth_params(&p), &[("redirect_uri", None)]),
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_public_client_without_s256_pkce_is_redirected_with_invalid_request_and_no_code() {
    let idp = TestIdp::spawn().await;
    let p = pkce();
    let cases: Vec<Vec<(&str, Option<&str>)>> = vec![
        vec![("code_challenge", None), ("code_challenge_method", None)],
        vec![("code_challenge_method", Some("plain"))],
        vec![("code_challenge_method", None)],
        vec![("code_challenge_method", Some("S512"))],
        vec![("code_challenge", Some("too-short"))],
    ];
    for change in cases {
        let res = get_authorize(&browser(), &idp, "acme", &with(auth_params(&p), &change)).await;
        assert_eq!(res.status(), 303, "{change:?}");
        let (base, q) = location(&res);
        assert_eq!(base, REDIRECT);
        assert_eq!(q["error"], "invalid_request", "{change:?}");
        assert_eq!(q["state"], "state-123");
        assert!(!q.contains_key("code"));
        assert!(!q["error_description"].is_empty());
    }
}

#[tokio::test]
async fn other_front_channel_errors_redirect_with_their_own_codes() {
    let idp = TestIdp::spawn().await;
    let p = pkce();
    let res = get_authorize(
        &browser(),
        &idp,
        "acme",
        &with(auth_params(&p), &[("response_type", Some("token"))]),
    )
    .await;
    assert_eq!(location(&res).1["error"], "unsupported_response_type");
    let res = get_authorize(
        &browser(),
        &idp,
        "acme",
        &with(auth_params(&p), &[("scope", Some("openid admin"))]),
    )
    .await;
    assert_eq!(location(&res).1["error"], "invalid_scope");
    let mut dup = auth_params(&p);
    dup.push(("state".into(), "second".into()));
    let res = get_authorize(&browser(), &idp, "acme", &dup).await;
    assert_eq!(res.status(), 400, "a repeated parameter is an error page");
    assert!(res.text().await.unwrap().contains("repeated"));
}

#[tokio::test]
async fn a_wrong_password_shows_the_form_again_and_issues_nothing() {
    let idp = TestIdp::spawn().await;
    let client = browser();
    let page = get_authorize(&client, &idp, "acme", &auth_params(&pkce())).await;
    let id = auth_request_id(&page.text().await.unwrap());
    for (user, password) in [
        ("alice", "wrong"),
        ("nobody", PASSWORD),
        ("carol", PASSWORD),
    ] {
        let res = post_login(&client, &idp, "acme", &id, user, password).await;
        assert_eq!(res.status(), 401, "{user}");
        assert!(res.headers().get("location").is_none());
        assert!(res
            .text()
            .await
            .unwrap()
            .contains("Wrong username or password"));
    }
    // The same request still completes with the right password.
    let res = post_login(&client, &idp, "acme", &id, "alice", PASSWORD).await;
    assert_eq!(res.status(), 303);
    // ...and only once: the pending request is consumed.
    let res = post_login(&client, &idp, "acme", &id, "alice", PASSWORD).await;
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn login_hint_preselects_the_user() {
    let idp = TestIdp::spawn().await;
    let params = with(auth_params(&pkce()), &[("login_hint", Some("bob"))]);
    let html = get_authorize(&browser(), &idp, "acme", &params)
        .await
        .text()
        .await
        .unwrap();
    assert!(input_tag(&html, "user-bob").contains("checked"), "{html}");
    assert!(
        !input_tag(&html, "user-alice").contains("checked"),
        "{html}"
    );
    let html = get_authorize(&browser(), &idp, "acme", &auth_params(&pkce()))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        input_tag(&html, "user-alice").contains("checked"),
        "without a hint the first user is chosen"
    );
}

#[tokio::test]
async fn an_idp_session_skips_the_form_and_prompt_login_forces_it() {
    let idp = TestIdp::spawn().await;
    let (_, _, client) = login_code(&idp, "acme", "bob").await;
    let p = pkce();
    let res = get_authorize(&client, &idp, "acme", &auth_params(&p)).await;
    assert_eq!(res.status(), 303, "second authorize skips the form");
    let code = location(&res).1["code"].clone();
    let tokens: serde_json::Value = exchange(&idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        claims(tokens["id_token"].as_str().unwrap())["preferred_username"],
        "bob"
    );

    let res = get_authorize(
        &client,
        &idp,
        "acme",
        &with(auth_params(&p), &[("prompt", Some("login"))]),
    )
    .await;
    assert_eq!(res.status(), 200, "prompt=login shows the form");
    let res = get_authorize(
        &client,
        &idp,
        "acme",
        &with(auth_params(&p), &[("prompt", Some("none"))]),
    )
    .await;
    assert_eq!(res.status(), 303);
    assert!(
        location(&res).1.contains_key("code"),
        "prompt=none with a session issues a code"
    );
}

#[tokio::test]
async fn prompt_consent_is_advertised_and_taken_as_given_keeping_offline_access() {
    let idp = TestIdp::spawn().await;
    let discovery: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        idp.issuer("acme")
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        discovery["prompt_values_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "consent"),
        "{discovery}"
    );

    // Without an IdP session: the login form, as without the prompt; no consent page.
    let consent = |p: &Pkce| with(auth_params(p), &[("prompt", Some("consent"))]);
    let res = get_authorize(&browser(), &idp, "acme", &consent(&pkce())).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains(r#"type="password""#));

    // With one: a code at once, and offline_access was kept (a refresh token comes with it).
    let (_, _, client) = login_code(&idp, "acme", "bob").await;
    let p = pkce();
    let res = get_authorize(&client, &idp, "acme", &consent(&p)).await;
    assert_eq!(
        res.status(),
        303,
        "no consent page for the tenant's own client"
    );
    let code = location(&res).1["code"].clone();
    let tokens: serde_json::Value = exchange(&idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
}

#[tokio::test]
async fn prompt_none_without_a_session_answers_login_required() {
    let idp = TestIdp::spawn().await;
    let res = get_authorize(
        &browser(),
        &idp,
        "acme",
        &with(auth_params(&pkce()), &[("prompt", Some("none"))]),
    )
    .await;
    assert_eq!(res.status(), 303);
    let q = location(&res).1;
    assert_eq!(q["error"], "login_required");
    assert_eq!(q["state"], "state-123");
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn a_session_cookie_of_one_tenant_is_refused_by_another() {
    let idp = TestIdp::spawn().await;
    let (_, _, acme_browser) = login_code(&idp, "acme", "alice").await;
    // The cookie is scoped to /acme/, so the browser does not send it to globex...
    let res = get_authorize(
        &acme_browser,
        &idp,
        "globex",
        &with(auth_params(&pkce()), &[("prompt", Some("none"))]),
    )
    .await;
    assert_eq!(location(&res).1["error"], "login_required");
    // ...and replaying its value by hand does not work either.
    let cookie = {
        let client = browser();
        let page = get_authorize(&client, &idp, "acme", &auth_params(&pkce())).await;
        let id = auth_request_id(&page.text().await.unwrap());
        let res = post_login(&client, &idp, "acme", &id, "alice", PASSWORD).await;
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    };
    assert!(cookie.starts_with("lanyard_idp_session="));
    let res = idp
        .http
        .get(format!("{}/authorize", idp.issuer("globex")))
        .query(&with(auth_params(&pkce()), &[("prompt", Some("none"))]))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res).1["error"], "login_required");
}

#[tokio::test]
async fn the_session_cookie_is_http_only_lax_and_scoped_to_the_tenant() {
    let idp = TestIdp::spawn().await;
    let client = browser();
    let page = get_authorize(&client, &idp, "acme", &auth_params(&pkce())).await;
    let id = auth_request_id(&page.text().await.unwrap());
    let res = post_login(&client, &idp, "acme", &id, "alice", PASSWORD).await;
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/acme/"), "{cookie}");
    let (_, q) = location(&res);
    assert_eq!(q["iss"], idp.issuer("acme"), "RFC 9207 iss parameter");
}
