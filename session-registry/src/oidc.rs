//! Verifying tokens from a tenant's IdP: ID tokens (to open a session) and back-channel logout
//! tokens. Discovery and JWKS are fetched once per issuer and cached; an unknown `kid` triggers one
//! re-fetch (rate-limited per issuer), then `UnknownKid`. The algorithm allow-list is ES256 and
//! RS256, each key used only with its own algorithm; `jku`/`x5u`/`jwk` headers are ignored.

use std::collections::{HashMap, HashSet};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use lanyard_clock::SharedClock;
use parking_lot::RwLock;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::store::TenantRecord;

/// Clock skew tolerated on `exp` and a future `iat`.
pub const DEFAULT_LEEWAY: i64 = 60;
/// The largest leeway `--clock-leeway` takes (the client's cap too); replay records of spent ID
/// tokens are kept this long past `exp`, whatever the setting.
pub const MAX_LEEWAY: i64 = 300;
/// How old a logout token may be (Back-Channel Logout 1.0 §2.6 leaves it to the receiver; two
/// minutes is what the IdP gives them to live).
pub const LOGOUT_TOKEN_MAX_AGE: i64 = 120;
const REFETCH_INTERVAL: Duration = Duration::seconds(10);
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The most of a discovery document or JWKS read from an issuer.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OidcError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("alg {0} is not allowed (ES256 and RS256 are)")]
    AlgNotAllowed(String),
    #[error("no key with this kid at the issuer, even after re-fetching its JWKS")]
    UnknownKid,
    #[error("the signature is invalid")]
    Signature,
    #[error("iss is not this tenant's issuer")]
    Issuer,
    #[error("aud does not name an audience this tenant accepts")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("iat is in the future")]
    IssuedAt,
    #[error(
        "the token was issued too long ago (iat more than {0} s ago, beyond the clock leeway)"
    )]
    TooOld(i64),
    #[error("claim {0} is missing")]
    MissingClaim(&'static str),
    #[error("a token typed {0:?} is not accepted here")]
    WrongType(String),
    #[error("not an ID token: {0}")]
    NotAnIdToken(&'static str),
    #[error("not a back-channel logout token: {0}")]
    NotALogoutToken(&'static str),
    /// The detail (kept for the log) may carry the remote server's words: never shown.
    #[error("the issuer could not be reached")]
    IssuerUnreachable(String),
}

impl OidcError {
    /// A stable machine code for the answer's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            OidcError::Malformed => "malformed",
            OidcError::AlgNotAllowed(_) => "alg_not_allowed",
            OidcError::UnknownKid => "unknown_kid",
            OidcError::Signature => "bad_signature",
            OidcError::Issuer => "wrong_issuer",
            OidcError::Audience => "wrong_audience",
            OidcError::Expired => "expired",
            OidcError::IssuedAt => "issued_in_the_future",
            OidcError::TooOld(_) => "too_old",
            OidcError::MissingClaim(_) => "missing_claim",
            OidcError::WrongType(_) => "wrong_token_type",
            OidcError::NotAnIdToken(_) => "not_an_id_token",
            OidcError::NotALogoutToken(_) => "not_a_logout_token",
            OidcError::IssuerUnreachable(_) => "issuer_unreachable",
        }
    }
}

/// The claims of a verified token and its header's `typ`.
struct Verified {
    typ: Option<String>,
    claims: Value,
}

