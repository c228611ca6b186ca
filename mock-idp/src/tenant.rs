//! One tenant: an issuer with its own keys, users, clients, grants, faults and audit log, and
//! the minting of its tokens.

use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};
use tokio::sync::Notify;

use crate::audit::{Audit, AuditEvent};
use crate::clock::SharedClock;
use crate::config::{Lifetimes, SigningAlg, TenantConfig};
use crate::directory::{Client, Directory, DirectoryError, User};
use crate::error::OAuthError;
use crate::faults::FaultSet;
use crate::grants::{AccessRecord, Family, Grants, RefreshRecord};
use crate::guest_quota::{GuestLimits, GuestRate, GuestRefusal};
use crate::ids::TenantId;
use crate::jwt::{self, IdTokenTamper};
use crate::keys::{KeyError, KeySet, SigningKey};
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
    pub keys: RwLock<KeySet>,
    pub directory: RwLock<Directory>,
    pub grants: Mutex<Grants>,
    pub faults: Mutex<FaultSet>,
    pub audit: Mutex<Audit>,
    /// Woken whenever a refresh rotation settles: its response is stored in the parent record,
    /// or the rotation is rolled back. A repeat inside the reuse grace window that finds the
    /// response still being signed waits on it.
    pub rotations: Notify,
    clock: SharedClock,
}

/// What a token response is issued for.
pub struct Issue<'a> {
    pub client: &'a Client,
    pub sub: &'a str,
    pub sid: Option<&'a str>,
    pub scope: &'a Scope,
    pub nonce: Option<&'a str>,
    pub auth_time: OffsetDateTime,
    /// Continue this refresh family; `None` starts a new one if a refresh token is issued.
    pub family: Option<String>,
    pub with_refresh: bool,
}

/// A token response registered in the grants but not yet signed: made by [`Tenant::issue`]
/// under the grants lock, finished by [`Unsigned::sign`] after it.
pub struct Unsigned {
    tokens: UnsignedTokens,
    pub family: Option<String>,
    pub access_jti: String,
    pub refresh_fp: Option<String>,
}

struct UnsignedTokens {
    at_claims: Value,
    at_key: Arc<SigningKey>,
    id_token: Option<UnsignedIdToken>,
    expires_in: u64,
    scope: String,
    refresh_token: Option<String>,
}

struct UnsignedIdToken {
    claims: Value,
    key: Arc<SigningKey>,
    /// An `id_token` fault taken when the response was registered.
    tamper: Option<IdTokenTamper>,
}

impl Unsigned {
    /// Signs the response; call it with the grants lock released.
    pub fn sign(self) -> Result<Issued, SignFailure> {
        match self.tokens.sign() {
            Ok(body) => Ok(Issued {
                body,
                family: self.family,
                access_jti: self.access_jti,
                refresh_fp: self.refresh_fp,
            }),
            Err(error) => Err(SignFailure {
                error,
                access_jti: self.access_jti,
                refresh_fp: self.refresh_fp,
            }),
        }
    }
}

/// A response whose signing failed: its tokens were registered but will never be handed out.
#[must_use = "the registered tokens must be discarded"]
pub struct SignFailure {
    error: OAuthError,
    access_jti: String,
    refresh_fp: Option<String>,
}

impl SignFailure {
    /// Forgets the registered access and refresh token (whatever else the caller marked, it
    /// undoes itself, in the same critical section) and hands back the error to answer with.
    pub fn discard(self, grants: &mut Grants) -> OAuthError {
        grants.discard(&self.access_jti, self.refresh_fp.as_deref());
        self.error
    }
}

impl UnsignedTokens {
    /// Signs the access token and the ID token and assembles the response body.
    fn sign(self) -> Result<Value, OAuthError> {
        let server_error = |e: jwt::JwtError| OAuthError::server_error(e.to_string());
        let access_token =
            jwt::sign(&self.at_claims, &self.at_key, Some("at+jwt")).map_err(server_error)?;
        let id_token = match self.id_token {
            Some(UnsignedIdToken {
                mut claims,
                key,
                tamper,
            }) => {
                claims["at_hash"] = Value::from(jwt::at_hash(&access_token));
                Some(
                    match tamper {
                        Some(t) => t.sign(claims, &key),
                        None => jwt::sign(&claims, &key, None),
                    }
                    .map_err(server_error)?,
                )
            }
            None => None,
        };
        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        });
        if let Some(id_token) = id_token {
            body["id_token"] = Value::from(id_token);
        }
        if let Some(refresh_token) = self.refresh_token {
            body["refresh_token"] = Value::from(refresh_token);
        }
        Ok(body)
    }
}

