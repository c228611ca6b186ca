//! RP-initiated logout without a trustworthy hint (issue #12, finding 10): only an ID token of
//! this tenant, for one of its clients, ends the browser's IdP session at once; anything else
//! shows a confirmation page, and only its form, posted with the browser's CSRF token, ends it.

use serde_json::{json, Value};
use test_harness::TestIdp;

use crate::helpers::*;

/// A browser signed in to acme as `user` through the CLI client, and the tokens it got.
async fn signed_in(idp: &TestIdp, user: &str) -> (reqwest::Client, Value) {
    let (code, p, browser) = login_code(idp, "acme", user).await;
    let res = exchange(idp, "acme", &code, &p.verifier).await;
    assert_eq!(res.status(), 200);
    (browser, res.json().await.unwrap())
}

/// Whether the browser's IdP session still lets `prompt=none` through and the login's refresh
/// token is still live: both go when the session ends.
async fn still_signed_in(idp: &TestIdp, browser: &reqwest::Client, tokens: &Value) -> bool {
    let res = get_authorize(
        browser,
        idp,
        "acme",
        &with(auth_params(&pkce()), &[("prompt", Some("none"))]),
    )
    .await;
    let session = location(&res).1.contains_key("code");
    let rt = introspect(idp, "acme", tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        session,
        rt["active"] == true,
        "the IdP session and its refresh family end together"
    );
    session
}

fn end_session_url(idp: &TestIdp) -> String {
    format!("{}/end_session", idp.issuer("acme"))
}

async fn get_end_session(
    idp: &TestIdp,
    browser: &reqwest::Client,
    query: &[(&str, &str)],
) -> reqwest::Response {
    browser
        .get(end_session_url(idp))
        .query(query)
        .send()
        .await
        .unwrap()
}

