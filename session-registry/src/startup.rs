//! Building the server: store, keys, tenants from config, background tasks, HTTP; and stopping
//! it gracefully.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle, Service};
use actix_web::{web, App, HttpServer};
use futures_util::FutureExt;
use jose_keys::{KeySet, SigningAlg};
use lanyard_clock::{SharedClock, SystemClock};
use tracing::Instrument;

use crate::config::{EventsSetting, Pooler, RegistryConfig, Settings};
use crate::error::ApiError;
use crate::events::{connect_nats, spawn_outbox_relay, spawn_pg_listener, Hub, Subjects};
use crate::metrics::Metrics;
use crate::routes::{self, admin_token};
use crate::service::{EventFeed, ReadReplica, Registry, JWT_TTL};
use crate::shared_keys::{KeyEncryptionKey, SharedKeys, RELOAD_INTERVAL};
use crate::store::{Announce, PgOptions, PgStore, SqliteStore, Store};

pub const MAX_BODY: usize = 64 * 1024;
/// How long revoked sessions stay for audit before garbage collection.
pub const AUDIT_WINDOW_SECS: i64 = 30 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] jose_keys::KeyError),
    #[error("shared signing keys: {0}")]
    SharedKeys(#[from] crate::shared_keys::SharedKeyError),
    #[error(transparent)]
    Nats(#[from] crate::events::NatsError),
    #[error("{0}")]
    Settings(&'static str),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
}

/// A tenant the store would not take.
#[derive(Debug, thiserror::Error)]
#[error("cannot register tenant {tenant}: {source}")]
pub struct TenantRegistrationError {
    pub tenant: String,
    pub source: crate::store::StoreError,
}

/// Creates or updates `tenants` in `store` (API keys stored only as hashes): what the registry
/// does with its config file at start, and what devstack does once its IdP has bound.
pub async fn register_tenants(
    store: &dyn Store,
    tenants: &[crate::config::TenantConfig],
) -> Result<(), TenantRegistrationError> {
    for t in tenants {
        store
            .upsert_tenant(&t.record())
            .await
            .map_err(|source| TenantRegistrationError {
                tenant: t.slug.clone(),
                source,
            })?;
    }
    Ok(())
}

pub struct Application {
    addr: SocketAddr,
    base_url: String,
    server: Server,
    registry: web::Data<Registry>,
}

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, StartupError> {
        let config = settings.load_config()?;
        Self::build_with(settings, &config, Arc::new(SystemClock)).await
    }

    pub async fn build_with(
        settings: &Settings,
        config: &RegistryConfig,
        clock: SharedClock,
    ) -> Result<Self, StartupError> {
        let listener = TcpListener::bind(settings.bind).map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;
        let base_url = settings
            .public_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{addr}"));

        let url = settings.database_url();
        let hub = Arc::new(Hub::new());
        let mut shared_keys = None;
        let mut replica = None;
        let mut activity_store: Option<Arc<dyn Store>> = None;
        let pooled = settings.database_pooler == Pooler::Transaction;
        if !url.starts_with("postgres") && (pooled || settings.read_database_url.is_some()) {
            return Err(StartupError::Settings(
                "--database-pooler and --read-database-url are for Postgres",
            ));
        }
        if pooled && settings.events == EventsSetting::Postgres {
            return Err(StartupError::Settings(
                "behind a transaction pooler LISTEN/NOTIFY does not work: give --events nats://HOST:PORT",
            ));
        }
        if pooled && settings.migrate && settings.migrations_database_url.is_none() {
            return Err(StartupError::Settings(
                "behind a transaction pooler the migrations need a direct connection: give --migrations-database-url",
            ));
        }
        let (store, feed): (Arc<dyn Store>, EventFeed) = if url.starts_with("postgres") {
            let pg = PgStore::connect_with(
                &url,
                &PgOptions {
                    migrate: settings.migrate,
                    migrations_url: settings.migrations_database_url.clone(),
                    pooled,
                    lazy: false,
                },
            )
            .await?;
            let (pg, feed) = match &settings.events {
                EventsSetting::Postgres => {
                    let pg = Arc::new(pg);
                    spawn_pg_listener(pg.clone(), hub.clone()).await?;
                    (pg, EventFeed::Database)
                }
                EventsSetting::Nats(nats_url) => {
                    let subjects = Subjects::new(&settings.deployment);
                    let pg = Arc::new(pg.with_announce(Announce::Outbox(subjects.clone())));
                    let js = connect_nats(nats_url, subjects, hub.clone()).await?;
                    tracing::info!(nats = %nats_url, deployment = %settings.deployment, "events through the outbox and NATS JetStream");
                    (pg.clone(), EventFeed::Outbox(spawn_outbox_relay(pg, js)))
                }
            };
            // The heartbeats' activity writer's own connection, made on its own thread.
            activity_store = Some(Arc::new(
                PgStore::connect_with(
                    &url,
                    &PgOptions {
                        pooled,
                        lazy: true,
                        ..PgOptions::default()
                    },
                )
                .await?,
            ));
            if let Some(read_url) = &settings.read_database_url {
                let read = PgStore::connect_with(
                    read_url,
                    &PgOptions {
                        pooled,
                        lazy: true,
                        ..PgOptions::default()
                    },
                )
                .await?;
                let read = Arc::new(ReadReplica::new(Arc::new(read)));
                read.spawn_watcher(pg.clone(), hub.clone());
                tracing::info!(
                    "token lookups and session lists read from the replica when it has caught up"
                );
                replica = Some(read);
            }
            if let Some(kek) = &settings.key_encryption_key {
                shared_keys = Some(SharedKeys::new(
                    pg.clone(),
                    KeyEncryptionKey::from_base64(kek)?,
                ));
            }
            (pg, feed)
        } else {
            if let Some(path) = url.strip_prefix("sqlite://") {
                if let Some(dir) =
                    std::path::Path::new(path.split('?').next().unwrap_or(path)).parent()
                {
                    if !dir.as_os_str().is_empty() {
                        std::fs::create_dir_all(dir).map_err(|source| StartupError::Dir {
                            path: dir.display().to_string(),
                            source,
                        })?;
                    }
                }
            }
            (
                Arc::new(SqliteStore::connect(&url).await?),
                EventFeed::Local,
            )
        };
        register_tenants(store.as_ref(), &config.tenants)
            .await
            .map_err(|e| e.source)?;
        let keys = match &shared_keys {
            Some(shared) => shared.load_or_create(clock.now().unix_timestamp()).await?,
            None => {
                if url.starts_with("postgres") {
                    tracing::warn!("no --key-encryption-key: this process signs session JWTs with keys of its own, which other registry processes do not know");
                }
                let mut keys = KeySet::load(&[], config.key_dir.as_deref())?;
                keys.ensure(SigningAlg::ES256)?;
                keys
            }
        };
        let metrics =
            Metrics::new().map_err(|e| crate::store::StoreError::Inconsistent(e.to_string()))?;
        let mut registry = Registry::new(
            store.clone(),
            hub.clone(),
            keys,
            clock.clone(),
            base_url.clone(),
            feed,
            metrics,
        );
        registry.trusted_proxies = settings.trusted_proxies.clone();
        registry.verifier.set_leeway(settings.clock_leeway);
        registry.shared_keys = shared_keys;
        registry.replica = replica;
        if let Some(store) = activity_store {
            registry.write_activity_through(store);
        }
        let registry = web::Data::new(registry);
        // Seed the JWT revocation cache with what other processes revoked recently.
        let since = clock.now().unix_timestamp() - JWT_TTL - 60;
        // Each stamped with its own revocation time: kept for a session JWT's lifetime from the
        // revoke (the hub's garbage collection counts from the stamp), not dropped at this
        // process's first collection.
        for (tenant, sid, revoked_at) in store.revoked_since(since).await? {
            hub.mark_revoked(&tenant, &sid, revoked_at);
        }

        if registry.shared_keys.is_some() {
            let watcher = registry.clone();
            tokio::spawn(
                async move {
                    loop {
                        tokio::select! {
                            () = watcher.hub.keys_change() => {}
                            () = tokio::time::sleep(RELOAD_INTERVAL) => {}
                        }
                        if let Err(e) = watcher.reload_shared_keys().await {
                            tracing::warn!(error = %e, "cannot read the shared signing keys");
                        }
                    }
                }
                .instrument(tracing::warn_span!("shared_keys_watcher")),
            );
        }

        let gc = registry.clone();
        tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    match gc.collect_garbage(AUDIT_WINDOW_SECS).await {
                        Ok(n) if n > 0 => tracing::info!(deleted = n, "garbage-collected sessions"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
                    }
                }
            }
            // Background tasks run in a named span at WARN, the registry's default filter, so
            // that whatever they log (sqlx's slow-acquire warning included) names its caller.
            .instrument(tracing::warn_span!("garbage_collection")),
        );

        let data = registry.clone();
        if settings.admin_token.is_none() {
            tracing::info!("no --admin-token: the server-wide admin API is off");
        }
        let admin = web::Data::new(admin_token(
            settings.admin_token.clone(),
            settings.allow_http_issuers,
        ));
        let web_state = web::Data::from(routes::devices_page::state(&config.web_clients));
        let server = HttpServer::new(move || {
            let metrics_data = data.clone();
            App::new()
                .wrap(tracing_actix_web::TracingLogger::<
                    lanyard_service::RedactedRootSpan,
                >::new())
                .wrap_fn(move |req, srv| {
                    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
                    let start = std::time::Instant::now();
                    let m = metrics_data.clone();
                    srv.call(req).map(move |res| {
                        if let Ok(r) = &res {
                            m.metrics
                                .requests
                                .with_label_values(&[route.as_str(), r.status().as_str()])
                                .inc();
                            m.metrics
                                .latency
                                .with_label_values(&[route.as_str()])
                                .observe(start.elapsed().as_secs_f64());
                        }
                        res
                    })
                })
                .app_data(data.clone())
                .app_data(admin.clone())
                .app_data(web_state.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .app_data(
                    web::JsonConfig::default()
                        .limit(MAX_BODY)
                        .error_handler(|e, _| {
                            let too_large = matches!(
                                e,
                                actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
                                    | actix_web::error::JsonPayloadError::Overflow { .. }
                            );
                            let code = if too_large {
                                "body_too_large"
                            } else {
                                "invalid_request"
                            };
                            ApiError::bad_request(code, e.to_string()).into()
                        }),
                )
                .app_data(
                    web::FormConfig::default()
                        .limit(MAX_BODY)
                        .error_handler(|e, _| {
                            ApiError::bad_request("invalid_request", e.to_string()).into()
                        }),
                )
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ApiError::bad_request("invalid_request", e.to_string()).into()
                }))
                .configure(routes::configure)
        })
        .workers(usize::from(settings.workers))
        .shutdown_timeout(10)
        // Signals are handled by `run_until_signalled`, which also ends the event streams that
        // would otherwise hold a graceful shutdown until its timeout.
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartupError::Bind { addr, source })?
        .run();
        Ok(Self {
            addr,
            base_url,
            server,
            registry,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn registry(&self) -> web::Data<Registry> {
        self.registry.clone()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// What stops this server gracefully, from any task.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown {
            server: self.server.handle(),
            registry: self.registry.clone(),
        }
    }

    /// Serves until stopped through [`Application::handle`] or [`Application::shutdown`].
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }

    /// For other crates' end-to-end tests (as [`Settings::for_tests`]): a registry on
    /// `database_url` (migrated), on a free loopback port, serving in the background, whose
    /// tenants are `(slug, issuer)` trusting ID tokens for `lanyard-cli`, with a one-hour idle
    /// and one-day absolute timeout. Returns its base URL.
    pub async fn spawn_for_tests(
        database_url: &str,
        tenants: &[(&str, String)],
    ) -> Result<String, StartupError> {
        let config = RegistryConfig {
            key_dir: None,
            tenants: tenants
                .iter()
                .map(|(slug, issuer)| crate::config::TenantConfig {
                    slug: (*slug).to_owned(),
                    issuer: issuer.clone(),
                    audiences: vec!["lanyard-cli".into()],
                    idle_timeout_secs: 3600,
                    absolute_timeout_secs: 86_400,
                    max_id_token_age_secs: crate::config::default_max_age(),
                    max_auth_age_secs: crate::config::default_max_age(),
                    api_key: None,
                })
                .collect(),
            web_clients: vec![],
        };
        let app = Self::build_with(
            &Settings::for_tests(database_url),
            &config,
            Arc::new(SystemClock),
        )
        .await?;
        let base_url = app.base_url().to_owned();
        tokio::spawn(app.run_until_stopped());
        Ok(base_url)
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully (see [`Shutdown::graceful`]):
    /// what the binary runs. A second signal during the drain exits at once. `ready` runs once
    /// the handlers are installed (the binary prints its readiness line there, so a signal sent
    /// the moment a script sees the line already finds them).
    pub async fn run_until_signalled(
        self,
        ready: impl FnOnce() -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut signals = lanyard_service::TerminationSignals::install()?;
        ready()?;
        let shutdown = self.shutdown();
        let on_signal = tokio::spawn(async move {
            let name = signals.recv().await;
            tracing::info!(signal = name, "shutting down gracefully");
            tokio::select! {
                () = shutdown.graceful() => {}
                name = signals.recv() => {
                    tracing::warn!(signal = name, "second signal: exiting without draining");
                    std::process::exit(1);
                }
            }
        });
        let served = self.server.await;
        on_signal.abort();
        served
    }
}

/// Stops a running [`Application`].
#[derive(Clone)]
pub struct Shutdown {
    server: ServerHandle,
    registry: web::Data<Registry>,
}

impl Shutdown {
    /// Stops accepting connections, ends the event streams (a complete response: their clients
    /// resume with `Last-Event-ID`, on another instance or after the restart), lets requests in
    /// flight finish within the shutdown timeout, and returns once the server has stopped.
    pub async fn graceful(&self) {
        let stopped = self.server.stop(true);
        self.registry.hub.close();
        stopped.await;
    }
}
