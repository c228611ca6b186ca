//! Listing and ending an account's registry sessions, with RFC 9470 step-up: when the registry
//! asks for a recent sign-in, one `max_age=0` sign-in of the same person re-authenticates this
//! session and the revoke is retried once; a second challenge is `StepUpNotAccepted`. Ending this
//! device's own session signs it out here.

use account_store::{AccountKey, AccountMeta, ItemKind};
use registry_api::{RevokeRequest, RevokeScope, SessionView};
use secrecy::SecretString;

use super::{LoginMethod, SessionManager};
use crate::error::SessionError;
use crate::registry::RegistryClient;
use crate::state::{SessionState, UnavailableReason};

/// Which sessions a revoke ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// This device's session.
    Current,
    /// Every other session of the account.
    Others,
    /// Every session of the account, this one included.
    All,
    /// One session by id.
    Session(String),
}

impl RevokeTarget {
    pub(super) fn request(&self) -> RevokeRequest {
        let scope = |s| RevokeRequest {
            scope: Some(s),
            session_id: None,
        };
        match self {
            RevokeTarget::Current => scope(RevokeScope::Current),
            RevokeTarget::Others => scope(RevokeScope::Others),
            RevokeTarget::All => scope(RevokeScope::All),
            RevokeTarget::Session(id) => RevokeRequest {
                session_id: Some(id.clone()),
                scope: None,
            },
        }
    }
}

/// Why a revoke with step-up failed: the step-up (the fresh sign-in or the registry's
/// re-authentication of the session) or the revoke itself.
pub(super) enum RevokeFailure {
    Revoke(SessionError),
    StepUp(SessionError),
}

impl RevokeFailure {
    pub(super) fn into_error(self) -> SessionError {
        match self {
            RevokeFailure::Revoke(e) | RevokeFailure::StepUp(e) => e,
        }
    }
}

impl SessionManager {
    /// The registry client and session token of `account`, or why there are none.
    async fn registry_session(
        &self,
        account: &AccountKey,
    ) -> Result<(AccountMeta, RegistryClient, SecretString), SessionError> {
        let meta = self.meta(Some(account)).await?;
        let url = meta.registry_url.clone().ok_or_else(|| {
            SessionError::Configuration("this account has no registry session".into())
        })?;
        // Only the session token: the registry refuses a session JWT for listing, revoking,
        // events and re-authentication.
        let token = self
            .item(account, ItemKind::SessionToken)
            .await?
            .ok_or_else(|| SessionError::ReauthenticationRequired {
                account: account.to_string(),
                reason: "this device is signed out".into(),
            })?;
        Ok((meta, self.registry(&url), token))
    }

    /// The body of [`SessionManager::list_sessions`].
    pub(super) async fn list_registry_sessions(
        &self,
        account: &AccountKey,
    ) -> Result<Vec<SessionView>, SessionError> {
        let (meta, client, token) = self.registry_session(account).await?;
        match client.list(&token, meta.key.as_str()).await {
            Ok(list) => Ok(list),
            Err(e) => Err(self.on_registry_error(account, &token, e).await),
        }
    }

