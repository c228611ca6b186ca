//! Asking the registry about an account's session and acting on the answer: the heartbeat's
//! check (never extends), a check on demand, the extension of a session in use (at most once an
//! hour, when less than half its lifetime is left), and the one place where an answer that the
//! session is gone signs the account out here.

use std::time::Duration;

use account_store::{AccountKey, AccountMeta, ItemKind};
use registry_api::AuthenticateResponse;
use secrecy::{ExposeSecret, SecretString};

use super::{SessionManager, EXTEND_AT_MOST_EVERY};
use crate::error::SessionError;
use crate::registry::RegistryClient;
use crate::state::{SessionState, UnavailableReason};

/// A session the registry accepted when asked: its fresh session JWT and when it ends.
pub(super) struct CheckedSession {
    /// Empty when the registry answered from the session JWT alone (it names no session then
    /// only when asked by JWT, which this client never does).
    session_id: String,
    session_jwt: SecretString,
    expires_at: i64,
    absolute_expires_at: Option<i64>,
}

impl From<AuthenticateResponse> for CheckedSession {
    fn from(answer: AuthenticateResponse) -> Self {
        match answer {
            AuthenticateResponse::Session(s) => CheckedSession {
                session_id: s.session.session_id,
                session_jwt: s.session_jwt.into_secret(),
                expires_at: s.session.expires_at,
                absolute_expires_at: Some(s.session.absolute_expires_at),
            },
            AuthenticateResponse::FromJwt {
                session,
                session_jwt,
            } => CheckedSession {
                session_id: session.session_id,
                session_jwt: session_jwt.into_secret(),
                expires_at: session.expires_at,
                absolute_expires_at: None,
            },
        }
    }
}

/// What the registry said of a session when asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCheck {
    pub expires_at: i64,
    pub absolute_expires_at: Option<i64>,
}

impl SessionManager {
    /// One heartbeat: asks the registry whether the session is still good (never extends).
    pub(super) async fn check_session(
        &self,
        meta: &AccountMeta,
        url: &str,
    ) -> Result<(), SessionError> {
        self.ask_registry(meta, None, self.registry(url))
            .await
            .map(|_| ())
    }

    /// Asks the registry about the session (extending it by `extend_minutes` if given) through
    /// `client`, and acts on the answer: a fresh session JWT is stored and the state updated; a
    /// session the registry no longer accepts signs the account out here at once. Every attempt,
    /// answered or not, is recorded as the last check. A session replaced by a sign-in while it
    /// was asked about is asked about once more: the question is about the account's session,
    /// which is the new one now.
    pub(super) async fn ask_registry(
        &self,
        meta: &AccountMeta,
        extend_minutes: Option<i64>,
        client: RegistryClient,
    ) -> Result<CheckedSession, SessionError> {
        match self
            .ask_registry_once(meta, extend_minutes, client.clone())
            .await
        {
            Err(SessionError::SessionReplaced { .. }) => {
                self.ask_registry_once(meta, extend_minutes, client).await
            }
            answer => answer,
        }
    }

    /// One question of [`SessionManager::ask_registry`], with the session token stored now.
    async fn ask_registry_once(
        &self,
        meta: &AccountMeta,
        extend_minutes: Option<i64>,
        client: RegistryClient,
    ) -> Result<CheckedSession, SessionError> {
        let Some(token) = self.item(&meta.key, ItemKind::SessionToken).await? else {
            self.set_state(
                &meta.key,
                SessionState::Unavailable {
                    reason: UnavailableReason::SignedOut,
                },
            );
            return Err(SessionError::ReauthenticationRequired {
                account: meta.key.to_string(),
                reason: "no session token".into(),
            });
        };
        let asked_at = self.now();
        let answer = client
            .authenticate(&token, extend_minutes, meta.key.as_str())
            .await
            .map(CheckedSession::from);
        match answer {
            Ok(checked) => {
                // Kept only while `token` is still the account's: a sign-in elsewhere in the
                // profile may have replaced it (see `replace`) since it was read, and the answer
                // about the session it replaced must not overwrite the new one's JWT and note.
                // Under the refresh lock, which that sign-in's swap holds.
                let ours = self
                    .under_refresh_lock(&meta.key, async {
                        let (k, jwt, used) =
                            (meta.key.clone(), checked.session_jwt.clone(), token.clone());
                        let ours = self
                            .blocking(move |s| {
                                let stored = s.secrets().get(&k, ItemKind::SessionToken)?;
                                if stored.is_none_or(|t| t.expose_secret() != used.expose_secret())
                                {
                                    return Ok(false);
                                }
                                s.secrets().set(&k, ItemKind::SessionJwt, &jwt)?;
                                Ok(true)
                            })
                            .await?;
                        if ours {
                            self.inner.notes.update(&meta.key, |n| {
                                n.last_checked_at = Some(asked_at);
                                if !checked.session_id.is_empty() {
                                    n.session_id = Some(checked.session_id.clone());
                                }
                                n.expires_at = Some(checked.expires_at);
                                n.absolute_expires_at =
                                    checked.absolute_expires_at.or(n.absolute_expires_at);
                                if extend_minutes.is_some() {
                                    n.last_extended_at = Some(asked_at);
                                }
                            });
                        }
                        Ok(ours)
                    })
                    .await?;
                if !ours {
                    tracing::info!(account = %meta.key, "the session asked about was replaced by a newer sign-in meanwhile; its answer is dropped");
                    return Err(SessionError::SessionReplaced {
                        account: meta.key.to_string(),
                    });
                }
                let session_id = match &*self.state(&meta.key).borrow() {
                    _ if !checked.session_id.is_empty() => checked.session_id.clone(),
                    SessionState::Available { session_id, .. } => session_id.clone(),
                    _ => String::new(),
                };
                self.set_state(
                    &meta.key,
                    SessionState::Available {
                        session_id,
                        expires_at: checked.expires_at,
                        last_validated_at: self.now(),
                    },
                );
                Ok(checked)
            }
            Err(e) => {
                self.inner
                    .notes
                    .update(&meta.key, |n| n.last_checked_at = Some(asked_at));
                Err(self.on_registry_error(&meta.key, &token, e).await)
            }
        }
    }

