//! The "Your devices" page: sign in at the IdP in real headless Chromium, see the account's
//! sessions, revoke one, sign out everywhere else; CSRF and cookie attributes; axe-core finds no
//! accessibility violation on the page at desktop and phone width, nor on the confirmation page.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::Locator;
use serde_json::Value;
use test_harness::browser::Browser;
use test_harness::TestIdp;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

/// The rows' session ids, read in one script: element by element, a page that reloads between
/// finding the rows and reading them would leave stale references.
async fn rows(browser: &Browser) -> Vec<String> {
    let ids = browser
        .execute(
            "return Array.from(document.querySelectorAll('#sessions tbody tr'))\
             .map(r => r.getAttribute('data-session') || '');",
            Vec::new(),
        )
        .await
        .unwrap();
    serde_json::from_value(ids).unwrap()
}

async fn wait_rows(browser: &Browser, n: usize) -> Vec<String> {
    for _ in 0..200 {
        let r = rows(browser).await;
        if r.len() == n {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {n} rows, have {:?}", rows(browser).await);
}

/// axe-core's violations on the page `browser` shows: axe.min.js (from the npm tree in
/// `tests/a11y`, installed by `scripts/test` with `npm ci`) injected through WebDriver, since the
/// page's CSP allows no script of its own, then `axe.run()` with its default rules (WCAG 2.x A
/// and AA and best practices; not the experimental ones). Each is `{id, impact, help, nodes}`.
async fn axe_violations(browser: &Browser) -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/a11y");
    let axe = std::fs::read_to_string(dir.join("node_modules/axe-core/axe.min.js"))
        .unwrap_or_else(|e| {
            panic!(
                "axe-core is not installed in {} ({e}): run `npm ci --prefix session-registry/tests/a11y` first",
                dir.display()
            )
        });
    browser
        .execute(&format!("{axe}\nreturn typeof window.axe;"), Vec::new())
        .await
        .unwrap();
    let result = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             window.axe.run(document, {resultTypes: ['violations']})\
               .then(r => done({violations: r.violations.map(v => ({\
                  id: v.id, impact: v.impact, help: v.help,\
                  nodes: v.nodes.map(n => ({target: n.target, html: n.html, summary: n.failureSummary}))\
               }))}))\
               .catch(e => done({error: String(e)}));",
            Vec::new(),
        )
        .await
        .unwrap();
    assert!(result["error"].is_null(), "axe.run failed: {result}");
    result["violations"].as_array().cloned().unwrap_or_default()
}

/// Fails on any axe-core violation, printing each rule's id, impact, what it asks, and the nodes.
async fn assert_accessible(browser: &Browser, what: &str) {
    let violations = axe_violations(browser).await;
    if violations.is_empty() {
        return;
    }
    let mut report = String::new();
    for v in &violations {
        report.push_str(&format!("\n- {} ({}): {}", v["id"], v["impact"], v["help"]));
        for n in v["nodes"].as_array().into_iter().flatten() {
            report.push_str(&format!(
                "\n    {} {}\n      {}",
                n["target"],
                n["html"],
                n["summary"]
                    .as_str()
                    .unwrap_or("")
                    .replace('\n', "\n      ")
            ));
        }
    }
    panic!(
        "{what}: axe-core found {} accessibility violation(s):{report}",
        violations.len()
    );
}

