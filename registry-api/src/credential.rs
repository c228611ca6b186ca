//! A credential on the wire: kept as a `SecretString` from the moment it is read until it is
//! written out, printing `[REDACTED]` in `Debug`.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ID token, session token or session JWT in a request or answer.
#[derive(Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String))]
pub struct Credential(SecretString);

impl Credential {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The credential itself, for the one place that needs it (hashing, verifying, sending).
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

impl From<SecretString> for Credential {
    fn from(s: SecretString) -> Self {
        Self(s)
    }
}

impl From<&SecretString> for Credential {
    fn from(s: &SecretString) -> Self {
        Self(s.clone())
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Serialize for Credential {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Credential {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_credential_and_json_carries_it() {
        let c = Credential::new("lyst_acme_secret");
        assert_eq!(format!("{c:?}"), "[REDACTED]");
        assert_eq!(
            serde_json::to_string(&c).unwrap_or_default(),
            r#""lyst_acme_secret""#
        );
        let back: Credential =
            serde_json::from_str(r#""eyJ-id-token""#).unwrap_or_else(|_| Credential::new(""));
        assert_eq!(back.expose(), "eyJ-id-token");
    }
}
