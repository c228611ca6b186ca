//! The OpenID Connect client (the `openidconnect` crate): discovery, authorization code with
//! PKCE S256 on a loopback redirect, the device grant, full ID-token validation, refresh and
//! revocation. The client is public (`token_endpoint_auth_method=none`): no secret is embedded.

use std::time::Duration;

use lanyard_clock::SharedClock;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClient, CoreClientAuthMethod, CoreDeviceAuthorizationResponse, CoreErrorResponseType,
    CoreGenderClaim, CoreGrantType, CoreIdToken, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalProviderMetadata, AuthType, AuthorizationCode,
    ClaimsVerificationError, ClientId, CsrfToken, DeviceAuthorizationUrl, EmptyAdditionalClaims,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, JsonWebKeySetUrl, JsonWebTokenType,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, ProviderMetadata, RedirectUrl, RefreshToken,
    RequestTokenError, RevocationUrl, Scope, SubjectIdentifier, TokenResponse, UserInfoClaims,
    UserInfoError,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::SessionError;
use crate::loopback::{Callback, LoopbackListener};
use crate::tokens::TokenSet;

/// Discovery fields beyond the core set that this client needs.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ExtraMetadata {
    #[serde(default)]
    pub device_authorization_endpoint: Option<DeviceAuthorizationUrl>,
    #[serde(default)]
    pub revocation_endpoint: Option<RevocationUrl>,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    /// From OpenID Connect "Initiating User Registration" §4.1; many providers do not publish it.
    #[serde(default)]
    pub prompt_values_supported: Option<Vec<String>>,
    /// RFC 9207 §3: the provider puts `iss` in every authorization response.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointMaybeSet,
>;
type DeviceClient = CoreClient<
    EndpointSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointMaybeSet,
>;

const SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Why one validation attempt failed.
enum Check {
    /// The token names a key the cached JWKS lacks: worth one re-fetch.
    UnknownKey,
    /// A refreshed ID token that is not the sign-in's: this claim differs.
    Mismatch(&'static str),
    /// A time claim (`exp`, `iat`, `nbf`) is out of range on this clock: the answer is sound,
    /// the clocks disagree (or the answer took too long).
    Clock(SessionError),
    Invalid(SessionError),
}

impl Check {
    /// The error of a sign-in (no binding: a mismatch cannot happen there).
    fn into_error(self) -> SessionError {
        match self {
            Check::UnknownKey => {
                SessionError::IdTokenInvalid("no key with this kid in the provider's JWKS".into())
            }
            Check::Mismatch(claim) => {
                SessionError::IdTokenInvalid(format!("the ID token's {claim} is not the sign-in's"))
            }
            Check::Clock(e) | Check::Invalid(e) => e,
        }
    }
}

impl From<SessionError> for Check {
    fn from(e: SessionError) -> Self {
        Check::Invalid(e)
    }
}

/// A refresh that failed: why, and — when the provider answered with tokens that could not be
/// used — the refresh token it rotated the presented one into (the presented one is spent).
#[derive(Debug)]
pub struct RefreshFailure {
    pub error: SessionError,
    pub rotated: Option<SecretString>,
}

/// One provider (issuer) as seen by one public client.
pub struct Provider {
    pub issuer: String,
    pub client_id: String,
    client: Client,
    device: Option<DeviceClient>,
    revocation: Option<RevocationUrl>,
    jwks_uri: JsonWebKeySetUrl,
    /// The JWKS ID tokens are checked against: from discovery, replaced by a re-fetch when a
    /// token names an unknown `kid` (key rotation).
    jwks: std::sync::Mutex<CoreJsonWebKeySet>,
    http: openidconnect::reqwest::Client,
    /// Whether to send `prompt=consent` with `offline_access` (see [`Provider::discover`]).
    consent_prompt: bool,
    /// RFC 9207: whether every authorization response must carry `iss`.
    iss_parameter_required: bool,
    /// The clock every time claim is checked against (the manager's, so tests move it).
    clock: SharedClock,
    /// Clock-skew allowance for `exp`, `iat` and `nbf`, in seconds (at most [`MAX_LEEWAY`]).
    leeway: i64,
}

/// Clock-skew allowance of ID-token time checks unless configured otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// The largest allowance accepted; a larger configured value is capped to it.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// How long ago an ID token may have been issued (`iat`), beyond the leeway. An ID token comes
/// straight from the token endpoint, so it is minutes old at most; an hour tolerates a local clock
/// well ahead of the provider's (SECURITY I-03) and still refuses a replayed old token.
pub const ID_TOKEN_MAX_AGE: i64 = 3600;

/// What a sign-in started: everything the callback and the code exchange are checked against.
/// Kept together so no part of it outlives or crosses its flow.
struct PendingAuthorization {
    state: CsrfToken,
    nonce: Nonce,
    verifier: openidconnect::PkceCodeVerifier,
    redirect: RedirectUrl,
    /// The issuer this request went to: the callback's `iss` must be it (RFC 9207 §2.4).
    issuer: String,
}

/// When a token answer's access token expires: `expires_in` from `now`, else the token's own
/// `exp` (unverified: only to schedule the refresh).
fn access_token_expiry(response: &CoreTokenResponse, now: i64) -> Option<i64> {
    response
        .expires_in()
        .map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
        .or_else(|| crate::tokens::jwt_exp(response.access_token().secret()))
}

/// Variants of the browser sign-in.
#[derive(Default, Clone, Copy)]
struct BrowserLogin {
    /// `prompt=create`: a new guest.
    guest: bool,
    /// `max_age=0`: the person signs in again (a step-up).
    max_age_zero: bool,
}

/// What a refreshed ID token must agree with: the claims of the ID token of the sign-in
/// (OIDC Core §12.2). Read from the stored ID token, which was fully verified when received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInBinding {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub azp: Option<String>,
    pub auth_time: Option<i64>,
    /// Read from an ID token (else only `iss` and `sub` are known, from the account).
    complete: bool,
}

