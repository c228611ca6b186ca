//! Signing and verifying the IdP's own JWTs: ID tokens, RFC 9068 access tokens and back-channel
//! logout tokens, plus the deliberate mistakes a fault can ask for (see [`IdTokenTamper`]).

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::config::SigningAlg;
use crate::keys::{KeySet, SigningKey};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token header names no kid known to this tenant")]
    UnknownKid,
    #[error("token alg does not match its key")]
    AlgMismatch,
    #[error("token signature or claims are invalid: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("token type is {found:?}, expected {expected}")]
    WrongType {
        expected: &'static str,
        found: Option<String>,
    },
    #[error("token is not an ID token: {0}")]
    NotAnIdToken(&'static str),
    #[error("signing failed: {0}")]
    Signing(String),
}

fn algorithm(alg: SigningAlg) -> Algorithm {
    alg.algorithm()
}

/// Signs `claims` with `key`, `kid` in the header, and `typ` if given.
pub fn sign(claims: &Value, key: &SigningKey, typ: Option<&str>) -> Result<String, JwtError> {
    if let Some(es256) = key.es256() {
        return es256
            .sign_jws(&key.kid, typ, claims)
            .map_err(|e| JwtError::Signing(e.to_string()));
    }
    let mut header = Header::new(algorithm(key.alg));
    header.kid = Some(key.kid.clone());
    header.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding)
        .map_err(|e| JwtError::Signing(e.to_string()))
}

