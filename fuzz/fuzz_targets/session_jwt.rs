//! The registry's session-JWT verification (`session_registry::jwt::verify`) on arbitrary
//! input: never panics, and what it accepts names our issuer and is unexpired. The corpus is seeded (scripts/fuzz) with a real
//! session JWT so the fuzzer mutates well-formed tokens, not only noise.
#![no_main]

use std::sync::OnceLock;

use jose_keys::{KeySet, SigningAlg};
use libfuzzer_sys::fuzz_target;

const ISSUER: &str = "http://127.0.0.1:8701";

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = KeySet::default();
        k.ensure(SigningAlg::ES256).expect("key generation");
        k
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    if let Ok(claims) = session_registry::jwt::verify(keys(), token, ISSUER, now) {
        assert_eq!(claims.iss, ISSUER);
        assert!(claims.exp > now.unix_timestamp());
        assert_eq!(token.matches('.').count(), 2, "a compact JWS");
    }
});
