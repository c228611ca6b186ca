//! The admin API (bearer admin token): tenants, users and clients at runtime, IdP sessions,
//! key rotation, fault injection, and the audit log. Its OpenAPI document: [`openapi`].

pub mod openapi;
mod views;

use actix_web::{web, HttpRequest, HttpResponse, Scope};

use super::authorization_header;
use crate::config::{ClientConfig, TenantConfig, UserConfig};
use crate::directory::{Client, DirectoryError, User};
use crate::error::{ErrorCode, OAuthError};
use crate::faults::FaultSpec;
use crate::sign_out;
use crate::state::IdpState;
use crate::tenant::Tenant;
use views::{
    AuditReport, ClearedFaults, ClientCreated, EndedSessions, FaultView, IdpSessionView,
    RotateRequest, RotatedKey, TenantSummary, UserCreated,
};

pub fn scope() -> Scope {
    use actix_web::http::Method;
    use lanyard_service::methods::resource;
    let one =
        |path: &str, method: Method, route: actix_web::Route| resource(path, vec![(method, route)]);
    web::scope("/admin")
        .service(one(
            "/openapi.json",
            Method::GET,
            web::get().to(openapi::document),
        ))
        .service(resource(
            "/tenants",
            vec![
                (Method::GET, web::get().to(list_tenants)),
                (Method::POST, web::post().to(add_tenant)),
            ],
        ))
        .service(one(
            "/tenants/{tenant}/users",
            Method::POST,
            web::post().to(add_user),
        ))
        .service(one(
            "/tenants/{tenant}/users/{username}/logout",
            Method::POST,
            web::post().to(sign_user_out),
        ))
        .service(one(
            "/tenants/{tenant}/clients",
            Method::POST,
            web::post().to(add_client),
        ))
        .service(one(
            "/tenants/{tenant}/sessions",
            Method::GET,
            web::get().to(list_sessions),
        ))
        .service(one(
            "/tenants/{tenant}/sessions/{sid}",
            Method::DELETE,
            web::delete().to(revoke_session),
        ))
        .service(one(
            "/tenants/{tenant}/keys/rotate",
            Method::POST,
            web::post().to(rotate_keys),
        ))
        .service(resource(
            "/tenants/{tenant}/faults",
            vec![
                (Method::GET, web::get().to(list_faults)),
                (Method::POST, web::post().to(add_fault)),
                (Method::DELETE, web::delete().to(clear_faults)),
            ],
        ))
        .service(one(
            "/tenants/{tenant}/faults/{id}",
            Method::DELETE,
            web::delete().to(remove_fault),
        ))
        .service(one(
            "/tenants/{tenant}/audit",
            Method::GET,
            web::get().to(audit),
        ))
        .service(one(
            "/tenants/{tenant}/records",
            Method::GET,
            web::get().to(records),
        ))
}

fn require_admin(state: &IdpState, req: &HttpRequest) -> Result<(), OAuthError> {
    if !state.admin_api_enabled() {
        return Err(OAuthError::not_found(
            "the admin API is off: mock-idp is bound to a non-loopback address without an admin \
             token of its own; start it with --admin-token or MOCK_IDP_ADMIN_TOKEN",
        ));
    }
    if state.is_admin(authorization_header(req)) {
        Ok(())
    } else {
        Err(OAuthError::invalid_token(
            "the admin API needs 'Authorization: Bearer <admin token>'",
        ))
    }
}

fn conflict(e: impl std::fmt::Display) -> OAuthError {
    OAuthError::new(ErrorCode::Conflict, e.to_string())
}

#[utoipa::path(get, path = "/admin/tenants",
    responses((status = 200, body = Vec<TenantSummary>), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody)))]
