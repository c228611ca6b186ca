//! OIDC Back-Channel Logout 1.0: when an IdP session ends, every client that took part in it and
//! registered a `backchannel_logout_uri` gets a signed logout token by POST. Deliveries are
//! recorded in the audit log (`backchannel_logout_delivered` / `..._failed`).

use std::sync::Arc;

use serde_json::json;

use crate::config::SigningAlg;
use crate::grants::IdpSession;
use crate::jwt;
use crate::random;
use crate::tenant::Tenant;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Sends logout tokens for `sessions`, in the background.
pub fn notify(tenant: &Arc<Tenant>, http: &reqwest::Client, sessions: &[IdpSession]) {
    for session in sessions {
        for client_id in &session.clients {
            let (uri, alg) = {
                let dir = tenant.directory.read();
                match dir.client(client_id.as_str()) {
                    Some(c) => match &c.config.backchannel_logout_uri {
                        Some(uri) => (uri.clone(), c.config.id_token_alg),
                        None => continue,
                    },
                    None => continue,
                }
            };
            let token = match logout_token(
                tenant,
                client_id.as_str(),
                &session.sub,
                &session.sid,
                alg,
            ) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(tenant = %tenant.id, error = %e, "could not sign a logout token");
                    continue;
                }
            };
            let (tenant, http, client_id, sub) = (
                Arc::clone(tenant),
                http.clone(),
                client_id.to_string(),
                session.sub.clone(),
            );
            tokio::spawn(async move {
                let res = http
                    .post(&uri)
                    .form(&[("logout_token", token.as_str())])
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => {
                        tenant.record(
                            "backchannel_logout_delivered",
                            Some(&sub),
                            Some(&client_id),
                            format!("{uri} answered {}", r.status()),
                        );
                    }
                    Ok(r) => {
                        tenant.record(
                            "backchannel_logout_failed",
                            Some(&sub),
                            Some(&client_id),
                            format!("{uri} answered {}", r.status()),
                        );
                    }
                    Err(e) => {
                        tenant.record(
                            "backchannel_logout_failed",
                            Some(&sub),
                            Some(&client_id),
                            format!("{uri}: {e}"),
                        );
                    }
                }
            });
        }
    }
}

/// A logout token (Back-Channel Logout 1.0 §2.4): iss, aud, iat, exp, jti, events, sub, sid; no
/// nonce; `typ: logout+jwt`.
pub fn logout_token(
    tenant: &Tenant,
    client_id: &str,
    sub: &str,
    sid: &str,
    alg: SigningAlg,
) -> Result<String, String> {
    let iat = tenant.issue_time().unix_timestamp();
    let claims = json!({
        "iss": tenant.issuer,
        "aud": client_id,
        "iat": iat,
        "exp": iat + 120,
        "jti": random::id(),
        "sub": sub,
        "sid": sid,
        "events": { EVENT: {} },
    });
    let key = tenant.keys.read().active(alg).ok_or("no active key")?;
    jwt::sign(&claims, &key, Some("logout+jwt")).map_err(|e| e.to_string())
}
