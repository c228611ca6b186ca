//! The mock IdP, spawned in process for a test.

use std::sync::Arc;

use mock_idp::clock::{ManualClock, SharedClock, SystemClock};
use mock_idp::config::DEV_ADMIN_TOKEN;
use mock_idp::{Application, IdpConfig, Settings};
use serde_json::Value;

pub struct TestIdp {
    pub base_url: String,
    pub addr: std::net::SocketAddr,
    pub state: actix_web::web::Data<mock_idp::state::IdpState>,
    handle: actix_web::dev::ServerHandle,
    /// The clock the IdP reads, when spawned with [`TestIdp::spawn_with_manual_clock`].
    pub clock: Option<Arc<ManualClock>>,
    pub http: reqwest::Client,
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
            base_url,
            addr,
            state,
            handle,
            clock: manual,
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

    /// Stops the server (connections are refused afterwards).
    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}
