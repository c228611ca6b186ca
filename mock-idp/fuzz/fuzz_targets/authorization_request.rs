//! The authorization endpoint's request parsing: the query string's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mock_idp::authorization_request::AuthorizationRequest::parse(data);
});
