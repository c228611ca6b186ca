//! The token endpoint (RFC 6749 §3.2): authorization_code with PKCE, refresh_token with rotation
//! and reuse detection, client_credentials, and the device_code grant (RFC 8628 §3.4).

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use secrecy::ExposeSecret;

use super::{authorization_header, gate, no_store_json};
use crate::config::GrantType;
use crate::directory::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::faults::Endpoint;
use crate::grants::{CodeState, DeviceStatus};
use crate::random;
use crate::scope::Scope;
use crate::state::IdpState;
use crate::tenant::{Issue, Tenant};
use crate::token_request::{self, ClientAuth, Grant};

/// Authenticates the client of a token, revocation or introspection request.
pub fn authenticate(tenant: &Tenant, auth: &ClientAuth) -> Result<Client, OAuthError> {
    let basic = auth.via_basic();
    let client = tenant
        .directory
        .read()
        .client(auth.client_id())
        .cloned()
        .ok_or_else(|| {
            OAuthError::invalid_client(
                format!("unknown client '{}'", auth.client_id().escape_default()),
                basic,
            )
        })?;
    match (client.config.is_confidential(), auth) {
        (true, ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. }) => {
            if client.secret_matches(secret.expose_secret()) {
                Ok(client)
            } else {
                tenant.record("client_auth_failed", None, Some(client.id().as_str()), "wrong client secret");
                Err(OAuthError::invalid_client("client authentication failed", basic))
            }
        }
        (true, ClientAuth::Public { .. }) => Err(OAuthError::invalid_client(
            "this client is confidential: authenticate with client_secret_basic or client_secret_post",
            false,
        )),
        (false, ClientAuth::Public { .. }) => Ok(client),
        // Some libraries send `client_id:` with an empty secret for public clients.
        (false, ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. }) if secret.expose_secret().is_empty() => Ok(client),
        (false, _) => Err(OAuthError::invalid_client("this client is public and has no secret; send client_id only", basic)),
    }
}

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
    let client = authenticate(&tenant, &request.client)?;
    let grant_name = request.grant.name();
    let result = match request.grant {
        Grant::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => authorization_code(
            &tenant,
            &client,
            code.expose_secret(),
            redirect_uri.as_deref(),
            code_verifier.as_deref(),
        ),
        Grant::RefreshToken {
            refresh_token,
            scope,
        } => refresh(&tenant, &client, refresh_token.expose_secret(), scope),
        Grant::ClientCredentials { scope } => client_credentials(&tenant, &client, scope),
        Grant::DeviceCode { device_code } => {
            device_code_grant(&tenant, &client, device_code.expose_secret())
        }
    };
    let mut audit = tenant.audit.lock();
    match &result {
        Ok(_) => audit.count(&format!("token.{grant_name}.ok")),
        Err(e) => audit.count(&format!("token.{grant_name}.{}", e.code.as_str())),
    }
    drop(audit);
    result.map(|body| no_store_json(StatusCode::OK, &body))
}

/// Form bodies only (RFC 6749 §3.2).
pub fn require_form(req: &HttpRequest) -> Result<(), OAuthError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        Ok(())
    } else {
        Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ))
    }
}