/// An issued token response and the bookkeeping that goes with it.
pub struct Issued {
    pub body: Value,
    pub family: Option<String>,
    pub access_jti: String,
    pub refresh_fp: Option<String>,
}

impl Tenant {
    pub fn from_config(
        cfg: &TenantConfig,
        base_url: &str,
        key_dir: Option<&Path>,
        clock: SharedClock,
    ) -> Result<Self, TenantError> {
        let tenant = cfg.slug.clone();
        cfg.lifetimes.validate().map_err(|e| TenantError::Invalid {
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
            keys: RwLock::new(keys),
            directory: RwLock::new(directory),
            grants: Mutex::new(Grants::default()),
            faults: Mutex::new(FaultSet::default()),
            audit: Mutex::new(Audit::default()),
            rotations: Notify::new(),
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

    /// Registers a token response in `grants`: a new access token (RFC 9068), optionally a
    /// refresh token (in a new family or `req.family`) and an ID token. Runs under the grants lock
    /// so rotation and reuse detection are atomic; the JWTs are signed afterwards, by
    /// [`Unsigned::sign`], once the caller has released the lock (signing is most of a token
    /// request's CPU, and under the lock the token endpoint could use one core at most); if that
    /// fails, [`SignFailure::discard`] takes the records back. Nothing
    /// of the response is known outside until it is signed and returned, so the records may
    /// precede it; everything that can fail, short of signing itself, fails here, before
    /// `grants` changes.
    pub fn issue(&self, grants: &mut Grants, req: Issue<'_>) -> Result<Unsigned, OAuthError> {
        let now = self.now();
        let iat = self.issue_time();
        let client_id = req.client.id().clone();
        let (user_claims, is_guest) = {
            let dir = self.directory.read();
            match dir.user(req.sub) {
                Some(u) => (user_claims(u, req.scope), u.is_guest),
                None if req.sub == client_id.as_str() => (json!({}), false),
                None => {
                    return Err(OAuthError::invalid_grant(
                        "the user of this grant no longer exists",
                    ))
                }
            }
        };
        let (at_key, id_key) = {
            let keys = self.keys.read();
            let at_key = keys
                .active(SigningAlg::ES256)
                .ok_or_else(|| OAuthError::server_error("no active signing key"))?;
            let id_key =
                if req.scope.contains("openid") {
                    let alg = req.client.config.id_token_alg;
                    Some(keys.active(alg).ok_or_else(|| {
                        OAuthError::server_error(format!("no active {alg:?} key"))
                    })?)
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

        let mut family = req.family;
        let mut refresh = None;
        if req.with_refresh {
            let fid = family.get_or_insert_with(|| {
                let id = random::id();
                grants.families.insert(
                    id.clone(),
                    Family {
                        client_id: client_id.clone(),
                        sub: req.sub.to_owned(),
                        sid: req.sid.map(str::to_owned),
                        scope: req.scope.clone(),
                        auth_time: req.auth_time,
                        revoked: false,
                        access_jtis: Vec::new(),
                        refresh_fps: Vec::new(),
                    },
                );
                id
            });
            let refresh_token = random::token();
            let fp = random::fingerprint(&refresh_token);
            grants.refresh.insert(
                fp.clone(),
                RefreshRecord {
                    family: fid.clone(),
                    expires_at: now + Self::secs(self.lifetimes.refresh_token),
                    used_at: None,
                    child: None,
                },
            );
            if let Some(f) = grants.families.get_mut(fid.as_str()) {
                f.refresh_fps.push(fp.clone());
            }
            refresh = Some((refresh_token, fp));
        }
        grants.access.insert(
            jti.clone(),
            AccessRecord {
                family: family.clone(),
                client_id: client_id.clone(),
                sub: req.sub.to_owned(),
                scope: req.scope.clone(),
                expires_at: now + at_ttl,
                revoked: false,
            },
        );
        if let Some(f) = family.as_deref().and_then(|id| grants.families.get_mut(id)) {
            f.access_jtis.push(jti.clone());
        }
        let (refresh_token, refresh_fp) = refresh.unzip();
        Ok(Unsigned {
            tokens: UnsignedTokens {
                at_claims,
                at_key,
                id_token,
                expires_in: self.lifetimes.access_token,
                scope: req.scope.to_string(),
                refresh_token,
            },
            family,
            access_jti: jti,
            refresh_fp,
        })
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
    pub fn check_access_token(&self, token: &str) -> Result<(Value, AccessRecord), OAuthError> {
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
        let jti = claims
            .get("jti")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let record =
            self.grants.lock().access.get(jti).cloned().ok_or_else(|| {
                OAuthError::invalid_token("access token is not known to this tenant")
            })?;
        if record.revoked {
            return Err(OAuthError::invalid_token("access token has been revoked"));
        }
        Ok((claims, record))
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
