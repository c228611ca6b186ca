//! The authorization endpoint (RFC 6749 §4.1.1, OIDC Core §3.1.2) with its login page, the
//! login form post, and the guest choice (the page's button, or `prompt=create`).
//!
//! Order of checks matters: until `client_id` and `redirect_uri` are known good, errors go to an
//! error page and never redirect (RFC 6749 §4.1.2.1); after that, they redirect with `state`.

use std::collections::BTreeSet;
use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::SecretString;
use time::Duration;

use super::{error_page, gate, html};
use crate::directory::User;
use crate::error::OAuthError;
use crate::faults::Endpoint;
use crate::grants::{AuthRequest, CodeRecord, CodeState, IdpSession};
use crate::pages::{self, LoginPage};
use crate::params::Params;
use crate::pkce::CodeChallenge;
use crate::random;
use crate::redirect_uri;
use crate::scope::Scope;
use crate::state::IdpState;
use crate::tenant::Tenant;

pub const SESSION_COOKIE: &str = "lanyard_idp_session";
/// How long the login page may sit open.
const PENDING_TTL: Duration = Duration::minutes(10);

/// Why an authorization request failed.
enum Refusal {
    /// No trustworthy redirect: show an error page.
    Page(String),
    /// Redirect back with an OAuth error.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: String,
    },
}

impl Refusal {
    fn respond(self, issuer: &str) -> HttpResponse {
        match self {
            Refusal::Page(message) => error_page(StatusCode::BAD_REQUEST, &message),
            Refusal::Redirect {
                redirect_uri,
                state,
                error,
                description,
            } => {
                let mut pairs = vec![
                    ("error", error.to_owned()),
                    ("error_description", description),
                ];
                if let Some(s) = state {
                    pairs.push(("state", s));
                }
                pairs.push(("iss", issuer.to_owned()));
                redirect_with(&redirect_uri, &pairs)
            }
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

/// Validates an authorization request against the tenant's client registry.
fn validate(tenant: &Tenant, p: &Params) -> Result<AuthRequest, Refusal> {
    let client_id = p
        .get("client_id")
        .ok_or_else(|| Refusal::Page("client_id is missing".into()))?;
    let dir = tenant.directory.read();
    let client = dir.client(client_id).ok_or_else(|| {
        Refusal::Page(format!(
            "unknown client_id '{}' for tenant {}",
            client_id.escape_default(),
            tenant.id
        ))
    })?;
    let registered = &client.config.redirect_uris;
    let (redirect, given) = match p.get("redirect_uri") {
        Some(r) => {
            if !registered.iter().any(|reg| redirect_uri::matches(reg, r)) {
                return Err(Refusal::Page(format!(
                    "redirect_uri '{}' is not registered for client {client_id}",
                    r.escape_default()
                )));
            }
            (r.to_owned(), true)
        }
        None => match registered.as_slice() {
            [only] => (only.clone(), false),
            _ => {
                return Err(Refusal::Page(
                    "redirect_uri is required: this client registered several or none".into(),
                ))
            }
        },
    };
    let state = p.get("state").map(str::to_owned);
    let refuse = |error: &'static str, description: String| Refusal::Redirect {
        redirect_uri: redirect.clone(),
        state: state.clone(),
        error,
        description,
    };
    match p.get("response_type") {
        Some("code") => {}
        Some(other) => {
            return Err(refuse(
                "unsupported_response_type",
                format!(
                    "response_type '{}' is not supported; use 'code'",
                    other.escape_default()
                ),
            ))
        }
        None => {
            return Err(refuse(
                "invalid_request",
                "response_type is required".into(),
            ))
        }
    }
    if !client
        .config
        .allows(crate::config::GrantType::AuthorizationCode)
    {
        return Err(refuse(
            "unauthorized_client",
            "this client may not use the authorization code grant".into(),
        ));
    }
    if p.get("request").is_some() || p.get("request_uri").is_some() {
        return Err(refuse(
            "request_not_supported",
            "request objects are not supported".into(),
        ));
    }
    let scope =
        Scope::parse(p.get("scope").unwrap_or("openid")).map_err(|e| refuse("invalid_scope", e))?;
    let outside = scope.outside(&client.config.scopes);
    if !outside.is_empty() {
        return Err(refuse(
            "invalid_scope",
            format!("scope not allowed for this client: {}", outside.join(" ")),
        ));
    }
    let code_challenge = match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (None, None) if client.config.is_confidential() => None,
        (None, _) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge is required (PKCE with S256)".into(),
            ))
        }
        (Some(c), m) => {
            Some(CodeChallenge::parse(c, m).map_err(|e| refuse("invalid_request", e.to_string()))?)
        }
    };
    let nonce = p.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > 512)
        || state.as_ref().is_some_and(|s| s.len() > 2048)
    {
        return Err(refuse(
            "invalid_request",
            "state or nonce is too long".into(),
        ));
    }
    Ok(AuthRequest {
        client_id: client.id().clone(),
        redirect_uri: redirect.clone(),
        redirect_uri_given: given,
        scope,
        state,
        nonce,
        code_challenge,
        login_hint: p.get("login_hint").map(str::to_owned),
        expires_at: tenant.now() + PENDING_TTL,
    })
}

