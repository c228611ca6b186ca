//! Signing keys of a Lanyard service (the mock IdP's tenants, the registry's session JWTs):
//! generation, loading from PEM or a key directory, rotation with a grace period, and the public
//! JWKS. `kid` is the RFC 7638 thumbprint of the public key, so the same key always has the same
//! `kid`, across restarts too.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rand::rngs::OsRng;
use rsa::traits::PublicKeyParts;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

/// A JWS algorithm this crate signs with.
#[derive(
    Debug, Clone, Copy, Default, serde::Deserialize, serde::Serialize, PartialEq, Eq, Hash,
)]
pub enum SigningAlg {
    #[default]
    ES256,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }

    pub fn algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
            SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key is neither a PKCS#8 EC P-256 nor an RSA private key in PEM form")]
    UnknownFormat,
    #[error("RSA keys must be at least 2048 bits")]
    WeakRsa,
    #[error("crypto error: {0}")]
    Crypto(String),
    #[error("key directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no active {0:?} key")]
    NoActiveKey(SigningAlg),
}

/// One key pair. The private half never leaves this struct except to the key directory.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The parsed P-256 key of an ES256 key: [`crate::jwt::sign`] signs with it directly, since
    /// jsonwebtoken re-parses the PKCS#8 document (and re-derives the public point) on every call.
    es256: Option<p256::ecdsa::SigningKey>,
    /// The public key as SPKI PEM (also what an HS256 key-confusion attack would MAC with).
    pub public_pem: String,
    pub public_jwk: Value,
    private_pem: SecretString,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    pub fn generate(alg: SigningAlg) -> Result<Self, KeyError> {
        let pem = match alg {
            SigningAlg::ES256 => p256::SecretKey::random(&mut OsRng)
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError::Crypto(e.to_string()))?
                .to_string(),
            SigningAlg::RS256 => rsa::RsaPrivateKey::new(&mut OsRng, 2048)
                .map_err(|e| KeyError::Crypto(e.to_string()))?
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError::Crypto(e.to_string()))?
                .to_string(),
        };
        Self::from_pem(&pem)
    }

    /// Parses a PKCS#8 private key; the algorithm follows from the key type.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let crypto = |e: &dyn std::fmt::Display| KeyError::Crypto(e.to_string());
        if let Ok(sk) = p256::SecretKey::from_pkcs8_pem(pem) {
            let pk = sk.public_key();
            let point = p256::EncodedPoint::from(pk);
            let (x, y) = match (point.x(), point.y()) {
                (Some(x), Some(y)) => (b64(x), b64(y)),
                _ => return Err(KeyError::UnknownFormat),
            };
            let thumb = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            let kid = b64(&Sha256::digest(thumb.as_bytes()));
            let public_pem = pk
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| crypto(&e))?;
            return Ok(Self {
                es256: Some(p256::ecdsa::SigningKey::from(&sk)),
                encoding: EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| crypto(&e))?,
                decoding: DecodingKey::from_ec_pem(public_pem.as_bytes())
                    .map_err(|e| crypto(&e))?,
                public_jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"}),
                kid,
                alg: SigningAlg::ES256,
                public_pem,
                private_pem: SecretString::from(pem.to_owned()),
            });
        }
        if let Ok(sk) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            if sk.size() < 256 {
                return Err(KeyError::WeakRsa);
            }
            let pk = sk.to_public_key();
            let (n, e) = (b64(&pk.n().to_bytes_be()), b64(&pk.e().to_bytes_be()));
            let thumb = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
            let kid = b64(&Sha256::digest(thumb.as_bytes()));
            let public_pem = pk
                .to_public_key_pem(LineEnding::LF)
                .map_err(|e| crypto(&e))?;
            return Ok(Self {
                es256: None,
                encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| crypto(&e))?,
                decoding: DecodingKey::from_rsa_pem(public_pem.as_bytes())
                    .map_err(|e| crypto(&e))?,
                public_jwk: json!({"kty": "RSA", "n": n, "e": e, "kid": kid, "alg": "RS256", "use": "sig"}),
                kid,
                alg: SigningAlg::RS256,
                public_pem,
                private_pem: SecretString::from(pem.to_owned()),
            });
        }
        Err(KeyError::UnknownFormat)
    }

    /// The parsed private key, for an ES256 key.
    pub fn es256(&self) -> Option<&p256::ecdsa::SigningKey> {
        self.es256.as_ref()
    }
}

#[derive(Debug)]
struct Slot {
    key: Arc<SigningKey>,
    /// Set when the key was rotated out: it stays published until then.
    published_until: Option<OffsetDateTime>,
    file: Option<PathBuf>,
}

/// The keys of one tenant.
#[derive(Debug, Default)]
pub struct KeySet {
    slots: Vec<Slot>,
    dir: Option<PathBuf>,
}