fn authorization_code(
    tenant: &Tenant,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<serde_json::Value, OAuthError> {
    let now = tenant.now();
    let mut grants = tenant.grants.lock();
    let fp = random::fingerprint(code);
    let Some(rec) = grants.codes.get_mut(&fp) else {
        return Err(OAuthError::invalid_grant(
            "authorization code is unknown or expired",
        ));
    };
    match rec.state.clone() {
        CodeState::Redeemed { family, access_jti } => {
            let sub = rec.sub.clone();
            if let Some(at) = grants.access.get_mut(&access_jti) {
                at.revoked = true;
            }
            if let Some(f) = family {
                grants.revoke_family(&f);
            }
            drop(grants);
            tenant.record(
                "authorization_code_replay",
                Some(&sub),
                Some(client.id().as_str()),
                "code redeemed twice; its tokens are revoked",
            );
            return Err(OAuthError::invalid_grant(
                "authorization code was already used; the tokens issued with it are now revoked",
            ));
        }
        CodeState::Burned => {
            return Err(OAuthError::invalid_grant(
                "authorization code was burnt by an earlier failed redemption",
            ));
        }
        CodeState::Fresh => {}
    }
    // From here on every failure burns the code (SECURITY E-03, E-07).
    let failure = if rec.expires_at <= now {
        Some("authorization code has expired".to_owned())
    } else if rec.request.client_id != *client.id() {
        Some("authorization code was issued to another client".to_owned())
    } else if rec.request.redirect_uri_given
        && redirect_uri != Some(rec.request.redirect_uri.as_str())
    {
        Some("redirect_uri does not match the one in the authorization request".to_owned())
    } else if !rec.request.redirect_uri_given
        && redirect_uri.is_some_and(|r| r != rec.request.redirect_uri)
    {
        Some("redirect_uri does not match the registered one".to_owned())
    } else {
        match (&rec.request.code_challenge, verifier) {
            (Some(challenge), v) => challenge.verify(v).err().map(|e| e.to_string()),
            (None, Some(_)) => Some(
                "code_verifier sent, but the authorization request had no code_challenge"
                    .to_owned(),
            ),
            (None, None) => None,
        }
    };
    if let Some(description) = failure {
        rec.state = CodeState::Burned;
        let sub = rec.sub.clone();
        drop(grants);
        tenant.record(
            "authorization_code_rejected",
            Some(&sub),
            Some(client.id().as_str()),
            description.clone(),
        );
        return Err(OAuthError::invalid_grant(description));
    }
    let rec = rec.clone();
    let issued = tenant.issue(
        &mut grants,
        Issue {
            client,
            sub: &rec.sub,
            sid: Some(&rec.sid),
            scope: &rec.request.scope,
            nonce: rec.request.nonce.as_deref(),
            auth_time: rec.auth_time,
            family: None,
            with_refresh: client.config.allows(GrantType::RefreshToken),
        },
    )?;
    if let Some(r) = grants.codes.get_mut(&fp) {
        r.state = CodeState::Redeemed {
            family: issued.family.clone(),
            access_jti: issued.access_jti.clone(),
        };
    }
    Ok(issued.body)
}

/// What a refresh needs from its token family.
struct FamilyGrant {
    sub: String,
    sid: Option<String>,
    scope: Scope,
    auth_time: time::OffsetDateTime,
}

fn refresh(
    tenant: &Tenant,
    client: &Client,
    token: &str,
    scope: Option<Scope>,
) -> Result<serde_json::Value, OAuthError> {
    if !client.config.allows(GrantType::RefreshToken) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the refresh_token grant",
        ));
    }
    let now = tenant.now();
    let mut grants = tenant.grants.lock();
    let fp = random::fingerprint(token);
    let Some(rec) = grants.refresh.get(&fp).cloned() else {
        return Err(OAuthError::invalid_grant(
            "refresh token is unknown or expired",
        ));
    };
    // Only what this grant needs: the family's token lists grow with every rotation, so cloning
    // the whole `Family` made each refresh cost O(rotations so far).
    let family = {
        let Some(f) = grants.families.get(&rec.family) else {
            return Err(OAuthError::invalid_grant(
                "refresh token is unknown or expired",
            ));
        };
        if f.client_id != *client.id() {
            return Err(OAuthError::invalid_grant(
                "refresh token was issued to another client",
            ));
        }
        if f.revoked {
            return Err(OAuthError::invalid_grant("refresh token has been revoked"));
        }
        FamilyGrant {
            sub: f.sub.clone(),
            sid: f.sid.clone(),
            scope: f.scope.clone(),
            auth_time: f.auth_time,
        }
    };
    if rec.expires_at <= now {
        return Err(OAuthError::invalid_grant("refresh token has expired"));
    }
    let scope = match scope {
        Some(s) if !s.is_subset(&family.scope) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "requested scope exceeds the scope originally granted",
            ));
        }
        Some(s) => s,
        None => family.scope.clone(),
    };
    if let Some(used_at) = rec.used_at {
        let grace = Tenant::secs(client.config.refresh_reuse_grace);
        let within_grace = client.config.refresh_reuse_grace > 0 && now - used_at <= grace;
        // Only the immediate parent is covered: once the child itself was used, it is reuse.
        let child = rec.child.as_ref().filter(|(child_fp, _)| {
            grants
                .refresh
                .get(child_fp)
                .is_some_and(|c| c.used_at.is_none())
        });
        if let (true, Some((_, body))) = (within_grace, child) {
            let body = body.clone();
            drop(grants);
            tenant.record(
                "refresh_token_grace_reuse",
                Some(&family.sub),
                Some(client.id().as_str()),
                "repeat within the grace window; same child tokens returned",
            );
            return Ok(body);
        }
        grants.revoke_family(&rec.family);
        drop(grants);
        tenant.record(
            "refresh_token_reuse",
            Some(&family.sub),
            Some(client.id().as_str()),
            "a rotated-out refresh token was presented; its whole family is revoked",
        );
        return Err(OAuthError::invalid_grant(
            "refresh token was already used; every token of this grant is now revoked",
        ));
    }
    let issued = tenant.issue(
        &mut grants,
        Issue {
            client,
            sub: &family.sub,
            sid: family.sid.as_deref(),
            scope: &scope,
            nonce: None,
            auth_time: family.auth_time,
            family: Some(rec.family.clone()),
            with_refresh: true,
        },
    )?;
    if let Some(r) = grants.refresh.get_mut(&fp) {
        r.used_at = Some(now);
        r.child = issued
            .refresh_fp
            .clone()
            .map(|child| (child, issued.body.clone()));
    }
    Ok(issued.body)
}

