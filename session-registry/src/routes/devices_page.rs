//! "Your devices": a server-rendered page where a person signs in with the tenant's IdP (the
//! registry is its confidential client) and sees and revokes the sessions of their account.
//!
//! Signing in here opens a registry session for this browser (device platform `web`), kept in an
//! `HttpOnly`, `SameSite=Lax` cookie (`Secure` when the public URL is https); forms carry a CSRF
//! token derived from that session token, and cross-origin posts are refused.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;
use parking_lot::Mutex;
use rand::RngCore;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

use super::devices_view as view;
use crate::config::WebClientConfig;
use crate::error::ApiError;
use crate::refusal::Refusal;
use crate::service::{
    ClientWindows, CreateSessionRequest, DeviceRequest, ReauthenticateRequest, Registry,
    RevokeRequest, RevokeScope, SessionView,
};
use crate::token::hash_hex;
use registry_api::Credential;

const SESSION_COOKIE: &str = "lanyard_session";
const LOGIN_COOKIE: &str = "lanyard_login";
const PENDING_TTL: i64 = 600;
/// Sign-ins in progress kept at once; past it the oldest is forgotten (its person starts again).
const MAX_PENDING: usize = 10_000;
/// Sign-ins one client address may start per minute.
const SIGN_INS_PER_MINUTE: u32 = 20;

/// What the person asked for that needed a fresh sign-in first (step-up), and the page session
/// it is for (the session cookie is scoped to `/devices/`, so the callback does not see it).
#[derive(Clone)]
enum Then {
    Revoke {
        session_id: String,
        request: RevokeRequest,
    },
}

struct Pending {
    tenant: String,
    verifier: String,
    nonce: String,
    created: i64,
    /// Set when this sign-in is a step-up for an action of a signed-in browser.
    then: Option<Then>,
}

/// Web-page state: client registrations, logins in progress, the IdPs' endpoints.
pub struct WebState {
    clients: HashMap<String, WebClientConfig>,
    pending: Mutex<HashMap<String, Pending>>,
    /// Sign-ins started per client (an IPv6 /64 counts as one) in the current minute.
    starts: ClientWindows,
    endpoints: Mutex<HashMap<String, IdpEndpoints>>,
    http: reqwest::Client,
}

impl WebState {
    pub fn new(clients: &[WebClientConfig]) -> Self {
        Self {
            clients: clients
                .iter()
                .map(|c| (c.tenant.clone(), c.clone()))
                .collect(),
            pending: Mutex::new(HashMap::new()),
            starts: ClientWindows::new(MAX_PENDING),
            endpoints: Mutex::new(HashMap::new()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }

    /// `issuer`'s endpoints, from its discovery document (which must name `issuer` itself),
    /// read with the same bounds as every fetch from an issuer.
    async fn endpoints(&self, issuer: &str) -> Result<IdpEndpoints, ApiError> {
        if let Some(e) = self.endpoints.lock().get(issuer) {
            return Ok(e.clone());
        }
        let unavailable = |detail: String| ApiError::IssuerUnavailable(detail);
        let res = self
            .http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let doc: Value = crate::oidc::read_json(res)
            .await
            .map_err(|e| unavailable(format!("{e:?}")))?;
        if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
            return Err(unavailable("discovery names a different issuer".into()));
        }
        let get = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_owned);
        let (authorization, token) = get("authorization_endpoint")
            .zip(get("token_endpoint"))
            .ok_or_else(|| unavailable("the discovery document is incomplete".into()))?;
        let endpoints = IdpEndpoints {
            authorization,
            token,
            sends_iss: doc
                .get("authorization_response_iss_parameter_supported")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        };
        self.endpoints
            .lock()
            .insert(issuer.to_owned(), endpoints.clone());
        Ok(endpoints)
    }
}

/// What the page needs of an IdP's discovery document.
#[derive(Clone)]
struct IdpEndpoints {
    authorization: String,
    token: String,
    /// RFC 9207: the IdP says it puts `iss` in every authorization response.
    sends_iss: bool,
}

fn random() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn csrf_for(token: &str) -> String {
    hash_hex(&format!("lanyard-csrf:{token}"))
}

fn secure(reg: &Registry) -> bool {
    reg.issuer.starts_with("https://")
}

