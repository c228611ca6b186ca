//! The vault file decoder (`account_store::vault::format::decode`) on arbitrary bytes: never
//! panics, and whatever it accepts has one meaning — encoding the decoded image and decoding that
//! gives the same image, and encoding it again the same bytes (entries may come in any order in
//! a file; the encoder writes them sorted).
#![no_main]

use account_store::vault::format::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(image) = decode(data) {
        let bytes = encode(&image);
        let again = decode(&bytes).expect("an encoded image decodes");
        assert_eq!(again, image, "decode ∘ encode is the identity on images");
        assert_eq!(encode(&again), bytes, "the encoding is canonical");
    }
});
