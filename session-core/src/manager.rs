//! The multi-account `SessionManager`: its construction, sign-in and the account index (list,
//! active account, switch), and the public entry points. The work behind them lives beside it:
//! `refresh` (valid access tokens, single-flight refresh), `session_check` (asking the registry
//! about a session, extension), `watchers` (heartbeat and pushed revocation), `revoke` (listing
//! and ending sessions, step-up), `logout`, and `guest`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use account_store::{AccountId, AccountKey, AccountMeta, AccountStore, ItemKind};
use lanyard_clock::SharedClock;
use registry_api::SessionView;
use secrecy::SecretString;
use tokio::sync::{broadcast, watch, Mutex as AsyncMutex};
use tokio::task::JoinHandle;

use crate::error::SessionError;
use crate::oidc::{AuthPrompt, DevicePrompt, Provider};
use crate::registry::{DeviceIdentity, RegistryClient};
use crate::session_note::{SessionNote, SessionNotes};
use crate::state::{ManagerEvent, SessionState, UnavailableReason};
use crate::tokens::TokenSet;

mod guest;
mod logout;
mod refresh;
mod replace;
mod revoke;
mod session_check;
mod watchers;
pub use guest::{UpgradeError, UpgradeRequest, Upgraded};
pub use logout::{LogoutReport, LogoutScope};
use refresh::PendingSave;
use revoke::RevokeFailure;
pub use revoke::RevokeTarget;
pub use session_check::SessionCheck;

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
        // The swap holds the refresh lock: a refresh elsewhere in the profile neither saves over
        // the new tokens nor presents the replaced ones after this (see `replace`).
        let replaced = self
            .under_refresh_lock(&key, async {
                let replaced = self.to_be_replaced(&key).await;
                self.blocking(move |store| {
                    store.save_account(saved, &items)?;
                    store.set_active(&k, at)
                })
                .await?;
                lock(&self.inner.pending).remove(&key);
                Ok(replaced)
            })
            .await?;
        tracing::info!(account = %key, "signed in");
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
        let new_session_token = session
            .as_ref()
            .map(|s| s.session_token.clone().into_secret());
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
        self.end_replaced(&key, replaced, new_session_token.as_ref())
            .await;
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

    /// Refreshes `account` once across this process (a per-account mutex) and every process of
    /// the profile (a per-account file lock); a caller that waited re-reads what the winner
    /// stored. With `force`, refreshes even if the stored token looks fresh (after a 401).
    pub async fn refresh(
        &self,
        account: &AccountKey,
        force: bool,
    ) -> Result<SecretString, SessionError> {
        self.refresh_single_flight(account, force).await
    }

    /// Sends a request with the account's bearer token; on a 401 refreshes once and retries
    /// once — never more.
    pub async fn send_authenticated(
        &self,
        account: Option<&AccountKey>,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SessionError> {
        self.send_with_one_refresh(account, build).await
    }

    /// On start: authenticates every stored registry session (rehydrate, or clear it if the
    /// registry says it is gone) and starts the watchers.
    pub async fn start(&self) -> Result<(), SessionError> {
        self.rehydrate().await
    }

    /// Asks the registry now whether `account`'s session is still good, never extending it
    /// (what `lanyard status` shows). A revoked session is wiped here at once.
    pub async fn verify_session(&self, account: &AccountKey) -> Result<SessionCheck, SessionError> {
        self.check_session_now(account).await
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
        self.heartbeat_if_stale(account, interval, timeout).await
    }

    /// Every session of `account` across devices (the registry's list). A registry answer that
    /// the session is gone signs the account out here.
    pub async fn list_sessions(
        &self,
        account: &AccountKey,
    ) -> Result<Vec<SessionView>, SessionError> {
        self.list_registry_sessions(account).await
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

    /// For a process that follows `account`'s registry session itself (`lanyard watch`): the
    /// registry said the session of `used`, its session token, is gone. Signs the account out
    /// here, unless a newer sign-in of this profile replaced that token meanwhile (and ended its
    /// session itself): then the account is kept, under its new session. Returns whether it
    /// signed out.
    pub async fn session_gone(
        &self,
        account: &AccountKey,
        used: &SecretString,
    ) -> Result<bool, SessionError> {
        self.sign_out_session_gone(account, used, false).await
    }

    /// Background tasks still running for `account` (0 after a logout).
    pub fn running_tasks(&self, account: &AccountKey) -> usize {
        self.live_watchers(account)
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
        self.log_out(scope, step_up).await
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