fn cookie<'a>(name: &'a str, value: String, path: &'a str, reg: &Registry) -> Cookie<'a> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .secure(secure(reg))
        .same_site(SameSite::Lax)
        .finish()
}

/// `GET /devices/{tenant}`: the device list, or a redirect to the IdP to sign in.
pub async fn devices(
    reg: web::Data<Registry>,
    state: web::Data<WebState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    if let Some(token) = req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned()) {
        if let Ok(caller) = reg.resolve(&token, &super::ctx(&req)).await {
            if caller.tenant == tenant {
                let sessions = reg.list(&caller).await?;
                return Ok(view::devices(
                    &tenant,
                    &sessions,
                    &csrf_for(&token),
                    reg.now(),
                ));
            }
        }
    }
    start_login(&reg, &state, &req, &tenant, None).await
}

/// Counts a sign-in started by `ip`; `false` once it started too many this minute.
fn may_start(state: &WebState, ip: Option<std::net::IpAddr>, now: i64) -> bool {
    let Some(ip) = ip else { return true };
    // A full map (every slot a client started within the minute): a new one waits.
    state
        .starts
        .add(ip, now)
        .is_some_and(|n| n <= SIGN_INS_PER_MINUTE)
}

fn too_many_sign_ins() -> HttpResponse {
    let mut res = view::page(
        "Too many sign-ins",
        html! {
            h1 { "Too many sign-ins" }
            p { "Too many sign-ins were started from your address in the last minute. Wait a minute, then reload this page." }
        },
    );
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    res.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
    res
}

async fn start_login(
    reg: &Registry,
    state: &WebState,
    req: &HttpRequest,
    tenant: &str,
    then: Option<Then>,
) -> Result<HttpResponse, ApiError> {
    let client = state.clients.get(tenant).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no device page for tenant '{}'",
            tenant.escape_default()
        ))
    })?;
    let record = reg
        .store
        .tenant(tenant)
        .await?
        .ok_or_else(|| ApiError::NotFound("unknown tenant".into()))?;
    let authorize = state.endpoints(&record.issuer).await?.authorization;
    let (st, verifier, nonce) = (random(), random(), random());
    let challenge = {
        use base64::Engine;
        use sha2::Digest;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()))
    };
    let now = reg.now();
    if !may_start(state, super::ctx(req).ip, now) {
        tracing::info!(
            tenant,
            "devices page: sign-ins from one address rate-limited"
        );
        return Ok(too_many_sign_ins());
    }
    let step_up = then.is_some();
    {
        let mut pending = state.pending.lock();
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, p| now - p.created < PENDING_TTL);
        }
        if pending.len() >= MAX_PENDING {
            // Still full of live sign-ins: the oldest goes.
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(
            st.clone(),
            Pending {
                tenant: tenant.to_owned(),
                verifier,
                nonce: nonce.clone(),
                created: now,
                then,
            },
        );
    }
    let mut url = url::Url::parse(&authorize).map_err(|e| ApiError::Unavailable(e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &client.client_id)
        .append_pair("redirect_uri", &format!("{}/auth/callback", reg.issuer))
        .append_pair("scope", "openid profile email")
        .append_pair("state", &st)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    if step_up {
        // RFC 9470: the IdP must authenticate the person now, whatever its session says.
        url.query_pairs_mut()
            .append_pair("max_age", "0")
            .append_pair("prompt", "login");
    }
    let mut res = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url.as_str()))
        .finish();
    let _ = res.add_cookie(&cookie(LOGIN_COOKIE, st, "/auth/", reg));
    Ok(res)
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    /// RFC 9207: the issuer that answered, when it says.
    iss: Option<String>,
}

