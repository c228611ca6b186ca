//! Spawning a registry (Postgres or SQLite) wired to a mock IdP, and device helpers.

use std::sync::Arc;

use lanyard_clock::ManualClock;
use serde_json::{json, Value};
use session_registry::config::{EventsSetting, RegistryConfig, TenantConfig, WebClientConfig};
use session_registry::{Application, Settings};
use test_harness::{TestDatabase, TestIdp};

pub const API_KEY: &str = "acme-admin-key";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    /// Postgres with events through the outbox and NATS JetStream (`--events nats://…`), on a
    /// deployment of the test's own.
    Nats,
    Sqlite,
}

pub struct TestRegistry {
    pub base_url: String,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    pub db: Option<Arc<TestDatabase>>,
    pub database_url: String,
    /// The registry itself, for what has no HTTP route (garbage collection).
    pub registry: actix_web::web::Data<session_registry::service::Registry>,
    /// What it was started with (a sibling starts with the same).
    pub settings: Settings,
    _dir: Option<tempfile::TempDir>,
}

pub fn tenants(idp: &TestIdp) -> RegistryConfig {
    let tenant = |slug: &str| TenantConfig {
        slug: slug.into(),
        issuer: idp.issuer(slug),
        audiences: vec!["lanyard-cli".into(), "rp".into(), "lanyard-registry".into()],
        idle_timeout_secs: 3600,
        absolute_timeout_secs: 24 * 3600,
        max_id_token_age_secs: session_registry::config::default_max_age(),
        max_auth_age_secs: session_registry::config::default_max_age(),
        api_key: Some(secrecy::SecretString::from(format!("{slug}-admin-key"))),
    };
    RegistryConfig {
        key_dir: None,
        tenants: vec![tenant("acme"), tenant("globex")],
        web_clients: vec![WebClientConfig {
            tenant: "acme".into(),
            client_id: "lanyard-registry".into(),
            client_secret: secrecy::SecretString::from(mock_idp::config::DEV_REGISTRY_SECRET),
        }],
    }
}

impl TestRegistry {
    pub async fn spawn(idp: &TestIdp, backend: Backend) -> Self {
        Self::spawn_with(idp, backend, |_| {}).await
    }

    /// As [`TestRegistry::spawn`], with `settings` changed by `adjust` first.
    pub async fn spawn_with(
        idp: &TestIdp,
        backend: Backend,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        match backend {
            Backend::Postgres => {
                let db = Arc::new(TestDatabase::create().await);
                let url = db.url.clone();
                Self::spawn_on(idp, &url, Some(db), None, adjust).await
            }
            Backend::Nats => {
                let db = Arc::new(TestDatabase::create().await);
                let url = db.url.clone();
                Self::spawn_on(idp, &url, Some(db), None, |s| {
                    s.events = EventsSetting::Nats(test_harness::nats::nats_url());
                    s.deployment = test_harness::nats::unique_deployment();
                    adjust(s)
                })
                .await
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/registry.db", dir.path().display());
                Self::spawn_on(idp, &url, None, Some(dir), adjust).await
            }
        }
    }

    /// A registry on a database the test provides (a private Postgres server, say).
    pub async fn spawn_on_url(idp: &TestIdp, url: &str) -> Self {
        Self::spawn_on(idp, url, None, None, |_| {}).await
    }

    /// As [`TestRegistry::spawn_on_url`], with `settings` changed by `adjust` first.
    pub async fn spawn_on_url_with(
        idp: &TestIdp,
        url: &str,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::spawn_on(idp, url, None, None, adjust).await
    }

    /// A second registry process on the same database (Postgres), with the same settings (the
    /// same event feed).
    pub async fn spawn_sibling(&self, idp: &TestIdp) -> Self {
        let settings = self.settings.clone();
        Self::spawn_on(
            idp,
            &self.database_url.clone(),
            self.db.clone(),
            None,
            move |s| {
                s.events = settings.events;
                s.deployment = settings.deployment;
                s.public_url = settings.public_url;
            },
        )
        .await
    }

