//! The session-token parser (`session_registry::token::SessionToken::parse`) on arbitrary input:
//! never panics, and whatever it accepts is exactly the registry's format — prefix, a tenant
//! slug, 44 base62 characters and their checksum — and keeps the presented bytes and tenant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_registry::token::{SessionToken, PREFIX};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(token) = SessionToken::parse(raw) {
        assert_eq!(token.expose(), raw, "a parsed token keeps what was presented");
        assert!(raw.starts_with(PREFIX));
        let tenant = token.tenant();
        assert!(!tenant.is_empty() && tenant.len() <= 63);
        assert!(tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        assert_eq!(raw.len(), PREFIX.len() + tenant.len() + 1 + 44 + 6);
        assert_eq!(token.hash().len(), 64);
        // Any one character changed in the body or checksum is refused.
        let mut bytes = raw.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'a' { b'b' } else { b'a' };
        if let Ok(changed) = std::str::from_utf8(&bytes) {
            assert!(SessionToken::parse(changed).is_err(), "checksum ignored: {changed}");
        }
    }
});
