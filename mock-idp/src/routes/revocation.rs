//! Token revocation (RFC 7009). Unknown or garbage tokens get 200 (§2.2); revoking a refresh
//! token revokes its whole family including access tokens; another client's token is left alone
//! (a no-op 200, so revocation cannot be used to probe tokens).

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};

use super::{authorization_header, gate, require_form};
use crate::client_auth::{authenticate, ClientAuth};
use crate::error::OAuthError;
use crate::faults::Endpoint;
use crate::grants::Revocation;
use crate::jwt;
use crate::params::Params;
use crate::state::IdpState;

pub async fn revoke(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Revocation).await {
        return Ok(res);
    }
    require_form(&req)?;
    let params = Params::parse(&body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let client = authenticate(
        &tenant,
        &ClientAuth::parse(&params, authorization_header(&req))?,
    )?;
    let token = params
        .require("token")
        .map_err(OAuthError::invalid_request)?;
    let now = tenant.now();
    let mut outcome = "unknown token";
    if token.contains('.') {
        let claims = jwt::verify_own(
            token,
            &tenant.keys.read(),
            &tenant.issuer,
            Some("at+jwt"),
            now,
            true,
        )
        .ok();
        if let Some(claims) = claims {
            let claim = |name: &str| {
                claims
                    .get(name)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
            };
            let expires_at = claims
                .get("exp")
                .and_then(|v| v.as_i64())
                .and_then(|exp| time::OffsetDateTime::from_unix_timestamp(exp).ok())
                .unwrap_or(now);
            outcome = match tenant.grants.revoke_access(
                claim("grant"),
                claim("jti"),
                expires_at,
                client.id(),
            ) {
                Revocation::Revoked => "access token revoked",
                Revocation::OtherClient => "another client's token: not revoked",
                Revocation::Unknown => outcome,
            };
        }
    } else {
        outcome = match tenant.grants.revoke_refresh(token, client.id()) {
            Revocation::Revoked => "refresh token family revoked",
            Revocation::OtherClient => "another client's token: not revoked",
            Revocation::Unknown => outcome,
        };
    }
    tenant.record(
        "token_revocation",
        None,
        Some(client.id().as_str()),
        outcome,
    );
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .finish())
}
