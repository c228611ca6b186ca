//! The registry's behaviour, independent of HTTP, one job a module: opening, checking and
//! managing sessions (`sessions`), the ID-token intake rules (`intake`), back-channel and admin
//! logout (`logout`), the failed-lookup limit (`limits`) and the tenant settings cache
//! (`tenant_cache`), the sessions heartbeats are answered from (`session_cache`). Here: the
//! [`Registry`] they share, session JWTs, events, key rotation and garbage collection.

mod activity;
mod intake;
mod limits;
mod logout;
mod replica;
mod session_cache;
mod sessions;
mod tenant_cache;

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::Notify;

use jose_keys::{KeySet, SigningAlg};
use lanyard_clock::SharedClock;
use parking_lot::RwLock;

use crate::error::ApiError;
use crate::events::Hub;
use crate::jwt::SessionClaims;
use crate::jwt_cache::JwtCache;
use crate::metrics::Metrics;
use crate::oidc::OidcVerifier;
use crate::refusal::Refusal;
use crate::shared_keys::SharedKeys;
use crate::store::{EventRecord, SessionRecord, Store};

pub use registry_api::{
    AuthenticateRequest, AuthenticateResponse, CreateSessionRequest, DeviceRequest, DeviceView,
    JwtSessionView, ReauthenticateRequest, RevokeRequest, RevokeScope, SessionResponse,
    SessionView, DURATION_RANGE,
};

pub use activity::ActivityStats;
pub(crate) use limits::ClientWindows;
use limits::FailureLimiter;
pub use replica::{ReadReplica, ReplicaStats};
use session_cache::SessionCache;
pub use session_cache::{Outcome as SessionCacheOutcome, SessionCacheStats, SESSION_RECHECK};
use tenant_cache::TenantCache;

/// How this process's events reach the others (and theirs reach it).
#[derive(Debug, Clone)]
pub enum EventFeed {
    /// One process (SQLite): events are published here.
    Local,
    /// Postgres NOTIFY: the feed brings this process's own events back too.
    Database,
    /// The outbox and NATS JetStream: the relay is woken after every change.
    Outbox(Arc<Notify>),
}

/// Session JWT lifetime.
pub const JWT_TTL: i64 = 300;
/// How long a rotated-out signing key stays published and accepted: the lifetime of the last JWT
/// it signed, plus a minute for clocks that disagree.
pub const KEY_ROTATION_GRACE: i64 = JWT_TTL + 60;
/// A JWT-only heartbeat re-checks the database once the JWT's `lat` is this old.
pub const JWT_RECHECK: i64 = 60;
/// A heartbeat records activity (`last_authenticated_at`, the device's `last_seen`) only when the
/// stored time is at least this old: checking stays a read, and the idle timeout is measured to
/// within this much.
pub const TOUCH_INTERVAL: i64 = 60;

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub keys: RwLock<KeySet>,
    pub verifier: OidcVerifier,
    pub clock: SharedClock,
    /// `iss` of session JWTs: the registry's public URL.
    pub issuer: String,
    /// How events reach the other processes.
    pub feed: EventFeed,
    pub metrics: Metrics,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The signing keys in the database, shared by every process (Postgres with a
    /// key-encryption key); without them, this process's own.
    pub shared_keys: Option<SharedKeys>,
    /// A read replica for token lookups and session lists (`--read-database-url`).
    pub replica: Option<Arc<ReadReplica>>,
    failures: FailureLimiter,
    jwts: JwtCache,
    tenants: TenantCache,
    sessions: SessionCache,
    activity: activity::ActivityWriter,
}

/// Who is calling, after their bearer credential checked out.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    /// Shared with the session cache when it answered: a heartbeat copies no session.
    pub session: Arc<SessionRecord>,
}

/// Where a request came from, for the session record and rate limiting.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// What a client sees of a stored session; `current` marks the caller's own.
pub fn session_view(r: &SessionRecord, current_id: Option<&str>) -> SessionView {
    SessionView {
        session_id: r.id.clone(),
        tenant: r.tenant.clone(),
        account_id: r.account_id.clone(),
        subject: r.subject.clone(),
        email: r.email.clone(),
        is_guest: r.is_guest,
        device: DeviceView {
            id: r.device_id.clone(),
            name: r.device_name.clone(),
            platform: r.device_platform.clone(),
            last_seen: r.device_last_seen,
        },
        created_at: r.created_at,
        last_authenticated_at: r.last_authenticated_at,
        expires_at: r.expires_at,
        absolute_expires_at: r.absolute_expires_at,
        revoked_at: r.revoked_at,
        revoked_reason: r.revoked_reason.clone(),
        auth_method: r.auth_method.clone(),
        auth_time: r.auth_time,
        current: current_id == Some(r.id.as_str()),
    }
}

