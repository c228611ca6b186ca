//! The token endpoint (RFC 6749 §3.2): authorization_code with PKCE, refresh_token with rotation
//! and reuse detection, client_credentials, and the device_code grant (RFC 8628 §3.4). Parse
//! ([`token_request`]), authenticate the client ([`client_auth`]), run the grant
//! ([`token_exchange`]), answer.

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};

use super::{authorization_header, gate, no_store_json, require_form};
use crate::client_auth;
use crate::error::OAuthError;
use crate::faults::Endpoint;
use crate::state::IdpState;
use crate::token_exchange;
use crate::token_request;

pub async fn token(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Token).await {
        return Ok(res);
    }
    require_form(&req)?;
    let request = token_request::parse(&body, authorization_header(&req))?;
    let client = client_auth::authenticate(&tenant, &request.client)?;
    let body = token_exchange::exchange(&tenant, &client, request.grant).await?;
    Ok(no_store_json(StatusCode::OK, &body))
}
