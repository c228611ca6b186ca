//! The ID-token intake rules shared by sign-in and re-authentication: what an ID token that
//! failed verification is answered, when the person signed in, and the single-use record of it.

use serde_json::Value;

use crate::error::ApiError;
use crate::oidc::OidcError;
use crate::refusal::Refusal;
use crate::store::{IdpSignIn, UsedCredential};

/// The answer to an ID token that failed the intake rules: a refusal, or `503` when the
/// tenant's IdP could not be asked.
pub(super) fn id_token_refused(e: OidcError) -> ApiError {
    match e {
        OidcError::IssuerUnreachable(detail) => ApiError::IssuerUnavailable(detail),
        e => Refusal::from(e).into(),
    }
}

/// When the person signed in at the IdP: the ID token's `auth_time`, never later than `now`.
/// `None` when the IdP did not say (OIDC lets it leave `auth_time` out, e.g. of a refreshed ID
/// token): such a sign-in is never taken for a fresh one — its `iat` says when the token was
/// issued, which a refresh token can make "now" without anyone signing in.
pub(super) fn auth_time_of(claims: &Value, now: i64) -> Option<i64> {
    claims
        .get("auth_time")
        .and_then(Value::as_i64)
        .map(|t| t.min(now))
}

/// The single-use record of an ID token, kept until it expires. Its key is the hash of the
/// signed part (`header.payload`), not of the whole token: an ECDSA signature can be rewritten
/// (`s` → `n − s`) into another valid one, and that must not make a spent token new again.
pub(super) fn spent_id_token(token: &str, claims: &Value, now: i64) -> UsedCredential {
    let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
    UsedCredential {
        sign_in: idp_sign_in(claims, now),
        ..spent("id_token", signed, claims, now)
    }
}

/// The sign-in at the IdP a verified ID token comes from, as back-channel logouts name it;
/// `None` without `iss` and `sub` (which verification requires).
pub(super) fn idp_sign_in(claims: &Value, now: i64) -> Option<IdpSignIn> {
    let iss = claims.get("iss").and_then(Value::as_str)?;
    let sub = claims.get("sub").and_then(Value::as_str)?;
    Some(IdpSignIn {
        session: claims
            .get("sid")
            .and_then(Value::as_str)
            .map(|sid| crate::store::idp_session_key(iss, sid)),
        subject: crate::store::idp_subject_key(iss, sub),
        issued_at: claims.get("iat").and_then(Value::as_i64).unwrap_or(now),
    })
}

/// The single-use record of a logout token: its `jti`, kept until the token expires.
pub(super) fn spent_logout_jti(claims: &Value, now: i64) -> UsedCredential {
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .unwrap_or_default();
    spent("logout_jti", jti, claims, now)
}

/// `kind`'s record of `key` (hashed), kept until the token's `exp` plus the largest clock leeway
/// (until then it could still be accepted, whatever `--clock-leeway` says).
fn spent(kind: &'static str, key: &str, claims: &Value, now: i64) -> UsedCredential {
    UsedCredential {
        kind,
        hash: crate::token::hash_hex(key),
        expires_at: claims
            .get("exp")
            .and_then(Value::as_i64)
            .unwrap_or(now)
            .max(now)
            + crate::oidc::MAX_LEEWAY,
        sign_in: None,
    }
}

/// Whether `s` has a JWT's shape (three base64url segments, the first a JSON object's start).
pub(super) fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auth_time_is_only_what_the_idp_says_and_never_in_the_future() {
        assert_eq!(
            auth_time_of(&json!({"auth_time": 90, "iat": 95}), 100),
            Some(90)
        );
        assert_eq!(auth_time_of(&json!({"iat": 95}), 100), None);
        assert_eq!(auth_time_of(&json!({"auth_time": 500}), 100), Some(100));
    }

    #[test]
    fn two_signatures_of_one_id_token_spend_the_same_record() {
        let claims = json!({"exp": 700});
        assert_eq!(
            spent_id_token("eyJh.eyJp.sig-one", &claims, 100).hash,
            spent_id_token("eyJh.eyJp.sig-two", &claims, 100).hash
        );
        assert_ne!(
            spent_id_token("eyJh.eyJp.sig", &claims, 100).hash,
            spent_id_token("eyJh.eyJq.sig", &claims, 100).hash
        );
    }

    #[test]
    fn a_spent_id_token_is_kept_by_hash_until_it_expires() {
        let spent = spent_id_token("eyJ.secret.sig", &json!({"exp": 700}), 100);
        assert_eq!(spent.kind, "id_token");
        assert_eq!(spent.expires_at, 700 + crate::oidc::MAX_LEEWAY);
        assert!(!spent.hash.contains("secret"));
    }
}
