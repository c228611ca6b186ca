//! Starting the two services wired to each other, waiting until both answer, and stopping them.
//!
//! Each service needs the other's URL: the registry's tenants trust the IdP's issuers, and the
//! IdP posts back-channel logout tokens to the registry. With port 0 neither URL is known before
//! its server binds, so the registry binds first (no tenants yet), the IdP is configured with the
//! registry's real URL, and then the registry's tenants are written with the IdP's real issuers —
//! all before either readiness line is printed.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use lanyard_clock::SystemClock;
use secrecy::SecretString;
use session_registry::config::{RegistryConfig, TenantConfig};
use tokio::task::JoinHandle;

use crate::options::{Database, InvalidDatabaseUrl, NonUtf8Path, Options};

/// The audiences the registry accepts in ID tokens: the CLI's and the registry's own client.
pub const AUDIENCES: [&str; 2] = ["lanyard-cli", REGISTRY_CLIENT];
/// The IdP client the registry itself signs in as (its devices page).
pub const REGISTRY_CLIENT: &str = "lanyard-registry";
/// How long the services get to answer their first request.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The registry API key of a default tenant (`/v1/admin/tenants/{slug}/…`): a documented dev
/// value, like every other credential of the stack.
pub fn tenant_api_key(slug: &str) -> String {
    format!("lanyard-dev-{slug}-admin")
}

