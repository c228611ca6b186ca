//! Signing out. A logout revokes at the registry and the IdP (best effort) and always wipes the
//! account here; a logout everywhere that the registry wants a recent sign-in for steps up first,
//! and a failed step-up wipes nothing. A session found gone (revoked elsewhere, refused at
//! refresh) is signed out locally: tokens wiped, index entry kept for the next sign-in.

use account_store::{AccountKey, AccountMeta, ItemKind};
use secrecy::SecretString;

use super::revoke::{RevokeFailure, RevokeTarget};
use super::{lock, LoginMethod, SessionManager};
use crate::error::SessionError;
use crate::state::{ManagerEvent, SessionState, UnavailableReason};

/// What a logout covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutScope {
    /// One account on this device.
    Account(AccountKey),
    /// Every account on this device.
    Device,
    /// One account on every device (registry scope `all`).
    Everywhere(AccountKey),
}

/// What a logout did; `not_revoked` lists what could not be revoked remotely (the local wipe
/// happened regardless).
#[derive(Debug, Default)]
pub struct LogoutReport {
    pub removed: Vec<AccountKey>,
    pub not_revoked: Vec<String>,
}

impl SessionManager {
    /// The body of [`SessionManager::logout_with_step_up`].
    pub(super) async fn log_out(
        &self,
        scope: LogoutScope,
        step_up: Option<LoginMethod<'_>>,
    ) -> Result<LogoutReport, SessionError> {
        let mut step_up = step_up;
        if let (LogoutScope::Everywhere(k), Some(method)) = (&scope, step_up.take()) {
            let meta = self.meta(Some(k)).await?;
            if meta.registry_url.is_some() && self.item(k, ItemKind::SessionToken).await?.is_some()
            {
                match self
                    .revoke_with_step_up(k, RevokeTarget::Others, Some(method))
                    .await
                {
                    // The revoke itself found the registry unreachable, or this session gone
                    // already: the logout goes on and reports what it could not revoke.
                    Err(RevokeFailure::Revoke(e))
                        if e.is_transient()
                            || matches!(e, SessionError::ReauthenticationRequired { .. }) => {}
                    // A step-up that failed — refused, unreachable, even "sign in again" — is
                    // never "the session is gone": going on would wipe the account here while
                    // every other session lives on, and report that as a logout everywhere.
                    Err(failure) => return Err(failure.into_error()),
                    Ok(_) => {}
                }
            }
        }
        let (accounts, registry_scope) = match &scope {
            LogoutScope::Account(k) => (vec![self.meta(Some(k)).await?], RevokeTarget::Current),
            LogoutScope::Everywhere(k) => (vec![self.meta(Some(k)).await?], RevokeTarget::All),
            LogoutScope::Device => (self.accounts().await?, RevokeTarget::Current),
        };
        let mut report = LogoutReport::default();
        for meta in accounts {
            self.stop_watchers(&meta.key, false);
            if let (Some(url), Some(token)) = (
                &meta.registry_url,
                self.item(&meta.key, ItemKind::SessionToken).await?,
            ) {
                if let Err(e) = self
                    .registry(url)
                    .revoke(&token, &registry_scope.request(), meta.key.as_str())
                    .await
                {
                    report
                        .not_revoked
                        .push(format!("{}: registry session ({e})", meta.display_name));
                }
            }
            if let Some(rt) = self.item(&meta.key, ItemKind::RefreshToken).await? {
                let client_id = meta
                    .client_id
                    .clone()
                    .unwrap_or_else(|| self.inner.options.client_id.clone());
                let revoked = match self.provider(meta.id.issuer.as_str(), &client_id).await {
                    Ok(p) => p.revoke(&rt).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = revoked {
                    report
                        .not_revoked
                        .push(format!("{}: refresh token ({e})", meta.display_name));
                }
            }
            let k = meta.key.clone();
            self.blocking(move |s| s.remove_account(&k)).await?;
            self.set_state(
                &meta.key,
                SessionState::Unavailable {
                    reason: UnavailableReason::SignedOut,
                },
            );
            self.emit(ManagerEvent::Removed {
                account: meta.key.clone(),
            });
            report.removed.push(meta.key);
        }
        Ok(report)
    }

    /// Best effort: revokes this device's registry session of `account` (its session token
    /// `token`, read before the local wipe), logging what could not be revoked. For a sign-out
    /// this device decided on its own.
    pub(super) async fn end_registry_session(
        &self,
        account: &AccountKey,
        meta: &AccountMeta,
        token: &SecretString,
    ) {
        let Some(url) = &meta.registry_url else {
            return;
        };
        if let Err(e) = self
            .registry(url)
            .revoke(token, &RevokeTarget::Current.request(), account.as_str())
            .await
        {
            tracing::warn!(account = %account, error = %e, "the registry session could not be revoked");
        }
    }

    /// Wipes the account's tokens here (keeping its index entry so it can sign in again), sets
    /// its state and stops its watchers.
    pub(super) async fn sign_out_locally(
        &self,
        account: &AccountKey,
        reason: UnavailableReason,
        from_watcher: bool,
    ) -> Result<(), SessionError> {
        let k = account.clone();
        self.blocking(move |s| s.secrets().delete_account(&k))
            .await?;
        self.signed_out_locally(account, reason, from_watcher);
        Ok(())
    }

    /// What follows the wipe of `account`'s tokens here: its state, its event, its watchers.
    pub(super) fn signed_out_locally(
        &self,
        account: &AccountKey,
        reason: UnavailableReason,
        from_watcher: bool,
    ) {
        lock(&self.inner.pending).remove(account);
        self.inner.notes.remove(account);
        let remote = reason == UnavailableReason::RevokedRemotely;
        self.set_state(account, SessionState::Unavailable { reason });
        self.emit(if remote {
            ManagerEvent::RevokedRemotely {
                account: account.clone(),
            }
        } else {
            ManagerEvent::SignedOut {
                account: account.clone(),
            }
        });
        self.stop_watchers(account, from_watcher);
    }
}
