//! PKCE (RFC 7636), S256 only: `plain` is refused everywhere (RFC 9700 §2.1.1).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::random::constant_time_eq;

/// A `code_challenge` sent with `code_challenge_method=S256`: base64url of a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PkceError {
    #[error("code_challenge is required for public clients (RFC 7636 §4.4.1)")]
    MissingChallenge,
    #[error("code_challenge_method must be S256; '{0}' is not supported")]
    UnsupportedMethod(String),
    #[error("code_challenge must be 43 base64url characters (an S256 digest)")]
    MalformedChallenge,
    #[error("code_verifier is required")]
    MissingVerifier,
    #[error("code_verifier must be 43-128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)")]
    MalformedVerifier,
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

impl CodeChallenge {
    /// Parses the pair from an authorization request. A missing method means `plain` per
    /// RFC 7636 §4.3, which we refuse.
    pub fn parse(challenge: &str, method: Option<&str>) -> Result<Self, PkceError> {
        match method {
            Some("S256") => {}
            Some(other) => return Err(PkceError::UnsupportedMethod(other.to_owned())),
            None => return Err(PkceError::UnsupportedMethod("plain".to_owned())),
        }
        let ok = challenge.len() == 43
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(challenge.to_owned()))
        } else {
            Err(PkceError::MalformedChallenge)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks a `code_verifier` from the token request against this challenge.
    pub fn verify(&self, verifier: Option<&str>) -> Result<(), PkceError> {
        let verifier = verifier.ok_or(PkceError::MissingVerifier)?;
        let well_formed = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !well_formed {
            return Err(PkceError::MalformedVerifier);
        }
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if constant_time_eq(computed.as_bytes(), self.0.as_bytes()) {
            Ok(())
        } else {
            Err(PkceError::Mismatch)
        }
    }
}

/// The S256 challenge of a verifier (for tests and tools).
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    #[test]
    fn rfc7636_appendix_b_vector_verifies() {
        let c = CodeChallenge::parse("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", Some("S256"))
            .unwrap();
        assert_eq!(c.verify(Some(VERIFIER)), Ok(()));
        assert_eq!(s256(VERIFIER), c.as_str());
    }

    #[test]
    fn plain_missing_and_unknown_methods_are_refused() {
        let ch = s256(VERIFIER);
        assert!(matches!(
            CodeChallenge::parse(&ch, Some("plain")),
            Err(PkceError::UnsupportedMethod(_))
        ));
        assert!(matches!(
            CodeChallenge::parse(&ch, None),
            Err(PkceError::UnsupportedMethod(_))
        ));
        assert!(matches!(
            CodeChallenge::parse(&ch, Some("S512")),
            Err(PkceError::UnsupportedMethod(_))
        ));
        assert_eq!(
            CodeChallenge::parse("short", Some("S256")),
            Err(PkceError::MalformedChallenge)
        );
    }

    #[test]
    fn malformed_or_wrong_verifiers_fail() {
        let c = CodeChallenge::parse(&s256(VERIFIER), Some("S256")).unwrap();
        assert_eq!(c.verify(None), Err(PkceError::MissingVerifier));
        assert_eq!(
            c.verify(Some(&"a".repeat(42))),
            Err(PkceError::MalformedVerifier)
        );
        assert_eq!(
            c.verify(Some(&"a".repeat(129))),
            Err(PkceError::MalformedVerifier)
        );
        assert_eq!(
            c.verify(Some(&format!("{}!", &"a".repeat(43)))),
            Err(PkceError::MalformedVerifier)
        );
        assert_eq!(c.verify(Some(&"a".repeat(43))), Err(PkceError::Mismatch));
    }
}
