//! Health, readiness, metrics, JWKS and the OpenAPI document.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;
use utoipa::OpenApi;

use crate::service::Registry;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lanyard session registry",
        description = "Device sessions: create, authenticate, list, revoke, upgrade a guest, events"
    ),
    paths(
        super::sessions::create,
        super::sessions::authenticate,
        super::sessions::list,
        super::sessions::revoke,
        super::sessions::reauthenticate,
        super::upgrade::upgrade,
        super::events::stream,
        super::backchannel::logout
    ),
    components(schemas(
        registry_api::CreateSessionRequest,
        registry_api::DeviceRequest,
        registry_api::AuthenticateRequest,
        registry_api::AuthenticateResponse,
        registry_api::JwtSessionView,
        registry_api::RevokeRequest,
        registry_api::RevokeScope,
        registry_api::RevokeResponse,
        registry_api::ReauthenticateRequest,
        registry_api::UpgradeSessionRequest,
        registry_api::SessionResponse,
        registry_api::SessionList,
        registry_api::SessionView,
        registry_api::DeviceView,
        registry_api::EventData,
        registry_api::EventKind,
        registry_api::ErrorBody,
        registry_api::Credential
    ))
)]
pub struct ApiDoc;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(reg: web::Data<Registry>) -> HttpResponse {
    match tokio::time::timeout(Duration::from_secs(2), reg.store.ping()).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Ok(Err(e)) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "detail": e.to_string()})),
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "unavailable", "detail": "database did not answer within 2 s"})),
    }
}

pub async fn metrics(reg: web::Data<Registry>) -> HttpResponse {
    if let Some(stats) = reg.store.token_lookup_stats() {
        reg.metrics.observe_token_lookups(stats);
    }
    if let Some(replica) = &reg.replica {
        reg.metrics.observe_replica(replica.stats());
    }
    reg.metrics.observe_session_cache(reg.session_cache_stats());
    reg.metrics.observe_activity(reg.activity_stats());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(reg.metrics.render())
}

pub async fn jwks(reg: web::Data<Registry>) -> HttpResponse {
    let now = reg.clock.now();
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=60"))
        .json(reg.keys.read().jwks(now))
}

pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
