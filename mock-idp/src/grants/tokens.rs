//! Access tokens and refresh-token families: issuing without a code, rotating a refresh token
//! (atomically: of two racing uses exactly one rotates, the other is a reuse that revokes the
//! family — or, inside the client's grace window, a repeat answered with the same child),
//! revocation (RFC 7009) and what introspection (RFC 7662) may see.

use serde_json::Value;
use time::{Duration, OffsetDateTime};
use tokio::sync::futures::Notified;

use super::{Ending, GrantStore, Rotation};
use crate::directory::Client;
use crate::ids::ClientId;
use crate::issue::{Issue, IssueError, Issued, Mint, SignFailure, Unsigned};
use crate::random;
use crate::scope::Scope;

/// A live access token's grant, as the protected resources see it.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    pub client_id: ClientId,
    pub sub: String,
    pub scope: Scope,
}

/// What a refresh token is, for introspection: only while it is live.
#[derive(Debug, Clone)]
pub struct RefreshIntrospection {
    pub client_id: ClientId,
    pub sub: String,
    pub sid: Option<String>,
    pub scope: Scope,
    pub expires_at: OffsetDateTime,
}

/// What a refresh rotation came to.
pub enum Rotate {
    /// Rotated: sign this, then [`GrantStore::settle_rotation`].
    Issued(Unsigned),
    /// A repeat inside the grace window: the response that carried the child, again.
    Repeat { sub: String, body: Value },
    /// A repeat inside the grace window found the parent rotated but the response that carried
    /// the child still being signed: wait for [`GrantStore::rotation_settled`] and try again.
    WaitForRotation,
}

/// Why a refresh token was not rotated.
#[derive(Debug, thiserror::Error)]
pub enum RefreshRefusal {
    #[error("refresh token is unknown or expired")]
    Unknown,
    #[error("refresh token was issued to another client")]
    OtherClient,
    #[error("refresh token has been revoked")]
    Revoked,
    #[error("refresh token has expired")]
    Expired,
    #[error("requested scope exceeds the scope originally granted")]
    ScopeExceeds,
    /// A rotated-out token came back: its whole family is now revoked.
    #[error("refresh token was already used; every token of this grant is now revoked")]
    Reused { sub: String },
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// Why an access token that verified is not live.
#[derive(Debug, thiserror::Error)]
pub enum AccessRefusal {
    #[error("access token is not known to this tenant")]
    Unknown,
    #[error("access token has been revoked")]
    Revoked,
}

/// What a revocation request did (RFC 7009 answers 200 whatever it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    /// Another client's token: left alone, so revocation cannot probe tokens.
    OtherClient,
    Unknown,
}

/// What a refresh needs from its token family. Only that: the family's token lists grow with
/// every rotation, so cloning the whole family made each refresh cost O(rotations so far).
struct FamilyGrant {
    sub: String,
    sid: Option<String>,
    scope: Scope,
    auth_time: OffsetDateTime,
}

impl GrantStore {
    /// Issues a response outside any code or family (client_credentials).
    pub fn issue(&self, mint: &impl Mint, issue: &Issue<'_>) -> Result<Unsigned, IssueError> {
        let mut grants = self.lock();
        let minted = mint.mint(issue)?;
        Ok(grants.register(minted, issue, None))
    }

    /// A response could not be signed: its tokens are taken back.
    pub fn not_delivered(&self, failure: SignFailure) -> IssueError {
        self.lock().discard(failure.refresh_fp.as_deref());
        failure.error
    }

