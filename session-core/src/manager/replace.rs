//! A sign-in to an account this profile already holds replaces its tokens, and ends what it
//! replaces: the registry session of the tokens before (revoked as `current`) and their refresh
//! grant at the IdP (RFC 7009). Nobody holds those any more, so they must not live on until they
//! expire — listed on the devices page as a second session of this device, usable by whoever
//! copied them.
//!
//! The other processes of the profile may still hold the old session token in memory (a watcher
//! following its events, a heartbeat in flight). When the registry tells them it is gone, they
//! find a newer token stored and keep the account ([`SessionManager::sign_out_session_gone`]):
//! only the session that was replaced ended. The swap itself runs under the account's refresh
//! lock, so a refresh in another process either finishes before it (and its rotated refresh
//! token is the one revoked here) or starts after it (and presents the new one).

use account_store::{AccountKey, AccountMeta, ItemKind};
use secrecy::{ExposeSecret, SecretString};

use super::SessionManager;
use crate::error::SessionError;

/// What a sign-in replaced: the account's earlier registry session and refresh grant.
#[derive(Default)]
pub(super) struct Replaced {
    meta: Option<AccountMeta>,
    session_token: Option<SecretString>,
    refresh_token: Option<SecretString>,
}

impl SessionManager {
    /// What `account` holds before a sign-in replaces it (nothing for a new account or one
    /// signed out here). Read under the refresh lock, just before the new tokens are saved. A
    /// store that cannot be read here only costs the clean-up: the sign-in goes on.
    pub(super) async fn to_be_replaced(&self, account: &AccountKey) -> Replaced {
        let k = account.clone();
        let read = self
            .blocking(move |s| {
                let Some(meta) = s.index().get(&k)? else {
                    return Ok(Replaced::default());
                };
                Ok(Replaced {
                    session_token: s.secrets().get(&k, ItemKind::SessionToken)?,
                    refresh_token: s.secrets().get(&k, ItemKind::RefreshToken)?,
                    meta: Some(meta),
                })
            })
            .await;
        let mut replaced = read.unwrap_or_else(|e| {
            tracing::warn!(account = %account, error = %e, "the tokens this sign-in replaces could not be read: their registry session and grant are left to expire");
            Replaced::default()
        });
        // An earlier refresh of this process whose tokens could not be saved holds the grant's
        // live refresh token (the stored one is spent).
        if let Some(p) = super::lock(&self.inner.pending).get(account) {
            replaced.refresh_token = p.refresh_token().or(replaced.refresh_token);
        }
        replaced
    }

    /// Ends, best effort, what a sign-in to `account` replaced (see the module's comment):
    /// failures are logged and leave the old session and grant to expire.
    pub(super) async fn end_replaced(
        &self,
        account: &AccountKey,
        replaced: Replaced,
        new_session_token: Option<&SecretString>,
    ) {
        let Some(meta) = replaced.meta else {
            return;
        };
        if let Some(old) = &replaced.session_token {
            let same = new_session_token.is_some_and(|t| t.expose_secret() == old.expose_secret());
            if !same {
                tracing::info!(account = %account, "signed in again: ending the registry session it replaces");
                self.end_registry_session(account, &meta, old).await;
            }
        }
        if let Some(rt) = &replaced.refresh_token {
            let client_id = meta
                .client_id
                .clone()
                .unwrap_or_else(|| self.inner.options.client_id.clone());
            let revoked = match self.provider(meta.id.issuer.as_str(), &client_id).await {
                Ok(p) => p.revoke(rt).await,
                Err(e) => Err(e),
            };
            match revoked {
                Ok(()) => {
                    tracing::info!(account = %account, "signed in again: the refresh grant it replaces is revoked")
                }
                Err(e) => {
                    tracing::warn!(account = %account, error = %e, "the refresh grant this sign-in replaces could not be revoked; it lives until it expires")
                }
            }
        }
    }

    /// Signs `account` out here because the registry no longer accepts `used`, its session
    /// token, unless a newer sign-in of this profile replaced it in the store meanwhile: that
    /// sign-in ended `used`'s session itself, and the account, signed in anew, is kept. Returns
    /// whether it signed out.
    pub(super) async fn sign_out_session_gone(
        &self,
        account: &AccountKey,
        used: &SecretString,
        from_watcher: bool,
    ) -> Result<bool, SessionError> {
        // The comparison and the wipe in one step under the refresh lock, which a sign-in's swap
        // holds: a sign-in saving between the two would otherwise have its new tokens wiped.
        let (k, used) = (account.clone(), used.clone());
        let wiped = self
            .under_refresh_lock(
                account,
                self.blocking(
                    move |s| match s.secrets().get(&k, ItemKind::SessionToken)? {
                        Some(stored) if stored.expose_secret() != used.expose_secret() => Ok(false),
                        _ => {
                            s.secrets().delete_account(&k)?;
                            Ok(true)
                        }
                    },
                ),
            )
            .await?;
        if !wiped {
            tracing::info!(account = %account, "the session that ended was replaced by a newer sign-in; keeping the account");
            return Ok(false);
        }
        self.signed_out_locally(
            account,
            crate::state::UnavailableReason::RevokedRemotely,
            from_watcher,
        );
        Ok(true)
    }
}