#[derive(Debug, thiserror::Error)]
pub enum DevstackError {
    #[error("cannot create the data folder {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    DatabaseUrl(#[from] InvalidDatabaseUrl),
    #[error(transparent)]
    DataDirPath(#[from] NonUtf8Path),
    #[error(
        "mock IdP: {0} (is another devstack running? --idp-bind 127.0.0.1:0 picks a free port)"
    )]
    Idp(#[from] mock_idp::startup::StartupError),
    #[error("session registry: {0} (is another devstack running? --registry-bind 127.0.0.1:0 picks a free port)")]
    Registry(#[from] session_registry::startup::StartupError),
    #[error("session registry: cannot register tenant {tenant}: {source}")]
    Tenant {
        tenant: String,
        source: session_registry::store::StoreError,
    },
    #[error("{service} did not answer {url} within {READY_TIMEOUT:?}")]
    NotReady { service: &'static str, url: String },
    #[error("{service} failed: {reason}")]
    Exited {
        service: &'static str,
        reason: String,
    },
    #[error("cannot listen for Ctrl-C / SIGTERM: {0}")]
    Signal(std::io::Error),
}

/// One running server.
struct Running {
    name: &'static str,
    addr: SocketAddr,
    base_url: String,
    handle: ServerHandle,
    /// The registry's own graceful stop, which also ends its event streams (else they would hold
    /// the stop until the shutdown timeout). `None`: `ServerHandle::stop(true)` alone.
    graceful: Option<session_registry::startup::Shutdown>,
    /// `None` once the server future has been awaited to its end.
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    fn spawn(
        name: &'static str,
        addr: SocketAddr,
        base_url: String,
        handle: ServerHandle,
        server: impl Future<Output = std::io::Result<()>> + Send + 'static,
    ) -> Self {
        Self {
            name,
            addr,
            base_url,
            handle,
            graceful: None,
            task: Some(tokio::spawn(server)),
        }
    }

    fn with_graceful(mut self, shutdown: session_registry::startup::Shutdown) -> Self {
        self.graceful = Some(shutdown);
        self
    }

    /// Resolves when the server's future ends before [`Running::stop`] (never, once stopped).
    /// Cancel-safe. A clean end means actix's own OS-signal listener stopped it: unless a server
    /// disables it (the registry does), actix-server listens for SIGINT, SIGTERM and SIGQUIT by
    /// itself, alongside devstack.
    async fn exited(&mut self) -> Result<(), DevstackError> {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let result = task.await;
        self.task = None;
        self.outcome(result)?;
        tracing::info!(service = self.name, "stopped by a signal");
        Ok(())
    }

    /// What the server's task ended with: the server's own error, or the task's (a panic).
    fn outcome(
        &self,
        result: Result<std::io::Result<()>, tokio::task::JoinError>,
    ) -> Result<(), DevstackError> {
        let reason = match result {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        Err(DevstackError::Exited {
            service: self.name,
            reason,
        })
    }

    /// Graceful stop: no new connections, requests in flight finish.
    async fn stop(&mut self) -> Result<(), DevstackError> {
        match &self.graceful {
            Some(shutdown) => shutdown.graceful().await,
            None => self.handle.stop(true).await,
        }
        match self.task.take() {
            None => Ok(()),
            Some(task) => {
                let result = task.await;
                self.outcome(result)
            }
        }
    }
}

/// The running stack: both servers, their real addresses, where the data is.
pub struct Devstack {
    idp: Running,
    registry: Running,
    data_dir: PathBuf,
    database: Database,
    tenants: Vec<mock_idp::config::TenantConfig>,
}

impl Devstack {
    /// Starts the mock IdP (default tenants and users) and the session registry trusting it,
    /// and returns once both answer HTTP. Nothing is written outside `options.data_dir` unless
    /// `options.database_url` names a Postgres database.
    pub async fn start(options: &Options) -> Result<Self, DevstackError> {
        let database = options.database()?;
        let data_dir = options.data_dir.clone();
        std::fs::create_dir_all(&data_dir).map_err(|source| DevstackError::DataDir {
            path: data_dir.clone(),
            source,
        })?;

        let registry_settings = session_registry::Settings {
            bind: options.registry_bind,
            database_url: Some(database.url()?),
            config: None,
            public_url: None,
            migrate: database.migrate(),
            admin_token: Some(SecretString::from(
                session_registry::config::DEV_ADMIN_TOKEN,
            )),
            trusted_proxies: Vec::new(),
            allow_http_issuers: false,
            events: session_registry::config::EventsSetting::Postgres,
            deployment: "lanyard".into(),
            read_database_url: None,
            database_pooler: session_registry::config::Pooler::None,
            migrations_database_url: None,
            // One process: its keys in `registry-keys` (devstack keeps them across restarts).
            key_encryption_key: None,
            clock_leeway: session_registry::oidc::DEFAULT_LEEWAY,
            workers: 2,
        };
        let registry_config = RegistryConfig {
            key_dir: Some(data_dir.join("registry-keys")),
            // Tenants need the IdP's address: registered below, once the IdP has bound.
            tenants: Vec::new(),
            // The registry signs people in to its "Your devices" page as the IdP's
            // confidential `lanyard-registry` client, in every tenant the IdP has.
            web_clients: registry_web_clients(&mock_idp::IdpConfig::defaults()),
        };
        let registry_app = session_registry::Application::build_with(
            &registry_settings,
            &registry_config,
            Arc::new(SystemClock),
        )
        .await?;
        let registry_store = registry_app.registry().store.clone();
        let registry_shutdown = registry_app.shutdown();
        let registry = Running::spawn(
            "session-registry",
            registry_app.addr(),
            registry_app.base_url().to_owned(),
            registry_app.handle(),
            registry_app.run_until_stopped(),
        )
        .with_graceful(registry_shutdown);
        // From here on, a failure must not leave the registry running (its port stays taken).
        let registry = StopOnDrop(Some(registry));

        let idp_config = idp_config(&data_dir, registry.base_url());
        let idp_settings = mock_idp::Settings {
            bind: options.idp_bind,
            config: None,
            admin_token: Some(SecretString::from(mock_idp::config::DEV_ADMIN_TOKEN)),
            public_url: None,
        };
        let idp_app =
            mock_idp::Application::build_with(&idp_settings, &idp_config, Arc::new(SystemClock))?;
        let idp = Running::spawn(
            "mock-idp",
            idp_app.addr(),
            idp_app.base_url().to_owned(),
            idp_app.handle(),
            idp_app.run_until_stopped(),
        );
        let idp = StopOnDrop(Some(idp));

        session_registry::register_tenants(
            registry_store.as_ref(),
            &registry_tenants(&idp_config, idp.base_url()),
        )
        .await
        .map_err(|e| DevstackError::Tenant {
            tenant: e.tenant,
            source: e.source,
        })?;

        let first_tenant = idp_config
            .tenants
            .first()
            .map(|t| t.slug.to_string())
            .unwrap_or_default();
        wait_until_ready(
            "mock-idp",
            &format!(
                "{}/{first_tenant}/.well-known/openid-configuration",
                idp.base_url()
            ),
        )
        .await?;
        wait_until_ready(
            "session-registry",
            &format!("{}/readyz", registry.base_url()),
        )
        .await?;

        tracing::info!(
            idp = %idp.base_url(),
            registry = %registry.base_url(),
            database = %database,
            data_dir = %data_dir.display(),
            "devstack is ready"
        );
        Ok(Self {
            idp: idp.disarm(),
            registry: registry.disarm(),
            data_dir,
            database,
            tenants: idp_config.tenants,
        })
    }

    pub fn idp_addr(&self) -> SocketAddr {
        self.idp.addr
    }

    pub fn registry_addr(&self) -> SocketAddr {
        self.registry.addr
    }

    /// `http://ADDR` of the mock IdP; issuers are `{idp_url}/{tenant}`.
    pub fn idp_url(&self) -> &str {
        &self.idp.base_url
    }

    /// `http://ADDR` of the session registry.
    pub fn registry_url(&self) -> &str {
        &self.registry.base_url
    }

    /// The issuer of `tenant` at the mock IdP.
    pub fn issuer(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.idp.base_url)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The IdP's tenants, users and clients as configured.
    pub fn tenants(&self) -> &[mock_idp::config::TenantConfig] {
        &self.tenants
    }

    /// The services' own readiness lines, IdP first, for stdout.
    pub fn readiness_lines(&self) -> [String; 2] {
        [
            mock_idp::readiness_line(self.idp.addr),
            session_registry::readiness_line(self.registry.addr),
        ]
    }

    /// The human banner for stderr: URLs, users, tokens, commands to try.
    pub fn banner(&self) -> String {
        crate::banner::render(self)
    }

    /// Runs until `shutdown` resolves or a server ends by itself, then stops both gracefully.
    /// A server failing is an error; a server stopped cleanly (by a signal actix-server saw
    /// too) is not.
    pub async fn run_until(
        mut self,
        shutdown: impl Future<Output = std::io::Result<()>>,
    ) -> Result<(), DevstackError> {
        let outcome = tokio::select! {
            // Our own signal first: when both it and a server's end are ready, it is a shutdown.
            biased;
            signal = shutdown => signal.map_err(DevstackError::Signal),
            exited = self.idp.exited() => exited,
            exited = self.registry.exited() => exited,
        };
        let stopped = self.stop().await;
        outcome.and(stopped)
    }

    /// Stops both servers gracefully (requests in flight finish) and waits for them to end.
    pub async fn stop(&mut self) -> Result<(), DevstackError> {
        tracing::info!("stopping mock-idp and session-registry");
        let (idp, registry) = tokio::join!(self.idp.stop(), self.registry.stop());
        idp.and(registry)
    }
}

/// Stops a server that start-up is abandoning (an error after it was spawned).
struct StopOnDrop(Option<Running>);

impl StopOnDrop {
    fn base_url(&self) -> &str {
        self.0.as_ref().map(|r| r.base_url.as_str()).unwrap_or("")
    }

    fn disarm(mut self) -> Running {
        self.0
            .take()
            .unwrap_or_else(|| unreachable!("disarmed once"))
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(running) = self.0.take() {
            // `stop` sends the command when called; the returned future only awaits completion.
            drop(running.handle.stop(false));
        }
    }
}

/// The IdP's defaults, keys kept in the data folder, back-channel logout aimed at the registry
/// actually running.
pub fn idp_config(data_dir: &Path, registry_url: &str) -> mock_idp::IdpConfig {
    let mut config = mock_idp::IdpConfig::defaults();
    config.key_dir = Some(data_dir.join("idp-keys"));
    let logout_uri = format!("{registry_url}/v1/backchannel-logout");
    for client in config.tenants.iter_mut().flat_map(|t| t.clients.iter_mut()) {
        if client.backchannel_logout_uri.is_some() {
            client.backchannel_logout_uri = Some(logout_uri.clone());
        }
    }
    config
}

/// The registry's own client registration in each IdP tenant that has one (the confidential
/// `lanyard-registry` client, with its secret): what the "Your devices" page signs in with.
pub fn registry_web_clients(
    idp: &mock_idp::IdpConfig,
) -> Vec<session_registry::config::WebClientConfig> {
    idp.tenants
        .iter()
        .flat_map(|t| {
            t.clients
                .iter()
                .filter(|c| c.client_id.as_str() == REGISTRY_CLIENT)
                .filter_map(move |c| {
                    Some(session_registry::config::WebClientConfig {
                        tenant: t.slug.to_string(),
                        client_id: c.client_id.to_string(),
                        client_secret: c.secret.clone()?,
                    })
                })
        })
        .collect()
}

/// One registry tenant per IdP tenant, trusting its issuer for the CLI's and the registry's
/// client.
pub fn registry_tenants(idp: &mock_idp::IdpConfig, idp_url: &str) -> Vec<TenantConfig> {
    idp.tenants
        .iter()
        .map(|t| TenantConfig {
            slug: t.slug.to_string(),
            issuer: format!("{idp_url}/{}", t.slug),
            audiences: AUDIENCES.iter().map(|a| (*a).to_owned()).collect(),
            idle_timeout_secs: session_registry::config::default_idle(),
            absolute_timeout_secs: session_registry::config::default_absolute(),
            max_id_token_age_secs: session_registry::config::default_max_age(),
            max_auth_age_secs: session_registry::config::default_max_age(),
            api_key: Some(SecretString::from(tenant_api_key(t.slug.as_str()))),
        })
        .collect()
}

/// Polls `url` until it answers 2xx.
async fn wait_until_ready(service: &'static str, url: &str) -> Result<(), DevstackError> {
    let not_ready = || DevstackError::NotReady {
        service,
        url: url.to_owned(),
    };
    // Loopback only: a proxy from the environment must not be asked.
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|_| not_ready())?;
    let poll = async {
        loop {
            match http.get(url).send().await {
                Ok(res) if res.status().is_success() => return,
                Ok(res) => tracing::debug!(service, status = %res.status(), "not ready yet"),
                Err(e) => tracing::debug!(service, error = %e, "not ready yet"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(READY_TIMEOUT, poll)
        .await
        .map_err(|_| not_ready())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn the_registry_client_posts_logout_tokens_to_the_registry_that_runs() {
        let config = idp_config(Path::new("/data"), "http://127.0.0.1:40123");
        assert_eq!(config.key_dir.as_deref(), Some(Path::new("/data/idp-keys")));
        let mut seen = 0;
        for tenant in &config.tenants {
            for client in &tenant.clients {
                match client.client_id.as_str() {
                    "lanyard-registry" => {
                        seen += 1;
                        assert_eq!(
                            client.backchannel_logout_uri.as_deref(),
                            Some("http://127.0.0.1:40123/v1/backchannel-logout")
                        );
                    }
                    _ => assert_eq!(client.backchannel_logout_uri, None),
                }
            }
        }
        assert_eq!(seen, 2, "lanyard-registry in acme and globex");
    }

    #[test]
    fn at_the_default_ports_the_logout_uri_is_the_idps_own_default() {
        let config = idp_config(Path::new(".devstack"), "http://127.0.0.1:8701");
        let defaults = mock_idp::IdpConfig::defaults();
        let uris = |c: &mock_idp::IdpConfig| {
            c.tenants
                .iter()
                .flat_map(|t| t.clients.iter())
                .map(|c| c.backchannel_logout_uri.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(uris(&config), uris(&defaults));
    }

    #[test]
    fn acme_and_globex_trust_their_issuers_for_the_cli_and_the_registry() {
        let tenants = registry_tenants(&mock_idp::IdpConfig::defaults(), "http://127.0.0.1:8700");
        let got: Vec<(&str, &str)> = tenants
            .iter()
            .map(|t| (t.slug.as_str(), t.issuer.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("acme", "http://127.0.0.1:8700/acme"),
                ("globex", "http://127.0.0.1:8700/globex")
            ]
        );
        for t in &tenants {
            assert_eq!(t.audiences, ["lanyard-cli", "lanyard-registry"]);
            let record = t.record();
            assert_eq!(
                record.api_key_hash.as_deref(),
                Some(session_registry::token::hash_hex(&tenant_api_key(&t.slug)).as_str())
            );
        }
    }

    #[test]
    fn the_devices_page_signs_in_with_the_registrys_client_of_every_idp_tenant() {
        let mut idp = mock_idp::IdpConfig::defaults();
        // A third tenant in the IdP's configuration gets its devices page too: nothing is
        // hard-coded to acme and globex.
        let mut initech = idp.tenants[0].clone();
        initech.slug = mock_idp::ids::TenantId::parse("initech").unwrap();
        idp.tenants.push(initech);
        let clients = registry_web_clients(&idp);
        let got: Vec<(&str, &str)> = clients
            .iter()
            .map(|c| (c.tenant.as_str(), c.client_id.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("acme", REGISTRY_CLIENT),
                ("globex", REGISTRY_CLIENT),
                ("initech", REGISTRY_CLIENT)
            ]
        );
        for c in &clients {
            assert_eq!(
                c.client_secret.expose_secret(),
                mock_idp::config::DEV_REGISTRY_SECRET
            );
        }
        assert_eq!(
            registry_tenants(&idp, "http://127.0.0.1:8700").len(),
            3,
            "and a registry tenant"
        );
    }
}