#[tokio::test]
async fn the_accessibility_check_reports_an_unlabelled_field_in_chromium() {
    // The check itself can fail: a page with an unlabelled text field is a violation.
    let browser = Browser::start().await;
    browser
        .goto("data:text/html,<!doctype html><html lang=en><title>t</title><main><input type=text></main></html>")
        .await
        .unwrap();
    let ids: Vec<String> = axe_violations(&browser)
        .await
        .iter()
        .map(|v| v["id"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(ids.contains(&"label".to_owned()), "{ids:?}");
    browser.close().await;
}

#[tokio::test]
async fn a_person_signs_in_sees_their_devices_and_revokes_them_in_chromium() {
    let (idp, browser) = tokio::join!(TestIdp::spawn(), Browser::start());
    let reg = TestRegistry::spawn(&idp, Backend::Postgres).await;
    let (laptop, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    let (phone, p) = reg.device(&idp, "acme", "alice", "phone").await;
    reg.device(&idp, "acme", "bob", "desk").await;

    browser.goto(&reg.url("/devices/acme")).await.unwrap();
    // Redirected to the IdP's login page.
    browser
        .wait_for_url(WAIT, |u| u.path() == "/acme/authorize")
        .await
        .unwrap();
    browser
        .find(Locator::Id("user-alice"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys("lanyard-dev")
        .await
        .unwrap();
    browser
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let back = browser
        .wait_for_url(WAIT, |u| u.path() == "/devices/acme")
        .await
        .unwrap();
    assert!(back.as_str().starts_with(&reg.base_url));

    let who = browser
        .find(Locator::Id("who"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(who, "alice@acme.example");
    let listed = wait_rows(&browser, 3).await;
    // `LANYARD_SCREENSHOT_DIR=docs cargo nextest run … chromium` refreshes the README's pictures.
    let screenshots = std::env::var("LANYARD_SCREENSHOT_DIR").ok();
    for (name, width, height) in [("phone", 390, 760), ("desktop", 1100, 560)] {
        browser.set_window_size(width, height).await.unwrap();
        assert_accessible(&browser, &format!("the devices page at {name} width")).await;
        if let Some(dir) = &screenshots {
            let png = browser.screenshot().await.unwrap();
            std::fs::write(format!("{dir}/devices-page-{name}.png"), png).unwrap();
        }
    }
    let phone_id = p["session"]["session_id"].as_str().unwrap().to_owned();
    assert!(listed.contains(&phone_id), "{listed:?}");

    let cookies = browser.get_all_cookies().await.unwrap();
    let session_cookie = cookies
        .iter()
        .find(|c| c.name() == "lanyard_session")
        .expect("session cookie");
    assert_eq!(session_cookie.http_only(), Some(true));
    assert_eq!(format!("{:?}", session_cookie.same_site()), "Some(Lax)");

    browser
        .find(Locator::Id(&format!("revoke-{phone_id}")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let listed = wait_rows(&browser, 2).await;
    assert!(!listed.contains(&phone_id));
    assert_eq!(
        reg.get("/v1/sessions", &phone).await.0,
        401,
        "the phone is signed out"
    );

    browser
        .find(Locator::Id("sign-out-others"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Asked first; nothing is signed out until confirmed.
    browser
        .wait_for_url(WAIT, |u| u.path() == "/devices/acme/revoke")
        .await
        .unwrap();
    assert_accessible(&browser, "the confirmation page").await;
    browser
        .find(Locator::Id("confirm-sign-out-others"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_rows(&browser, 1).await;
    assert_eq!(
        reg.get("/v1/sessions", &laptop).await.0,
        401,
        "everywhere else is signed out"
    );
    browser.close().await;
}

/// Signs in through the page without a browser; returns the session cookie value.
/// A browser-like client: keeps cookies, does not follow redirects (the test reads them).
fn browser_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// In `client`, opens `authorize` (the IdP must show its login form), signs in as alice and
/// returns where the IdP sends the browser back: the registry's callback with code and state.
async fn sign_in_at_idp(client: &reqwest::Client, idp: &TestIdp, authorize: &str) -> String {
    let html = client
        .get(authorize)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = r#"name="auth_request" value=""#;
    let start = html.find(marker).expect("the IdP's login form") + marker.len();
    let id = &html[start..start + html[start..].find('"').unwrap()];
    let res = client
        .post(format!("{}/login", idp.issuer("acme")))
        .form(&[
            ("auth_request", id),
            ("username", "alice"),
            ("password", "lanyard-dev"),
        ])
        .send()
        .await
        .unwrap();
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// Opens the devices page in a fresh browser and signs in at the IdP; returns the browser and
/// the callback URL the IdP sent it back to (not yet followed).
async fn to_callback(idp: &TestIdp, reg: &TestRegistry) -> (reqwest::Client, String) {
    let client = browser_client();
    let res = client.get(reg.url("/devices/acme")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let authorize = res.headers()["location"].to_str().unwrap().to_owned();
    let callback = sign_in_at_idp(&client, idp, &authorize).await;
    (client, callback)
}

/// `url` with its `iss` parameter replaced by `iss` (or removed for `None`).
fn with_iss(url: &str, iss: Option<&str>) -> String {
    let mut url = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut query = url.query_pairs_mut();
    query.clear().extend_pairs(pairs);
    if let Some(iss) = iss {
        query.append_pair("iss", iss);
    }
    drop(query);
    url.to_string()
}

async fn page_session(idp: &TestIdp, reg: &TestRegistry) -> (reqwest::Client, String) {
    let (client, callback) = to_callback(idp, reg).await;
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let set_cookie: Vec<String> = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("lanyard_session="))
        .expect("session cookie")
        .clone();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    let value = session
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("lanyard_session=")
        .to_owned();
    (client, value)
}

#[tokio::test]
async fn revoke_forms_need_the_pages_csrf_token_and_the_same_origin() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (phone, p) = reg.device(&idp, "acme", "alice", "phone").await;
    let (client, _) = page_session(&idp, &reg).await;
    let html = client
        .get(reg.url("/devices/acme"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).unwrap() + marker.len();
    let csrf = html[start..start + html[start..].find('"').unwrap()].to_owned();
    let phone_id = p["session"]["session_id"].as_str().unwrap();
    let url = reg.url("/devices/acme/revoke");

    let res = client
        .post(&url)
        .form(&[("csrf", "forged"), ("session_id", phone_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = client
        .post(&url)
        .header("origin", "http://evil.example")
        .form(&[("csrf", csrf.as_str()), ("session_id", phone_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(
        reg.get("/v1/sessions", &phone).await.0,
        200,
        "refused posts change nothing"
    );
    // Without the cookie the token alone is not enough either.
    let res = reqwest::Client::new()
        .post(&url)
        .form(&[("csrf", csrf.as_str()), ("session_id", phone_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    let res = client
        .post(&url)
        .form(&[("csrf", csrf.as_str()), ("session_id", phone_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(reg.get("/v1/sessions", &phone).await.0, 401);
}

#[tokio::test]
async fn a_callback_with_a_forged_state_is_refused() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let res = reqwest::get(reg.url("/auth/callback?code=abc&state=forged"))
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_state");
    assert!(reg.admin_sessions("acme").await.is_empty());
}

/// The page's CSRF token, read from the devices page in `client`.
async fn csrf_of(client: &reqwest::Client, reg: &TestRegistry) -> String {
    let html = client
        .get(reg.url("/devices/acme"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("the devices page") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

#[tokio::test]
async fn an_origin_that_only_starts_like_ours_is_cross_origin() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (phone, p) = reg.device(&idp, "acme", "alice", "phone").await;
    let (client, _) = page_session(&idp, &reg).await;
    let csrf = csrf_of(&client, &reg).await;
    let phone_id = p["session"]["session_id"].as_str().unwrap();
    // "http://127.0.0.1:4" is a prefix of "http://127.0.0.1:4xxxx": another origin all the same.
    let base = reg.base_url.clone();
    for origin in [
        base[..base.len() - 1].to_owned(),
        format!("{base}.evil.example"),
        format!("{base}0"),
    ] {
        let res = client
            .post(reg.url("/devices/acme/revoke"))
            .header("origin", &origin)
            .form(&[("csrf", csrf.as_str()), ("session_id", phone_id)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{origin}");
    }
    assert_eq!(reg.get("/v1/sessions", &phone).await.0, 200);
    let res = client
        .post(reg.url("/devices/acme/revoke"))
        .header("origin", &base)
        .form(&[("csrf", csrf.as_str()), ("session_id", phone_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "our own origin");
}

#[tokio::test]
async fn unauthenticated_visits_cannot_fill_the_registrys_memory() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut limited = None;
    for i in 0..200 {
        let res = client.get(reg.url("/devices/acme")).send().await.unwrap();
        match res.status().as_u16() {
            303 => {}
            429 => {
                assert!(res.headers().contains_key("retry-after"));
                let text = res.text().await.unwrap();
                assert!(text.contains("Too many sign-ins"), "{text}");
                limited = Some(i);
                break;
            }
            other => panic!("visit {i}: {other}"),
        }
    }
    let limited = limited.expect("one address cannot start sign-ins without bound");
    assert!(
        limited >= 10,
        "a person retrying a few times is not limited ({limited})"
    );
    // Another client is not affected by the first one's limit.
    let other = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = other
        .get(reg.url("/devices/acme"))
        .header("x-forwarded-for", "198.51.100.9")
        .send()
        .await
        .unwrap();
    // Without trusted proxies the header is ignored: still the same (limited) address.
    assert_eq!(res.status(), 429);
}

#[tokio::test]
async fn signing_out_everywhere_else_after_ten_minutes_asks_for_a_fresh_sign_in() {
    let idp = TestIdp::spawn_with_manual_clock().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (phone, _) = reg.device(&idp, "acme", "alice", "phone").await;
    let (client, _) = page_session(&idp, &reg).await;
    let csrf = csrf_of(&client, &reg).await;
    idp.clock
        .as_ref()
        .unwrap()
        .advance(time::Duration::seconds(601));
    reg.advance(601);
    let res = client
        .post(reg.url("/devices/acme/revoke"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("scope", "others"),
            ("confirm", "yes"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let authorize = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        authorize.starts_with(&idp.issuer("acme")) && authorize.contains("max_age=0"),
        "{authorize}"
    );
    assert_eq!(reg.get("/v1/sessions", &phone).await.0, 200, "not yet");
    // The IdP asks for the password again even though its session is live.
    let callback = sign_in_at_idp(&client, &idp, &authorize).await;
    let res = client.get(&callback).send().await.unwrap();
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    assert_eq!(
        reg.get("/v1/sessions", &phone).await.0,
        401,
        "after the fresh sign-in the action went through"
    );
}

#[tokio::test]
async fn a_callback_naming_another_issuer_is_refused() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (client, callback) = to_callback(&idp, &reg).await;
    let forged = with_iss(&callback, Some(&idp.issuer("globex")));
    let res = client.get(forged).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "issuer_mismatch", "{body}");
    assert!(reg.admin_sessions("acme").await.is_empty());
}

#[tokio::test]
async fn an_origin_of_null_is_cross_origin() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (phone, p) = reg.device(&idp, "acme", "alice", "phone").await;
    let (client, _) = page_session(&idp, &reg).await;
    let csrf = csrf_of(&client, &reg).await;
    let phone_id = p["session"]["session_id"].as_str().unwrap();
    // A sandboxed frame of another site sends `Origin: null`.
    let res = client
        .post(reg.url("/devices/acme/revoke"))
        .header("origin", "null")
        .form(&[("csrf", csrf.as_str()), ("session_id", phone_id)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(reg.get("/v1/sessions", &phone).await.0, 200);
}

#[tokio::test]
async fn a_callback_without_iss_is_refused_when_the_idp_says_it_sends_one() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (client, callback) = to_callback(&idp, &reg).await;
    assert!(
        callback.contains("iss="),
        "the mock IdP sends iss: {callback}"
    );
    let res = client.get(with_iss(&callback, None)).send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "issuer_mismatch", "{body}");
    assert!(reg.admin_sessions("acme").await.is_empty());
}

#[tokio::test]
async fn the_page_lists_this_device_first_with_times_in_words_and_asks_before_signing_out_others() {
    let idp = TestIdp::spawn().await;
    let reg = TestRegistry::spawn(&idp, Backend::Sqlite).await;
    let (phone, _) = reg.device(&idp, "acme", "alice", "phone").await;
    reg.advance(180);
    let (laptop, _) = reg.device(&idp, "acme", "alice", "laptop").await;
    reg.advance(120);
    let (client, _) = page_session(&idp, &reg).await;
    let html = client
        .get(reg.url("/devices/acme"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // This browser first and marked, then the others by last activity.
    let order: Vec<usize> = ["Web browser", "laptop's laptop", "phone's laptop"]
        .iter()
        .map(|name| {
            html.find(name)
                .unwrap_or_else(|| panic!("{name} in {html}"))
        })
        .collect();
    assert!(order[0] < order[1] && order[1] < order[2], "{order:?}");
    assert!(html.contains(r#"id="this-device""#) && html.contains("This device"));
    assert!(
        html.contains("just now") && html.contains("5 minutes ago"),
        "{html}"
    );
    assert!(html.contains(r#"<time datetime=""#) && html.contains(r#"title=""#));
    // A phone's width: the viewport is declared and the table folds into labelled rows.
    assert!(html.contains(r#"name="viewport""#) && html.contains("@media (max-width:600px)"));
    // Every button says what it does to whom.
    for button in html.split("<button").skip(1) {
        let start = button.find('>').unwrap();
        let label = &button[start + 1..button.find("</button>").unwrap()];
        assert!(!label.trim().is_empty(), "a button without text: {button}");
    }
    assert!(
        html.contains(r#"aria-label="Sign out phone's laptop (linux)""#),
        "{html}"
    );

    let csrf = csrf_of(&client, &reg).await;
    let res = client
        .post(reg.url("/devices/acme/revoke"))
        .form(&[("csrf", csrf.as_str()), ("scope", "others")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "a confirmation, not yet a sign-out");
    let confirm = res.text().await.unwrap();
    assert!(confirm.contains("2 other sessions"), "{confirm}");
    assert_eq!(
        reg.get("/v1/sessions", &phone).await.0,
        200,
        "nothing changed yet"
    );
    let res = client
        .post(reg.url("/devices/acme/revoke"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("scope", "others"),
            ("confirm", "yes"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(reg.get("/v1/sessions", &phone).await.0, 401);
    assert_eq!(reg.get("/v1/sessions", &laptop).await.0, 401);
}
