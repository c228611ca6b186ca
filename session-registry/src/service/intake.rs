//! The ID-token intake rules shared by sign-in and re-authentication: what an ID token that
//! failed verification is answered, when the person signed in, and the single-use record of it.

use serde_json::Value;

use crate::error::ApiError;
use crate::oidc::OidcError;
use crate::refusal::Refusal;
use crate::store::UsedCredential;

/// The answer to an ID token that failed the intake rules: a refusal, or `503` when the
/// tenant's IdP could not be asked.
pub(super) fn id_token_refused(e: OidcError) -> ApiError {
    match e {
        OidcError::IssuerUnreachable(detail) => ApiError::IssuerUnavailable(detail),
        e => Refusal::from(e).into(),
    }
}

/// An ID token's `auth_time` (when the person signed in at the IdP), else its `iat`, never
/// later than `now`.
pub(super) fn auth_time_of(claims: &Value, now: i64) -> i64 {
    claims
        .get("auth_time")
        .and_then(Value::as_i64)
        .or_else(|| claims.get("iat").and_then(Value::as_i64))
        .unwrap_or(now)
        .min(now)
}

/// The single-use record of an ID token: its hash, kept until it expires.
pub(super) fn spent_id_token(token: &str, claims: &Value, now: i64) -> UsedCredential {
    UsedCredential {
        kind: "id_token",
        hash: crate::token::hash_hex(token),
        expires_at: claims
            .get("exp")
            .and_then(Value::as_i64)
            .unwrap_or(now)
            .max(now)
            + crate::oidc::LEEWAY,
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
    fn auth_time_falls_back_to_iat_and_never_lies_in_the_future() {
        assert_eq!(auth_time_of(&json!({"auth_time": 90, "iat": 95}), 100), 90);
        assert_eq!(auth_time_of(&json!({"iat": 95}), 100), 95);
        assert_eq!(auth_time_of(&json!({"auth_time": 500}), 100), 100);
    }

    #[test]
    fn a_spent_id_token_is_kept_by_hash_until_it_expires() {
        let spent = spent_id_token("eyJ.secret.sig", &json!({"exp": 700}), 100);
        assert_eq!(spent.kind, "id_token");
        assert_eq!(spent.expires_at, 700 + crate::oidc::LEEWAY);
        assert!(!spent.hash.contains("secret"));
    }
}
