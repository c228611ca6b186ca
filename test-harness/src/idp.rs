//! The mock IdP for a test: in process ([`TestIdp`]), or as a child process of the real
//! `mock-idp` binary ([`IdpProcess`]), both reached over HTTP through [`IdpEndpoint`].

use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use mock_idp::clock::{ManualClock, SharedClock, SystemClock};
use mock_idp::config::DEV_ADMIN_TOKEN;
use mock_idp::{Application, IdpConfig, Settings};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::process::ChildServices;

/// What a test does with a running mock IdP over HTTP, wherever it runs: its issuers, its admin
/// API (faults, audit) and the login flow. [`TestIdp`] and [`IdpProcess`] dereference to it.
pub struct IdpEndpoint {
    pub base_url: String,
    pub http: reqwest::Client,
}

impl IdpEndpoint {
    fn new(base_url: String) -> Self {
        Self {
            base_url,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("http client"),
        }
    }

    /// The issuer of `tenant`.
    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.base_url)
    }

    /// Calls the admin API: `method` on `/admin/{path}` with an optional JSON body.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("{}/admin/{path}", self.base_url))
            .bearer_auth(DEV_ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("admin call reaches the IdP")
    }

    /// Injects a fault into `tenant` and returns its id.
    pub async fn inject_fault(&self, tenant: &str, spec: Value) -> String {
        let res = self
            .admin(
                reqwest::Method::POST,
                &format!("tenants/{tenant}/faults"),
                Some(spec),
            )
            .await;
        assert_eq!(res.status(), 201, "fault accepted");
        let v: Value = res.json().await.expect("fault json");
        v["id"].as_str().expect("fault id").to_owned()
    }

    pub async fn clear_faults(&self, tenant: &str) {
        let res = self
            .admin(
                reqwest::Method::DELETE,
                &format!("tenants/{tenant}/faults"),
                None,
            )
            .await;
        assert!(res.status().is_success());
    }

    /// The tenant's audit log: `{events: [...], counters: {...}}`.
    pub async fn audit(&self, tenant: &str) -> Value {
        self.admin(
            reqwest::Method::GET,
            &format!("tenants/{tenant}/audit"),
            None,
        )
        .await
        .json()
        .await
        .expect("audit json")
    }

    /// A complete authorization-code login (PKCE S256, the login form posted as a browser would)
    /// for `username` through the public client `client_id`; returns the token response.
    pub async fn login(&self, tenant: &str, username: &str, client_id: &str) -> Value {
        login(&self.issuer(tenant), username, client_id).await
    }
}

/// The mock IdP in the test's own process, on `127.0.0.1:0`: for tests that read its state or
/// move its clock.
pub struct TestIdp {
    pub addr: std::net::SocketAddr,
    pub state: actix_web::web::Data<mock_idp::state::IdpState>,
    handle: actix_web::dev::ServerHandle,
    /// The clock the IdP reads, when spawned with [`TestIdp::spawn_with_manual_clock`].
    pub clock: Option<Arc<ManualClock>>,
    endpoint: IdpEndpoint,
}

impl Deref for TestIdp {
    type Target = IdpEndpoint;

    fn deref(&self) -> &IdpEndpoint {
        &self.endpoint
    }
}

impl TestIdp {
    /// The default tenants, users and clients, on the wall clock.
    pub async fn spawn() -> Self {
        Self::spawn_with(IdpConfig::defaults(), Arc::new(SystemClock), None).await
    }

    /// The defaults, on a clock the test moves.
    pub async fn spawn_with_manual_clock() -> Self {
        let clock = Arc::new(ManualClock::new());
        Self::spawn_with(IdpConfig::defaults(), clock.clone(), Some(clock)).await
    }

    pub async fn spawn_with_config(config: IdpConfig) -> Self {
        Self::spawn_with(config, Arc::new(SystemClock), None).await
    }

    async fn spawn_with(
        config: IdpConfig,
        clock: SharedClock,
        manual: Option<Arc<ManualClock>>,
    ) -> Self {
        let settings = Settings::for_tests();
        let app = Application::build_with(&settings, &config, clock).expect("mock IdP builds");
        let (base_url, addr, state, handle) = (
            app.base_url().to_owned(),
            app.addr(),
            app.state(),
            app.handle(),
        );
        tokio::spawn(app.run_until_stopped());
        Self {
            addr,
            state,
            handle,
            clock: manual,
            endpoint: IdpEndpoint::new(base_url),
        }
    }

    /// Stops the server (connections are refused afterwards).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

/// The real `mock-idp` binary as a child process on `127.0.0.1:0` (a loopback address, so its
/// admin API takes the dev admin token): for tests whose every party is a process of its own. Killed when dropped.
pub struct IdpProcess {
    endpoint: IdpEndpoint,
    _service: ChildServices,
    /// The config file it read, kept for its lifetime.
    _config: tempfile::TempDir,
}

impl Deref for IdpProcess {
    type Target = IdpEndpoint;