impl SignInBinding {
    /// The binding of a stored (earlier verified) ID token; `None` if it cannot be read.
    pub fn from_id_token(id_token: &str) -> Option<Self> {
        let claims = crate::tokens::jwt_claims(id_token)?;
        Self::from_claims(&claims)
    }

    fn from_claims(claims: &serde_json::Value) -> Option<Self> {
        let mut aud: Vec<String> = match &claims["aud"] {
            serde_json::Value::String(a) => vec![a.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        aud.sort();
        Some(Self {
            iss: claims["iss"].as_str()?.to_owned(),
            sub: claims["sub"].as_str()?.to_owned(),
            aud,
            azp: claims["azp"].as_str().map(str::to_owned),
            auth_time: claims["auth_time"].as_i64(),
            complete: true,
        })
    }

    /// For an account whose ID token is not stored: what the account itself says.
    pub fn of_account(issuer: &str, subject: &str, client_id: &str) -> Self {
        Self {
            iss: issuer.to_owned(),
            sub: subject.to_owned(),
            aud: vec![client_id.to_owned()],
            azp: None,
            auth_time: None,
            complete: false,
        }
    }

    /// The first claim of `refreshed` that breaks the binding, if any.
    fn mismatch(&self, refreshed: &Self) -> Option<&'static str> {
        let full = self.complete;
        if refreshed.iss != self.iss {
            return Some("iss");
        }
        if refreshed.sub != self.sub {
            return Some("sub");
        }
        if full && refreshed.aud != self.aud {
            return Some("aud");
        }
        if full && refreshed.azp != self.azp {
            return Some("azp");
        }
        match (self.auth_time, refreshed.auth_time) {
            (Some(before), Some(now)) if now < before => Some("auth_time"),
            _ => None,
        }
    }
}

/// What an interactive sign-in needs from the application: show or open this URL.
pub trait AuthPrompt: Send + Sync {
    fn open(&self, authorization_url: &url::Url);
}

impl<F: Fn(&url::Url) + Send + Sync> AuthPrompt for F {
    fn open(&self, authorization_url: &url::Url) {
        self(authorization_url)
    }
}

/// Shows the device-flow code to the user.
pub trait DevicePrompt: Send + Sync {
    fn show(
        &self,
        user_code: &str,
        verification_uri: &str,
        verification_uri_complete: Option<&str>,
    );
}

impl<F: Fn(&str, &str, Option<&str>) + Send + Sync> DevicePrompt for F {
    fn show(&self, user_code: &str, verification_uri: &str, complete: Option<&str>) {
        self(user_code, verification_uri, complete)
    }
}

/// How long one HTTP request to the provider or the registry may take, unless configured
/// otherwise ([`crate::ManagerOptions::http_timeout`]).
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn http_client(timeout: Duration) -> Result<openidconnect::reqwest::Client, SessionError> {
    openidconnect::reqwest::ClientBuilder::new()
        // Following redirects opens the client up to SSRF (openidconnect's own advice).
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(SessionError::transient)
}

type TokenError = RequestTokenError<
    openidconnect::HttpClientError<openidconnect::reqwest::Error>,
    openidconnect::StandardErrorResponse<CoreErrorResponseType>,
>;

/// Sorts a token-endpoint failure: rejected grant → sign in again; client problems → sign in
/// again and say it is configuration; anything network or 5xx → transient.
fn classify(account: &str, e: TokenError) -> SessionError {
    match e {
        RequestTokenError::ServerResponse(r) => match r.error() {
            CoreErrorResponseType::InvalidGrant => SessionError::ReauthenticationRequired {
                account: account.to_owned(),
                reason: r
                    .error_description()
                    .cloned()
                    .unwrap_or_else(|| "the grant was rejected".into()),
            },
            // The client itself is refused (deleted, disabled, re-registered): nothing is known
            // of the person's grant, so nothing is signed out — the fix is the configuration.
            CoreErrorResponseType::InvalidClient | CoreErrorResponseType::UnauthorizedClient => {
                tracing::error!(account, error = %r.error(), "the provider rejects this client: configuration error");
                SessionError::Configuration(format!(
                    "it answered {}; check the client id and its registration there",
                    r.error()
                ))
            }
            other => SessionError::Transient {
                detail: format!("the provider answered {other}"),
            },
        },
        RequestTokenError::Request(e) => SessionError::transient_with_causes(&e),
        // A successful answer that does not parse (a token response whose ID token lacks a
        // required claim, say) is an invalid token, not a network hiccup.
        RequestTokenError::Parse(e, body)
            if serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v.get("access_token").is_some()) =>
        {
            SessionError::IdTokenInvalid(format!("the token response is malformed: {e}"))
        }
        RequestTokenError::Parse(e, _) => {
            SessionError::transient(format!("unreadable answer: {e}"))
        }
        RequestTokenError::Other(e) => SessionError::transient(e),
    }
}

