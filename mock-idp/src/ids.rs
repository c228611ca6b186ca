//! Typed protocol values. Each constructor rejects bad input, so holding one means it is valid.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a protocol value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error(
        "tenant slug must be 1-63 characters of a-z, 0-9 and '-', not starting with '-': {0:?}"
    )]
    Tenant(String),
    #[error("username must be 1-64 characters of letters, digits, '.', '_', '-' or '@': {0:?}")]
    Username(String),
    #[error("client_id must be 1-128 printable ASCII characters without spaces")]
    ClientId,
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::parse(&s).map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

/// A tenant's slug: the first path segment of its issuer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);
string_newtype!(TenantId);

impl TenantId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 63
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && s != "admin"
            && s != "healthz";
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Tenant(s.to_owned()))
        }
    }
}

/// A login name within a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);
string_newtype!(Username);

impl Username {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.chars().count() <= 64
            && s.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::Username(s.to_owned()))
        }
    }
}

/// An OAuth client identifier (RFC 6749 §2.2; we restrict it to visible ASCII).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(String);
string_newtype!(ClientId);

impl ClientId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::ClientId)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_slugs_are_strict() {
        assert!(TenantId::parse("acme").is_ok());
        assert!(TenantId::parse("acme-2").is_ok());
        for bad in ["", "-x", "Acme", "a/b", "a b", "admin", &"x".repeat(64)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn usernames_refuse_markup_and_spaces() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("alice@acme.example").is_ok());
        for bad in ["", "a b", "<script>", "a/b", &"x".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
