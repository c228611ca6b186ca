//! The token endpoint's request parsing: body bytes plus an optional Authorization header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first line, if any, is the Authorization header; the rest is the body.
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    let _ = mock_idp::token_request::parse(body, header);
    let _ = mock_idp::params::Params::parse(data);
});
