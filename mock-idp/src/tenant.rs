//! One tenant: an issuer with its own keys, users, clients, grants, faults and audit log, and
//! the minting of its tokens.

use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use std::path::Path;
use time::{Duration, OffsetDateTime};

use crate::audit::{Audit, AuditEvent};
use crate::clock::SharedClock;
use crate::config::{Lifetimes, SigningAlg, TenantConfig};
use crate::device_guesses::DeviceGuesses;
use crate::directory::{Client, Directory, DirectoryError, User};
use crate::error::OAuthError;
use crate::faults::FaultSet;
use crate::grants::{AccessGrant, GrantStore};
use crate::guest_quota::{GuestLimits, GuestRate, GuestRefusal};
use crate::ids::TenantId;
use crate::issue::{Issue, IssueError, Mint, Minted, UnsignedIdToken, UnsignedTokens};
use crate::jwt;
use crate::keys::{KeyError, KeySet};
use crate::random;
use crate::scope::Scope;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {tenant}: {source}")]
    Directory {
        tenant: TenantId,
        source: DirectoryError,
    },
    #[error("tenant {tenant}: signing keys: {source}")]
    Keys { tenant: TenantId, source: KeyError },
    #[error("tenant {tenant}: {message}")]
    Invalid { tenant: TenantId, message: String },
}

pub struct Tenant {
    pub id: TenantId,
    pub issuer: String,
    pub display_name: String,
    pub lifetimes: Lifetimes,
    pub guest_limits: GuestLimits,
    /// Guests created per client address in the last minute. Taken before `directory` when
    /// both are held.
    pub guest_rate: Mutex<GuestRate>,
    /// Wrong user codes and failed sign-ins on the device page in the last minute.
    pub device_guesses: Mutex<DeviceGuesses>,
    pub keys: RwLock<KeySet>,
    pub directory: RwLock<Directory>,
    /// Codes, tokens, sessions and device grants, behind their typed API ([`GrantStore`]).
    pub grants: GrantStore,
    pub faults: Mutex<FaultSet>,
    pub audit: Mutex<Audit>,
    clock: SharedClock,
}

impl Tenant {
    pub fn from_config(
        cfg: &TenantConfig,
        base_url: &str,
        key_dir: Option<&Path>,
        clock: SharedClock,
    ) -> Result<Self, TenantError> {
        let tenant = cfg.slug.clone();
        cfg.lifetimes
            .validate()
            .and_then(|()| cfg.guests.validate())
            .map_err(|e| TenantError::Invalid {
                tenant: tenant.clone(),
                message: e.to_string(),
            })?;
        let mut directory = Directory::default();
        for user in &cfg.users {
            let user =
                User::from_config(&tenant, user).map_err(|source| TenantError::Directory {
                    tenant: tenant.clone(),
                    source,
                })?;
            directory
                .add_user(user)
                .map_err(|source| TenantError::Directory {
                    tenant: tenant.clone(),
                    source,
                })?;
        }
        let mut algs = vec![SigningAlg::ES256];
        for client in &cfg.clients {
            algs.push(client.id_token_alg);
            let client = Client::new(client.clone()).map_err(|source| TenantError::Directory {
                tenant: tenant.clone(),
                source,
            })?;
            directory
                .add_client(client)
                .map_err(|source| TenantError::Directory {
                    tenant: tenant.clone(),
                    source,
                })?;
        }
        let pems: Vec<String> = cfg.keys.iter().map(|k| k.pem.clone()).collect();
        let dir = key_dir.map(|d| d.join(tenant.as_str()));
        let keys_err = |source| TenantError::Keys {
            tenant: tenant.clone(),
            source,
        };
        let mut keys = KeySet::load(&pems, dir.as_deref()).map_err(keys_err)?;
        for alg in algs {
            keys.ensure(alg).map_err(keys_err)?;
        }
        Ok(Self {
            issuer: format!("{}/{}", base_url.trim_end_matches('/'), tenant),
            display_name: cfg
                .display_name
                .clone()
                .unwrap_or_else(|| tenant.to_string()),
            id: tenant,
            lifetimes: cfg.lifetimes,
            guest_limits: cfg.guests,
            guest_rate: Mutex::new(GuestRate::default()),
            device_guesses: Mutex::new(DeviceGuesses::default()),
            keys: RwLock::new(keys),
            directory: RwLock::new(directory),
            grants: GrantStore::default(),
            faults: Mutex::new(FaultSet::default()),
            audit: Mutex::new(Audit::default()),
            clock,
        })
    }

