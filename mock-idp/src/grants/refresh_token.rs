//! The refresh token's format: `FAMILY~GENERATION~NONCE~MAC`, where `FAMILY` is the token
//! family's id, `GENERATION` the token's place in the family (0 for the first, one more per
//! rotation, in decimal without leading zeros), `NONCE` 128 random bits and `MAC` HMAC-SHA256 of
//! the three under a key only the family's record holds (base64url, no padding). The nonce keeps
//! the key alone (read out of the IdP's memory, say) from rebuilding a live token: the records
//! hold only each token's SHA-256.
//!
//! Why not an opaque random string with a record per token: reuse detection (RFC 9700 §4.14.2)
//! must recognise *every* rotated-out token of a family, however many rotations old, and a
//! record (or tombstone) per used token grew the IdP's memory with every rotation for the whole
//! refresh lifetime. With the family and the generation in the token and a MAC nobody else can
//! make, a token the records no longer hold is recognised as the family's own used token by
//! the family's record alone — one record per family, whatever the rotations. A made-up token
//! naming a real family (its id is in every token of the family) fails the MAC and is merely
//! unknown, so it cannot revoke anyone's grant.
//!
//! Hand-written over the `hmac` crate rather than a JWT: the token is only ever read back by
//! this IdP, so it needs no header, algorithm choice or claims, and stays short.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;

/// The separator: in neither base64url nor decimal digits, and not `.` (revocation tells a
/// JWT access token by its dots).
const SEP: char = '~';

/// A family's MAC key. Never printed.
#[derive(Clone)]
pub(super) struct FamilyKey([u8; 32]);

impl std::fmt::Debug for FamilyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FamilyKey(…)")
    }
}

impl FamilyKey {
    pub(super) fn generate() -> Self {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        Self(key)
    }

    fn mac(&self, family: &str, generation: u64, nonce: &str) -> Hmac<Sha256> {
        // Any key length is valid for HMAC: `new_from_slice` cannot fail here.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        // The family id and the nonce are base64url (no 0 byte); the generation has a fixed width.
        mac.update(family.as_bytes());
        mac.update(&[0]);
        mac.update(&generation.to_be_bytes());
        mac.update(nonce.as_bytes());
        mac
    }
}

/// A new token, `generation` of `family`.
pub(super) fn make(family: &str, generation: u64, key: &FamilyKey) -> String {
    let nonce = crate::random::id();
    let tag = key.mac(family, generation, &nonce).finalize().into_bytes();
    format!(
        "{family}{SEP}{generation}{SEP}{nonce}{SEP}{}",
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// A presented token's parts, before its MAC is checked.
#[derive(PartialEq, Eq)]
pub(super) struct Presented<'a> {
    pub family: &'a str,
    pub generation: u64,
    nonce: &'a str,
    mac: &'a str,
}

/// Family and generation only: the nonce and the MAC are the token's secret part.
impl std::fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presented")
            .field("family", &self.family)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// The parts of `token`, if it has this format (anything else is unknown).
pub(super) fn parse(token: &str) -> Option<Presented<'_>> {
    let mut parts = token.split(SEP);
    let (family, generation, nonce, mac) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || family.is_empty() || nonce.is_empty() || mac.is_empty() {
        return None;
    }
    // One spelling per generation, as `make` writes it: digits only (`u64::from_str` would
    // also take a leading `+`) and no leading zero. Another spelling of a live token would
    // match no record and pass for a used one.
    let canonical = !generation.is_empty()
        && generation.bytes().all(|b| b.is_ascii_digit())
        && (generation == "0" || !generation.starts_with('0'));
    if !canonical {
        return None;
    }
    Some(Presented {
        family,
        generation: generation.parse().ok()?,
        nonce,
        mac,
    })
}

impl Presented<'_> {
    /// Whether the MAC is the family key's (in constant time).
    pub(super) fn is_genuine(&self, key: &FamilyKey) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(self.mac) else {
            return false;
        };
        key.mac(self.family, self.generation, self.nonce)
            .verify_slice(&tag)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_family_and_generation_and_only_its_key_vouches_for_it() {
        let key = FamilyKey::generate();
        let token = make("fam", 7, &key);
        let p = parse(&token).expect("its own format");
        assert_eq!((p.family, p.generation), ("fam", 7));
        assert!(p.is_genuine(&key));
        assert!(
            !p.is_genuine(&FamilyKey::generate()),
            "another family's key"
        );
        assert_ne!(make("fam", 7, &key), token, "a nonce of its own each time");
        // The same MAC under another generation, family or nonce is not genuine.
        let parts: Vec<&str> = token.split(SEP).collect();
        let (nonce, mac) = (parts[2], parts[3]);
        for forged in [
            format!("fam~8~{nonce}~{mac}"),
            format!("other~7~{nonce}~{mac}"),
            format!("fam~7~{}~{mac}", crate::random::id()),
        ] {
            assert!(!parse(&forged).unwrap().is_genuine(&key), "{forged}");
        }
        assert!(
            !format!("{p:?}").contains(nonce) && !format!("{p:?}").contains(mac),
            "Debug shows no secret part: {p:?}"
        );
        let mut flipped = token.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(!parse(&flipped).unwrap().is_genuine(&key));
    }

    #[test]
    fn anything_else_is_not_this_format() {
        for t in [
            "",
            "opaque-random-string",
            "fam~7~n",
            "fam~7~n~",
            "fam~7~~mac",
            "~7~n~mac",
            "fam~~n~mac",
            "fam~+7~n~mac",
            "fam~-7~n~mac",
            "fam~07~n~mac",
            "fam~00~n~mac",
            "fam~7~n~mac~more",
            "fam~99999999999999999999999~n~mac",
            "a.b.c",
        ] {
            assert_eq!(parse(t), None, "{t:?}");
        }
        assert_eq!(parse("fam~0~n~mac").map(|p| p.generation), Some(0));
    }

    #[test]
    fn the_key_is_never_printed() {
        assert_eq!(format!("{:?}", FamilyKey::generate()), "FamilyKey(…)");
    }
}