/// Reads at most [`MAX_DOCUMENT_BYTES`] of a successful answer as JSON.
pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(
    res: reqwest::Response,
) -> Result<T, OidcError> {
    let unreachable = |m: String| OidcError::IssuerUnreachable(m);
    let mut res = res
        .error_for_status()
        .map_err(|e| unreachable(e.to_string()))?;
    if res
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(unreachable("the answer is too large".into()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| unreachable(e.to_string()))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(unreachable("the answer is too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| unreachable(format!("not the expected JSON: {e}")))
}

struct IssuerKeys {
    jwks_uri: String,
    keys: Vec<(Option<String>, Algorithm, DecodingKey)>,
    last_fetch: OffsetDateTime,
}

pub struct OidcVerifier {
    http: reqwest::Client,
    clock: SharedClock,
    /// Clock-skew allowance of `iat` and `exp`, in seconds.
    leeway: i64,
    cache: RwLock<HashMap<String, std::sync::Arc<IssuerKeys>>>,
    fetch_lock: tokio::sync::Mutex<()>,
}

fn key_alg(jwk: &Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, KeyAlgorithm};
    match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(KeyAlgorithm::ES256), AlgorithmParameters::EllipticCurve(_)) => {
            Some(Algorithm::ES256)
        }
        (Some(KeyAlgorithm::RS256), AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
        (None, AlgorithmParameters::EllipticCurve(_)) => Some(Algorithm::ES256),
        (None, AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
        _ => None,
    }
}

impl OidcVerifier {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            clock,
            leeway: DEFAULT_LEEWAY,
            cache: RwLock::new(HashMap::new()),
            fetch_lock: tokio::sync::Mutex::new(()),
        }
    }

    async fn fetch(
        &self,
        issuer: &str,
        known_jwks_uri: Option<String>,
    ) -> Result<IssuerKeys, OidcError> {
        let result = self.fetch_keys(issuer, known_jwks_uri).await;
        if let Err(OidcError::IssuerUnreachable(detail)) = &result {
            tracing::warn!(issuer, %detail, "could not fetch the issuer's keys");
        }
        result
    }

    async fn fetch_keys(
        &self,
        issuer: &str,
        known_jwks_uri: Option<String>,
    ) -> Result<IssuerKeys, OidcError> {
        let unreachable = |e: reqwest::Error| OidcError::IssuerUnreachable(e.to_string());
        let jwks_uri = match known_jwks_uri {
            Some(u) => u,
            None => {
                let doc: Value = read_json(
                    self.http
                        .get(format!("{issuer}/.well-known/openid-configuration"))
                        .send()
                        .await
                        .map_err(unreachable)?,
                )
                .await?;
                if doc.get("issuer").and_then(Value::as_str) != Some(issuer) {
                    return Err(OidcError::IssuerUnreachable(
                        "discovery names a different issuer".into(),
                    ));
                }
                doc.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        OidcError::IssuerUnreachable("discovery has no jwks_uri".into())
                    })?
                    .to_owned()
            }
        };
        let set: JwkSet =
            read_json(self.http.get(&jwks_uri).send().await.map_err(unreachable)?).await?;
        let keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let alg = key_alg(jwk)?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((jwk.common.key_id.clone(), alg, key))
            })
            .collect();
        tracing::info!(issuer, "fetched JWKS");
        Ok(IssuerKeys {
            jwks_uri,
            keys,
            last_fetch: self.clock.now(),
        })
    }

    /// The key for `kid` at `issuer`, re-fetching the JWKS at most once per interval.
    async fn key(
        &self,
        issuer: &str,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, OidcError> {
        let pick = |keys: &IssuerKeys| -> Option<Result<DecodingKey, OidcError>> {
            let found = match kid {
                Some(k) => keys.keys.iter().find(|(id, _, _)| id.as_deref() == Some(k)),
                None if keys.keys.len() == 1 => keys.keys.first(),
                None => None,
            }?;
            Some(if found.1 == alg {
                Ok(found.2.clone())
            } else {
                Err(OidcError::AlgNotAllowed(format!(
                    "{alg:?} with a {:?} key",
                    found.1
                )))
            })
        };
        let cached = self.cache.read().get(issuer).cloned();
        if let Some(keys) = &cached {
            if let Some(r) = pick(keys) {
                return r;
            }
            if self.clock.now() - keys.last_fetch < REFETCH_INTERVAL {
                return Err(OidcError::UnknownKid);
            }
        }
        let _guard = self.fetch_lock.lock().await;
        // Another request may have refreshed meanwhile.
        if let Some(keys) = self.cache.read().get(issuer).cloned() {
            if cached
                .as_ref()
                .is_none_or(|c| !std::sync::Arc::ptr_eq(c, &keys))
            {
                if let Some(r) = pick(&keys) {
                    return r;
                }
            }
        }
        let fresh = std::sync::Arc::new(
            self.fetch(issuer, cached.map(|c| c.jwks_uri.clone()))
                .await?,
        );
        self.cache.write().insert(issuer.to_owned(), fresh.clone());
        pick(&fresh).unwrap_or(Err(OidcError::UnknownKid))
    }

    async fn verify_signed(
        &self,
        token: &str,
        tenant: &TenantRecord,
    ) -> Result<Verified, OidcError> {
        if token.len() > 16 * 1024 {
            return Err(OidcError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| OidcError::Malformed)?;
        if !matches!(header.alg, Algorithm::ES256 | Algorithm::RS256) {
            return Err(OidcError::AlgNotAllowed(format!("{:?}", header.alg)));
        }
        let key = self
            .key(&tenant.issuer, header.kid.as_deref(), header.alg)
            .await?;
        let mut v = Validation::new(header.alg);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims = HashSet::new();
        let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
            .map_err(|_| OidcError::Signature)?
            .claims;
        if claims.get("iss").and_then(Value::as_str) != Some(tenant.issuer.as_str()) {
            return Err(OidcError::Issuer);
        }
        let auds: Vec<&str> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => return Err(OidcError::MissingClaim("aud")),
        };
        if !auds.iter().any(|a| tenant.audiences.iter().any(|t| t == a)) {
            return Err(OidcError::Audience);
        }
        let now = self.clock.now().unix_timestamp();
        let iat = claims
            .get("iat")
            .and_then(Value::as_i64)
            .ok_or(OidcError::MissingClaim("iat"))?;
        if iat > now.saturating_add(self.leeway) {
            return Err(OidcError::IssuedAt);
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or(OidcError::MissingClaim("exp"))?;
        if exp.saturating_add(self.leeway) <= now {
            return Err(OidcError::Expired);
        }
        Ok(Verified {
            typ: header.typ,
            claims,
        })
    }

    /// Whether a token issued at `iat` (the IdP's clock) is past `max_age` at `now` (ours): an
    /// IdP clock behind ours by up to the leeway makes a fresh token look that much older, so the
    /// leeway counts here as it does for `exp` — refused once the age reaches `max_age + leeway`.
    fn too_old(&self, iat: i64, max_age: i64, now: i64) -> bool {
        iat.saturating_add(max_age).saturating_add(self.leeway) <= now
    }

    /// Sets the clock-skew allowance of `iat` and `exp` (`--clock-leeway`), at most [`MAX_LEEWAY`].
    pub fn set_leeway(&mut self, secs: i64) {
        self.leeway = secs.clamp(0, MAX_LEEWAY);
    }

    /// Verifies an ID token for `tenant` (OIDC Core §3.1.3.7, as a relying party of the tenant),
    /// and that it is one: typed `JWT` or untyped (an access token is `at+jwt`, RFC 9068; a
    /// logout token `logout+jwt`), no `events` claim (a logout token's), `exp` and `iat` present
    /// and `iat` less than the tenant's `max_id_token_age_secs` (plus the leeway) old.
    pub async fn verify_id_token(
        &self,
        token: &str,
        tenant: &TenantRecord,
    ) -> Result<Value, OidcError> {
        let Verified { typ, claims } = self.verify_signed(token, tenant).await?;
        if let Some(typ) = typ.filter(|t| !t.eq_ignore_ascii_case("JWT")) {
            return Err(OidcError::WrongType(typ));
        }
        if claims.get("events").is_some() {
            return Err(OidcError::NotAnIdToken(
                "it carries events (a logout token?)",
            ));
        }
        let now = self.clock.now().unix_timestamp();
        let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(now);
        if self.too_old(iat, tenant.max_id_token_age_secs, now) {
            return Err(OidcError::TooOld(tenant.max_id_token_age_secs));
        }
        if claims
            .get("sub")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(OidcError::MissingClaim("sub"));
        }
        Ok(claims)
    }

    /// Verifies a back-channel logout token (Back-Channel Logout 1.0 §2.6): typed `logout+jwt`
    /// or untyped, `exp` present and not past, `iat` less than [`LOGOUT_TOKEN_MAX_AGE`] (plus the
    /// leeway) old, the
    /// back-channel logout event, no nonce, `sid` or `sub`, and a `jti`.
    pub async fn verify_logout_token(
        &self,
        token: &str,
        tenant: &TenantRecord,
    ) -> Result<Value, OidcError> {
        let Verified { typ, claims } = self.verify_signed(token, tenant).await?;
        if let Some(typ) = typ.filter(|t| !t.eq_ignore_ascii_case("logout+jwt")) {
            return Err(OidcError::WrongType(typ));
        }
        let now = self.clock.now().unix_timestamp();
        let iat = claims.get("iat").and_then(Value::as_i64).unwrap_or(now);
        if self.too_old(iat, LOGOUT_TOKEN_MAX_AGE, now) {
            return Err(OidcError::TooOld(LOGOUT_TOKEN_MAX_AGE));
        }
        if !claims
            .get("events")
            .and_then(|e| e.get(BACKCHANNEL_EVENT))
            .is_some_and(Value::is_object)
        {
            return Err(OidcError::NotALogoutToken(
                "events lacks the back-channel logout event",
            ));
        }
        if claims.get("nonce").is_some() {
            return Err(OidcError::NotALogoutToken(
                "a logout token must not carry a nonce",
            ));
        }
        if claims.get("sid").is_none() && claims.get("sub").is_none() {
            return Err(OidcError::NotALogoutToken("neither sid nor sub"));
        }
        if claims.get("jti").and_then(Value::as_str).is_none() {
            return Err(OidcError::MissingClaim("jti"));
        }
        Ok(claims)
    }
}

/// The `iss` of a JWT without verifying it (to route a logout token to its tenant).
pub fn unverified_issuer(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss").and_then(Value::as_str).map(str::to_owned)
}