    /// Every registry answer to `used` (the session token sent) goes through here: one that says
    /// the session is gone (revoked, expired, unknown) wipes the account's tokens on this device
    /// at once — partial logout is never left behind — unless a newer sign-in replaced `used`
    /// meanwhile (see `replace`). A step-up demand or a network error changes nothing.
    pub(super) async fn on_registry_error(
        &self,
        account: &AccountKey,
        used: &SecretString,
        e: SessionError,
    ) -> SessionError {
        if let SessionError::ReauthenticationRequired { reason, .. } = &e {
            tracing::info!(account = %account, reason = %reason, "the registry no longer accepts this session");
            match self.sign_out_session_gone(account, used, false).await {
                Ok(true) => {}
                Ok(false) => {
                    return SessionError::SessionReplaced {
                        account: account.to_string(),
                    }
                }
                Err(wipe) => return wipe,
            }
        }
        e
    }

    /// The body of [`SessionManager::verify_session`].
    pub(super) async fn check_session_now(
        &self,
        account: &AccountKey,
    ) -> Result<SessionCheck, SessionError> {
        let meta = self.meta(Some(account)).await?;
        let url = meta.registry_url.clone().ok_or_else(|| {
            SessionError::Configuration("this account has no registry session".into())
        })?;
        let checked = self.ask_registry(&meta, None, self.registry(&url)).await?;
        Ok(SessionCheck {
            expires_at: checked.expires_at,
            absolute_expires_at: checked.absolute_expires_at,
        })
    }

    /// The body of [`SessionManager::check_session_if_stale`].
    pub(super) async fn heartbeat_if_stale(
        &self,
        account: &AccountKey,
        interval: Duration,
        timeout: Duration,
    ) -> Result<bool, SessionError> {
        let meta = self.meta(Some(account)).await?;
        let Some(url) = meta.registry_url.clone() else {
            return Ok(false);
        };
        let interval = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
        let last = self.inner.notes.read(account).last_checked_at;
        if last.is_some_and(|t| self.now() - t < interval) {
            return Ok(false);
        }
        let client = RegistryClient::with_timeout(&url, timeout);
        match self.ask_registry(&meta, None, client).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_transient() => {
                tracing::info!(account = %account, error = %e, "registry unreachable; the session is kept and checked again later");
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Extends `meta`'s registry session by the chosen lifetime when less than half of it is
    /// left, at most once an hour (or per half lifetime, if shorter). Only for a session in use
    /// (an access token was asked for): the background heartbeat never extends. A registry that
    /// cannot be reached costs nothing; a session it no longer accepts is signed out here.
    pub(super) async fn extend_if_due(&self, meta: &AccountMeta) -> Result<(), SessionError> {
        let Some(url) = meta.registry_url.clone() else {
            return Ok(());
        };
        let note = self.inner.notes.read(&meta.key);
        let (Some(expires_at), Some(minutes)) = (note.expires_at, note.duration_minutes) else {
            return Ok(());
        };
        let now = self.now();
        let lifetime = minutes.saturating_mul(60);
        let every = i64::try_from(EXTEND_AT_MOST_EVERY.as_secs())
            .unwrap_or(3600)
            .min(lifetime / 2);
        let due = expires_at - now < lifetime / 2
            && note.absolute_expires_at.is_none_or(|abs| expires_at < abs)
            && note.last_extended_at.is_none_or(|t| now - t >= every);
        if !due {
            return Ok(());
        }
        match self
            .ask_registry(meta, Some(minutes), self.registry(&url))
            .await
        {
            Ok(s) => {
                tracing::info!(account = %meta.key, expires_at = s.expires_at, "session extended");
                Ok(())
            }
            Err(e @ SessionError::ReauthenticationRequired { .. }) => Err(e),
            Err(e) => {
                tracing::info!(account = %meta.key, error = %e, "could not extend the session; trying again later");
                Ok(())
            }
        }
    }
}
