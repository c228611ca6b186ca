//! The registry's behaviour, independent of HTTP: opening sessions from ID tokens, authenticating
//! (heartbeat or extension), listing, revoking, back-channel logout, and pushing events.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use jose_keys::{KeySet, SigningAlg};
use lanyard_clock::SharedClock;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::events::Hub;
use crate::jwt::SessionClaims;
use crate::jwt_cache::JwtCache;
use crate::metrics::Metrics;
use crate::oidc::{unverified_issuer, OidcError, OidcVerifier};
use crate::store::{
    DeviceInfo, EventRecord, NewSession, SessionRecord, Store, StoreError, TenantRecord,
    UsedCredential,
};
use crate::token::SessionToken;

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
/// How long a tenant's settings are served from memory before they are read again (other
/// registry processes may have changed them).
const TENANT_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
/// Accepted `session_duration_minutes`: 5 minutes to a year.
pub const DURATION_RANGE: std::ops::RangeInclusive<i64> = 5..=525_600;
const DEFAULT_DURATION_MINUTES: i64 = 60;
/// Failed authenticates allowed per IP per minute.
const FAILURES_PER_MINUTE: u32 = 30;

pub struct Registry {
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub keys: RwLock<KeySet>,
    pub verifier: OidcVerifier,
    pub clock: SharedClock,
    /// `iss` of session JWTs: the registry's public URL.
    pub issuer: String,
    /// Whether events arrive through Postgres NOTIFY (else they are published here).
    pub events_via_database: bool,
    pub metrics: Metrics,
    failures: Mutex<HashMap<IpAddr, (i64, u32)>>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    jwts: JwtCache,
    tenants: RwLock<HashMap<String, (std::time::Instant, TenantRecord)>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceRequest {
    pub id: String,
    pub name: String,
    pub platform: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    pub id_token: String,
    pub device: DeviceRequest,
    #[serde(default)]
    pub session_duration_minutes: Option<i64>,
    /// Only needed when several tenants trust the same issuer.
    #[serde(default)]
    pub tenant: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthenticateRequest {
    #[serde(default)]
    pub session_token: Option<String>,
    #[serde(default)]
    pub session_jwt: Option<String>,
    #[serde(default)]
    pub session_duration_minutes: Option<i64>,
}

/// `POST /v1/sessions/reauthenticate`: a fresh ID token of the session's person.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReauthenticateRequest {
    pub id_token: String,
}

impl std::fmt::Debug for ReauthenticateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReauthenticateRequest")
            .field("id_token", &REDACTED)
            .finish()
    }
}

/// What a client sees of a session.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub session_id: String,
    pub tenant: String,
    pub account_id: String,
    pub subject: String,
    pub email: Option<String>,
    pub is_guest: bool,
    pub device: DeviceView,
    pub created_at: i64,
    pub last_authenticated_at: i64,
    pub expires_at: i64,
    pub absolute_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub auth_method: String,
    /// When the person last signed in at the IdP (Unix time): what step-up checks.
    pub auth_time: i64,
    pub current: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub platform: String,
    pub last_seen: i64,
}

impl SessionView {
    pub fn from_record(r: &SessionRecord, current_id: Option<&str>) -> Self {
        Self {
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
}

/// The answer to create and authenticate.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionResponse {
    pub session: SessionView,
    /// Present when the session was just created (the only time the token is shown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_token: Option<String>,
    pub session_jwt: String,
}

/// Shown instead of a credential in `Debug` output.
const REDACTED: &str = "<redacted>";

fn redacted<T>(v: &Option<T>) -> Option<&'static str> {
    v.as_ref().map(|_| REDACTED)
}

// The requests and answers carrying credentials print everything but the credentials.
impl std::fmt::Debug for CreateSessionRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateSessionRequest")
            .field("id_token", &REDACTED)
            .field("device", &self.device)
            .field("session_duration_minutes", &self.session_duration_minutes)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl std::fmt::Debug for AuthenticateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .field("session_token", &redacted(&self.session_token))
            .field("session_jwt", &redacted(&self.session_jwt))
            .field("session_duration_minutes", &self.session_duration_minutes)
            .finish()
    }
}

impl std::fmt::Debug for SessionResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionResponse")
            .field("session", &self.session)
            .field("session_token", &redacted(&self.session_token))
            .field("session_jwt", &REDACTED)
            .finish()
    }
}

