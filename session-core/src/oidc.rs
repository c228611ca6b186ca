//! The OpenID Connect client (the `openidconnect` crate): discovery, authorization code with
//! PKCE S256 on a loopback redirect, the device grant, full ID-token validation, refresh and
//! revocation. The client is public (`token_endpoint_auth_method=none`): no secret is embedded.

use std::time::Duration;

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
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, JsonWebKeySetUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, ProviderMetadata, RedirectUrl, RefreshToken,
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
    Invalid(SessionError),
}

impl From<SessionError> for Check {
    fn from(e: SessionError) -> Self {
        Check::Invalid(e)
    }
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
            CoreErrorResponseType::InvalidClient | CoreErrorResponseType::UnauthorizedClient => {
                tracing::error!(error = %r.error(), "the provider rejects this client: configuration error");
                SessionError::ReauthenticationRequired {
                    account: account.to_owned(),
                    reason: format!(
                        "the provider rejects this client ({}); check the client configuration",
                        r.error()
                    ),
                }
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
        })
    }

    /// An ID-token verifier over the current JWKS; the alg allow-list is ours, never the token's.
    fn verifier(&self) -> openidconnect::core::CoreIdTokenVerifier<'static> {
        let jwks = self.jwks.lock().unwrap_or_else(|p| p.into_inner()).clone();
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
    }

    /// Validates, re-fetching the JWKS exactly once if the token's `kid` is unknown (C-03).
    async fn validate(
        &self,
        response: &CoreTokenResponse,
        nonce: Option<&Nonce>,
        expected_sub: Option<&str>,
        now: i64,
    ) -> Result<TokenSet, SessionError> {
        match self.validate_once(response, nonce, expected_sub, now) {
            Err(Check::UnknownKey) => {
                tracing::info!(issuer = %self.issuer, "ID token signed with an unknown key: re-fetching the JWKS once");
                let fresh = CoreJsonWebKeySet::fetch_async(&self.jwks_uri, &self.http)
                    .await
                    .map_err(|e| SessionError::transient(format!("JWKS re-fetch failed: {e}")))?;
                *self.jwks.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
                self.validate_once(response, nonce, expected_sub, now)
                    .map_err(|e| match e {
                        Check::UnknownKey => SessionError::IdTokenInvalid(
                            "no key with this kid, even after re-fetching the JWKS".into(),
                        ),
                        Check::Invalid(e) => e,
                    })
            }
            Err(Check::Invalid(e)) => Err(e),
            Ok(t) => Ok(t),
        }
    }

    /// Validates the ID token of a token response (signature, iss, aud, azp, exp, nonce, at_hash)
    /// and builds the token set.
    fn validate_once(
        &self,
        response: &CoreTokenResponse,
        nonce: Option<&Nonce>,
        expected_sub: Option<&str>,
        now: i64,
    ) -> Result<TokenSet, Check> {
        let id_token: &CoreIdToken = response.id_token().ok_or_else(|| {
            SessionError::IdTokenInvalid("the token response has no ID token".into())
        })?;
        let verifier = self.verifier();
        let invalid = |e: &dyn std::fmt::Display| SessionError::IdTokenInvalid(e.to_string());
        let claims = match nonce {
            Some(n) => id_token.claims(&verifier, n),
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
        }
        .map_err(|e| match e {
            openidconnect::ClaimsVerificationError::SignatureVerification(
                openidconnect::SignatureVerificationError::NoMatchingKey,
            ) => Check::UnknownKey,
            other => Check::Invalid(invalid(&other)),
        })?;
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
            return Err(Check::Invalid(SessionError::IdTokenInvalid(
                "azp names another client".into(),
            )));
        }
        let sub = claims.subject().as_str().to_owned();
        if expected_sub.is_some_and(|s| s != sub) {
            return Err(Check::Invalid(SessionError::IdTokenInvalid(
                "the refreshed ID token names another subject".into(),
            )));
        }
        let expires_at = response
            .expires_in()
            .map(|d| now + i64::try_from(d.as_secs()).unwrap_or(0));
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
            access_token_expires_at: expires_at
                .or_else(|| crate::tokens::jwt_exp(response.access_token().secret())),
            // Verified just above; the typed claims have no place for this one.
            is_guest: crate::tokens::jwt_claims(&id_token.to_string())
                .and_then(|c| c.get("is_guest")?.as_bool())
                .unwrap_or(false),
        })
    }

    /// Authorization code + PKCE on a loopback redirect: `prompt` gets the URL to open.
    pub async fn login_with_browser(
        &self,
        prompt: &dyn AuthPrompt,
        timeout: Duration,
        now: i64,
    ) -> Result<TokenSet, SessionError> {
        self.browser_login(prompt, timeout, now, false).await
    }

    /// [`Provider::login_with_browser`] asking for a new guest account (`prompt=create`, from
    /// OpenID Connect "Initiating User Registration"; the mock IdP signs a guest in at once).
    pub async fn login_as_guest_with_browser(
        &self,
        prompt: &dyn AuthPrompt,
        timeout: Duration,
        now: i64,
    ) -> Result<TokenSet, SessionError> {
        self.browser_login(prompt, timeout, now, true).await
    }

    async fn browser_login(
        &self,
        prompt: &dyn AuthPrompt,
        timeout: Duration,
        now: i64,
        guest: bool,
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
        if guest {
            request = request.add_prompt(CoreAuthPrompt::Extension("create".into()));
        }
        if self.consent_prompt && SCOPES.contains(&"offline_access") {
            request = request.add_prompt(CoreAuthPrompt::Consent);
        }
        let (url, state, nonce) = request.url();
        prompt.open(&url);
        let code = match listener.wait(state.secret(), timeout).await? {
            Callback::Code(c) => c,
            Callback::Error { error, description } => {
                return Err(SessionError::AuthorizationDenied { error, description })
            }
        };
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(verifier)
            .set_redirect_uri(std::borrow::Cow::Owned(redirect))
            .request_async(&self.http)
            .await
            .map_err(|e| classify("the new account", e))?;
        let set = self.validate(&response, Some(&nonce), None, now).await?;
        self.complete_profile(set).await
    }

    /// The device authorization grant (RFC 8628), honouring `interval` and `slow_down`.
    pub async fn login_with_device_code(
        &self,
        prompt: &dyn DevicePrompt,
        timeout: Duration,
        now: i64,
    ) -> Result<TokenSet, SessionError> {
        let device = self.device.as_ref().ok_or_else(|| {
            SessionError::Configuration("the provider has no device authorization endpoint".into())
        })?;
        let mut request = device.exchange_device_code();
        for s in SCOPES {
            request = request.add_scope(Scope::new(s.into()));
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
        let set = self.validate(&response, None, None, now).await?;
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
    pub async fn refresh(
        &self,
        account: &str,
        refresh_token: &SecretString,
        subject: &str,
        now: i64,
    ) -> Result<TokenSet, SessionError> {
        let response = self
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.expose_secret().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| classify(account, e))?;
        let mut set = self.validate(&response, None, Some(subject), now).await?;
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
