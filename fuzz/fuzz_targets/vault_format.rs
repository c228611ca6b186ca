//! The vault file decoder (`account_store::vault::format::decode`) on arbitrary bytes: never
//! panics, and whatever it accepts is canonical — encoding the decoded image gives back the
//! very bytes (so a file that decodes has one meaning, and rewriting it changes nothing).
#![no_main]

use account_store::vault::format::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = decode(data) {
        assert_eq!(encode(&image), data, "a decoded vault re-encodes to the same bytes");
    }
});
