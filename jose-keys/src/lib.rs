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
    /// The ES256 signer, parsed once: jsonwebtoken re-parses the PKCS#8 document (and re-derives
    /// the public point) on every call.
    es256: Option<Es256Signer>,
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

/// An ES256 private key ready to sign: ring's constant-time P-256 (about 18 µs a signature on
/// the benchmark machine, against about 140 µs for RustCrypto `p256` 0.13 and 55 µs for 0.14).
/// The nonce is random, so two signatures of one message differ; both verify.
pub struct Es256Signer {
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Es256Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es256Signer").finish_non_exhaustive()
    }
}

impl Es256Signer {
    fn new(sk: &p256::SecretKey) -> Result<Self, KeyError> {
        let crypto = |e: &dyn std::fmt::Display| KeyError::Crypto(e.to_string());
        // Re-encoded rather than the PEM's own bytes: ring wants the public key inside the
        // PKCS#8 document, which a hand-written PEM may leave out; `to_pkcs8_der` always puts it.
        let der = sk.to_pkcs8_der().map_err(|e| crypto(&e))?;
        let rng = ring::rand::SystemRandom::new();
        let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.as_bytes(),
            &rng,
        )
        .map_err(|e| crypto(&e))?;
        Ok(Self { pair, rng })
    }

    /// The JWS signature of `message` (RFC 7518 §3.4): ECDSA P-256 over SHA-256, the 64 bytes
    /// `r || s`.
    pub fn sign(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let signature = self
            .pair
            .sign(&self.rng, message)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        signature
            .as_ref()
            .try_into()
            .map_err(|_| KeyError::Crypto("ES256 signature is not 64 bytes".into()))
    }

    /// A compact JWS of `claims`: what `jsonwebtoken::encode` makes, byte for byte up to the
    /// signature (the header's fields in its order, base64url header and claims), signed with
    /// [`Es256Signer::sign`]. Used for both the IdP's tokens and the registry's session JWTs, so
    /// neither parses a PKCS#8 key or runs RustCrypto's P-256 per token.
    pub fn sign_jws(
        &self,
        kid: &str,
        typ: Option<&str>,
        claims: &impl serde::Serialize,
    ) -> Result<String, KeyError> {
        /// The JOSE header, fields in jsonwebtoken's order.
        #[derive(serde::Serialize)]
        struct Header<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            typ: Option<&'a str>,
            alg: &'static str,
            kid: &'a str,
        }
        let json = |e: serde_json::Error| KeyError::Crypto(e.to_string());
        let header = serde_json::to_vec(&Header {
            typ,
            alg: "ES256",
            kid,
        })
        .map_err(json)?;
        let claims = serde_json::to_vec(claims).map_err(json)?;
        let mut jws = URL_SAFE_NO_PAD.encode(header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut jws);
        let signature = self.sign(jws.as_bytes())?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        Ok(jws)
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
                es256: Some(Es256Signer::new(&sk)?),
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

    /// The private key as PKCS#8 PEM, for a caller that keeps keys itself (sealed, e.g. in a
    /// shared database).
    pub fn private_pem(&self) -> &SecretString {
        &self.private_pem
    }

    /// The signer, for an ES256 key.
    pub fn es256(&self) -> Option<&Es256Signer> {
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

    /// A set of keys kept elsewhere (a shared database): each with when it stops being published
    /// (`None` while it signs), oldest first. Nothing is written to disk.
    pub fn from_keys(keys: Vec<(SigningKey, Option<OffsetDateTime>)>) -> Self {
        KeySet {
            slots: keys
                .into_iter()
                .map(|(key, published_until)| Slot {
                    key: Arc::new(key),
                    published_until,
                    file: None,
                })
                .collect(),
            dir: None,
        }
    }

    /// The `kid` of every key held and when it stops being published: two sets with the same
    /// answer sign and verify alike.
    pub fn summary(&self) -> Vec<(String, Option<OffsetDateTime>)> {
        self.slots
            .iter()
            .map(|s| (s.key.kid.clone(), s.published_until))
            .collect()
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
    use p256::pkcs8::DecodePublicKey;

    #[test]
    fn kid_is_stable_for_the_same_key() {
        let k = SigningKey::generate(SigningAlg::ES256).unwrap();
        let again = SigningKey::from_pem(k.private_pem.expose_secret()).unwrap();
        assert_eq!(k.kid, again.kid);
        assert_eq!(k.public_jwk, again.public_jwk);
    }

    #[test]
    fn es256_signatures_verify_with_the_public_key_and_the_nonce_is_fresh() {
        use p256::ecdsa::signature::Verifier;
        let k = SigningKey::generate(SigningAlg::ES256).unwrap();
        let signer = k.es256().expect("an ES256 key has a signer");
        let public = p256::ecdsa::VerifyingKey::from_public_key_pem(&k.public_pem).unwrap();
        let message = b"header.claims";
        let first = signer.sign(message).unwrap();
        let second = signer.sign(message).unwrap();
        assert_ne!(first, second, "ECDSA nonces must not repeat");
        for sig in [first, second] {
            let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
            public.verify(message, &sig).unwrap();
            assert!(public.verify(b"header.claimz", &sig).is_err());
        }
    }

    #[test]
    fn a_pkcs8_key_without_its_public_key_still_signs() {
        use p256::ecdsa::signature::Verifier;
        // RFC 5915 ECPrivateKey with the optional publicKey left out, wrapped in PKCS#8 by hand.
        let sk = p256::SecretKey::random(&mut OsRng);
        let d = sk.to_bytes();
        let mut ec = vec![0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20];
        ec.extend_from_slice(&d);
        let mut der = vec![
            0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
            0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27,
        ];
        der.extend_from_slice(&ec);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let (first, second) = b64.split_at(64);
        let pem =
            format!("-----BEGIN PRIVATE KEY-----\n{first}\n{second}\n-----END PRIVATE KEY-----\n");
        let k = SigningKey::from_pem(&pem).unwrap();
        let sig = k.es256().unwrap().sign(b"m").unwrap();
        let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        p256::ecdsa::VerifyingKey::from(sk.public_key())
            .verify(b"m", &sig)
            .unwrap();
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
