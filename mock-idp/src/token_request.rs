//! Parsing a token-endpoint request into a typed [`TokenRequest`]: client authentication and
//! one grant. Parse, don't validate: after this, handlers only check values against state.
//! This is the function the fuzz target and the property tests drive.

use secrecy::SecretString;

pub use crate::client_auth::ClientAuth;
use crate::error::OAuthError;
use crate::params::Params;
use crate::scope::Scope;

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
    let client = ClientAuth::parse(&params, authorization)?;
    Ok(TokenRequest { client, grant })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
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
