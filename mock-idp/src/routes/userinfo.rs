//! UserInfo (OIDC Core §5.3): bearer access token in, the user's claims out.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{bearer, gate, no_store_json};
use crate::error::OAuthError;
use crate::faults::Endpoint;
use crate::state::IdpState;
use crate::tenant::user_claims;

pub async fn userinfo(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Userinfo).await {
        return Ok(res);
    }
    let token = bearer(&req).ok_or_else(|| {
        OAuthError::invalid_token("send the access token as 'Authorization: Bearer <token>'")
    })?;
    let (_, record) = tenant.check_access_token(token)?;
    let dir = tenant.directory.read();
    let user = dir.user(&record.sub).ok_or_else(|| {
        OAuthError::invalid_token(
            "the token's subject is not a user (client_credentials tokens have no userinfo)",
        )
    })?;
    let mut body = json!({
        "sub": user.sub,
        "tenant": tenant.id.as_str(),
        "is_guest": user.is_guest,
    });
    if let (Some(map), Value::Object(extra)) =
        (body.as_object_mut(), user_claims(user, &record.scope))
    {
        map.extend(extra);
    }
    Ok(no_store_json(StatusCode::OK, &body))
}
