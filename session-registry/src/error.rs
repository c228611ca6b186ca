//! The one place errors become HTTP. Protected-resource failures are RFC 6750 §3.1: 401 with
//! `WWW-Authenticate: Bearer error="invalid_token"` and a precise `error_description`; request
//! errors are 400 JSON; a database outage is 503 so clients retry instead of signing out.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::refusal::Refusal;

impl Refusal {
    /// The answer's `error`: a stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::MissingToken => "missing_token",
            Refusal::MalformedToken(_) => "malformed_token",
            Refusal::SessionNotFound => "session_not_found",
            Refusal::SessionRevoked { .. } => "session_revoked",
            Refusal::SessionExpired | Refusal::AbsoluteLifetimeReached => "session_expired",
            Refusal::SessionIdle => "session_idle_timeout",
            Refusal::InvalidSessionJwt(_) => "invalid_session_jwt",
            Refusal::SessionTokenRequired => "session_token_required",
            Refusal::UnknownTenant(_) => "unknown_tenant",
            Refusal::UntrustedIssuer => "untrusted_issuer",
            Refusal::InvalidIdToken { .. } => "invalid_id_token",
            Refusal::InvalidApiKey => "invalid_api_key",
            Refusal::AdminApiDisabled => "admin_api_disabled",
        }
    }

    /// The answer's `reason`, where the code alone does not say what is wrong.
    fn cause(&self) -> Option<&'static str> {
        match self {
            Refusal::InvalidIdToken { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: the credential is not (or no longer) good.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// 400: a credential in the request's body refused (the bearer credential was fine): the
    /// same `error` and `reason` as [`ApiError::Refused`], without a `WWW-Authenticate`
    /// challenge that would make the client give up its session.
    #[error("{0}")]
    RefusedInBody(Refusal),
    /// 401 with an RFC 9470 step-up challenge: the caller must sign in at the IdP again (within
    /// `max_age` seconds) before doing this.
    #[error("insufficient_user_authentication: sign in again (within {max_age} s) to do this")]
    InsufficientUserAuthentication { max_age: i64 },
    /// 503: a tenant's identity provider did not answer usably. The detail is logged, never
    /// shown: it may carry the remote server's words.
    #[error("the identity provider could not be reached")]
    IssuerUnavailable(String),
    #[error("{code}: {description}")]
    BadRequest {
        code: &'static str,
        description: String,
    },
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("too many failed attempts from this address; retry in {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    #[error("the database is unavailable; retry shortly")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(code: &'static str, description: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            description: description.into(),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(m) => ApiError::Unavailable(m),
            // Still aborted after its retries: the caller may try again.
            crate::store::StoreError::Conflict(m) => ApiError::Unavailable(m),
            // Callers that spend a credential say what was spent; this is the fallback.
            crate::store::StoreError::AlreadyUsed => {
                ApiError::Internal("a spent credential was not told apart by its caller".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    error_description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_age: Option<i64>,
}

/// `s` without the characters a quoted-string in a `WWW-Authenticate` header cannot carry.
fn header_safe(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '"' && *c != '\\')
        .collect()
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Refused(_) | ApiError::InsufficientUserAuthentication { .. } => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::IssuerUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadRequest { .. } | ApiError::RefusedInBody(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        let mut cause_of = None;
        let mut max_age_of = None;
        let (error, description) = match self {
            ApiError::Refused(refusal) => {
                let reason = refusal.code();
                let description = refusal.to_string();
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        r#"Bearer error="invalid_token", error_description="{reason}: {}""#,
                        header_safe(&description)
                    ),
                ));
                cause_of = refusal.cause();
                (reason, description)
            }
            ApiError::RefusedInBody(refusal) => {
                cause_of = refusal.cause();
                (refusal.code(), refusal.to_string())
            }
            ApiError::InsufficientUserAuthentication { max_age } => {
                let description = format!(
                    "sign in at the identity provider again (max_age={max_age}) and send the new ID token to /v1/sessions/reauthenticate"
                );
                res.insert_header((
                    header::WWW_AUTHENTICATE,
                    format!(
                        r#"Bearer error="insufficient_user_authentication", error_description="{}", max_age={max_age}"#,
                        header_safe(&description)
                    ),
                ));
                max_age_of = Some(*max_age);
                ("insufficient_user_authentication", description)
            }
            ApiError::IssuerUnavailable(detail) => {
                tracing::warn!(%detail, "identity provider unavailable");
                res.insert_header((header::RETRY_AFTER, "5"));
                (
                    "temporarily_unavailable",
                    "the tenant's identity provider could not be reached; retry shortly".to_owned(),
                )
            }
            ApiError::BadRequest { code, description } => (*code, description.clone()),
            ApiError::Forbidden(d) => ("forbidden", d.clone()),
            ApiError::NotFound(d) => ("not_found", d.clone()),
            ApiError::TooManyRequests { retry_after } => {
                res.insert_header((header::RETRY_AFTER, retry_after.to_string()));
                ("rate_limited", self.to_string())
            }
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "database unavailable");
                res.insert_header((header::RETRY_AFTER, "1"));
                (
                    "temporarily_unavailable",
                    "the database is unavailable; retry shortly".to_owned(),
                )
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                ("server_error", "internal error".to_owned())
            }
        };
        res.json(Body {
            error,
            reason: cause_of,
            error_description: description,
            max_age: max_age_of,
        })
    }
}
