//! Session JWTs: ES256, five minutes by default, verifiable offline against `/.well-known/jwks.json`.
//! Claims: iss, sub, tenant, sid, device_id, is_guest, iat, exp, plus `lat` (when the session was
//! last checked against the database) so a JWT-only heartbeat can tell when it must look again.

use std::collections::HashSet;

use jose_keys::{KeySet, SigningAlg};
use serde::{Deserialize, Serialize};

/// The JOSE `typ` of session JWTs (RFC 8725 §3.11 explicit typing).
pub const TYP: &str = "session+jwt";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionClaims {
    pub iss: String,
    pub sub: String,
    pub tenant: String,
    pub sid: String,
    pub device_id: String,
    pub is_guest: bool,
    pub iat: i64,
    pub exp: i64,
    /// Last time the session row was checked (unix seconds).
    pub lat: i64,
    /// The session's own expiry: no JWT outlives it.
    pub sexp: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionJwtError {
    #[error("the session JWT is malformed")]
    Malformed,
    #[error("the session JWT was not signed by this registry")]
    UnknownKey,
    #[error("the session JWT signature is invalid")]
    Signature,
    #[error("the session JWT has expired")]
    Expired,
    #[error("signing failed: {0}")]
    Signing(String),
}

pub fn sign(keys: &KeySet, claims: &SessionClaims) -> Result<String, SessionJwtError> {
    let key = keys
        .active(SigningAlg::ES256)
        .ok_or(SessionJwtError::UnknownKey)?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    header.typ = Some(TYP.into());
    jsonwebtoken::encode(&header, claims, &key.encoding)
        .map_err(|e| SessionJwtError::Signing(e.to_string()))
}

/// Verifies signature (ES256 only, key by `kid`), issuer and expiry against `now`.
pub fn verify(
    keys: &KeySet,
    token: &str,
    issuer: &str,
    now: time::OffsetDateTime,
) -> Result<SessionClaims, SessionJwtError> {
    if token.len() > 8 * 1024 {
        return Err(SessionJwtError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| SessionJwtError::Malformed)?;
    // Our own explicit type: an IdP's ID token or access token is never a session JWT.
    if header.typ.as_deref() != Some(TYP) {
        return Err(SessionJwtError::Malformed);
    }
    if header.alg != jsonwebtoken::Algorithm::ES256 {
        return Err(SessionJwtError::Signature);
    }
    let kid = header.kid.ok_or(SessionJwtError::UnknownKey)?;
    let key = keys.by_kid(&kid, now).ok_or(SessionJwtError::UnknownKey)?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims = HashSet::new();
    v.set_issuer(&[issuer]);
    let claims = jsonwebtoken::decode::<SessionClaims>(token, &key.decoding, &v)
        .map_err(|_| SessionJwtError::Signature)?
        .claims;
    if claims.exp <= now.unix_timestamp() {
        return Err(SessionJwtError::Expired);
    }
    Ok(claims)
}
