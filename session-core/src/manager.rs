//! The multi-account `SessionManager`: sign in (browser or device code), keep tokens valid
//! (proactive and reactive refresh, single flight across tasks and processes), watch the
//! registry session (heartbeat that never extends, pushed revocation), and sign out cleanly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use account_store::{AccountId, AccountKey, AccountMeta, AccountStore, ItemKind};
use lanyard_clock::SharedClock;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{broadcast, watch, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

use crate::error::SessionError;
use crate::oidc::{AuthPrompt, DevicePrompt, Provider};
use crate::registry::{DeviceIdentity, RegistryClient};
use crate::state::{ManagerEvent, SessionState, UnavailableReason};
use crate::tokens::TokenSet;

mod guest;
pub use guest::{UpgradeError, UpgradeRequest, Upgraded};

/// Tunables; the defaults are the documented ones.
#[derive(Clone)]
pub struct ManagerOptions {
    /// Refresh this long before the access token expires.
    pub refresh_margin: Duration,
    /// Heartbeat period (jittered by ±10 %).
    pub heartbeat: Duration,
    /// Tries of a transient failure before giving up (the session is kept).
    pub max_tries: u32,
    /// First backoff; doubles each try, with jitter.
    pub backoff: Duration,
    pub device: DeviceIdentity,
    pub clock: SharedClock,
    /// Where per-account refresh locks live (shared by every process of the profile).
    pub lock_dir: PathBuf,
    /// How long one HTTP request to the provider or the registry may take (not the registry's
    /// event stream, which stays open).
    pub http_timeout: Duration,
}

impl ManagerOptions {
    pub fn new(device: DeviceIdentity, clock: SharedClock, lock_dir: impl Into<PathBuf>) -> Self {
        Self {
            refresh_margin: Duration::from_secs(300),
            heartbeat: Duration::from_secs(180),
            max_tries: 3,
            backoff: Duration::from_millis(200),
            device,
            clock,
            lock_dir: lock_dir.into(),
            http_timeout: crate::oidc::DEFAULT_HTTP_TIMEOUT,
        }
    }
}

/// Where to sign in.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    pub issuer: String,
    pub client_id: String,
    pub registry_url: Option<String>,
    pub tenant: Option<String>,
}

