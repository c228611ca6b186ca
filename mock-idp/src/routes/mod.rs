//! HTTP routes. Every tenant endpoint lives under `/{tenant}`; the admin API under `/admin`.

mod admin;
mod authorize;
mod device;
mod discovery;
mod end_session;
mod guest;
mod introspection;
mod revocation;
mod token;
mod userinfo;

use std::time::Duration;

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use maud::Markup;
use serde::Serialize;

use crate::error::OAuthError;
use crate::faults::{Endpoint, Outcome};
use crate::tenant::Tenant;

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .service(admin::scope())
        .service(
            web::scope("/{tenant}")
                .route(
                    "/.well-known/openid-configuration",
                    web::get().to(discovery::openid_configuration),
                )
                .route("/jwks", web::get().to(discovery::jwks))
                .route("/authorize", web::get().to(authorize::authorize))
                .route("/login", web::post().to(authorize::login))
                .route("/guest", web::post().to(authorize::guest))
                .route("/guest/upgrade", web::post().to(guest::upgrade))
                .route("/token", web::post().to(token::token))
                .route("/userinfo", web::get().to(userinfo::userinfo))
                .route("/userinfo", web::post().to(userinfo::userinfo))
                .route("/revoke", web::post().to(revocation::revoke))
                .route("/introspect", web::post().to(introspection::introspect))
                .route("/end_session", web::get().to(end_session::end_session_get))
                .route(
                    "/end_session",
                    web::post().to(end_session::end_session_post),
                )
                .route(
                    "/device_authorization",
                    web::post().to(device::device_authorization),
                )
                .route("/device", web::get().to(device::device_page))
                .route("/device", web::post().to(device::device_submit)),
        );
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Applies the tenant's faults for `endpoint`: sleeps for injected latency, and returns the
/// response to send instead of the real one, if any.
pub async fn gate(tenant: &Tenant, endpoint: Endpoint) -> Option<HttpResponse> {
    let verdict = tenant.faults.lock().check(endpoint);
    if verdict.latency > Duration::ZERO {
        tokio::time::sleep(verdict.latency).await;
    }
    match verdict.outcome {
        Outcome::Pass => None,
        Outcome::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let error = if code == 503 {
                "temporarily_unavailable"
            } else {
                "server_error"
            };
            let mut res = HttpResponse::build(status);
            res.insert_header((header::CACHE_CONTROL, "no-store"));
            if code == 503 || code == 429 {
                res.insert_header((header::RETRY_AFTER, "1"));
            }
            Some(
                res.json(
                    serde_json::json!({"error": error, "error_description": "injected fault"}),
                ),
            )
        }
        Outcome::Down => {
            // A body that fails before its first byte makes actix drop the connection: the client
            // sees a closed connection, not an HTTP response.
            let failing = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "injected: down",
                ))
            });
            Some(HttpResponse::Ok().streaming(failing))
        }
    }
}

/// A JSON response that must not be cached (token-bearing or token-describing).
pub fn no_store_json(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

pub fn html(status: StatusCode, page: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; form-action *; frame-ancestors 'none'",
        ))
        .content_type("text/html; charset=utf-8")
        .body(page.into_string())
}

pub fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    html(status, crate::pages::error(message))
}

pub fn authorization_header(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Form bodies only (RFC 6749 §3.2).
pub fn require_form(req: &HttpRequest) -> Result<(), OAuthError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ))
    }
}

/// The client's IP address, for the per-address limits: the TCP peer, never a forwarded-for
/// header (which is the client's own word, and would let it pick a fresh address per request).
pub fn peer_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

/// The bearer token of a request: `Authorization: Bearer` or (RFC 6750 §2.2) a form body field.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    authorization_header(req)
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
