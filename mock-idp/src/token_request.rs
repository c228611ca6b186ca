//! Parsing a token-endpoint request into a typed [`TokenRequest`]: client authentication and
//! one grant. Parse, don't validate: after this, handlers only check values against state.
//! This is the function the fuzz target and the property tests drive.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::SecretString;
use url::form_urlencoded;

use crate::error::OAuthError;
use crate::params::Params;
use crate::scope::Scope;

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

#[derive(Debug)]
pub enum Grant {
    AuthorizationCode {
        code: SecretString,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
    },
    RefreshToken {
        refresh_token: SecretString,
        scope: Option<Scope>,
    },
    ClientCredentials {
        scope: Option<Scope>,
    },
    DeviceCode {
        device_code: SecretString,
    },
}

impl Grant {
    pub fn name(&self) -> &'static str {
        match self {
            Grant::AuthorizationCode { .. } => "authorization_code",
            Grant::RefreshToken { .. } => "refresh_token",
            Grant::ClientCredentials { .. } => "client_credentials",
            Grant::DeviceCode { .. } => "device_code",
        }
    }
}

#[derive(Debug)]
pub struct TokenRequest {
    pub client: ClientAuth,
    pub grant: Grant,
}

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Reads client authentication from an `Authorization` header and/or the body (RFC 6749 §2.3).
pub fn client_auth(params: &Params, authorization: Option<&str>) -> Result<ClientAuth, OAuthError> {
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
                OAuthError::invalid_client("the Basic credentials are not valid base64 UTF-8", true)
            })?;
        let (id, secret) = decoded
            .split_once(':')
            .ok_or_else(|| OAuthError::invalid_client("the Basic credentials lack a ':'", true))?;
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

fn scope(params: &Params) -> Result<Option<Scope>, OAuthError> {
    params
        .get("scope")
        .map(|s| {
            Scope::parse(s).map_err(|e| OAuthError::new(crate::error::ErrorCode::InvalidScope, e))
        })
        .transpose()
}

/// Parses a token request body (and the `Authorization` header, if any).
pub fn parse(body: &[u8], authorization: Option<&str>) -> Result<TokenRequest, OAuthError> {
    let params = Params::parse(body).map_err(|e| OAuthError::invalid_request(e.to_string()))?;
    let grant_type = params
        .require("grant_type")
        .map_err(OAuthError::invalid_request)?;
    let req = |name: &str| -> Result<SecretString, OAuthError> {
        params
            .require(name)
            .map(|v| SecretString::from(v.to_owned()))
            .map_err(OAuthError::invalid_request)
    };
    let grant = match grant_type {
        "authorization_code" => Grant::AuthorizationCode {
            code: req("code")?,
            redirect_uri: params.get("redirect_uri").map(str::to_owned),
            code_verifier: params.get("code_verifier").map(str::to_owned),
        },
        "refresh_token" => Grant::RefreshToken {
            refresh_token: req("refresh_token")?,
            scope: scope(&params)?,
        },
        "client_credentials" => Grant::ClientCredentials {
            scope: scope(&params)?,
        },
        DEVICE_CODE_GRANT => Grant::DeviceCode {
            device_code: req("device_code")?,
        },
        "password" => {
            return Err(OAuthError::new(
                crate::error::ErrorCode::UnsupportedGrantType,
                "the password grant is not supported (RFC 9700 §2.4)",
            ))
        }
        other => {
            return Err(OAuthError::new(
                crate::error::ErrorCode::UnsupportedGrantType,
                format!("grant_type '{}' is not supported", other.escape_default()),
            ))
        }
    };
    let client = client_auth(&params, authorization)?;
    Ok(TokenRequest { client, grant })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_grant() {
        let r = parse(b"grant_type=authorization_code&code=c&client_id=app&code_verifier=v&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb", None).unwrap();
        assert!(matches!(r.grant, Grant::AuthorizationCode { .. }));
        assert!(matches!(r.client, ClientAuth::Public { .. }));
        let basic = format!("Basic {}", STANDARD.encode("app:s%3Acret"));
        let r = parse(
            b"grant_type=refresh_token&refresh_token=rt&scope=openid",
            Some(&basic),
        )
        .unwrap();
        match r.client {
            ClientAuth::Basic { client_id, secret } => {
                assert_eq!(client_id, "app");
                assert_eq!(secrecy::ExposeSecret::expose_secret(&secret), "s:cret");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_requests_name_the_problem() {
        let e = parse(
            b"grant_type=password&username=a&password=b&client_id=x",
            None,
        )
        .unwrap_err();
        assert_eq!(e.code.as_str(), "unsupported_grant_type");
        let e = parse(b"grant_type=authorization_code&client_id=x", None).unwrap_err();
        assert!(
            e.description.contains("'code' is required"),
            "{}",
            e.description
        );
        let e = parse(
            b"grant_type=refresh_token&refresh_token=a&refresh_token=b&client_id=x",
            None,
        )
        .unwrap_err();
        assert!(e.description.contains("repeated"));
        let e = parse(b"grant_type=refresh_token&refresh_token=a", None).unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_client");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let r = parse(b"grant_type=refresh_token&refresh_token=super-secret-rt&client_id=x&client_secret=hunter2", None).unwrap();
        let dbg = format!("{r:?}");
        assert!(
            !dbg.contains("super-secret-rt") && !dbg.contains("hunter2"),
            "{dbg}"
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bodies(body in proptest::collection::vec(any::<u8>(), 0..512), header in proptest::option::of(".{0,64}")) {
            let _ = parse(&body, header.as_deref());
        }

        #[test]
        fn never_panics_on_form_like_bodies(pairs in proptest::collection::vec(("[a-z_]{1,14}", "[ -~]{0,40}"), 0..8)) {
            let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
            let _ = parse(body.as_bytes(), None);
        }
    }
}
