//! Session-JWT signing keys shared by every registry process on one Postgres database: the
//! private keys live in `signing_keys`, sealed with AES-256-GCM under the key-encryption key from
//! configuration (`--key-encryption-key`; the key id is the additional data, so a sealed key
//! cannot be passed off under another id). The first process to start makes the first key; a
//! rotation through any process writes the new key and retires the old in one transaction.
//! Every process re-reads the table when a rotation is announced on the event stream and at
//! least every [`RELOAD_INTERVAL`], so a rotation is served in every JWKS and verified everywhere
//! within that.

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jose_keys::{KeySet, SigningAlg, SigningKey};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;

use crate::store::{PgStore, StoreError, StoredKey};

/// The longest a process serves a key set the table no longer matches.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SharedKeyError {
    #[error("the key-encryption key must be 32 bytes, base64-encoded")]
    BadKeyEncryptionKey,
    #[error("signing key {kid} does not open with this key-encryption key (another deployment's, or altered)")]
    Unseal { kid: String },
    #[error("signing key {kid}: {message}")]
    Key { kid: String, message: String },
    #[error("signing keys: {0}")]
    Crypto(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The key-encryption key (from configuration; never logged).
pub struct KeyEncryptionKey(Aes256Gcm);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

impl KeyEncryptionKey {
    /// From 32 bytes in standard base64.
    pub fn from_base64(encoded: &SecretString) -> Result<Self, SharedKeyError> {
        let bytes = STANDARD
            .decode(encoded.expose_secret().trim())
            .map_err(|_| SharedKeyError::BadKeyEncryptionKey)?;
        let cipher =
            Aes256Gcm::new_from_slice(&bytes).map_err(|_| SharedKeyError::BadKeyEncryptionKey)?;
        Ok(Self(cipher))
    }

    /// `base64(nonce ‖ ciphertext)` of the PEM, bound to `kid`.
    fn seal(&self, kid: &str, pem: &str) -> Result<String, SharedKeyError> {
        use rand::RngCore;
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: pem.as_bytes(),
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|e| SharedKeyError::Crypto(e.to_string()))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(STANDARD.encode(out))
    }

    fn open(&self, kid: &str, sealed: &str) -> Result<SecretString, SharedKeyError> {
        let unseal = || SharedKeyError::Unseal {
            kid: kid.to_owned(),
        };
        let bytes = STANDARD.decode(sealed).map_err(|_| unseal())?;
        if bytes.len() <= NONCE_LEN {
            return Err(unseal());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| unseal())?;
        let pem = self
            .0
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| unseal())?;
        String::from_utf8(pem)
            .map(SecretString::from)
            .map_err(|_| unseal())
    }
}

/// The shared key table of one database.
pub struct SharedKeys {
    store: Arc<PgStore>,
    kek: KeyEncryptionKey,
}

fn unix(at: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(at).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl SharedKeys {
    pub fn new(store: Arc<PgStore>, kek: KeyEncryptionKey) -> Self {
        Self { store, kek }
    }

    fn sealed(&self, key: &SigningKey, now: i64) -> Result<StoredKey, SharedKeyError> {
        Ok(StoredKey {
            kid: key.kid.clone(),
            alg: key.alg.as_str().to_owned(),
            sealed_private_key: self.kek.seal(&key.kid, key.private_pem().expose_secret())?,
            created_at: now,
            retired_at: None,
            published_until: None,
        })
    }

    /// The keys published at `now`, making the first one if there is none.
    pub async fn load_or_create(&self, now: i64) -> Result<KeySet, SharedKeyError> {
        let keys = self.load(now).await?;
        if keys.active(SigningAlg::ES256).is_some() {
            return Ok(keys);
        }
        let key = generate()?;
        if self
            .store
            .put_signing_key(&self.sealed(&key, now)?, now, true)
            .await?
        {
            tracing::info!(kid = %key.kid, "first shared session-JWT signing key created");
        }
        self.load(now).await
    }

    /// The keys published at `now`, unsealed.
    pub async fn load(&self, now: i64) -> Result<KeySet, SharedKeyError> {
        self.open(self.stored(now).await?)
    }

    /// The keys published at `now` as stored (sealed).
    pub async fn stored(&self, now: i64) -> Result<Vec<StoredKey>, SharedKeyError> {
        Ok(self.store.signing_keys(now).await?)
    }

    /// Unseals and parses stored keys.
    pub fn open(&self, stored: Vec<StoredKey>) -> Result<KeySet, SharedKeyError> {
        let mut keys = Vec::new();
        for stored in stored {
            let pem = self.kek.open(&stored.kid, &stored.sealed_private_key)?;
            let key =
                SigningKey::from_pem(pem.expose_secret()).map_err(|e| SharedKeyError::Key {
                    kid: stored.kid.clone(),
                    message: e.to_string(),
                })?;
            if key.kid != stored.kid {
                return Err(SharedKeyError::Key {
                    kid: stored.kid,
                    message: "the stored key id is not the key's".into(),
                });
            }
            keys.push((key, stored.published_until.map(unix)));
        }
        Ok(KeySet::from_keys(keys))
    }

    /// Makes a new key the one that signs; the others stay published for `grace_secs`. Answers
    /// the new key's `kid`.
    pub async fn rotate(&self, now: i64, grace_secs: i64) -> Result<String, SharedKeyError> {
        let key = generate()?;
        self.store
            .put_signing_key(&self.sealed(&key, now)?, now + grace_secs, false)
            .await?;
        Ok(key.kid.clone())
    }
}

/// What [`KeySet::summary`] would say of `stored` once opened: equal summaries sign and verify
/// alike, so a reload can skip the unsealing.
pub fn summary(stored: &[StoredKey]) -> Vec<(String, Option<OffsetDateTime>)> {
    stored
        .iter()
        .map(|k| (k.kid.clone(), k.published_until.map(unix)))
        .collect()
}

fn generate() -> Result<SigningKey, SharedKeyError> {
    SigningKey::generate(SigningAlg::ES256).map_err(|e| SharedKeyError::Crypto(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(byte: u8) -> KeyEncryptionKey {
        KeyEncryptionKey::from_base64(&SecretString::from(STANDARD.encode([byte; 32]))).unwrap()
    }

    #[test]
    fn a_sealed_key_opens_only_with_its_kek_and_its_kid() {
        let sealed = kek(1).seal("kid-a", "PEM").unwrap();
        assert!(!sealed.contains("PEM"));
        assert_eq!(
            kek(1).open("kid-a", &sealed).unwrap().expose_secret(),
            "PEM"
        );
        assert!(matches!(
            kek(2).open("kid-a", &sealed),
            Err(SharedKeyError::Unseal { .. })
        ));
        assert!(matches!(
            kek(1).open("kid-b", &sealed),
            Err(SharedKeyError::Unseal { .. })
        ));
        assert!(kek(1).open("kid-a", "AAAA").is_err());
    }

    #[test]
    fn a_kek_must_be_32_bytes_and_never_shows() {
        let short = SecretString::from(STANDARD.encode([7u8; 16]));
        assert!(KeyEncryptionKey::from_base64(&short).is_err());
        assert!(KeyEncryptionKey::from_base64(&SecretString::from("not base64!")).is_err());
        assert_eq!(format!("{:?}", kek(3)), "KeyEncryptionKey(..)");
    }
}
