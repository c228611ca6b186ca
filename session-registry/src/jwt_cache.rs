//! Memos of session-JWT work that would otherwise repeat on every request: an ES256 verification
//! per presented JWT and an ES256 signature per answer were most of the registry's CPU on the
//! authenticate paths (`perf` in docs/benchmarks.md, bench/registry.sh).
//!
//! * **Verified JWTs**, keyed by the whole compact JWT: a JWT whose signature, `typ`, `alg`, key
//!   and issuer checked out once is not verified again. Expiry is checked on every use, and the
//!   caller still checks revocation every time, so a cached verification never outlives the JWT
//!   nor hides a revoke. The key is the full token (compared by equality, not by a hash of it).
//! * **Minted JWTs**, keyed by session id: an answer may carry the JWT minted for the same session
//!   and the same claims less than [`REUSE_SECS`] ago instead of signing a new one, so its
//!   lifetime is at least `JWT_TTL - REUSE_SECS` (capped, as always, by the session's expiry). A
//!   change to the session's expiry or guest flag, or another device id, never reuses.
//!
//! Both are cleared when the signing key rotates, so no answer carries a JWT of a retired key.

use std::sync::Arc;

use jose_keys::KeySet;
use quick_cache::sync::Cache;

use crate::jwt::{self, SessionClaims, SessionJwtError};

/// How recent a minted JWT must be to be handed out again.
pub const REUSE_SECS: i64 = 30;
/// Entries per cache (each roughly a JWT and its claims: under 1 KiB).
const CAPACITY: usize = 50_000;

pub struct JwtCache {
    verified: Cache<String, Arc<SessionClaims>>,
    minted: Cache<String, Arc<Minted>>,
}

struct Minted {
    claims: SessionClaims,
    jwt: String,
}

impl Default for JwtCache {
    fn default() -> Self {
        Self::new()
    }
}

impl JwtCache {
    pub fn new() -> Self {
        Self {
            verified: Cache::new(CAPACITY),
            minted: Cache::new(CAPACITY),
        }
    }

    /// [`jwt::verify`], remembering tokens that passed. Expiry is checked against `now` on every
    /// call; a failure is never remembered.
    pub fn verify(
        &self,
        keys: &KeySet,
        token: &str,
        issuer: &str,
        now: time::OffsetDateTime,
    ) -> Result<SessionClaims, SessionJwtError> {
        if let Some(claims) = self.verified.get(token) {
            if claims.exp <= now.unix_timestamp() {
                self.verified.remove(token);
                return Err(SessionJwtError::Expired);
            }
            return Ok(SessionClaims::clone(&claims));
        }
        let claims = jwt::verify(keys, token, issuer, now)?;
        self.verified
            .insert(token.to_owned(), Arc::new(claims.clone()));
        Ok(claims)
    }

    /// A session JWT for `want`: the one minted for the same session within [`REUSE_SECS`] of
    /// `want.iat` with the same subject, tenant, device, guest flag and session expiry, else a
    /// freshly signed one (which is remembered).
    pub fn mint(&self, keys: &KeySet, want: &SessionClaims) -> Result<String, SessionJwtError> {
        if let Some(m) = self.minted.get(want.sid.as_str()) {
            let c = &m.claims;
            if want.iat - c.iat < REUSE_SECS
                && c.iat <= want.iat
                && c.sexp == want.sexp
                && c.is_guest == want.is_guest
                && c.sub == want.sub
                && c.tenant == want.tenant
                && c.device_id == want.device_id
                && c.iss == want.iss
            {
                return Ok(m.jwt.clone());
            }
        }
        let jwt = jwt::sign(keys, want)?;
        self.minted.insert(
            want.sid.clone(),
            Arc::new(Minted {
                claims: want.clone(),
                jwt: jwt.clone(),
            }),
        );
        Ok(jwt)
    }

    /// Forgets everything (the signing key rotated).
    pub fn clear(&self) {
        self.verified.clear();
        self.minted.clear();
    }

    /// Drops what can no longer be used at `now` (unix seconds): verified JWTs that have
    /// expired, minted ones too old to hand out again. Without this both held every session's
    /// JWT since the start until their capacity pushed them out (bench/soak.sh).
    pub fn forget_stale(&self, now: i64) {
        self.verified.retain(|_, c| c.exp > now);
        self.minted
            .retain(|_, m| now - m.claims.iat < REUSE_SECS && m.claims.iat <= now);
    }

    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        (self.verified.len(), self.minted.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jose_keys::SigningAlg;

    #[test]
    fn expired_verifications_and_minted_jwts_too_old_to_reuse_are_collected() {
        let mut keys = KeySet::load(&[], None).unwrap();
        keys.ensure(SigningAlg::ES256).unwrap();
        let cache = JwtCache::new();
        let claims = |sid: &str, iat: i64| SessionClaims {
            iss: "https://registry.test".into(),
            sub: "s".into(),
            tenant: "acme".into(),
            sid: sid.into(),
            device_id: "d".into(),
            is_guest: false,
            iat,
            exp: iat + 300,
            lat: iat,
            sexp: iat + 3_600,
        };
        let now = 1_900_000_000_i64;
        let early = cache.mint(&keys, &claims("s1", now - 20)).unwrap();
        let late = cache.mint(&keys, &claims("s2", now)).unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp(now).unwrap();
        cache
            .verify(&keys, &early, "https://registry.test", at)
            .unwrap();
        cache
            .verify(&keys, &late, "https://registry.test", at)
            .unwrap();
        cache.forget_stale(now);
        assert_eq!(cache.len(), (2, 2));
        cache.forget_stale(now + 10);
        assert_eq!(
            cache.len(),
            (2, 1),
            "s1's JWT, minted 30 s ago, is not handed out again"
        );
        cache.forget_stale(now + 280);
        assert_eq!(cache.len(), (1, 0), "s1's JWT has expired");
        cache.forget_stale(now + 300);
        assert_eq!(cache.len(), (0, 0));
    }
}
