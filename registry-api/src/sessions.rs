//! Sessions: opening one from an ID token, checking or extending it, listing, revoking,
//! re-authenticating (step-up) and a guest's upgrade; the error body every refusal carries.

use serde::{Deserialize, Serialize};

use crate::Credential;

/// `POST /v1/sessions`: an ID token of the tenant's IdP, traded once for a device session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateSessionRequest {
    pub id_token: Credential,
    pub device: DeviceRequest,
    /// How long the session lasts unless extended (minutes, 5 to 525,600), capped by the
    /// tenant's absolute lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration_minutes: Option<i64>,
    /// Only needed when several tenants trust the same issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// This device, as the registry records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceRequest {
    pub id: String,
    pub name: String,
    pub platform: String,
}

/// `POST /v1/sessions/authenticate`: exactly one credential; with a duration, an extension.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuthenticateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Credential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_jwt: Option<Credential>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_duration_minutes: Option<i64>,
}

/// `POST /v1/sessions/reauthenticate`: a fresh ID token of the session's person.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReauthenticateRequest {
    pub id_token: Credential,
}

/// `POST /v1/sessions/upgrade`: a fresh ID token of the same subject, no longer a guest's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpgradeSessionRequest {
    pub id_token: Credential,
}

/// Which sessions of the caller's account a revoke ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RevokeScope {
    /// The caller's own session.
    Current,
    /// Every other session (needs a recent sign-in).
    Others,
    /// All of them (needs a recent sign-in).
    All,
}

/// `POST /v1/sessions/revoke`: one session by id, or a scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<RevokeScope>,
}

/// The answer to a revoke: the sessions it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeResponse {
    pub revoked: Vec<String>,
}

/// `GET /v1/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// What a client sees of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    pub session_id: String,
    pub tenant: String,
    pub account_id: String,
    pub subject: String,
    pub email: Option<String>,
    pub is_guest: bool,
    pub device: DeviceView,
    pub created_at: i64,
    pub last_authenticated_at: i64,
    pub expires_at: i64,
    pub absolute_expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_reason: Option<String>,
    pub auth_method: String,
    /// When the person last signed in at the IdP (Unix time): what step-up checks.
    pub auth_time: i64,
    /// Whether this is the caller's own session.
    pub current: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub platform: String,
    pub last_seen: i64,
}

/// The answer to create, reauthenticate, upgrade and a database-backed authenticate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionResponse {
    pub session: SessionView,
    /// Present when the session was just created (the only time the token is shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<Credential>,
    pub session_jwt: Credential,
}

/// What a session JWT says of its session: the answer of a JWT heartbeat served from memory,
/// which knows no more than this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JwtSessionView {
    pub session_id: String,
    pub tenant: String,
    pub subject: String,
    pub is_guest: bool,
    pub device_id: String,
    pub last_authenticated_at: i64,
    pub expires_at: i64,
}

/// The answer to `POST /v1/sessions/authenticate`: the whole session when the database was
/// asked, or what the session JWT says when a JWT heartbeat was answered from memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum AuthenticateResponse {
    // Boxed: the whole session is ten times the JWT's view.
    Session(Box<SessionResponse>),
    FromJwt {
        session: JwtSessionView,
        session_jwt: Credential,
    },
}

impl AuthenticateResponse {
    pub fn session_jwt(&self) -> &Credential {
        match self {
            AuthenticateResponse::Session(s) => &s.session_jwt,
            AuthenticateResponse::FromJwt { session_jwt, .. } => session_jwt,
        }
    }

    pub fn expires_at(&self) -> i64 {
        match self {
            AuthenticateResponse::Session(s) => s.session.expires_at,
            AuthenticateResponse::FromJwt { session, .. } => session.expires_at,
        }
    }
}

/// Every refusal's body (RFC 6749 §5.2 / RFC 6750 §3.1 shape): a stable `error` code, a
/// precise `reason` where there is one (e.g. `already_used` for an ID token), a description
/// for people, and `max_age` with an `insufficient_user_authentication` step-up challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub error_description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_heartbeat_and_a_full_answer_read_back_as_what_they_are() {
        let jwt = r#"{"session":{"session_id":"s","tenant":"acme","subject":"u","is_guest":false,
            "device_id":"d","last_authenticated_at":1,"expires_at":2},"session_jwt":"eyJ"}"#;
        let parsed: Result<AuthenticateResponse, _> = serde_json::from_str(jwt);
        assert!(matches!(parsed, Ok(AuthenticateResponse::FromJwt { .. })));
        let full = r#"{"session":{"session_id":"s","tenant":"acme","account_id":"a","subject":"u",
            "email":null,"is_guest":false,"device":{"id":"d","name":"n","platform":"p","last_seen":1},
            "created_at":1,"last_authenticated_at":1,"expires_at":2,"absolute_expires_at":3,
            "revoked_at":null,"revoked_reason":null,"auth_method":"oidc","auth_time":1,"current":true},
            "session_jwt":"eyJ"}"#;
        let parsed: Result<AuthenticateResponse, _> = serde_json::from_str(full);
        assert!(
            matches!(parsed, Ok(AuthenticateResponse::Session(_))),
            "{parsed:?}"
        );
    }

    #[test]
    fn a_revoke_scope_is_one_of_three_words() {
        let ok: Result<RevokeRequest, _> = serde_json::from_str(r#"{"scope":"others"}"#);
        assert_eq!(ok.ok().and_then(|r| r.scope), Some(RevokeScope::Others));
        let bad: Result<RevokeRequest, _> = serde_json::from_str(r#"{"scope":"everyone"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn requests_print_no_credential() {
        let req = CreateSessionRequest {
            id_token: Credential::new("eyJ-secret"),
            device: DeviceRequest {
                id: "laptop".into(),
                name: "n".into(),
                platform: "linux".into(),
            },
            session_duration_minutes: None,
            tenant: None,
        };
        let printed = format!("{req:?}");
        assert!(
            !printed.contains("secret") && printed.contains("laptop"),
            "{printed}"
        );
    }
}
