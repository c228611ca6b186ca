//! Session JWTs: ES256, five minutes by default, verifiable offline against `/.well-known/jwks.json`.
//! Claims: iss, sub, tenant, sid, device_id, is_guest, iat, exp, plus `lat` (when the session was
//! last checked against the database) so a JWT-only heartbeat can tell when it must look again.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jose_keys::{KeySet, SigningAlg, SigningKey};
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
    if let Some(es256) = key.es256() {
        return es256
            .sign_jws(&key.kid, Some(TYP), claims)
            .map_err(|e| SessionJwtError::Signing(e.to_string()));
    }
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
    let claims = match es256_public_point(&key) {
        Some(point) => verify_es256(token, &point, issuer)?,
        None => {
            let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
            v.validate_exp = false;
            v.validate_aud = false;
            v.required_spec_claims = HashSet::new();
            v.set_issuer(&[issuer]);
            jsonwebtoken::decode::<SessionClaims>(token, &key.decoding, &v)
                .map_err(|_| SessionJwtError::Signature)?
                .claims
        }
    };
    if claims.exp <= now.unix_timestamp() {
        return Err(SessionJwtError::Expired);
    }
    Ok(claims)
}

/// The uncompressed SEC1 point (`04 || x || y`) of an ES256 key, from its JWK.
fn es256_public_point(key: &SigningKey) -> Option<[u8; 65]> {
    if key.alg != SigningAlg::ES256 {
        return None;
    }
    let coordinate = |name: &str| {
        key.public_jwk
            .get(name)
            .and_then(serde_json::Value::as_str)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .filter(|v| v.len() == 32)
    };
    let (x, y) = (coordinate("x")?, coordinate("y")?);
    let mut point = [0u8; 65];
    point[0] = 4;
    point[1..33].copy_from_slice(&x);
    point[33..].copy_from_slice(&y);
    Some(point)
}

/// What `jsonwebtoken::decode` checks for an ES256 session JWT (the header was checked by the
/// caller), with ring's P-256 verification: the segments split as jsonwebtoken splits them
/// (signature after the last dot, claims after the one before), the 64-byte `r || s` signature
/// over `header.claims`, the claims' shape and `iss`. Every failure is `Signature`, as before.
fn verify_es256(
    token: &str,
    point: &[u8; 65],
    issuer: &str,
) -> Result<SessionClaims, SessionJwtError> {
    let (message, signature) = token.rsplit_once('.').ok_or(SessionJwtError::Signature)?;
    let (_, claims) = message.rsplit_once('.').ok_or(SessionJwtError::Signature)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| SessionJwtError::Signature)?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(message.as_bytes(), &signature)
        .map_err(|_| SessionJwtError::Signature)?;
    let claims = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| SessionJwtError::Signature)?;
    let claims: SessionClaims =
        serde_json::from_slice(&claims).map_err(|_| SessionJwtError::Signature)?;
    if claims.iss != issuer {
        return Err(SessionJwtError::Signature);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ISS: &str = "https://registry.example";

    fn claims(now: i64) -> SessionClaims {
        SessionClaims {
            iss: ISS.into(),
            sub: "alice".into(),
            tenant: "acme".into(),
            sid: "s1".into(),
            device_id: "d1".into(),
            is_guest: false,
            iat: now,
            exp: now + 300,
            lat: now,
            sexp: now + 3600,
        }
    }

    fn keys() -> KeySet {
        let mut keys = KeySet::load(&[], None).unwrap();
        keys.ensure(SigningAlg::ES256).unwrap();
        keys
    }

    #[test]
    fn ring_signed_jwts_verify_with_jsonwebtoken_and_the_other_way_round() {
        let keys = keys();
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let c = claims(now.unix_timestamp());
        let key = keys.active(SigningAlg::ES256).unwrap();

        let ours = sign(&keys, &c).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        v.set_issuer(&[ISS]);
        v.validate_aud = false;
        let theirs_view = jsonwebtoken::decode::<SessionClaims>(&ours, &key.decoding, &v).unwrap();
        assert_eq!(theirs_view.claims, c);
        assert_eq!(theirs_view.header.typ.as_deref(), Some(TYP));
        assert_eq!(theirs_view.header.kid.as_deref(), Some(key.kid.as_str()));

        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some(TYP.into());
        let theirs = jsonwebtoken::encode(&header, &c, &key.encoding).unwrap();
        // The same header segment, byte for byte.
        assert_eq!(ours.split('.').next(), theirs.split('.').next());
        assert_eq!(verify(&keys, &theirs, ISS, now).unwrap(), c);
        assert_eq!(verify(&keys, &ours, ISS, now).unwrap(), c);
    }

    #[test]
    fn a_changed_signature_claim_or_issuer_is_refused() {
        let keys = keys();
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let jwt = sign(&keys, &claims(now.unix_timestamp())).unwrap();
        let (message, signature) = jwt.rsplit_once('.').unwrap();

        let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
        sig[10] ^= 1;
        let bad_sig = format!("{message}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(
            verify(&keys, &bad_sig, ISS, now),
            Err(SessionJwtError::Signature)
        );

        let (header, _) = message.split_once('.').unwrap();
        let mut other = claims(now.unix_timestamp());
        other.sub = "mallory".into();
        let forged = format!(
            "{header}.{}.{signature}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap())
        );
        assert_eq!(
            verify(&keys, &forged, ISS, now),
            Err(SessionJwtError::Signature)
        );

        assert_eq!(
            verify(&keys, &jwt, "https://other.example", now),
            Err(SessionJwtError::Signature)
        );
        assert_eq!(
            verify(&keys, &format!("{jwt}.x"), ISS, now),
            Err(SessionJwtError::Malformed)
        );
        let later = now + time::Duration::seconds(301);
        assert_eq!(
            verify(&keys, &jwt, ISS, later),
            Err(SessionJwtError::Expired)
        );
    }
}
