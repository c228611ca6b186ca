//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the IdP session, revokes
//! the refresh families bound to it, and sends back-channel logout tokens.
//!
//! Ending a session is only done for someone who asked (issue #12, finding 10). An
//! `id_token_hint` is taken as the relying party asking only when it is an ID token of this
//! tenant for one of its clients ([`jwt::verify_id_token`]: signed by this tenant, `typ` absent or
//! `JWT`, no `events`; expired is fine) naming the browser's signed-in user. Anything else — no
//! hint, a bad hint, an access or logout token, another user's ID token — ends nothing: the
//! answer is a page asking the person to confirm, whose form posts back `confirm=yes` with a CSRF
//! token derived from the browser's session cookie (checked in constant time). Only that post
//! ends the browser's session; a cross-site post lacks the token, and a link or an `<img>` cannot
//! post at all.
//!
//! A request without the browser's IdP session ends nothing, whatever hint it carries. An ID
//! token is not a credential of the person: it sits in logs, backups and the relying party's
//! storage long after it expired, and whoever holds one must not be able to sign its user out
//! everywhere (refresh families, back-channel logout) with one cookie-less GET. Such a request
//! gets a page saying there is nothing to sign out here, or, with a valid hint, the redirect to
//! its client's registered `post_logout_redirect_uri` (with `state`), which reveals nothing the
//! hint did not already say.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::Value;

use super::{error_page, gate, html};
use crate::browser_session::{self, BrowserSession, CsrfPurpose};
use crate::error::OAuthError;
use crate::faults::Endpoint;
use crate::jwt;
use crate::pages;
use crate::params::Params;
use crate::redirect_uri;
use crate::sign_out;
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

/// An `id_token_hint` that passed every check: the relying party's word for who signs out.
struct IdTokenHint {
    sub: String,
    sid: Option<String>,
    client_id: String,
}

/// Checks `token` as an `id_token_hint` of `tenant`; the error says why it is not one.
fn verify_hint(tenant: &Tenant, token: &str) -> Result<IdTokenHint, String> {
    let claims = jwt::verify_id_token(
        token,
        &tenant.keys.read(),
        &tenant.issuer,
        tenant.now(),
        true,
    )
    .map_err(|e| e.to_string())?;
    let client_id = match claims.get("aud") {
        Some(Value::String(aud)) => aud.clone(),
        Some(Value::Array(auds)) => match auds.as_slice() {
            [Value::String(aud)] => aud.clone(),
            _ => return Err("its aud is not exactly one client".into()),
        },
        _ => return Err("it has no aud".into()),
    };
    if tenant.directory.read().client(&client_id).is_none() {
        return Err(format!(
            "its aud '{}' is not a client of this tenant",
            client_id.escape_default()
        ));
    }
    Ok(IdTokenHint {
        sub: claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        sid: claims.get("sid").and_then(Value::as_str).map(str::to_owned),
        client_id,
    })
}

/// A `post_logout_redirect_uri` that is not registered for the request's client.
struct UnregisteredRedirect;

impl UnregisteredRedirect {
    fn page(self) -> HttpResponse {
        error_page(
            StatusCode::BAD_REQUEST,
            "post_logout_redirect_uri is not registered for this client (send id_token_hint or client_id)",
        )
    }
}

/// The `post_logout_redirect_uri` to send the browser to, if it is registered for `client_id`.
fn registered_redirect(
    tenant: &Tenant,
    client_id: Option<&str>,
    uri: Option<&str>,
) -> Result<Option<String>, UnregisteredRedirect> {
    let Some(uri) = uri else { return Ok(None) };
    let dir = tenant.directory.read();
    let allowed = client_id.and_then(|id| dir.client(id)).is_some_and(|c| {
        c.config
            .post_logout_redirect_uris
            .iter()
            .any(|r| redirect_uri::matches(r, uri))
    });
    if allowed {
        Ok(Some(uri.to_owned()))
    } else {
        Err(UnregisteredRedirect)
    }
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
    let browser = BrowserSession::of(&tenant, &req);
    if req.method() == actix_web::http::Method::POST && params.get("confirm").is_some() {
        return confirmed(&state, &tenant, &params, browser);
    }
    let hint = params
        .get("id_token_hint")
        .map(|t| verify_hint(&tenant, t))
        .transpose()
        .and_then(|hint| match (&hint, params.get("client_id")) {
            // RP-Initiated Logout 1.0 §2: both sent, they must agree.
            (Some(h), Some(id)) if h.client_id != id => {
                Err("client_id is not the audience of id_token_hint".to_owned())
            }
            _ => Ok(hint),
        });
    let hint = match hint {
        Ok(hint) => hint,
        Err(reason) => {
            tenant.record(
                "end_session_hint_refused",
                browser.as_ref().map(|b| b.session.sub.as_str()),
                params.get("client_id"),
                reason.clone(),
            );
            let problem = format!(
                "The application's sign-out request was not accepted (id_token_hint is not valid: {reason})."
            );
            // No redirect after a failed check (RP-Initiated Logout 1.0 §3), so none is offered.
            return Ok(match &browser {
                Some(browser) => confirmation_page(
                    &tenant,
                    StatusCode::BAD_REQUEST,
                    browser,
                    None,
                    Some(&problem),
                ),
                None => error_page(StatusCode::BAD_REQUEST, &problem),
            });
        }
    };
    let client_id = params
        .get("client_id")
        .map(str::to_owned)
        .or_else(|| hint.as_ref().map(|h| h.client_id.clone()));
    let client_id = client_id.as_deref();
    let redirect =
        match registered_redirect(&tenant, client_id, params.get("post_logout_redirect_uri")) {
            Ok(r) => r,
            Err(unregistered) => return Ok(unregistered.page()),
        };
    match (hint, browser) {
        // The relying party speaks for the browser's own user: end its session and the hint's
        // (the same one, or another of this user's) at once.
        (Some(hint), Some(browser)) if browser.session.sub == hint.sub => {
            let mut sids = vec![browser.session.sid];
            if let Some(sid) = &hint.sid {
                if tenant.grants.is_session_of(sid, &hint.sub) {
                    sids.push(sid.clone());
                }
            }
            sign_out::end_sessions(
                &tenant,
                &state.http,
                &sids,
                "end_session with id_token_hint",
            );
            Ok(signed_out(&tenant, redirect, params.get("state")))
        }
        // Someone must confirm: no hint, or another user's ID token in this browser.
        (_, Some(browser)) => {
            let back = redirect.as_deref().map(|uri| Return {
                client_id: client_id.unwrap_or_default(),
                post_logout_redirect_uri: uri,
                state: params.get("state"),
            });
            Ok(confirmation_page(
                &tenant,
                StatusCode::OK,
                &browser,
                back,
                None,
            ))
        }
        // No browser session: nothing of this browser's to end, and a hint alone proves only
        // that someone once saw an ID token (see the module's comment).
        (hint, None) => {
            if let Some(hint) = &hint {
                tenant.record(
                    "end_session_without_browser_session",
                    Some(&hint.sub),
                    Some(&hint.client_id),
                    "id_token_hint without this browser's IdP session; nothing ended",
                );
            }
            Ok(signed_out_without_session(redirect, params.get("state")))
        }
    }
}

