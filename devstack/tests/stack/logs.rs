//! What the stack writes to its logs: never a secret. A whole sign-in (authorization request
//! with state and nonce, login, code redemption), a device session, a refresh, an RP-initiated
//! logout with `id_token_hint` in the URL and the back-channel logout it sends, all with the
//! most verbose log level, and no credential or single-use value may appear on stderr.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::Stack;

fn query_value(location: &str, name: &str) -> String {
    url::Url::parse(location)
        .expect("a redirect URL")
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{name} in {location}"))
}

#[tokio::test]
async fn no_secret_of_a_sign_in_refresh_and_logout_reaches_the_logs() {
    let stack = Stack::start_with_env(&[("RUST_LOG", "debug")]).await;
    let issuer = stack.issuer("acme");
    let browser = test_harness::idp::browser();
    let back = reqwest::Client::new();
    // Values long and random enough that finding them in the logs means they were logged.
    let state = mock_idp::random::token();
    let nonce = mock_idp::random::token();
    let verifier = mock_idp::random::token();
    let redirect = "http://127.0.0.1:53682/callback";
    let challenge = mock_idp::pkce::s256(&verifier);
    let page = browser
        .get(format!("{issuer}/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", "lanyard-cli"),
            ("redirect_uri", redirect),
            ("scope", "openid profile email offline_access"),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = r#"name="auth_request" value=""#;
    let start = page.find(marker).expect("a login page") + marker.len();
    let auth_request = &page[start..start + page[start..].find('"').unwrap()];
    let location = browser
        .post(format!("{issuer}/login"))
        .form(&[
            ("auth_request", auth_request),
            ("username", "alice"),
            ("password", mock_idp::config::DEV_PASSWORD),
        ])
        .send()
        .await
        .unwrap()
        .headers()
        .get("location")
        .expect("a redirect with the code")
        .to_str()
        .unwrap()
        .to_owned();
    let code = query_value(&location, "code");
    let tokens: Value = back
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", "lanyard-cli"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id_token = tokens["id_token"].as_str().expect("an ID token").to_owned();
    let (status, session) = stack.create_session(&id_token, "laptop").await;
    assert_eq!(status, 201, "{session}");
    let session_token = session["session_token"].as_str().unwrap().to_owned();
    let session_jwt = session["session_jwt"].as_str().unwrap().to_owned();
    let auth: Value = back
        .post(format!("{}/v1/sessions/authenticate", stack.registry))
        .json(&serde_json::json!({"session_jwt": session_jwt}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(auth["session_jwt"].is_string(), "{auth}");
    let refreshed = test_harness::idp::refresh(
        &issuer,
        "lanyard-cli",
        tokens["refresh_token"].as_str().unwrap(),
    )
    .await;
    assert!(refreshed["access_token"].is_string(), "{refreshed}");

    // The same browser opens the registry's devices page: single sign-on through the registry's
    // own client, so the IdP session now has a client with a back-channel logout URI.
    let to_idp = browser
        .get(format!("{}/devices/acme", stack.registry))
        .send()
        .await
        .unwrap();
    assert_eq!(to_idp.status(), 303);
    let authorize = to_idp.headers()["location"].to_str().unwrap().to_owned();
    let back_to_registry = browser.get(&authorize).send().await.unwrap();
    let callback = back_to_registry
        .headers()
        .get("location")
        .expect("single sign-on redirects straight back")
        .to_str()
        .unwrap()
        .to_owned();
    let page_code = query_value(&callback, "code");
    let signed_in = browser.get(&callback).send().await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let page_cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("lanyard_session="))
        .and_then(|c| c.split(';').next())
        .expect("the page's session cookie")
        .to_owned();

    // RP-initiated logout with the hint in the URL: the IdP ends its session and tells the
    // registry through back-channel logout, which ends the device session.
    let ended = browser
        .get(format!("{issuer}/end_session"))
        .query(&[
            ("id_token_hint", id_token.as_str()),
            ("state", state.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let ended_status = ended.status();
    let ended_body = ended.text().await.unwrap_or_default();
    assert!(
        ended_status.is_success() || ended_status.is_redirection(),
        "{ended_status}: {ended_body}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = back
            .get(format!("{}/v1/sessions", stack.registry))
            .bearer_auth(&session_token)
            .send()
            .await
            .unwrap()
            .status();
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the back-channel logout never ended the device session ({ended_status}: {ended_body}): {}",
            stack.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let logs = stack.stderr();
    // The requests whose handling logs something carry their target in the log line.
    assert!(
        logs.contains("/auth/callback?") && logs.contains("/v1/backchannel-logout"),
        "the requests were logged: {logs}"
    );
    let secrets = [
        ("state", state.as_str()),
        ("nonce", nonce.as_str()),
        ("code_verifier", verifier.as_str()),
        ("code", code.as_str()),
        ("devices page code", page_code.as_str()),
        ("devices page session", page_cookie.as_str()),
        ("id_token", id_token.as_str()),
        ("access_token", tokens["access_token"].as_str().unwrap()),
        ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
        (
            "refreshed access_token",
            refreshed["access_token"].as_str().unwrap(),
        ),
        (
            "refreshed refresh_token",
            refreshed["refresh_token"].as_str().unwrap(),
        ),
        ("session_token", session_token.as_str()),
        ("session_jwt", session_jwt.as_str()),
        ("fresh session_jwt", auth["session_jwt"].as_str().unwrap()),
    ];
    for (name, secret) in secrets {
        // A JWT's signature alone is enough to find a leak, and survives any re-encoding of
        // its header.
        let needle = secret.rsplit('.').next().unwrap_or(secret);
        assert!(
            !logs.contains(needle),
            "the {name} appears in the logs:\n{}",
            logs.lines()
                .filter(|l| l.contains(needle))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
