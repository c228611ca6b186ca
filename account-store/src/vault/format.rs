//! The vault file format, version 1 (little-endian):
//!
//! ```text
//! header    magic "LANYARDV" (8) | version u16 | kdf u8 (0 = key from the OS keyring,
//!           1 = Argon2id passphrase) | m_cost u32 | t_cost u32 | p_cost u32 | salt [16]
//!           | SHA-256 of the preceding 39 bytes [32]
//! keycheck  nonce [12] | AES-256-GCM(32 zero bytes) [48], AAD = header bytes ‖ "keycheck"
//! count     u32
//! entry*    key_len u16 | account key | item u8 | nonce [12] | ct_len u32 | ciphertext‖tag
//! ```
//!
//! Each entry is sealed on its own with AAD = "lanyard-vault" ‖ version ‖ account key ‖ 0 ‖ item,
//! so an entry moved to another account's slot fails authentication, and one damaged entry
//! leaves the others readable. The header checksum tells a damaged header (tampering) apart from
//! a wrong passphrase (the keycheck fails).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::account::AccountKey;
use crate::item::ItemKind;

pub const MAGIC: &[u8; 8] = b"LANYARDV";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 39 + 32;
pub const NONCE_LEN: usize = 12;
pub const KEYCHECK_LEN: usize = NONCE_LEN + 32 + 16;
/// Refuse absurd files before parsing them.
pub const MAX_FILE_LEN: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// A random 256-bit key kept in the OS keyring.
    External,
    /// Argon2id over a passphrase.
    Argon2id {
        m_cost: u32,
        t_cost: u32,
        p_cost: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub kdf: Kdf,
    pub salt: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub header: Header,
    pub keycheck: Sealed,
    pub entries: BTreeMap<(AccountKey, ItemKind), Sealed>,
}

/// Why a file is not a well-formed vault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("not a Lanyard vault (bad magic)")]
    Magic,
    #[error("unsupported vault version {0}")]
    Version(u16),
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("unknown key-derivation id {0}")]
    Kdf(u8),
    #[error("file is truncated or has trailing bytes")]
    Length,
    #[error("entry {0} is malformed: {1}")]
    Entry(usize, &'static str),
    #[error("the file is larger than any vault could be")]
    TooLarge,
}

impl Header {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        let (id, m, t, p) = match self.kdf {
            Kdf::External => (0u8, 0, 0, 0),
            Kdf::Argon2id {
                m_cost,
                t_cost,
                p_cost,
            } => (1u8, m_cost, t_cost, p_cost),
        };
        out.push(id);
        out.extend_from_slice(&m.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&self.salt);
        let hash = Sha256::digest(&out);
        out.extend_from_slice(&hash);
        out
    }
}

/// Associated data binding an entry to its slot.
pub fn entry_aad(account: &AccountKey, item: ItemKind) -> Vec<u8> {
    let mut aad = b"lanyard-vault".to_vec();
    aad.extend_from_slice(&VERSION.to_le_bytes());
    aad.extend_from_slice(account.as_str().as_bytes());
    aad.push(0);
    aad.push(item.code());
    aad
}

pub fn keycheck_aad(header: &Header) -> Vec<u8> {
    let mut aad = header.encode();
    aad.extend_from_slice(b"keycheck");
    aad
}

pub fn encode(image: &Image) -> Vec<u8> {
    let mut out = image.header.encode();
    out.extend_from_slice(&image.keycheck.nonce);
    out.extend_from_slice(&image.keycheck.ciphertext);
    out.extend_from_slice(&(image.entries.len() as u32).to_le_bytes());
    for ((account, item), sealed) in &image.entries {
        let key = account.as_str().as_bytes();
        out.extend_from_slice(&(key.len() as u16).to_le_bytes());
        out.extend_from_slice(key);
        out.push(item.code());
        out.extend_from_slice(&sealed.nonce);
        out.extend_from_slice(&(sealed.ciphertext.len() as u32).to_le_bytes());
        out.extend_from_slice(&sealed.ciphertext);
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
}

pub fn decode(bytes: &[u8]) -> Result<Image, FormatError> {
    if bytes.len() > MAX_FILE_LEN {
        return Err(FormatError::TooLarge);
    }
    let mut r = Reader { buf: bytes, pos: 0 };
    if r.take(8) != Some(MAGIC.as_slice()) {
        return Err(FormatError::Magic);
    }
    let version = r.u16().ok_or(FormatError::Length)?;
    if version != VERSION {
        return Err(FormatError::Version(version));
    }
    let kdf_id = r.u8().ok_or(FormatError::Length)?;
    let (m, t, p) = (
        r.u32().ok_or(FormatError::Length)?,
        r.u32().ok_or(FormatError::Length)?,
        r.u32().ok_or(FormatError::Length)?,
    );
    let salt: [u8; 16] = r
        .take(16)
        .and_then(|s| s.try_into().ok())
        .ok_or(FormatError::Length)?;
    let hash = r.take(32).ok_or(FormatError::Length)?;
    if Sha256::digest(&bytes[..39])[..] != *hash {
        return Err(FormatError::HeaderChecksum);
    }
    let kdf = match kdf_id {
        0 => Kdf::External,
        1 => Kdf::Argon2id {
            m_cost: m,
            t_cost: t,
            p_cost: p,
        },
        other => return Err(FormatError::Kdf(other)),
    };
    let nonce: [u8; NONCE_LEN] = r
        .take(NONCE_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(FormatError::Length)?;
    let ciphertext = r
        .take(KEYCHECK_LEN - NONCE_LEN)
        .ok_or(FormatError::Length)?
        .to_vec();
    let count = r.u32().ok_or(FormatError::Length)? as usize;
    let mut entries = BTreeMap::new();
    for i in 0..count {
        let key_len = r.u16().ok_or(FormatError::Entry(i, "truncated"))? as usize;
        let key = r.take(key_len).ok_or(FormatError::Entry(i, "truncated"))?;
        let key = std::str::from_utf8(key)
            .ok()
            .and_then(|k| AccountKey::parse(k).ok())
            .ok_or(FormatError::Entry(i, "bad account key"))?;
        let item = r
            .u8()
            .and_then(ItemKind::from_code)
            .ok_or(FormatError::Entry(i, "bad item kind"))?;
        let nonce: [u8; NONCE_LEN] = r
            .take(NONCE_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FormatError::Entry(i, "truncated"))?;
        let ct_len = r.u32().ok_or(FormatError::Entry(i, "truncated"))? as usize;
        let ct = r
            .take(ct_len)
            .ok_or(FormatError::Entry(i, "truncated"))?
            .to_vec();
        if ct_len < 16 {
            return Err(FormatError::Entry(i, "ciphertext shorter than a tag"));
        }
        if entries
            .insert(
                (key, item),
                Sealed {
                    nonce,
                    ciphertext: ct,
                },
            )
            .is_some()
        {
            return Err(FormatError::Entry(i, "duplicate slot"));
        }
    }
    if r.pos != bytes.len() {
        return Err(FormatError::Length);
    }
    Ok(Image {
        header: Header { kdf, salt },
        keycheck: Sealed { nonce, ciphertext },
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode(&bytes);
        }
    }
}
