//! Upgrading a guest to a registered user. The guest proves itself with its access token; the
//! user keeps its `sub`, so every account and session keyed on it follows.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::{bearer, gate, no_store_json};
use crate::directory::{hash_password, DirectoryError};
use crate::error::{ErrorCode, OAuthError};
use crate::faults::Endpoint;
use crate::ids::Username;
use crate::state::IdpState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    username: Username,
    password: SecretString,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

pub async fn upgrade(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Json<UpgradeRequest>,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Guest).await {
        return Ok(res);
    }
    let token = bearer(&req).ok_or_else(|| {
        OAuthError::invalid_token(
            "send the guest's access token as 'Authorization: Bearer <token>'",
        )
    })?;
    let (_, record) = tenant.check_access_token(token)?;
    let body = body.into_inner();
    if secrecy::ExposeSecret::expose_secret(&body.password)
        .chars()
        .count()
        < 8
    {
        return Err(OAuthError::invalid_request(
            "password must be at least 8 characters",
        ));
    }
    if body
        .email
        .as_ref()
        .is_some_and(|e| !e.contains('@') || e.len() > 254)
    {
        return Err(OAuthError::invalid_request("email is not an email address"));
    }
    let password = body.password;
    let hash = crate::password_work::run(move || hash_password(&password))
        .await
        .map_err(|e| OAuthError::server_error(e.to_string()))?
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let user = tenant
        .directory
        .write()
        .upgrade_guest(&record.sub, body.username, hash, body.email, body.name)
        .map_err(|e| match e {
            DirectoryError::UsernameTaken(_) => OAuthError::new(ErrorCode::Conflict, e.to_string()),
            DirectoryError::NotAGuest => {
                OAuthError::invalid_request("this account is already registered")
            }
            other => OAuthError::invalid_token(other.to_string()),
        })?;
    tenant.record(
        "guest_upgraded",
        Some(&user.sub),
        Some(record.client_id.as_str()),
        "guest became a registered user",
    );
    Ok(no_store_json(
        StatusCode::OK,
        &json!({"sub": user.sub, "username": user.username, "email": user.email, "name": user.name, "is_guest": false}),
    ))
}
