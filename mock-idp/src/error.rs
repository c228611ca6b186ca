//! The one place where failures become HTTP: RFC 6749 §5.2 JSON errors for the token,
//! revocation, introspection and admin endpoints, RFC 6750 §3.1 bearer errors for userinfo.
//! Error codes use only the characters §5.2 allows; descriptions never carry a secret.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::grants::{CodeRefusal, DevicePollRefusal, RefreshRefusal};
use crate::issue::IssueError;

/// RFC 6749 §5.2 / RFC 6750 / RFC 8628 error codes, plus the few the admin API needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    InvalidToken,
    AuthorizationPending,
    SlowDown,
    AccessDenied,
    ExpiredToken,
    ServerError,
    TemporarilyUnavailable,
    NotFound,
    Conflict,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
        }
    }
}

/// How the client authenticated, which decides the status of `invalid_client` (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    None,
    Basic,
    Bearer,
}

/// An error answered as JSON `{error, error_description}`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub description: String,
    pub challenge: Challenge,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            status,
            code,
            description: description.into(),
            challenge: Challenge::None,
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidGrant, d)
    }
    pub fn server_error(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::ServerError, d)
    }
    pub fn not_found(d: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, d)
    }

    /// `invalid_client`: 401 with a `WWW-Authenticate: Basic` challenge when the client tried
    /// HTTP Basic, 400 otherwise (RFC 6749 §5.2).
    pub fn invalid_client(d: impl Into<String>, via_basic: bool) -> Self {
        let mut e = Self::new(ErrorCode::InvalidClient, d);
        if via_basic {
            e.status = StatusCode::UNAUTHORIZED;
            e.challenge = Challenge::Basic;
        }
        e
    }

    /// A protected-resource error (RFC 6750 §3.1): 401 with `WWW-Authenticate: Bearer`.
    pub fn invalid_token(d: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorCode::InvalidToken, d);
        e.challenge = Challenge::Bearer;
        e
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'static str,
    error_description: &'a str,
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"));
        match self.challenge {
            Challenge::None => {}
            Challenge::Basic => {
                res.insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="mock-idp""#));
            }
            Challenge::Bearer => {
                // The description is ours and ASCII-safe; quotes are stripped to keep the header valid.
                let desc: String = self
                    .description
                    .chars()
                    .filter(|c| *c != '"' && *c != '\\' && c.is_ascii())
                    .collect();
                let value = format!(
                    r#"Bearer error="{}", error_description="{desc}""#,
                    self.code.as_str()
                );
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.insert_header((header::WWW_AUTHENTICATE, v));
                }
            }
        }
        res.json(Body {
            error: self.code.as_str(),
            error_description: &self.description,
        })
    }
}

/// Maps actix extractor failures (oversized or malformed bodies and queries) to §5.2 JSON.
pub fn payload_error(err: impl std::fmt::Display, too_large: bool) -> actix_web::Error {
    let e = if too_large {
        OAuthError::invalid_request(format!("request body is too large: {err}"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    } else {
        OAuthError::invalid_request(format!("malformed request: {err}"))
    };
    e.into()
}

// The refusals of the grant store and of minting, as the token endpoint answers them.

impl From<IssueError> for OAuthError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::UserGone => Self::invalid_grant(e.to_string()),
            IssueError::NoAccessTokenKey | IssueError::NoIdTokenKey(_) | IssueError::Signing(_) => {
                Self::server_error(e.to_string())
            }
        }
    }
}

impl From<CodeRefusal> for OAuthError {
    fn from(e: CodeRefusal) -> Self {
        match e {
            CodeRefusal::Issue(e) => e.into(),
            CodeRefusal::Unknown
            | CodeRefusal::Replayed { .. }
            | CodeRefusal::Burned
            | CodeRefusal::SessionEnded
            | CodeRefusal::Rejected { .. } => Self::invalid_grant(e.to_string()),
        }
    }
}

impl From<RefreshRefusal> for OAuthError {
    fn from(e: RefreshRefusal) -> Self {
        match e {
            RefreshRefusal::Issue(e) => e.into(),
            RefreshRefusal::ScopeExceeds => Self::new(ErrorCode::InvalidScope, e.to_string()),
            RefreshRefusal::Unknown
            | RefreshRefusal::OtherClient
            | RefreshRefusal::Revoked
            | RefreshRefusal::Expired
            | RefreshRefusal::Reused { .. } => Self::invalid_grant(e.to_string()),
        }
    }
}

impl From<DevicePollRefusal> for OAuthError {
    fn from(e: DevicePollRefusal) -> Self {
        let code = match e {
            DevicePollRefusal::Issue(e) => return e.into(),
            DevicePollRefusal::Unknown | DevicePollRefusal::OtherClient => ErrorCode::InvalidGrant,
            DevicePollRefusal::Expired => ErrorCode::ExpiredToken,
            DevicePollRefusal::SlowDown { .. } => ErrorCode::SlowDown,
            DevicePollRefusal::Pending => ErrorCode::AuthorizationPending,
            DevicePollRefusal::Denied | DevicePollRefusal::SessionEnded => ErrorCode::AccessDenied,
        };
        Self::new(code, e.to_string())
    }
}