/// The live IdP session named by the request's cookie, if any. A cookie from another tenant is
/// simply unknown here: sessions are stored per tenant.
fn current_session(tenant: &Tenant, req: &HttpRequest) -> Option<IdpSession> {
    let cookie = req.cookie(SESSION_COOKIE)?;
    let grants = tenant.grants.lock();
    let session = grants.sessions.get(&random::fingerprint(cookie.value()))?;
    (session.expires_at > tenant.now()).then(|| session.clone())
}

/// Issues a code for `request` within `session` and redirects back to the client.
fn complete(tenant: &Tenant, request: AuthRequest, session: &IdpSession) -> HttpResponse {
    let code = random::token();
    let now = tenant.now();
    let mut pairs = vec![("code", code.clone())];
    if let Some(s) = &request.state {
        pairs.push(("state", s.clone()));
    }
    pairs.push(("iss", tenant.issuer.clone()));
    let redirect_uri = request.redirect_uri.clone();
    {
        let mut grants = tenant.grants.lock();
        if let Some((_, s)) = grants
            .sessions
            .iter_mut()
            .find(|(_, s)| s.sid == session.sid)
        {
            s.clients.insert(request.client_id.clone());
        }
        grants.codes.insert(
            random::fingerprint(&code),
            CodeRecord {
                sub: session.sub.clone(),
                sid: session.sid.clone(),
                auth_time: session.auth_time,
                expires_at: now + Tenant::secs(tenant.lifetimes.code),
                state: CodeState::Fresh,
                request,
            },
        );
    }
    redirect_with(&redirect_uri, &pairs)
}

