//! Shared by the `lanyard` end-to-end tests: the real mock IdP and registry (embedded SQLite,
//! tenants `acme` and `globex`), a home folder per test, and the binary run in it with a
//! passphrase vault and nothing from the developer's environment.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use test_harness::TestIdp;
use tokio::io::{AsyncBufReadExt, BufReader};

pub struct Stack {
    pub idp: TestIdp,
    pub registry: String,
    /// The registry's event hub: how many event streams are attached.
    pub hub: Arc<session_registry::events::Hub>,
    pub home: tempfile::TempDir,
    _db: tempfile::TempDir,
}

pub async fn stack() -> Stack {
    stack_with(TestIdp::spawn().await).await
}

pub async fn stack_with(idp: TestIdp) -> Stack {
    stack_on(idp, Arc::new(lanyard_clock::SystemClock)).await
}

/// The registry on `clock`, its tenants `acme` and `globex` trusting `idp` for `lanyard-cli`
/// with a one-hour idle and one-day absolute timeout.
async fn stack_on(idp: TestIdp, clock: Arc<dyn lanyard_clock::Clock>) -> Stack {
    use session_registry::config::{default_max_age, RegistryConfig, TenantConfig};
    let db = tempfile::tempdir().unwrap();
    let tenant = |slug: &str| TenantConfig {
        slug: slug.into(),
        issuer: idp.issuer(slug),
        audiences: vec!["lanyard-cli".into()],
        idle_timeout_secs: 3600,
        absolute_timeout_secs: 86_400,
        max_id_token_age_secs: default_max_age(),
        max_auth_age_secs: default_max_age(),
        api_key: None,
    };
    let config = RegistryConfig {
        key_dir: None,
        tenants: vec![tenant("acme"), tenant("globex")],
        web_clients: vec![],
    };
    let app = session_registry::Application::build_with(
        &session_registry::Settings::for_tests(&format!("sqlite://{}/r.db", db.path().display())),
        &config,
        clock,
    )
    .await
    .unwrap();
    let registry = app.base_url().to_owned();
    let hub = app.registry().hub.clone();
    tokio::spawn(app.run_until_stopped());
    Stack {
        idp,
        registry,
        hub,
        home: tempfile::tempdir().unwrap(),
        _db: db,
    }
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lanyard"))
}

impl Stack {
    /// The test's home and services for a `lanyard` process, and nothing of the developer's
    /// (account pin, keyring bus, colour settings, upgrade password).
    pub fn isolate<'c>(
        &self,
        c: &'c mut tokio::process::Command,
    ) -> &'c mut tokio::process::Command {
        c.env("LANYARD_HOME", self.home.path())
            .env("LANYARD_NO_BROWSER", "1")
            .env("LANYARD_STORE_BACKEND", "vault")
            .env("LANYARD_VAULT_PASSPHRASE", "test passphrase")
            .env("LANYARD_IDP", &self.idp.base_url)
            .env("LANYARD_REGISTRY", &self.registry)
            .env_remove("LANYARD_ACCOUNT")
            .env_remove("LANYARD_UPGRADE_PASSWORD")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("CLICOLOR")
            .current_dir(self.home.path())
            .kill_on_drop(true)
    }

    pub fn cmd(&self, profile: &str, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(bin());
        c.args(["--profile", profile]).args(args);
        self.isolate(&mut c);
        c
    }

    pub async fn run(&self, profile: &str, args: &[&str]) -> Output {
        self.cmd(profile, args).output().await.unwrap()
    }
}

/// The authorization URL `lanyard login` prints (the rest of its stderr is drained).
pub async fn read_url(stderr: tokio::process::ChildStderr) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("Open this URL to sign in: ") {
                return url.to_owned();
            }
        }
        panic!("lanyard login printed no URL")
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// [`stack_with`], the registry on a manual clock of its own (returned) that the test moves.
pub async fn stack_with_registry_clock(idp: TestIdp) -> (Stack, Arc<lanyard_clock::ManualClock>) {
    let clock = Arc::new(lanyard_clock::ManualClock::new());
    (stack_on(idp, clock.clone()).await, clock)
}

/// Waits until at least `n` event streams are attached to the stack's registry: a revoke stored
/// before a stream attaches is history to it, never pushed. Fails after 15 s.
pub async fn event_streams_attached(s: &Stack, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while s.hub.subscribers() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} event streams attached within 15 s (found {})",
            s.hub.subscribers()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Moves the stored expiry of `profile`'s access tokens `by` seconds earlier: to a `lanyard`