    async fn spawn_on(
        idp: &TestIdp,
        url: &str,
        db: Option<Arc<TestDatabase>>,
        dir: Option<tempfile::TempDir>,
        adjust: impl FnOnce(&mut Settings),
    ) -> Self {
        // Logs are captured per test and shown only when it fails.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("session_registry=info")
            .try_init();
        let mut settings = Settings::for_tests(url);
        adjust(&mut settings);
        let clock = Arc::new(ManualClock::new());
        let app = Application::build_with(&settings, &tenants(idp), clock.clone())
            .await
            .expect("registry builds");
        // Where it listens (its public URL, the `iss` of its JWTs, may name a load balancer).
        let base_url = format!("http://{}", app.addr());
        let registry = app.registry();
        tokio::spawn(app.run_until_stopped());
        Self {
            base_url,
            clock,
            http: reqwest::Client::new(),
            db,
            database_url: url.to_owned(),
            registry,
            settings,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The `/metrics` page (Prometheus text).
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// `POST /v1/sessions` with a device; returns the status and body.
    pub async fn create(&self, id_token: &str, device: &str) -> (u16, Value) {
        let res = self
            .http
            .post(self.url("/v1/sessions"))
            .json(&json!({"id_token": id_token, "device": {"id": device, "name": format!("{device}'s laptop"), "platform": "linux"}}))
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// A device session for `user@tenant`: the session token (and the whole response).
    pub async fn device(
        &self,
        idp: &TestIdp,
        tenant: &str,
        user: &str,
        device: &str,
    ) -> (String, Value) {
        let tokens = idp.login(tenant, user, "lanyard-cli").await;
        let (status, body) = self
            .create(tokens["id_token"].as_str().unwrap(), device)
            .await;
        assert_eq!(status, 201, "{body}");
        (body["session_token"].as_str().unwrap().to_owned(), body)
    }

    pub async fn authenticate(&self, body: Value) -> (u16, Value, Option<String>) {
        let res = self
            .http
            .post(self.url("/v1/sessions/authenticate"))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, res.json().await.unwrap_or(Value::Null), challenge)
    }

    pub async fn get(&self, path: &str, bearer: &str) -> (u16, Value) {
        let res = self
            .http
            .get(self.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    pub async fn post(&self, path: &str, bearer: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(self.url(path))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            res.status().as_u16(),
            res.json().await.unwrap_or(Value::Null),
        )
    }

    /// `GET /v1/events` as `bearer`'s device: its event stream (subscribed once this returns).
    pub async fn events(&self, bearer: &str) -> crate::event_stream::EventStream {
        let res = self
            .http
            .get(self.url("/v1/events"))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "GET /v1/events");
        crate::event_stream::EventStream::new(res)
    }

    /// Admin listing of a tenant's sessions (all states).
    pub async fn admin_sessions(&self, tenant: &str) -> Vec<Value> {
        let (status, body) = self
            .get(
                &format!("/v1/admin/tenants/{tenant}/sessions"),
                &format!("{tenant}-admin-key"),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["sessions"].as_array().unwrap().clone()
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(time::Duration::seconds(secs));
    }
}

/// Runs an async test body on both backends.
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn on_postgres() {
                super::$name(crate::helpers::Backend::Postgres).await
            }
            #[tokio::test]
            async fn on_nats() {
                super::$name(crate::helpers::Backend::Nats).await
            }
            #[tokio::test]
            async fn on_sqlite() {
                super::$name(crate::helpers::Backend::Sqlite).await
            }
        }
    };
}
pub(crate) use on_both_backends;

/// Signs `claims` with `tenant`'s active IdP key, typed `typ`: a token the IdP could have
/// issued, of whatever kind the test needs.
/// A connection of its own holding `LOCK TABLE {table} IN {mode} MODE` in an open transaction:
/// what waits behind the lock waits until the caller sends COMMIT or ROLLBACK on it.
pub async fn lock_table(database_url: &str, table: &str, mode: &str) -> sqlx::PgConnection {
    use sqlx::{Connection, Executor};
    let mut locker = sqlx::PgConnection::connect(database_url).await.unwrap();
    locker.execute("BEGIN").await.unwrap();
    locker
        .execute(format!("LOCK TABLE {table} IN {mode} MODE").as_str())
        .await
        .unwrap();
    locker
}

pub fn sign_as_idp(idp: &TestIdp, tenant: &str, claims: &Value, typ: Option<&str>) -> String {
    let tenant = idp.state.tenant(tenant).unwrap();
    let key = tenant
        .keys
        .read()
        .active(jose_keys::SigningAlg::ES256)
        .expect("an ES256 key");
    mock_idp::jwt::sign(claims, &key, typ).unwrap()
}

/// The claims of a JWT, unverified.
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

impl TestRegistry {
    /// `POST path` with a JSON body and no credential beyond `headers`; status, challenge, body.
    pub async fn post_with(
        &self,
        path: &str,
        bearer: &str,
        body: Value,
    ) -> (u16, Option<String>, Value) {
        let res = self
            .http
            .post(self.url(path))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let challenge = res
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, challenge, res.json().await.unwrap_or(Value::Null))
    }
}

/// A registry config file in `dir` with tenant acme trusting `idp`'s issuer for `lanyard-cli`.
pub fn write_acme_config(dir: &std::path::Path, idp: &TestIdp) -> std::path::PathBuf {
    let config = dir.join("registry.toml");
    std::fs::write(
        &config,
        format!(
            "[[tenants]]\nslug = \"acme\"\nissuer = \"{}\"\naudiences = [\"lanyard-cli\"]\n",
            idp.issuer("acme")
        ),
    )
    .unwrap();
    config
}