    /// The current time, for every expiry decision.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// The time written into issued tokens: `now` shifted by any clock-offset fault.
    pub fn issue_time(&self) -> OffsetDateTime {
        self.now() + self.faults.lock().clock_offset()
    }

    pub fn secs(d: u64) -> Duration {
        Duration::seconds(i64::try_from(d).unwrap_or(i64::MAX / 2))
    }

    pub fn record(
        &self,
        kind: &'static str,
        sub: Option<&str>,
        client_id: Option<&str>,
        detail: impl Into<String>,
    ) {
        let event = AuditEvent {
            at: self.now().unix_timestamp(),
            kind,
            sub: sub.map(str::to_owned),
            client_id: client_id.map(str::to_owned),
            detail: detail.into(),
        };
        self.audit.lock().record(self.id.as_str(), event);
    }

    /// Creates a guest user for a request from `addr` by `client_id`, within the tenant's
    /// [`GuestLimits`]; returns its `sub`. A refusal creates nothing. Both outcomes are audited.
    pub fn create_guest(
        &self,
        addr: Option<std::net::IpAddr>,
        client_id: &str,
    ) -> Result<String, GuestRefusal> {
        let now = self.now();
        let created = {
            let mut rate = self.guest_rate.lock();
            rate.check(addr, now, self.guest_limits.per_address_per_minute)
                .and_then(|()| {
                    let user = User::guest();
                    let sub = user.sub.clone();
                    self.directory
                        .write()
                        .add_guest(user, self.guest_limits.max_users)
                        .map_err(|_| GuestRefusal::TenantFull {
                            max: self.guest_limits.max_users,
                        })?;
                    rate.record(addr, now);
                    Ok(sub)
                })
        };
        let address = addr.map_or_else(|| "an unknown address".to_owned(), |a| a.to_string());
        match &created {
            Ok(sub) => self.record(
                "guest_created",
                Some(sub),
                Some(client_id),
                format!("guest sign-in from {address}"),
            ),
            Err(refusal) => self.record(
                "guest_refused",
                None,
                Some(client_id),
                format!("from {address}: {refusal}"),
            ),
        }
        created
    }

    /// Verifies an access token of this tenant and that it is still live.
    pub fn check_access_token(&self, token: &str) -> Result<(Value, AccessGrant), OAuthError> {
        let now = self.now();
        let claims = jwt::verify_own(
            token,
            &self.keys.read(),
            &self.issuer,
            Some("at+jwt"),
            now,
            false,
        )
        .map_err(|e| OAuthError::invalid_token(e.to_string()))?;
        let claim = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default();
        // Our own signature vouches for the claims: the scope is the token's own (a refresh may
        // have narrowed it), its state is its grant's.
        let scope = crate::scope::Scope::parse(claim("scope"))
            .map_err(|e| OAuthError::invalid_token(format!("scope: {e}")))?;
        let grant = self
            .grants
            .access_token(claim("grant"), claim("jti"), scope)
            .map_err(|refusal| OAuthError::invalid_token(refusal.to_string()))?;
        Ok((claims, grant))
    }
}

/// Profile and email claims of a user, as far as `scope` allows.
pub fn user_claims(user: &User, scope: &Scope) -> Value {
    let mut c = json!({});
    if scope.contains("email") || scope.contains("openid") {
        if let Some(email) = &user.email {
            c["email"] = Value::from(email.as_str());
            c["email_verified"] = Value::from(true);
        }
    }
    if let Some(name) = &user.name {
        c["name"] = Value::from(name.as_str());
    }
    if let Some(username) = &user.username {
        c["preferred_username"] = Value::from(username.as_str());
    }
    c
}

