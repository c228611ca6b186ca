//! Upgrading a guest: the IdP turned the guest into a registered user keeping its `sub`, and the
//! device session follows. The caller proves the session with its bearer credential and the
//! upgrade with a fresh ID token of the same tenant and subject, no longer a guest; the account
//! is updated and the same session gets a new session JWT (`is_guest` false).

use serde_json::Value;

use crate::error::ApiError;
use crate::oidc::unverified_issuer;
use crate::refusal::Refusal;
use crate::service::{session_view, Caller, Registry, SessionResponse};
use registry_api::{Credential, UpgradeSessionRequest};

/// A refused upgrade: the ID token in the body is at fault (the bearer was fine), so `400`.
fn refuse(code: &'static str, description: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, description)
}

impl Registry {
    /// `POST /v1/sessions/upgrade`: verifies `req.id_token.expose()` as `POST /v1/sessions` does, against
    /// the caller's tenant; requires the caller's subject and `is_guest` false; then marks the
    /// account registered (an `upgraded` event) and answers a fresh session JWT for the same
    /// session. Repeating it once the account is registered changes nothing and answers the same.
    /// Refusals (`400`): `invalid_id_token`, `issuer_mismatch`, `subject_mismatch`,
    /// `still_a_guest`; nothing changes.
    #[tracing::instrument(skip_all, fields(tenant = %caller.tenant, account = %caller.session.account_id, session = %caller.session.id))]
    pub async fn upgrade_session(
        &self,
        caller: &Caller,
        req: UpgradeSessionRequest,
    ) -> Result<SessionResponse, ApiError> {
        let tenant = self.store.tenant(&caller.tenant).await?.ok_or_else(|| {
            ApiError::from(Refusal::UnknownTenant(
                caller.tenant.escape_default().to_string(),
            ))
        })?;
        let iss = unverified_issuer(req.id_token.expose())
            .ok_or_else(|| refuse("invalid_id_token", "the ID token is not a JWT"))?;
        if iss != tenant.issuer {
            tracing::info!(reason = "issuer_mismatch", "guest upgrade refused");
            return Err(refuse(
                "issuer_mismatch",
                "the ID token is not from the session's tenant",
            ));
        }
        let claims = self
            .verifier
            .verify_id_token(req.id_token.expose(), &tenant)
            .await
            .map_err(|e| {
                tracing::info!(reason = "invalid_id_token", error = %e, "guest upgrade refused");
                refuse("invalid_id_token", e.to_string())
            })?;
        if claims.get("sub").and_then(Value::as_str) != Some(caller.session.subject.as_str()) {
            tracing::info!(reason = "subject_mismatch", "guest upgrade refused");
            return Err(refuse(
                "subject_mismatch",
                "the ID token names another subject than the session's account",
            ));
        }
        if claims.get("is_guest").and_then(Value::as_bool) != Some(false) {
            tracing::info!(reason = "still_a_guest", "guest upgrade refused");
            return Err(refuse(
                "still_a_guest",
                "the ID token is still a guest's: upgrade the guest at the IdP first",
            ));
        }
        let email = claims.get("email").and_then(Value::as_str);
        let now = self.now();
        let event = self
            .store
            .set_account_registered(
                &caller.tenant,
                &caller.session.account_id,
                &caller.session.id,
                email,
                now,
            )
            .await?;
        if let Some(e) = event {
            tracing::info!("guest account upgraded");
            self.publish(vec![e]);
        }
        let record = self
            .store
            .session(&caller.tenant, &caller.session.id)
            .await?
            .ok_or_else(|| ApiError::from(Refusal::SessionNotFound))?;
        Ok(SessionResponse {
            session_jwt: Credential::new(self.mint_jwt(&record, now, now)?),
            session: session_view(&record, Some(&record.id)),
            session_token: None,
        })
    }
}
