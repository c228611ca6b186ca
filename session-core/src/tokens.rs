//! The tokens of one account, as secrets.

use base64::Engine;
use secrecy::SecretString;

/// What a sign-in or refresh yields.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub id_token: SecretString,
    pub access_token_expires_at: Option<i64>,
    /// The ID token's `is_guest` claim (false when absent: most providers have no guests).
    pub is_guest: bool,
}

/// The `exp` of a JWT, unverified (only to schedule a refresh; never to trust the token).
pub fn jwt_exp(token: &str) -> Option<i64> {
    jwt_claims(token)?.get("exp")?.as_i64()
}

/// The claims of a JWT, unverified: only for a token that was verified when it was received
/// (to read claims the typed verifier drops, such as `is_guest`), never to trust one.
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()
}
