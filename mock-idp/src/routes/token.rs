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
use crate::grants::{CodeState, DeviceStatus, RefreshRecord, Rotation};
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
        } => refresh(&tenant, &client, refresh_token.expose_secret(), scope).await,
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
    let unsigned = tenant.issue(
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
            family: unsigned.family.clone(),
            access_jti: unsigned.access_jti.clone(),
        };
    }
    // Signed outside the lock. The code is redeemed from here on: a replay, even one that comes
    // while these tokens are being signed, revokes them.
    drop(grants);
    match unsigned.sign() {
        Ok(issued) => Ok(issued.body),
        Err(failure) => {
            // Nothing was handed out; the failure burns the code.
            let mut grants = tenant.grants.lock();
            if let Some(r) = grants.codes.get_mut(&fp) {
                r.state = CodeState::Burned;
            }
            Err(failure.discard(&mut grants))
        }
    }
}

/// What a refresh needs from its token family.
struct FamilyGrant {
    sub: String,
    sid: Option<String>,
    scope: Scope,
    auth_time: time::OffsetDateTime,
}

/// How long a repeat inside the reuse grace window waits for the response of the rotation it
/// raced (which is being signed on another worker, normally for well under a millisecond).
const ROTATION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn refresh(
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
    let fp = random::fingerprint(token);
    let deadline = tokio::time::Instant::now() + ROTATION_WAIT;
    loop {
        // Taken before the grants are looked at, so a rotation that settles after the look is
        // sure to wake it.
        let settled = tenant.rotations.notified();
        match refresh_step(tenant, client, &fp, scope.as_ref())? {
            RefreshStep::Done(body) => return Ok(body),
            RefreshStep::WaitForRotation => {
                if tokio::time::timeout_at(deadline, settled).await.is_err() {
                    return Err(OAuthError::server_error(
                        "a concurrent rotation of this refresh token did not finish; try again",
                    ));
                }
            }
        }
    }
}

enum RefreshStep {
    Done(serde_json::Value),
    /// A repeat inside the grace window found the parent rotated, but the response that carried
    /// the child still being signed.
    WaitForRotation,
}

/// One attempt at a refresh: checks and rotation under the grants lock, then signing after it.
/// Rotation is atomic: the parent is marked used and the child registered in one critical
/// section, so of two racing uses exactly one rotates and the other is a reuse (or, inside the
/// grace window, a repeat that gets the same child once its response is stored).
fn refresh_step(
    tenant: &Tenant,
    client: &Client,
    fp: &str,
    scope: Option<&Scope>,
) -> Result<RefreshStep, OAuthError> {
    let now = tenant.now();
    let mut grants = tenant.grants.lock();
    let Some(rec) = grants.refresh.get(fp) else {
        return Err(OAuthError::invalid_grant(
            "refresh token is unknown or expired",
        ));
    };
    let (rec_family, rec_expires_at, rec_used_at) =
        (rec.family.clone(), rec.expires_at, rec.used_at);
    // Only what this grant needs: the family's token lists grow with every rotation, so cloning
    // the whole `Family` made each refresh cost O(rotations so far).
    let family = {
        let Some(f) = grants.families.get(&rec_family) else {
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
    if rec_expires_at <= now {
        return Err(OAuthError::invalid_grant("refresh token has expired"));
    }
    let scope = match scope {
        Some(s) if !s.is_subset(&family.scope) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                "requested scope exceeds the scope originally granted",
            ));
        }
        Some(s) => s.clone(),
        None => family.scope.clone(),
    };
    if let Some(used_at) = rec_used_at {
        let grace = Tenant::secs(client.config.refresh_reuse_grace);
        let within_grace = client.config.refresh_reuse_grace > 0 && now - used_at <= grace;
        // Only the immediate parent is covered: once the child itself was used, it is reuse.
        let child = grants
            .refresh
            .get(fp)
            .and_then(|r| r.child.as_ref())
            .filter(|rotation| {
                grants
                    .refresh
                    .get(&rotation.child_fp)
                    .is_some_and(|c| c.used_at.is_none())
            });
        if let (true, Some(rotation)) = (within_grace, child) {
            let Some(body) = rotation.response.clone() else {
                return Ok(RefreshStep::WaitForRotation);
            };
            drop(grants);
            tenant.record(
                "refresh_token_grace_reuse",
                Some(&family.sub),
                Some(client.id().as_str()),
                "repeat within the grace window; same child tokens returned",
            );
            return Ok(RefreshStep::Done(body));
        }
        grants.revoke_family(&rec_family);
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
    let unsigned = tenant.issue(
        &mut grants,
        Issue {
            client,
            sub: &family.sub,
            sid: family.sid.as_deref(),
            scope: &scope,
            nonce: None,
            auth_time: family.auth_time,
            family: Some(rec_family),
            with_refresh: true,
        },
    )?;
    let child_fp = unsigned.refresh_fp.clone();
    if let Some(r) = grants.refresh.get_mut(fp) {
        r.used_at = Some(now);
        r.child = child_fp.clone().map(|child_fp| Rotation {
            child_fp,
            response: None,
        });
    }
    drop(grants);

    let signed = match unsigned.sign() {
        // Only a repeat inside the grace window asks for the response again; without a window
        // (clients cannot be changed once registered) it is not kept, and no repeat waits for it.
        Ok(issued) if client.config.refresh_reuse_grace == 0 => {
            return Ok(RefreshStep::Done(issued.body))
        }
        signed => signed,
    };
    let mut grants = tenant.grants.lock();
    let ours = |r: &&mut RefreshRecord| r.child.as_ref().map(|c| &c.child_fp) == child_fp.as_ref();
    let parent = grants.refresh.get_mut(fp).filter(ours);
    let result = match (signed, parent) {
        (Ok(issued), Some(parent)) => {
            if let Some(rotation) = parent.child.as_mut() {
                rotation.response = Some(issued.body.clone());
            }
            Ok(RefreshStep::Done(issued.body))
        }
        (Ok(issued), None) => Ok(RefreshStep::Done(issued.body)),
        (Err(failure), parent) => {
            // Nothing was handed out: the parent is as it was, and a retry may rotate it.
            if let Some(parent) = parent {
                parent.used_at = None;
                parent.child = None;
            }
            Err(failure.discard(&mut grants))
        }
    };
    drop(grants);
    tenant.rotations.notify_waiters();
    result
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
    let unsigned = tenant.issue(
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
    drop(grants);
    unsigned
        .sign()
        .map(|issued| issued.body)
        .map_err(|failure| failure.discard(&mut tenant.grants.lock()))
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
            let unsigned = tenant.issue(
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
            drop(grants);
            unsigned
                .sign()
                .map(|issued| issued.body)
                .map_err(|failure| failure.discard(&mut tenant.grants.lock()))
        }
    }
}