/// Mints a token response: a new access token (RFC 9068), an ID token if `openid` is in scope,
/// and a refresh token if asked for. Called by the grant store under its lock (which registers
/// the response in the same step, so rotation and reuse detection are atomic); the JWTs are
/// signed afterwards, by [`crate::issue::Unsigned::sign`], once the lock is released. Nothing of
/// the response is known outside until it is signed and returned, so the records may precede
/// it; everything that can fail, short of signing itself, fails here, before the grants change.
impl Mint for Tenant {
    fn mint(&self, req: &Issue<'_>) -> Result<Minted, IssueError> {
        let now = self.now();
        let iat = self.issue_time();
        let client_id = req.client.id().clone();
        let (user_claims, is_guest) = {
            let dir = self.directory.read();
            match dir.user(req.sub) {
                Some(u) => (user_claims(u, req.scope), u.is_guest),
                None if req.sub == client_id.as_str() => (json!({}), false),
                None => return Err(IssueError::UserGone),
            }
        };
        let (at_key, id_key) = {
            let keys = self.keys.read();
            let at_key = keys
                .active(SigningAlg::ES256)
                .ok_or(IssueError::NoAccessTokenKey)?;
            let id_key = if req.scope.contains("openid") {
                let alg = req.client.config.id_token_alg;
                Some(keys.active(alg).ok_or(IssueError::NoIdTokenKey(alg))?)
            } else {
                None
            };
            (at_key, id_key)
        };

        let jti = random::id();
        let at_ttl = Self::secs(self.lifetimes.access_token);
        let mut at_claims = json!({
            "iss": self.issuer,
            "sub": req.sub,
            "aud": client_id.as_str(),
            "client_id": client_id.as_str(),
            "exp": (iat + at_ttl).unix_timestamp(),
            "iat": iat.unix_timestamp(),
            "auth_time": req.auth_time.unix_timestamp(),
            "jti": jti,
            "scope": req.scope.to_string(),
            "tenant": self.id.as_str(),
            "is_guest": is_guest,
        });
        if let Some(sid) = req.sid {
            at_claims["sid"] = Value::from(sid);
        }

        let id_token = match id_key {
            Some(key) => {
                // `at_hash` is added once the access token is signed.
                let mut claims = json!({
                    "iss": self.issuer,
                    "sub": req.sub,
                    "aud": client_id.as_str(),
                    "azp": client_id.as_str(),
                    "exp": (iat + Self::secs(self.lifetimes.id_token)).unix_timestamp(),
                    "iat": iat.unix_timestamp(),
                    "auth_time": req.auth_time.unix_timestamp(),
                    "tenant": self.id.as_str(),
                    "is_guest": is_guest,
                });
                if let (Some(map), Some(extra)) = (claims.as_object_mut(), user_claims.as_object())
                {
                    map.extend(extra.clone());
                }
                if let Some(nonce) = req.nonce {
                    claims["nonce"] = Value::from(nonce);
                }
                if let Some(sid) = req.sid {
                    claims["sid"] = Value::from(sid);
                }
                let tamper = self.faults.lock().take_id_token_tamper();
                Some(UnsignedIdToken {
                    claims,
                    key,
                    tamper,
                })
            }
            None => None,
        };

        let refresh_expires_at = req
            .with_refresh
            .then(|| now + Self::secs(self.lifetimes.refresh_token));
        Ok(Minted {
            tokens: UnsignedTokens {
                at_claims,
                at_key,
                id_token,
                expires_in: self.lifetimes.access_token,
                scope: req.scope.to_string(),
                refresh_token: None,
            },
            access_expires_at: now + at_ttl,
            refresh_expires_at,
        })
    }
}