/// `at_hash` (OIDC Core §3.1.3.6): left half of SHA-256 of the access token, base64url. Both our
/// algorithms use SHA-256.
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// Verifies a token this tenant signed: known `kid`, the key's own algorithm, signature, `iss`,
/// `typ` when asked, and `exp` against our clock (unless `allow_expired`, as `id_token_hint` needs).
pub fn verify_own(
    token: &str,
    keys: &KeySet,
    issuer: &str,
    expected_typ: Option<&'static str>,
    now: OffsetDateTime,
    allow_expired: bool,
) -> Result<Value, JwtError> {
    if token.len() > 16 * 1024 {
        return Err(JwtError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    let kid = header.kid.as_deref().ok_or(JwtError::UnknownKid)?;
    let key = keys.by_kid(kid, now).ok_or(JwtError::UnknownKid)?;
    if header.alg != algorithm(key.alg) {
        return Err(JwtError::AlgMismatch);
    }
    if let Some(expected) = expected_typ {
        if header.typ.as_deref() != Some(expected) {
            return Err(JwtError::WrongType {
                expected,
                found: header.typ,
            });
        }
    }
    let mut validation = Validation::new(algorithm(key.alg));
    validation.validate_exp = false; // checked below against the injected clock
    validation.validate_aud = false;
    validation.required_spec_claims = HashSet::new();
    validation.set_issuer(&[issuer]);
    let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
        .map_err(|e| JwtError::Invalid(e.to_string()))?;
    let claims = data.claims;
    if !allow_expired {
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(JwtError::Expired)?;
        if exp <= now.unix_timestamp() {
            return Err(JwtError::Expired);
        }
    }
    Ok(claims)
}

/// Verifies an ID token this tenant signed, as `id_token_hint` needs it: everything
/// [`verify_own`] checks, a `typ` that is absent or `JWT` (an access token is `at+jwt`, a logout
/// token `logout+jwt`), and no `events` claim (which only logout tokens carry). An expired ID
/// token passes when `allow_expired` (RP-Initiated Logout 1.0 §2 accepts one as a hint).
/// The audience is the caller's to check: only it knows the tenant's clients.
pub fn verify_id_token(
    token: &str,
    keys: &KeySet,
    issuer: &str,
    now: OffsetDateTime,
    allow_expired: bool,
) -> Result<Value, JwtError> {
    if token.len() > 16 * 1024 {
        return Err(JwtError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
    match header.typ.as_deref() {
        None | Some("JWT") => {}
        Some(_) => {
            return Err(JwtError::WrongType {
                expected: "JWT",
                found: header.typ,
            })
        }
    }
    let claims = verify_own(token, keys, issuer, None, now, allow_expired)?;
    if claims.get("events").is_some() {
        return Err(JwtError::NotAnIdToken("it carries an events claim"));
    }
    if !claims.get("sub").is_some_and(Value::is_string) {
        return Err(JwtError::NotAnIdToken("it has no sub"));
    }
    Ok(claims)
}

/// Deliberate ID-token defects for relying-party tests, matching the OpenID conformance suite's
/// `condition/as/*` mutators. Applied by an `id_token` fault at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdTokenTamper {
    InvalidSignature,
    AlgNone,
    Hs256PublicKey,
    WrongIss,
    MissingIss,
    WrongAud,
    MissingAud,
    ExtraAud,
    WrongAzp,
    WrongSub,
    MissingSub,
    Expired,
    MissingExp,
    MissingIat,
    IatWeekAgo,
    IatFuture,
    NbfFuture,
    WrongNonce,
    MissingNonce,
    WrongAtHash,
    DropKid,
    UnknownKid,
    HostileKid,
    JkuHeader,
}

impl IdTokenTamper {
    fn mutate_claims(self, claims: &mut Value) {
        let Some(map) = claims.as_object_mut() else {
            return;
        };
        let now = map.get("iat").and_then(Value::as_i64).unwrap_or_default();
        let set = |map: &mut serde_json::Map<String, Value>, k: &str, v: Value| {
            map.insert(k.to_owned(), v);
        };
        match self {
            IdTokenTamper::WrongIss => {
                let iss = map
                    .get("iss")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                set(map, "iss", Value::from(format!("{iss}/")));
            }
            IdTokenTamper::MissingIss => drop(map.remove("iss")),
            IdTokenTamper::WrongAud => set(map, "aud", Value::from("someone-else")),
            IdTokenTamper::MissingAud => drop(map.remove("aud")),
            IdTokenTamper::ExtraAud => {
                let aud = map.get("aud").cloned().unwrap_or(Value::Null);
                set(
                    map,
                    "aud",
                    Value::from(vec![aud, Value::from("https://untrusted.example")]),
                );
                map.remove("azp");
            }
            IdTokenTamper::WrongAzp => set(map, "azp", Value::from("someone-else")),
            IdTokenTamper::WrongSub => set(map, "sub", Value::from("a-different-subject")),
            IdTokenTamper::MissingSub => drop(map.remove("sub")),
            IdTokenTamper::Expired => set(map, "exp", Value::from(now - 301)),
            IdTokenTamper::MissingExp => drop(map.remove("exp")),
            IdTokenTamper::MissingIat => drop(map.remove("iat")),
            IdTokenTamper::IatWeekAgo => set(map, "iat", Value::from(now - 7 * 86400)),
            IdTokenTamper::IatFuture => set(map, "iat", Value::from(now + 301)),
            IdTokenTamper::NbfFuture => set(map, "nbf", Value::from(now + 3600)),
            IdTokenTamper::WrongNonce => set(map, "nonce", Value::from("not-the-nonce-you-sent")),
            IdTokenTamper::MissingNonce => drop(map.remove("nonce")),
            IdTokenTamper::WrongAtHash => {
                set(map, "at_hash", Value::from(at_hash("not-the-access-token")))
            }
            _ => {}
        }
    }

    /// Signs `claims` with the defect applied.
    pub fn sign(self, mut claims: Value, key: &SigningKey) -> Result<String, JwtError> {
        self.mutate_claims(&mut claims);
        let mut header = Header::new(algorithm(key.alg));
        header.kid = Some(key.kid.clone());
        let signing_err = |e: jsonwebtoken::errors::Error| JwtError::Signing(e.to_string());
        match self {
            IdTokenTamper::AlgNone => {
                let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
                let c = URL_SAFE_NO_PAD.encode(claims.to_string());
                return Ok(format!("{h}.{c}."));
            }
            IdTokenTamper::Hs256PublicKey => {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some(key.kid.clone());
                let k = EncodingKey::from_secret(key.public_pem.as_bytes());
                return jsonwebtoken::encode(&h, &claims, &k).map_err(signing_err);
            }
            IdTokenTamper::DropKid => header.kid = None,
            IdTokenTamper::UnknownKid => header.kid = Some("unknown-kid".into()),
            IdTokenTamper::HostileKid => header.kid = Some("../../etc/passwd' OR '1'='1".into()),
            IdTokenTamper::JkuHeader => {
                header.jku = Some("http://127.0.0.1:9/attacker-jwks.json".into())
            }
            _ => {}
        }
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(signing_err)?;
        if self == IdTokenTamper::InvalidSignature {
            return Ok(flip_signature_bit(&token));
        }
        Ok(token)
    }
}

/// Flips one bit in the signature segment.
fn flip_signature_bit(token: &str) -> String {
    let Some((head, sig)) = token.rsplit_once('.') else {
        return token.to_owned();
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap_or_default();
    let mid = bytes.len() / 2;
    if let Some(b) = bytes.get_mut(mid) {
        *b ^= 0x01;
    }
    format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keyset() -> KeySet {
        let mut k = KeySet::default();
        k.ensure(SigningAlg::ES256).unwrap();
        k
    }

    #[test]
    fn own_tokens_verify_and_expire_by_the_injected_clock() {
        let keys = keyset();
        let key = keys.active(SigningAlg::ES256).unwrap();
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let t = now.unix_timestamp();
        let token = sign(
            &json!({"iss": "http://i/acme", "exp": t + 60, "sub": "s"}),
            &key,
            Some("at+jwt"),
        )
        .unwrap();
        assert!(verify_own(&token, &keys, "http://i/acme", Some("at+jwt"), now, false).is_ok());
        assert_eq!(
            verify_own(
                &token,
                &keys,
                "http://i/acme",
                Some("at+jwt"),
                now + time::Duration::seconds(61),
                false
            ),
            Err(JwtError::Expired)
        );
        assert!(matches!(
            verify_own(&token, &keys, "http://i/globex", None, now, false),
            Err(JwtError::Invalid(_))
        ));
        assert!(matches!(
            verify_own(
                &token,
                &keys,
                "http://i/acme",
                Some("logout+jwt"),
                now,
                false
            ),
            Err(JwtError::WrongType { .. })
        ));
    }

    #[test]
    fn only_id_tokens_pass_as_id_tokens_expired_or_not() {
        let keys = keyset();
        let key = keys.active(SigningAlg::ES256).unwrap();
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let id = json!({"iss": "http://i/acme", "sub": "s", "aud": "c", "exp": now.unix_timestamp() - 60});
        let verify = |t: &str| verify_id_token(t, &keys, "http://i/acme", now, true);
        for typ in [None, Some("JWT")] {
            assert!(verify(&sign(&id, &key, typ).unwrap()).is_ok(), "{typ:?}");
        }
        for typ in ["at+jwt", "logout+jwt", "jwt+whatever"] {
            assert!(matches!(
                verify(&sign(&id, &key, Some(typ)).unwrap()),
                Err(JwtError::WrongType { .. })
            ));
        }
        let mut logout = id.clone();
        logout["events"] = json!({"http://schemas.openid.net/event/backchannel-logout": {}});
        assert!(matches!(
            verify(&sign(&logout, &key, None).unwrap()),
            Err(JwtError::NotAnIdToken(_))
        ));
        assert_eq!(
            verify_id_token(
                &sign(&id, &key, None).unwrap(),
                &keys,
                "http://i/acme",
                now,
                false
            ),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn tampered_tokens_fail_our_own_verification() {
        let keys = keyset();
        let key = keys.active(SigningAlg::ES256).unwrap();
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let claims = json!({"iss": "http://i/acme", "exp": now.unix_timestamp() + 60, "iat": now.unix_timestamp()});
        for tamper in [
            IdTokenTamper::InvalidSignature,
            IdTokenTamper::AlgNone,
            IdTokenTamper::Hs256PublicKey,
            IdTokenTamper::DropKid,
            IdTokenTamper::UnknownKid,
        ] {
            let token = tamper.sign(claims.clone(), &key).unwrap();
            assert!(
                verify_own(&token, &keys, "http://i/acme", None, now, false).is_err(),
                "{tamper:?} verified"
            );
        }
    }

    #[test]
    fn es256_tokens_match_jsonwebtoken_and_verify_with_the_public_key() {
        // ring's ECDSA nonce is random, so the signature differs from jsonwebtoken's (RFC 6979)
        // one; the header and claims segments must not, and jsonwebtoken must accept the
        // signature with the public key alone.
        let keys = keyset();
        let key = keys.active(SigningAlg::ES256).unwrap();
        let claims = json!({"iss": "http://i/acme", "sub": "s", "exp": 1, "scope": "openid"});
        for typ in [None, Some("at+jwt")] {
            let mut header = Header::new(Algorithm::ES256);
            header.kid = Some(key.kid.clone());
            header.typ = typ.map(str::to_owned);
            let expected = jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap();
            let token = sign(&claims, &key, typ).unwrap();
            let (signed, signature) = token.rsplit_once('.').unwrap();
            assert_eq!(
                Some(signed),
                expected.rsplit_once('.').map(|(s, _)| s),
                "typ {typ:?}"
            );
            assert_eq!(URL_SAFE_NO_PAD.decode(signature).unwrap().len(), 64);

            let public = jsonwebtoken::DecodingKey::from_ec_pem(key.public_pem.as_bytes()).unwrap();
            let mut validation = Validation::new(Algorithm::ES256);
            validation.validate_exp = false;
            validation.required_spec_claims = HashSet::new();
            let data = jsonwebtoken::decode::<Value>(&token, &public, &validation).unwrap();
            assert_eq!(data.claims, claims);
            assert_eq!(data.header.kid.as_deref(), Some(key.kid.as_str()));
            assert_eq!(data.header.typ.as_deref(), typ);

            let mut bad = URL_SAFE_NO_PAD.decode(signature).unwrap();
            bad[10] ^= 1;
            let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bad));
            assert!(jsonwebtoken::decode::<Value>(&forged, &public, &validation).is_err());
        }
    }

    #[test]
    fn at_hash_is_the_left_half_of_sha256() {
        // Computed independently: base64url(sha256(token)[..16]) with Python hashlib.
        assert_eq!(
            at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNqmhMoBW"),
            "gQPmO66Lr_U-HSdxLXF64g"
        );
    }
}
