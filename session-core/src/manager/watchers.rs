//! The background tasks that follow a signed-in account's registry session: a jittered heartbeat
//! (a check that never extends; an unreachable registry keeps the session) and the registry's
//! event stream (a revoke of this device's session signs the account out here), plus starting
//! them for every stored account and stopping them on sign-out.

use std::time::Duration;

use account_store::{AccountKey, AccountMeta, ItemKind};
use rand::Rng;
use registry_api::EventKind;

use super::{lock, SessionManager};
use crate::error::SessionError;
use crate::state::{SessionState, UnavailableReason};

impl SessionManager {
    /// The body of [`SessionManager::start`].
    pub(super) async fn rehydrate(&self) -> Result<(), SessionError> {
        for meta in self.accounts().await? {
            let Some(url) = meta.registry_url.clone() else {
                self.set_state(
                    &meta.key,
                    SessionState::Unavailable {
                        reason: UnavailableReason::NoRegistry,
                    },
                );
                continue;
            };
            match self.check_session(&meta, &url).await {
                Ok(()) => self.spawn_watchers(&meta),
                Err(e) if e.is_transient() => {
                    self.set_state(
                        &meta.key,
                        SessionState::Unavailable {
                            reason: UnavailableReason::Offline { since: self.now() },
                        },
                    );
                    self.spawn_watchers(&meta);
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    /// Starts the heartbeat and the event stream of `meta`'s registry session (replacing any
    /// running for the account); nothing for an account without a registry.
    pub(super) fn spawn_watchers(&self, meta: &AccountMeta) {
        let Some(url) = meta.registry_url.clone() else {
            return;
        };
        let heartbeat = {
            let this = self.clone();
            let meta = meta.clone();
            let url = url.clone();
            tokio::spawn(async move {
                loop {
                    let base = this.inner.options.heartbeat.as_millis() as u64;
                    let jitter = rand::thread_rng().gen_range(0..=base / 5);
                    tokio::time::sleep(Duration::from_millis(base - base / 10 + jitter)).await;
                    match this.check_session(&meta, &url).await {
                        Ok(()) => {}
                        // Replaced twice while it asked (the check asks again once).
                        Err(SessionError::SessionReplaced { .. }) => {
                            tracing::info!(account = %meta.key, "heartbeat: the session was replaced by a newer sign-in; the next check asks about the new one")
                        }
                        Err(e) if e.is_transient() => {
                            tracing::info!(account = %meta.key, error = %e, "heartbeat: registry unreachable; keeping the session")
                        }
                        // check_session has signed the account out: nothing left to watch.
                        Err(SessionError::ReauthenticationRequired { .. }) => return,
                        // A registry answer missing a field, a store hiccup…: one failed check,
                        // not a reason to stop watching (nor to drop the session).
                        Err(e) => {
                            tracing::warn!(account = %meta.key, error = %e, "heartbeat: the check failed; keeping the session and checking again")
                        }
                    }
                }
            })
        };
        let events = {
            let this = self.clone();
            let meta = meta.clone();
            tokio::spawn(async move { this.follow_events(meta, url).await })
        };
        let mut tasks = lock(&self.inner.tasks);
        for old in tasks.remove(&meta.key).unwrap_or_default() {
            old.abort();
        }
        tasks.insert(meta.key.clone(), vec![heartbeat, events]);
    }

    /// Follows the registry's event stream; a revoke of this device's session signs the account
    /// out here. Reconnects with Last-Event-ID after errors.
    async fn follow_events(&self, meta: AccountMeta, url: String) {
        let client = self.registry(&url);
        let mut last: Option<String> = None;
        let mut delay = Duration::from_millis(250);
        loop {
            let Ok(Some(token)) = self.item(&meta.key, ItemKind::SessionToken).await else {
                return;
            };
            let my_session = match &*self.state(&meta.key).borrow() {
                SessionState::Available { session_id, .. } => session_id.clone(),
                _ => String::new(),
            };
            let mut revoked = false;
            let result = client
                .follow_events(&token, last.as_deref(), meta.key.as_str(), |e| {
                    if e.kind == EventKind::Revoked && e.session_id == my_session {
                        revoked = true;
                        return false;
                    }
                    true
                })
                .await;
            match result {
                Ok(id) => {
                    last = id.or(last);
                    delay = Duration::from_millis(250);
                }
                Err(SessionError::ReauthenticationRequired { .. }) => revoked = true,
                Err(e) => {
                    tracing::info!(account = %meta.key, error = %e, "event stream lost; reconnecting")
                }
            }
            if revoked {
                tracing::info!(account = %meta.key, "session revoked elsewhere");
                match self.sign_out_session_gone(&meta.key, &token, true).await {
                    // Replaced by a newer sign-in of this profile: follow the new session (its
                    // id learnt from the registry first, so its own revoke is recognised).
                    Ok(false) => {
                        if let Err(e) = self.check_session(&meta, &url).await {
                            tracing::info!(account = %meta.key, error = %e, "the new session could not be checked yet");
                        }
                    }
                    Ok(true) => return,
                    Err(e) => {
                        tracing::warn!(account = %meta.key, error = %e, "the account could not be signed out here");
                        return;
                    }
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    pub(super) fn stop_watchers(&self, account: &AccountKey, from_watcher: bool) {
        let tasks = lock(&self.inner.tasks).remove(account).unwrap_or_default();
        for t in tasks {
            // A watcher that is signing out returns right after; aborting it would cut that short.
            if !from_watcher {
                t.abort();
            }
        }
    }

    /// The body of [`SessionManager::running_tasks`].
    pub(super) fn live_watchers(&self, account: &AccountKey) -> usize {
        lock(&self.inner.tasks)
            .get(account)
            .map(|v| v.iter().filter(|t| !t.is_finished()).count())
            .unwrap_or(0)
    }
}