impl Provider {
    /// Discovers `issuer` (its `issuer` must match exactly) and checks that PKCE S256 is offered.
    /// Every request to the provider times out after [`DEFAULT_HTTP_TIMEOUT`].
    pub async fn discover(issuer: &str, client_id: &str) -> Result<Self, SessionError> {
        Self::discover_with_timeout(issuer, client_id, DEFAULT_HTTP_TIMEOUT).await
    }

    /// [`Provider::discover`], every request to the provider timing out after `timeout`.
    pub async fn discover_with_timeout(
        issuer: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, SessionError> {
        let http = http_client(timeout)?;
        let discovery = |detail: String| SessionError::Discovery {
            issuer: issuer.to_owned(),
            detail,
        };
        let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| discovery(e.to_string()))?;
        let metadata = Metadata::discover_async(issuer_url, &http)
            .await
            .map_err(|e| discovery(format!("{e}")))?;
        if !metadata
            .additional_metadata()
            .code_challenge_methods_supported
            .iter()
            .any(|m| m == "S256")
        {
            return Err(SessionError::PkceUnsupported);
        }
        let token_url = metadata
            .token_endpoint()
            .cloned()
            .ok_or_else(|| discovery("no token endpoint".into()))?;
        let extra = metadata.additional_metadata().clone();
        // OIDC Core §11: a provider may ignore `offline_access` unless `prompt=consent` comes with
        // it (oidc-provider does). Sent unless the provider says it does not support the value.
        let consent_prompt = extra
            .prompt_values_supported
            .as_ref()
            .is_none_or(|values| values.iter().any(|v| v == "consent"));
        let jwks_uri = metadata.jwks_uri().clone();
        let jwks = metadata.jwks().clone();
        let client: Client =
            CoreClient::from_provider_metadata(metadata, ClientId::new(client_id.to_owned()), None)
                .set_token_uri(token_url)
                .set_auth_type(AuthType::RequestBody);
        Ok(Self {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            device: extra
                .device_authorization_endpoint
                .map(|u| client.clone().set_device_authorization_url(u)),
            revocation: extra.revocation_endpoint,
            jwks_uri,
            jwks: std::sync::Mutex::new(jwks),
            client,
            http,
            consent_prompt,
            iss_parameter_required: extra.authorization_response_iss_parameter_supported,
            clock: std::sync::Arc::new(lanyard_clock::SystemClock),
            leeway: i64::try_from(DEFAULT_LEEWAY.as_secs()).unwrap_or(60),
        })
    }

