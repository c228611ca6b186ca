//! Keeping access tokens valid: a token that expires within the margin is refreshed before it is
//! handed out, and a 401 refreshes once; a refresh runs once for every task of this process (a
//! per-account mutex) and every process of the profile (a per-account file lock). Tokens a refresh
//! obtained but could not save stay in memory (their predecessor is spent) and are saved first.

use std::time::Duration;

use account_store::{AccountKey, AccountMeta, ItemKind};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use super::{lock, token_items, SessionManager};
use crate::error::SessionError;
use crate::oidc::{RefreshFailure, SignInBinding};
use crate::state::{ManagerEvent, UnavailableReason};
use crate::tokens::TokenSet;

/// Tokens a refresh obtained that could not be saved yet: kept here (the refresh token they
/// replace is spent) until a save succeeds.
pub(super) struct PendingSave {
    meta: AccountMeta,
    tokens: TokenSet,
}

impl PendingSave {
    /// The grant's live refresh token (the stored one is spent).
    pub(super) fn refresh_token(&self) -> Option<SecretString> {
        self.tokens.refresh_token.clone()
    }
}

impl SessionManager {
    pub(super) fn is_fresh(&self, expires_at: Option<i64>) -> bool {
        let margin = i64::try_from(self.inner.options.refresh_margin.as_secs()).unwrap_or(300);
        expires_at.is_some_and(|exp| exp - margin > self.now())
    }

    pub(super) async fn fresh_access_token(
        &self,
        meta: &AccountMeta,
    ) -> Result<Option<SecretString>, SessionError> {
        // Tokens a refresh could not save yet come first: what is stored is older (and its
        // refresh token spent).
        if self.save_pending(&meta.key).await.is_err() {
            let pending = lock(&self.inner.pending);
            if let Some(p) = pending.get(&meta.key) {
                return Ok(self
                    .is_fresh(p.tokens.access_token_expires_at)
                    .then(|| p.tokens.access_token.clone()));
            }
        }
        if !self.is_fresh(meta.access_token_expires_at) {
            return Ok(None);
        }
        self.item(&meta.key, ItemKind::AccessToken).await
    }

    /// Saves tokens a refresh could not save (if any). `Err` while they still cannot be saved.
    pub(super) async fn save_pending(&self, account: &AccountKey) -> Result<(), SessionError> {
        let Some((meta, items)) = lock(&self.inner.pending)
            .get(account)
            .map(|p| (p.meta.clone(), token_items(&p.tokens)))
        else {
            return Ok(());
        };
        self.blocking(move |s| s.save_account(meta, &items)).await?;
        lock(&self.inner.pending).remove(account);
        if self
            .inner
            .notes
            .read(account)
            .refresh_token_spent_at
            .is_some()
        {
            self.inner
                .notes
                .update(account, |n| n.refresh_token_spent_at = None);
        }
        tracing::info!(account = %account, "the refreshed tokens are saved now");
        Ok(())
    }

    /// The body of [`SessionManager::refresh`].
    pub(super) async fn refresh_single_flight(
        &self,
        account: &AccountKey,
        force: bool,
    ) -> Result<SecretString, SessionError> {
        self.under_refresh_lock(account, self.refresh_locked(account, force))
            .await
    }

