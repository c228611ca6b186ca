//! The authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2) with its login page, the
//! login form post, and the guest choice (the page's button, or `prompt=create`). The request is
//! parsed and checked by [`AuthorizationRequest`] (which also decides whether an error may be
//! redirected); the IdP session comes from [`BrowserSession`]; codes and pending requests live
//! in the tenant's grant store.

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::SecretString;
use time::Duration;

use super::{error_page, gate, html, peer_ip};
use crate::authorization_request::{AuthorizationError, AuthorizationRequest, Refusal};
use crate::browser_session::{self, BrowserSession, CsrfPurpose};
use crate::directory::verify_sign_in;
use crate::error::OAuthError;
use crate::faults::Endpoint;
use crate::grants::{AuthRequest, IdpSession};
use crate::pages::{self, LoginPage};
use crate::params::Params;
use crate::state::IdpState;
use crate::tenant::Tenant;

/// Answers a refused authorization request: an error page, or a redirect back to the client.
fn refused(refusal: Refusal, issuer: &str) -> HttpResponse {
    match refusal {
        Refusal::Page(message) => error_page(StatusCode::BAD_REQUEST, &message),
        Refusal::Redirect {
            redirect_uri,
            state,
            problem,
        } => {
            let mut pairs = vec![
                ("error", problem.error.as_str().to_owned()),
                ("error_description", problem.description),
            ];
            if let Some(s) = state {
                pairs.push(("state", s));
            }
            pairs.push(("iss", issuer.to_owned()));
            redirect_with(&redirect_uri, &pairs)
        }
    }
}

/// A 303 to `base` with `pairs` appended to its query.
fn redirect_with(base: &str, pairs: &[(&str, String)]) -> HttpResponse {
    match url::Url::parse(base) {
        Ok(mut url) => {
            url.query_pairs_mut()
                .extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
            HttpResponse::SeeOther()
                .insert_header((header::LOCATION, url.as_str()))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        }
        Err(_) => error_page(
            StatusCode::BAD_REQUEST,
            "the redirect_uri is not a valid URI",
        ),
    }
}

/// Issues a code for `request` within `session` and redirects back to the client.
fn complete(tenant: &Tenant, request: AuthRequest, session: &IdpSession) -> HttpResponse {
    let mut pairs = Vec::new();
    if let Some(s) = &request.state {
        pairs.push(("state", s.clone()));
    }
    pairs.push(("iss", tenant.issuer.clone()));
    let redirect_uri = request.redirect_uri.clone();
    let ttl = Tenant::secs(tenant.lifetimes.code);
    let code = tenant
        .grants
        .issue_code(session, request, tenant.now(), ttl);
    pairs.insert(0, ("code", code));
    redirect_with(&redirect_uri, &pairs)
}

fn login_page(
    tenant: &Tenant,
    browser: Option<&BrowserSession>,
    id: &str,
    request: &AuthRequest,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let guest_csrf = browser.map(|b| b.csrf_token(CsrfPurpose::Guest));
    let dir = tenant.directory.read();
    let page = pages::login(&LoginPage {
        tenant: &tenant.display_name,
        issuer: &tenant.issuer,
        client_id: request.client_id.as_str(),
        auth_request: id,
        users: dir.registered_users(),
        login_hint: request.login_hint.as_deref(),
        error,
        guest_csrf: guest_csrf.as_deref(),
    });
    html(status, page)
}

