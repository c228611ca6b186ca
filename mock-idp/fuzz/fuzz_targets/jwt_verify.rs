//! The JWT paths: header decoding, kid lookup, signature and claim checks on arbitrary input.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mock_idp::config::SigningAlg;
use mock_idp::keys::KeySet;

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut k = KeySet::default();
        k.ensure(SigningAlg::ES256).expect("key generation");
        k
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let _ = mock_idp::jwt::verify_own(token, keys(), "http://127.0.0.1/acme", Some("at+jwt"), now, false);
        let _ = mock_idp::jwt::verify_own(token, keys(), "http://127.0.0.1/acme", None, now, true);
    }
});