/// Who is calling, after their bearer credential checked out.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub session: SessionRecord,
}

/// Where a request came from, for the session record and rate limiting.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    pub session_id: Option<String>,
    /// `current`, `others` or `all`.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Whether `s` has a JWT's shape (three base64url segments, the first a JSON object's start).
fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.split('.').count() == 3
}

/// Whether an authentication failed because the credential matched nothing: what the
/// failed-authenticate limit counts. A revoked, expired or idle session is a real session that
/// its device keeps presenting, not a guess.
fn is_failed_lookup<T>(result: &Result<T, ApiError>) -> bool {
    matches!(
        result,
        Err(ApiError::InvalidToken {
            reason: "malformed_token" | "session_not_found" | "invalid_session_jwt",
            ..
        })
    )
}

/// The answer to an ID token that failed the intake rules.
fn id_token_refused(e: OidcError) -> ApiError {
    match e {
        OidcError::IssuerUnreachable(detail) => ApiError::IssuerUnavailable(detail),
        e => ApiError::invalid_token_because("invalid_id_token", e.reason(), e.to_string()),
    }
}

/// An ID token's `auth_time` (when the person signed in at the IdP), else its `iat`, never
/// later than `now`.
fn auth_time_of(claims: &Value, now: i64) -> i64 {
    claims
        .get("auth_time")
        .and_then(Value::as_i64)
        .or_else(|| claims.get("iat").and_then(Value::as_i64))
        .unwrap_or(now)
        .min(now)
}

/// The single-use record of an ID token: its hash, kept until it expires.
fn spent_id_token(token: &str, claims: &Value, now: i64) -> UsedCredential {
    UsedCredential {
        kind: "id_token",
        hash: crate::token::hash_hex(token),
        expires_at: claims
            .get("exp")
            .and_then(Value::as_i64)
            .unwrap_or(now)
            .max(now)
            + crate::oidc::LEEWAY,
    }
}

fn bounded(field: &'static str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("{field} must be 1-{max} printable characters"),
        ));
    }
    Ok(())
}