    /// A future that completes at the next settled rotation. Take it before looking at the
    /// grants, so a rotation settling in between still wakes it.
    pub fn rotation_settled(&self) -> Notified<'_> {
        self.rotations.notified()
    }

    /// One attempt at rotating refresh token `token` (with fingerprint `fp`) for `client`: the
    /// checks, the parent marked used and the child registered, in one step.
    pub fn rotate_refresh(
        &self,
        mint: &impl Mint,
        token: &str,
        client: &Client,
        scope: Option<&Scope>,
        now: OffsetDateTime,
    ) -> Result<Rotate, RefreshRefusal> {
        let fp = &random::fingerprint(token);
        let mut grants = self.lock();
        let Some(rec) = grants.refresh.get(fp) else {
            return Err(grants.replayed_forgotten(token, client.id()));
        };
        let (rec_family, rec_expires_at, rec_used_at) =
            (rec.family.clone(), rec.expires_at, rec.used_at);
        let family = {
            let Some(f) = grants.families.get(&rec_family) else {
                return Err(RefreshRefusal::Unknown);
            };
            if f.client_id != *client.id() {
                return Err(RefreshRefusal::OtherClient);
            }
            FamilyGrant {
                sub: f.sub.clone(),
                sid: f.sid.clone(),
                scope: f.scope.clone(),
                auth_time: f.auth_time,
            }
        };
        // A used token is reuse (or a repeat inside the grace window) before anything else: an
        // expired or re-scoped replay of a used token is no less a replay.
        if let Some(used_at) = rec_used_at {
            let grace_secs = client.config.refresh_reuse_grace;
            let grace = Duration::seconds(i64::try_from(grace_secs).unwrap_or(i64::MAX / 2));
            let within_grace = grace_secs > 0 && now - used_at <= grace && rec_expires_at > now;
            // Only the immediate parent is covered: once the child itself was used, it is reuse.
            let child = grants
                .refresh
                .get(fp)
                .and_then(|r| r.child.as_ref())
                .filter(|rotation| {
                    grants
                        .refresh
                        .get(&rotation.child_fp)
                        .is_some_and(|c| c.used_at.is_none())
                });
            if let (true, Some(rotation)) = (within_grace, child) {
                return Ok(match rotation.response.clone() {
                    Some(body) => Rotate::Repeat {
                        sub: family.sub,
                        body,
                    },
                    None => Rotate::WaitForRotation,
                });
            }
            grants.revoke_family(&rec_family, Ending::Theft);
            return Err(RefreshRefusal::Reused { sub: family.sub });
        }
        if rec_expires_at <= now {
            return Err(RefreshRefusal::Expired);
        }
        let scope = match scope {
            Some(s) if !s.is_subset(&family.scope) => return Err(RefreshRefusal::ScopeExceeds),
            Some(s) => s.clone(),
            None => family.scope.clone(),
        };
        let issue = Issue {
            client,
            sub: &family.sub,
            sid: family.sid.as_deref(),
            scope: &scope,
            nonce: None,
            auth_time: family.auth_time,
            with_refresh: true,
        };
        let minted = mint.mint(&issue)?;
        let unsigned = grants.register(minted, &issue, Some(rec_family.clone()));
        let child = unsigned.refresh_fp.clone().map(|child_fp| Rotation {
            child_fp,
            response: None,
        });
        grants.retire_refresh(fp, &rec_family, now, child);
        Ok(Rotate::Issued(unsigned))
    }

    /// Settles the rotation of parent `fp` into `child_fp` once its response is signed (or not):
    /// a signed response is kept for repeats inside the grace window if `keep_response`; a
    /// failure takes the child back and leaves the parent as it was, so a retry may rotate it.
    /// Wakes every repeat waiting for it.
    pub fn settle_rotation(
        &self,
        fp: &str,
        child_fp: Option<&str>,
        signed: Result<Issued, SignFailure>,
        keep_response: bool,
    ) -> Result<Value, IssueError> {
        let result = {
            let mut grants = self.lock();
            let parent = grants
                .refresh
                .get_mut(fp)
                .filter(|r| r.child.as_ref().map(|c| c.child_fp.as_str()) == child_fp);
            match (signed, parent) {
                (Ok(issued), Some(parent)) => {
                    if let Some(rotation) = parent.child.as_mut().filter(|_| keep_response) {
                        rotation.response = Some(issued.body.clone());
                    }
                    let family = parent.family.clone();
                    grants.forget_past_window(&family);
                    Ok(issued.body)
                }
                (Ok(issued), None) => Ok(issued.body),
                (Err(failure), parent) => {
                    if parent.is_some() {
                        grants.unretire_refresh(fp);
                    }
                    grants.discard(failure.refresh_fp.as_deref());
                    Err(failure.error)
                }
            }
        };
        self.rotations.notify_waiters();
        result
    }

    /// What access token `jti` of grant `grant` (both from its verified claims) may do — its
    /// `scope`, also from its claims — unless its grant is revoked or unknown (ended and swept),
    /// or the token was revoked on its own.
    pub fn access_token(
        &self,
        grant: &str,
        jti: &str,
        scope: Scope,
    ) -> Result<AccessGrant, AccessRefusal> {
        let grants = self.lock();
        let Some(f) = grants.families.get(grant) else {
            return Err(match grants.ended.contains_key(grant) {
                true => AccessRefusal::Revoked,
                false => AccessRefusal::Unknown,
            });
        };
        if f.revoked_access.contains_key(jti) {
            return Err(AccessRefusal::Revoked);
        }
        Ok(AccessGrant {
            client_id: f.client_id.clone(),
            sub: f.sub.clone(),
            scope,
        })
    }

    /// Revokes access token `jti` of grant `grant`, which expires at `expires_at` (from its
    /// verified claims), if `client` holds it: its record is kept until then. A revoked grant's
    /// tokens are all revoked already.
    pub fn revoke_access(
        &self,
        grant: &str,
        jti: &str,
        expires_at: OffsetDateTime,
        client: &ClientId,
    ) -> Revocation {
        let mut grants = self.lock();
        match grants.holder(grant) {
            None => return Revocation::Unknown,
            Some(holder) if holder != client => return Revocation::OtherClient,
            Some(_) => {}
        }
        if let Some(f) = grants.families.get_mut(grant) {
            f.revoked_access.insert(jti.to_owned(), expires_at);
        }
        Revocation::Revoked
    }

    /// Revokes the grant of refresh token `token` if `client` holds it (a used token of the
    /// grant too, however old). A token of a grant revoked already is answered revoked.
    pub fn revoke_refresh(&self, token: &str, client: &ClientId) -> Revocation {
        let mut grants = self.lock();
        let family = match grants.refresh.get(&random::fingerprint(token)) {
            Some(r) => Some(r.family.clone()),
            None => grants.recognise(token).map(|r| r.family().to_owned()),
        };
        let Some(family) = family else {
            return Revocation::Unknown;
        };
        if grants.holder(&family) != Some(client) {
            return Revocation::OtherClient;
        }
        grants.revoke_family(&family, Ending::SignedOut);
        Revocation::Revoked
    }

    /// Refresh token `fp`, if it is live: unused, unrevoked, unexpired.
    pub fn live_refresh(&self, fp: &str, now: OffsetDateTime) -> Option<RefreshIntrospection> {
        let grants = self.lock();
        let r = grants.refresh.get(fp)?;
        let f = grants.families.get(&r.family)?;
        (r.used_at.is_none() && r.expires_at > now).then(|| RefreshIntrospection {
            client_id: f.client_id.clone(),
            sub: f.sub.clone(),
            sid: f.sid.clone(),
            scope: f.scope.clone(),
            expires_at: r.expires_at,
        })
    }

    /// Test hook: takes the stored response out of `parent`'s rotation, as if its JWTs were
    /// still being signed.
    #[doc(hidden)]
    pub fn unsettle_rotation_for_tests(&self, parent: &str) -> Option<Value> {
        let mut grants = self.lock();
        let record = grants.refresh.get_mut(&random::fingerprint(parent))?;
        record.child.as_mut()?.response.take()
    }

    /// Test hook: stores `response` as `parent`'s rotation's and wakes the waiting repeats, as a
    /// rotation settling does.
    #[doc(hidden)]
    pub fn settle_rotation_for_tests(&self, parent: &str, response: Value) {
        {
            let mut grants = self.lock();
            if let Some(rotation) = grants
                .refresh
                .get_mut(&random::fingerprint(parent))
                .and_then(|r| r.child.as_mut())
            {
                rotation.response = Some(response);
            }
        }
        self.rotations.notify_waiters();
    }
}