    fn deref(&self) -> &IdpEndpoint {
        &self.endpoint
    }
}

impl IdpProcess {
    /// Starts `binary` (the workspace's `mock-idp`, see [`crate::process::workspace_binary`])
    /// seeded with `config`, written to a TOML file it reads with `--config`, and waits for its
    /// readiness line; an error if it cannot be started or never says it is ready.
    pub async fn start(binary: &Path, config: &IdpConfig) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("mock-idp.toml");
        std::fs::write(&path, config_file(config)?)?;
        let mut command = tokio::process::Command::new(binary);
        command
            .args(["--bind", "127.0.0.1:0", "--config"])
            .arg(&path)
            .stderr(std::process::Stdio::inherit());
        // The settings are the arguments alone: a developer's MOCK_IDP_* (a public URL, an admin
        // token) would change the issuers or lock the test out of the admin API.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("MOCK_IDP_") {
                command.env_remove(&name);
            }
        }
        let services = ChildServices::start(command, &["mock-idp"]).await?;
        let base_url = services
            .base_url("mock-idp")
            .ok_or_else(|| anyhow::anyhow!("no readiness line from mock-idp"))?;
        Ok(Self {
            endpoint: IdpEndpoint::new(base_url),
            _service: services,
            _config: dir,
        })
    }
}

/// `config` as the TOML file `mock-idp --config` reads. Serializing the config redacts its
/// secrets (users' passwords, clients' secrets), so they are put back from `config` here.
fn config_file(config: &IdpConfig) -> Result<String, toml::ser::Error> {
    let mut file = toml::Value::try_from(config)?;
    let tenants = file.get_mut("tenants").and_then(toml::Value::as_array_mut);
    for (tenant, written) in config.tenants.iter().zip(tenants.into_iter().flatten()) {
        let users = written.get_mut("users").and_then(toml::Value::as_array_mut);
        for (user, written) in tenant.users.iter().zip(users.into_iter().flatten()) {
            written["password"] = user.password.expose_secret().into();
        }
        let clients = written
            .get_mut("clients")
            .and_then(toml::Value::as_array_mut);
        for (client, written) in tenant.clients.iter().zip(clients.into_iter().flatten()) {
            if let (Some(secret), Some(table)) = (&client.secret, written.as_table_mut()) {
                table.insert("secret".into(), secret.expose_secret().into());
            }
        }
    }
    toml::to_string(&file)
}

/// A complete authorization-code login at the mock IdP issuer `issuer` (e.g.
/// `http://127.0.0.1:8700/acme`, wherever that IdP runs: in process or as a child): PKCE S256, the
/// login form posted as a browser would, with the dev password, for `username` through the public
/// client `client_id`; returns the token response.
pub async fn login(issuer: &str, username: &str, client_id: &str) -> Value {
    login_in(&browser(), issuer, username, client_id).await
}

/// A client that behaves as a browser for the login flow: it keeps cookies (the IdP session)
/// and does not follow redirects (the test reads them). Idle connections are dropped after 2 s,
/// before the IdP's keep-alive (actix's 5 s) closes them: a request sent on a connection the
/// server is closing that moment fails with no answer (hyper's `IncompleteMessage`; seen in
/// bench/soak.sh, whose simulated people keep their browser for the whole run).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// [`login`] in an existing [`browser`] that has no IdP session at `issuer` yet (the flow
/// expects the login form). The session it opens stays in the browser for further authorization
/// requests (single sign-on, other clients joining the session).
pub async fn login_in(
    browser: &reqwest::Client,
    issuer: &str,
    username: &str,
    client_id: &str,
) -> Value {
    through_the_form(browser, issuer, username, client_id, None).await
}

/// A step-up in `browser`, as a person makes one: `prompt=login` (the form, even with the
/// browser's IdP session), the password again, in the same IdP session when it is `username`'s.
/// Returns the token response (its ID token's `auth_time` is now).
pub async fn sign_in_again(
    browser: &reqwest::Client,
    issuer: &str,
    username: &str,
    client_id: &str,
) -> Value {
    through_the_form(browser, issuer, username, client_id, Some("login")).await
}

/// An authorization request (with `prompt` if given) answered by the login form, the form
/// posted as `username`, the code redeemed: the token response.
async fn through_the_form(
    browser: &reqwest::Client,
    issuer: &str,
    username: &str,
    client_id: &str,
    prompt: Option<&str>,
) -> Value {
    let verifier = mock_idp::random::token();
    let page = authorize(browser, issuer, client_id, &verifier, prompt)
        .await
        .text()
        .await
        .expect("login page");
    let location = submit_login_form(browser, issuer, &page, username).await;
    redeem(issuer, client_id, &location, &verifier).await
}

