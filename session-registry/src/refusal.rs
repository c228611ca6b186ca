//! Why a credential is not accepted: the registry's domain refusals. The service says which; only
//! `error.rs` turns one into a status code, an `error` string and a description.

use crate::oidc::OidcError;

/// A credential refused (`401`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no bearer credential")]
    MissingToken,
    #[error("the session token is malformed: {0}")]
    MalformedToken(String),
    #[error("no session has this credential")]
    SessionNotFound,
    #[error("the session has ended ({reason})")]
    SessionRevoked { reason: String },
    #[error("the session has expired")]
    SessionExpired,
    #[error("the session reached its absolute lifetime")]
    AbsoluteLifetimeReached,
    #[error("the session was idle too long")]
    SessionIdle,
    #[error("the session JWT is not valid: {0}")]
    InvalidSessionJwt(String),
    /// A session JWT on a call that manages sessions.
    #[error("this call needs the session token; a session JWT only authenticates")]
    SessionTokenRequired,
    #[error("no tenant '{0}'")]
    UnknownTenant(String),
    #[error("no tenant trusts this ID token's issuer")]
    UntrustedIssuer,
    /// An ID token that failed the intake rules; `cause` is the precise reason code.
    #[error("{detail}")]
    InvalidIdToken { cause: &'static str, detail: String },
    #[error("this call needs a valid admin bearer key")]
    InvalidApiKey,
    #[error("the server-wide admin API is off: start the registry with --admin-token")]
    AdminApiDisabled,
}

impl Refusal {
    /// An ID token refused for `cause` (a stable code), described by `detail`.
    pub fn id_token(cause: &'static str, detail: impl Into<String>) -> Self {
        Refusal::InvalidIdToken {
            cause,
            detail: detail.into(),
        }
    }
}

impl From<OidcError> for Refusal {
    fn from(e: OidcError) -> Self {
        Refusal::id_token(e.reason(), e.to_string())
    }
}
