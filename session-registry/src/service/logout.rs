//! Ending sessions from outside a device: the tenant IdP's back-channel logout, and the tenant
//! admin's revoke.

use serde_json::Value;

use super::intake::spent_logout_jti;
use super::Registry;
use crate::error::ApiError;
use crate::oidc::unverified_issuer;
use crate::store::{IdpLogout, StoreError, TenantRecord};

impl Registry {
    /// `POST /v1/backchannel-logout`: a logout token from a tenant's IdP ends matching sessions.
    /// Its `jti` is recorded in the transaction that ends them: a replay to any registry process
    /// is refused, and a database error leaves it unspent so the IdP's redelivery is processed.
    pub async fn backchannel_logout(&self, logout_token: &str) -> Result<usize, ApiError> {
        let bad = |d: &str| ApiError::bad_request("invalid_request", d);
        let iss = unverified_issuer(logout_token)
            .ok_or_else(|| bad("logout_token is not a JWT with an iss"))?;
        let tenants: Vec<TenantRecord> = self
            .store
            .tenants()
            .await?
            .into_iter()
            .filter(|t| t.issuer == iss)
            .collect();
        if tenants.is_empty() {
            return Err(bad("no tenant trusts this issuer"));
        }
        let now = self.now();
        let mut verified = Vec::new();
        let mut refusals: Vec<String> = Vec::new();
        for t in tenants {
            match self.verifier.verify_logout_token(logout_token, &t).await {
                Ok(claims) => verified.push((t, claims)),
                Err(e) => {
                    tracing::info!(tenant = %t.slug, error = %e, "logout token refused");
                    let reason = e.to_string();
                    if !refusals.contains(&reason) {
                        refusals.push(reason);
                    }
                }
            }
        }
        if verified.is_empty() {
            // The IdP's operator reads this: it names what is wrong (per tenant trusting the
            // issuer, each distinct reason once); the verifier's errors carry no token content.
            return Err(bad(&format!(
                "the logout token failed validation: {}",
                refusals.join("; ")
            )));
        }
        let (mut ended, mut replayed, tenants) = (0, 0, verified.len());
        for (tenant, claims) in verified {
            let sub = claims.get("sub").and_then(Value::as_str);
            let sid = claims.get("sid").and_then(Value::as_str);
            let jti = spent_logout_jti(&claims, now);
            // Verification requires `iat`, at most the leeway ahead of our clock: a logout
            // dated further ahead was refused, and cannot lock the person out beyond it.
            let issued_at = claims.get("iat").and_then(Value::as_i64).unwrap_or(now);
            let logout = IdpLogout {
                issuer: &tenant.issuer,
                subject: sub,
                sid,
                jti: &jti,
                issued_at,
                // ID tokens of what ended are too old to open anything by then: their `iat` is
                // at most the logout's (the IdP's clock, within the leeway of ours), and they
                // open sessions until `iat` + the age limit + the leeway.
                ended_until: now
                    .max(issued_at)
                    .saturating_add(tenant.max_id_token_age_secs)
                    .saturating_add(2 * crate::oidc::MAX_LEEWAY),
                now,
            };
            match self.store.idp_logout(&tenant.slug, &logout).await {
                Ok(events) => {
                    ended += events.len();
                    tracing::info!(tenant = %tenant.slug, count = events.len(), "sessions ended by back-channel logout");
                    self.publish(events);
                }
                Err(StoreError::AlreadyUsed) => {
                    tracing::warn!(tenant = %tenant.slug, "a logout token was replayed");
                    replayed += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if replayed == tenants {
            return Err(bad("this logout token was already used"));
        }
        Ok(ended)
    }

    /// Admin: ends sessions by id within a tenant.
    pub async fn admin_revoke(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let events = self
            .store
            .end_sessions(tenant, ids, "revoked_by_admin", self.now())
            .await?;
        let revoked = events.iter().map(|e| e.session_id.clone()).collect();
        self.publish(events);
        Ok(revoked)
    }
}
