//! Building the server: bind (port 0 allowed), assemble state, and hand back a running
//! [`Application`] with the address it really bound, as zero2prod's `startup.rs` does.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpServer, ResponseError};
use secrecy::SecretString;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{IdpConfig, Settings, DEV_ADMIN_TOKEN};
use crate::error::{payload_error, OAuthError};
use crate::state::IdpState;
use crate::{routes, tenant::TenantError};

/// Largest request body any endpoint accepts.
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

/// Every oversized body, whichever extractor noticed, gets the same §5.2 JSON error.
fn too_large<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let (req, _) = res.into_parts();
    let body =
        OAuthError::invalid_request(format!("request body exceeds the {MAX_BODY}-byte limit"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            .error_response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, body).map_into_right_body(),
    ))
}

/// The admin token the server accepts, or `None` for the admin API off. The built-in dev token
/// is printed in the README for anyone to read, so without `--admin-token` /
/// `MOCK_IDP_ADMIN_TOKEN` it opens the admin API (which can add users, end sessions and rotate
/// keys) only while the IdP listens on a loopback address. A token given explicitly is the
/// operator's choice and is used wherever the IdP listens (docker-compose passes the dev one and
/// publishes the port on the host's loopback only).
fn admin_token(settings: &Settings, bound: SocketAddr) -> Option<SecretString> {
    if let Some(token) = &settings.admin_token {
        return Some(token.clone());
    }
    if !bound.ip().to_canonical().is_loopback() {
        tracing::warn!(
            %bound,
            "the admin API is off: bound to a non-loopback address without --admin-token or \
             MOCK_IDP_ADMIN_TOKEN"
        );
        return None;
    }
    Some(SecretString::from(DEV_ADMIN_TOKEN))
}

pub struct Application {
    addr: SocketAddr,
    base_url: String,
    server: Server,
    state: web::Data<IdpState>,
}

impl Application {
    /// Builds the server with the wall clock.
    pub fn build(settings: &Settings) -> Result<Self, StartupError> {
        let config = settings.load_config()?;
        Self::build_with(settings, &config, Arc::new(SystemClock))
    }

    /// Builds the server from an explicit config and clock (tests move time with a `ManualClock`).
    pub fn build_with(
        settings: &Settings,
        config: &IdpConfig,
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
        let admin = admin_token(settings, addr);
        let state = web::Data::new(IdpState::new(config, base_url.clone(), admin, clock)?);

        let server_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(ErrorHandlers::new().handler(StatusCode::PAYLOAD_TOO_LARGE, too_large))
                .wrap(tracing_actix_web::TracingLogger::<
                    lanyard_service::RedactedRootSpan,
                >::new())
                .app_data(server_state.clone())
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
                            payload_error(e, too_large)
                        }),
                )
                .app_data(web::PathConfig::default().error_handler(|e, _| payload_error(e, false)))
                .configure(routes::configure)
        })
        .workers(2)
        .shutdown_timeout(5)
        // The binary (and devstack) handle SIGINT/SIGTERM themselves and stop gracefully;
        // actix's own handler would force-stop on SIGINT.
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartupError::Bind { addr, source })?
        .run();

        let sweeper_state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                sweeper_state.sweep();
            }
        });

        Ok(Self {
            addr,
            base_url,
            server,
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://ADDR`, or the configured public URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn state(&self) -> web::Data<IdpState> {
        self.state.clone()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