async fn list_tenants(
    state: web::Data<IdpState>,
    req: HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let list: Vec<_> = state
        .tenants()
        .iter()
        .map(|t| TenantSummary {
            slug: t.id.as_str().to_owned(),
            issuer: t.issuer.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(post, path = "/admin/tenants", request_body = crate::config::TenantConfig,
    responses((status = 201, body = TenantSummary), (status = 400, description = "malformed or invalid body", body = views::ErrorBody), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody), (status = 409, description = "already exists, or refused", body = views::ErrorBody), (status = 413, description = "body too large", body = views::ErrorBody)))]
async fn add_tenant(
    state: web::Data<IdpState>,
    req: HttpRequest,
    body: web::Json<TenantConfig>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let cfg = body.into_inner();
    let state2 = state.clone();
    let tenant = crate::password_work::run(move || state2.add_tenant(&cfg))
        .await
        .map_err(|e| OAuthError::server_error(e.to_string()))?
        .map_err(conflict)?;
    tracing::info!(tenant = %tenant.id, "tenant added");
    Ok(HttpResponse::Created().json(TenantSummary {
        slug: tenant.id.as_str().to_owned(),
        issuer: tenant.issuer.clone(),
    }))
}

#[utoipa::path(post, path = "/admin/tenants/{tenant}/users", params(("tenant" = String, Path, description = "the tenant's slug")),
    request_body = crate::config::UserConfig,
    responses((status = 201, body = UserCreated), (status = 400, description = "malformed or invalid body", body = views::ErrorBody), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody), (status = 409, description = "already exists, or refused", body = views::ErrorBody), (status = 413, description = "body too large", body = views::ErrorBody)))]
async fn add_user(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<UserConfig>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let tenant = state.tenant(&path)?;
    let cfg = body.into_inner();
    let id = tenant.id.clone();
    let user = crate::password_work::run(move || User::from_config(&id, &cfg))
        .await
        .map_err(|e| OAuthError::server_error(e.to_string()))?
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    let sub = user.sub.clone();
    tenant.directory.write().add_user(user).map_err(conflict)?;
    Ok(HttpResponse::Created().json(UserCreated { sub }))
}

#[utoipa::path(post, path = "/admin/tenants/{tenant}/clients", params(("tenant" = String, Path, description = "the tenant's slug")),
    request_body = crate::config::ClientConfig,
    responses((status = 201, body = ClientCreated), (status = 400, description = "malformed or invalid body", body = views::ErrorBody), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody), (status = 409, description = "already exists, or refused", body = views::ErrorBody), (status = 413, description = "body too large", body = views::ErrorBody)))]
async fn add_client(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<ClientConfig>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let tenant = state.tenant(&path)?;
    let cfg = body.into_inner();
    let alg = cfg.id_token_alg;
    let client = Client::new(cfg).map_err(|e| match e {
        DirectoryError::InvalidClient { .. } => OAuthError::invalid_request(e.to_string()),
        other => conflict(other),
    })?;
    let id = client.id().to_string();
    let t = tenant.clone();
    web::block(move || t.keys.write().ensure(alg))
        .await
        .map_err(|e| OAuthError::server_error(e.to_string()))?
        .map_err(|e| OAuthError::server_error(e.to_string()))?;
    tenant
        .directory
        .write()
        .add_client(client)
        .map_err(conflict)?;
    Ok(HttpResponse::Created().json(ClientCreated { client_id: id }))
}

#[utoipa::path(get, path = "/admin/tenants/{tenant}/sessions", params(("tenant" = String, Path, description = "the tenant's slug")),
    responses((status = 200, body = Vec<IdpSessionView>), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody)))]