impl Registry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        keys: KeySet,
        clock: SharedClock,
        issuer: String,
        events_via_database: bool,
        metrics: Metrics,
    ) -> Self {
        Self {
            store,
            hub,
            keys: RwLock::new(keys),
            verifier: OidcVerifier::new(clock.clone()),
            clock,
            issuer,
            events_via_database,
            metrics,
            failures: Mutex::new(HashMap::new()),
            trusted_proxies: Vec::new(),
            jwts: JwtCache::new(),
            tenants: RwLock::new(HashMap::new()),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// Publishes events to local subscribers when the database does not (SQLite).
    pub(crate) fn publish(&self, events: Vec<EventRecord>) {
        for e in events {
            self.metrics
                .events
                .with_label_values(&[e.kind.as_str()])
                .inc();
            if e.kind == "revoked" {
                self.hub.mark_revoked(&e.tenant, &e.session_id, e.at);
            }
            if !self.events_via_database {
                self.hub.publish(e);
            }
        }
    }

    fn check_rate(&self, ctx: &RequestCtx) -> Result<(), ApiError> {
        let Some(ip) = ctx.ip else { return Ok(()) };
        let now = self.now();
        let failures = self.failures.lock();
        match failures.get(&ip) {
            Some((start, n)) if now - start < 60 && *n >= FAILURES_PER_MINUTE => {
                Err(ApiError::TooManyRequests {
                    retry_after: u64::try_from(60 - (now - start)).unwrap_or(1),
                })
            }
            _ => Ok(()),
        }
    }

    fn note_failure(&self, ctx: &RequestCtx) {
        let Some(ip) = ctx.ip else { return };
        let now = self.now();
        let mut failures = self.failures.lock();
        let entry = failures.entry(ip).or_insert((now, 0));
        if now - entry.0 >= 60 {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if failures.len() > 100_000 {
            failures.retain(|_, (start, _)| now - *start < 60);
        }
    }

    /// A tenant's settings, from memory when read less than [`TENANT_CACHE_TTL`] ago (unknown
    /// tenants are not remembered: the next request asks the database again).
    async fn tenant(&self, slug: &str) -> Result<TenantRecord, ApiError> {
        if let Some((at, t)) = self.tenants.read().get(slug) {
            if at.elapsed() < TENANT_CACHE_TTL {
                return Ok(t.clone());
            }
        }
        let tenant = self.store.tenant(slug).await?.ok_or_else(|| {
            ApiError::invalid_token(
                "unknown_tenant",
                format!("no tenant '{}'", slug.escape_default()),
            )
        })?;
        self.tenants
            .write()
            .insert(slug.to_owned(), (std::time::Instant::now(), tenant.clone()));
        Ok(tenant)
    }

    pub(crate) fn mint_jwt(
        &self,
        s: &SessionRecord,
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
            exp: (now + JWT_TTL).min(s.expires_at),
            lat,
            sexp: s.expires_at,
        };
        self.jwts
            .mint(&self.keys.read(), &claims)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    fn verify_jwt(&self, jwt: &str) -> Result<SessionClaims, ApiError> {
        self.jwts
            .verify(&self.keys.read(), jwt, &self.issuer, self.clock.now())
            .map_err(|e| ApiError::invalid_token("invalid_session_jwt", e.to_string()))
    }

    /// `POST /v1/sessions`: an ID token of the tenant's IdP opens a device session.
    pub async fn create_session(
        &self,
        req: CreateSessionRequest,
        ctx: &RequestCtx,
    ) -> Result<SessionResponse, ApiError> {
        bounded("device.id", &req.device.id, 128)?;
        bounded("device.name", &req.device.name, 128)?;
        bounded("device.platform", &req.device.platform, 64)?;
        let duration = req
            .session_duration_minutes
            .unwrap_or(DEFAULT_DURATION_MINUTES);
        if !DURATION_RANGE.contains(&duration) {
            return Err(ApiError::bad_request(
                "invalid_duration",
                "session_duration_minutes must be between 5 and 525600",
            ));
        }
        let iss = unverified_issuer(&req.id_token).ok_or_else(|| {
            ApiError::invalid_token("invalid_id_token", "the ID token is not a JWT")
        })?;
        let candidates: Vec<TenantRecord> = self
            .store
            .tenants()
            .await?
            .into_iter()
            .filter(|t| t.issuer == iss && req.tenant.as_ref().is_none_or(|want| want == &t.slug))
            .collect();
        let tenant = match candidates.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(ApiError::invalid_token(
                    "untrusted_issuer",
                    "no tenant trusts this ID token's issuer",
                ))
            }
            _ => {
                return Err(ApiError::bad_request(
                    "ambiguous_tenant",
                    "several tenants trust this issuer; name one in `tenant`",
                ))
            }
        };
        let claims = self
            .verifier
            .verify_id_token(&req.id_token, &tenant)
            .await
            .map_err(id_token_refused)?;
        let str_claim = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
        let subject = str_claim("sub").unwrap_or_default();
        let now = self.now();
        let id_token = spent_id_token(&req.id_token, &claims, now);
        let absolute = now + tenant.absolute_timeout_secs;
        let token = SessionToken::generate(&tenant.slug);
        let (record, event) = self
            .store
            .create_session(NewSession {
                tenant: tenant.slug.clone(),
                issuer: tenant.issuer.clone(),
                subject,
                email: str_claim("email"),
                is_guest: claims
                    .get("is_guest")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                device: DeviceInfo {
                    id: req.device.id,
                    name: req.device.name,
                    platform: req.device.platform,
                },
                token_hash: token.hash(),
                idp_sid: str_claim("sid"),
                now,
                expires_at: (now + duration * 60).min(absolute),
                absolute_expires_at: absolute,
                auth_method: "oidc".into(),
                auth_time: auth_time_of(&claims, now),
                id_token,
                user_agent: ctx
                    .user_agent
                    .clone()
                    .map(|u| u.chars().take(256).collect()),
                ip: ctx.ip.map(|i| i.to_string()),
            })
            .await
            .map_err(|e| match e {
                StoreError::AlreadyUsed => {
                    tracing::warn!(tenant = %tenant.slug, "an ID token was presented a second time");
                    ApiError::invalid_token_because(
                        "invalid_id_token",
                        "already_used",
                        "this ID token was already traded for a session; sign in again",
                    )
                }
                e => e.into(),
            })?;
        tracing::info!(tenant = %record.tenant, account = %record.account_id, session = %record.id, "session created");
        self.publish(vec![event]);
        Ok(SessionResponse {
            session_jwt: self.mint_jwt(&record, now, now)?,
            session: SessionView::from_record(&record, Some(&record.id)),
            session_token: Some(token.expose().to_owned()),
        })
    }

    /// Checks a live session row against the tenant's rules, ending it if a timeout has passed.
    async fn check_live(
        &self,
        tenant: &TenantRecord,
        s: &SessionRecord,
        now: i64,
    ) -> Result<(), ApiError> {
        if s.revoked_at.is_some() {
            let why = s.revoked_reason.clone().unwrap_or_else(|| "revoked".into());
            return Err(ApiError::invalid_token(
                "session_revoked",
                format!("the session has ended ({why})"),
            ));
        }
        let ended = if now >= s.absolute_expires_at {
            Some((
                "absolute_timeout",
                "session_expired",
                "the session reached its absolute lifetime",
            ))
        } else if now >= s.expires_at {
            Some(("expired", "session_expired", "the session has expired"))
        } else if now - s.last_authenticated_at >= tenant.idle_timeout_secs {
            Some((
                "idle_timeout",
                "session_idle_timeout",
                "the session was idle too long",
            ))
        } else {
            None
        };
        if let Some((reason, code, description)) = ended {
            let events = self
                .store
                .end_sessions(&tenant.slug, std::slice::from_ref(&s.id), reason, now)
                .await?;
            self.publish(events);
            return Err(ApiError::invalid_token(code, description));
        }
        Ok(())
    }

    /// Resolves a bearer credential (session token or session JWT) to its live session.
    /// The session token behind a call that manages sessions (listing, revoking, events,
    /// upgrade, re-authentication). A session JWT is refused here: it is handed to other APIs
    /// to prove who the user is, and must not let them sign the user out.
    pub async fn resolve(&self, bearer: &str, ctx: &RequestCtx) -> Result<Caller, ApiError> {
        if !bearer.starts_with(crate::token::PREFIX) && looks_like_jwt(bearer) {
            return Err(ApiError::invalid_token(
                "session_token_required",
                "this call needs the session token; a session JWT only authenticates",
            ));
        }
        self.check_rate(ctx)?;
        let result = self.resolve_inner(bearer).await;
        if is_failed_lookup(&result) {
            self.note_failure(ctx);
        }
        result
    }

    /// The live session `id` of `tenant` as a caller: for the devices page, whose sign-in
    /// state (bound to the browser by its login cookie) names the session it acts for.
    pub async fn caller_by_session_id(&self, tenant: &str, id: &str) -> Result<Caller, ApiError> {
        let record = self.store.session(tenant, id).await?.ok_or_else(|| {
            ApiError::invalid_token("session_not_found", "the session no longer exists")
        })?;
        let settings = self.tenant(tenant).await?;
        self.check_live(&settings, &record, self.now()).await?;
        Ok(Caller {
            tenant: tenant.to_owned(),
            session: record,
        })
    }

    async fn resolve_inner(&self, bearer: &str) -> Result<Caller, ApiError> {
        let now = self.now();
        let (tenant_slug, record) = if bearer.starts_with("lyst_") {
            let token = SessionToken::parse(bearer)
                .map_err(|e| ApiError::invalid_token("malformed_token", e.to_string()))?;
            let record = self
                .store
                .session_by_token_hash(token.tenant(), &token.hash())
                .await?
                .ok_or_else(|| {
                    ApiError::invalid_token("session_not_found", "no session has this token")
                })?;
            (token.tenant().to_owned(), record)
        } else {
            let claims = self.verify_jwt(bearer)?;
            let record = self
                .store
                .session(&claims.tenant, &claims.sid)
                .await?
                .ok_or_else(|| {
                    ApiError::invalid_token("session_not_found", "the session no longer exists")
                })?;
            (claims.tenant, record)
        };
        let tenant = self.tenant(&tenant_slug).await?;
        self.check_live(&tenant, &record, now).await?;
        Ok(Caller {
            tenant: tenant_slug,
            session: record,
        })
    }

    /// `POST /v1/sessions/authenticate`: without a duration only checks (the heartbeat never
    /// extends); with one, extends to now + duration, capped by the absolute lifetime.
    pub async fn authenticate(
        &self,
        req: AuthenticateRequest,
        ctx: &RequestCtx,
    ) -> Result<SessionResponse, ApiError> {
        if let Some(d) = req.session_duration_minutes {
            if !DURATION_RANGE.contains(&d) {
                return Err(ApiError::bad_request(
                    "invalid_duration",
                    "session_duration_minutes must be between 5 and 525600",
                ));
            }
        }
        let (credential, via) = match (&req.session_token, &req.session_jwt) {
            (Some(t), None) => (t.as_str(), "token"),
            (None, Some(j)) => (j.as_str(), "jwt"),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "send exactly one of session_token and session_jwt",
                ))
            }
        };
        self.check_rate(ctx)?;
        let result = self
            .authenticate_inner(credential, via, req.session_duration_minutes)
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ApiError::InvalidToken { reason, .. }) => reason,
            Err(_) => "error",
        };
        self.metrics
            .authenticate
            .with_label_values(&[via, outcome])
            .inc();
        if is_failed_lookup(&result) {
            self.note_failure(ctx);
        }
        result
    }

    async fn authenticate_inner(
        &self,
        credential: &str,
        via: &str,
        duration: Option<i64>,
    ) -> Result<SessionResponse, ApiError> {
        let now = self.now();
        // The JWT fast path: signature, expiry and the pushed revocation set, no database.
        if via == "jwt" && duration.is_none() {
            let claims = self.verify_jwt(credential)?;
            if self.hub.is_revoked(&claims.tenant, &claims.sid) {
                return Err(ApiError::invalid_token(
                    "session_revoked",
                    "the session has been revoked",
                ));
            }
            if now - claims.lat < JWT_RECHECK {
                let fresh = SessionClaims {
                    iat: now,
                    exp: (now + JWT_TTL).min(claims.sexp),
                    ..claims.clone()
                };
                let session_jwt = self
                    .jwts
                    .mint(&self.keys.read(), &fresh)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                return Ok(SessionResponse {
                    session: SessionView {
                        session_id: claims.sid.clone(),
                        tenant: claims.tenant.clone(),
                        account_id: String::new(),
                        subject: claims.sub.clone(),
                        email: None,
                        is_guest: claims.is_guest,
                        device: DeviceView {
                            id: claims.device_id.clone(),
                            name: String::new(),
                            platform: String::new(),
                            last_seen: claims.lat,
                        },
                        created_at: 0,
                        last_authenticated_at: claims.lat,
                        expires_at: claims.sexp,
                        absolute_expires_at: claims.sexp,
                        revoked_at: None,
                        revoked_reason: None,
                        auth_method: "session_jwt".into(),
                        auth_time: 0,
                        current: true,
                    },
                    session_token: None,
                    session_jwt,
                });
            }
        }
        let caller = self.resolve_inner(credential).await?;
        let new_expiry = duration.map(|m| (now + m * 60).min(caller.session.absolute_expires_at));
        // A plain check writes only when the recorded activity is older than TOUCH_INTERVAL.
        if new_expiry.is_some() || now - caller.session.last_authenticated_at >= TOUCH_INTERVAL {
            let event = self
                .store
                .touch(&caller.tenant, &caller.session.id, now, new_expiry)
                .await?;
            self.publish(event.into_iter().collect());
        }
        let mut record = caller.session;
        record.last_authenticated_at = now;
        if let Some(e) = new_expiry {
            record.expires_at = e;
        }
        Ok(SessionResponse {
            session_jwt: self.mint_jwt(&record, now, now)?,
            session: SessionView::from_record(&record, Some(&record.id)),
            session_token: None,
        })
    }

    /// `GET /v1/sessions`: every live session of the caller's account, across devices.
    pub async fn list(&self, caller: &Caller) -> Result<Vec<SessionView>, ApiError> {
        let now = self.now();
        let records = self
            .store
            .account_sessions(&caller.tenant, &caller.session.account_id)
            .await?;
        Ok(records
            .iter()
            .filter(|r| r.revoked_at.is_none() && r.expires_at > now && r.absolute_expires_at > now)
            .map(|r| SessionView::from_record(r, Some(&caller.session.id)))
            .collect())
    }

    /// `POST /v1/sessions/revoke`: one session of the caller's account, or a scope.
    pub async fn revoke(
        &self,
        caller: &Caller,
        req: RevokeRequest,
    ) -> Result<Vec<String>, ApiError> {
        let now = self.now();
        let sessions = self
            .store
            .account_sessions(&caller.tenant, &caller.session.account_id)
            .await?;
        let live = sessions.iter().filter(|s| s.revoked_at.is_none());
        let ids: Vec<String> = match (req.session_id.as_deref(), req.scope.as_deref()) {
            (Some(id), None) => {
                if !sessions.iter().any(|s| s.id == id) {
                    return Err(ApiError::NotFound(
                        "no session with this id in your account".into(),
                    ));
                }
                vec![id.to_owned()]
            }
            (None, Some("current")) => vec![caller.session.id.clone()],
            (None, Some("others")) => live
                .filter(|s| s.id != caller.session.id)
                .map(|s| s.id.clone())
                .collect(),
            (None, Some("all")) => live.map(|s| s.id.clone()).collect(),
            (None, Some(other)) => {
                return Err(ApiError::bad_request(
                    "invalid_scope",
                    format!(
                        "scope must be current, others or all, not '{}'",
                        other.escape_default()
                    ),
                ))
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "send exactly one of session_id and scope",
                ))
            }
        };
        // Step-up (RFC 9470): ending any session but one's own needs a recent sign-in, so a
        // stolen credential cannot sign its owner out everywhere.
        let only_own = req.scope.as_deref() == Some("current")
            || req.session_id.as_deref() == Some(caller.session.id.as_str());
        if !only_own {
            let tenant = self.tenant(&caller.tenant).await?;
            if now - caller.session.auth_time > tenant.max_auth_age_secs {
                tracing::info!(tenant = %caller.tenant, account = %caller.session.account_id, session = %caller.session.id, "revoke of other sessions needs a fresh sign-in");
                return Err(ApiError::InsufficientUserAuthentication {
                    max_age: tenant.max_auth_age_secs,
                });
            }
        }
        let events = self
            .store
            .end_sessions(&caller.tenant, &ids, "revoked_by_user", now)
            .await?;
        let revoked: Vec<String> = events.iter().map(|e| e.session_id.clone()).collect();
        tracing::info!(tenant = %caller.tenant, account = %caller.session.account_id, count = revoked.len(), "sessions revoked by user");
        self.publish(events);
        Ok(revoked)
    }

    /// `POST /v1/sessions/reauthenticate`: a fresh ID token of the caller's person (same tenant,
    /// same subject, the intake rules of [`Registry::create_session`], single use) records a new
    /// `auth_time` on the caller's session. The sign-in must itself be recent enough to meet the
    /// step-up rule.
    pub async fn reauthenticate(
        &self,
        caller: &Caller,
        req: ReauthenticateRequest,
    ) -> Result<SessionResponse, ApiError> {
        let tenant = self.tenant(&caller.tenant).await?;
        let claims = self
            .verifier
            .verify_id_token(&req.id_token, &tenant)
            .await
            .map_err(id_token_refused)?;
        let now = self.now();
        if claims.get("sub").and_then(Value::as_str) != Some(caller.session.subject.as_str()) {
            tracing::warn!(tenant = %caller.tenant, account = %caller.session.account_id, "re-authentication with another person's ID token");
            return Err(ApiError::invalid_token_because(
                "invalid_id_token",
                "subject_mismatch",
                "this ID token is another person's; sign in as the session's own user",
            ));
        }
        let auth_time = auth_time_of(&claims, now);
        if now - auth_time > tenant.max_auth_age_secs {
            return Err(ApiError::invalid_token_because(
                "invalid_id_token",
                "sign_in_too_old",
                format!(
                    "this ID token's sign-in is older than {} s; sign in again with max_age=0",
                    tenant.max_auth_age_secs
                ),
            ));
        }
        let spent = spent_id_token(&req.id_token, &claims, now);
        let record = self
            .store
            .reauthenticate(&caller.tenant, &caller.session.id, auth_time, &spent)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyUsed => ApiError::invalid_token_because(
                    "invalid_id_token",
                    "already_used",
                    "this ID token was already used; sign in again",
                ),
                e => e.into(),
            })?
            .ok_or_else(|| ApiError::invalid_token("session_revoked", "the session has ended"))?;
        tracing::info!(tenant = %record.tenant, account = %record.account_id, session = %record.id, "session re-authenticated");
        Ok(SessionResponse {
            session_jwt: self.mint_jwt(&record, now, now)?,
            session: SessionView::from_record(&record, Some(&record.id)),
            session_token: None,
        })
    }

    /// `POST /v1/backchannel-logout`: a logout token from a tenant's IdP ends matching sessions.
    pub async fn backchannel_logout(&self, logout_token: &str) -> Result<usize, ApiError> {
        let bad = |d: String| ApiError::bad_request("invalid_request", d);
        let iss = unverified_issuer(logout_token)
            .ok_or_else(|| bad("logout_token is not a JWT with an iss".into()))?;
        let tenants: Vec<TenantRecord> = self
            .store
            .tenants()
            .await?
            .into_iter()
            .filter(|t| t.issuer == iss)
            .collect();
        if tenants.is_empty() {
            return Err(bad("no tenant trusts this issuer".into()));
        }
        let now = self.now();
        let mut verified = Vec::new();
        for t in tenants {
            match self.verifier.verify_logout_token(logout_token, &t).await {
                Ok(claims) => verified.push((t, claims)),
                Err(e) => tracing::info!(tenant = %t.slug, error = %e, "logout token refused"),
            }
        }
        if verified.is_empty() {
            return Err(bad("the logout token failed validation".into()));
        }
        let mut ended = 0;
        let mut replayed = 0;
        let tenants = verified.len();
        for (tenant, claims) in verified {
            let sub = claims.get("sub").and_then(Value::as_str);
            let sid = claims.get("sid").and_then(Value::as_str);
            let jti = UsedCredential {
                kind: "logout_jti",
                hash: crate::token::hash_hex(
                    claims
                        .get("jti")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                ),
                expires_at: claims
                    .get("exp")
                    .and_then(Value::as_i64)
                    .unwrap_or(now)
                    .max(now)
                    + crate::oidc::LEEWAY,
            };
            // The jti is recorded in the transaction that ends the sessions: a database error
            // leaves it unspent, so the IdP's redelivery is processed.
            match self
                .store
                .idp_logout(&tenant.slug, &tenant.issuer, sub, sid, &jti, now)
                .await
            {
                Ok(events) => {
                    ended += events.len();
                    tracing::info!(tenant = %tenant.slug, count = events.len(), "sessions ended by back-channel logout");
                    self.publish(events);
                }
                Err(StoreError::AlreadyUsed) => {
                    tracing::warn!(tenant = %tenant.slug, "a logout token was replayed");
                    replayed += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if replayed == tenants {
            return Err(bad("this logout token was already used".into()));
        }
        Ok(ended)
    }

    /// Admin: ends sessions by id within a tenant.
    pub async fn admin_revoke(
        &self,
        tenant: &str,
        ids: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let events = self
            .store
            .end_sessions(tenant, ids, "revoked_by_admin", self.now())
            .await?;
        let revoked = events.iter().map(|e| e.session_id.clone()).collect();
        self.publish(events);
        Ok(revoked)
    }

    /// Rotates the session-JWT signing key: new JWTs are signed with a fresh key at once, and the
    /// old key stays in the JWKS (and is accepted) for [`KEY_ROTATION_GRACE`], so the JWTs it
    /// signed live out their lifetime. Returns the new key's `kid`.
    pub fn rotate_signing_key(&self) -> Result<String, ApiError> {
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

    /// Garbage collection: expired sessions now, revoked ones after the audit window.
    pub async fn collect_garbage(&self, audit_window_secs: i64) -> Result<u64, ApiError> {
        let now = self.now();
        self.hub.forget_revocations_before(now - JWT_TTL - 60);
        Ok(self.store.gc(now, now - audit_window_secs).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_credential() {
        let device = DeviceRequest {
            id: "laptop".into(),
            name: "the laptop".into(),
            platform: "linux".into(),
        };
        let create = CreateSessionRequest {
            id_token: "eyJ-id-token-secret".into(),
            device,
            session_duration_minutes: Some(60),
            tenant: None,
        };
        let auth = AuthenticateRequest {
            session_token: Some("lyst_acme_secret".into()),
            session_jwt: Some("eyJ-session-jwt-secret".into()),
            session_duration_minutes: None,
        };
        for printed in [format!("{create:?}"), format!("{auth:?}")] {
            assert!(!printed.contains("secret"), "{printed}");
            assert!(printed.contains(REDACTED), "{printed}");
        }
        assert!(format!("{create:?}").contains("laptop"));
    }
}
