//! Token revocation (RFC 7009). Unknown or garbage tokens get 200 (§2.2); revoking a refresh
//! token revokes its whole family including access tokens; another client's token is left alone
//! (a no-op 200, so revocation cannot be used to probe tokens).

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};

use super::token::{authenticate, require_form};
use super::{authorization_header, gate};
use crate::error::OAuthError;
use crate::faults::Endpoint;
use crate::jwt;
use crate::params::Params;
use crate::random;
use crate::state::IdpState;
use crate::token_request::client_auth;

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
    let client = authenticate(&tenant, &client_auth(&params, authorization_header(&req))?)?;
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
            let jti = claims
                .get("jti")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let mut grants = tenant.grants.lock();
            match grants.access.get_mut(jti) {
                Some(at) if at.client_id == *client.id() => {
                    at.revoked = true;
                    outcome = "access token revoked";
                }
                Some(_) => outcome = "another client's token: not revoked",
                None => {}
            }
        }
    } else {
        let mut grants = tenant.grants.lock();
        let family = grants
            .refresh
            .get(&random::fingerprint(token))
            .map(|r| r.family.clone());
        if let Some(family) = family {
            let owner = grants.families.get(&family).map(|f| f.client_id.clone());
            if owner.as_ref() == Some(client.id()) {
                grants.revoke_family(&family);
                outcome = "refresh token family revoked";
            } else {
                outcome = "another client's token: not revoked";
            }
        }
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
