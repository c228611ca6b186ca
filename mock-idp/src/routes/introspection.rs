//! Token introspection (RFC 7662). Only authenticated confidential clients may ask (401
//! otherwise); an inactive token of any kind gets exactly `{"active":false}`.

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{authorization_header, gate, no_store_json, require_form};
use crate::client_auth::{authenticate, ClientAuth};
use crate::error::{Challenge, OAuthError};
use crate::faults::Endpoint;
use crate::params::Params;
use crate::random;
use crate::state::IdpState;

pub async fn introspect(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Introspection).await {
        return Ok(res);
    }
    require_form(&req)?;
    let params = Params::parse(&body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let unauthorized = |mut e: OAuthError| {
        e.status = StatusCode::UNAUTHORIZED;
        e.challenge = Challenge::Basic;
        e
    };
    let auth = ClientAuth::parse(&params, authorization_header(&req)).map_err(unauthorized)?;
    if matches!(auth, ClientAuth::Public { .. }) {
        return Err(unauthorized(OAuthError::invalid_client(
            "introspection needs client authentication (a confidential client)",
            true,
        )));
    }
    authenticate(&tenant, &auth).map_err(unauthorized)?;
    let token = params
        .require("token")
        .map_err(OAuthError::invalid_request)?;
    let inactive = json!({"active": false});
    let body = if token.contains('.') {
        match tenant.check_access_token(token) {
            Ok((claims, record)) => {
                let mut b = json!({
                    "active": true,
                    "token_type": "Bearer",
                    "scope": record.scope.to_string(),
                    "client_id": record.client_id.as_str(),
                    "sub": record.sub,
                });
                for k in [
                    "exp", "iat", "iss", "aud", "jti", "tenant", "sid", "is_guest",
                ] {
                    if let Some(v) = claims.get(k) {
                        b[k] = v.clone();
                    }
                }
                b
            }
            Err(_) => inactive,
        }
    } else {
        match tenant
            .grants
            .live_refresh(&random::fingerprint(token), tenant.now())
        {
            Some(r) => json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": r.scope.to_string(),
                "client_id": r.client_id.as_str(),
                "sub": r.sub,
                "exp": r.expires_at.unix_timestamp(),
                "iss": tenant.issuer,
                "sid": r.sid.map(Value::from).unwrap_or(Value::Null),
            }),
            None => inactive,
        }
    };
    Ok(no_store_json(StatusCode::OK, &body))
}
