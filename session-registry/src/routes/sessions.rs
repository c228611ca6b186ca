//! The session API.

use actix_web::{web, HttpRequest, HttpResponse};
use registry_api::{AuthenticateResponse, RevokeResponse, SessionList};

use super::{bearer, ctx};
use crate::error::ApiError;
use crate::service::{
    AuthenticateRequest, CreateSessionRequest, ReauthenticateRequest, Registry, RevokeRequest,
    SessionResponse,
};

/// Trade an ID token from the tenant's IdP for a device session.
#[utoipa::path(post, path = "/v1/sessions", request_body = CreateSessionRequest,
    responses((status = 201, body = SessionResponse), (status = 400), (status = 401)))]
pub async fn create(
    reg: web::Data<Registry>,
    req: HttpRequest,
    body: web::Json<CreateSessionRequest>,
) -> Result<HttpResponse, ApiError> {
    let created = reg.create_session(body.into_inner(), &ctx(&req)).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(created))
}

/// Check a session (heartbeat) or extend it; returns a fresh session JWT.
#[utoipa::path(post, path = "/v1/sessions/authenticate", request_body = AuthenticateRequest,
    responses((status = 200, body = AuthenticateResponse), (status = 400), (status = 401), (status = 429)))]
pub async fn authenticate(
    reg: web::Data<Registry>,
    req: HttpRequest,
    body: web::Json<AuthenticateRequest>,
) -> Result<HttpResponse, ApiError> {
    let res = reg.authenticate(body.into_inner(), &ctx(&req)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(res))
}

/// Every live session of the caller's account, across devices; the caller's marked `current`.
#[utoipa::path(get, path = "/v1/sessions", responses((status = 200, body = SessionList), (status = 401), (status = 429, description = "too many failed attempts from this address")),
    security(("bearer" = [])))]
pub async fn list(reg: web::Data<Registry>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = reg.resolve(bearer(&req)?, &ctx(&req)).await?;
    Ok(HttpResponse::Ok().json(SessionList {
        sessions: reg.list(&caller).await?,
    }))
}

/// Revoke one session of the caller's account, or `current`, `others` or `all`.
#[utoipa::path(post, path = "/v1/sessions/revoke", request_body = RevokeRequest,
    responses((status = 200, body = RevokeResponse), (status = 400), (status = 401), (status = 404), (status = 429, description = "too many failed attempts from this address")), security(("bearer" = [])))]
pub async fn revoke(
    reg: web::Data<Registry>,
    req: HttpRequest,
    body: web::Json<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    let caller = reg.resolve(bearer(&req)?, &ctx(&req)).await?;
    let revoked = reg.revoke(&caller, body.into_inner()).await?;
    Ok(HttpResponse::Ok().json(RevokeResponse { revoked }))
}

/// Record a fresh sign-in at the IdP on the caller's session (step-up, RFC 9470): the answer to
/// `insufficient_user_authentication`. Needs the session token and a new ID token of the same
/// person, issued by a sign-in within the tenant's `max_age`.
#[utoipa::path(post, path = "/v1/sessions/reauthenticate", request_body = ReauthenticateRequest,
    responses((status = 200, body = SessionResponse), (status = 400), (status = 401), (status = 429, description = "too many failed attempts from this address")),
    security(("bearer" = [])))]
pub async fn reauthenticate(
    reg: web::Data<Registry>,
    req: HttpRequest,
    body: web::Json<ReauthenticateRequest>,
) -> Result<HttpResponse, ApiError> {
    let caller = reg.resolve(bearer(&req)?, &ctx(&req)).await?;
    let res = reg.reauthenticate(&caller, body.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(res))
}