pub enum LoginMethod<'a> {
    Browser(&'a dyn AuthPrompt, Duration),
    DeviceCode(&'a dyn DevicePrompt, Duration),
}

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

struct Inner {
    store: Arc<AccountStore>,
    options: ManagerOptions,
    providers: AsyncMutex<HashMap<(String, String), Arc<Provider>>>,
    states: std::sync::Mutex<HashMap<AccountKey, watch::Sender<SessionState>>>,
    events: broadcast::Sender<ManagerEvent>,
    refresh_locks: std::sync::Mutex<HashMap<AccountKey, Arc<AsyncMutex<()>>>>,
    tasks: std::sync::Mutex<HashMap<AccountKey, Vec<JoinHandle<()>>>>,
}

#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SessionManager {
    pub fn new(store: AccountStore, options: ManagerOptions) -> Self {
        let (events, _) = broadcast::channel(256);
        Self {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                options,
                providers: AsyncMutex::new(HashMap::new()),
                states: std::sync::Mutex::new(HashMap::new()),
                events,
                refresh_locks: std::sync::Mutex::new(HashMap::new()),
                tasks: std::sync::Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A registry client with the configured timeout.
    fn registry(&self, url: &str) -> RegistryClient {
        RegistryClient::with_timeout(url, self.inner.options.http_timeout)
    }

    fn now(&self) -> i64 {
        self.inner.options.clock.now().unix_timestamp()
    }

    pub fn store(&self) -> &AccountStore {
        &self.inner.store
    }

    /// Runs blocking store work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AccountStore) -> Result<T, account_store::StoreError> + Send + 'static,
    ) -> Result<T, SessionError> {
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| SessionError::transient(format!("store task failed: {e}")))?
            .map_err(SessionError::from)
    }

    async fn provider(&self, issuer: &str, client_id: &str) -> Result<Arc<Provider>, SessionError> {
        let mut providers = self.inner.providers.lock().await;
        let key = (issuer.to_owned(), client_id.to_owned());
        if let Some(p) = providers.get(&key) {
            return Ok(p.clone());
        }
        let p = Arc::new(
            Provider::discover_with_timeout(issuer, client_id, self.inner.options.http_timeout)
                .await?,
        );
        providers.insert(key, p.clone());
        Ok(p)
    }

    /// The observable state of `account`.
    pub fn state(&self, account: &AccountKey) -> watch::Receiver<SessionState> {
        self.sender(account).subscribe()
    }

    fn sender(&self, account: &AccountKey) -> watch::Sender<SessionState> {
        lock(&self.inner.states)
            .entry(account.clone())
            .or_insert_with(|| {
                watch::channel(SessionState::Unavailable {
                    reason: UnavailableReason::NotStarted,
                })
                .0
            })
            .clone()
    }

    fn set_state(&self, account: &AccountKey, state: SessionState) {
        self.sender(account).send_replace(state);
    }

    pub fn events(&self) -> broadcast::Receiver<ManagerEvent> {
        self.inner.events.subscribe()
    }

    fn emit(&self, e: ManagerEvent) {
        let _ = self.inner.events.send(e);
    }

    /// Signs in, opens the registry session, stores everything under the account's key and
    /// makes it active. A second sign-in to the same (issuer, subject) updates that account.
    pub async fn login(
        &self,
        req: LoginRequest,
        method: LoginMethod<'_>,
    ) -> Result<AccountMeta, SessionError> {
        let provider = self.provider(&req.issuer, &req.client_id).await?;
        let now = self.now();
        let tokens = match method {
            LoginMethod::Browser(prompt, timeout) => {
                provider.login_with_browser(prompt, timeout, now).await?
            }
            LoginMethod::DeviceCode(prompt, timeout) => {
                provider
                    .login_with_device_code(prompt, timeout, now)
                    .await?
            }
        };
        self.open_account(req, tokens, now).await
    }

    /// After a sign-in: opens the registry session, stores everything under the account's key
    /// and makes it active.
    async fn open_account(
        &self,
        req: LoginRequest,
        tokens: TokenSet,
        now: i64,
    ) -> Result<AccountMeta, SessionError> {
        let id = AccountId::new(&req.issuer, &tokens.subject)
            .map_err(|e| SessionError::IdTokenInvalid(e.to_string()))?;
        let key = id.key();
        let session = match &req.registry_url {
            Some(url) => Some(
                self.registry(url)
                    .create_session(&tokens.id_token, &self.inner.options.device, key.as_str())
                    .await?,
            ),
            None => None,
        };
        let display = tokens
            .email
            .clone()
            .or(tokens.name.clone())
            .unwrap_or_else(|| tokens.subject.clone());
        let mut meta = AccountMeta::new(id, display, self.inner.options.clock.now());
        meta.email = tokens.email.clone();
        meta.tenant = req.tenant.clone();
        meta.registry_url = req.registry_url.clone();
        meta.client_id = Some(req.client_id.clone());
        meta.access_token_expires_at = tokens.access_token_expires_at;
        meta.is_guest = tokens.is_guest;
        meta.no_refresh_token = tokens.refresh_token.is_none();
        if meta.no_refresh_token {
            tracing::warn!(account = %key, issuer = %req.issuer, "the provider issued no refresh token: this account must sign in again when its access token expires");
        }
        let mut items = token_items(&tokens);
        if let Some(s) = &session {
            items.push((ItemKind::SessionToken, s.session_token.clone()));
            items.push((ItemKind::SessionJwt, s.session_jwt.clone()));
        }
        let saved = meta.clone();
        let k = key.clone();
        let at = self.inner.options.clock.now();
        self.blocking(move |store| {
            store.save_account(saved, &items)?;
            store.set_active(&k, at)
        })
        .await?;
        tracing::info!(account = %key, "signed in");
        match session {
            Some(s) => {
                self.set_state(
                    &key,
                    SessionState::Available {
                        session_id: s.session_id,
                        expires_at: s.expires_at,
                        last_validated_at: now,
                    },
                );
                self.spawn_watchers(&meta);
            }
            None => self.set_state(
                &key,
                SessionState::Unavailable {
                    reason: UnavailableReason::NoRegistry,
                },
            ),
        }
        self.emit(ManagerEvent::AccountAdded { account: key });
        Ok(meta)
    }

    pub async fn accounts(&self) -> Result<Vec<AccountMeta>, SessionError> {
        self.blocking(|s| s.accounts()).await
    }

    pub async fn active(&self) -> Result<Option<AccountMeta>, SessionError> {
        self.blocking(|s| s.active()).await
    }

    pub async fn switch(&self, account: &AccountKey) -> Result<(), SessionError> {
        let k = account.clone();
        let now = self.inner.options.clock.now();
        self.blocking(move |s| s.set_active(&k, now)).await?;
        self.emit(ManagerEvent::Switched {
            account: account.clone(),
        });
        Ok(())
    }

    async fn meta(&self, account: Option<&AccountKey>) -> Result<AccountMeta, SessionError> {
        match account {
            Some(k) => {
                let k2 = k.clone();
                self.blocking(move |s| s.index().get(&k2))
                    .await?
                    .ok_or_else(|| SessionError::UnknownAccount(k.to_string()))
            }
            None => self.active().await?.ok_or(SessionError::NoActiveAccount),
        }
    }

    async fn item(
        &self,
        key: &AccountKey,
        item: ItemKind,
    ) -> Result<Option<SecretString>, SessionError> {
        let k = key.clone();
        self.blocking(move |s| s.secrets().get(&k, item)).await
    }

    /// A valid access token for `account` (the active one by default), refreshed first if it
    /// expires within the margin. Concurrent callers share one refresh.
    pub async fn access_token(
        &self,
        account: Option<&AccountKey>,
    ) -> Result<SecretString, SessionError> {
        let meta = self.meta(account).await?;
        if let Some(token) = self.fresh_access_token(&meta).await? {
            return Ok(token);
        }
        self.refresh(&meta.key, false).await
    }

    async fn fresh_access_token(
        &self,
        meta: &AccountMeta,
    ) -> Result<Option<SecretString>, SessionError> {
        let margin = i64::try_from(self.inner.options.refresh_margin.as_secs()).unwrap_or(300);
        let fresh = meta
            .access_token_expires_at
            .is_some_and(|exp| exp - margin > self.now());
        if !fresh {
            return Ok(None);
        }
        self.item(&meta.key, ItemKind::AccessToken).await
    }

    /// Refreshes `account` once across this process (a per-account mutex) and every process of
    /// the profile (a per-account file lock); a caller that waited re-reads what the winner
    /// stored. With `force`, refreshes even if the stored token looks fresh (after a 401).
    pub async fn refresh(
        &self,
        account: &AccountKey,
        force: bool,
    ) -> Result<SecretString, SessionError> {
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
        let result = self.refresh_locked(account, force).await;
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
        let refresh_token = self
            .item(account, ItemKind::RefreshToken)
            .await?
            .ok_or_else(|| SessionError::ReauthenticationRequired {
                account: account.to_string(),
                reason: "no refresh token is stored".into(),
            })?;
        let issuer = meta.id.issuer.as_str().to_owned();
        let client_id = meta
            .client_id
            .clone()
            .unwrap_or_else(|| "lanyard-cli".into());
        let mut delay = self.inner.options.backoff;
        let mut tries = 0;
        let tokens = loop {
            tries += 1;
            let attempt = match self.provider(&issuer, &client_id).await {
                Ok(p) => {
                    p.refresh(
                        account.as_str(),
                        &refresh_token,
                        meta.id.subject.as_str(),
                        self.now(),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match attempt {
                Ok(t) => break t,
                Err(e) if e.is_transient() && tries < self.inner.options.max_tries => {
                    let jitter = rand::thread_rng().gen_range(0..=delay.as_millis() as u64 / 2);
                    tracing::warn!(account = %account, tries, error = %e, "refresh failed; retrying");
                    tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
                    delay *= 2;
                }
                Err(e @ SessionError::ReauthenticationRequired { .. }) => {
                    self.sign_out_locally(account, UnavailableReason::SignedOut, false)
                        .await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        };
        let mut updated = meta.clone();
        updated.access_token_expires_at = tokens.access_token_expires_at;
        let items = token_items(&tokens);
        let access = tokens.access_token.clone();
        self.blocking(move |s| s.save_account(updated, &items))
            .await?;
        self.emit(ManagerEvent::Refreshed {
            account: account.clone(),
        });
        Ok(access)
    }

    /// Sends a request with the account's bearer token; on a 401 refreshes once and retries
    /// once — never more.
    pub async fn send_authenticated(
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

    /// On start: authenticates every stored registry session (rehydrate, or clear it if the
    /// registry says it is gone) and starts the watchers.
    pub async fn start(&self) -> Result<(), SessionError> {
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

    /// One heartbeat: asks the registry whether the session is still good (never extends).
    async fn check_session(&self, meta: &AccountMeta, url: &str) -> Result<(), SessionError> {
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
        match self
            .registry(url)
            .authenticate(&token, None, meta.key.as_str())
            .await
        {
            Ok((jwt, expires_at)) => {
                let k = meta.key.clone();
                self.blocking(move |s| s.secrets().set(&k, ItemKind::SessionJwt, &jwt))
                    .await?;
                let session_id = match &*self.state(&meta.key).borrow() {
                    SessionState::Available { session_id, .. } => session_id.clone(),
                    _ => String::new(),
                };
                self.set_state(
                    &meta.key,
                    SessionState::Available {
                        session_id,
                        expires_at,
                        last_validated_at: self.now(),
                    },
                );
                Ok(())
            }
            Err(e @ SessionError::ReauthenticationRequired { .. }) => {
                self.sign_out_locally(&meta.key, UnavailableReason::RevokedRemotely, false)
                    .await?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn spawn_watchers(&self, meta: &AccountMeta) {
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
                    if e.kind == "revoked"
                        && e.data["session_id"].as_str() == Some(my_session.as_str())
                    {
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
                tracing::info!(account = %meta.key, "session revoked elsewhere; signing out here");
                let _ = self
                    .sign_out_locally(&meta.key, UnavailableReason::RevokedRemotely, true)
                    .await;
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Wipes the account's tokens here (keeping its index entry so it can sign in again), sets
    /// its state and stops its watchers.
    async fn sign_out_locally(
        &self,
        account: &AccountKey,
        reason: UnavailableReason,
        from_watcher: bool,
    ) -> Result<(), SessionError> {
        let k = account.clone();
        self.blocking(move |s| s.secrets().delete_account(&k))
            .await?;
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
        Ok(())
    }

    fn stop_watchers(&self, account: &AccountKey, from_watcher: bool) {
        let tasks = lock(&self.inner.tasks).remove(account).unwrap_or_default();
        for t in tasks {
            // A watcher that is signing out returns right after; aborting it would cut that short.
            if !from_watcher {
                t.abort();
            }
        }
    }

    /// Background tasks still running for `account` (0 after a logout).
    pub fn running_tasks(&self, account: &AccountKey) -> usize {
        lock(&self.inner.tasks)
            .get(account)
            .map(|v| v.iter().filter(|t| !t.is_finished()).count())
            .unwrap_or(0)
    }

    /// Signs out: revokes at the registry and the IdP (best effort), then always wipes locally.
    pub async fn logout(&self, scope: LogoutScope) -> Result<LogoutReport, SessionError> {
        let (accounts, registry_scope) = match &scope {
            LogoutScope::Account(k) => (vec![self.meta(Some(k)).await?], "current"),
            LogoutScope::Everywhere(k) => (vec![self.meta(Some(k)).await?], "all"),
            LogoutScope::Device => (self.accounts().await?, "current"),
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
                    .revoke(&token, Some(registry_scope), None, meta.key.as_str())
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
                    .unwrap_or_else(|| "lanyard-cli".into());
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

    /// Hydrates an account from tokens obtained elsewhere (another app, an SSO broker).
    pub async fn update_session(
        &self,
        meta: AccountMeta,
        session_token: SecretString,
        session_jwt: SecretString,
    ) -> Result<(), SessionError> {
        let items = vec![
            (ItemKind::SessionToken, session_token),
            (ItemKind::SessionJwt, session_jwt),
        ];
        let m = meta.clone();
        self.blocking(move |s| s.save_account(m, &items)).await?;
        if let Some(url) = meta.registry_url.clone() {
            self.check_session(&meta, &url).await?;
            self.spawn_watchers(&meta);
        }
        Ok(())
    }
}

fn token_items(t: &TokenSet) -> Vec<(ItemKind, SecretString)> {
    let mut items = vec![
        (ItemKind::AccessToken, t.access_token.clone()),
        (ItemKind::IdToken, t.id_token.clone()),
    ];
    if let Some(rt) = &t.refresh_token {
        items.push((ItemKind::RefreshToken, rt.clone()));
    }
    items
}
