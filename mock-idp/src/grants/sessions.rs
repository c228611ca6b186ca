//! IdP sessions: started at a sign-in and named by a browser cookie (stored by the cookie's
//! fingerprint), joined by every client that gets a code in them, ended by a sign-out (which
//! revokes the refresh families bound to them).

use std::collections::BTreeSet;

use time::{Duration, OffsetDateTime};

use super::{GrantStore, IdpSession};
use crate::random;

impl GrantStore {
    /// Starts an IdP session for `sub`; returns the cookie value naming it, and the session.
    pub fn start_session(
        &self,
        sub: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> (String, IdpSession) {
        let handle = random::token();
        let session = IdpSession {
            sid: random::id(),
            sub: sub.to_owned(),
            auth_time: now,
            expires_at: now + ttl,
            clients: BTreeSet::new(),
        };
        self.lock()
            .sessions
            .insert(random::fingerprint(&handle), session.clone());
        (handle, session)
    }

    /// Signs `sub` in again in the live session named by `cookie` (a step-up: `prompt=login`,
    /// `max_age` past): the same session — its sid, and the clients that joined it, whose
    /// sign-out and back-channel logout it carries — signed in at `now` and for `ttl` from now,
    /// under a new cookie value (the old one names nothing after, as at any sign-in: a cookie
    /// fixed or seen before does not carry the fresh sign-in). `None` when the cookie names no
    /// live session of `sub`: the caller starts one. A new session per sign-in left the one
    /// before it live for its whole lifetime, with its clients, named by a cookie no browser held:
    /// the browser's sign-out ended only the newest. (Two sign-ins posted at once from one
    /// browser still make two sessions: the second finds the cookie's session renamed.)
    pub fn sign_in_again(
        &self,
        cookie: &str,
        sub: &str,
        now: OffsetDateTime,
        ttl: Duration,
    ) -> Option<(String, IdpSession)> {
        let mut grants = self.lock();
        let old = random::fingerprint(cookie);
        if !grants
            .sessions
            .get(&old)
            .is_some_and(|s| s.sub == sub && s.expires_at > now)
        {
            return None;
        }
        let mut session = grants.sessions.remove(&old)?;
        session.auth_time = now;
        session.expires_at = now + ttl;
        let handle = random::token();
        grants
            .sessions
            .insert(random::fingerprint(&handle), session.clone());
        Some((handle, session))
    }

    /// The live session named by cookie value `cookie`.
    pub fn session_by_cookie(&self, cookie: &str, now: OffsetDateTime) -> Option<IdpSession> {
        self.lock()
            .sessions
            .get(&random::fingerprint(cookie))
            .filter(|s| s.expires_at > now)
            .cloned()
    }

    /// Whether session `sid` exists and is `sub`'s.
    pub fn is_session_of(&self, sid: &str, sub: &str) -> bool {
        self.lock()
            .sessions
            .values()
            .any(|s| s.sid == sid && s.sub == sub)
    }

    /// The sids of every session of `sub`.
    pub fn sessions_of(&self, sub: &str) -> Vec<String> {
        self.lock()
            .sessions
            .values()
            .filter(|s| s.sub == sub)
            .map(|s| s.sid.clone())
            .collect()
    }

    /// Every live session.
    pub fn live_sessions(&self, now: OffsetDateTime) -> Vec<IdpSession> {
        self.lock()
            .sessions
            .values()
            .filter(|s| s.expires_at > now)
            .cloned()
            .collect()
    }

    /// Ends the sessions `sids` and revokes the refresh families bound to them; returns the
    /// sessions that existed.
    pub fn end_sessions(&self, sids: &[String]) -> Vec<IdpSession> {
        let mut grants = self.lock();
        let mut ended = Vec::new();
        for sid in sids {
            let key = grants
                .sessions
                .iter()
                .find(|(_, s)| s.sid == *sid)
                .map(|(k, _)| k.clone());
            if let Some(s) = key.and_then(|k| grants.sessions.remove(&k)) {
                grants.revoke_session_families(sid);
                ended.push(s);
            }
        }
        ended
    }
}
