//! Sessions: opening one from an ID token, resolving a credential to its live session, the
//! heartbeat and extension, listing, revoking (with step-up for other sessions) and
//! re-authentication.

use std::sync::Arc;

use serde_json::Value;

use super::intake::{auth_time_of, id_token_refused, looks_like_jwt, spent_id_token};
use super::{
    session_view, AuthenticateRequest, AuthenticateResponse, Caller, CreateSessionRequest,
    JwtSessionView, ReauthenticateRequest, Registry, RequestCtx, RevokeRequest, RevokeScope,
    SessionResponse, SessionView, DURATION_RANGE, JWT_RECHECK, JWT_TTL, TOUCH_INTERVAL,
};
use crate::error::ApiError;
use crate::jwt::SessionClaims;
use crate::oidc::unverified_issuer;
use crate::refusal::Refusal;
use crate::store::{DeviceInfo, NewSession, SessionRecord, StoreError, TenantRecord};
use crate::token::SessionToken;
use registry_api::Credential;

/// How long a session lasts when the sign-in names no duration.
const DEFAULT_DURATION_MINUTES: i64 = 60;

/// Which credential an authenticate presented.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Token,
    Jwt,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Via::Token => "token",
            Via::Jwt => "jwt",
        }
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

fn check_duration(minutes: i64) -> Result<(), ApiError> {
    if !DURATION_RANGE.contains(&minutes) {
        return Err(ApiError::bad_request(
            "invalid_duration",
            "session_duration_minutes must be between 5 and 525600",
        ));
    }
    Ok(())
}

/// Whether an authentication failed because the credential matched nothing: what the
/// failed-lookup limit counts.
fn is_failed_lookup<T>(result: &Result<T, ApiError>) -> bool {
    matches!(
        result,
        Err(ApiError::Refused(
            Refusal::MalformedToken(_) | Refusal::SessionNotFound | Refusal::InvalidSessionJwt(_)
        ))
    )
}

/// An ID token spent before, or of an IdP session signed out since: refused, whichever call
/// presented it.
fn already_used(e: StoreError, tenant: &str) -> ApiError {
    match e {
        StoreError::IdpSessionEnded => {
            tracing::warn!(
                tenant,
                "an ID token of a signed-out IdP session was presented"
            );
            Refusal::id_token(
                "signed_out",
                "this ID token's sign-in at the IdP has been signed out since (back-channel \
                 logout); sign in again",
            )
            .into()
        }
        StoreError::AlreadyUsed => {
            tracing::warn!(tenant, "an ID token was presented a second time");
            Refusal::id_token(
                "already_used",
                "this ID token was already used; sign in again",
            )
            .into()
        }
        e => e.into(),
    }
}

/// The timeout a session has reached at `now`, if any: the reason it is ended with and the refusal.
fn timed_out(
    tenant: &TenantRecord,
    s: &SessionRecord,
    now: i64,
) -> Option<(&'static str, Refusal)> {
    if now >= s.absolute_expires_at {
        Some(("absolute_timeout", Refusal::AbsoluteLifetimeReached))
    } else if now >= s.expires_at {
        Some(("expired", Refusal::SessionExpired))
    } else if now - s.last_authenticated_at >= tenant.idle_timeout_secs {
        Some(("idle_timeout", Refusal::SessionIdle))
    } else {
        None
    }
}