    /// [`SessionManager::revoke_sessions`], telling a failed step-up apart from a failed revoke:
    /// only the registry's answer to the revoke itself may say "this session is gone already".
    pub(super) async fn revoke_with_step_up(
        &self,
        account: &AccountKey,
        target: RevokeTarget,
        step_up: Option<LoginMethod<'_>>,
    ) -> Result<Vec<String>, RevokeFailure> {
        let (meta, client, token) = self
            .registry_session(account)
            .await
            .map_err(RevokeFailure::Revoke)?;
        let request = target.request();
        // Ending this device's own session by id signs it out here too: know which one it is.
        let own = match &target {
            RevokeTarget::Session(_) => self
                .own_session_id(&meta, &client, &token)
                .await
                .map_err(RevokeFailure::Revoke)?,
            _ => None,
        };
        let first = client.revoke(&token, &request, meta.key.as_str()).await;
        let revoked = match (first, step_up) {
            (Err(SessionError::StepUpRequired { max_age }), Some(method)) => {
                tracing::info!(account = %account, ?max_age, "the registry asks for a recent sign-in; signing in again");
                self.step_up(&meta, &client, &token, method)
                    .await
                    .map_err(RevokeFailure::StepUp)?;
                // Retried once: a second challenge is an error, never a second sign-in.
                match client.revoke(&token, &request, meta.key.as_str()).await {
                    Err(SessionError::StepUpRequired { max_age }) => {
                        tracing::warn!(account = %account, ?max_age, "the registry asks for a recent sign-in again right after one; giving up");
                        return Err(RevokeFailure::StepUp(SessionError::StepUpNotAccepted {
                            max_age,
                        }));
                    }
                    retried => retried,
                }
            }
            (first, _) => first,
        };
        let revoked = match revoked {
            Ok(r) => r,
            Err(e) => {
                return Err(RevokeFailure::Revoke(
                    self.on_registry_error(account, &token, e).await,
                ))
            }
        };
        let ended_own = own.is_some_and(|own| revoked.contains(&own));
        if target == RevokeTarget::All || target == RevokeTarget::Current || ended_own {
            self.sign_out_locally(account, UnavailableReason::SignedOut, false)
                .await
                .map_err(RevokeFailure::Revoke)?;
        }
        Ok(revoked)
    }

    /// This device's session id: as this process or another of the profile last learnt it, else
    /// the one the registry marks `current` in the account's list.
    async fn own_session_id(
        &self,
        meta: &AccountMeta,
        client: &RegistryClient,
        token: &SecretString,
    ) -> Result<Option<String>, SessionError> {
        if let SessionState::Available { session_id, .. } = &*self.state(&meta.key).borrow() {
            if !session_id.is_empty() {
                return Ok(Some(session_id.clone()));
            }
        }
        if let Some(id) = self.inner.notes.read(&meta.key).session_id {
            return Ok(Some(id));
        }
        let sessions = match client.list(token, meta.key.as_str()).await {
            Ok(list) => list,
            Err(e) => return Err(self.on_registry_error(&meta.key, token, e).await),
        };
        let own = sessions
            .iter()
            .find(|s| s.current)
            .map(|s| s.session_id.clone());
        if let Some(id) = &own {
            self.inner
                .notes
                .update(&meta.key, |n| n.session_id = Some(id.clone()));
        }
        Ok(own)
    }

    /// RFC 9470 step-up: a fresh sign-in (`max_age=0`) of the same person (same iss and sub),
    /// whose new ID token — used once, here — records the sign-in on this session at the
    /// registry. The new sign-in's own tokens are not kept: its refresh token is revoked.
    async fn step_up(
        &self,
        meta: &AccountMeta,
        client: &RegistryClient,
        token: &SecretString,
        method: LoginMethod<'_>,
    ) -> Result<(), SessionError> {
        let issuer = meta.id.issuer.as_str().to_owned();
        let client_id = meta
            .client_id
            .clone()
            .unwrap_or_else(|| self.inner.options.client_id.clone());
        let provider = self.provider(&issuer, &client_id).await?;
        let fresh = match method {
            LoginMethod::Browser(prompt, timeout) => {
                provider
                    .reauthenticate_with_browser(prompt, timeout)
                    .await?
            }
            LoginMethod::DeviceCode(prompt, timeout) => {
                provider
                    .reauthenticate_with_device_code(prompt, timeout)
                    .await?
            }
        };
        if let Some(rt) = &fresh.refresh_token {
            if let Err(e) = provider.revoke(rt).await {
                tracing::info!(account = %meta.key, error = %e, "could not revoke the step-up sign-in's refresh token");
            }
        }
        // The provider is the account's (same issuer), so only the subject can differ.
        if fresh.subject != meta.id.subject.as_str() {
            tracing::warn!(account = %meta.key, "step-up sign-in as another person; refused");
            return Err(SessionError::StepUpAccountMismatch {
                expected: meta.display_name.clone(),
                found: fresh.email.clone().unwrap_or(fresh.subject.clone()),
            });
        }
        match client
            .reauthenticate(token, &fresh.id_token, meta.key.as_str())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self.on_registry_error(&meta.key, token, e).await),
        }
    }
}
