//! Secrets the IdP hands out: codes, tokens, handles. All come from the OS CSPRNG with 256 bits
//! of entropy (SECURITY E-10 asks for at least 128), base64url without padding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// 32 random bytes, base64url encoded (43 characters).
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A shorter public identifier (128 bits) for things that are not secrets: `sid`, `jti`, fault ids.
pub fn id() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A device-flow user code: 8 characters from an unambiguous consonant alphabet, shown as
/// `XXXX-XXXX` (RFC 8628 §6.1). 20^8 ≈ 2^34.6; brute force is bounded by the code's lifetime.
pub fn user_code() -> String {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let mut out = String::with_capacity(9);
    for i in 0..8 {
        if i == 4 {
            out.push('-');
        }
        let idx = (OsRng.next_u32() as usize) % ALPHABET.len();
        out.push(char::from(ALPHABET[idx]));
    }
    out
}

/// SHA-256, base64url: the key under which a secret is stored, so a memory dump of the state
/// maps never holds a bearer value directly.
pub fn fingerprint(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time equality of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn tokens_are_unique_and_long_enough() {
        let set: HashSet<String> = (0..10_000).map(|_| token()).collect();
        assert_eq!(set.len(), 10_000);
        assert!(set.iter().all(|t| t.len() == 43));
    }

    #[test]
    fn user_codes_have_the_documented_shape() {
        for _ in 0..1000 {
            let c = user_code();
            assert_eq!(c.len(), 9);
            assert_eq!(&c[4..5], "-");
            assert!(c
                .chars()
                .filter(|c| *c != '-')
                .all(|c| "BCDFGHJKLMNPQRSTVWXZ".contains(c)));
        }
    }
}
