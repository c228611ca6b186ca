//! Who an account is: (issuer, subject), and the stable key that names it in every backend.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AccountIdError {
    #[error("issuer must be a non-empty URL of at most 2048 characters")]
    Issuer,
    #[error("subject must be 1-255 characters without control characters")]
    Subject,
    #[error("'{0}' is not an account key (43 base64url characters)")]
    Key(String),
}

/// An OpenID issuer identifier, compared exactly as OIDC requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Issuer(String);

impl Issuer {
    pub fn parse(s: &str) -> Result<Self, AccountIdError> {
        let ok = !s.is_empty()
            && s.len() <= 2048
            && !s.chars().any(char::is_control)
            && s.contains("://");
        ok.then(|| Self(s.to_owned())).ok_or(AccountIdError::Issuer)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The `sub` claim: unique within its issuer, never reassigned (OIDC Core §2).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Subject(String);

impl Subject {
    pub fn parse(s: &str) -> Result<Self, AccountIdError> {
        let ok = !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control);
        ok.then(|| Self(s.to_owned()))
            .ok_or(AccountIdError::Subject)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_conversions {
    ($t:ident) => {
        impl TryFrom<String> for $t {
            type Error = AccountIdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    };
}
string_conversions!(Issuer);
string_conversions!(Subject);

/// An account: one subject at one issuer. Two logins with the same pair are the same account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AccountId {
    pub issuer: Issuer,
    pub subject: Subject,
}

impl AccountId {
    pub fn new(issuer: &str, subject: &str) -> Result<Self, AccountIdError> {
        Ok(Self {
            issuer: Issuer::parse(issuer)?,
            subject: Subject::parse(subject)?,
        })
    }

    /// The account's key: base64url(SHA-256(issuer ‖ 0x00 ‖ subject)). Stable, fixed length, and
    /// safe in keyring entry names and file names whatever the issuer or subject contain.
    pub fn key(&self) -> AccountKey {
        let mut h = Sha256::new();
        h.update(self.issuer.as_str().as_bytes());
        h.update([0u8]);
        h.update(self.subject.as_str().as_bytes());
        AccountKey(URL_SAFE_NO_PAD.encode(h.finalize()))
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.subject.as_str(), self.issuer.as_str())
    }
}

/// The storage key of an account (see [`AccountId::key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountKey(String);

impl AccountKey {
    pub fn parse(s: &str) -> Result<Self, AccountIdError> {
        let ok = s.len() == 43
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(s.to_owned()))
            .ok_or_else(|| AccountIdError::Key(s.escape_default().to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountKey {
    type Error = AccountIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<AccountKey> for String {
    fn from(v: AccountKey) -> String {
        v.0
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_key_separates_issuer_and_subject() {
        let a = AccountId::new("https://i.example/a", "bc").unwrap();
        let b = AccountId::new("https://i.example/ab", "c").unwrap();
        assert_ne!(a.key(), b.key());
        assert_eq!(
            a.key(),
            AccountId::new("https://i.example/a", "bc").unwrap().key()
        );
    }

    proptest! {
        #[test]
        fn keys_are_file_and_keyring_safe(issuer in "https://[\\PC]{1,200}", subject in "[\\PC]{1,60}") {
            let key = AccountId::new(&issuer, &subject).unwrap().key();
            prop_assert_eq!(key.as_str().len(), 43);
            prop_assert!(key.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert!(AccountKey::parse(key.as_str()).is_ok());
        }
    }
}