/// `GET /auth/callback`: the IdP's answer; state must match this browser's login cookie.
pub async fn callback(
    reg: web::Data<Registry>,
    state: web::Data<WebState>,
    req: HttpRequest,
    q: web::Query<Callback>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    if let Some(err) = q.error {
        return Err(ApiError::bad_request(
            "login_failed",
            format!("the identity provider answered {}", err.escape_default()),
        ));
    }
    let st = q
        .state
        .ok_or_else(|| ApiError::bad_request("invalid_request", "state is missing"))?;
    let bound = req
        .cookie(LOGIN_COOKIE)
        .is_some_and(|c| crate::ct_eq(c.value().as_bytes(), st.as_bytes()));
    let pending = state.pending.lock().remove(&st);
    let (Some(pending), true) = (pending, bound) else {
        return Err(ApiError::bad_request(
            "invalid_state",
            "this sign-in is unknown, expired or belongs to another browser; start again",
        ));
    };
    if reg.now() - pending.created >= PENDING_TTL {
        return Err(ApiError::bad_request(
            "invalid_state",
            "this sign-in took too long; start again",
        ));
    }
    let code = q
        .code
        .ok_or_else(|| ApiError::bad_request("invalid_request", "code is missing"))?;
    let client = state
        .clients
        .get(&pending.tenant)
        .ok_or_else(|| ApiError::NotFound("no device page for this tenant".into()))?;
    let tenant = reg
        .store
        .tenant(&pending.tenant)
        .await?
        .ok_or_else(|| ApiError::NotFound("unknown tenant".into()))?;
    let endpoints = state.endpoints(&tenant.issuer).await?;
    // RFC 9207: an answer naming another issuer is a mix-up, and one without `iss` from an IdP
    // that says it always sends it may be one too; no code is sent anywhere.
    let iss_ok = match q.iss.as_deref() {
        Some(iss) => iss == tenant.issuer,
        None => !endpoints.sends_iss,
    };
    if !iss_ok {
        tracing::warn!(tenant = %tenant.slug, "devices page: callback from another issuer refused");
        return Err(ApiError::bad_request(
            "issuer_mismatch",
            "this answer names another identity provider than the one asked; start again",
        ));
    }
    let res = state
        .http
        .post(&endpoints.token)
        .basic_auth(
            &client.client_id,
            Some(client.client_secret.expose_secret()),
        )
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", &format!("{}/auth/callback", reg.issuer)),
            ("code_verifier", pending.verifier.as_str()),
        ])
        .send()
        .await
        .map_err(|e| ApiError::IssuerUnavailable(e.to_string()))?;
    let status = res.status();
    if !status.is_success() {
        // The IdP's own words are not repeated to the browser.
        tracing::warn!(tenant = %tenant.slug, %status, "devices page: the code exchange failed");
        return Err(ApiError::bad_request(
            "login_failed",
            format!(
                "the code exchange failed (HTTP {}); start again",
                status.as_u16()
            ),
        ));
    }
    let body: Value = crate::oidc::read_json(res)
        .await
        .map_err(|e| ApiError::IssuerUnavailable(format!("{e:?}")))?;
    let id_token = body["id_token"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("login_failed", "no ID token in the answer"))?;
    let claims = reg
        .verifier
        .verify_id_token(id_token, &tenant)
        .await
        .map_err(Refusal::from)?;
    if claims.get("nonce").and_then(Value::as_str) != Some(pending.nonce.as_str()) {
        return Err(Refusal::id_token("nonce", "nonce does not match this sign-in").into());
    }
    if let Some(then) = pending.then {
        return finish_step_up(&reg, &tenant.slug, id_token, then).await;
    }
    let created = reg
        .create_session(
            CreateSessionRequest {
                id_token: Credential::new(id_token),
                device: DeviceRequest {
                    id: format!("web-{}", &random()[..12]),
                    name: "Web browser".into(),
                    platform: "web".into(),
                },
                session_duration_minutes: Some(60),
                tenant: Some(tenant.slug.clone()),
            },
            &super::ctx(&req),
        )
        .await?;
    let token = created
        .session_token
        .map(|t| t.expose().to_owned())
        .unwrap_or_default();
    let mut res = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/devices/{}", tenant.slug)))
        .finish();
    let _ = res.add_cookie(&cookie(SESSION_COOKIE, token, "/devices/", &reg));
    let mut gone = cookie(LOGIN_COOKIE, String::new(), "/auth/", &reg);
    gone.make_removal();
    let _ = res.add_cookie(&gone);
    Ok(res)
}