fn client_credentials(
    tenant: &Tenant,
    client: &Client,
    scope: Option<Scope>,
) -> Result<serde_json::Value, OAuthError> {
    if !client.config.allows(GrantType::ClientCredentials) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the client_credentials grant",
        ));
    }
    let scope = scope.unwrap_or_default();
    if scope.contains("openid") || scope.contains("offline_access") {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "openid and offline_access need a user; client_credentials has none",
        ));
    }
    let outside = scope.outside(&client.config.scopes);
    if !outside.is_empty() {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("scope not allowed for this client: {}", outside.join(" ")),
        ));
    }
    let mut grants = tenant.grants.lock();
    let issued = tenant.issue(
        &mut grants,
        Issue {
            client,
            sub: client.id().as_str(),
            sid: None,
            scope: &scope,
            nonce: None,
            auth_time: tenant.now(),
            family: None,
            with_refresh: false,
        },
    )?;
    Ok(issued.body)
}

fn device_code_grant(
    tenant: &Tenant,
    client: &Client,
    device_code: &str,
) -> Result<serde_json::Value, OAuthError> {
    if !client.config.allows(GrantType::DeviceCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the device_code grant",
        ));
    }
    let now = tenant.now();
    let fp = random::fingerprint(device_code);
    let mut grants = tenant.grants.lock();
    let Some(rec) = grants.devices.get_mut(&fp) else {
        return Err(OAuthError::invalid_grant("device_code is unknown"));
    };
    if rec.client_id != *client.id() {
        return Err(OAuthError::invalid_grant(
            "device_code was issued to another client",
        ));
    }
    if rec.expires_at <= now {
        grants.devices.remove(&fp);
        return Err(OAuthError::new(
            ErrorCode::ExpiredToken,
            "device_code has expired; start a new device authorization",
        ));
    }
    if let Some(last) = rec.last_poll {
        if now - last < rec.interval {
            rec.interval += time::Duration::seconds(5);
            rec.last_poll = Some(now);
            return Err(OAuthError::new(
                ErrorCode::SlowDown,
                format!(
                    "polling too fast; wait {} seconds between requests",
                    rec.interval.whole_seconds()
                ),
            ));
        }
    }
    rec.last_poll = Some(now);
    match rec.status.clone() {
        DeviceStatus::Pending => Err(OAuthError::new(
            ErrorCode::AuthorizationPending,
            "the user has not yet approved this device",
        )),
        DeviceStatus::Denied => {
            grants.devices.remove(&fp);
            Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "the user denied this device",
            ))
        }
        DeviceStatus::Approved {
            sub,
            sid,
            auth_time,
        } => {
            let scope = rec.scope.clone();
            grants.devices.remove(&fp);
            let issued = tenant.issue(
                &mut grants,
                Issue {
                    client,
                    sub: &sub,
                    sid: Some(&sid),
                    scope: &scope,
                    nonce: None,
                    auth_time,
                    family: None,
                    with_refresh: client.config.allows(GrantType::RefreshToken),
                },
            )?;
            Ok(issued.body)
        }
    }
}
