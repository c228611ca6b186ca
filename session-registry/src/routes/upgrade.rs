//! `POST /v1/sessions/upgrade`: the session of a guest follows the guest's upgrade at the IdP.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{bearer, ctx};
use crate::error::ApiError;
use crate::service::{Registry, SessionResponse};
use registry_api::UpgradeSessionRequest;

/// Upgrade the caller's guest account: a fresh ID token of the same subject, no longer a guest,
/// marks the account registered; answers a new session JWT for the same session.
#[utoipa::path(post, path = "/v1/sessions/upgrade", request_body = UpgradeSessionRequest,
    responses((status = 200, body = SessionResponse), (status = 400), (status = 401), (status = 429)),
    security(("bearer" = [])))]
pub async fn upgrade(
    reg: web::Data<Registry>,
    req: HttpRequest,
    body: web::Json<UpgradeSessionRequest>,
) -> Result<HttpResponse, ApiError> {
    let caller = reg.resolve(bearer(&req)?, &ctx(&req)).await?;
    let res = reg.upgrade_session(&caller, body.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(res))
}