    /// Runs `work` holding `account`'s refresh lock: the per-account mutex of this process and
    /// the per-account file lock of the profile. A refresh holds it from reading the refresh
    /// token to saving its successor; a sign-in that replaces the account's tokens holds it from
    /// reading them to saving the new ones, so neither saves over the other.
    pub(super) async fn under_refresh_lock<T>(
        &self,
        account: &AccountKey,
        work: impl std::future::Future<Output = Result<T, SessionError>>,
    ) -> Result<T, SessionError> {
        let local = lock(&self.inner.refresh_locks)
            .entry(account.clone())
            .or_default()
            .clone();
        let _local = local.lock().await;
        let path = self
            .inner
            .options
            .lock_dir
            .join(format!("{account}.refresh.lock"));
        let file_lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            f.lock()?;
            Ok(f)
        })
        .await
        .map_err(SessionError::transient)?
        .map_err(SessionError::transient)?;
        let result = work.await;
        drop(file_lock);
        result
    }

    async fn refresh_locked(
        &self,
        account: &AccountKey,
        force: bool,
    ) -> Result<SecretString, SessionError> {
        let meta = self.meta(Some(account)).await?;
        if !force {
            if let Some(token) = self.fresh_access_token(&meta).await? {
                return Ok(token); // another task or process refreshed while we waited
            }
        }
        // Unsaved tokens of an earlier refresh hold the only live refresh token: never fall back
        // to the stored one, which that refresh spent.
        let (meta, refresh_token, stored_id_token) = match lock(&self.inner.pending).get(account) {
            Some(p) => (
                p.meta.clone(),
                p.tokens.refresh_token.clone(),
                Some(p.tokens.id_token.clone()),
            ),
            None => (meta, None, None),
        };
        let mut refresh_token = match refresh_token {
            Some(rt) => rt,
            None if self
                .inner
                .notes
                .read(account)
                .refresh_token_spent_at
                .is_some() =>
            {
                // An earlier refresh (maybe of another process, now ended) spent the stored
                // token and could not save its successor: presenting it would trip the
                // provider's reuse detection. The session token is kept; a sign-in replaces both.
                tracing::warn!(account = %account, reason = "refresh_token_spent", "the stored refresh token was spent by a refresh whose tokens could not be saved; not presenting it");
                return Err(SessionError::ReauthenticationRequired {
                    account: account.to_string(),
                    reason: "the stored refresh token was used by a refresh whose new tokens could not be saved".into(),
                });
            }
            None => self
                .item(account, ItemKind::RefreshToken)
                .await?
                .ok_or_else(|| SessionError::ReauthenticationRequired {
                    account: account.to_string(),
                    reason: "no refresh token is stored".into(),
                })?,
        };
        let issuer = meta.id.issuer.as_str().to_owned();
        let client_id = meta
            .client_id
            .clone()
            .unwrap_or_else(|| self.inner.options.client_id.clone());
        let id_token = match stored_id_token {
            Some(t) => Some(t),
            None => self.item(account, ItemKind::IdToken).await?,
        };
        let binding = id_token
            .as_ref()
            .and_then(|t| SignInBinding::from_id_token(t.expose_secret()))
            .unwrap_or_else(|| {
                SignInBinding::of_account(&issuer, meta.id.subject.as_str(), &client_id)
            });
        let mut delay = self.inner.options.backoff;
        let mut tries = 0;
        let tokens = loop {
            tries += 1;
            let attempt = match self.provider(&issuer, &client_id).await {
                Ok(p) => {
                    p.refresh_sign_in(
                        account.as_str(),
                        &refresh_token,
                        &binding,
                        id_token.as_ref(),
                    )
                    .await
                }
                Err(e) => Err(RefreshFailure {
                    error: e,
                    rotated: None,
                }),
            };
            let e = match attempt {
                Ok(t) => break t,
                Err(RefreshFailure { error, rotated }) => {
                    if let Some(rotated) = rotated {
                        // The provider answered, but not usably: the presented token is spent
                        // and its successor is the grant's only live one.
                        if matches!(error, SessionError::ReauthenticationRequired { .. }) {
                            self.revoke_rotated(&issuer, &client_id, account, &rotated)
                                .await;
                        } else {
                            let ours = self
                                .keep_rotated(
                                    account,
                                    &issuer,
                                    &client_id,
                                    &refresh_token,
                                    rotated.clone(),
                                )
                                .await;
                            if !ours {
                                return Err(error);
                            }
                            refresh_token = rotated;
                        }
                    }
                    error
                }
            };
            match e {
                e if e.is_transient() && tries < self.inner.options.max_tries => {
                    let jitter = rand::thread_rng().gen_range(0..=delay.as_millis() as u64 / 2);
                    tracing::warn!(account = %account, tries, error = %e, "refresh failed; retrying");
                    tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
                    delay *= 2;
                }
                e @ SessionError::ReauthenticationRequired { .. } => {
                    // The IdP refused the grant (revoked — e.g. its family after a stolen copy
                    // was replayed — expired, or ended): whoever holds a copy of this account
                    // store may hold the session token too, so the registry session ends with
                    // the local sign-out instead of living on unused.
                    let session_token = match self.item(account, ItemKind::SessionToken).await {
                        Ok(token) => token,
                        Err(read) => {
                            tracing::warn!(account = %account, error = %read, "the session token could not be read: the registry session is left to expire");
                            None
                        }
                    };
                    // Signed out here first (the watchers stopped, so this device's own
                    // `revoked` event does not sign it out a second time as "revoked
                    // remotely"), then the registry session ended, best effort — even when
                    // the local wipe failed, whose error is then the one returned.
                    let wiped = self
                        .sign_out_locally(account, UnavailableReason::SignedOut, false)
                        .await;
                    if let Some(token) = session_token {
                        self.end_registry_session(account, &meta, &token).await;
                    }
                    wiped?;
                    return Err(e);
                }
                e => return Err(e),
            }
        };
        let mut updated = meta.clone();
        updated.access_token_expires_at = tokens.access_token_expires_at;
        // A guest upgraded on another device: the refreshed ID token (verified, same issuer and
        // subject) says registered, so this device's record says so too. Never the other way:
        // a registered account does not turn back into a guest.
        // The claim said so explicitly (a provider that leaves it out says nothing about guests).
        let says_registered = crate::tokens::jwt_claims(tokens.id_token.expose_secret())
            .is_some_and(|c| c["is_guest"].as_bool() == Some(false));
        if meta.is_guest && says_registered {
            updated.is_guest = false;
            updated.email = tokens.email.clone().or(updated.email);
            updated.display_name = updated
                .email
                .clone()
                .or(tokens.name.clone())
                .unwrap_or_else(|| updated.id.subject.as_str().to_owned());
            tracing::info!(account = %account, "the guest account was upgraded elsewhere: now registered");
        }
        let access = tokens.access_token.clone();
        // From here the old refresh token is spent: the new tokens stay in memory until saved.
        lock(&self.inner.pending).insert(
            account.clone(),
            PendingSave {
                meta: updated,
                tokens,
            },
        );
        let mut delay = self.inner.options.backoff;
        for attempt in 1..=self.inner.options.max_tries.max(1) {
            match self.save_pending(account).await {
                Ok(()) => break,
                Err(e) if attempt < self.inner.options.max_tries => {
                    tracing::warn!(account = %account, attempt, error = %e, "saving the refreshed tokens failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    // Still in memory: the next call of this process saves them first. Another
                    // process (or this one's successor) only has the stored refresh token, which
                    // is spent now: mark it so, beside the locks rather than in the failing store.
                    self.mark_refresh_token_spent(account, true);
                    tracing::error!(account = %account, error = %e, "the refreshed tokens could not be saved; keeping them in memory and marking the stored refresh token spent");
                }
            }
        }
        self.emit(ManagerEvent::Refreshed {
            account: account.clone(),
        });
        Ok(access)
    }

    /// Stores `rotated`, the refresh token of an answer that could not be used, in place of
    /// `presented`, the spent one (with an earlier refresh's unsaved tokens, in their place).
    /// Only if `presented` is still the stored one: an account signed out or signed in anew
    /// meanwhile (neither waits for the refresh lock) is left as it is, and `rotated` revoked.
    /// If it cannot be saved, the stored token is marked spent so that no process presents it.
    /// Returns whether the account is still the refresh's (false: it changed, `rotated` is
    /// revoked and must not be presented).
    async fn keep_rotated(
        &self,
        account: &AccountKey,
        issuer: &str,
        client_id: &str,
        presented: &SecretString,
        rotated: SecretString,
    ) -> bool {
        let pending = {
            let mut pending = lock(&self.inner.pending);
            match pending.get_mut(account) {
                Some(p) => {
                    p.tokens.refresh_token = Some(rotated.clone());
                    true
                }
                None => false,
            }
        };
        let saved = if pending {
            self.save_pending(account).await.map(|()| true)
        } else {
            let (key, presented, kept) = (account.clone(), presented.clone(), rotated.clone());
            self.blocking(move |s| {
                let stored = s.secrets().get(&key, ItemKind::RefreshToken)?;
                if stored.is_none_or(|t| t.expose_secret() != presented.expose_secret()) {
                    return Ok(false);
                }
                s.secrets().set(&key, ItemKind::RefreshToken, &kept)?;
                Ok(true)
            })
            .await
        };
        match saved {
            Ok(true) => {
                self.mark_refresh_token_spent(account, false);
                tracing::info!(account = %account, "the rotated refresh token of an unusable refresh answer is saved");
                true
            }
            Ok(false) => {
                tracing::info!(account = %account, "the account changed during the refresh (signed out or in anew): its rotated refresh token is revoked, not saved");
                self.revoke_rotated(issuer, client_id, account, &rotated)
                    .await;
                false
            }
            Err(e) => {
                self.mark_refresh_token_spent(account, true);
                tracing::error!(account = %account, error = %e, "the rotated refresh token could not be saved; the stored one is marked spent");
                true
            }
        }
    }

    /// Notes beside the locks (not in the store, which may be what fails) whether the stored
    /// refresh token is spent: no process presents a spent one.
    fn mark_refresh_token_spent(&self, account: &AccountKey, spent: bool) {
        let at = spent.then(|| self.now());
        self.inner
            .notes
            .update(account, |n| n.refresh_token_spent_at = at);
    }

    /// Revokes (RFC 7009, best effort) `rotated`, the refresh token of an answer that showed the
    /// account must sign in again: nobody will present it, so its grant should not live on.
    async fn revoke_rotated(
        &self,
        issuer: &str,
        client_id: &str,
        account: &AccountKey,
        rotated: &SecretString,
    ) {
        let revoked = match self.provider(issuer, client_id).await {
            Ok(p) => p.revoke(rotated).await,
            Err(e) => Err(e),
        };
        if let Err(e) = revoked {
            tracing::warn!(account = %account, error = %e, "the rotated refresh token of a refused refresh answer could not be revoked; its grant lives until it expires");
        }
    }

    /// The body of [`SessionManager::send_authenticated`].
    pub(super) async fn send_with_one_refresh(
        &self,
        account: Option<&AccountKey>,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SessionError> {
        let meta = self.meta(account).await?;
        let token = self.access_token(Some(&meta.key)).await?;
        let res = build(token.expose_secret())
            .send()
            .await
            .map_err(SessionError::transient)?;
        if res.status() != reqwest::StatusCode::UNAUTHORIZED {
            return Ok(res);
        }
        let token = self.refresh(&meta.key, true).await?;
        build(token.expose_secret())
            .send()
            .await
            .map_err(SessionError::transient)
    }
}
