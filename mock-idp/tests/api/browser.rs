//! The login page in real headless Chromium (via chromedriver and fantoccini): the user chooser,
//! the password form, the error page, `login_hint`, and the IdP session cookie.
//!
//! Each test starts its own IdP, chromedriver + Chromium and callback server, so they run in
//! parallel safely. Needs `apt-get install -y chromium chromium-driver`.

use std::collections::HashMap;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::Value;
use test_harness::browser::{Browser, CallbackServer};
use test_harness::TestIdp;

use crate::helpers::{claims, pkce, Pkce, CLI, PASSWORD};

const TENANT: &str = "acme";
const WAIT: Duration = Duration::from_secs(20);

/// An IdP, a browser, and somewhere real for the browser to be redirected to.
struct Setup {
    idp: TestIdp,
    browser: Browser,
    callback: CallbackServer,
}

impl Setup {
    async fn new() -> Self {
        let (idp, browser, callback) =
            tokio::join!(TestIdp::spawn(), Browser::start(), CallbackServer::start());
        Self {
            idp,
            browser,
            callback,
        }
    }

    /// The loopback redirect URI; the IdP accepts `http://127.0.0.1/callback` on any port.
    fn redirect_uri(&self) -> String {
        self.callback.url("/callback")
    }

    /// An authorization URL for the CLI client (PKCE S256, state, nonce) plus `extra`.
    fn authorize_url(&self, p: &Pkce, state: &str, extra: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&format!("{}/authorize", self.idp.issuer(TENANT)))
            .expect("issuer is a URL");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", CLI)
            .append_pair("redirect_uri", &self.redirect_uri())
            .append_pair("scope", "openid profile email offline_access")
            .append_pair("state", state)
            .append_pair("nonce", "nonce-browser")
            .append_pair("code_challenge", &p.challenge)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(extra.iter().copied());
        url.into()
    }

    /// Waits until the browser is on the callback and returns its query parameters.
    async fn landed_on_callback(&self) -> HashMap<String, String> {
        let prefix = self.redirect_uri();
        let url = self
            .browser
            .wait_for_url(WAIT, |u| u.as_str().starts_with(&prefix))
            .await
            .unwrap_or_else(|e| panic!("never reached the callback: {e}"));
        assert_eq!(
            self.browser
                .find(Locator::Css("body"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "ok",
            "the callback server's page is showing"
        );
        url.query_pairs().into_owned().collect()
    }

    /// Picks `username` in the chooser, types `password` and submits.
    async fn sign_in(&self, username: &str, password: &str) {
        let b = &self.browser;
        b.wait()
            .at_most(WAIT)
            .for_element(Locator::Id("sign-in"))
            .await
            .unwrap();
        b.find(Locator::Id(&format!("user-{username}")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        b.find(Locator::Id("password"))
            .await
            .unwrap()
            .send_keys(password)
            .await
            .unwrap();
        b.find(Locator::Id("sign-in"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn exchange(&self, code: &str, verifier: &str) -> Value {
        let res = self
            .idp
            .http
            .post(format!("{}/token", self.idp.issuer(TENANT)))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri()),
                ("client_id", CLI),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "token exchange");
        res.json().await.unwrap()
    }

    fn sub_of(&self, username: &str) -> String {
        self.idp
            .state
            .tenant(TENANT)
            .expect("tenant exists")
            .directory
            .read()
            .user_by_name(username)
            .map(|u| u.sub.clone())
            .expect("user exists")
    }

    async fn close(self) {
        self.browser.close().await;
    }
}

async fn is_checked(b: &Browser, id: &str) -> bool {
    let radio = b.find(Locator::Id(id)).await.unwrap();
    radio.prop("checked").await.unwrap().as_deref() == Some("true")
}

#[tokio::test]
async fn login_page_in_chromium_signs_bob_in_and_lands_on_the_redirect_with_a_code() {
    let s = Setup::new().await;
    let p = pkce();
    s.browser
        .goto(&s.authorize_url(&p, "state-chromium", &[]))
        .await
        .unwrap();
    assert_eq!(s.browser.title().await.unwrap(), "Sign in to acme");
    // Without a hint the first user is preselected; choosing bob proves the chooser works.
    assert!(is_checked(&s.browser, "user-alice").await);
    assert!(!is_checked(&s.browser, "user-bob").await);
    // Not an assertion: a picture of the page for a human to look at.
    if let Ok(png) = s.browser.screenshot().await {
        let _ = std::fs::write(std::env::temp_dir().join("login-page.png"), png);
    }

    s.sign_in("bob", PASSWORD).await;

    let q = s.landed_on_callback().await;
    assert_eq!(q["state"], "state-chromium");
    assert_eq!(q["iss"], s.idp.issuer(TENANT));
    let code = q.get("code").expect("a code in the redirect");
    assert!(!code.is_empty());
    let hits = s.callback.requests();
    assert!(
        hits.iter().any(|l| l.starts_with("GET /callback?code=")),
        "the callback server saw the redirect: {hits:?}"
    );

    let tokens = s.exchange(code, &p.verifier).await;
    let id = claims(tokens["id_token"].as_str().expect("an ID token"));
    assert_eq!(id["preferred_username"], "bob", "{id}");
    assert_eq!(id["sub"], s.sub_of("bob").as_str(), "{id}");
    assert_ne!(id["sub"], s.sub_of("alice").as_str());
    assert_eq!(id["nonce"], "nonce-browser");
    assert_eq!(id["aud"], CLI);
    s.close().await;
}

#[tokio::test]
async fn a_wrong_password_shows_an_error_and_no_redirect() {
    let s = Setup::new().await;
    let p = pkce();
    s.browser
        .goto(&s.authorize_url(&p, "state-wrong", &[]))
        .await
        .unwrap();

    s.sign_in("alice", "not-the-password").await;

    let error = s
        .browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("error"))
        .await
        .unwrap();
    assert_eq!(error.text().await.unwrap(), "Wrong username or password.");
    let url = s.browser.current_url().await.unwrap();
    assert!(
        url.as_str().starts_with(&s.idp.issuer(TENANT)),
        "still at the IdP: {url}"
    );
    assert!(s.callback.requests().is_empty(), "no redirect happened");
    // The form is still there to try again.
    assert!(s.browser.find(Locator::Id("sign-in")).await.is_ok());

    // And a second try with the right password goes through.
    s.sign_in("alice", PASSWORD).await;
    let q = s.landed_on_callback().await;
    assert_eq!(q["state"], "state-wrong");
    assert!(q.contains_key("code"));
    s.close().await;
}

#[tokio::test]
async fn a_second_authorize_in_the_same_browser_skips_the_form() {
    let s = Setup::new().await;
    let p1 = pkce();
    s.browser
        .goto(&s.authorize_url(&p1, "first", &[]))
        .await
        .unwrap();
    s.sign_in("bob", PASSWORD).await;
    let first = s.landed_on_callback().await;
    assert_eq!(first["state"], "first");

    // The IdP session cookie is in the browser now: no login page the second time.
    let p2 = pkce();
    s.browser
        .goto(&s.authorize_url(&p2, "second", &[]))
        .await
        .unwrap();
    let second = s.landed_on_callback().await;
    assert_eq!(second["state"], "second");
    assert_ne!(second["code"], first["code"], "a new code");
    assert_eq!(
        s.callback
            .requests()
            .iter()
            .filter(|l| l.starts_with("GET /callback?"))
            .count(),
        2
    );

    let tokens = s.exchange(&second["code"], &p2.verifier).await;
    let id = claims(tokens["id_token"].as_str().expect("an ID token"));
    assert_eq!(id["preferred_username"], "bob", "{id}");
    s.close().await;
}

#[tokio::test]
async fn login_hint_preselects_the_user() {
    let s = Setup::new().await;
    let p = pkce();
    s.browser
        .goto(&s.authorize_url(&p, "hinted", &[("login_hint", "bob")]))
        .await
        .unwrap();
    s.browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Id("sign-in"))
        .await
        .unwrap();
    assert!(is_checked(&s.browser, "user-bob").await);
    assert!(!is_checked(&s.browser, "user-alice").await);

    // Submitting without touching the chooser signs in the hinted user.
    s.browser
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    s.browser
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let q = s.landed_on_callback().await;
    let tokens = s.exchange(&q["code"], &p.verifier).await;
    let id = claims(tokens["id_token"].as_str().expect("an ID token"));
    assert_eq!(id["preferred_username"], "bob", "{id}");
    s.close().await;
}
