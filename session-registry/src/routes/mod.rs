//! HTTP routes.

mod admin;
mod backchannel;
pub mod devices_page;
mod events;
mod sessions;
mod upgrade;
mod wellknown;

use actix_web::http::header;
use actix_web::{web, HttpRequest};

use crate::error::ApiError;
use crate::service::RequestCtx;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(wellknown::healthz))
        .route("/readyz", web::get().to(wellknown::readyz))
        .route("/metrics", web::get().to(wellknown::metrics))
        .route("/openapi.json", web::get().to(wellknown::openapi))
        .route("/.well-known/jwks.json", web::get().to(wellknown::jwks))
        .route("/v1/sessions", web::post().to(sessions::create))
        .route("/v1/sessions", web::get().to(sessions::list))
        .route(
            "/v1/sessions/authenticate",
            web::post().to(sessions::authenticate),
        )
        .route("/v1/sessions/revoke", web::post().to(sessions::revoke))
        .route("/v1/sessions/upgrade", web::post().to(upgrade::upgrade))
        .route("/v1/events", web::get().to(events::stream))
        .route(
            "/v1/backchannel-logout",
            web::post().to(backchannel::logout),
        )
        .service(admin::scope())
        .configure(devices_page::configure);
}

pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::invalid_token(
                "missing_token",
                "send 'Authorization: Bearer <session token or session JWT>'",
            )
        })
}

pub fn ctx(req: &HttpRequest) -> RequestCtx {
    RequestCtx {
        ip: req.peer_addr().map(|a| a.ip()),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// Wraps the server-wide admin token for the admin routes.
pub fn admin_token(token: secrecy::SecretString) -> admin::AdminToken {
    admin::AdminToken(token)
}
