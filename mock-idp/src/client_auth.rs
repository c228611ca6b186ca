//! Client authentication at the token, device authorization, revocation and introspection
//! endpoints (RFC 6749 §2.3): reading how the client identified itself ([`ClientAuth::parse`]:
//! `client_secret_basic`, `client_secret_post`, or a public client's bare `client_id`) and
//! checking it against the tenant's registry ([`authenticate`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use url::form_urlencoded;

use crate::directory::Client;
use crate::error::OAuthError;
use crate::params::Params;
use crate::tenant::Tenant;

/// How the client identified itself.
#[derive(Debug)]
pub enum ClientAuth {
    /// HTTP Basic (client_secret_basic).
    Basic {
        client_id: String,
        secret: SecretString,
    },
    /// `client_secret` in the body (client_secret_post).
    Post {
        client_id: String,
        secret: SecretString,
    },
    /// A public client: `client_id` only.
    Public { client_id: String },
}

impl ClientAuth {
    /// Reads client authentication from an `Authorization` header and/or the body (RFC 6749 §2.3).
    pub fn parse(params: &Params, authorization: Option<&str>) -> Result<Self, OAuthError> {
        let body_id = params.get("client_id");
        let body_secret = params.get("client_secret");
        if let Some(header) = authorization {
            let Some(b64) = header.strip_prefix("Basic ") else {
                return Err(OAuthError::invalid_client(
                    "only HTTP Basic client authentication is supported in the Authorization header",
                    true,
                ));
            };
            let decoded = STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    OAuthError::invalid_client(
                        "the Basic credentials are not valid base64 UTF-8",
                        true,
                    )
                })?;
            let (id, secret) = decoded.split_once(':').ok_or_else(|| {
                OAuthError::invalid_client("the Basic credentials lack a ':'", true)
            })?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
            let decode = |s: &str| -> String {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .map(|(_, v)| v.into_owned())
                    .next()
                    .unwrap_or_default()
            };
            let (id, secret) = (decode(id), decode(secret));
            if body_secret.is_some() {
                return Err(OAuthError::invalid_request(
                    "use one client authentication method, not Basic and client_secret together",
                ));
            }
            if body_id.is_some_and(|b| b != id) {
                return Err(OAuthError::invalid_request(
                    "client_id in the body differs from the Basic credentials",
                ));
            }
            if id.is_empty() {
                return Err(OAuthError::invalid_client(
                    "the Basic credentials have an empty client_id",
                    true,
                ));
            }
            return Ok(ClientAuth::Basic {
                client_id: id,
                secret: SecretString::from(secret),
            });
        }
        match (body_id, body_secret) {
            (Some(id), Some(secret)) => Ok(ClientAuth::Post {
                client_id: id.to_owned(),
                secret: SecretString::from(secret.to_owned()),
            }),
            (Some(id), None) => Ok(ClientAuth::Public { client_id: id.to_owned() }),
            (None, _) => Err(OAuthError::invalid_client("client authentication is required: send client_id (public clients) or HTTP Basic credentials", false)),
        }
    }

    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::Basic { client_id, .. }
            | ClientAuth::Post { client_id, .. }
            | ClientAuth::Public { client_id } => client_id,
        }
    }

    pub fn via_basic(&self) -> bool {
        matches!(self, ClientAuth::Basic { .. })
    }
}

/// Authenticates the client of a token, device authorization, revocation or introspection
/// request against the tenant's registry.
pub fn authenticate(tenant: &Tenant, auth: &ClientAuth) -> Result<Client, OAuthError> {
    let basic = auth.via_basic();
    let client = tenant
        .directory
        .read()
        .client(auth.client_id())
        .cloned()
        .ok_or_else(|| {
            OAuthError::invalid_client(
                format!("unknown client '{}'", auth.client_id().escape_default()),
                basic,
            )
        })?;
    match (client.config.is_confidential(), auth) {
        (true, ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. }) => {
            if client.secret_matches(secret.expose_secret()) {
                Ok(client)
            } else {
                tenant.record(
                    "client_auth_failed",
                    None,
                    Some(client.id().as_str()),
                    "wrong client secret",
                );
                Err(OAuthError::invalid_client(
                    "client authentication failed",
                    basic,
                ))
            }
        }
        (true, ClientAuth::Public { .. }) => Err(OAuthError::invalid_client(
            "this client is confidential: authenticate with client_secret_basic or client_secret_post",
            false,
        )),
        (false, ClientAuth::Public { .. }) => Ok(client),
        // Some libraries send `client_id:` with an empty secret for public clients.
        (false, ClientAuth::Basic { secret, .. } | ClientAuth::Post { secret, .. })
            if secret.expose_secret().is_empty() =>
        {
            Ok(client)
        }
        (false, _) => Err(OAuthError::invalid_client(
            "this client is public and has no secret; send client_id only",
            basic,
        )),
    }
}
