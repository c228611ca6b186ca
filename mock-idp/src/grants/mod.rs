//! The mutable grant state of one tenant: pending authorization requests, codes, refresh-token
//! families, access tokens, IdP sessions and device grants. Secrets are keyed by their SHA-256
//! fingerprint, never by value. Everything here sits behind the tenant's one mutex, so each
//! operation (redeem, rotate, revoke a family) is atomic.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::ids::ClientId;
use crate::pkce::CodeChallenge;
use crate::scope::Scope;

/// A validated authorization request waiting for the user to sign in.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client_id: ClientId,
    pub redirect_uri: String,
    /// Whether `redirect_uri` was sent (then the token request must repeat it, RFC 6749 §4.1.3).
    pub redirect_uri_given: bool,
    pub scope: Scope,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<CodeChallenge>,
    pub login_hint: Option<String>,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeState {
    Fresh,
    /// Redeemed once; a replay revokes this family.
    Redeemed {
        family: Option<String>,
        access_jti: String,
    },
    /// A failed redemption burnt it.
    Burned,
}

#[derive(Debug, Clone)]
pub struct CodeRecord {
    pub request: AuthRequest,
    pub sub: String,
    pub sid: String,
    pub auth_time: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub state: CodeState,
}

/// A refresh-token family: every RT rotated from one grant, and the ATs issued with them.
#[derive(Debug, Clone)]
pub struct Family {
    pub client_id: ClientId,
    pub sub: String,
    pub sid: Option<String>,
    pub scope: Scope,
    pub auth_time: OffsetDateTime,
    pub revoked: bool,
    pub access_jtis: Vec<String>,
    pub refresh_fps: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RefreshRecord {
    pub family: String,
    pub expires_at: OffsetDateTime,
    pub used_at: Option<OffsetDateTime>,
    /// What this token was rotated into, for the reuse grace window.
    pub child: Option<Rotation>,
}

/// A refresh token's successor and the response that carried it.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Fingerprint of the child refresh token.
    pub child_fp: String,
    /// The token response; `None` while its JWTs are being signed, outside the grants lock, and
    /// for good if the client has no reuse grace window (nothing would ever read it).
    pub response: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub family: Option<String>,
    pub client_id: ClientId,
    pub sub: String,
    pub scope: Scope,
    pub expires_at: OffsetDateTime,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct IdpSession {
    pub sid: String,
    pub sub: String,
    pub auth_time: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub clients: BTreeSet<ClientId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceStatus {
    Pending,
    Approved {
        sub: String,
        sid: String,
        auth_time: OffsetDateTime,
    },
    Denied,
}

#[derive(Debug, Clone)]
pub struct DeviceGrant {
    pub client_id: ClientId,
    pub scope: Scope,
    pub user_code: String,
    pub expires_at: OffsetDateTime,
    pub interval: Duration,
    pub last_poll: Option<OffsetDateTime>,
    pub status: DeviceStatus,
}

#[derive(Debug, Default)]
pub struct Grants {
    pub pending: HashMap<String, AuthRequest>,
    pub codes: HashMap<String, CodeRecord>,
    pub families: HashMap<String, Family>,
    pub refresh: HashMap<String, RefreshRecord>,
    pub access: HashMap<String, AccessRecord>,
    /// IdP sessions by the fingerprint of their cookie.
    pub sessions: HashMap<String, IdpSession>,
    /// Device grants by the fingerprint of their device_code.
    pub devices: HashMap<String, DeviceGrant>,
    /// user_code → device_code fingerprint.
    pub user_codes: HashMap<String, String>,
}

impl Grants {
    /// Revokes a family: its refresh tokens and every access token issued in it. Returns
    /// whether anything changed.
    pub fn revoke_family(&mut self, family: &str) -> bool {
        let Some(f) = self.families.get_mut(family) else {
            return false;
        };
        let changed = !f.revoked;
        f.revoked = true;
        for jti in &f.access_jtis {
            if let Some(at) = self.access.get_mut(jti) {
                at.revoked = true;
            }
        }
        changed
    }

    /// Forgets the access token and the refresh token of a response that was registered but
    /// never handed out (its signing failed).
    pub fn discard(&mut self, access_jti: &str, refresh_fp: Option<&str>) {
        let family = self.access.remove(access_jti).and_then(|a| a.family);
        if let Some(fp) = refresh_fp {
            self.refresh.remove(fp);
        }
        if let Some(f) = family.and_then(|id| self.families.get_mut(&id)) {
            f.access_jtis.retain(|j| j != access_jti);
            f.refresh_fps.retain(|r| Some(r.as_str()) != refresh_fp);
        }
    }

    /// Revokes every family bound to IdP session `sid`.
    pub fn revoke_session_families(&mut self, sid: &str) -> usize {
        let ids: Vec<String> = self
            .families
            .iter()
            .filter(|(_, f)| f.sid.as_deref() == Some(sid) && !f.revoked)
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter(|id| self.revoke_family(id)).count()
    }

    pub fn session_by_sid(&self, sid: &str) -> Option<(&String, &IdpSession)> {
        self.sessions.iter().find(|(_, s)| s.sid == sid)
    }

    /// Removes the IdP session `sid`, returning it.
    pub fn end_session(&mut self, sid: &str) -> Option<IdpSession> {
        let key = self.session_by_sid(sid).map(|(k, _)| k.clone())?;
        self.sessions.remove(&key)
    }

    /// Drops what has expired. Redeemed codes are kept a while past expiry so a late replay
    /// still finds them and revokes what they issued.
    pub fn sweep(&mut self, now: OffsetDateTime) {
        self.pending.retain(|_, r| r.expires_at > now);
        self.codes
            .retain(|_, c| c.expires_at + Duration::minutes(10) > now);
        self.access.retain(|_, a| a.expires_at > now);
        self.refresh.retain(|_, r| r.expires_at > now);
        let live: BTreeSet<&String> = self.refresh.values().map(|r| &r.family).collect();
        let live_at: BTreeSet<&String> = self
            .access
            .values()
            .filter_map(|a| a.family.as_ref())
            .collect();
        let dead: Vec<String> = self
            .families
            .keys()
            .filter(|id| !live.contains(id) && !live_at.contains(id))
            .cloned()
            .collect();
        for id in dead {
            self.families.remove(&id);
        }
        self.sessions.retain(|_, s| s.expires_at > now);
        self.devices.retain(|_, d| d.expires_at > now);
        let devices = &self.devices;
        self.user_codes.retain(|_, fp| devices.contains_key(fp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> ClientId {
        ClientId::parse("c").unwrap()
    }

    #[test]
    fn sweep_drops_expired_grants_and_keeps_live_ones() {
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let mut g = Grants::default();
        let request = AuthRequest {
            client_id: client(),
            redirect_uri: "http://127.0.0.1/cb".into(),
            redirect_uri_given: true,
            scope: Scope::default(),
            state: None,
            nonce: None,
            code_challenge: None,
            login_hint: None,
            expires_at: t0 + Duration::minutes(10),
        };
        g.pending.insert("p".into(), request.clone());
        g.codes.insert(
            "c".into(),
            CodeRecord {
                request,
                sub: "s".into(),
                sid: "sid".into(),
                auth_time: t0,
                expires_at: t0 + Duration::seconds(60),
                state: CodeState::Fresh,
            },
        );
        g.families.insert(
            "f".into(),
            Family {
                client_id: client(),
                sub: "s".into(),
                sid: None,
                scope: Scope::default(),
                auth_time: t0,
                revoked: false,
                access_jtis: vec!["a".into()],
                refresh_fps: vec!["r".into()],
            },
        );
        g.refresh.insert(
            "r".into(),
            RefreshRecord {
                family: "f".into(),
                expires_at: t0 + Duration::days(1),
                used_at: None,
                child: None,
            },
        );
        g.access.insert(
            "a".into(),
            AccessRecord {
                family: Some("f".into()),
                client_id: client(),
                sub: "s".into(),
                scope: Scope::default(),
                expires_at: t0 + Duration::minutes(10),
                revoked: false,
            },
        );

        g.sweep(t0 + Duration::minutes(5));
        assert_eq!(
            (
                g.pending.len(),
                g.codes.len(),
                g.access.len(),
                g.refresh.len()
            ),
            (1, 1, 1, 1)
        );
        g.sweep(t0 + Duration::minutes(15));
        assert_eq!((g.pending.len(), g.codes.len(), g.access.len()), (0, 0, 0));
        assert_eq!(
            g.families.len(),
            1,
            "the family lives while its refresh token does"
        );
        g.sweep(t0 + Duration::days(2));
        assert!(g.refresh.is_empty() && g.families.is_empty());
    }

    #[test]
    fn revoking_a_family_revokes_its_access_tokens() {
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let mut g = Grants::default();
        g.families.insert(
            "f".into(),
            Family {
                client_id: client(),
                sub: "s".into(),
                sid: Some("sid".into()),
                scope: Scope::default(),
                auth_time: t0,
                revoked: false,
                access_jtis: vec!["a".into()],
                refresh_fps: vec![],
            },
        );
        g.access.insert(
            "a".into(),
            AccessRecord {
                family: Some("f".into()),
                client_id: client(),
                sub: "s".into(),
                scope: Scope::default(),
                expires_at: t0,
                revoked: false,
            },
        );
        assert_eq!(g.revoke_session_families("sid"), 1);
        assert!(g.access["a"].revoked && g.families["f"].revoked);
        assert!(!g.revoke_family("f"), "second revocation changes nothing");
    }
}