/// A code-flow sign-in in `browser` as a person does it day to day: with the browser's IdP
/// session if it has one (single sign-on: no form, no new session), else through the login form
/// as `username`, which opens one. Returns the token response.
pub async fn sign_in_with_session(
    browser: &reqwest::Client,
    issuer: &str,
    username: &str,
    client_id: &str,
) -> Value {
    let verifier = mock_idp::random::token();
    let res = authorize(browser, issuer, client_id, &verifier, None).await;
    let location = match res.headers().get("location").and_then(|v| v.to_str().ok()) {
        Some(location) if location.contains("code=") => location.to_owned(),
        _ => {
            let page = res.text().await.expect("login page");
            submit_login_form(browser, issuer, &page, username).await
        }
    };
    redeem(issuer, client_id, &location, &verifier).await
}

/// The helpers' code-flow client: a fixed loopback callback nobody listens on.
const REDIRECT: &str = "http://127.0.0.1:53682/callback";

/// The authorization request of the helpers' code flow (PKCE S256, fixed state and nonce, and
/// `prompt` if given) in `browser`.
async fn authorize(
    browser: &reqwest::Client,
    issuer: &str,
    client_id: &str,
    verifier: &str,
    prompt: Option<&str>,
) -> reqwest::Response {
    let challenge = mock_idp::pkce::s256(verifier);
    let mut query = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "openid profile email offline_access"),
        ("state", "s"),
        ("nonce", "n"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    query.extend(prompt.map(|p| ("prompt", p)));
    browser
        .get(format!("{issuer}/authorize"))
        .query(&query)
        .send()
        .await
        .expect("authorize")
}

/// Trades the code in `location` (the redirect to the client's callback) at the token endpoint.
async fn redeem(issuer: &str, client_id: &str, location: &str, verifier: &str) -> Value {
    let code = url::Url::parse(location)
        .expect("redirect URL")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    // The token request is the client's back channel: no browser cookies.
    reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token response")
}

/// Posts the login form of `page` (a login page of `issuer`) as `username` with the dev
/// password; returns the redirect's `Location`: the client's callback carrying the code.
async fn submit_login_form(
    browser: &reqwest::Client,
    issuer: &str,
    page: &str,
    username: &str,
) -> String {
    let marker = r#"name="auth_request" value=""#;
    let start = page.find(marker).expect("a login page") + marker.len();
    let id = &page[start..start + page[start..].find('"').expect("closing quote")];
    let res = browser
        .post(format!("{issuer}/login"))
        .form(&[
            ("auth_request", id),
            ("username", username),
            ("password", mock_idp::config::DEV_PASSWORD),
        ])
        .send()
        .await
        .expect("login");
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a redirect with a code")
        .to_owned()
}

/// Plays the person at the browser for an authorization URL a client produced: opens it,
/// signs in as `username` and follows the redirect back to the client's callback (its loopback
/// listener, say). Returns the callback's answer status.
pub async fn sign_in_at(authorization_url: &str, username: &str) -> reqwest::StatusCode {
    let browser = browser();
    let url = url::Url::parse(authorization_url).expect("an authorization URL");
    let issuer = format!(
        "{}://{}{}",
        url.scheme(),
        url.authority(),
        url.path().trim_end_matches("/authorize")
    );
    let page = browser
        .get(url.as_str())
        .send()
        .await
        .expect("authorize")
        .text()
        .await
        .expect("login page");
    let callback = submit_login_form(&browser, &issuer, &page, username).await;
    browser
        .get(callback)
        .send()
        .await
        .expect("the client's callback answers")
        .status()
}

/// A guest sign-in at the mock IdP `issuer` (authorization code + PKCE with `prompt=create`,
/// which signs in a new guest without the form) through the public client `client_id`; returns
/// the token response (its ID token carries `is_guest: true`).
pub async fn guest_login(issuer: &str, client_id: &str) -> Value {
    let verifier = mock_idp::random::token();
    let res = authorize(&browser(), issuer, client_id, &verifier, Some("create")).await;
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("prompt=create redirects with a code");
    redeem(issuer, client_id, location, &verifier).await
}

/// Plays the browser for an authorization URL that asks for a guest (`prompt=create`): opens
/// it and follows the redirect back to the client's callback. Returns the callback's status.
pub async fn continue_as_guest_at(authorization_url: &str) -> reqwest::StatusCode {
    let browser = browser();
    let res = browser
        .get(authorization_url)
        .send()
        .await
        .expect("authorize");
    let callback = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("prompt=create redirects to the client's callback")
        .to_owned();
    browser
        .get(callback)
        .send()
        .await
        .expect("the client's callback answers")
        .status()
}

/// `POST {issuer}/guest/upgrade` with the guest's access token; returns status and body.
pub async fn upgrade_guest(issuer: &str, access_token: &str, body: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(format!("{issuer}/guest/upgrade"))
        .bearer_auth(access_token)
        .json(&body)
        .send()
        .await
        .expect("upgrade request");
    (
        res.status().as_u16(),
        res.json().await.unwrap_or(Value::Null),
    )
}

/// A refresh-token grant for the public client `client_id`; returns the token response.
pub async fn refresh(issuer: &str, client_id: &str, refresh_token: &str) -> Value {
    reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", client_id),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token response")
}