pub async fn authorize(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Authorize).await {
        return Ok(res);
    }
    let request = match AuthorizationRequest::parse(req.query_string().as_bytes()) {
        Ok(r) => r,
        Err(e) => return Ok(error_page(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let valid = match request.validate(&tenant.directory.read(), &tenant.id, tenant.now()) {
        Ok(v) => v,
        Err(refusal) => return Ok(refused(refusal, &tenant.issuer)),
    };
    let prompt = valid.prompt;
    let browser = BrowserSession::of(&tenant, &req);
    let mut session = browser.as_ref().map(|b| b.session.clone());
    if let (Some(s), Some(max_age)) = (&session, valid.max_age) {
        // `max_age=0` asks for a sign-in now (OIDC Core §3.1.2.1: like `prompt=login`), even
        // one that happened this very second.
        if max_age == 0 || tenant.now() - s.auth_time > Duration::seconds(max_age) {
            session = None;
        }
    }
    if prompt.none {
        return Ok(match session {
            Some(s) => complete(&tenant, valid.request, &s),
            None => refused(
                valid.refuse(
                    AuthorizationError::LoginRequired,
                    "no signed-in session at the identity provider",
                ),
                &tenant.issuer,
            ),
        });
    }
    // `prompt=create` (OpenID Connect "Initiating User Registration") asks for a new account:
    // here, a new guest, signed in at once. It is how a client without a person at the form
    // (`lanyard login --guest`) picks the guest choice; the browser's IdP session is replaced by
    // the guest's. Any site can send a browser here, so a registered user's session is not
    // replaced without asking (login CSRF): the person confirms on a page whose form carries
    // this browser's CSRF token. A guest's session is replaced at once (guest for guest).
    if prompt.create {
        if let Some((browser, account)) = browser
            .as_ref()
            .and_then(|b| registered_account(&tenant, b).map(|a| (b, a)))
        {
            let id = tenant.grants.hold_request(valid.request.clone());
            return Ok(html(
                StatusCode::OK,
                pages::replace_with_guest(&pages::ReplaceWithGuestPage {
                    tenant: &tenant.display_name,
                    issuer: &tenant.issuer,
                    client_id: valid.request.client_id.as_str(),
                    account: &account,
                    auth_request: &id,
                    csrf_token: &browser.csrf_token(CsrfPurpose::Guest),
                }),
            ));
        }
        // A client waits on its redirect and no person sees a page: a refusal goes back to it
        // as `temporarily_unavailable` (RFC 6749 §4.1.2.1), so it stops waiting and can say why.
        return Ok(
            match tenant.create_guest(peer_ip(&req), valid.request.client_id.as_str()) {
                Ok(sub) => finish_login(&state, &tenant, &sub, valid.request, browser.as_ref()),
                Err(refusal) => refused(
                    valid.refuse(
                        AuthorizationError::TemporarilyUnavailable,
                        refusal.to_string(),
                    ),
                    &tenant.issuer,
                ),
            },
        );
    }
    // `prompt=consent` (which OIDC Core §11 asks of a client wanting `offline_access`) needs no
    // page here: every client of a tenant is the tenant's own (first-party), so consent to its
    // scopes is taken as given — the login form when there is no IdP session, a code at once when
    // there is one, `offline_access` kept either way.
    if let Some(s) = session.filter(|_| !prompt.login) {
        return Ok(complete(&tenant, valid.request, &s));
    }
    let id = tenant.grants.hold_request(valid.request.clone());
    Ok(login_page(
        &tenant,
        browser.as_ref(),
        &id,
        &valid.request,
        None,
        StatusCode::OK,
    ))
}

const EXPIRED_REQUEST: &str =
    "This sign-in request is unknown or has expired. Return to the application and start again.";

/// The username of the registered user whose IdP session `browser` holds; `None` for a guest.
fn registered_account(tenant: &Tenant, browser: &BrowserSession) -> Option<String> {
    let dir = tenant.directory.read();
    let user = dir.user(&browser.session.sub)?;
    user.username
        .as_ref()
        .filter(|_| !user.is_guest)
        .map(|name| name.to_string())
}

pub async fn login(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Login).await {
        return Ok(res);
    }
    let params = match Params::parse(&body) {
        Ok(p) => p,
        Err(e) => return Ok(error_page(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let Some(id) = params.get("auth_request") else {
        return Ok(error_page(
            StatusCode::BAD_REQUEST,
            "auth_request is missing from the form",
        ));
    };
    let Some(request) = tenant.grants.pending_request(id, tenant.now()) else {
        return Ok(error_page(StatusCode::BAD_REQUEST, EXPIRED_REQUEST));
    };
    let username = params.get("username").unwrap_or_default().to_owned();
    let password = SecretString::from(params.get("password").unwrap_or_default().to_owned());
    let user = tenant.directory.read().user_by_name(&username).cloned();
    let ok = crate::password_work::run(move || verify_sign_in(user, &password))
        .await
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let Some(user) = ok else {
        tenant.record(
            "login_failed",
            None,
            Some(request.client_id.as_str()),
            format!("username '{}'", username.escape_default()),
        );
        return Ok(login_page(
            &tenant,
            BrowserSession::of(&tenant, &req).as_ref(),
            id,
            &request,
            Some("Wrong username or password."),
            StatusCode::UNAUTHORIZED,
        ));
    };
    let Some(request) = tenant.grants.take_request(id, tenant.now()) else {
        return Ok(error_page(StatusCode::BAD_REQUEST, EXPIRED_REQUEST));
    };
    let browser = BrowserSession::of(&tenant, &req);
    Ok(finish_login(
        &state,
        &tenant,
        &user.sub,
        request,
        browser.as_ref(),
    ))
}

/// Signs `sub` in (in the browser's session when it is `sub`'s: [`browser_session::sign_in`])
/// and answers the request with a code in that session.
fn finish_login(
    state: &IdpState,
    tenant: &Arc<Tenant>,
    sub: &str,
    request: AuthRequest,
    browser: Option<&BrowserSession>,
) -> HttpResponse {
    let (session, cookie) =
        browser_session::sign_in(tenant, sub, state.base_url.starts_with("https://"), browser);
    let mut res = complete(tenant, request, &session);
    if let Err(e) = res.add_cookie(&cookie) {
        tracing::error!(error = %e, "could not set the session cookie");
    }
    res
}

/// The guest choice: creates an anonymous user (`is_guest: true`) and signs it in.
pub async fn guest(
    state: web::Data<IdpState>,
    path: web::Path<String>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, OAuthError> {
    let tenant = state.tenant(&path)?;
    if let Some(res) = gate(&tenant, Endpoint::Guest).await {
        return Ok(res);
    }
    let params = Params::parse(&body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let id = params.require("auth_request").map_err(|e| {
        OAuthError::invalid_request(format!(
            "{e}: start with the authorization endpoint and post its auth_request"
        ))
    })?;
    // A guest replaces a registered user's session only when this browser's own page asked.
    let browser = BrowserSession::of(&tenant, &req);
    if let Some(b) = &browser {
        if registered_account(&tenant, b).is_some()
            && !b.csrf_matches(CsrfPurpose::Guest, params.get("csrf_token"))
        {
            tenant.record(
                "guest_csrf_refused",
                Some(&b.session.sub),
                None,
                "guest sign-in over a signed-in account without this browser's CSRF token; nothing changed",
            );
            return Ok(error_page(
                StatusCode::FORBIDDEN,
                "This guest sign-in was not confirmed from this browser, so you are still signed in. Return to the application and start again.",
            ));
        }
    }
    let Some(request) = tenant.grants.take_request(id, tenant.now()) else {
        return Ok(error_page(StatusCode::BAD_REQUEST, EXPIRED_REQUEST));
    };
    match tenant.create_guest(peer_ip(&req), request.client_id.as_str()) {
        Ok(sub) => Ok(finish_login(
            &state,
            &tenant,
            &sub,
            request,
            browser.as_ref(),
        )),
        // A person is at the page: 429 with the reason, and the request stays pending so the
        // sign-in form on the same page still works.
        Err(refusal) => {
            tenant.grants.return_request(id, request.clone());
            let mut res = login_page(
                &tenant,
                browser.as_ref(),
                id,
                &request,
                Some(&format!(
                    "No guest account was created: {refusal}. You can sign in with an account instead."
                )),
                StatusCode::TOO_MANY_REQUESTS,
            );
            if let Some(secs) = refusal.retry_after_secs() {
                if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            Ok(res)
        }
    }
}
