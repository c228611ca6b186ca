//! Login CSRF through the guest choice: another site can send a browser to `/authorize` with
//! `prompt=create` (or post the guest form), and a new guest would silently replace the signed-in
//! person's IdP session. Replacing a registered user's session asks the person first; the
//! confirmation's form carries a CSRF token derived from the browser's session cookie.

use serde_json::Value;
use test_harness::TestIdp;

use crate::helpers::*;

fn hidden(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}

/// Who the browser's IdP session belongs to, by a `prompt=none` sign-in.
async fn signed_in_as(idp: &TestIdp, browser: &reqwest::Client) -> Value {
    let p = pkce();
    let res = get_authorize(
        browser,
        idp,
        "acme",
        &with(auth_params(&p), &[("prompt", Some("none"))]),
    )
    .await;
    let code = location(&res).1["code"].clone();
    let t: Value = exchange(idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap();
    claims(t["id_token"].as_str().unwrap())
}

async fn guests_created(idp: &TestIdp) -> usize {
    idp.audit("acme").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "guest_created")
        .count()
}

#[tokio::test]
async fn prompt_create_from_another_site_does_not_replace_a_registered_users_session() {
    let idp = TestIdp::spawn().await;
    let (_, _, browser) = login_code(&idp, "acme", "bob").await;

    let p = pkce();
    let res = get_authorize(
        &browser,
        &idp,
        "acme",
        &with(auth_params(&p), &[("prompt", Some("create"))]),
    )
    .await;
    assert_eq!(res.status(), 200, "a confirmation page, not a code");
    assert!(res.headers().get("set-cookie").is_none());
    let page = res.text().await.unwrap();
    assert!(page.contains("bob"), "{page}");
    let id = auth_request_id(&page);
    let csrf = hidden(&page, "csrf_token").expect("a CSRF token");
    assert_eq!(guests_created(&idp).await, 0);

    // The attacker's page can post the guest form, but not with this browser's token.
    for token in [None, Some("forged")] {
        let mut form = vec![("auth_request", id.as_str())];
        form.extend(token.map(|t| ("csrf_token", t)));
        let res = browser
            .post(format!("{}/guest", idp.issuer("acme")))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403);
        assert!(res.headers().get("set-cookie").is_none());
    }
    assert_eq!(guests_created(&idp).await, 0);
    assert_eq!(
        signed_in_as(&idp, &browser).await["preferred_username"],
        "bob"
    );

    // The person confirms: a new guest, signed in.
    let res = browser
        .post(format!("{}/guest", idp.issuer("acme")))
        .form(&[("auth_request", id.as_str()), ("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let code = location(&res).1["code"].clone();
    let t: Value = exchange(&idp, "acme", &code, &p.verifier)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(claims(t["id_token"].as_str().unwrap())["is_guest"], true);
    assert_eq!(signed_in_as(&idp, &browser).await["is_guest"], true);
}

#[tokio::test]
async fn the_guest_button_of_a_login_page_shown_to_a_signed_in_browser_carries_its_token() {
    // prompt=login shows the form to a browser that has a session; its guest button still works.
    let idp = TestIdp::spawn().await;
    let (_, _, browser) = login_code(&idp, "acme", "bob").await;
    let p = pkce();
    let page = get_authorize(
        &browser,
        &idp,
        "acme",
        &with(auth_params(&p), &[("prompt", Some("login"))]),
    )
    .await
    .text()
    .await
    .unwrap();
    let id = auth_request_id(&page);
    let csrf = hidden(&page, "csrf_token").expect("the guest form's CSRF token");
    let res = browser
        .post(format!("{}/guest", idp.issuer("acme")))
        .form(&[("auth_request", id.as_str()), ("csrf_token", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(location(&res).1.contains_key("code"));
}