    /// Checks every time claim against `clock` (the manager's), not the wall clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock-skew allowance of ID-token time checks; capped at [`MAX_LEEWAY`].
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        if leeway > MAX_LEEWAY {
            tracing::warn!(
                configured = leeway.as_secs(),
                cap = MAX_LEEWAY.as_secs(),
                "ID-token clock leeway capped"
            );
        }
        self.leeway = i64::try_from(leeway.min(MAX_LEEWAY).as_secs()).unwrap_or(0);
        self
    }

    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    /// An ID-token verifier over the current JWKS at time `now`; the alg allow-list is ours,
    /// never the token's. Only `typ` absent or `JWT` is an ID token (RFC 8725 §3.11: a logout
    /// token, an access token or any other JWT typed otherwise must not pass for one). `exp` and
    /// `iat` are checked against `now` with the leeway; openidconnect alone would read the wall
    /// clock with no leeway and accept any `iat`.
    fn verifier(&self, now: i64) -> openidconnect::core::CoreIdTokenVerifier<'static> {
        let jwks = self.jwks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let leeway = self.leeway;
        let at = |t: i64| chrono::DateTime::from_timestamp(t, 0).unwrap_or_default();
        let skewed_now = at(now - leeway);
        openidconnect::core::CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.client_id.clone()),
            IssuerUrl::new(self.issuer.clone())
                .unwrap_or_else(|_| unreachable!("validated at discovery")),
            jwks,
        )
        .set_allowed_algs(vec![
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        ])
        .set_allowed_jose_types(JsonWebTokenType::new("JWT".into()).normalize().ok())
        // exp is refused once `now - leeway` reaches it.
        .set_time_fn(move || skewed_now)
        .set_issue_time_verifier_fn(move |iat| {
            let iat = iat.timestamp();
            if iat > now + leeway {
                Err(format!("iat is {} s in the future", iat - now))
            } else if iat < now - ID_TOKEN_MAX_AGE - leeway {
                Err(format!("iat is {} s in the past", now - iat))
            } else {
                Ok(())
            }
        })
    }

    /// Validates, re-fetching the JWKS exactly once if the token's `kid` is unknown (C-03).
    /// With `binding` (a refresh), the new ID token must also be the sign-in's (OIDC Core §12.2).
    async fn validate(
        &self,
        response: &CoreTokenResponse,
        nonce: Option<&Nonce>,
        binding: Option<&SignInBinding>,
    ) -> Result<TokenSet, Check> {
        match self.validate_once(response, nonce, binding) {
            Err(Check::UnknownKey) => {
                tracing::info!(issuer = %self.issuer, "ID token signed with an unknown key: re-fetching the JWKS once");
                let fresh = CoreJsonWebKeySet::fetch_async(&self.jwks_uri, &self.http)
                    .await
                    .map_err(|e| SessionError::transient(format!("JWKS re-fetch failed: {e}")))?;
                *self.jwks.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
                match self.validate_once(response, nonce, binding) {
                    Err(Check::UnknownKey) => Err(Check::Invalid(SessionError::IdTokenInvalid(
                        "no key with this kid, even after re-fetching the JWKS".into(),
                    ))),
                    other => other,
                }
            }
            other => other,
        }
    }

    /// RFC 6749 §7.1 / RFC 6750: this client only knows how to use a bearer token; a DPoP- or
    /// MAC-bound token sent as a bearer would fail (or leak its binding) later.
    fn check_bearer(&self, response: &CoreTokenResponse) -> Result<(), Check> {
        let bearer = match response.token_type() {
            openidconnect::core::CoreTokenType::Bearer => true,
            openidconnect::core::CoreTokenType::Extension(t) => t.eq_ignore_ascii_case("bearer"),
            _ => false,
        };
        if bearer {
            return Ok(());
        }
        let found = response.token_type().as_ref().to_owned();
        tracing::warn!(issuer = %self.issuer, token_type = %found, "token response refused: not a bearer token");
        Err(Check::Invalid(SessionError::UnexpectedTokenType { found }))
    }

    /// A refresh answer with no ID token (OIDC Core §12.2: "it might not contain an id_token"):
    /// its access and refresh tokens with the sign-in's identity, read from `sign_in`, the ID
    /// token stored at the sign-in (fully verified then). Nothing new is claimed about the
    /// person, so there is nothing to bind.
    fn carry_sign_in(
        &self,
        response: &CoreTokenResponse,
        sign_in: &SecretString,
        binding: &SignInBinding,
    ) -> TokenSet {
        let claims = crate::tokens::jwt_claims(sign_in.expose_secret()).unwrap_or_default();
        let text = |name: &str| claims[name].as_str().map(str::to_owned);
        TokenSet {
            subject: binding.sub.clone(),
            email: text("email"),
            name: text("name"),
            access_token: SecretString::from(response.access_token().secret().clone()),
            refresh_token: response
                .refresh_token()
                .map(|r| SecretString::from(r.secret().clone())),
            id_token: sign_in.clone(),
            access_token_expires_at: access_token_expiry(response, self.now()),
            is_guest: claims["is_guest"].as_bool().unwrap_or(false),
        }
    }

    /// Validates a token response: `token_type` is Bearer, and its ID token (typ, signature,
    /// iss, aud, azp, exp, iat, nbf, nonce, at_hash, no `events`) is an ID token of this client
    /// at the clock's time; builds the token set.
    fn validate_once(
        &self,
        response: &CoreTokenResponse,
        nonce: Option<&Nonce>,
        binding: Option<&SignInBinding>,
    ) -> Result<TokenSet, Check> {
        self.check_bearer(response)?;
        let id_token: &CoreIdToken = response.id_token().ok_or_else(|| {
            SessionError::IdTokenInvalid("the token response has no ID token".into())
        })?;
        let now = self.now();
        let verifier = self.verifier(now);
        let invalid = |e: &dyn std::fmt::Display| SessionError::IdTokenInvalid(e.to_string());
        let claims = match nonce {
            Some(n) => id_token.claims(&verifier, n),
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(|e| match e {
            ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            ) => Check::UnknownKey,
            // A refreshed ID token for another issuer or audience is not the sign-in's.
            ClaimsVerificationError::InvalidIssuer(_) if binding.is_some() => {
                Check::Mismatch("iss")
            }
            ClaimsVerificationError::InvalidAudience(_) if binding.is_some() => {
                Check::Mismatch("aud")
            }
            // exp, and iat through the issue-time check above.
            expired @ ClaimsVerificationError::Expired(_) => Check::Clock(invalid(&expired)),
            other => Check::Invalid(invalid(&other)),
        })
        .map_err(|e| match (e, binding) {
            // Raised after the signature, issuer and audience checks: the claims are the
            // provider's. A refreshed ID token that is not the sign-in's stays a mismatch,
            // whatever its times.
            (Check::Clock(e), Some(original)) => {
                let raw = crate::tokens::jwt_claims(&id_token.to_string()).unwrap_or_default();
                match SignInBinding::from_claims(&raw) {
                    None => Check::Mismatch("sub"),
                    Some(refreshed) => original
                        .mismatch(&refreshed)
                        .map_or(Check::Clock(e), Check::Mismatch),
                }
            }
            (e, _) => e,
        })?;
        // Verified just above: the raw claims only add what the typed ones drop.
        let raw = crate::tokens::jwt_claims(&id_token.to_string()).unwrap_or_default();
        if raw.get("events").is_some() {
            // A Security Event Token (a back-channel logout token, say) is not an ID token.
            return Err(Check::Invalid(SessionError::IdTokenInvalid(
                "the token carries events: it is a security event token, not an ID token".into(),
            )));
        }
        if let Some(nbf) = raw.get("nbf").and_then(serde_json::Value::as_i64) {
            if nbf > now + self.leeway {
                return Err(Check::Clock(SessionError::IdTokenInvalid(format!(
                    "nbf is {} s in the future",
                    nbf - now
                ))));
            }
        }
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token.signing_alg().map_err(|e| invalid(&e))?;
            let key = id_token.signing_key(&verifier).map_err(|e| invalid(&e))?;
            let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
                .map_err(|e| invalid(&e))?;
            if actual != *expected {
                return Err(Check::Invalid(SessionError::IdTokenInvalid(
                    "at_hash does not match the access token".into(),
                )));
            }
        }
        // OIDC Core §3.1.3.7 step 5: a present `azp` must be this client, even with one audience.
        if claims
            .authorized_party()
            .is_some_and(|azp| azp.as_str() != self.client_id)
        {
            return Err(match binding {
                Some(_) => Check::Mismatch("azp"),
                None => Check::Invalid(SessionError::IdTokenInvalid(
                    "azp names another client".into(),
                )),
            });
        }
        if let Some(original) = binding {
            let refreshed = SignInBinding::from_claims(&raw).ok_or(Check::Mismatch("sub"))?;
            if let Some(claim) = original.mismatch(&refreshed) {
                return Err(Check::Mismatch(claim));
            }
        }
        let sub = claims.subject().as_str().to_owned();
        Ok(TokenSet {
            subject: sub,
            email: claims.email().map(|e| e.as_str().to_owned()),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            access_token: SecretString::from(response.access_token().secret().clone()),
            refresh_token: response
                .refresh_token()
                .map(|r| SecretString::from(r.secret().clone())),
            id_token: SecretString::from(id_token.to_string()),
            access_token_expires_at: access_token_expiry(response, now),
            is_guest: raw
                .get("is_guest")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        })
    }

    /// Authorization code + PKCE on a loopback redirect: `prompt` gets the URL to open.
    pub async fn login_with_browser(
        &self,
        prompt: &dyn AuthPrompt,
        timeout: Duration,
    ) -> Result<TokenSet, SessionError> {
        self.browser_login(prompt, timeout, BrowserLogin::default())
            .await
    }

    /// [`Provider::login_with_browser`] asking for a new guest account (`prompt=create`, from
    /// OpenID Connect "Initiating User Registration"; the mock IdP signs a guest in at once).
    pub async fn login_as_guest_with_browser(
        &self,
        prompt: &dyn AuthPrompt,
        timeout: Duration,
    ) -> Result<TokenSet, SessionError> {
        self.browser_login(
            prompt,
            timeout,
            BrowserLogin {
                guest: true,
                ..BrowserLogin::default()
            },
        )
        .await
    }

    /// A fresh sign-in for a step-up (RFC 9470): `max_age=0` makes the provider ask the person
    /// again, whatever session it holds.
    pub async fn reauthenticate_with_browser(
        &self,
        prompt: &dyn AuthPrompt,
        timeout: Duration,
    ) -> Result<TokenSet, SessionError> {
        self.browser_login(
            prompt,
            timeout,
            BrowserLogin {
                max_age_zero: true,
                ..BrowserLogin::default()
            },
        )
        .await
    }

    async fn browser_login(
        &self,
        prompt: &dyn AuthPrompt,
        timeout: Duration,
        how: BrowserLogin,
    ) -> Result<TokenSet, SessionError> {
        let listener = LoopbackListener::bind().await?;
        let redirect = RedirectUrl::new(listener.redirect_uri())
            .map_err(|e| SessionError::Configuration(e.to_string()))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge)
            .set_redirect_uri(std::borrow::Cow::Owned(redirect.clone()));
        for s in SCOPES {
            request = request.add_scope(Scope::new(s.into()));
        }
        if how.guest {
            request = request.add_prompt(CoreAuthPrompt::Extension("create".into()));
        }
        if how.max_age_zero {
            request = request.set_max_age(Duration::ZERO);
        }
        if self.consent_prompt && SCOPES.contains(&"offline_access") {
            request = request.add_prompt(CoreAuthPrompt::Consent);
        }
        let (url, state, nonce) = request.url();
        let started = self.now();
        let pending = PendingAuthorization {
            state,
            nonce,
            verifier,
            redirect,
            issuer: self.issuer.clone(),
        };
        prompt.open(&url);
        let (code, iss) = match listener.wait(pending.state.secret(), timeout).await? {
            Callback::Code { code, iss } => (code, iss),
            Callback::Error {
                error,
                description,
                iss,
            } => {
                // An error from another provider is no more to be trusted than its code; it
                // ends this flow either way, but say which check failed.
                self.check_response_issuer(&pending, iss.as_deref())?;
                return Err(SessionError::AuthorizationDenied { error, description });
            }
        };
        self.check_response_issuer(&pending, iss.as_deref())?;
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(pending.verifier)
            .set_redirect_uri(std::borrow::Cow::Owned(pending.redirect))
            .request_async(&self.http)
            .await
            .map_err(|e| classify("the new account", e))?;
        let set = self
            .validate(&response, Some(&pending.nonce), None)
            .await
            .map_err(Check::into_error)?;
        if how.max_age_zero {
            self.check_fresh_sign_in(&set, started)?;
        }
        self.complete_profile(set).await
    }

    /// OIDC Core §3.1.2.1: with `max_age`, `auth_time` is required; after `max_age=0` it must be
    /// this sign-in's, not an older one the provider kept.
    fn check_fresh_sign_in(&self, set: &TokenSet, started: i64) -> Result<(), SessionError> {
        let auth_time = crate::tokens::jwt_claims(set.id_token.expose_secret())
            .and_then(|c| c.get("auth_time")?.as_i64());
        if auth_time.is_none_or(|t| t < started - self.leeway) {
            return Err(SessionError::IdTokenInvalid(
                "the provider did not sign the person in again (auth_time is old or missing)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// RFC 9207 §2.4: an authorization response's `iss` must be the issuer the request went to;
    /// a provider that advertises the parameter must send it. A mismatch is a mix-up: the code
    /// is never redeemed.
    fn check_response_issuer(
        &self,
        pending: &PendingAuthorization,
        iss: Option<&str>,
    ) -> Result<(), SessionError> {
        match iss {
            Some(found) if found == pending.issuer => Ok(()),
            None if !self.iss_parameter_required => Ok(()),
            found => {
                tracing::warn!(expected = %pending.issuer, found = ?found, "authorization response from another issuer (RFC 9207); refusing the code");
                Err(SessionError::IssuerMismatch {
                    expected: pending.issuer.clone(),
                    found: found.map(str::to_owned),
                })
            }
        }
    }

    /// The device authorization grant (RFC 8628), honouring `interval` and `slow_down`.
    pub async fn login_with_device_code(
        &self,
        prompt: &dyn DevicePrompt,
        timeout: Duration,
    ) -> Result<TokenSet, SessionError> {
        self.device_login(prompt, timeout, false).await
    }

    /// A fresh device-code sign-in for a step-up (`max_age=0`, as
    /// [`Provider::reauthenticate_with_browser`]).
    pub async fn reauthenticate_with_device_code(
        &self,
        prompt: &dyn DevicePrompt,
        timeout: Duration,
    ) -> Result<TokenSet, SessionError> {
        self.device_login(prompt, timeout, true).await
    }

    async fn device_login(
        &self,
        prompt: &dyn DevicePrompt,
        timeout: Duration,
        max_age_zero: bool,
    ) -> Result<TokenSet, SessionError> {
        let device = self.device.as_ref().ok_or_else(|| {
            SessionError::Configuration("the provider has no device authorization endpoint".into())
        })?;
        let started = self.now();
        let mut request = device.exchange_device_code();
        for s in SCOPES {
            request = request.add_scope(Scope::new(s.into()));
        }
        if max_age_zero {
            request = request.add_extra_param("max_age", "0");
        }
        let details: CoreDeviceAuthorizationResponse = request
            .request_async(&self.http)
            .await
            .map_err(|e| classify("the new account", e))?;
        prompt.show(
            details.user_code().secret(),
            details.verification_uri().as_str(),
            details
                .verification_uri_complete()
                .map(|u| u.secret().as_str()),
        );
        let response: CoreTokenResponse = device
            .exchange_device_access_token(&details)
            .request_async(&self.http, tokio::time::sleep, Some(timeout))
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r)
                    if matches!(
                        r.error(),
                        openidconnect::DeviceCodeErrorResponseType::AccessDenied
                    ) =>
                {
                    SessionError::AuthorizationDenied {
                        error: "access_denied".into(),
                        description: r.error_description().cloned(),
                    }
                }
                RequestTokenError::ServerResponse(r)
                    if matches!(
                        r.error(),
                        openidconnect::DeviceCodeErrorResponseType::ExpiredToken
                    ) =>
                {
                    SessionError::LoginTimeout(timeout.as_secs())
                }
                RequestTokenError::ServerResponse(r) => SessionError::AuthorizationDenied {
                    error: r.error().to_string(),
                    description: r.error_description().cloned(),
                },
                RequestTokenError::Other(e) if e.contains("timeout") || e.contains("Timed out") => {
                    SessionError::LoginTimeout(timeout.as_secs())
                }
                other => SessionError::transient(other),
            })?;
        let set = self
            .validate(&response, None, None)
            .await
            .map_err(Check::into_error)?;
        if max_age_zero {
            self.check_fresh_sign_in(&set, started)?;
        }
        self.complete_profile(set).await
    }

    /// After a sign-in: a provider that keeps email and name out of the ID token (OIDC Core
    /// §5.4 lets it, and oidc-provider does) serves them at UserInfo. Asked only when the ID
    /// token lacks one of them. A UserInfo answer for another subject fails the sign-in (OIDC
    /// Core §5.3.2); any other UserInfo failure only costs the profile, not the sign-in.
    async fn complete_profile(&self, mut set: TokenSet) -> Result<TokenSet, SessionError> {
        if set.email.is_some() && set.name.is_some() {
            return Ok(set);
        }
        let request = match self.client.user_info(
            AccessToken::new(set.access_token.expose_secret().to_owned()),
            Some(SubjectIdentifier::new(set.subject.clone())),
        ) {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!(issuer = %self.issuer, "no UserInfo endpoint: the profile is what the ID token says");
                return Ok(set);
            }
        };
        let claims: UserInfoClaims<EmptyAdditionalClaims, CoreGenderClaim> = match request
            .request_async(&self.http)
            .await
        {
            Ok(c) => c,
            Err(UserInfoError::ClaimsVerification(ClaimsVerificationError::InvalidSubject(_))) => {
                tracing::warn!(issuer = %self.issuer, "UserInfo answered for another subject than the ID token; refusing the sign-in");
                return Err(SessionError::UserInfoSubjectMismatch {
                    issuer: self.issuer.clone(),
                });
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "UserInfo failed; signing in without email or name");
                return Ok(set);
            }
        };
        if set.email.is_none() {
            set.email = claims.email().map(|e| e.as_str().to_owned());
        }
        if set.name.is_none() {
            set.name = claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned());
        }
        Ok(set)
    }

    /// Refreshes. Without a new refresh token in the answer, the old one stays (RFC 6749 §6).
    /// The new ID token must be the sign-in's (`binding`: same iss, sub, aud, azp, and an
    /// auth_time not earlier; OIDC Core §12.2); if it is not, nothing of the answer is used and
    /// the account must sign in again. See [`Provider::refresh_keeping_rotation`] for the refresh
    /// token of an answer that could not be used.
    pub async fn refresh(
        &self,
        account: &str,
        refresh_token: &SecretString,
        binding: &SignInBinding,
    ) -> Result<TokenSet, SessionError> {
        self.refresh_keeping_rotation(account, refresh_token, binding)
            .await
            .map_err(|f| f.error)
    }

    /// As [`Provider::refresh`]; when the provider answered soundly but the answer could not be
    /// used here and now (its ID token's time claims out of range on this clock, the JWKS
    /// unreachable for a re-fetch) or showed that the account must sign in again, the failure
    /// carries the refresh token the answer rotated the presented one into: the presented one is
    /// spent at the provider, and presenting it again would trip its reuse detection. A
    /// defective answer (wrong token type, signature, claims) carries nothing: none of it is
    /// trusted.
    pub async fn refresh_keeping_rotation(
        &self,
        account: &str,
        refresh_token: &SecretString,
        binding: &SignInBinding,
    ) -> Result<TokenSet, RefreshFailure> {
        self.refresh_sign_in(account, refresh_token, binding, None)
            .await
    }

    /// As [`Provider::refresh_keeping_rotation`], given `sign_in`, the ID token stored at the
    /// sign-in that `binding` was read from: an answer with no ID token (OIDC Core §12.2 allows
    /// it) keeps that one. Without it, such an answer cannot be bound to the sign-in and is
    /// refused, its rotated refresh token carried in the failure.
    pub async fn refresh_sign_in(
        &self,
        account: &str,
        refresh_token: &SecretString,
        binding: &SignInBinding,
        sign_in: Option<&SecretString>,
    ) -> Result<TokenSet, RefreshFailure> {
        let response = self
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.expose_secret().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| RefreshFailure {
                error: classify(account, e),
                rotated: None,
            })?;
        let rotated = response
            .refresh_token()
            .filter(|rt| rt.secret() != refresh_token.expose_secret())
            .map(|rt| SecretString::from(rt.secret().clone()));
        let validated = match (response.id_token(), sign_in) {
            (Some(_), _) => self.validate(&response, None, Some(binding)).await,
            (None, Some(sign_in)) => self
                .check_bearer(&response)
                .map(|()| self.carry_sign_in(&response, sign_in, binding)),
            (None, None) => match self.check_bearer(&response) {
                // Sound, but bound to no sign-in here: refused, its rotation kept.
                Ok(()) => {
                    tracing::warn!(account, issuer = %self.issuer, "the refresh answer has no ID token and none of the sign-in is stored: refused, its rotated refresh token kept");
                    return Err(RefreshFailure {
                        error: SessionError::IdTokenInvalid(
                            "the refresh answer has no ID token, and no ID token of the sign-in is stored to keep".into(),
                        ),
                        rotated,
                    });
                }
                Err(e) => Err(e),
            },
        };
        let mut set = match validated {
            Ok(set) => set,
            Err(Check::Mismatch(claim)) => {
                tracing::warn!(account, issuer = %self.issuer, claim, "the refreshed ID token is not the sign-in's; the account must sign in again");
                return Err(RefreshFailure {
                    error: SessionError::ReauthenticationRequired {
                        account: account.to_owned(),
                        reason: format!(
                            "the identity provider's refreshed ID token does not match the sign-in ({claim} differs)"
                        ),
                    },
                    rotated,
                });
            }
            // Sound but unusable here and now (the clocks disagree, the JWKS could not be
            // fetched): the provider did rotate, so its successor is the one to present next.
            Err(Check::Clock(error))
            | Err(Check::Invalid(error @ SessionError::Transient { .. })) => {
                if rotated.is_some() {
                    tracing::warn!(account, issuer = %self.issuer, error = %error, "the refresh answer could not be used, but the provider rotated the refresh token: keeping its successor");
                }
                return Err(RefreshFailure { error, rotated });
            }
            // A defective answer (wrong type, signature, claims): nothing of it is used.
            Err(e) => {
                return Err(RefreshFailure {
                    error: e.into_error(),
                    rotated: None,
                })
            }
        };
        if set.refresh_token.is_none() {
            set.refresh_token = Some(refresh_token.clone());
        }
        Ok(set)
    }

    /// Revokes a refresh token (RFC 7009). Sent directly rather than through `oauth2`, which
    /// refuses any http revocation URL — including a loopback development provider's.
    pub async fn revoke(&self, refresh_token: &SecretString) -> Result<(), SessionError> {
        let Some(url) = &self.revocation else {
            return Err(SessionError::Configuration(
                "the provider has no revocation endpoint".into(),
            ));
        };
        let url = url.url();
        let loopback = matches!(
            url.host_str(),
            Some("127.0.0.1") | Some("[::1]") | Some("localhost")
        );
        if url.scheme() != "https" && !loopback {
            return Err(SessionError::Configuration(
                "refusing to send a token to a non-https revocation endpoint".into(),
            ));
        }
        let res = self
            .http
            .post(url.as_str())
            .form(&[
                ("token", refresh_token.expose_secret()),
                ("token_type_hint", "refresh_token"),
                ("client_id", self.client_id.as_str()),
            ])
            .send()
            .await
            .map_err(SessionError::transient)?;
        match res.status().as_u16() {
            200 => Ok(()),
            500..=599 => Err(SessionError::transient(format!(
                "revocation answered {}",
                res.status()
            ))),
            other => Err(SessionError::Configuration(format!(
                "revocation answered {other}"
            ))),
        }
    }
}