impl Registry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        keys: KeySet,
        clock: SharedClock,
        issuer: String,
        feed: EventFeed,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            hub,
            keys: RwLock::new(keys),
            verifier: OidcVerifier::new(clock.clone()),
            clock,
            issuer,
            feed,
            metrics,
            trusted_proxies: Vec::new(),
            shared_keys: None,
            replica: None,
            failures: FailureLimiter::default(),
            jwts: JwtCache::new(),
            tenants: TenantCache::default(),
            sessions: SessionCache::default(),
            activity: activity::ActivityWriter::default(),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// Heartbeats' activity is written by a thread of its own, through `store` (a store of its
    /// own, connecting on first use: see `activity`).
    pub fn write_activity_through(&mut self, store: Arc<dyn Store>) {
        self.activity = activity::ActivityWriter::on_own_thread(store);
    }

    /// Events this process just committed: noted at once (a revocation is refused here from
    /// now on, and cached sessions of the account are read again), then sent on by the feed.
    pub(crate) fn publish(&self, events: Vec<EventRecord>) {
        let any = !events.is_empty();
        for e in events {
            self.metrics
                .events
                .with_label_values(&[e.kind.as_str()])
                .inc();
            // One process: this is the feed (publishing notes the event too).
            if matches!(self.feed, EventFeed::Local) {
                self.hub.publish(e);
            } else {
                self.hub.note(&e);
            }
        }
        if let (EventFeed::Outbox(relay), true) = (&self.feed, any) {
            relay.notify_one();
        }
    }

    pub(crate) fn mint_jwt(
        &self,
        s: &SessionRecord,
        now: i64,
        lat: i64,
    ) -> Result<String, ApiError> {
        self.mint_jwt_until(s, s.expires_at, now, lat)
    }

    /// [`Registry::mint_jwt`] for `s` ending at `expires_at` (just extended, say) rather than
    /// at its recorded expiry.
    pub(crate) fn mint_jwt_until(
        &self,
        s: &SessionRecord,
        expires_at: i64,
        now: i64,
        lat: i64,
    ) -> Result<String, ApiError> {
        let claims = SessionClaims {
            iss: self.issuer.clone(),
            sub: s.subject.clone(),
            tenant: s.tenant.clone(),
            sid: s.id.clone(),
            device_id: s.device_id.clone(),
            is_guest: s.is_guest,
            iat: now,
            exp: (now + JWT_TTL).min(expires_at),
            lat,
            sexp: expires_at,
        };
        self.jwts
            .mint(&self.keys.read(), &claims)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    fn verify_jwt(&self, jwt: &str) -> Result<SessionClaims, ApiError> {
        self.jwts
            .verify(&self.keys.read(), jwt, &self.issuer, self.clock.now())
            .map_err(|e| Refusal::InvalidSessionJwt(e.to_string()).into())
    }

    /// Rotates the session-JWT signing key: new JWTs are signed with a fresh key at once, and the
    /// old key stays in the JWKS (and is accepted) for [`KEY_ROTATION_GRACE`], so the JWTs it
    /// signed live out their lifetime. With shared keys the rotation is written to the database
    /// and reaches every process (see `shared_keys`). Returns the new key's `kid`.
    pub async fn rotate_signing_key(&self) -> Result<String, ApiError> {
        if let Some(shared) = &self.shared_keys {
            let kid = shared
                .rotate(self.now(), KEY_ROTATION_GRACE)
                .await
                .map_err(|e| ApiError::Internal(format!("key rotation: {e}")))?;
            self.reload_shared_keys().await?;
            tracing::info!(%kid, grace_secs = KEY_ROTATION_GRACE, "shared session-JWT signing key rotated");
            return Ok(kid);
        }
        let kid = self
            .keys
            .write()
            .rotate(
                SigningAlg::ES256,
                self.clock.now(),
                time::Duration::seconds(KEY_ROTATION_GRACE),
            )
            .map_err(|e| ApiError::Internal(format!("key rotation: {e}")))?;
        self.jwts.clear();
        tracing::info!(%kid, grace_secs = KEY_ROTATION_GRACE, "session-JWT signing key rotated");
        Ok(kid)
    }

    /// Reads the shared signing keys again; takes them when they differ from the ones held.
    pub async fn reload_shared_keys(&self) -> Result<(), ApiError> {
        let Some(shared) = &self.shared_keys else {
            return Ok(());
        };
        let keys_error = |e: crate::shared_keys::SharedKeyError| {
            ApiError::Internal(format!("signing keys: {e}"))
        };
        let stored = shared.stored(self.now()).await.map_err(keys_error)?;
        // Unsealed and parsed only when the table differs from the keys held.
        if crate::shared_keys::summary(&stored) == self.keys.read().summary() {
            return Ok(());
        }
        let keys = shared.open(stored).map_err(keys_error)?;
        if keys.active(SigningAlg::ES256).is_none() {
            return Err(ApiError::Internal(
                "the shared signing keys have no active key".into(),
            ));
        }
        *self.keys.write() = keys;
        self.jwts.clear();
        tracing::info!("shared session-JWT signing keys reloaded");
        Ok(())
    }

    /// Garbage collection: expired sessions now, revoked ones after the audit window.
    pub async fn collect_garbage(&self, audit_window_secs: i64) -> Result<u64, ApiError> {
        let now = self.now();
        self.hub.forget_revocations_before(now - JWT_TTL - 60);
        // A cached session read before a forgotten change is past its re-check by then.
        self.hub.forget_changes_before(now - 2 * SESSION_RECHECK);
        self.sessions.forget_stale(now);
        self.jwts.forget_stale(now);
        Ok(self.store.gc(now, now - audit_window_secs).await?)
    }
}
