//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the IdP session, revokes
//! the refresh families bound to it, and sends back-channel logout tokens.

use std::sync::Arc;

use actix_web::cookie::Cookie;
use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

use super::authorize::SESSION_COOKIE;
use super::{error_page, gate, html};
use crate::backchannel;
use crate::error::OAuthError;
use crate::faults::Endpoint;
use crate::grants::IdpSession;
use crate::jwt;
use crate::pages;
use crate::params::Params;
use crate::random;
use crate::redirect_uri;
use crate::state::IdpState;
use crate::tenant::Tenant;

pub async fn end_session_get(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let params = Params::parse(req.query_string().as_bytes());
    end_session(state, path, req, params).await
}

pub async fn end_session_post(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, OAuthError> {
    let params = Params::parse(&body);
    end_session(state, path, req, params).await
}

/// Ends IdP sessions: removes them, revokes their refresh families, notifies clients.
pub fn terminate(
    state: &IdpState,
    tenant: &Arc<Tenant>,
    sids: &[String],
    reason: &str,
) -> Vec<IdpSession> {
    let mut ended = Vec::new();
    {
        let mut grants = tenant.grants.lock();
        for sid in sids {
            if let Some(s) = grants.end_session(sid) {
                grants.revoke_session_families(sid);
                ended.push(s);
            }
        }
    }
    for s in &ended {
        tenant.record(
            "idp_session_ended",
            Some(&s.sub),
            None,
            format!("sid {}: {reason}", s.sid),
        );
    }
    backchannel::notify(tenant, &state.http, &ended);
    ended
}

async fn end_session(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
    params: Result<Params, crate::params::ParamsError>,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::EndSession).await {
        return Ok(res);
    }
    let params = match params {
        Ok(p) => p,
        Err(e) => return Ok(error_page(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let hint = match params.get("id_token_hint") {
        Some(t) => match jwt::verify_own(
            t,
            &tenant.keys.read(),
            &tenant.issuer,
            None,
            tenant.now(),
            true,
        ) {
            Ok(c) => Some(c),
            Err(e) => {
                return Ok(error_page(
                    StatusCode::BAD_REQUEST,
                    &format!("id_token_hint is not valid: {e}"),
                ))
            }
        },
        None => None,
    };
    let client_id = params.get("client_id").map(str::to_owned).or_else(|| {
        hint.as_ref()
            .and_then(|c| c.get("aud"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let redirect = match params.get("post_logout_redirect_uri") {
        Some(uri) => {
            let dir = tenant.directory.read();
            let allowed = client_id
                .as_deref()
                .and_then(|id| dir.client(id))
                .is_some_and(|c| {
                    c.config
                        .post_logout_redirect_uris
                        .iter()
                        .any(|r| redirect_uri::matches(r, uri))
                });
            if !allowed {
                return Ok(error_page(
                    StatusCode::BAD_REQUEST,
                    "post_logout_redirect_uri is not registered for this client (send id_token_hint or client_id)",
                ));
            }
            Some(uri.to_owned())
        }
        None => None,
    };
    let cookie_sid = req.cookie(SESSION_COOKIE).and_then(|c| {
        let grants = tenant.grants.lock();
        grants
            .sessions
            .get(&random::fingerprint(c.value()))
            .map(|s| s.sid.clone())
    });
    let hint_sid = hint
        .as_ref()
        .and_then(|c| c.get("sid"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let sids: Vec<String> = cookie_sid.into_iter().chain(hint_sid).collect();
    terminate(&state, &tenant, &sids, "end_session");

    let removal = Cookie::build(SESSION_COOKIE, "")
        .path(format!("/{}/", tenant.id))
        .finish();
    let mut res = match redirect {
        Some(uri) => {
            let mut url =
                url::Url::parse(&uri).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
            if let Some(s) = params.get("state") {
                url.query_pairs_mut().append_pair("state", s);
            }
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, url.as_str()))
                .finish()
        }
        None => html(
            StatusCode::OK,
            pages::notice(
                "Signed out",
                "You are signed out of this identity provider.",
            ),
        ),
    };
    let mut removal = removal;
    removal.make_removal();
    if let Err(e) = res.add_cookie(&removal) {
        tracing::error!(error = %e, "could not clear the session cookie");
    }
    Ok(res)
}
