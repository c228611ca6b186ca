//! One tenant: an issuer with its own keys, users, clients, grants, faults and audit log, and
//! the minting of its tokens.

use std::path::Path;

use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::audit::{Audit, AuditEvent};
use crate::clock::SharedClock;
use crate::config::{Lifetimes, SigningAlg, TenantConfig};
use crate::directory::{Client, Directory, DirectoryError, User};
use crate::error::OAuthError;
use crate::faults::FaultSet;
use crate::grants::{AccessRecord, Family, Grants, RefreshRecord};
use crate::ids::TenantId;
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
    pub keys: RwLock<KeySet>,
    pub directory: RwLock<Directory>,
    pub grants: Mutex<Grants>,
    pub faults: Mutex<FaultSet>,
    pub audit: Mutex<Audit>,
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
            keys: RwLock::new(keys),
            directory: RwLock::new(directory),
            grants: Mutex::new(Grants::default()),
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

    /// Mints an access token (RFC 9068), optionally a refresh token and an ID token, and records
    /// them in `grants`. Runs under the grants lock so rotation and reuse detection are atomic.
    pub fn issue(&self, grants: &mut Grants, req: Issue<'_>) -> Result<Issued, OAuthError> {
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
        let keys = self.keys.read();
        let at_key = keys
            .active(SigningAlg::ES256)
            .ok_or_else(|| OAuthError::server_error("no active signing key"))?;

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
        let access_token = jwt::sign(&at_claims, &at_key, Some("at+jwt"))
            .map_err(|e| OAuthError::server_error(e.to_string()))?;

        let mut body = json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": self.lifetimes.access_token,
            "scope": req.scope.to_string(),
        });

        if req.scope.contains("openid") {
            let alg = req.client.config.id_token_alg;
            let key = keys
                .active(alg)
                .ok_or_else(|| OAuthError::server_error(format!("no active {alg:?} key")))?;
            let mut claims = json!({
                "iss": self.issuer,
                "sub": req.sub,
                "aud": client_id.as_str(),
                "azp": client_id.as_str(),
                "exp": (iat + Self::secs(self.lifetimes.id_token)).unix_timestamp(),
                "iat": iat.unix_timestamp(),
                "auth_time": req.auth_time.unix_timestamp(),
                "at_hash": jwt::at_hash(&access_token),
                "tenant": self.id.as_str(),
                "is_guest": is_guest,
            });
            if let (Some(map), Some(extra)) = (claims.as_object_mut(), user_claims.as_object()) {
                map.extend(extra.clone());
            }
            if let Some(nonce) = req.nonce {
                claims["nonce"] = Value::from(nonce);
            }
            if let Some(sid) = req.sid {
                claims["sid"] = Value::from(sid);
            }
            let tamper = self.faults.lock().take_id_token_tamper();
            let id_token = match tamper {
                Some(t) => t.sign(claims, &key),
                None => jwt::sign(&claims, &key, None),
            }
            .map_err(|e| OAuthError::server_error(e.to_string()))?;
            body["id_token"] = Value::from(id_token);
        }
        drop(keys);

        let mut family = req.family;
        let mut refresh_fp = None;
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
            body["refresh_token"] = Value::from(refresh_token);
            refresh_fp = Some(fp);
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
        Ok(Issued {
            body,
            family,
            access_jti: jti,
            refresh_fp,
        })
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
