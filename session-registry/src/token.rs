//! Session tokens: `lyst_{tenant}_{44 base62 chars}{6-char CRC32 checksum}`.
//!
//! 256 random bits (base62 of 32 bytes), a recognisable prefix so secret scanners can find leaked
//! tokens, and a checksum (as GitHub's token format has) so malformed tokens are refused without a
//! database hit. Only the SHA-256 of a token is stored; lookups compare hashes, so no raw token is
//! ever compared or logged.

use rand::rngs::OsRng;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// What every session token starts with.
pub const PREFIX: &str = "lyst_";
const BODY_LEN: usize = 44;
const CHECKSUM_LEN: usize = 6;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A well-formed session token (its checksum verified); the value itself is secret.
pub struct SessionToken {
    tenant: String,
    value: SecretString,
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionToken({}, [REDACTED])", self.tenant)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenFormatError {
    #[error("not a Lanyard session token (expected the lyst_ prefix)")]
    Prefix,
    #[error("the session token is malformed")]
    Malformed,
    #[error("the session token's checksum does not match (a typo or a truncated copy?)")]
    Checksum,
}

fn base62(mut n: u128, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn body_from_bytes(bytes: &[u8; 32]) -> String {
    // Two 128-bit halves of 22 base62 digits each carry the 256 bits.
    let hi = u128::from_be_bytes(bytes[..16].try_into().unwrap_or_default());
    let lo = u128::from_be_bytes(bytes[16..].try_into().unwrap_or_default());
    format!("{}{}", base62(hi, 22), base62(lo, 22))
}

fn checksum(tenant: &str, body: &str) -> String {
    let mut h = crc32fast::Hasher::new();
    h.update(tenant.as_bytes());
    h.update(b"_");
    h.update(body.as_bytes());
    base62(u128::from(h.finalize()), CHECKSUM_LEN)
}

impl SessionToken {
    /// A fresh token for `tenant` (a slug: lowercase letters, digits, '-').
    pub fn generate(tenant: &str) -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        let body = body_from_bytes(&bytes);
        let value = format!("{PREFIX}{tenant}_{body}{}", checksum(tenant, &body));
        Self {
            tenant: tenant.to_owned(),
            value: SecretString::from(value),
        }
    }

    /// Parses a presented token: prefix, shape and checksum, no database needed.
    pub fn parse(raw: &str) -> Result<Self, TokenFormatError> {
        let rest = raw.strip_prefix(PREFIX).ok_or(TokenFormatError::Prefix)?;
        let (tenant, tail) = rest.rsplit_once('_').ok_or(TokenFormatError::Malformed)?;
        let tenant_ok = !tenant.is_empty()
            && tenant.len() <= 63
            && tenant
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !tenant_ok
            || tail.len() != BODY_LEN + CHECKSUM_LEN
            || !tail.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(TokenFormatError::Malformed);
        }
        let (body, sum) = tail.split_at(BODY_LEN);
        if !crate::ct_eq(checksum(tenant, body).as_bytes(), sum.as_bytes()) {
            return Err(TokenFormatError::Checksum);
        }
        Ok(Self {
            tenant: tenant.to_owned(),
            value: SecretString::from(raw.to_owned()),
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The stored form: hex SHA-256.
    pub fn hash(&self) -> String {
        hash_hex(self.value.expose_secret())
    }

    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }
}

pub fn hash_hex(s: &str) -> String {
    // Once per heartbeat: one allocation, not one `format!` per byte (bench/registry.sh's perf).
    hex::encode(Sha256::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_tokens_parse_and_carry_their_tenant() {
        let t = SessionToken::generate("acme");
        assert!(t.expose().starts_with("lyst_acme_"));
        let parsed = SessionToken::parse(t.expose()).unwrap();
        assert_eq!(parsed.tenant(), "acme");
        assert_eq!(parsed.hash(), t.hash());
        assert!(!format!("{t:?}").contains(&t.expose()[10..]));
    }

    #[test]
    fn a_hundred_thousand_tokens_never_collide_nor_share_a_random_prefix() {
        let mut seen = HashSet::new();
        let mut prefixes = HashSet::new();
        for _ in 0..100_000 {
            let t = SessionToken::generate("acme");
            let body = &t.expose()["lyst_acme_".len()..];
            prefixes.insert(body[..8].to_owned());
            assert!(seen.insert(t.hash()));
        }
        assert!(
            prefixes.len() > 99_000,
            "random part must not share a prefix"
        );
    }

    #[test]
    fn malformed_tokens_are_refused_without_a_lookup() {
        let good = SessionToken::generate("acme").expose().to_owned();
        let mut typo = good.clone();
        let last = typo.pop().unwrap();
        typo.push(if last == 'a' { 'b' } else { 'a' });
        assert_eq!(
            SessionToken::parse(&typo).unwrap_err(),
            TokenFormatError::Checksum
        );
        assert_eq!(
            SessionToken::parse("ghp_abc").unwrap_err(),
            TokenFormatError::Prefix
        );
        for bad in [
            "lyst_",
            "lyst_acme_",
            "lyst_ACME_x",
            &good[..good.len() - 1],
            &format!("{good}x"),
            "lyst_acme_' OR 1=1 --",
        ] {
            assert!(SessionToken::parse(bad).is_err(), "{bad}");
        }
    }
}
