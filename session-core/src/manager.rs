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
use registry_api::{AuthenticateResponse, EventKind, RevokeRequest, RevokeScope, SessionView};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{broadcast, watch, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

use crate::error::SessionError;
use crate::oidc::{AuthPrompt, DevicePrompt, Provider, SignInBinding};
use crate::registry::{DeviceIdentity, RegistryClient};
use crate::session_note::{SessionNote, SessionNotes};
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
    /// Clock-skew allowance of ID-token time checks (default 60 s; capped at
    /// [`crate::oidc::MAX_LEEWAY`], 300 s).
    pub id_token_leeway: Duration,
    /// The registry session lifetime asked for at sign-in (default 30 days; the tenant's absolute
    /// limit caps it). A session in use is extended by it when less than half is left.
    pub session_duration: Duration,
    /// This app's OAuth client id at the provider, for accounts that did not record theirs
    /// (signed in by an older version).
    pub client_id: String,
}

/// The client id of an account that recorded none, unless [`ManagerOptions::client_id`] says.
pub const DEFAULT_CLIENT_ID: &str = "lanyard-cli";
/// The default registry session lifetime: 30 days.
pub const DEFAULT_SESSION_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// A session in use is extended at most this often (and at most once per half its lifetime when
/// that is shorter, so a short session can still be kept alive).
pub const EXTEND_AT_MOST_EVERY: Duration = Duration::from_secs(3600);

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
            id_token_leeway: crate::oidc::DEFAULT_LEEWAY,
            session_duration: DEFAULT_SESSION_DURATION,
            client_id: DEFAULT_CLIENT_ID.to_owned(),
        }
    }
}

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
    fn request(&self) -> RevokeRequest {
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

/// A session the registry accepted when asked: its fresh session JWT and when it ends.
struct CheckedSession {
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

/// Tokens a refresh obtained that could not be saved yet: kept here (the refresh token they
/// replace is spent) until a save succeeds.
struct PendingSave {
    meta: AccountMeta,
    tokens: TokenSet,
}

/// Why a revoke with step-up failed: the step-up (the fresh sign-in or the registry's
/// re-authentication of the session) or the revoke itself.
enum RevokeFailure {
    Revoke(SessionError),
    StepUp(SessionError),
}

impl RevokeFailure {
    fn into_error(self) -> SessionError {
        match self {
            RevokeFailure::Revoke(e) | RevokeFailure::StepUp(e) => e,
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
    notes: SessionNotes,
    pending: std::sync::Mutex<HashMap<AccountKey, PendingSave>>,
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
        let notes = SessionNotes::new(options.lock_dir.clone());
        Self {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                notes,
                pending: std::sync::Mutex::new(HashMap::new()),
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
                .await?
                .with_clock(self.inner.options.clock.clone())
                .with_leeway(self.inner.options.id_token_leeway),
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
        let tokens = match method {
            LoginMethod::Browser(prompt, timeout) => {
                provider.login_with_browser(prompt, timeout).await?
            }
            LoginMethod::DeviceCode(prompt, timeout) => {
                provider.login_with_device_code(prompt, timeout).await?
            }
        };
        self.open_account(req, tokens).await
    }

    /// The lifetime asked of the registry, in whole minutes.
    fn duration_minutes(&self) -> i64 {
        i64::try_from(self.inner.options.session_duration.as_secs() / 60).unwrap_or(i64::MAX)
    }

    /// What this profile last learnt of `account`'s registry session (see [`SessionNote`]).
    pub fn session_note(&self, account: &AccountKey) -> SessionNote {
        self.inner.notes.read(account)
    }

    /// After a sign-in: opens the registry session, stores everything under the account's key
    /// and makes it active.
    async fn open_account(
        &self,
        req: LoginRequest,
        tokens: TokenSet,
    ) -> Result<AccountMeta, SessionError> {
        let now = self.now();
        let id = AccountId::new(&req.issuer, &tokens.subject)
            .map_err(|e| SessionError::IdTokenInvalid(e.to_string()))?;
        let key = id.key();
        let session = match &req.registry_url {
            Some(url) => Some(
                self.registry(url)
                    .create_session(
                        &tokens.id_token,
                        &self.inner.options.device,
                        Some(self.duration_minutes()),
                        key.as_str(),
                    )
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
            items.push((
                ItemKind::SessionToken,
                s.session_token.clone().into_secret(),
            ));
            items.push((ItemKind::SessionJwt, s.session_jwt.clone().into_secret()));
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
        lock(&self.inner.pending).remove(&key);
        let minutes = self.duration_minutes();
        self.inner.notes.update(&key, |n| {
            *n = SessionNote {
                session_id: session.as_ref().map(|s| s.session.session_id.clone()),
                last_checked_at: Some(now),
                expires_at: session.as_ref().map(|s| s.session.expires_at),
                absolute_expires_at: session.as_ref().map(|s| s.session.absolute_expires_at),
                duration_minutes: session.as_ref().map(|_| minutes),
                last_extended_at: None,
                refresh_token_spent_at: None,
            }
        });
        match session {
            Some(s) => {
                self.set_state(
                    &key,
                    SessionState::Available {
                        session_id: s.session.session_id,
                        expires_at: s.session.expires_at,
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
    /// expires within the margin. Concurrent callers share one refresh. A registry session in use
    /// is extended when less than half of its lifetime is left (see [`ManagerOptions`]).
    pub async fn access_token(
        &self,
        account: Option<&AccountKey>,
    ) -> Result<SecretString, SessionError> {
        let meta = self.meta(account).await?;
        let token = match self.fresh_access_token(&meta).await? {
            Some(token) => token,
            None => self.refresh(&meta.key, false).await?,
        };
        self.extend_if_due(&meta).await?;
        Ok(token)
    }

    fn is_fresh(&self, expires_at: Option<i64>) -> bool {
        let margin = i64::try_from(self.inner.options.refresh_margin.as_secs()).unwrap_or(300);
        expires_at.is_some_and(|exp| exp - margin > self.now())
    }

    async fn fresh_access_token(
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
    async fn save_pending(&self, account: &AccountKey) -> Result<(), SessionError> {
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
        let refresh_token = match refresh_token {
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
            .and_then(|t| SignInBinding::from_id_token(t.expose_secret()))
            .unwrap_or_else(|| {
                SignInBinding::of_account(&issuer, meta.id.subject.as_str(), &client_id)
            });
        let mut delay = self.inner.options.backoff;
        let mut tries = 0;
        let tokens = loop {
            tries += 1;
            let attempt = match self.provider(&issuer, &client_id).await {
                Ok(p) => p.refresh(account.as_str(), &refresh_token, &binding).await,
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
                    let now = self.now();
                    self.inner
                        .notes
                        .update(account, |n| n.refresh_token_spent_at = Some(now));
                    tracing::error!(account = %account, error = %e, "the refreshed tokens could not be saved; keeping them in memory and marking the stored refresh token spent");
                }
            }
        }
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
        self.ask_registry(meta, None, self.registry(url))
            .await
            .map(|_| ())
    }

    /// Asks the registry about the session (extending it by `extend_minutes` if given) through
    /// `client`, and acts on the answer: a fresh session JWT is stored and the state updated; a
    /// session the registry no longer accepts signs the account out here at once. Every attempt,
    /// answered or not, is recorded as the last check.
    async fn ask_registry(
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
        self.inner.notes.update(&meta.key, |n| {
            n.last_checked_at = Some(asked_at);
            if let Ok(s) = &answer {
                if !s.session_id.is_empty() {
                    n.session_id = Some(s.session_id.clone());
                }
                n.expires_at = Some(s.expires_at);
                n.absolute_expires_at = s.absolute_expires_at.or(n.absolute_expires_at);
                if extend_minutes.is_some() {
                    n.last_extended_at = Some(asked_at);
                }
            }
        });
        match answer {
            Ok(checked) => {
                let k = meta.key.clone();
                let jwt = checked.session_jwt.clone();
                self.blocking(move |s| s.secrets().set(&k, ItemKind::SessionJwt, &jwt))
                    .await?;
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
            Err(e) => Err(self.on_registry_error(&meta.key, e).await),
        }
    }

    /// Every registry answer goes through here: one that says the session is gone (revoked,
    /// expired, unknown) wipes the account's tokens on this device at once — partial logout is
    /// never left behind. A step-up demand or a network error changes nothing.
    async fn on_registry_error(&self, account: &AccountKey, e: SessionError) -> SessionError {
        if let SessionError::ReauthenticationRequired { reason, .. } = &e {
            tracing::info!(account = %account, reason = %reason, "the registry no longer accepts this session; signing out here");
            if let Err(wipe) = self
                .sign_out_locally(account, UnavailableReason::RevokedRemotely, false)
                .await
            {
                return wipe;
            }
        }
        e
    }

    /// Asks the registry now whether `account`'s session is still good, never extending it
    /// (what `lanyard status` shows). A revoked session is wiped here at once.
    pub async fn verify_session(&self, account: &AccountKey) -> Result<SessionCheck, SessionError> {
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

    /// A heartbeat for a process that runs no watcher (`lanyard token`): when the last check of
    /// `account`'s session is older than `interval`, asks the registry once, waiting at most
    /// `timeout`. A revoked session is wiped (and the error returned); an unreachable registry is
    /// only logged, and not asked again within `interval`. Never extends the session. Returns
    /// whether the registry was asked.
    pub async fn check_session_if_stale(
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
    async fn extend_if_due(&self, meta: &AccountMeta) -> Result<(), SessionError> {
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

    /// Every session of `account` across devices (the registry's list). A registry answer that
    /// the session is gone signs the account out here.
    pub async fn list_sessions(
        &self,
        account: &AccountKey,
    ) -> Result<Vec<SessionView>, SessionError> {
        let (meta, client, token) = self.registry_session(account).await?;
        match client.list(&token, meta.key.as_str()).await {
            Ok(list) => Ok(list),
            Err(e) => Err(self.on_registry_error(account, e).await),
        }
    }

    /// Ends sessions of `account`. If the registry asks for a recent sign-in first (RFC 9470),
    /// and `step_up` says how, the person signs in again (`max_age=0`; it must be the same
    /// account), the new ID token re-authenticates this session, and the revoke is retried once.
    /// Returns the ended session ids. Ending this device's own session signs it out here.
    pub async fn revoke_sessions(
        &self,
        account: &AccountKey,
        target: RevokeTarget,
        step_up: Option<LoginMethod<'_>>,
    ) -> Result<Vec<String>, SessionError> {
        self.revoke_with_step_up(account, target, step_up)
            .await
            .map_err(RevokeFailure::into_error)
    }

    /// [`SessionManager::revoke_sessions`], telling a failed step-up apart from a failed revoke:
    /// only the registry's answer to the revoke itself may say "this session is gone already".
    async fn revoke_with_step_up(
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
                    self.on_registry_error(account, e).await,
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
            Err(e) => return Err(self.on_registry_error(&meta.key, e).await),
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
            Err(e) => Err(self.on_registry_error(&meta.key, e).await),
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
    /// A logout everywhere that the registry wants a recent sign-in for is reported in
    /// `not_revoked`; [`SessionManager::logout_with_step_up`] meets that demand.
    pub async fn logout(&self, scope: LogoutScope) -> Result<LogoutReport, SessionError> {
        self.logout_with_step_up(scope, None).await
    }

    /// [`SessionManager::logout`]; for [`LogoutScope::Everywhere`], a registry demand for a
    /// recent sign-in (RFC 9470) is met through `step_up` first (see
    /// [`SessionManager::revoke_sessions`]). A failed or refused step-up leaves the account
    /// as it was (nothing is wiped): the person asked for everywhere, not for here only.
    pub async fn logout_with_step_up(
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