/// The `value` of the hidden input `name` in a page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// Asserts a confirmation page that ends nothing by itself, and returns its HTML.
async fn assert_confirmation_page(res: reqwest::Response, status: u16) -> String {
    assert_eq!(res.status(), status);
    assert!(res.headers().get("location").is_none(), "no redirect");
    assert!(
        res.headers().get("set-cookie").is_none(),
        "the session cookie is left alone"
    );
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    assert!(html.contains(r#"id="end-session-form""#), "{html}");
    assert!(html.contains(r#"method="post""#));
    assert!(hidden(&html, "csrf_token").is_some());
    html
}

/// Signs a token with acme's active ES256 key, as only the tenant itself could.
fn signed_by_acme(idp: &TestIdp, claims: &Value, typ: Option<&str>) -> String {
    let tenant = idp.state.tenant("acme").unwrap();
    let key = tenant
        .keys
        .read()
        .active(mock_idp::config::SigningAlg::ES256)
        .unwrap();
    mock_idp::jwt::sign(claims, &key, typ).unwrap()
}

#[tokio::test]
async fn end_session_with_an_access_token_as_hint_ends_nothing_and_asks_the_user() {
    let idp = TestIdp::spawn().await;
    let (browser, tokens) = signed_in(&idp, "alice").await;
    let at = tokens["access_token"].as_str().unwrap();
    let res = get_end_session(&idp, &browser, &[("id_token_hint", at)]).await;
    assert_confirmation_page(res, 400).await;
    assert!(still_signed_in(&idp, &browser, &tokens).await);
    let ended = idp.audit("acme").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "idp_session_ended")
        .count();
    assert_eq!(ended, 0);
}

#[tokio::test]
async fn end_session_without_a_hint_ends_nothing_until_the_user_confirms() {
    let idp = TestIdp::spawn().await;
    let (browser, tokens) = signed_in(&idp, "alice").await;
    let res = get_end_session(
        &idp,
        &browser,
        &[
            ("client_id", CLI),
            (
                "post_logout_redirect_uri",
                "http://127.0.0.1:4000/logged-out",
            ),
            ("state", "s-1"),
        ],
    )
    .await;
    let html = assert_confirmation_page(res, 200).await;
    assert!(still_signed_in(&idp, &browser, &tokens).await);

    // The person confirms: the form posts back with its CSRF token.
    let form: Vec<(String, String)> = [
        "csrf_token",
        "client_id",
        "post_logout_redirect_uri",
        "state",
    ]
    .iter()
    .filter_map(|n| hidden(&html, n).map(|v| ((*n).to_owned(), v)))
    .chain([("confirm".to_owned(), "yes".to_owned())])
    .collect();
    let res = browser
        .post(end_session_url(&idp))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let (base, q) = location(&res);
    assert_eq!(base, "http://127.0.0.1:4000/logged-out");
    assert_eq!(q["state"], "s-1");
    assert!(res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert!(!still_signed_in(&idp, &browser, &tokens).await);
}

#[tokio::test]
async fn a_cross_site_end_session_post_without_the_browsers_csrf_token_ends_nothing() {
    let idp = TestIdp::spawn().await;
    let (victim, tokens) = signed_in(&idp, "alice").await;
    // The attacker's own session gives them a confirmation page with a CSRF token of their own.
    let (attacker, _) = signed_in(&idp, "bob").await;
    let res = get_end_session(&idp, &attacker, &[]).await;
    let attackers_token = hidden(&assert_confirmation_page(res, 200).await, "csrf_token").unwrap();

    for form in [
        vec![("confirm", "yes")],
        vec![("confirm", "yes"), ("csrf_token", "")],
        vec![("confirm", "yes"), ("csrf_token", "forged")],
        vec![("confirm", "yes"), ("csrf_token", attackers_token.as_str())],
        vec![("csrf_token", attackers_token.as_str())],
    ] {
        let res = victim
            .post(end_session_url(&idp))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(res.headers().get("location").is_none(), "{form:?}");
        assert!(res.headers().get("set-cookie").is_none(), "{form:?}");
        assert!(
            still_signed_in(&idp, &victim, &tokens).await,
            "{form:?} ended the session"
        );
    }
}

#[tokio::test]
async fn end_session_takes_only_an_id_token_of_this_tenant_for_one_of_its_clients_as_hint() {
    let idp = TestIdp::spawn().await;
    let (browser, tokens) = signed_in(&idp, "alice").await;
    let id_token = tokens["id_token"].as_str().unwrap();
    let id = claims(id_token);
    let globex = idp.login("globex", "alice", CLI).await;

    let as_logout_token = {
        let mut c = id.clone();
        c["events"] = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
        c
    };
    let for_someone_else = {
        let mut c = id.clone();
        c["aud"] = json!("someone-else");
        c
    };
    let bad_hints = [
        (
            "an access token",
            tokens["access_token"].as_str().unwrap().to_owned(),
        ),
        (
            "a logout-typed token",
            signed_by_acme(&idp, &id, Some("logout+jwt")),
        ),
        (
            "an at+jwt-typed ID token",
            signed_by_acme(&idp, &id, Some("at+jwt")),
        ),
        (
            "a token with an events claim",
            signed_by_acme(&idp, &as_logout_token, None),
        ),
        (
            "an ID token for no client of acme",
            signed_by_acme(&idp, &for_someone_else, None),
        ),
        (
            "globex's ID token",
            globex["id_token"].as_str().unwrap().to_owned(),
        ),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (what, hint) in &bad_hints {
        let res = get_end_session(&idp, &browser, &[("id_token_hint", hint.as_str())]).await;
        assert_confirmation_page(res, 400).await;
        assert!(
            still_signed_in(&idp, &browser, &tokens).await,
            "{what} ended the session"
        );
    }
    // A client_id other than the hint's audience makes the hint suspect too.
    let res = get_end_session(
        &idp,
        &browser,
        &[("id_token_hint", id_token), ("client_id", REGISTRY)],
    )
    .await;
    assert_confirmation_page(res, 400).await;
    assert!(still_signed_in(&idp, &browser, &tokens).await);

    // An ID token typed `JWT` is an ID token.
    let typed = signed_by_acme(&idp, &id, Some("JWT"));
    let res = get_end_session(&idp, &browser, &[("id_token_hint", typed.as_str())]).await;
    assert_eq!(res.status(), 200);
    assert!(!still_signed_in(&idp, &browser, &tokens).await);
}

#[tokio::test]
async fn an_expired_id_token_hint_still_ends_the_session_and_redirects() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let (browser, tokens) = signed_in(&idp, "alice").await;
    clock.advance(time::Duration::minutes(30));
    let res = get_end_session(
        &idp,
        &browser,
        &[
            ("id_token_hint", tokens["id_token"].as_str().unwrap()),
            (
                "post_logout_redirect_uri",
                "http://127.0.0.1:4000/logged-out",
            ),
            ("state", "s-2"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let (base, q) = location(&res);
    assert_eq!(base, "http://127.0.0.1:4000/logged-out");
    assert_eq!(q["state"], "s-2");
    assert!(!still_signed_in(&idp, &browser, &tokens).await);
}

#[tokio::test]
async fn end_session_with_another_users_id_token_asks_before_ending_the_browsers_session() {
    let idp = TestIdp::spawn().await;
    let (victim, tokens) = signed_in(&idp, "alice").await;
    let attackers = idp.login("acme", "bob", CLI).await;
    let res = get_end_session(
        &idp,
        &victim,
        &[("id_token_hint", attackers["id_token"].as_str().unwrap())],
    )
    .await;
    assert_confirmation_page(res, 200).await;
    assert!(still_signed_in(&idp, &victim, &tokens).await);
}

#[tokio::test]
async fn end_session_without_an_idp_session_has_nothing_to_confirm() {
    let idp = TestIdp::spawn().await;
    let res = get_end_session(&idp, &browser(), &[]).await;
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(!html.contains("end-session-form"));
    assert!(html.contains("signed out"), "{html}");
}

/// The `idp_session_ended` events the audit log holds.
async fn sessions_ended(idp: &TestIdp) -> usize {
    idp.audit("acme").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "idp_session_ended")
        .count()
}

#[tokio::test]
async fn an_id_token_hint_from_a_browser_without_the_idp_session_signs_nothing_out() {
    // Whoever holds an old ID token (from a log, a backup) is not the signed-in person: without
    // the browser's session cookie the hint ends no session, revokes no refresh token and sends
    // no back-channel logout, fresh or expired.
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let (browser, tokens) = signed_in(&idp, "alice").await;
    let hint = tokens["id_token"].as_str().unwrap();

    let res = get_end_session(&idp, &crate::helpers::browser(), &[("id_token_hint", hint)]).await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("set-cookie").is_none());
    let html = res.text().await.unwrap();
    assert!(!html.contains("end-session-form"), "{html}");
    assert!(html.contains("nothing to sign out"), "{html}");
    assert!(still_signed_in(&idp, &browser, &tokens).await);

    // An expired hint may still send the browser back where its client registered, with state.
    clock.advance(time::Duration::minutes(30));
    let res = get_end_session(
        &idp,
        &crate::helpers::browser(),
        &[
            ("id_token_hint", hint),
            (
                "post_logout_redirect_uri",
                "http://127.0.0.1:4000/logged-out",
            ),
            ("state", "s-3"),
        ],
    )
    .await;
    assert_eq!(res.status(), 303);
    let (base, q) = location(&res);
    assert_eq!(base, "http://127.0.0.1:4000/logged-out");
    assert_eq!(q["state"], "s-3");
    assert!(still_signed_in(&idp, &browser, &tokens).await);
    assert_eq!(sessions_ended(&idp).await, 0);

    // The signed-in browser itself, with the same expired hint, still signs out at once.
    let res = get_end_session(&idp, &browser, &[("id_token_hint", hint)]).await;
    assert_eq!(res.status(), 200);
    assert!(!still_signed_in(&idp, &browser, &tokens).await);
    assert_eq!(sessions_ended(&idp).await, 1);
}

/// The IdP sessions of acme, from the admin API.
async fn sessions(idp: &TestIdp) -> Vec<Value> {
    idp.admin(reqwest::Method::GET, "tenants/acme/sessions", None)
        .await
        .json()
        .await
        .unwrap()
}

/// The IdP session cookie an answer sets, as `NAME=VALUE`.
fn session_cookie(res: &reqwest::Response) -> String {
    res.headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("lanyard_idp_session="))
        .expect("a session cookie")
}

/// The login form for `params` in `browser`, posted as `user`: the answer (a redirect with a code).
async fn sign_in_with(
    idp: &TestIdp,
    browser: &reqwest::Client,
    user: &str,
    params: &[(String, String)],
) -> reqwest::Response {
    let res = get_authorize(browser, idp, "acme", params).await;
    assert_eq!(res.status(), 200, "the login form");
    let id = auth_request_id(&res.text().await.unwrap());
    let res = post_login(browser, idp, "acme", &id, user, PASSWORD).await;
    assert_eq!(res.status(), 303, "a code");
    res
}

/// Tokens for the code of a login answer made with `p`.
async fn tokens_of(idp: &TestIdp, res: &reqwest::Response, p: &Pkce) -> Value {
    let code = location(res).1["code"].clone();
    exchange(idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap()
}

/// A sign-in again in the same browser (a step-up: `prompt=login`, or `max_age` past) is the same
/// IdP session, signed in now, under a new cookie: the sign-out that follows ends every client the
/// browser signed in before it too, the cookie before it names nothing, and the IdP keeps one
/// session for the browser, not one per sign-in. Before, each sign-in started a session and left
/// the one before live, with its refresh families, named by a cookie the browser no longer held.
#[tokio::test]
async fn signing_in_again_in_the_same_browser_keeps_one_session_that_one_sign_out_ends() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let clock = idp.clock.clone().unwrap();
    let browser = browser();
    let p = pkce();
    let res = sign_in_with(&idp, &browser, "alice", &auth_params(&p)).await;
    let first_cookie = session_cookie(&res);
    let before = tokens_of(&idp, &res, &p).await;
    assert_eq!(sessions(&idp).await.len(), 1);
    clock.advance(time::Duration::seconds(120));

    // The step-up: the form again, the password again, a code in the same session.
    for step_up in [("prompt", Some("login")), ("max_age", Some("60"))] {
        let p = pkce();
        let res = sign_in_with(&idp, &browser, "alice", &with(auth_params(&p), &[step_up])).await;
        assert_ne!(session_cookie(&res), first_cookie, "a new cookie value");
        let after = tokens_of(&idp, &res, &p).await;
        let (old, new) = (
            claims(before["id_token"].as_str().unwrap()),
            claims(after["id_token"].as_str().unwrap()),
        );
        assert_eq!(new["sid"], old["sid"], "{step_up:?}: the same IdP session");
        let listed = sessions(&idp).await;
        assert_eq!(listed.len(), 1, "{step_up:?}: one session: {listed:?}");
        clock.advance(time::Duration::seconds(120));
    }
    let p = pkce();
    let res = sign_in_with(
        &idp,
        &browser,
        "alice",
        &with(auth_params(&p), &[("prompt", Some("login"))]),
    )
    .await;
    let after = tokens_of(&idp, &res, &p).await;
    assert_eq!(
        claims(after["id_token"].as_str().unwrap())["auth_time"].as_i64(),
        claims(before["id_token"].as_str().unwrap())["auth_time"]
            .as_i64()
            .map(|t| t + 360),
        "signed in now"
    );

    // The cookie of the first sign-in names nothing now (no fixed or copied cookie carries a
    // fresh sign-in).
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/authorize", idp.issuer("acme")))
        .query(&with(auth_params(&pkce()), &[("prompt", Some("none"))]))
        .header("cookie", &first_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res).1["error"], "login_required");

    // One sign-out ends every sign-in's refresh family.
    let res = get_end_session(
        &idp,
        &browser,
        &[("id_token_hint", after["id_token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(!still_signed_in(&idp, &browser, &after).await);
    let rt = introspect(&idp, "acme", before["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        rt["active"], false,
        "the refresh family of the sign-in before the step-up ended with the session: {rt}"
    );
    assert!(sessions(&idp).await.is_empty());
}

/// Someone else signing in in the browser gets a session of their own, and the session of the
/// person before is left as it is (Lanyard signs several accounts in at once).
#[tokio::test]
async fn another_person_signing_in_in_the_same_browser_leaves_the_first_session_alone() {
    let idp = TestIdp::spawn().await;
    let browser = browser();
    let p = pkce();
    let res = sign_in_with(&idp, &browser, "alice", &auth_params(&p)).await;
    let alice = tokens_of(&idp, &res, &p).await;
    let p = pkce();
    let res = sign_in_with(
        &idp,
        &browser,
        "bob",
        &with(auth_params(&p), &[("prompt", Some("login"))]),
    )
    .await;
    let bob = tokens_of(&idp, &res, &p).await;
    assert_ne!(
        claims(bob["id_token"].as_str().unwrap())["sid"],
        claims(alice["id_token"].as_str().unwrap())["sid"]
    );
    assert_eq!(sessions(&idp).await.len(), 2);
    let rt = introspect(&idp, "acme", alice["refresh_token"].as_str().unwrap()).await;
    assert_eq!(rt["active"], true, "{rt}");
}