impl Registry {
    /// `POST /v1/sessions`: an ID token of the tenant's IdP opens a device session, once.
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
        check_duration(duration)?;
        let id_token = req.id_token.expose();
        let iss = unverified_issuer(id_token)
            .ok_or_else(|| Refusal::id_token("malformed", "the ID token is not a JWT"))?;
        let candidates: Vec<TenantRecord> = self
            .store
            .tenants()
            .await?
            .into_iter()
            .filter(|t| t.issuer == iss && req.tenant.as_ref().is_none_or(|want| want == &t.slug))
            .collect();
        let tenant = match candidates.as_slice() {
            [one] => one.clone(),
            [] => return Err(Refusal::UntrustedIssuer.into()),
            _ => {
                return Err(ApiError::bad_request(
                    "ambiguous_tenant",
                    "several tenants trust this issuer; name one in `tenant`",
                ))
            }
        };
        let claims = self
            .verifier
            .verify_id_token(id_token, &tenant)
            .await
            .map_err(id_token_refused)?;
        let str_claim = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
        let now = self.now();
        // Bounded at 10 years where a tenant is made; saturating all the same.
        let absolute = now.saturating_add(tenant.absolute_timeout_secs);
        let token = SessionToken::generate(&tenant.slug);
        let (record, event) = self
            .store
            .create_session(NewSession {
                tenant: tenant.slug.clone(),
                issuer: tenant.issuer.clone(),
                subject: str_claim("sub").unwrap_or_default(),
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
                // Without auth_time the sign-in never counts as recent (step-up).
                auth_time: auth_time_of(&claims, now).unwrap_or(0),
                id_token: spent_id_token(id_token, &claims, now),
                user_agent: ctx
                    .user_agent
                    .clone()
                    .map(|u| u.chars().take(256).collect()),
                ip: ctx.ip.map(|i| i.to_string()),
            })
            .await
            .map_err(|e| already_used(e, &tenant.slug))?;
        tracing::info!(tenant = %record.tenant, account = %record.account_id, session = %record.id, "session created");
        self.publish(vec![event]);
        Ok(SessionResponse {
            session_jwt: Credential::new(self.mint_jwt(&record, now, now)?),
            session: session_view(&record, Some(&record.id)),
            session_token: Some(Credential::new(token.expose())),
        })
    }

    /// Checks a session row against the tenant's rules, ending it if a timeout has passed.
    async fn check_live(
        &self,
        tenant: &TenantRecord,
        s: &SessionRecord,
        now: i64,
    ) -> Result<(), ApiError> {
        if s.revoked_at.is_some() {
            let reason = s.revoked_reason.clone().unwrap_or_else(|| "revoked".into());
            return Err(Refusal::SessionRevoked { reason }.into());
        }
        if let Some((reason, refusal)) = timed_out(tenant, s, now) {
            let events = self
                .store
                .end_sessions(&tenant.slug, std::slice::from_ref(&s.id), reason, now)
                .await?;
            self.publish(events);
            return Err(refusal.into());
        }
        Ok(())
    }

    /// Activity writes and the transactions that carried them since the start (for `/metrics`).
    pub fn activity_stats(&self) -> super::ActivityStats {
        self.activity.stats()
    }

    /// How looks in the session cache came out since the start (for `/metrics`).
    pub fn session_cache_stats(&self) -> super::SessionCacheStats {
        self.sessions.stats()
    }

    /// The session of a session token: from the session cache while it may answer, else from
    /// the read replica when it may (see `replica`), else from the primary (and then cached).
    /// Answers whether it came from the cache or the replica, which are only trusted to say yes;
    /// `replica_ok: false` skips the replica (for callers that are about to write).
    async fn token_session(
        &self,
        token: &SessionToken,
        now: i64,
        replica_ok: bool,
    ) -> Result<(Arc<SessionRecord>, bool), ApiError> {
        let hash = token.hash();
        if let Some(record) = self.sessions.get(&self.hub, token.tenant(), &hash, now) {
            return Ok((record, true));
        }
        if let Some(replica) = self.replica.as_ref().filter(|_| replica_ok) {
            if let Some((record, mark, age)) = replica
                .token_session(&self.hub, token.tenant(), &hash)
                .await
            {
                let record = Arc::new(record);
                // As old as the replica's watermark, for the cache's re-check bound.
                self.sessions.put(&hash, &record, now - age, mark);
                return Ok((record, true));
            }
        }
        let mark = self.hub.mark();
        let record = self
            .store
            .session_by_token_hash(token.tenant(), &hash)
            .await?
            .ok_or(Refusal::SessionNotFound)?;
        let record = Arc::new(record);
        self.sessions.put(&hash, &record, now, mark);
        Ok((record, false))
    }

    /// Counts a lookup that matched nothing from the client, in the window every process on the
    /// database shares (in this process alone when the database cannot count it).
    async fn note_failed_lookup(&self, ip: Option<std::net::IpAddr>, now: i64) {
        let Some(ip) = ip else { return };
        let client = super::limits::client_key(ip).to_string();
        match self.store.note_failed_lookup(&client, now).await {
            Ok((start, failures)) => self.failures.shared(ip, start, failures),
            Err(e) => {
                tracing::warn!(error = %e, "the shared failed-lookup count is unavailable; counting here");
                self.failures.note(Some(ip), now);
            }
        }
    }

    /// The session token behind a call that manages sessions (listing, revoking, events,
    /// upgrade, re-authentication) resolved to its live session. A session JWT is refused here:
    /// it is handed to other APIs to prove who the user is, and must not let them sign the user
    /// out.
    pub async fn resolve(&self, bearer: &str, ctx: &RequestCtx) -> Result<Caller, ApiError> {
        if !bearer.starts_with(crate::token::PREFIX) && looks_like_jwt(bearer) {
            return Err(Refusal::SessionTokenRequired.into());
        }
        let now = self.now();
        self.failures.check(ctx.ip, now)?;
        // Managing sessions acts on what the caller is: never on a replica's answer, which
        // may be a moment behind a revoke made through another process.
        let result = self.resolve_credential(bearer, false).await;
        if is_failed_lookup(&result) {
            self.note_failed_lookup(ctx.ip, now).await;
        }
        result
    }

    /// The live session `id` of `tenant` as a caller: for the devices page, whose sign-in
    /// state (bound to the browser by its login cookie) names the session it acts for.
    pub async fn caller_by_session_id(&self, tenant: &str, id: &str) -> Result<Caller, ApiError> {
        let record = self
            .store
            .session(tenant, id)
            .await?
            .ok_or(Refusal::SessionNotFound)?;
        let settings = self.tenants.get(&self.store, tenant).await?;
        self.check_live(&settings, &record, self.now()).await?;
        Ok(Caller {
            tenant: tenant.to_owned(),
            session: Arc::new(record),
        })
    }

    /// A session token or session JWT resolved to its live session: a token's from the session
    /// cache when it may answer, else (and a JWT's always) from the database.
    async fn resolve_credential(&self, bearer: &str, replica_ok: bool) -> Result<Caller, ApiError> {
        let now = self.now();
        let (tenant_slug, record) = if bearer.starts_with(crate::token::PREFIX) {
            let token =
                SessionToken::parse(bearer).map_err(|e| Refusal::MalformedToken(e.to_string()))?;
            let (mut record, cached) = self.token_session(&token, now, replica_ok).await?;
            if cached {
                let tenant = self.tenants.get(&self.store, token.tenant()).await?;
                // The cache and the replica only say yes: a refusal is read again from the
                // primary first.
                if timed_out(&tenant, &record, now).is_some() {
                    self.sessions.forget(&token.hash());
                    record = self.token_session(&token, now, false).await?.0;
                }
            }
            (token.tenant().to_owned(), record)
        } else {
            let claims = self.verify_jwt(bearer)?;
            let record = self
                .store
                .session(&claims.tenant, &claims.sid)
                .await?
                .ok_or(Refusal::SessionNotFound)?;
            (claims.tenant, Arc::new(record))
        };
        let tenant = self.tenants.get(&self.store, &tenant_slug).await?;
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
    ) -> Result<AuthenticateResponse, ApiError> {
        if let Some(d) = req.session_duration_minutes {
            check_duration(d)?;
        }
        let (credential, via) = match (&req.session_token, &req.session_jwt) {
            (Some(t), None) => (t.expose(), Via::Token),
            (None, Some(j)) => (j.expose(), Via::Jwt),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "send exactly one of session_token and session_jwt",
                ))
            }
        };
        let now = self.now();
        self.failures.check(ctx.ip, now)?;
        let result = self
            .authenticate_credential(credential, via, req.session_duration_minutes)
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(ApiError::Refused(r)) => r.code(),
            Err(_) => "error",
        };
        self.metrics
            .authenticate
            .with_label_values(&[via.label(), outcome])
            .inc();
        if is_failed_lookup(&result) {
            self.note_failed_lookup(ctx.ip, now).await;
        }
        result
    }

    async fn authenticate_credential(
        &self,
        credential: &str,
        via: Via,
        duration: Option<i64>,
    ) -> Result<AuthenticateResponse, ApiError> {
        let now = self.now();
        // The JWT fast path: signature, expiry and the pushed revocation set, no database. It
        // answers only what the JWT says.
        if via == Via::Jwt && duration.is_none() {
            let claims = self.verify_jwt(credential)?;
            if self.hub.is_revoked(&claims.tenant, &claims.sid) {
                return Err(Refusal::SessionRevoked {
                    reason: "revoked".into(),
                }
                .into());
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
                return Ok(AuthenticateResponse::FromJwt {
                    session: JwtSessionView {
                        session_id: claims.sid,
                        tenant: claims.tenant,
                        subject: claims.sub,
                        is_guest: claims.is_guest,
                        device_id: claims.device_id,
                        last_authenticated_at: claims.lat,
                        expires_at: claims.sexp,
                    },
                    session_jwt: Credential::new(session_jwt),
                });
            }
        }
        // An extension writes: its caller is read without the replica.
        let caller = self
            .resolve_credential(credential, duration.is_none())
            .await?;
        let new_expiry = duration.map(|m| (now + m * 60).min(caller.session.absolute_expires_at));
        // A plain check writes only when the recorded activity is older than TOUCH_INTERVAL.
        if new_expiry.is_some() || now - caller.session.last_authenticated_at >= TOUCH_INTERVAL {
            let event = match new_expiry {
                Some(_) => {
                    self.store
                        .touch(&caller.tenant, &caller.session.id, now, new_expiry)
                        .await?
                }
                // A plain check shares a commit with the others due now (see `activity`).
                None => {
                    self.activity
                        .record(&self.store, &caller.tenant, &caller.session.id, now)
                        .await?;
                    None
                }
            };
            if via == Via::Token {
                if let Ok(token) = SessionToken::parse(credential) {
                    self.sessions.touched(&token.hash(), now);
                }
            }
            self.publish(event.into_iter().collect());
        }
        // The answer shows the activity and expiry just recorded (the record itself may be the
        // session cache's, shared).
        let record = &caller.session;
        let expires_at = new_expiry.unwrap_or(record.expires_at);
        let mut session = session_view(record, Some(&record.id));
        session.last_authenticated_at = now;
        session.expires_at = expires_at;
        Ok(AuthenticateResponse::Session(Box::new(SessionResponse {
            session_jwt: Credential::new(self.mint_jwt_until(record, expires_at, now, now)?),
            session,
            session_token: None,
        })))
    }

    /// `GET /v1/sessions`: every live session of the caller's account, across devices.
    pub async fn list(&self, caller: &Caller) -> Result<Vec<SessionView>, ApiError> {
        let now = self.now();
        let (tenant, account) = (&caller.tenant, &caller.session.account_id);
        let from_replica = match &self.replica {
            Some(replica) => {
                replica
                    .unrevoked_account_sessions(&self.hub, tenant, account)
                    .await
            }
            None => None,
        };
        let records = match from_replica {
            Some(records) => records,
            None => {
                self.store
                    .unrevoked_account_sessions(tenant, account)
                    .await?
            }
        };
        Ok(records
            .iter()
            .filter(|r| r.expires_at > now && r.absolute_expires_at > now)
            .map(|r| session_view(r, Some(&caller.session.id)))
            .collect())
    }

    /// `POST /v1/sessions/revoke`: one session of the caller's account, or a scope. Ending any
    /// session but the caller's own needs a recent sign-in (step-up, RFC 9470), so a stolen
    /// credential cannot sign its owner out everywhere.
    pub async fn revoke(
        &self,
        caller: &Caller,
        req: RevokeRequest,
    ) -> Result<Vec<String>, ApiError> {
        let now = self.now();
        let own = caller.session.id.as_str();
        let account = caller.session.account_id.as_str();
        // The sessions to end, and the caller's own row as just read (for its auth_time).
        let (ids, own_row) = match (req.session_id.as_deref(), req.scope) {
            (Some(id), None) => {
                // One session: two point reads, not the whole account (which may hold thousands).
                let target = self
                    .store
                    .session(&caller.tenant, id)
                    .await?
                    .filter(|s| s.account_id == account)
                    .ok_or_else(|| {
                        ApiError::NotFound("no session with this id in your account".into())
                    })?;
                let own_row = if target.id == own {
                    Some(target)
                } else {
                    self.store.session(&caller.tenant, own).await?
                };
                (vec![id.to_owned()], own_row)
            }
            (None, Some(scope)) => {
                let sessions = self
                    .store
                    .unrevoked_account_sessions(&caller.tenant, account)
                    .await?;
                let ids = match scope {
                    RevokeScope::Current => vec![own.to_owned()],
                    RevokeScope::Others => sessions
                        .iter()
                        .filter(|s| s.id != own)
                        .map(|s| s.id.clone())
                        .collect(),
                    RevokeScope::All => sessions.iter().map(|s| s.id.clone()).collect(),
                };
                // The list holds unrevoked sessions only: the caller's own row, if revoked a
                // moment ago, is read on its own (for the check below).
                let own_row = match sessions.into_iter().find(|s| s.id == own) {
                    Some(row) => Some(row),
                    None => self.store.session(&caller.tenant, own).await?,
                };
                (ids, own_row)
            }
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    "send exactly one of session_id and scope",
                ))
            }
        };
        // The caller's row as just read from the primary: a session revoked a moment ago (its
        // event still on its way here) may not end any other.
        if let Some(reason) = own_row.as_ref().and_then(|s| s.revoked_reason.clone()) {
            return Err(Refusal::SessionRevoked { reason }.into());
        }
        let only_own =
            req.scope == Some(RevokeScope::Current) || req.session_id.as_deref() == Some(own);
        if !only_own {
            let tenant = self.tenants.get(&self.store, &caller.tenant).await?;
            // From the rows just read: the caller's may come from the session cache, which can
            // predate a re-authentication made through another process.
            let auth_time = own_row
                .as_ref()
                .map_or(caller.session.auth_time, |s| s.auth_time);
            if now - auth_time > tenant.max_auth_age_secs {
                tracing::info!(tenant = %caller.tenant, account = %caller.session.account_id, session = %own, "revoke of other sessions needs a fresh sign-in");
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
    /// Every refusal of the ID token is a `400` (the body is at fault): a `401` would tell the
    /// client its session token is bad, and it would sign the device out.
    pub async fn reauthenticate(
        &self,
        caller: &Caller,
        req: ReauthenticateRequest,
    ) -> Result<SessionResponse, ApiError> {
        self.reauthenticate_with(caller, req)
            .await
            .map_err(|e| match e {
                ApiError::Refused(refusal @ Refusal::InvalidIdToken { .. }) => {
                    ApiError::RefusedInBody(refusal)
                }
                e => e,
            })
    }

    async fn reauthenticate_with(
        &self,
        caller: &Caller,
        req: ReauthenticateRequest,
    ) -> Result<SessionResponse, ApiError> {
        let tenant = self.tenants.get(&self.store, &caller.tenant).await?;
        let id_token = req.id_token.expose();
        let claims = self
            .verifier
            .verify_id_token(id_token, &tenant)
            .await
            .map_err(id_token_refused)?;
        let now = self.now();
        if claims.get("sub").and_then(Value::as_str) != Some(caller.session.subject.as_str()) {
            tracing::warn!(tenant = %caller.tenant, account = %caller.session.account_id, "re-authentication with another person's ID token");
            return Err(Refusal::id_token(
                "subject_mismatch",
                "this ID token is another person's; sign in as the session's own user",
            )
            .into());
        }
        let auth_time = auth_time_of(&claims, now).ok_or_else(|| {
            Refusal::id_token(
                "missing_claim",
                "the ID token does not say when the person signed in (auth_time)",
            )
        })?;
        if now - auth_time > tenant.max_auth_age_secs {
            return Err(Refusal::id_token(
                "sign_in_too_old",
                format!(
                    "this ID token's sign-in is older than {} s; sign in again with max_age=0",
                    tenant.max_auth_age_secs
                ),
            )
            .into());
        }
        let spent = spent_id_token(id_token, &claims, now);
        let record = self
            .store
            .reauthenticate(&caller.tenant, &caller.session.id, auth_time, &spent)
            .await
            .map_err(|e| already_used(e, &caller.tenant))?
            .ok_or_else(|| Refusal::SessionRevoked {
                reason: "ended".into(),
            })?;
        tracing::info!(tenant = %record.tenant, account = %record.account_id, session = %record.id, "session re-authenticated");
        // What this process cached of the account predates the new auth_time.
        self.hub
            .note_change(&record.tenant, &record.account_id, now);
        Ok(SessionResponse {
            session_jwt: Credential::new(self.mint_jwt(&record, now, now)?),
            session: session_view(&record, Some(&record.id)),
            session_token: None,
        })
    }
}