/// The browser's fresh sign-in for a step-up: recorded on its session, then the action it was
/// for is done.
async fn finish_step_up(
    reg: &Registry,
    tenant: &str,
    id_token: &str,
    then: Then,
) -> Result<HttpResponse, ApiError> {
    let Then::Revoke {
        session_id,
        request,
    } = then;
    let caller = reg.caller_by_session_id(tenant, &session_id).await?;
    reg.reauthenticate(
        &caller,
        ReauthenticateRequest {
            id_token: Credential::new(id_token),
        },
    )
    .await?;
    let caller = reg.caller_by_session_id(tenant, &session_id).await?;
    reg.revoke(&caller, request).await?;
    Ok(HttpResponse::SeeOther()
        .insert_header((header::LOCATION, format!("/devices/{tenant}")))
        .finish())
}

#[derive(Deserialize)]
pub struct RevokeForm {
    csrf: String,
    session_id: Option<String>,
    scope: Option<String>,
    /// `yes` once the person confirmed "sign out everywhere else".
    confirm: Option<String>,
}

/// `POST /devices/{tenant}/revoke`: one session, or every other one.
pub async fn revoke(
    reg: web::Data<Registry>,
    state: web::Data<WebState>,
    req: HttpRequest,
    path: web::Path<String>,
    form: web::Form<RevokeForm>,
) -> Result<HttpResponse, ApiError> {
    let tenant = path.into_inner();
    if let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        // `null` is what a sandboxed frame of any site sends: not ours.
        if !same_origin(origin, &reg.issuer) {
            return Err(ApiError::Forbidden(
                "cross-origin form posts are refused".into(),
            ));
        }
    }
    let token = req
        .cookie(SESSION_COOKIE)
        .map(|c| c.value().to_owned())
        .ok_or_else(|| ApiError::Forbidden("sign in first".into()))?;
    let form = form.into_inner();
    if !crate::ct_eq(form.csrf.as_bytes(), csrf_for(&token).as_bytes()) {
        return Err(ApiError::Forbidden(
            "the form's CSRF token is missing or wrong; reload the page".into(),
        ));
    }
    let caller = reg.resolve(&token, &super::ctx(&req)).await?;
    if caller.tenant != tenant {
        return Err(ApiError::Forbidden(
            "this session belongs to another tenant".into(),
        ));
    }
    let request = match (form.session_id, form.scope.as_deref()) {
        (Some(id), None) => RevokeRequest {
            session_id: Some(id),
            scope: None,
        },
        (None, Some("others")) if form.confirm.as_deref() != Some("yes") => {
            // Nothing changes until the person confirms.
            let sessions = reg.list(&caller).await?;
            let others: Vec<&SessionView> = sessions.iter().filter(|s| !s.current).collect();
            return Ok(view::confirm_sign_out_others(&tenant, &others, &form.csrf));
        }
        (None, Some("others")) => RevokeRequest {
            session_id: None,
            scope: Some(RevokeScope::Others),
        },
        _ => {
            return Err(ApiError::bad_request(
                "invalid_request",
                "send session_id, or scope=others",
            ))
        }
    };
    match reg.revoke(&caller, request.clone()).await {
        Err(ApiError::InsufficientUserAuthentication { .. }) => {
            // Sign in again at the IdP, then come back and do it.
            let then = Then::Revoke {
                session_id: caller.session.id.clone(),
                request,
            };
            return start_login(&reg, &state, &req, &tenant, Some(then)).await;
        }
        other => {
            other?;
        }
    }
    Ok(HttpResponse::build(StatusCode::SEE_OTHER)
        .insert_header((header::LOCATION, format!("/devices/{tenant}")))
        .finish())
}

/// Whether the `Origin` header names exactly the origin (scheme, host, port) of `base`.
fn same_origin(origin: &str, base: &str) -> bool {
    match (url::Url::parse(origin), url::Url::parse(base)) {
        (Ok(o), Ok(b)) => {
            o.origin() == b.origin() && matches!(o.path(), "" | "/") && o.query().is_none()
        }
        _ => false,
    }
}

/// Routes of the page.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/devices/{tenant}", web::get().to(devices))
        .route("/devices/{tenant}/revoke", web::post().to(revoke))
        .route("/auth/callback", web::get().to(callback));
}

/// Web state for the app.
pub fn state(clients: &[WebClientConfig]) -> Arc<WebState> {
    Arc::new(WebState::new(clients))
}
