//! The token endpoint's grants as a tenant runs them (RFC 6749 §4.1.3, §4.4, §6; RFC 8628
//! §3.4): checking that the client may use the grant, one grant-store operation (which checks
//! the code, refresh token or device code, mints and registers the response under the lock),
//! signing after it, settling the outcome with the store, and one audit event per security
//! decision. No HTTP here: the handler parses the request, calls [`exchange`] and answers.

use secrecy::ExposeSecret;
use serde_json::Value;

use crate::config::GrantType;
use crate::directory::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::grants::{CodePresentation, CodeRefusal, RefreshRefusal, Rotate};
use crate::issue::Issue;
use crate::random;
use crate::scope::Scope;
use crate::tenant::Tenant;
use crate::token_request::Grant;

/// How long a repeat inside the reuse grace window waits for the response of the rotation it
/// raced (which is being signed on another worker, normally for well under a millisecond).
const ROTATION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs `grant` for the authenticated `client`; returns the token response body. Counts the
/// outcome per grant in the audit counters.
pub async fn exchange(tenant: &Tenant, client: &Client, grant: Grant) -> Result<Value, OAuthError> {
    let grant_name = grant.name();
    let result = match grant {
        Grant::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        } => authorization_code(
            tenant,
            client,
            code.expose_secret(),
            redirect_uri.as_deref(),
            code_verifier.as_deref(),
        ),
        Grant::RefreshToken {
            refresh_token,
            scope,
        } => refresh(tenant, client, refresh_token.expose_secret(), scope).await,
        Grant::ClientCredentials { scope } => client_credentials(tenant, client, scope),
        Grant::DeviceCode { device_code } => {
            device_code_grant(tenant, client, device_code.expose_secret())
        }
    };
    let mut audit = tenant.audit.lock();
    match &result {
        Ok(_) => audit.count(&format!("token.{grant_name}.ok")),
        Err(e) => audit.count(&format!("token.{grant_name}.{}", e.code.as_str())),
    }
    result
}

fn authorization_code(
    tenant: &Tenant,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
) -> Result<Value, OAuthError> {
    let presented = CodePresentation {
        client,
        redirect_uri,
        code_verifier,
        with_refresh: client.config.allows(GrantType::RefreshToken),
    };
    let client_id = Some(client.id().as_str());
    let unsigned = tenant
        .grants
        .redeem_code(tenant, code, &presented, tenant.now())
        .inspect_err(|refusal| match refusal {
            CodeRefusal::Replayed { sub } => tenant.record(
                "authorization_code_replay",
                Some(sub),
                client_id,
                "code redeemed twice; its tokens are revoked",
            ),
            CodeRefusal::Rejected { sub, reason } => tenant.record(
                "authorization_code_rejected",
                Some(sub),
                client_id,
                reason.to_string(),
            ),
            _ => {}
        })?;
    // Signed outside the lock. The code is redeemed from here on: a replay, even one that comes
    // while these tokens are being signed, revokes them.
    match unsigned.sign() {
        Ok(issued) => Ok(issued.body),
        // Nothing was handed out; the failure burns the code.
        Err(failure) => Err(tenant
            .grants
            .code_not_delivered(code, failure, tenant.now())
            .into()),
    }
}

async fn refresh(
    tenant: &Tenant,
    client: &Client,
    token: &str,
    scope: Option<Scope>,
) -> Result<Value, OAuthError> {
    if !client.config.allows(GrantType::RefreshToken) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the refresh_token grant",
        ));
    }
    let fp = random::fingerprint(token);
    let client_id = Some(client.id().as_str());
    let deadline = tokio::time::Instant::now() + ROTATION_WAIT;
    loop {
        // Taken before the grants are looked at, so a rotation that settles after the look is
        // sure to wake it.
        let settled = tenant.grants.rotation_settled();
        let rotation = tenant
            .grants
            .rotate_refresh(tenant, token, client, scope.as_ref(), tenant.now())
            .inspect_err(|refusal| {
                if let RefreshRefusal::Reused { sub } = refusal {
                    tenant.record(
                        "refresh_token_reuse",
                        Some(sub),
                        client_id,
                        "a rotated-out refresh token was presented; its whole family is revoked",
                    );
                }
            })?;
        match rotation {
            Rotate::Issued(unsigned) => {
                let child_fp = unsigned.refresh_fp().map(str::to_owned);
                let keep = client.config.refresh_reuse_grace > 0;
                // Settled either way: the family's used tokens past the window are forgotten
                // then. Only a repeat inside the grace window asks for the response again;
                // without a window (clients cannot be changed once registered) it is not kept.
                return Ok(tenant.grants.settle_rotation(
                    &fp,
                    child_fp.as_deref(),
                    unsigned.sign(),
                    keep,
                )?);
            }
            Rotate::Repeat { sub, body } => {
                tenant.record(
                    "refresh_token_grace_reuse",
                    Some(&sub),
                    client_id,
                    "repeat within the grace window; same child tokens returned",
                );
                return Ok(body);
            }
            Rotate::WaitForRotation => {
                if tokio::time::timeout_at(deadline, settled).await.is_err() {
                    return Err(OAuthError::server_error(
                        "a concurrent rotation of this refresh token did not finish; try again",
                    ));
                }
            }
        }
    }
}

fn client_credentials(
    tenant: &Tenant,
    client: &Client,
    scope: Option<Scope>,
) -> Result<Value, OAuthError> {
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
    let unsigned = tenant.grants.issue(
        tenant,
        &Issue {
            client,
            sub: client.id().as_str(),
            sid: None,
            scope: &scope,
            nonce: None,
            auth_time: tenant.now(),
            with_refresh: false,
        },
    )?;
    unsigned
        .sign()
        .map(|issued| issued.body)
        .map_err(|failure| tenant.grants.not_delivered(failure).into())
}

fn device_code_grant(
    tenant: &Tenant,
    client: &Client,
    device_code: &str,
) -> Result<Value, OAuthError> {
    if !client.config.allows(GrantType::DeviceCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "this client may not use the device_code grant",
        ));
    }
    let unsigned = tenant.grants.poll_device(
        tenant,
        &random::fingerprint(device_code),
        client,
        client.config.allows(GrantType::RefreshToken),
        tenant.now(),
    )?;
    unsigned
        .sign()
        .map(|issued| issued.body)
        .map_err(|failure| tenant.grants.not_delivered(failure).into())
}