impl KeySet {
    /// Loads keys from config PEMs and from `dir` (if any), newest last.
    pub fn load(pems: &[String], dir: Option<&Path>) -> Result<Self, KeyError> {
        let mut set = KeySet {
            slots: Vec::new(),
            dir: dir.map(Path::to_owned),
        };
        for pem in pems {
            set.push(SigningKey::from_pem(pem)?, None);
        }
        if let Some(dir) = dir {
            let io = |source| KeyError::Io {
                path: dir.to_owned(),
                source,
            };
            std::fs::create_dir_all(dir).map_err(io)?;
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(io)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pem"))
                .collect();
            files.sort();
            for path in files {
                let pem = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
                    path: path.clone(),
                    source,
                })?;
                let key = SigningKey::from_pem(&pem)?;
                if set.slots.iter().all(|s| s.key.kid != key.kid) {
                    set.push(key, Some(path));
                }
            }
        }
        Ok(set)
    }

    fn push(&mut self, key: SigningKey, file: Option<PathBuf>) {
        // A newer key of the same algorithm supersedes this one at load; the older stays published.
        self.slots.push(Slot {
            key: Arc::new(key),
            published_until: None,
            file,
        });
    }

    /// Makes sure there is an active key for `alg`, generating (and persisting) one if needed.
    pub fn ensure(&mut self, alg: SigningAlg) -> Result<(), KeyError> {
        if self.active(alg).is_some() {
            return Ok(());
        }
        self.add_generated(alg)
    }

    fn add_generated(&mut self, alg: SigningAlg) -> Result<(), KeyError> {
        let key = SigningKey::generate(alg)?;
        let file = match &self.dir {
            Some(dir) => {
                let seq = self.slots.len();
                let path = dir.join(format!("{seq:05}-{}.pem", alg.as_str()));
                write_private(&path, key.private_pem.expose_secret())?;
                Some(path)
            }
            None => None,
        };
        self.push(key, file);
        Ok(())
    }

    /// The key new tokens of `alg` are signed with: the newest non-retired key of that algorithm.
    pub fn active(&self, alg: SigningAlg) -> Option<Arc<SigningKey>> {
        self.slots
            .iter()
            .rev()
            .find(|s| s.key.alg == alg && s.published_until.is_none())
            .map(|s| Arc::clone(&s.key))
    }

    /// Rotates `alg`: the current key is retired but stays in the JWKS for `grace`; a new key
    /// becomes active. Keys whose grace has passed are dropped (and their files deleted).
    pub fn rotate(
        &mut self,
        alg: SigningAlg,
        now: OffsetDateTime,
        grace: Duration,
    ) -> Result<String, KeyError> {
        for slot in self.slots.iter_mut() {
            if slot.key.alg == alg && slot.published_until.is_none() {
                slot.published_until = Some(now + grace);
            }
        }
        self.prune(now);
        self.add_generated(alg)?;
        self.active(alg)
            .map(|k| k.kid.clone())
            .ok_or(KeyError::NoActiveKey(alg))
    }

    fn prune(&mut self, now: OffsetDateTime) {
        self.slots.retain(|s| match s.published_until {
            Some(until) if until <= now => {
                if let Some(file) = &s.file {
                    if let Err(e) = std::fs::remove_file(file) {
                        tracing::warn!(kid = %s.key.kid, error = %e, "could not delete expired key file");
                    }
                }
                false
            }
            _ => true,
        });
    }

    /// Every key a verifier may meet: active keys and retired keys still in their grace period.
    pub fn published(&self, now: OffsetDateTime) -> Vec<Arc<SigningKey>> {
        self.slots
            .iter()
            .filter(|s| s.published_until.is_none_or(|until| until > now))
            .map(|s| Arc::clone(&s.key))
            .collect()
    }

    pub fn by_kid(&self, kid: &str, now: OffsetDateTime) -> Option<Arc<SigningKey>> {
        self.published(now).into_iter().find(|k| k.kid == kid)
    }

    /// The JWKS document (RFC 7517).
    pub fn jwks(&self, now: OffsetDateTime) -> Value {
        let keys: Vec<Value> = self
            .published(now)
            .iter()
            .map(|k| k.public_jwk.clone())
            .collect();
        json!({ "keys": keys })
    }
}

fn write_private(path: &Path, pem: &str) -> Result<(), KeyError> {
    use std::io::Write;
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(pem.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_stable_for_the_same_key() {
        let k = SigningKey::generate(SigningAlg::ES256).unwrap();
        let again = SigningKey::from_pem(k.private_pem.expose_secret()).unwrap();
        assert_eq!(k.kid, again.kid);
        assert_eq!(k.public_jwk, again.public_jwk);
    }

    #[test]
    fn debug_never_prints_the_private_key() {
        let k = SigningKey::generate(SigningAlg::ES256).unwrap();
        assert!(!format!("{k:?}").contains("PRIVATE"));
    }

    #[test]
    fn rotation_keeps_the_old_key_published_for_the_grace_period() {
        let mut set = KeySet::default();
        set.ensure(SigningAlg::ES256).unwrap();
        let old = set.active(SigningAlg::ES256).unwrap().kid.clone();
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20000);
        let new = set
            .rotate(SigningAlg::ES256, now, Duration::minutes(10))
            .unwrap();
        assert_ne!(old, new);
        let kids = |t| {
            set.published(t)
                .iter()
                .map(|k| k.kid.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(now + Duration::minutes(9)), [old.clone(), new.clone()]);
        assert_eq!(kids(now + Duration::minutes(11)), [new]);
    }

    #[test]
    fn a_key_directory_survives_a_restart() {
        let dir = std::env::temp_dir().join(format!("mock-idp-keys-{}", rand::random::<u64>()));
        let mut set = KeySet::load(&[], Some(&dir)).unwrap();
        set.ensure(SigningAlg::ES256).unwrap();
        let kid = set.active(SigningAlg::ES256).unwrap().kid.clone();
        let reloaded = KeySet::load(&[], Some(&dir)).unwrap();
        assert_eq!(reloaded.active(SigningAlg::ES256).unwrap().kid, kid);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn garbage_pem_is_refused() {
        assert!(matches!(
            SigningKey::from_pem("nope"),
            Err(KeyError::UnknownFormat)
        ));
    }
}
