//! Admin API. `POST /v1/admin/tenants` and `POST /v1/admin/keys/rotate` take the server-wide
//! admin token; everything under `/v1/admin/tenants/{slug}/…` takes that tenant's API key.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse, Scope};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiError;
use crate::refusal::Refusal;
use crate::service::{session_view, Registry, SessionView, KEY_ROTATION_GRACE};
use crate::store::{SessionFilter, TenantRecord};
use crate::token::hash_hex;

/// The server-wide admin settings, as app data.
pub struct AdminToken {
    /// `None` turns the server-wide admin API off.
    pub token: Option<secrecy::SecretString>,
    /// Whether tenants may trust plain-`http` issuers off loopback.
    pub allow_http_issuers: bool,
}

pub fn scope() -> Scope {
    web::scope("/v1/admin")
        .route("/tenants", web::post().to(create_tenant))
        .route("/keys/rotate", web::post().to(rotate_keys))
        .route("/tenants/{slug}/sessions", web::get().to(list_sessions))
        .route(
            "/tenants/{slug}/sessions/{id}/revoke",
            web::post().to(revoke_session),
        )
        .route(
            "/tenants/{slug}/accounts/{account}/revoke",
            web::post().to(revoke_account),
        )
}

fn presented(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
}

fn unauthorized() -> ApiError {
    Refusal::InvalidApiKey.into()
}

fn require_server_admin(req: &HttpRequest, admin: &AdminToken) -> Result<(), ApiError> {
    let Some(token) = &admin.token else {
        return Err(Refusal::AdminApiDisabled.into());
    };
    let ok = presented(req)
        .is_some_and(|k| crate::ct_eq(k.as_bytes(), token.expose_secret().as_bytes()));
    ok.then_some(()).ok_or_else(unauthorized)
}

async fn require_tenant_key(
    reg: &Registry,
    req: &HttpRequest,
    slug: &str,
) -> Result<TenantRecord, ApiError> {
    let key = presented(req).ok_or_else(unauthorized)?;
    let tenant = reg.store.tenant(slug).await?.ok_or_else(unauthorized)?;
    match &tenant.api_key_hash {
        Some(h) if crate::ct_eq(h.as_bytes(), hash_hex(key).as_bytes()) => Ok(tenant),
        _ => Err(unauthorized()),
    }
}

/// An issuer the registry will fetch discovery and keys from: `https`, or `http` on a loopback
/// address (a local IdP) unless plain http is allowed; no credentials, query or fragment.
fn check_issuer(issuer: &str, allow_http: bool) -> Result<(), ApiError> {
    let bad = |why: &str| {
        ApiError::bad_request(
            "invalid_issuer",
            format!("issuer must be an https URL (or http on loopback): {why}"),
        )
    };
    let url = url::Url::parse(issuer).map_err(|_| bad("not a URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it carries credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err(bad("it has no host")),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback || allow_http => Ok(()),
        "http" => Err(bad("plain http is only for loopback")),
        _ => Err(bad("the scheme is neither https nor http")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    slug: String,
    issuer: String,
    audiences: Vec<String>,
    #[serde(default = "crate::config::default_idle")]
    idle_timeout_secs: i64,
    #[serde(default = "crate::config::default_absolute")]
    absolute_timeout_secs: i64,
    #[serde(default = "crate::config::default_max_age")]
    max_id_token_age_secs: i64,
    #[serde(default = "crate::config::default_max_age")]
    max_auth_age_secs: i64,
}

async fn create_tenant(
    reg: web::Data<Registry>,
    admin: web::Data<AdminToken>,
    req: HttpRequest,
    body: web::Json<NewTenant>,
) -> Result<HttpResponse, ApiError> {
    require_server_admin(&req, &admin)?;
    let t = body.into_inner();
    let slug_ok = !t.slug.is_empty()
        && t.slug.len() <= 63
        && t.slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !slug_ok {
        return Err(ApiError::bad_request(
            "invalid_request",
            "slug must be 1-63 characters of a-z, 0-9 and '-'",
        ));
    }
    check_issuer(&t.issuer, admin.allow_http_issuers)?;
    if t.audiences.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "audiences must not be empty",
        ));
    }
    crate::config::check_tenant_times(
        t.idle_timeout_secs,
        t.absolute_timeout_secs,
        t.max_id_token_age_secs,
        t.max_auth_age_secs,
    )
    .map_err(|message| ApiError::bad_request("invalid_request", message))?;
    if t.absolute_timeout_secs < t.idle_timeout_secs.min(300) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "absolute_timeout_secs must be at least idle_timeout_secs or 300, whichever is smaller",
        ));
    }
    if reg.store.tenant(&t.slug).await?.is_some() {
        return Err(ApiError::bad_request(
            "conflict",
            format!("tenant '{}' exists", t.slug),
        ));
    }
    let api_key = format!("lyak_{}", crate::store::random_id());
    reg.store
        .upsert_tenant(&TenantRecord {
            slug: t.slug.clone(),
            issuer: t.issuer,
            audiences: t.audiences,
            idle_timeout_secs: t.idle_timeout_secs,
            absolute_timeout_secs: t.absolute_timeout_secs,
            max_id_token_age_secs: t.max_id_token_age_secs,
            max_auth_age_secs: t.max_auth_age_secs,
            api_key_hash: Some(hash_hex(&api_key)),
        })
        .await?;
    tracing::info!(tenant = %t.slug, "tenant created");
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"slug": t.slug, "api_key": api_key})))
}

/// Rotates the session-JWT signing key; the old key stays published for the grace period.
async fn rotate_keys(
    reg: web::Data<Registry>,
    admin: web::Data<AdminToken>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    require_server_admin(&req, &admin)?;
    let kid = reg.rotate_signing_key().await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"kid": kid, "previous_key_published_for_secs": KEY_ROTATION_GRACE})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    account_id: Option<String>,
    device_id: Option<String>,
    after: Option<String>,
    limit: Option<i64>,
}

async fn list_sessions(
    reg: web::Data<Registry>,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let tenant = require_tenant_key(&reg, &req, &path).await?;
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = reg
        .store
        .admin_sessions(
            &tenant.slug,
            &SessionFilter {
                account_id: q.account_id,
                device_id: q.device_id,
                after: q.after,
                limit,
            },
        )
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    let sessions: Vec<SessionView> = rows.iter().map(|r| session_view(r, None)).collect();
    Ok(HttpResponse::Ok().json(json!({"sessions": sessions, "next": next})))
}

async fn revoke_session(
    reg: web::Data<Registry>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, id) = path.into_inner();
    let tenant = require_tenant_key(&reg, &req, &slug).await?;
    if reg.store.session(&tenant.slug, &id).await?.is_none() {
        return Err(ApiError::NotFound("no such session in this tenant".into()));
    }
    let revoked = reg.admin_revoke(&tenant.slug, &[id]).await?;
    Ok(HttpResponse::Ok().json(json!({"revoked": revoked})))
}

async fn revoke_account(
    reg: web::Data<Registry>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (slug, account) = path.into_inner();
    let tenant = require_tenant_key(&reg, &req, &slug).await?;
    let ids: Vec<String> = reg
        .store
        .unrevoked_account_sessions(&tenant.slug, &account)
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    let revoked = reg.admin_revoke(&tenant.slug, &ids).await?;
    Ok(HttpResponse::Ok().json(json!({"revoked": revoked})))
}