fn login_page(
    tenant: &Tenant,
    id: &str,
    request: &AuthRequest,
    error: Option<&str>,
    status: StatusCode,
) -> HttpResponse {
    let dir = tenant.directory.read();
    let page = pages::login(&LoginPage {
        tenant: &tenant.display_name,
        issuer: &tenant.issuer,
        client_id: request.client_id.as_str(),
        auth_request: id,
        users: dir.registered_users(),
        login_hint: request.login_hint.as_deref(),
        error,
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
    let params = match Params::parse(req.query_string().as_bytes()) {
        Ok(p) => p,
        Err(e) => return Ok(error_page(StatusCode::BAD_REQUEST, &e.to_string())),
    };
    let request = match validate(&tenant, &params) {
        Ok(r) => r,
        Err(refusal) => return Ok(refusal.respond(&tenant.issuer)),
    };
    let prompts: BTreeSet<&str> = params
        .get("prompt")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    let max_age = match params.get("max_age").map(parse_max_age) {
        None => None,
        Some(Some(secs)) => Some(secs),
        Some(None) => {
            return Ok(Refusal::Redirect {
                redirect_uri: request.redirect_uri,
                state: request.state,
                error: "invalid_request",
                description: "max_age must be a non-negative whole number of seconds".into(),
            }
            .respond(&tenant.issuer))
        }
    };
    let mut session = current_session(&tenant, &req);
    if let (Some(s), Some(max_age)) = (&session, max_age) {
        // `max_age=0` asks for a sign-in now (OIDC Core §3.1.2.1: like `prompt=login`), even
        // one that happened this very second.
        if max_age == 0 || tenant.now() - s.auth_time > Duration::seconds(max_age) {
            session = None;
        }
    }
    if prompts.contains("none") {
        if prompts.len() > 1 {
            return Ok(Refusal::Redirect {
                redirect_uri: request.redirect_uri,
                state: request.state,
                error: "invalid_request",
                description: "prompt=none cannot be combined with other prompts".into(),
            }
            .respond(&tenant.issuer));
        }
        return Ok(match session {
            Some(s) => complete(&tenant, request, &s),
            None => Refusal::Redirect {
                redirect_uri: request.redirect_uri,
                state: request.state,
                error: "login_required",
                description: "no signed-in session at the identity provider".into(),
            }
            .respond(&tenant.issuer),
        });
    }
    // `prompt=create` (OpenID Connect "Initiating User Registration") asks for a new account:
    // here, a new guest, signed in at once. It is how a client without a person at the form
    // (`lanyard login --guest`) picks the guest choice; any IdP session in the browser is
    // replaced by the guest's.
    if prompts.contains("create") {
        // A client waits on its redirect and no person sees a page: a refusal goes back to it
        // as `temporarily_unavailable` (RFC 6749 §4.1.2.1), so it stops waiting and can say why.
        return Ok(
            match tenant.create_guest(peer_ip(&req), request.client_id.as_str()) {
                Ok(sub) => finish_login(&state, &tenant, &sub, request),
                Err(refusal) => Refusal::Redirect {
                    redirect_uri: request.redirect_uri,
                    state: request.state,
                    error: "temporarily_unavailable",
                    description: refusal.to_string(),
                }
                .respond(&tenant.issuer),
            },
        );
    }
    // `prompt=consent` (which OIDC Core §11 asks of a client wanting `offline_access`) needs no
    // page here: every client of a tenant is the tenant's own (first-party), so consent to its
    // scopes is taken as given — the login form when there is no IdP session, a code at once when
    // there is one, `offline_access` kept either way.
    if let Some(s) = session.filter(|_| !prompts.contains("login")) {
        return Ok(complete(&tenant, request, &s));
    }
    let id = random::token();
    tenant
        .grants
        .lock()
        .pending
        .insert(id.clone(), request.clone());
    Ok(login_page(&tenant, &id, &request, None, StatusCode::OK))
}

/// `max_age` as OIDC Core §3.1.2.1 defines it: a non-negative integer of seconds, digits only
/// (no sign, fraction or exponent). `None` when it is not one.
fn parse_max_age(value: &str) -> Option<i64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // More seconds than fit is no bound at all.
    Some(value.parse::<i64>().unwrap_or(i64::MAX / 2))
}

/// Creates an IdP session for `sub` and the cookie naming it.
fn start_session(tenant: &Tenant, sub: &str, https: bool) -> (IdpSession, Cookie<'static>) {
    let handle = random::token();
    let now = tenant.now();
    let ttl = Tenant::secs(tenant.lifetimes.idp_session);
    let session = IdpSession {
        sid: random::id(),
        sub: sub.to_owned(),
        auth_time: now,
        expires_at: now + ttl,
        clients: BTreeSet::new(),
    };
    tenant
        .grants
        .lock()
        .sessions
        .insert(random::fingerprint(&handle), session.clone());
    let cookie = Cookie::build(SESSION_COOKIE, handle)
        .path(format!("/{}/", tenant.id))
        .http_only(true)
        .secure(https)
        .same_site(SameSite::Lax)
        .max_age(ttl)
        .finish();
    tenant.record(
        "idp_session_started",
        Some(sub),
        None,
        format!("sid {}", session.sid),
    );
    (session, cookie)
}

fn take_pending(tenant: &Tenant, id: &str) -> Option<AuthRequest> {
    let mut grants = tenant.grants.lock();
    let request = grants.pending.remove(id)?;
    (request.expires_at > tenant.now()).then_some(request)
}

fn pending(tenant: &Tenant, id: &str) -> Option<AuthRequest> {
    let grants = tenant.grants.lock();
    grants
        .pending
        .get(id)
        .filter(|r| r.expires_at > tenant.now())
        .cloned()
}

const EXPIRED_REQUEST: &str =
    "This sign-in request is unknown or has expired. Return to the application and start again.";

pub async fn login(
    state: web::Data<IdpState>,
    path: web::Path<String>,
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
    let Some(request) = pending(&tenant, id) else {
        return Ok(error_page(StatusCode::BAD_REQUEST, EXPIRED_REQUEST));
    };
    let username = params.get("username").unwrap_or_default().to_owned();
    let password = SecretString::from(params.get("password").unwrap_or_default().to_owned());
    let user = tenant.directory.read().user_by_name(&username).cloned();
    let ok = web::block(move || check_password(user, &password))
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
            id,
            &request,
            Some("Wrong username or password."),
            StatusCode::UNAUTHORIZED,
        ));
    };
    let Some(request) = take_pending(&tenant, id) else {
        return Ok(error_page(StatusCode::BAD_REQUEST, EXPIRED_REQUEST));
    };
    Ok(finish_login(&state, &tenant, &user.sub, request))
}

/// Runs Argon2 even for an unknown user, so timing does not reveal which usernames exist.
fn check_password(user: Option<User>, password: &SecretString) -> Option<User> {
    use secrecy::ExposeSecret;
    match user {
        Some(u) if u.verify_password(password.expose_secret()) => Some(u),
        Some(_) => None,
        None => {
            let _ = crate::directory::hash_password(password);
            None
        }
    }
}

fn finish_login(
    state: &IdpState,
    tenant: &Arc<Tenant>,
    sub: &str,
    request: AuthRequest,
) -> HttpResponse {
    let (session, cookie) = start_session(tenant, sub, state.base_url.starts_with("https://"));
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
    let Some(request) = take_pending(&tenant, id) else {
        return Ok(error_page(StatusCode::BAD_REQUEST, EXPIRED_REQUEST));
    };
    match tenant.create_guest(peer_ip(&req), request.client_id.as_str()) {
        Ok(sub) => Ok(finish_login(&state, &tenant, &sub, request)),
        // A person is at the page: 429 with the reason, and the request stays pending so the
        // sign-in form on the same page still works.
        Err(refusal) => {
            tenant
                .grants
                .lock()
                .pending
                .insert(id.to_owned(), request.clone());
            let mut res = login_page(
                &tenant,
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

/// The client's IP address, for the guest rate: the TCP peer, never a forwarded-for header.
fn peer_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    req.peer_addr().map(|a| a.ip())
}
