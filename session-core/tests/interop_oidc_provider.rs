#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Interop with a certified OpenID provider: session-core's own OIDC client (discovery, code +
//! PKCE S256 on the loopback redirect, ID-token validation, refresh, RFC 7009 revocation) against
//! panva's `oidc-provider` (Node), started per test from `session-core/interop/provider.mjs`.
//! The provider's development sign-in and consent pages are completed by an HTTP client with a
//! cookie jar, as a browser would; whether a token is still active is asked of the provider
//! itself (RFC 7662 introspection). Needs Node 20+ and `npm ci --prefix session-core/interop`.
//!
//! The tests live in `mod interop` so that nextest's `node` group (`test(/interop::/)`) runs
//! them one at a time with the other Node interop tests.

mod interop {
    use std::path::PathBuf;
    use std::process::Stdio;
    use std::time::Duration;

    use base64::Engine;
    use lanyard_clock::Clock;
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::Value;
    use session_core::oidc::{Provider, SignInBinding};
    use session_core::SessionError;
    use test_harness::process::ChildServices;
    use tokio::sync::mpsc;

    const CLIENT_ID: &str = "lanyard-cli";

    fn interop_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop")
    }

    /// `node provider.mjs 0`, its issuer read back from the readiness line; killed on drop.
    async fn start_oidc_provider() -> (ChildServices, String) {
        let dir = interop_dir();
        assert!(
            dir.join("node_modules/oidc-provider/package.json").is_file(),
            "oidc-provider is not installed in {}: run `npm ci --prefix session-core/interop` (Node 20+) first",
            dir.display()
        );
        let mut command = tokio::process::Command::new("node");
        command
            .arg(dir.join("provider.mjs"))
            .arg("0")
            .current_dir(&dir)
            .env("OIDC_PROVIDER_DEBUG", "1")
            .stdin(Stdio::null())
            // nextest captures it and shows it when the test fails.
            .stderr(Stdio::inherit());
        let child = ChildServices::start(command, &["oidc-provider"])
            .await
            .unwrap_or_else(|e| panic!("could not start oidc-provider with `node`: {e}"));
        let issuer = child.base_url("oidc-provider").unwrap();
        (child, issuer)
    }

    fn now() -> i64 {
        lanyard_clock::SystemClock.now().unix_timestamp()
    }

    /// What the browser stand-in saw: the prompts whose forms it posted, and where the provider
    /// finally sent it.
    #[derive(Debug)]
    struct BrowserRun {
        authorization_url: url::Url,
        prompts: Vec<String>,
        callback: url::Url,
    }

    /// A browser stand-in for [`Provider::login_with_browser`]: follows the provider's redirects
    /// with a cookie jar, fills in and posts each development interaction form (sign in as `user`,
    /// then consent), and finally delivers the redirect to the loopback listener. Its outcome goes
    /// to `report` (a panic in a spawned task would only show up as a login timeout).
    fn browser(
        user: &'static str,
        report: mpsc::UnboundedSender<Result<BrowserRun, String>>,
    ) -> impl Fn(&url::Url) + Send + Sync {
        move |url: &url::Url| {
            let url = url.clone();
            let report = report.clone();
            tokio::spawn(async move {
                let _ = report.send(drive(url, user).await);
            });
        }
    }

    async fn drive(authorization_url: url::Url, user: &str) -> Result<BrowserRun, String> {
        let redirect_uri = authorization_url
            .query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned())
            .ok_or("the authorization URL has no redirect_uri")?;
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        let mut prompts = Vec::new();
        let mut response = http
            .get(authorization_url.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        for _ in 0..20 {
            let here = response.url().clone();
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| format!("{status} without a Location at {here}"))?;
                let next = here.join(location).map_err(|e| e.to_string())?;
                if next.as_str().starts_with(&redirect_uri) {
                    // The loopback listener: deliver the code as the browser would.
                    let answer = http
                        .get(next.clone())
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if answer.status() != 200 {
                        return Err(format!(
                            "the loopback listener answered {}",
                            answer.status()
                        ));
                    }
                    return Ok(BrowserRun {
                        authorization_url,
                        prompts,
                        callback: next,
                    });
                }
                response = http.get(next).send().await.map_err(|e| e.to_string())?;
                continue;
            }
            let body = response.text().await.map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("{status} at {here}: {body}"));
            }
            let form = Form::parse(&body).ok_or_else(|| format!("no form at {here}: {body}"))?;
            let mut fields = form.hidden.clone();
            let prompt = fields
                .iter()
                .find(|(k, _)| k == "prompt")
                .map(|(_, v)| v.clone())
                .ok_or_else(|| format!("the form at {here} names no prompt"))?;
            if form.inputs.iter().any(|n| n == "login") {
                fields.push(("login".into(), user.into()));
                fields.push(("password".into(), "any password".into()));
            }
            prompts.push(prompt);
            let action = here.join(&form.action).map_err(|e| e.to_string())?;
            response = http
                .post(action)
                .form(&fields)
                .send()
                .await
                .map_err(|e| e.to_string())?;
        }
        Err(format!(
            "no redirect to {redirect_uri} after 20 steps (prompts {prompts:?})"
        ))
    }

    /// The one form of an oidc-provider development interaction page.
    struct Form {
        action: String,
        /// `(name, value)` of the hidden inputs.
        hidden: Vec<(String, String)>,
        /// Names of every input.
        inputs: Vec<String>,
    }

    impl Form {
        fn parse(html: &str) -> Option<Self> {
            let start = html.find("<form")?;
            let form = &html[start..html[start..].find("</form>")? + start];
            let action = attribute(&form[..form.find('>')?], "action")?;
            let mut hidden = Vec::new();
            let mut inputs = Vec::new();
            for tag in form.split("<input").skip(1) {
                let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
                let Some(name) = attribute(tag, "name") else {
                    continue;
                };
                if attribute(tag, "type").as_deref() == Some("hidden") {
                    hidden.push((name.clone(), attribute(tag, "value").unwrap_or_default()));
                }
                inputs.push(name);
            }
            Some(Self {
                action,
                hidden,
                inputs,
            })
        }
    }

    fn attribute(tag: &str, name: &str) -> Option<String> {
        let needle = format!(" {name}=\"");
        let start = tag.find(&needle)? + needle.len();
        let end = tag[start..].find('"')? + start;
        Some(
            tag[start..end]
                .replace("&#39;", "'")
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    }

    /// RFC 7662 introspection at the provider, as the public client (its own tokens only).
    async fn introspect(issuer: &str, token: &SecretString, hint: &str) -> Value {
        let res = reqwest::Client::new()
            .post(format!("{issuer}/token/introspection"))
            .form(&[
                ("token", token.expose_secret()),
                ("token_type_hint", hint),
                ("client_id", CLIENT_ID),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "introspection answered {}", res.status());
        res.json().await.unwrap()
    }

    fn jwt_part(token: &SecretString, index: usize) -> Value {
        let part = token.expose_secret().split('.').nth(index).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Signs `user` in through session-core's loopback flow and returns the tokens and what the
    /// browser stand-in saw.
    async fn sign_in(
        provider: &Provider,
        user: &'static str,
    ) -> (session_core::tokens::TokenSet, BrowserRun) {
        let (report, mut reports) = mpsc::unbounded_channel();
        let prompt = browser(user, report);
        let tokens = provider
            .login_with_browser(&prompt, Duration::from_secs(30))
            .await;
        let run = reports
            .try_recv()
            .expect("the browser stand-in finished before the login returned");
        let run = run.unwrap_or_else(|e| panic!("the browser stand-in failed: {e}"));
        (tokens.unwrap(), run)
    }

    #[tokio::test]
    async fn oidc_provider_signs_in_refreshes_and_revokes_with_session_core() {
        let (_child, issuer) = start_oidc_provider().await;

        // Discovery: the issuer matches exactly and S256 is offered (else discover refuses).
        let provider = Provider::discover(&issuer, CLIENT_ID).await.unwrap();
        assert_eq!(provider.issuer, issuer);

        // Code + PKCE S256 on the loopback redirect: oidc-provider asks for sign-in, then for
        // consent (a native client always gets the consent prompt), then redirects to the
        // listener's ephemeral port, which the registered port-less URI allows (RFC 8252 §7.3).
        let started = now();
        let (tokens, run) = sign_in(&provider, "alice").await;
        assert_eq!(run.prompts, ["login", "consent"], "{run:?}");
        let params: std::collections::HashMap<String, String> =
            run.authorization_url.query_pairs().into_owned().collect();
        assert_eq!(params["code_challenge_method"], "S256");
        assert_eq!(params["client_id"], CLIENT_ID);
        assert!(!params["state"].is_empty() && !params["nonce"].is_empty());
        assert!(params["scope"].split(' ').any(|s| s == "offline_access"));
        // OIDC Core §11: without it, oidc-provider drops offline_access and issues no refresh
        // token.
        assert_eq!(params.get("prompt").map(String::as_str), Some("consent"));
        let redirect = url::Url::parse(&params["redirect_uri"]).unwrap();
        assert_eq!(redirect.host_str(), Some("127.0.0.1"));
        assert_eq!(redirect.path(), "/callback");
        assert!(redirect.port().is_some_and(|p| p != 0), "{redirect}");
        assert_eq!(run.callback.port(), redirect.port(), "{}", run.callback);
        let callback: std::collections::HashMap<String, String> =
            run.callback.query_pairs().into_owned().collect();
        assert_eq!(callback.get("state"), params.get("state"));
        assert_eq!(callback.get("iss"), Some(&issuer), "RFC 9207 iss");

        // The validated ID token and what session-core made of it. oidc-provider keeps email
        // and name out of the ID token (OIDC Core §5.4): they come from UserInfo.
        assert_eq!(tokens.subject, "alice");
        assert_eq!(tokens.email.as_deref(), Some("alice@interop.example"));
        assert_eq!(tokens.name.as_deref(), Some("alice (oidc-provider)"));
        let header = jwt_part(&tokens.id_token, 0);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "interop-es256");
        let claims = jwt_part(&tokens.id_token, 1);
        assert!(claims.get("email").is_none(), "{claims}");
        assert_eq!(claims["iss"], issuer.as_str());
        assert_eq!(claims["aud"], CLIENT_ID);
        assert_eq!(claims["nonce"], params["nonce"].as_str());
        let expires_at = tokens.access_token_expires_at.expect("expires_in is kept");
        assert!(
            (started + 590..=now() + 600).contains(&expires_at),
            "access token expiry {expires_at}, signed in at {started}"
        );
        let refresh1 = tokens.refresh_token.clone().expect("a refresh token");

        // The provider agrees that both tokens are live and belong to alice and this client.
        let at = introspect(&issuer, &tokens.access_token, "access_token").await;
        assert_eq!(at["active"], true, "{at}");
        assert_eq!(at["sub"], "alice", "{at}");
        assert_eq!(at["client_id"], CLIENT_ID, "{at}");
        let rt = introspect(&issuer, &refresh1, "refresh_token").await;
        assert_eq!(rt["active"], true, "{rt}");
        assert_eq!(rt["sub"], "alice", "{rt}");

        // Refresh: a new access token and a rotated refresh token; the old one is spent.
        let refreshed = provider
            .refresh(
                "alice",
                &refresh1,
                &SignInBinding::of_account(&issuer, "alice", CLIENT_ID),
            )
            .await
            .unwrap();
        assert_eq!(refreshed.subject, "alice");
        assert_ne!(
            refreshed.access_token.expose_secret(),
            tokens.access_token.expose_secret()
        );
        let refresh2 = refreshed.refresh_token.clone().expect("a refresh token");
        assert_ne!(
            refresh2.expose_secret(),
            refresh1.expose_secret(),
            "the refresh token is rotated"
        );
        assert_eq!(jwt_part(&refreshed.id_token, 1)["sub"], "alice");
        let rt = introspect(&issuer, &refresh1, "refresh_token").await;
        assert_eq!(rt["active"], false, "the rotated-out refresh token: {rt}");
        let rt = introspect(&issuer, &refresh2, "refresh_token").await;
        assert_eq!(rt["active"], true, "{rt}");
        let at = introspect(&issuer, &refreshed.access_token, "access_token").await;
        assert_eq!(at["active"], true, "{at}");

        // Revocation (RFC 7009): the refresh token is dead at the provider, a refresh with it
        // signs the account out, and the grant's access token goes with it (RFC 7009 §2.1).
        provider.revoke(&refresh2).await.unwrap();
        let rt = introspect(&issuer, &refresh2, "refresh_token").await;
        assert_eq!(rt["active"], false, "the revoked refresh token: {rt}");
        let at = introspect(&issuer, &refreshed.access_token, "access_token").await;
        assert_eq!(
            at["active"], false,
            "an access token of the revoked grant: {at}"
        );
        let err = provider
            .refresh(
                "alice",
                &refresh2,
                &SignInBinding::of_account(&issuer, "alice", CLIENT_ID),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, SessionError::ReauthenticationRequired { ref account, .. } if account == "alice"),
            "{err:?}"
        );
        // Revoking an already revoked token is not an error (RFC 7009 §2.2).
        provider.revoke(&refresh2).await.unwrap();
    }

    #[tokio::test]
    async fn oidc_provider_serves_a_session_manager_from_sign_in_to_logout() {
        // The SessionManager apps embed, without a registry: sign in, a token on demand, a
        // proactive refresh near expiry, and a logout that revokes at the provider.
        use account_store::{AccountStore, ItemKind};
        use session_core::{
            DeviceIdentity, LoginMethod, LoginRequest, LogoutScope, ManagerOptions, SessionManager,
            SessionState, UnavailableReason,
        };
        use std::sync::Arc;

        let (_child, issuer) = start_oidc_provider().await;
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(lanyard_clock::ManualClock::new());
        let store = AccountStore::with_backend(
            dir.path(),
            "default",
            Box::new(account_store::memory::MemoryStore::new()),
        )
        .unwrap();
        let manager = SessionManager::new(
            store,
            ManagerOptions::new(
                DeviceIdentity {
                    id: "laptop".into(),
                    name: "the laptop".into(),
                    platform: "linux".into(),
                },
                clock.clone(),
                dir.path().join("locks"),
            ),
        );
        let (report, mut reports) = mpsc::unbounded_channel();
        let prompt = browser("dave", report);
        let meta = manager
            .login(
                LoginRequest {
                    issuer: issuer.clone(),
                    client_id: CLIENT_ID.into(),
                    registry_url: None,
                    tenant: None,
                },
                LoginMethod::Browser(&prompt, Duration::from_secs(30)),
            )
            .await
            .unwrap();
        let run = reports.try_recv().unwrap().unwrap();
        assert_eq!(run.prompts, ["login", "consent"]);
        assert_eq!(meta.id.subject.as_str(), "dave");
        assert_eq!(meta.id.issuer.as_str(), issuer);
        assert_eq!(meta.email.as_deref(), Some("dave@interop.example"));
        assert!(
            !meta.no_refresh_token,
            "prompt=consent brought a refresh token"
        );
        assert_eq!(
            *manager.state(&meta.key).borrow(),
            SessionState::Unavailable {
                reason: UnavailableReason::NoRegistry
            }
        );

        let first = manager.access_token(None).await.unwrap();
        let again = manager.access_token(None).await.unwrap();
        assert_eq!(
            first.expose_secret(),
            again.expose_secret(),
            "a fresh token is served as is"
        );
        let at = introspect(&issuer, &first, "access_token").await;
        assert_eq!(at["active"], true, "{at}");
        let refresh1 = manager
            .store()
            .secrets()
            .require(&meta.key, ItemKind::RefreshToken)
            .unwrap();

        // Within five minutes of the ten-minute expiry: the manager refreshes first.
        clock.advance(time::Duration::minutes(6));
        let second = manager.access_token(None).await.unwrap();
        assert_ne!(second.expose_secret(), first.expose_secret());
        let at = introspect(&issuer, &second, "access_token").await;
        assert_eq!(at["active"], true, "{at}");
        assert_eq!(at["sub"], "dave", "{at}");
        let refresh2 = manager
            .store()
            .secrets()
            .require(&meta.key, ItemKind::RefreshToken)
            .unwrap();
        assert_ne!(refresh2.expose_secret(), refresh1.expose_secret());

        let report = manager
            .logout(LogoutScope::Account(meta.key.clone()))
            .await
            .unwrap();
        assert_eq!(report.removed, std::slice::from_ref(&meta.key));
        assert!(report.not_revoked.is_empty(), "{:?}", report.not_revoked);
        let rt = introspect(&issuer, &refresh2, "refresh_token").await;
        assert_eq!(
            rt["active"], false,
            "logout revoked the refresh token: {rt}"
        );
        assert!(manager.accounts().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn oidc_provider_reuse_of_a_rotated_refresh_token_signs_the_account_out() {
        let (_child, issuer) = start_oidc_provider().await;
        let provider = Provider::discover(&issuer, CLIENT_ID).await.unwrap();
        let (tokens, _) = sign_in(&provider, "bob").await;
        assert_eq!(tokens.subject, "bob");
        let refresh1 = tokens.refresh_token.expect("a refresh token");
        let refresh2 = provider
            .refresh(
                "bob",
                &refresh1,
                &SignInBinding::of_account(&issuer, "bob", CLIENT_ID),
            )
            .await
            .unwrap()
            .refresh_token
            .expect("a rotated refresh token");

        // Presenting the spent token again is reuse: invalid_grant, the account must sign in
        // again, and the provider ends the whole grant, so the current token dies too.
        let err = provider
            .refresh(
                "bob",
                &refresh1,
                &SignInBinding::of_account(&issuer, "bob", CLIENT_ID),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, SessionError::ReauthenticationRequired { .. }),
            "{err:?}"
        );
        let rt = introspect(&issuer, &refresh2, "refresh_token").await;
        assert_eq!(rt["active"], false, "the grant is revoked on reuse: {rt}");
        let err = provider
            .refresh(
                "bob",
                &refresh2,
                &SignInBinding::of_account(&issuer, "bob", CLIENT_ID),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, SessionError::ReauthenticationRequired { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn oidc_provider_rejects_a_refresh_for_another_subject_in_session_core() {
        // A refreshed ID token naming someone else must never be accepted for this account.
        let (_child, issuer) = start_oidc_provider().await;
        let provider = Provider::discover(&issuer, CLIENT_ID).await.unwrap();
        let (tokens, _) = sign_in(&provider, "carol").await;
        let refresh = tokens.refresh_token.expect("a refresh token");
        let err = provider
            .refresh(
                "carol",
                &refresh,
                &SignInBinding::of_account(&issuer, "mallory", CLIENT_ID),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, SessionError::ReauthenticationRequired { .. }),
            "{err:?}"
        );
    }
}