/// The confirmation form posted back: ends the browser's session if its CSRF token matches.
fn confirmed(
    state: &IdpState,
    tenant: &Arc<Tenant>,
    params: &Params,
    browser: Option<BrowserSession>,
) -> Result<HttpResponse, OAuthError> {
    let Some(browser) = browser else {
        // Nothing to end, and nothing proves who asked: no redirect.
        return Ok(signed_out_without_session(None, None));
    };
    if !browser.csrf_matches(CsrfPurpose::EndSession, params.get("csrf_token")) {
        tenant.record(
            "end_session_csrf_refused",
            Some(&browser.session.sub),
            None,
            "sign-out confirmation without this browser's CSRF token; nothing ended",
        );
        return Ok(error_page(
            StatusCode::FORBIDDEN,
            "This sign-out was not confirmed from this browser, so nothing was ended. Use the sign-out button of the identity provider's own page.",
        ));
    }
    let redirect = match registered_redirect(
        tenant,
        params.get("client_id"),
        params.get("post_logout_redirect_uri"),
    ) {
        Ok(r) => r,
        Err(unregistered) => return Ok(unregistered.page()),
    };
    sign_out::end_sessions(
        tenant,
        &state.http,
        &[browser.session.sid],
        "end_session confirmed by the user",
    );
    Ok(signed_out(tenant, redirect, params.get("state")))
}

/// Where the confirmed sign-out returns to: carried through the form, checked again on post.
struct Return<'a> {
    client_id: &'a str,
    post_logout_redirect_uri: &'a str,
    state: Option<&'a str>,
}

fn confirmation_page(
    tenant: &Tenant,
    status: StatusCode,
    browser: &BrowserSession,
    back: Option<Return<'_>>,
    problem: Option<&str>,
) -> HttpResponse {
    let account = tenant
        .directory
        .read()
        .user(&browser.session.sub)
        .map(|u| match &u.username {
            Some(name) => name.to_string(),
            None => "a guest account".to_owned(),
        })
        .unwrap_or_else(|| "this account".to_owned());
    html(
        status,
        pages::end_session(&pages::EndSessionPage {
            tenant: &tenant.display_name,
            issuer: &tenant.issuer,
            account: &account,
            csrf_token: &browser.csrf_token(CsrfPurpose::EndSession),
            client_id: back.as_ref().map(|b| b.client_id),
            post_logout_redirect_uri: back.as_ref().map(|b| b.post_logout_redirect_uri),
            state: back.as_ref().and_then(|b| b.state),
            problem,
        }),
    )
}

/// After a session ended: the redirect back to the client (with `state`), or a notice; either
/// way the session cookie is cleared.
fn signed_out(tenant: &Tenant, redirect: Option<String>, state: Option<&str>) -> HttpResponse {
    let mut res = back_to_client(redirect, state).unwrap_or_else(|| {
        html(
            StatusCode::OK,
            pages::notice(
                "Signed out",
                "You are signed out of this identity provider.",
            ),
        )
    });
    if let Err(e) = res.add_cookie(&browser_session::removal(tenant)) {
        tracing::error!(error = %e, "could not clear the session cookie");
    }
    res
}

/// Nothing was ended: the redirect back to the client (with `state`), or a notice saying this
/// browser had nothing to sign out.
fn signed_out_without_session(redirect: Option<String>, state: Option<&str>) -> HttpResponse {
    back_to_client(redirect, state).unwrap_or_else(|| {
        html(
            StatusCode::OK,
            pages::notice(
                "Not signed in",
                "This browser is not signed in to this identity provider, so there is nothing to sign out here. Sessions elsewhere were not signed out.",
            ),
        )
    })
}

/// The redirect to a registered `post_logout_redirect_uri`, with `state` if the client sent one.
fn back_to_client(redirect: Option<String>, state: Option<&str>) -> Option<HttpResponse> {
    let mut url = redirect.and_then(|uri| url::Url::parse(&uri).ok())?;
    if let Some(s) = state {
        url.query_pairs_mut().append_pair("state", s);
    }
    Some(
        HttpResponse::SeeOther()
            .insert_header((header::LOCATION, url.as_str()))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
    )
}