/// process, which decides on the expiry the index records and its wall clock, that is `by`
/// seconds passing (the binary has no test clock to move instead).
pub fn age_access_tokens(s: &Stack, profile: &str, by: i64) {
    let index = s
        .home
        .path()
        .join("data/profiles")
        .join(profile)
        .join("accounts.json");
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    for account in file["accounts"].as_array_mut().unwrap() {
        let at = account["access_token_expires_at"].as_i64().unwrap();
        account["access_token_expires_at"] = (at - by).into();
    }
    std::fs::write(&index, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
}

/// The authorization URL a `lanyard` command prints, and every stderr line of the command
/// (once it has ended).
pub async fn read_url_and_stderr(
    stderr: tokio::process::ChildStderr,
) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.clone());
            if let Some(url) = line.strip_prefix("Open this URL to sign in: ") {
                return url.to_owned();
            }
        }
        panic!("no sign-in URL printed: {seen:?}")
    })
    .await
    .unwrap();
    let rest = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
        }
        seen
    });
    (url, rest)
}

/// What the IdP did with an authorization request.
pub enum Authorize {
    /// It showed the login form (this request's id in it).
    LoginForm {
        issuer: String,
        auth_request: String,
    },
    /// Its session answered at once: the redirect to the client's callback.
    Redirect(String),
}

/// A browser that keeps its cookies (the IdP session) from one sign-in to the next.
pub struct Browser(pub reqwest::Client);

impl Browser {
    pub fn new() -> Self {
        Self(test_harness::idp::browser())
    }

    pub async fn open(&self, authorization_url: &str) -> Authorize {
        let url = url::Url::parse(authorization_url).unwrap();
        let issuer = format!(
            "{}://{}{}",
            url.scheme(),
            url.authority(),
            url.path().trim_end_matches("/authorize")
        );
        let res = self.0.get(url.as_str()).send().await.unwrap();
        if res.status().is_redirection() {
            return Authorize::Redirect(location(&res));
        }
        let page = res.text().await.unwrap();
        let marker = r#"name="auth_request" value=""#;
        let start = page.find(marker).expect("a login page") + marker.len();
        let auth_request = page[start..].split('"').next().unwrap().to_owned();
        Authorize::LoginForm {
            issuer,
            auth_request,
        }
    }

    /// Fills the login form as `user`; returns the redirect to the client's callback.
    pub async fn submit(&self, issuer: &str, auth_request: &str, user: &str) -> String {
        let res = self
            .0
            .post(format!("{issuer}/login"))
            .form(&[
                ("auth_request", auth_request),
                ("username", user),
                ("password", mock_idp::config::DEV_PASSWORD),
            ])
            .send()
            .await
            .unwrap();
        location(&res)
    }

    /// Follows the redirect to the client's loopback callback.
    pub async fn follow(&self, callback: &str) {
        self.0.get(callback).send().await.unwrap();
    }
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a redirect")
        .to_owned()
}

/// Points `profile`'s stored registry at `to`.
pub fn move_registry(s: &Stack, profile: &str, to: &str) {
    let index = s
        .home
        .path()
        .join("data/profiles")
        .join(profile)
        .join("accounts.json");
    let text = std::fs::read_to_string(&index)
        .unwrap()
        .replace(&s.registry, to);
    std::fs::write(&index, text).unwrap();
}

/// An HTTP/1.1 proxy to `target` that moves `clock` by `by` once a request to `after` has
/// been answered with a success: time passing at a chosen step of a conversation.
pub async fn clock_moving_proxy(
    target: String,
    clock: std::sync::Arc<lanyard_clock::ManualClock>,
    after: &'static str,
    by: time::Duration,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        while let Ok((conn, _)) = listener.accept().await {
            let (http, target, clock) = (http.clone(), target.clone(), clock.clone());
            tokio::spawn(async move {
                let _ = proxy_connection(conn, &http, &target, &clock, after, by).await;
            });
        }
    });
    url
}

async fn proxy_connection(
    conn: tokio::net::TcpStream,
    http: &reqwest::Client,
    target: &str,
    clock: &lanyard_clock::ManualClock,
    after: &str,
    by: time::Duration,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (read, mut write) = conn.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
                if name == "content-length" {
                    length = value.parse().unwrap_or(0);
                }
                if !matches!(name.as_str(), "host" | "connection" | "content-length") {
                    headers.push((name, value));
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let mut forwarded = http.request(method.parse().unwrap(), format!("{target}{path}"));
        for (name, value) in headers {
            forwarded = forwarded.header(name, value);
        }
        let res = forwarded.body(body).send().await.unwrap();
        let status = res.status();
        let answer_headers: Vec<(String, String)> = res
            .headers()
            .iter()
            .filter(|(n, _)| {
                !matches!(
                    n.as_str(),
                    "content-length" | "transfer-encoding" | "connection"
                )
            })
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let answer = res.bytes().await.unwrap();
        if path == after && status.is_success() {
            clock.advance(by);
        }
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        for (n, v) in answer_headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", answer.len()));
        write.write_all(head.as_bytes()).await?;
        write.write_all(&answer).await?;
    }
}