async fn list_sessions(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let tenant = state.tenant(&path)?;
    let now = tenant.now();
    let dir = tenant.directory.read();
    let mut list: Vec<_> = tenant
        .grants
        .live_sessions(now)
        .iter()
        .map(|s| {
            let user = dir.user(&s.sub);
            IdpSessionView {
                sid: s.sid.clone(),
                sub: s.sub.clone(),
                username: user
                    .and_then(|u| u.username.as_ref())
                    .map(|u| u.as_str().to_owned()),
                is_guest: user.is_some_and(|u| u.is_guest),
                auth_time: s.auth_time.unix_timestamp(),
                expires_at: s.expires_at.unix_timestamp(),
                clients: s.clients.iter().map(|c| c.as_str().to_owned()).collect(),
            }
        })
        .collect();
    list.sort_by_key(|v| v.auth_time);
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(delete, path = "/admin/tenants/{tenant}/sessions/{sid}",
    params(("tenant" = String, Path, description = "the tenant's slug"), ("sid" = String, Path, description = "the IdP session")),
    responses((status = 204, description = "ended"), (status = 401, description = "no or wrong admin token", body = views::ErrorBody),
        (status = 404, description = "unknown tenant or session, or the admin API is off", body = views::ErrorBody)))]
async fn revoke_session(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let (slug, sid) = path.into_inner();
    let tenant = state.tenant(&slug)?;
    let ended = sign_out::end_sessions(&tenant, &state.http, &[sid], "revoked by admin");
    if ended.is_empty() {
        return Err(OAuthError::not_found("no such IdP session"));
    }
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/admin/tenants/{tenant}/users/{username}/logout",
    params(("tenant" = String, Path, description = "the tenant's slug"), ("username" = String, Path)),
    responses((status = 200, body = EndedSessions), (status = 401, description = "no or wrong admin token", body = views::ErrorBody),
        (status = 404, description = "unknown tenant or user, or the admin API is off", body = views::ErrorBody)))]
async fn sign_user_out(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let (slug, username) = path.into_inner();
    let tenant = state.tenant(&slug)?;
    let sub = tenant
        .directory
        .read()
        .user_by_name(&username)
        .map(|u| u.sub.clone())
        .ok_or_else(|| {
            OAuthError::not_found(format!(
                "no user '{}' in tenant {}",
                username.escape_default(),
                tenant.id
            ))
        })?;
    let sids = tenant.grants.sessions_of(&sub);
    let ended = sign_out::end_sessions(&tenant, &state.http, &sids, "user signed out by admin");
    Ok(HttpResponse::Ok().json(EndedSessions {
        ended_sessions: ended.len(),
    }))
}

#[utoipa::path(post, path = "/admin/tenants/{tenant}/keys/rotate", params(("tenant" = String, Path, description = "the tenant's slug")),
    request_body(content = Option<RotateRequest>, description = "optional: ES256 by default"),
    responses((status = 200, body = RotatedKey), (status = 400, description = "malformed or invalid body", body = views::ErrorBody), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody), (status = 413, description = "body too large", body = views::ErrorBody)))]
async fn rotate_keys(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let tenant = state.tenant(&path)?;
    // The body is optional; one that is there must be a rotate request (an unknown field or a
    // malformed body is refused, not ignored: schemathesis found it ignored).
    let request: RotateRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RotateRequest::default()
    } else {
        // An object, not the array form serde would also take for a struct.
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(object @ serde_json::Value::Object(_)) => serde_json::from_value(object),
            Ok(_) => {
                return Err(OAuthError::invalid_request(
                    "malformed rotate request: expected a JSON object",
                ))
            }
            Err(e) => Err(e),
        }
        .map_err(|e| OAuthError::invalid_request(format!("malformed rotate request: {e}")))?
    };
    let alg = request.alg.unwrap_or_default();
    let grace = Tenant::secs(tenant.lifetimes.key_grace);
    let t = tenant.clone();
    let kid = web::block(move || {
        let now = t.now();
        t.keys.write().rotate(alg, now, grace)
    })
    .await
    .map_err(|e| OAuthError::server_error(e.to_string()))?
    .map_err(|e| OAuthError::server_error(e.to_string()))?;
    tenant.record(
        "signing_key_rotated",
        None,
        None,
        format!("{alg:?} now signs with kid {kid}"),
    );
    Ok(HttpResponse::Ok().json(RotatedKey { kid, alg }))
}

