//! OIDC Back-Channel Logout receiver.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use crate::error::ApiError;
use crate::service::Registry;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LogoutForm {
    logout_token: Option<String>,
}

/// A validated logout token from a tenant's IdP ends the matching sessions.
#[utoipa::path(post, path = "/v1/backchannel-logout", responses((status = 200), (status = 400)))]
pub async fn logout(
    reg: web::Data<Registry>,
    form: web::Form<LogoutForm>,
) -> Result<HttpResponse, ApiError> {
    let token = form
        .into_inner()
        .logout_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("invalid_request", "logout_token is required"))?;
    reg.backchannel_logout(&token).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}