#[utoipa::path(get, path = "/admin/tenants/{tenant}/faults", params(("tenant" = String, Path, description = "the tenant's slug")),
    responses((status = 200, body = Vec<views::FaultView>), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody)))]
async fn list_faults(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let tenant = state.tenant(&path)?;
    let list: Vec<FaultView> = tenant
        .faults
        .lock()
        .list()
        .into_iter()
        .map(FaultView::from)
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

#[utoipa::path(post, path = "/admin/tenants/{tenant}/faults", params(("tenant" = String, Path, description = "the tenant's slug")),
    request_body = crate::faults::FaultSpec,
    responses((status = 201, body = views::FaultView), (status = 400, description = "malformed or invalid body", body = views::ErrorBody), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody), (status = 413, description = "body too large", body = views::ErrorBody)))]
async fn add_fault(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<FaultSpec>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let tenant = state.tenant(&path)?;
    let spec = body.into_inner();
    spec.validate().map_err(OAuthError::invalid_request)?;
    let fault = tenant.faults.lock().add(spec);
    tracing::warn!(tenant = %tenant.id, fault = ?fault, "fault injected");
    Ok(HttpResponse::Created().json(FaultView::from(fault)))
}

#[utoipa::path(delete, path = "/admin/tenants/{tenant}/faults", params(("tenant" = String, Path, description = "the tenant's slug")),
    responses((status = 200, body = ClearedFaults), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody)))]
async fn clear_faults(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let tenant = state.tenant(&path)?;
    let cleared = tenant.faults.lock().clear();
    Ok(HttpResponse::Ok().json(ClearedFaults { cleared }))
}

#[utoipa::path(delete, path = "/admin/tenants/{tenant}/faults/{id}",
    params(("tenant" = String, Path, description = "the tenant's slug"), ("id" = String, Path, description = "the fault's id")),
    responses((status = 204, description = "removed"), (status = 401, description = "no or wrong admin token", body = views::ErrorBody),
        (status = 404, description = "unknown tenant or fault, or the admin API is off", body = views::ErrorBody)))]
async fn remove_fault(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let (slug, id) = path.into_inner();
    let tenant = state.tenant(&slug)?;
    if tenant.faults.lock().remove(&id) {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(OAuthError::not_found("no such fault"))
    }
}

#[utoipa::path(get, path = "/admin/tenants/{tenant}/audit", params(("tenant" = String, Path, description = "the tenant's slug")),
    responses((status = 200, body = AuditReport), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody)))]
async fn audit(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let tenant = state.tenant(&path)?;
    let records = tenant.grants.counts();
    let audit = tenant.audit.lock();
    Ok(HttpResponse::Ok().json(AuditReport {
        events: audit.events(),
        counters: audit.counters(),
        records,
    }))
}

/// How many records of each kind the tenant holds, without the audit log's events: for a
/// monitor or a soak that asks every few seconds. The audit route copies and serialises up to
/// 10,000 events (about 2 MB of JSON) per call, and a soak that sampled the counts through it
/// every 10 s measured the IdP's memory with its own allocations in it.
#[utoipa::path(get, path = "/admin/tenants/{tenant}/records", params(("tenant" = String, Path, description = "the tenant's slug")),
    responses((status = 200, body = views::RecordsReport), (status = 401, description = "no or wrong admin token", body = views::ErrorBody), (status = 404, description = "unknown tenant, or the admin API is off", body = views::ErrorBody)))]
async fn records(
    state: web::Data<IdpState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, OAuthError> {
    require_admin(&state, &req)?;
    let tenant = state.tenant(&path)?;
    let records = tenant.grants.counts();
    let audit_events = tenant.audit.lock().len();
    Ok(HttpResponse::Ok().json(views::RecordsReport {
        records,
        audit_events,
    }))
}
